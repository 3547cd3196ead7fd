"""AgentSync: deletes both ways, restore, conflict policies and their records, the window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from hub.model import ConflictPolicy, Kind, RemoteDelete

from .helpers import Bench, at, make_bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await make_bench(tmp_path)
    yield b
    await b.store.close()


async def test_hub_delete_deletes_remotely_and_purges_the_tombstone(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    await bench.cancel(appt.id)

    result = await bench.sync()

    assert result.counts.get("remote-delete") == 1
    assert bench.remote() == []
    assert await bench.get(appt.id) is None
    assert await bench.store.list_status("alice", "mem") == []


async def test_remote_delete_follows_into_the_hub(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    bench.server.delete(bench.cal, bench.remote_of(appt.id).remote_id)

    result = await bench.sync()

    assert result.counts.get("hub-delete") == 1
    assert await bench.get(appt.id) is None


async def test_remote_delete_with_restore_policy_recreates(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    old = bench.remote_of(appt.id).remote_id
    bench.server.delete(bench.cal, old)

    result = await bench.sync(remote_delete=RemoteDelete.RESTORE)

    assert result.counts.get("restore") == 1
    event = bench.remote_of(appt.id)
    assert event.remote_id != old
    assert (await bench.get(appt.id)) is not None


async def test_hub_edit_beats_remote_delete(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    bench.server.delete(bench.cal, bench.remote_of(appt.id).remote_id)
    await bench.edit(appt.id, start=at(2), end=at(2, 11))

    result = await bench.sync()

    assert result.counts.get("restore") == 1
    assert bench.remote_of(appt.id).data.start == at(2)
    (conflict,) = await bench.store.list_conflicts()
    assert conflict.winner == "edit-beats-delete"
    assert conflict.remote == {"deleted": True}


async def test_remote_edit_beats_hub_delete(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    event = bench.remote_of(appt.id)
    bench.server.move(bench.cal, event.remote_id, at(3), at(3, 12))
    await bench.cancel(appt.id)

    result = await bench.sync()

    assert result.counts.get("undelete") == 1
    stored = await bench.get(appt.id)
    assert stored is not None and not stored.deleted
    assert stored.start == at(3)
    assert len(bench.remote()) == 1
    (conflict,) = await bench.store.list_conflicts()
    assert conflict.winner == "edit-beats-delete"
    assert conflict.remote["start"] == "2026-05-07T10:00:00Z"


@pytest.mark.parametrize(
    ("policy", "hub_later", "winner"),
    [
        (ConflictPolicy.HUB, False, "hub"),
        (ConflictPolicy.REMOTE, True, "remote"),
        (ConflictPolicy.NEWEST, True, "hub"),
        (ConflictPolicy.NEWEST, False, "remote"),
    ],
)
async def test_both_changed_the_policy_decides_and_the_conflict_is_recorded(
    bench: Bench, policy: ConflictPolicy, hub_later: bool, winner: str
) -> None:
    appt = await bench.add(at(1), kind=Kind.MANUAL, subject="Visit")
    await bench.sync()
    event = bench.remote_of(appt.id)
    remote_at = bench.clock.now + timedelta(minutes=10)
    hub_at = remote_at + timedelta(minutes=5 if hub_later else -5)
    bench.server.edit(bench.cal, event.remote_id, replace(event.data, subject="Visit (remote)"))
    bench.clock.now = hub_at
    await bench.edit(appt.id, start=at(4), end=at(4, 11))
    bench.clock.now = remote_at + timedelta(hours=1)
    engine = bench.engine(conflict=policy)
    original = bench.provider.fetch
    # The memory server reports no change time: add one so that "newest" can compare.

    async def fetch_with_times(cal, window, cursor):  # type: ignore[no-untyped-def]
        result = await original(cal, window, cursor)
        result.changed = [replace(e, modified=remote_at) for e in result.changed]
        return result

    bench.provider.fetch = fetch_with_times  # type: ignore[method-assign]
    result = await engine.run(bench.agent)

    assert result.counts.get("conflicts") == 1
    (conflict,) = await bench.store.list_conflicts()
    assert conflict.winner == winner and conflict.policy == policy.value
    assert conflict.remote["subject"] == "Visit (remote)"
    assert conflict.hub["start"] == "2026-05-08T10:00:00Z"
    pushed = bench.remote_of(appt.id).data
    hub_now = await bench.get(appt.id)
    assert hub_now is not None
    if winner == "hub":
        assert (pushed.subject, pushed.start) == ("[#R1] Visit", at(4))
        assert hub_now.subject_override is None
    else:
        assert (pushed.subject, pushed.start) == ("Visit (remote)", at(1))
        assert (hub_now.subject_override, hub_now.start) == ("Visit (remote)", at(1))
    assert (await bench.sync()).counts == {}


async def test_newest_without_a_remote_change_time_lets_the_remote_win(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    bench.server.move(bench.cal, bench.remote_of(appt.id).remote_id, at(2), at(2, 11))
    await bench.edit(appt.id, start=at(3), end=at(3, 11))

    await bench.sync(conflict=ConflictPolicy.NEWEST)

    (conflict,) = await bench.store.list_conflicts()
    assert conflict.winner == "remote"
    stored = await bench.get(appt.id)
    assert stored is not None and stored.start == at(2)


async def test_only_appointments_in_the_window_are_pushed(bench: Bench) -> None:
    # Window: [today - 7 days, today + 60 days] in whole UTC days.
    today = datetime(2026, 5, 4).date()
    inside_first = await bench.add(at(-7, 0), at(-7, 1))
    before = await bench.add(at(-8, 22), at(-7, 0))  # ends exactly where the window starts
    inside_last = await bench.add(at(60, 23), at(61, 0))
    after = await bench.add(at(61, 0), at(61, 1))  # starts exactly where it ends
    all_day = await bench.add(today - timedelta(days=8), today - timedelta(days=7))
    all_day_in = await bench.add(date(2026, 5, 4), date(2026, 5, 5))

    await bench.sync()

    pushed = {e.hub_id for e in bench.remote()}
    assert pushed == {inside_first.id, inside_last.id, all_day_in.id}
    assert not pushed & {before.id, after.id, all_day.id}


async def test_leaving_the_window_deletes_nothing(bench: Bench) -> None:
    appt = await bench.add(at(1))
    bench.external("Dentist", at(2))
    await bench.set_agent(import_external=True)
    await bench.sync()
    # The agent drags the hub event far out; then a week passes and the cursor moves on.
    bench.server.move(bench.cal, bench.remote_of(appt.id).remote_id, at(90), at(90, 11))

    result = await bench.sync()

    stored = await bench.get(appt.id)
    assert stored is not None and not stored.deleted
    assert stored.start == at(90)  # the drag was followed, not taken for a delete
    assert len(bench.remote()) == 2

    bench.clock.advance(days=20)  # everything is now in the past, outside the window
    result = await bench.sync()
    assert result.result == "ok"
    assert len(await bench.hub()) == 2
    assert len(bench.remote()) == 2
    assert len(await bench.store.list_status("alice", "mem")) == 2


async def test_hub_edit_made_during_a_pass_is_not_overwritten(bench: Bench) -> None:
    appt = await bench.add(at(1), kind=Kind.MANUAL, subject="Visit")
    await bench.sync()
    bench.server.move(bench.cal, bench.remote_of(appt.id).remote_id, at(2), at(2, 11))
    store = bench.store
    originals = {
        "list_appointments": store.list_appointments,
        "get_appointments": store.get_appointments,
    }
    edited: list[bool] = []

    def read_then_edit(name: str):  # type: ignore[no-untyped-def]
        async def read(*args, **filters):  # type: ignore[no-untyped-def]
            found = await originals[name](*args, **filters)
            if not edited:
                edited.append(True)
                await bench.edit(appt.id, note="edited through the API meanwhile")
            return found

        return read

    # The API edit lands after the pass read the hub side (by range in a whole-calendar
    # pass, by id in a change pass) and before it writes.
    for name in originals:
        setattr(store, name, read_then_edit(name))
    result = await bench.sync()
    for name, method in originals.items():
        setattr(store, name, method)

    assert edited and result.hub_read == "changes"
    assert result.counts.get("replan") == 1 and "flow-back" not in result.counts
    stored = await bench.get(appt.id)
    assert stored is not None
    assert (stored.note, stored.start) == ("edited through the API meanwhile", at(1))
    # The next pass sees both sides changed: the policy decides, and it is recorded.
    await bench.sync()
    (conflict,) = await bench.store.list_conflicts()
    assert conflict.hub["body"] == "edited through the API meanwhile"
    assert conflict.remote["start"] == "2026-05-06T10:00:00Z"


async def test_events_entering_the_window_on_a_new_day_are_synced(bench: Bench) -> None:
    await bench.set_agent(import_external=True)
    later = await bench.add(at(65))
    bench.external("Conference", at(66))
    await bench.sync()
    assert len(bench.remote()) == 1  # only the external: the hub one is not in the window yet
    assert [a.id for a in await bench.hub()] == [later.id]

    bench.clock.advance(days=10)
    result = await bench.sync()

    assert result.counts == {"create": 1, "import": 1}
    assert {e.hub_id for e in bench.remote()} == {later.id, None}
    assert sorted(a.subject for a in await bench.hub()) == ["", "Conference"]
