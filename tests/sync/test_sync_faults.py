"""AgentSync under faults: crashes, lost status, cursor expiry, throttling, auth, bad events,
racing edits and the empty-calendar stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from hub.model import CalendarState
from hub.spec import EventData, PermanentError, TransientError
from hub.store.sqlite import SqliteStore
from hub.testing.memory import SimulatedCrash

from .helpers import Bench, at, make_bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await make_bench(tmp_path)
    yield b
    await b.store.close()


def hub_ids(bench: Bench) -> list[str | None]:
    return sorted(e.hub_id or "" for e in bench.remote())


async def test_crash_between_remote_create_and_status_commit_makes_no_duplicate(
    bench: Bench,
) -> None:
    a1 = await bench.add(at(1))
    a2 = await bench.add(at(2))
    bench.server.crash_after_write(1)
    with pytest.raises(SimulatedCrash):
        await bench.sync()
    # The process died: reopen the database as a restarted hub would.
    await bench.store.close()
    bench.store = SqliteStore(bench.path, clock=bench.clock)
    await bench.store.open()
    rows = await bench.store.list_status("alice", "mem")
    assert {r.state for r in rows} == {"creating"}

    result = await bench.sync()

    assert result.result == "ok", result.error
    # The crash came after the first remote create: that one is found and linked, the other
    # never reached the server and is created now.
    assert result.counts == {"link": 1, "forget": 1, "create": 1}
    assert hub_ids(bench) == sorted([a1.id, a2.id])
    assert bench.server.requests_by_operation["find"] == 1
    rows = await bench.store.list_status("alice", "mem")
    assert {r.state for r in rows} == {"synced"}
    assert (await bench.sync()).counts == {}


async def test_lost_status_table_links_instead_of_duplicating(bench: Bench) -> None:
    appts = [await bench.add(at(d)) for d in (1, 2, 3)]
    await bench.sync()
    async with bench.store.transaction("test") as tx:
        for s in await bench.store.list_status("alice", "mem"):
            await tx.delete_status(s.agent_id, s.appointment_id, s.account)

    result = await bench.sync()

    assert result.result == "ok"
    assert result.counts.get("link") == 3
    assert hub_ids(bench) == sorted(a.id for a in appts)
    assert len(await bench.store.list_status("alice", "mem")) == 3
    assert await bench.store.list_conflicts() == []


async def test_cursor_expiry_falls_back_to_a_full_fetch_without_deletes_or_duplicates(
    bench: Bench,
) -> None:
    await bench.set_agent(import_external=True)
    appts = [await bench.add(at(d)) for d in (1, 2)]
    bench.external("Dentist", at(3))
    await bench.sync()
    bench.server.expire_cursors(bench.cal)

    result = await bench.sync()

    assert result.result == "ok"
    assert result.counts == {"full_fetch": 1}
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and any("cursor refused" in n for n in state.notices)
    assert len(bench.remote()) == 3
    assert len(await bench.hub()) == 3
    assert {a.id for a in await bench.hub()} >= {a.id for a in appts}


async def test_cursor_expiry_with_a_moved_out_event_verifies_before_deleting(
    bench: Bench,
) -> None:
    appt = await bench.add(at(1))
    gone = await bench.add(at(2))
    await bench.add(at(3))  # stays: the listing is not empty
    await bench.sync()
    bench.server.move(bench.cal, bench.remote_of(appt.id).remote_id, at(100), at(100, 11))
    bench.server.delete(bench.cal, bench.remote_of(gone.id).remote_id)
    bench.server.expire_cursors(bench.cal)

    result = await bench.sync()

    assert result.result == "ok"
    moved = await bench.get(appt.id)
    assert moved is not None and moved.start == at(100)  # verified with get: it only moved
    assert await bench.get(gone.id) is None  # verified with get: really deleted
    assert bench.server.requests_by_operation["get"] == 2


async def test_transient_errors_are_retried_honouring_retry_after(bench: Bench) -> None:
    await bench.add(at(1))
    bench.server.throttle(2, retry_after=7.0)

    result = await bench.sync()

    assert result.result == "ok"
    assert len(bench.sleeps) == 2
    assert all(s >= 7.0 for s in bench.sleeps)
    assert len(bench.remote()) == 1
    assert result.requests == 4  # two throttled fetches, the fetch, one push


async def test_transient_errors_outlasting_the_retries_fail_the_pass(bench: Bench) -> None:
    await bench.add(at(1))
    bench.server.fail_next(10, TransientError("503 Service Unavailable"))

    result = await bench.sync()

    assert result.result == "failed"
    assert "503" in (result.error or "")
    assert len(bench.sleeps) == 3  # four attempts in all
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and state.last_result == "failed" and state.cursor is None


async def test_auth_error_marks_needs_attention_until_a_good_pass(bench: Bench) -> None:
    await bench.add(at(1))
    bench.server.revoke_auth("alice@example.com")

    result = await bench.sync()

    assert result.result == "needs-attention"
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and state.needs_attention
    bench.server.restore_auth()
    result = await bench.sync()
    assert result.result == "ok"
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and not state.needs_attention


async def test_bad_remote_event_is_skipped_while_the_rest_syncs(bench: Bench) -> None:
    await bench.set_agent(import_external=True)
    bad = bench.server.add_bad_event(
        bench.cal, "cannot parse RRULE", EventData("x", at(1), at(1, 11))
    )
    bench.external("Dentist", at(2))
    appt = await bench.add(at(3))

    result = await bench.sync()

    assert result.result == "ok"
    assert result.skipped_items == [f"{bad}: cannot parse RRULE"]
    assert [a.subject for a in await bench.hub() if a.id != appt.id] == ["Dentist"]
    assert bench.remote_of(appt.id) is not None
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and any("RRULE" in n for n in state.notices)


async def test_bad_hub_item_is_skipped_while_the_rest_syncs(bench: Bench) -> None:
    good = await bench.add(at(1))
    bad = await bench.add(at(2))
    bench.server.fail_item(bad.id, PermanentError("400 Bad Request: invalid location"))

    result = await bench.sync()

    assert result.result == "ok"
    assert [e.hub_id for e in bench.remote()] == [good.id]
    assert len(result.skipped_items) == 1 and result.skipped_items[0].startswith(bad.id)
    assert [s.appointment_id for s in await bench.store.list_status("alice", "mem")] == [good.id]


async def test_racing_remote_edit_is_not_overwritten(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    rid = bench.remote_of(appt.id).remote_id
    await bench.edit(appt.id, start=at(2), end=at(2, 11))
    # The agent moves the event between our fetch and our write: the write gets a 412.
    bench.server.race(lambda: bench.server.move(bench.cal, rid, at(5), at(5, 11)))

    result = await bench.sync()

    assert result.counts.get("replan") == 1
    assert bench.remote_of(appt.id).data.start == at(5)  # the racing edit survived
    (status,) = await bench.store.list_status("alice", "mem")
    assert status.state == "stale"

    result = await bench.sync()  # the next pass reads the new version and resolves it

    assert result.counts.get("conflicts") == 1
    (conflict,) = await bench.store.list_conflicts()
    assert conflict.remote["start"] == "2026-05-09T10:00:00Z"
    (status,) = await bench.store.list_status("alice", "mem")
    assert status.state == "synced"


async def test_remote_calendar_suddenly_empty_stops_the_pass(bench: Bench) -> None:
    appts = [await bench.add(at(d)) for d in (1, 2)]
    await bench.sync()
    for event in bench.remote():
        bench.server.delete(bench.cal, event.remote_id)
    bench.server.expire_cursors(bench.cal)

    result = await bench.sync()

    assert result.result == "stopped"
    assert "empty" in (result.error or "")
    assert len(await bench.hub()) == 2
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and state.last_result == "stopped" and state.cursor is None
    # Stays stopped until an administrator says otherwise.
    assert (await bench.sync()).result == "stopped"

    result = await bench.sync(allow_empty=True)

    assert result.result == "ok"
    assert [await bench.get(a.id) for a in appts] == [None, None]


async def test_allow_empty_once_overrides_one_stop_and_is_cleared(bench: Bench) -> None:
    await bench.add(at(1))
    await bench.sync()
    bench.server.delete(bench.cal, bench.remote()[0].remote_id)
    bench.server.expire_cursors(bench.cal)
    state = await bench.store.get_calendar_state("alice")
    assert isinstance(state, CalendarState)
    async with bench.store.transaction("api") as tx:
        await tx.put_calendar_state(replace(state, allow_empty_once=True))

    result = await bench.sync()

    assert result.result == "ok"
    assert await bench.hub() == []
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and not state.allow_empty_once


async def test_duplicate_remote_events_of_one_hub_id_are_reduced_to_one(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    first = bench.remote_of(appt.id)
    copy = bench.server.create_external(bench.cal, first.data, hub_id=appt.id)
    bench.server.create_external(bench.cal, first.data, hub_id="purged-long-ago")

    result = await bench.sync()

    assert result.counts.get("duplicate") == 1 and result.counts.get("orphan") == 1
    assert [e.remote_id for e in bench.remote()] == [first.remote_id]
    assert copy not in {e.remote_id for e in bench.remote()}
