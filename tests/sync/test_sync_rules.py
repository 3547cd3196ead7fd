"""AgentSync: rules of DESIGN.md "Sync semantics" that each get a test which fails when the rule
breaks (a version-only bump, read-only restores, a lost status table, another agent's tag, the
window, the cursor)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from hub.model import Agent, Appointment, ConflictPolicy, Kind, RemoteDelete
from hub.reconcile import external_id
from hub.spec import AccountConfig, EventData, TransientError
from hub.store import StoreError
from hub.store.sqlite import SqliteTx
from hub.testing.memory import MemoryProvider

from .helpers import ACCOUNT, Bench, at, make_bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await make_bench(tmp_path)
    yield b
    await b.store.close()


class ReadOnlyMemory(MemoryProvider):
    """The memory provider flagged read-only (an import-only calendar)."""

    read_only: ClassVar[bool] = True


async def read_only(bench: Bench) -> None:
    """From now on the bench syncs through a read-only provider of the same calendars."""
    provider = ReadOnlyMemory(AccountConfig(ACCOUNT, "memory", {"server": bench.server}))
    await provider.open()
    bench.provider = provider


async def test_hub_edit_against_a_version_only_bump_is_a_plain_update(bench: Bench) -> None:
    appt = await bench.add(at(1), kind=Kind.MANUAL, subject="Visit")
    await bench.sync()
    event = bench.remote_of(appt.id)
    await bench.edit(appt.id, subject="Visit, bring the cable")
    bench.clock.advance(minutes=5)
    bench.server.touch(bench.cal, event.remote_id)  # the server bumps the etag for nothing

    # `newest` hands a real conflict to the remote side here (no remote change time, so the
    # fetch time counts, and it is later than the hub edit): only a plain update keeps it.
    result = await bench.sync(conflict=ConflictPolicy.NEWEST)

    assert result.result == "ok", result.error
    assert result.counts == {"update": 1}
    assert bench.remote_of(appt.id).data.subject.endswith("Visit, bring the cable")
    stored = await bench.get(appt.id)
    assert stored is not None and stored.subject == "Visit, bring the cable"
    assert stored.subject_override is None
    assert await bench.store.list_conflicts() == []


@pytest.mark.parametrize("hub_edit", [False, True], ids=["restore", "edit-beats-delete"])
async def test_a_read_only_provider_gets_no_create_from_a_restore(
    bench: Bench, hub_edit: bool
) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    bench.server.delete(bench.cal, bench.remote_of(appt.id).remote_id)
    if hub_edit:
        await bench.edit(appt.id, start=at(2), end=at(2, 11))
    await read_only(bench)
    bench.server.reset_counters()

    result = await bench.sync(remote_delete=RemoteDelete.RESTORE)

    assert bench.server.requests_by_operation["push"] == 0
    assert bench.remote() == []
    assert "the provider is read-only" in " ".join(result.skipped_items)
    stored = await bench.get(appt.id)
    assert stored is not None and not stored.deleted  # restore: the hub keeps it


async def test_after_a_lost_status_table_a_recreated_appointment_is_a_conflict(
    bench: Bench,
) -> None:
    kept = await bench.add(at(1))
    gone = await bench.add(at(2))
    await bench.sync()
    bench.server.delete(bench.cal, bench.remote_of(gone.id).remote_id)  # by the agent
    async with bench.store.transaction("test") as tx:  # and the sync records are lost
        for s in await bench.store.list_status("alice", ACCOUNT):
            await tx.delete_status(s.agent_id, s.appointment_id, s.account)

    result = await bench.sync()

    assert result.result == "ok", result.error
    assert result.counts.get("link") == 1 and result.counts.get("create") == 1
    assert sorted(e.hub_id for e in bench.remote()) == [kept.id, gone.id]
    (conflict,) = await bench.store.list_conflicts()
    assert conflict.appointment_id == gone.id
    assert conflict.winner == "hub" and conflict.remote == {"missing": True}
    assert "sync records were lost" in conflict.detail


async def test_an_event_tagged_with_another_agents_appointment_is_skipped(bench: Bench) -> None:
    async with bench.store.transaction("api") as tx:
        await tx.put_agent(Agent(id="bob", name="Bob", email="bob@example.com", account=ACCOUNT))
        bobs = await tx.put_appointment(
            Appointment(
                id="b1",
                agent_id="bob",
                kind=Kind.MANUAL,
                start=at(1),
                end=at(1, 11),
                subject="Bob's visit",
            )
        )
    # An event in alice's calendar carrying bob's appointment id (copied by a client, say).
    copied = bench.server.create_external(
        bench.cal, EventData("Copied", at(3), at(3, 11)), hub_id="b1"
    )

    result = await bench.sync()

    assert result.result == "ok", result.error
    assert any("of another calendar" in s for s in result.skipped_items)
    assert await bench.store.list_status("alice", ACCOUNT) == []
    assert await bench.get("b1") == bobs  # not linked, not moved, not renamed
    assert [e.hub_id for e in bench.remote()] == ["b1"]  # and not deleted as an orphan
    assert bench.remote()[0].remote_id == copied


async def test_a_full_listing_keeps_an_imported_copy_outside_the_window(bench: Bench) -> None:
    await bench.set_agent(import_external=True)
    remote_id = bench.external("Dentist", at(1))
    await bench.sync()
    copy_id = external_id("alice", ACCOUNT, remote_id)
    assert await bench.get(copy_id) is not None
    bench.clock.advance(days=10)  # the import is now before the window (days_past = 7)
    async with bench.store.transaction("test") as tx:  # no status row to say where it was
        await tx.delete_status("alice", copy_id, ACCOUNT)

    result = await bench.sync()  # a new day: a full listing, which no longer has it

    assert result.result == "ok", result.error
    stored = await bench.get(copy_id)
    assert stored is not None and not stored.deleted and stored.subject == "Dentist"


async def test_the_cursor_is_not_stored_before_the_plan_is_applied(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    before = await bench.store.get_calendar_state("alice")
    assert before is not None and before.cursor is not None
    event = bench.remote_of(appt.id)
    renamed = EventData("Renamed by the agent", event.data.start, event.data.end)
    bench.server.edit(bench.cal, event.remote_id, renamed)
    # Pushing the generated subject back fails for the whole pass.
    bench.server.fail_next(10, TransientError("503 busy"), operation="push")

    failed = await bench.sync()

    assert failed.result == "failed"
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and state.cursor == before.cursor  # the same point, next time
    bench.server.clear_faults()
    again = await bench.sync()
    assert again.result == "ok", again.error
    assert again.counts.get("flow-back") == 1  # the change was fetched again and handled
    assert bench.remote_of(appt.id).data == event.data  # the generated subject is back


async def test_throttled_items_wait_for_the_longest_retry_after_among_them(bench: Bench) -> None:
    first, second = await bench.add(at(1)), await bench.add(at(2))
    # One push request, two throttled items: the one asking for longer comes first.
    bench.server.fail_item(first.id, TransientError("429", retry_after=9))
    bench.server.fail_item(second.id, TransientError("429", retry_after=2))

    result = await bench.sync()

    assert result.result == "ok", result.error
    assert len(bench.sleeps) == 1 and bench.sleeps[0] >= 9  # both are sent again together
    assert sorted(e.hub_id for e in bench.remote()) == [first.id, second.id]


async def test_a_throttled_item_asking_too_long_a_wait_ends_the_pass_at_once(
    bench: Bench,
) -> None:
    appt = await bench.add(at(1))
    bench.server.fail_item(appt.id, TransientError("429", retry_after=3600))

    result = await bench.sync()

    assert result.result == "failed"
    assert "3600" in (result.error or "")
    assert bench.sleeps == []  # no hour spent waiting inside the pass
    assert bench.server.requests_by_operation["push"] == 1


async def test_an_import_deleted_remotely_is_removed_when_a_full_listing_misses_it(
    bench: Bench,
) -> None:
    await bench.set_agent(import_external=True)
    await bench.add(at(2))  # the calendar does not come back empty (that would stop the pass)
    remote_id = bench.external("Dentist", at(1))
    await bench.sync()
    bench.server.delete(bench.cal, remote_id)
    bench.server.expire_cursors(bench.cal)  # the delete is seen only as an absence

    result = await bench.sync()

    assert result.result == "ok", result.error
    assert result.counts.get("hub-delete") == 1
    stored = await bench.get(external_id("alice", ACCOUNT, remote_id))
    assert stored is None or stored.deleted


async def test_a_hub_delete_racing_an_agents_edit_is_refused_and_the_edit_kept(
    bench: Bench,
) -> None:
    appt = await bench.add(at(1), kind=Kind.MANUAL, subject="Visit")
    await bench.sync()
    event = bench.remote_of(appt.id)
    await bench.cancel(appt.id)
    # The agent moves the event between the pass's fetch and its delete.
    bench.server.race(
        lambda: bench.server.move(bench.cal, event.remote_id, at(3), at(3, 11)),
        remote_id=event.remote_id,
    )

    first = await bench.sync()

    assert first.counts.get("replan") == 1  # the delete carried the version: refused
    assert bench.remote_of(appt.id).data.start == at(3)
    second = await bench.sync()  # re-reads the event: an edit beats the hub's delete
    assert second.counts.get("undelete") == 1, second.counts
    stored = await bench.get(appt.id)
    assert stored is not None and not stored.deleted and stored.start == at(3)


async def test_a_failing_hub_write_skips_that_item_and_commits_the_others(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, fine = await bench.add(at(1)), await bench.add(at(2))
    await bench.sync()
    for appt, day in ((broken, 3), (fine, 4)):  # both moved by the agent: two flow-backs
        bench.server.move(bench.cal, bench.remote_of(appt.id).remote_id, at(day), at(day, 11))
    real = SqliteTx.put_appointment

    async def put_appointment(self: SqliteTx, appt: Appointment) -> Appointment:
        if appt.id == broken.id:
            raise StoreError("disk I/O error")
        return await real(self, appt)

    monkeypatch.setattr(SqliteTx, "put_appointment", put_appointment)
    result = await bench.sync()

    assert result.result == "ok", result.error
    assert result.skipped_items == [f"{broken.id}: hub write failed (flow-back)"]
    assert (await bench.get(fine.id)).start == at(4)  # type: ignore[union-attr]
    assert (await bench.get(broken.id)).start == at(1)  # type: ignore[union-attr]
    monkeypatch.undo()
    again = await bench.sync()  # nothing was lost: the skipped one is taken next time
    assert (await bench.get(broken.id)).start == at(3), again.counts  # type: ignore[union-attr]


async def test_a_first_import_whose_hub_write_failed_is_imported_next_time(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bench.set_agent(import_external=True)
    await bench.sync()
    remote_id = bench.external("Dentist", at(1))  # reported once, by the next delta
    copy_id = external_id("alice", ACCOUNT, remote_id)
    real = SqliteTx.put_appointment

    async def put_appointment(self: SqliteTx, appt: Appointment) -> Appointment:
        if appt.id == copy_id:
            raise StoreError("disk I/O error")
        return await real(self, appt)

    monkeypatch.setattr(SqliteTx, "put_appointment", put_appointment)
    failed = await bench.sync()
    assert failed.skipped_items == [f"{copy_id}: hub write failed (import)"]
    monkeypatch.undo()

    await bench.sync()

    stored = await bench.get(copy_id)
    assert stored is not None and stored.subject == "Dentist"
