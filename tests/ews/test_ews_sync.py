"""End to end: the real sync engine (AgentSync) and SqliteStore, through exchangelib, against the
strict EWS fake. Two agents (alice, bob) share one exchange_ews account; the mailbox owners'
edits in Outlook are played by the fake's owner_* knobs."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from hub.model import Kind, PassResult
from hub.spec import PRIVATE_SUBJECT, CalendarRef, PushItem, PushOutcome
from hub.testing.memory import SimulatedCrash
from plugins.exchange_ews import EwsProvider
from tests.engine_support import hour
from tests.ews.conftest import account_for
from tests.ews.helpers import ACCOUNT, MAILBOXES, Hub
from tests.fakes.ews import EwsFake


class CrashAfterPush(EwsProvider):
    """Dies like a killed process right after EWS answered the first push."""

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        await super().push(cal, items)
        raise SimulatedCrash("killed after the remote create")


async def test_first_sync_pushes_then_a_quiet_pass_costs_one_request(hub: Hub) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2, 3)]
    first = await hub.sync()
    assert first.result == "ok", first.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)
    assert hub.fake.ops[(MAILBOXES[0], "CreateItem")] == 1  # one batch for the three
    assert hub.fake.invitations == 0
    for _ in range(2):
        # Its own creates come back from SyncFolderItems with the ChangeKeys the creates
        # returned: nothing to read. Then nothing changed at all.
        before = hub.requests()
        quiet = await hub.sync()
        assert quiet.result == "ok" and not any(quiet.counts.values()), quiet.counts
        assert hub.requests() - before == 1
    assert hub.fake.ops[(MAILBOXES[0], "GetItem")] == 0


async def test_owner_moves_a_hub_event_and_the_hub_follows(hub: Hub) -> None:
    appt = await hub.add(hour(2))
    await hub.sync()
    (item,) = hub.fake.items(MAILBOXES[0])
    hub.fake.owner_edit(MAILBOXES[0], item.id, start=hour(4, 14), end=hour(4, 16))
    result = await hub.sync()
    assert result.result == "ok", result.error
    (moved,) = await hub.hub()
    assert (moved.id, moved.start, moved.end) == (appt.id, hour(4, 14), hour(4, 16))


async def test_owner_deletes_a_hub_event_and_the_hub_follows(hub: Hub) -> None:
    keep = await hub.add(hour(1))
    gone = await hub.add(hour(2))
    await hub.sync()
    await hub.sync()  # the SyncState now knows both
    (item,) = [i for i in hub.fake.items(MAILBOXES[0]) if gone.id in i.hub_ids()]
    hub.fake.owner_delete(MAILBOXES[0], item.id)
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert [a.id for a in await hub.hub()] == [keep.id]


async def test_a_hub_create_the_owner_deletes_before_the_next_pass_is_noticed(hub: Hub) -> None:
    # The pass takes its SyncState, then creates the item; the owner deletes it before the
    # next pass. SyncFolderItems reports net changes: neither the create nor the delete.
    await hub.add(hour(1))
    gone = await hub.add(hour(2))
    assert (await hub.sync()).result == "ok"
    (item,) = [i for i in hub.fake.items(MAILBOXES[0]) if gone.id in i.hub_ids()]
    hub.fake.owner_delete(MAILBOXES[0], item.id)

    result = await hub.sync()

    assert result.result == "ok", result.error
    assert gone.id not in [a.id for a in await hub.hub()]
    assert len(await hub.store.list_status("alice", ACCOUNT)) == 1


async def test_crash_between_create_and_status_commit_makes_no_duplicate(
    hub: Hub, fake: EwsFake
) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2)]
    async with CrashAfterPush(account_for(fake)) as crashing:
        with pytest.raises(SimulatedCrash):
            await hub.sync(provider=crashing)
    await hub.reopen()
    assert {s.state for s in await hub.store.list_status("alice", ACCOUNT)} == {"creating"}
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)  # one item each, no twin
    assert {s.state for s in await hub.store.list_status("alice", ACCOUNT)} == {"synced"}


async def test_server_busy_backs_off_once_in_the_engine_and_others_are_unaffected(
    hub: Hub,
) -> None:
    for agent_id in ("alice", "bob"):
        await hub.add(hour(1), agent_id)
    hub.fake.busy(MAILBOXES[0], 2, back_off_ms=3500)
    results: dict[str, PassResult] = {}

    async def run(agent_id: str) -> None:
        results[agent_id] = await hub.sync(agent_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "alice")
        tg.start_soon(run, "bob")
    assert results["alice"].result == "ok", results["alice"].error
    assert results["bob"].result == "ok", results["bob"].error
    # exchangelib fails fast: the engine waited BackOffMilliseconds, once per fault.
    assert hub.sleeps["alice"] == [3.5, 3.5]
    assert hub.sleeps["bob"] == []
    assert len(hub.remote_hub_ids("alice")) == 1 and len(hub.remote_hub_ids("bob")) == 1


async def test_503_is_transient(hub: Hub) -> None:
    await hub.add(hour(1))
    hub.fake.unavailable(1)
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert len(hub.sleeps["alice"]) == 1
    assert len(hub.remote_hub_ids()) == 1


async def test_expired_sync_state_resyncs_without_duplicates_or_deletes(hub: Hub) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2, 3)]
    await hub.sync(import_external=True)
    hub.fake.owner_create(MAILBOXES[0], "Dentist", hour(5), hour(5, 11))
    hub.fake.expire_sync_states(MAILBOXES[0])
    result = await hub.sync(import_external=True)
    assert result.result == "ok", result.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)
    assert len(hub.fake.items(MAILBOXES[0])) == 4
    hub_side = await hub.hub()
    assert {a.id for a in appts} <= {a.id for a in hub_side}
    assert [a.subject for a in hub_side if a.kind is Kind.EXTERNAL] == ["Dentist"]


async def test_private_owner_event_is_imported_as_busy_time_only(hub: Hub) -> None:
    hub.fake.owner_create(
        MAILBOXES[0], "Therapy", hour(2), hour(2, 11), sensitivity="Private", body="notes"
    )
    result = await hub.sync(import_external=True)
    assert result.result == "ok", result.error
    (imported,) = await hub.hub()
    assert (imported.subject, imported.note, imported.private) == (PRIVATE_SUBJECT, "", True)


async def test_a_recurring_owner_series_is_imported_as_occurrences(hub: Hub) -> None:
    hub.fake.owner_create(MAILBOXES[0], "Stand-up", hour(1, 9), hour(1, 10), daily=3)
    first = await hub.sync(import_external=True)
    assert first.result == "ok", first.error
    assert sorted(a.start for a in await hub.hub()) == [hour(d, 9) for d in (1, 2, 3)]
    # A series created between passes comes from SyncFolderItems as its master: expanded.
    hub.fake.owner_create(MAILBOXES[0], "Backup check", hour(2, 15), hour(2, 16), daily=2)
    second = await hub.sync(import_external=True)
    assert second.result == "ok", second.error
    checks = [a for a in await hub.hub() if a.subject == "Backup check"]
    assert sorted(a.start for a in checks) == [hour(2, 15), hour(3, 15)]


async def test_impersonation_denied_needs_attention_for_that_agent_alone(hub: Hub) -> None:
    await hub.add(hour(1), "alice")
    await hub.add(hour(1), "bob")
    hub.fake.deny_impersonation(MAILBOXES[0])
    alice, bob = await hub.sync("alice"), await hub.sync("bob")
    assert alice.result == "needs-attention"
    assert "ErrorImpersonateUserDenied" in (alice.error or "")
    assert bob.result == "ok", bob.error
    assert len(hub.remote_hub_ids("bob")) == 1


async def test_refused_password_needs_attention(hub: Hub, fake: EwsFake) -> None:
    await hub.add(hour(1))
    async with EwsProvider(account_for(fake, password="wrong")) as refused:
        result = await hub.sync(provider=refused)
    assert result.result == "needs-attention"
    assert "401" in (result.error or "")
    state = await hub.store.get_calendar_state("alice")
    assert state is not None and state.needs_attention


async def test_basic_auth_syncs_too(hub: Hub, fake: EwsFake) -> None:
    await hub.add(hour(1))
    async with EwsProvider(account_for(fake, auth="basic")) as basic:
        result = await hub.sync(provider=basic)
    assert result.result == "ok", result.error
    assert len(hub.remote_hub_ids()) == 1
