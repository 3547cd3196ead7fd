"""End to end: the real sync engine (AgentSync) and SqliteStore against the strict Google fake,
through aiogoogle. Two Workspace agents (alice, bob) share one service account; the calendar
owners' edits are played by the fake's owner_* knobs."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from hub.model import Kind, PassResult, RemoteDelete
from hub.spec import PRIVATE_SUBJECT, CalendarRef, PushItem, PushOutcome
from hub.testing.memory import SimulatedCrash
from plugins.google import GoogleProvider
from tests.engine_support import hour
from tests.fakes.google import GoogleFake
from tests.google.conftest import USERS, account_for
from tests.google.helpers import ACCOUNT, Hub


class CrashAfterPush(GoogleProvider):
    """Dies like a killed process right after Google answered the first push."""

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        await super().push(cal, items)
        raise SimulatedCrash("killed after the remote create")


async def test_first_sync_batches_the_creates_then_a_quiet_pass_costs_one_request(
    hub: Hub,
) -> None:
    appts = [await hub.add(hour(d, at)) for d in (1, 2, 3) for at in (9, 11, 13, 15)]
    first = await hub.sync()
    assert first.result == "ok", first.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)
    # a full listing and one batch for twelve creates (plus the token request, not counted)
    assert hub.requests() == 2
    assert hub.fake.attendee_writes == 0 and hub.fake.writes_without_send_updates_none == 0
    await hub.sync()  # reads its own creates back once through the sync token
    before = hub.requests()
    quiet = await hub.sync()
    assert quiet.result == "ok" and not any(quiet.counts.values()), quiet.counts
    assert hub.requests() - before == 1


async def test_owner_moves_a_hub_event_and_the_hub_follows(hub: Hub) -> None:
    appt = await hub.add(hour(2))
    await hub.sync()
    (event,) = hub.fake.events(USERS[0])
    hub.fake.owner_edit(USERS[0], event.id, start=hour(4, 14), end=hour(4, 16))
    result = await hub.sync()
    assert result.result == "ok", result.error
    (moved,) = await hub.hub()
    assert (moved.id, moved.start, moved.end) == (appt.id, hour(4, 14), hour(4, 16))


async def test_owner_deletes_a_hub_event_and_the_hub_follows(hub: Hub) -> None:
    keep = await hub.add(hour(1))
    gone = await hub.add(hour(2))
    await hub.sync()
    (event,) = [e for e in hub.fake.events(USERS[0]) if e.private.get("calhubId") == gone.id]
    hub.fake.owner_delete(USERS[0], event.id)
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert [a.id for a in await hub.hub()] == [keep.id]


async def test_restore_after_an_owner_delete_is_a_new_event_under_a_new_id(hub: Hub) -> None:
    # Google keeps a deleted event (status cancelled) and refuses its id for a new event.
    appt = await hub.add(hour(2))
    await hub.sync(remote_delete=RemoteDelete.RESTORE)
    (event,) = hub.fake.events(USERS[0])
    hub.fake.owner_delete(USERS[0], event.id)

    result = await hub.sync(remote_delete=RemoteDelete.RESTORE)

    assert result.result == "ok", result.error
    (restored,) = hub.fake.events(USERS[0])
    assert restored.id != event.id and restored.private["calhubId"] == appt.id
    (status,) = await hub.store.list_status("alice", ACCOUNT)
    assert status.remote_id == restored.id


async def test_crash_between_create_and_status_commit_makes_no_duplicate(
    hub: Hub, fake: GoogleFake, key_file: object
) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2)]
    async with CrashAfterPush(account_for(fake, key_file)) as crashing:  # type: ignore[arg-type]
        with pytest.raises(SimulatedCrash):
            await hub.sync(provider=crashing)
    await hub.reopen()
    assert {s.state for s in await hub.store.list_status("alice", ACCOUNT)} == {"creating"}
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)  # one event each, no twin
    assert {s.state for s in await hub.store.list_status("alice", ACCOUNT)} == {"synced"}


async def test_a_retried_create_answered_409_is_linked_not_duplicated(
    hub: Hub, provider: GoogleProvider, cal: CalendarRef
) -> None:
    appt = await hub.add(hour(1))
    await hub.sync()
    (status,) = await hub.store.list_status("alice", ACCOUNT)
    data = (await provider.get(cal, status.remote_id or "")).data
    (again,) = await provider.push(cal, [PushItem(appt.id, data)])  # as after a lost answer
    assert not isinstance(again, Exception), again
    assert again.remote_id == status.remote_id
    assert hub.remote_hub_ids() == [appt.id]


async def test_quota_errors_back_off_and_other_agents_are_unaffected(hub: Hub) -> None:
    for agent_id in ("alice", "bob"):
        for d in (1, 2):
            await hub.add(hour(d), agent_id)
    hub.fake.throttle(USERS[0], 2, status=429, retry_after="3")
    results: dict[str, PassResult] = {}

    async def run(agent_id: str) -> None:
        results[agent_id] = await hub.sync(agent_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "alice")
        tg.start_soon(run, "bob")
    assert results["alice"].result == "ok", results["alice"].error
    assert results["bob"].result == "ok", results["bob"].error
    assert hub.sleeps["alice"] and min(hub.sleeps["alice"]) >= 3  # Retry-After honoured
    assert hub.sleeps["bob"] == []
    assert len(hub.remote_hub_ids("alice")) == 2 and len(hub.remote_hub_ids("bob")) == 2


async def test_rate_limit_403_is_transient_not_an_auth_error(hub: Hub) -> None:
    await hub.add(hour(1))
    hub.fake.throttle(USERS[0], 1, status=403, reason="userRateLimitExceeded")
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert hub.sleeps["alice"]  # backed off once
    state = await hub.store.get_calendar_state("alice")
    assert state is not None and not state.needs_attention


async def test_expired_sync_token_resyncs_without_duplicates_or_deletes(hub: Hub) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2, 3)]
    await hub.sync(import_external=True)
    hub.fake.owner_create(USERS[0], "Dentist", hour(5), hour(5, 11))
    hub.fake.expire_sync_tokens(USERS[0])
    result = await hub.sync(import_external=True)
    assert result.result == "ok", result.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)
    assert len(hub.fake.events(USERS[0])) == 4
    hub_side = await hub.hub()
    assert {a.id for a in appts} <= {a.id for a in hub_side}
    assert [a.subject for a in hub_side if a.kind is Kind.EXTERNAL] == ["Dentist"]


async def test_private_owner_event_is_imported_as_busy_time_only(hub: Hub) -> None:
    hub.fake.owner_create(
        USERS[0], "Therapy", hour(2), hour(2, 11), visibility="private", description="notes"
    )
    result = await hub.sync(import_external=True)
    assert result.result == "ok", result.error
    (imported,) = await hub.hub()
    assert (imported.subject, imported.note, imported.private) == (PRIVATE_SUBJECT, "", True)


async def test_recurring_owner_event_arrives_expanded(hub: Hub) -> None:
    hub.fake.owner_create_series(USERS[0], "Stand-up", hour(1, 9), 15, 3)
    result = await hub.sync(import_external=True)
    assert result.result == "ok", result.error
    assert [a.subject for a in await hub.hub()] == ["Stand-up"] * 3


async def test_delegation_revoked_for_one_agent_while_the_others_sync(hub: Hub) -> None:
    await hub.add(hour(1), "alice")
    await hub.add(hour(1), "bob")
    assert (await hub.sync("alice")).result == "ok"
    hub.fake.revoke_delegation(USERS[0])
    await hub.add(hour(2), "alice")
    alice, bob = await hub.sync("alice"), await hub.sync("bob")
    assert alice.result == "needs-attention", alice.error
    assert "unauthorized_client" in (alice.error or "")
    assert bob.result == "ok", bob.error
    assert len(hub.remote_hub_ids("bob")) == 1
    state = await hub.store.get_calendar_state("alice")
    assert state is not None and state.needs_attention


async def test_an_access_token_revoked_early_is_replaced_once(hub: Hub) -> None:
    await hub.add(hour(1))
    assert (await hub.sync()).result == "ok"
    hub.fake.tokens.clear()  # Google dropped the token before its expiry
    before = hub.fake.requests["token"]
    await hub.add(hour(2))
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert hub.fake.requests["token"] == before + 1
    assert len(hub.remote_hub_ids()) == 2
