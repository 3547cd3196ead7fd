"""End to end: the real sync engine (AgentSync) and SqliteStore against the strict Graph fake.

Two agents (alice, bob) share one graph365 account; the mailbox owners' edits in Outlook are
played by the fake's owner_* knobs.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from hub.model import Kind, PassResult, RemoteDelete
from hub.reconcile import external_id
from hub.spec import PRIVATE_SUBJECT, CalendarRef, PushItem, PushOutcome
from hub.testing.memory import SimulatedCrash
from plugins.graph365 import GraphProvider
from tests.engine_support import hour
from tests.fakes.graph import GraphFake
from tests.graph.conftest import MAILBOXES, account_for
from tests.graph.helpers import ACCOUNT, Hub


class CrashAfterPush(GraphProvider):
    """Dies like a killed process right after Graph answered the first push."""

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        await super().push(cal, items)
        raise SimulatedCrash("killed after the remote create")


async def test_first_sync_pushes_then_a_quiet_pass_costs_one_request(hub: Hub) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2, 3)]
    first = await hub.sync()
    assert first.result == "ok", first.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)
    assert hub.fake.attendee_writes == 0 and hub.fake.without_immutable_id == 0
    await hub.sync()  # reads back its own creates once (delta has no hub ids)
    before = hub.graph_requests()
    quiet = await hub.sync()
    assert quiet.result == "ok" and not any(quiet.counts.values()), quiet.counts
    assert hub.graph_requests() - before == 1


async def test_owner_moves_a_hub_event_and_the_hub_follows(hub: Hub) -> None:
    appt = await hub.add(hour(2))
    await hub.sync()
    (event,) = hub.fake.events(MAILBOXES[0])
    hub.fake.owner_edit(MAILBOXES[0], event.id, start=hour(4, 14), end=hour(4, 16))
    result = await hub.sync()
    assert result.result == "ok", result.error
    (moved,) = await hub.hub()
    assert (moved.id, moved.start, moved.end) == (appt.id, hour(4, 14), hour(4, 16))


async def test_owner_deletes_a_hub_event_and_the_hub_follows(hub: Hub) -> None:
    keep = await hub.add(hour(1))
    gone = await hub.add(hour(2))
    await hub.sync()
    (event,) = [e for e in hub.fake.events(MAILBOXES[0]) if gone.id in e.extended.values()]
    hub.fake.owner_delete(MAILBOXES[0], event.id)
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert [a.id for a in await hub.hub()] == [keep.id]


async def test_restore_after_an_owner_delete_is_a_new_event_not_the_deleted_one(
    hub: Hub,
) -> None:
    # Exchange keeps deleted items in Deleted Items; a create repeating the deleted event's
    # transactionId might be answered with it. A restore must use its own transactionId.
    hub.fake.transactions_outlive_deletes = True
    appt = await hub.add(hour(2))
    await hub.sync(remote_delete=RemoteDelete.RESTORE)
    (event,) = hub.fake.events(MAILBOXES[0])
    hub.fake.owner_delete(MAILBOXES[0], event.id)

    result = await hub.sync(remote_delete=RemoteDelete.RESTORE)

    assert result.result == "ok", result.error
    (restored,) = hub.fake.events(MAILBOXES[0])
    assert restored.id != event.id and appt.id in restored.extended.values()
    assert [a.id for a in await hub.hub()] == [appt.id]
    (status,) = await hub.store.list_status("alice", ACCOUNT)
    assert status.remote_id == restored.id


async def test_crash_between_create_and_status_commit_makes_no_duplicate(
    hub: Hub, fake: GraphFake
) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2)]
    async with CrashAfterPush(account_for(fake)) as crashing:
        with pytest.raises(SimulatedCrash):
            await hub.sync(provider=crashing)
    await hub.reopen()
    assert {s.state for s in await hub.store.list_status("alice", ACCOUNT)} == {"creating"}
    result = await hub.sync()
    assert result.result == "ok", result.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)  # one event each, no twin
    assert {s.state for s in await hub.store.list_status("alice", ACCOUNT)} == {"synced"}


async def test_throttled_mailbox_converges_and_others_are_unaffected(hub: Hub) -> None:
    for agent_id in ("alice", "bob"):
        for d in (1, 2):
            await hub.add(hour(d), agent_id)
    hub.fake.throttle(MAILBOXES[0], 2, retry_after=3)
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


async def test_expired_delta_token_resyncs_without_duplicates_or_deletes(hub: Hub) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2, 3)]
    await hub.sync(import_external=True)
    dentist = hub.fake.owner_create(MAILBOXES[0], "Dentist", hour(5), hour(5, 11))
    hub.fake.expire_delta_tokens(MAILBOXES[0])
    result = await hub.sync(import_external=True)
    assert result.result == "ok", result.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)
    assert len(hub.fake.events(MAILBOXES[0])) == 4
    assert result.counts.get("full_fetch") == 1  # the refused token meant a full listing
    hub_side = await hub.hub()
    assert {a.id for a in appts} <= {a.id for a in hub_side}
    # The owner's new event came in once, under the id derived from its Graph id.
    (copy,) = [a for a in hub_side if a.kind is Kind.EXTERNAL]
    assert copy.id == external_id("alice", ACCOUNT, dentist) and copy.subject == "Dentist"
    assert (copy.start, copy.end) == (hour(5), hour(5, 11))


async def test_private_owner_event_is_imported_as_busy_time_only(hub: Hub) -> None:
    hub.fake.owner_create(
        MAILBOXES[0], "Therapy", hour(2), hour(2, 11), sensitivity="private", body="notes"
    )
    result = await hub.sync(import_external=True)
    assert result.result == "ok", result.error
    (imported,) = await hub.hub()
    assert (imported.subject, imported.note, imported.private) == (PRIVATE_SUBJECT, "", True)


async def test_revoked_credentials_need_attention(hub: Hub) -> None:
    await hub.add(hour(1))
    assert (await hub.sync()).result == "ok"
    hub.fake.revoke_credentials()
    running = await hub.sync()  # the cached token dies with the secret
    assert running.result == "needs-attention"
    assert "InvalidAuthenticationToken" in (running.error or "")
    async with GraphProvider(account_for(hub.fake)) as fresh:  # a restarted hub
        result = await hub.sync(provider=fresh)
    assert result.result == "needs-attention"
    assert "AADSTS7000222" in (result.error or "")
    state = await hub.store.get_calendar_state("alice")
    assert state is not None and state.needs_attention


async def test_a_mailbox_out_of_the_access_policy_needs_attention_alone(hub: Hub) -> None:
    await hub.add(hour(1), "alice")
    await hub.add(hour(1), "bob")
    hub.fake.deny_mailbox(MAILBOXES[0])
    alice, bob = await hub.sync("alice"), await hub.sync("bob")
    assert alice.result == "needs-attention" and "ErrorAccessDenied" in (alice.error or "")
    assert bob.result == "ok", bob.error
    assert len(hub.remote_hub_ids("bob")) == 1
