"""The memory server's knobs and persistence: what the sync tests rely on beyond the contract
(the contract itself is covered by the conformance suite in test_memory_provider.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.spec import (
    AccountConfig,
    AuthError,
    CalendarRef,
    CursorInvalid,
    EventData,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    PushItem,
    PushResult,
    TransientError,
    Window,
)
from hub.testing.memory import MemoryProvider, MemoryServer, SimulatedCrash

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
WINDOW = Window(T0 - timedelta(days=7), T0 + timedelta(days=60))
CAL = CalendarRef("alice", "alice@example.com")
OTHER = CalendarRef("bob", "bob@example.com")


def event(subject: str = "Visit", hours: int = 0) -> EventData:
    return EventData(subject, T0 + timedelta(hours=hours), T0 + timedelta(hours=hours + 1))


@pytest.fixture
def server() -> MemoryServer:
    return MemoryServer()


@pytest.fixture
async def provider(server: MemoryServer) -> MemoryProvider:
    async with MemoryProvider(AccountConfig("mem", "memory", {"server": server})) as p:
        yield p


async def test_requests_are_counted_per_operation_and_mailbox(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    await provider.fetch(CAL, WINDOW, None)
    await provider.push(CAL, [PushItem("h1", event())])
    await provider.fetch(OTHER, WINDOW, None)
    assert server.requests == 3
    assert server.requests_by_operation == {"fetch": 2, "push": 1}
    assert server.requests_by_mailbox == {"alice@example.com": 2, "bob@example.com": 1}
    assert provider.requests == 3


async def test_fail_next_raises_copies_then_recovers(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.fail_next(2, TransientError("503", retry_after=3), operation="fetch")
    await provider.push(CAL, [PushItem("h1", event())])  # other operations unaffected
    for _ in range(2):
        with pytest.raises(TransientError) as info:
            await provider.fetch(CAL, WINDOW, None)
        assert info.value.retry_after == 3
    assert len((await provider.fetch(CAL, WINDOW, None)).changed) == 1


async def test_throttle_is_a_429_with_retry_after(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.throttle(1, retry_after=2.5, mailbox="ALICE@example.com")
    await provider.fetch(OTHER, WINDOW, None)  # another mailbox is not throttled
    with pytest.raises(TransientError, match="429") as info:
        await provider.fetch(CAL, WINDOW, None)
    assert info.value.retry_after == 2.5


async def test_revoke_auth_per_mailbox_and_account(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.revoke_auth("bob@example.com")
    await provider.fetch(CAL, WINDOW, None)
    with pytest.raises(AuthError) as info:
        await provider.fetch(OTHER, WINDOW, None)
    assert info.value.mailbox == "bob@example.com"
    server.revoke_auth()
    with pytest.raises(AuthError) as info:
        await provider.fetch(CAL, WINDOW, None)
    assert info.value.mailbox is None
    server.restore_auth()
    await provider.fetch(OTHER, WINDOW, None)


async def test_crash_after_write_happens_after_the_write(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.crash_after_write(2)
    items = [PushItem(f"h{i}", event(hours=i)) for i in range(3)]
    with pytest.raises(SimulatedCrash):
        await provider.push(CAL, items)
    # the first two items were written before the crash, the third never was
    assert sorted(e.hub_id for e in server.events(CAL)) == ["h0", "h1"]
    # the retried create links to what exists: no duplicates
    outcomes = await provider.push(CAL, items)
    assert all(isinstance(o, PushResult) for o in outcomes)
    assert sorted(e.hub_id for e in server.events(CAL)) == ["h0", "h1", "h2"]


async def test_crash_after_delete(server: MemoryServer, provider: MemoryProvider) -> None:
    (created,) = await provider.push(CAL, [PushItem("h1", event())])
    assert isinstance(created, PushResult)
    server.crash_after_write()
    with pytest.raises(SimulatedCrash):
        await provider.delete(CAL, created.remote_id, created.version)
    assert server.events(CAL) == []


async def test_race_makes_the_write_fail_its_precondition(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    (created,) = await provider.push(CAL, [PushItem("h1", event())])
    assert isinstance(created, PushResult)
    server.race(lambda: server.move(CAL, created.remote_id, T0, T0 + timedelta(hours=3)))
    item = PushItem("h1", event("Renamed"), created.remote_id, created.version)
    (outcome,) = await provider.push(CAL, [item])
    assert isinstance(outcome, PreconditionFailed)
    assert server.get_event(CAL, created.remote_id).data.end == T0 + timedelta(hours=3)


async def test_targeted_race_waits_for_a_write_of_its_event(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    one, two = await provider.push(CAL, [PushItem("h1", event()), PushItem("h2", event())])
    assert isinstance(one, PushResult) and isinstance(two, PushResult)
    server.race(lambda: server.delete(CAL, two.remote_id), remote_id=two.remote_id)
    await provider.delete(CAL, one.remote_id, one.version)  # not its target: nothing happens
    assert server.get_event(CAL, two.remote_id) is not None
    with pytest.raises(NotFoundError):
        await provider.delete(CAL, two.remote_id, two.version)


async def test_fail_item_is_a_per_item_outcome(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.fail_item("h2", PermanentError("quota exceeded"))
    outcomes = await provider.push(CAL, [PushItem("h1", event()), PushItem("h2", event())])
    assert isinstance(outcomes[0], PushResult)
    assert isinstance(outcomes[1], PermanentError)
    assert outcomes[1].item == "h2"


async def test_touch_bumps_the_version_not_the_content(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    rid = server.create_external(CAL, event())
    first = await provider.fetch(CAL, WINDOW, None)
    server.touch(CAL)
    delta = await provider.fetch(CAL, WINDOW, first.cursor)
    (again,) = delta.changed
    assert again.remote_id == rid
    assert again.version != first.changed[0].version
    assert again.data.content_hash() == first.changed[0].data.content_hash()


async def test_modified_time_comes_from_the_server_clock(provider: MemoryProvider) -> None:
    assert (await provider.push_one(CAL, PushItem("h0", event()))).remote_id
    assert (await provider.get(CAL, provider.server.events(CAL)[0].remote_id)).modified is None
    times = iter([T0, T0 + timedelta(minutes=5)])
    provider.server.clock = lambda: next(times)
    created = await provider.push_one(CAL, PushItem("h1", event()))
    assert (await provider.get(CAL, created.remote_id)).modified == T0
    provider.server.move(CAL, created.remote_id, T0, T0 + timedelta(hours=2))
    (moved,) = [e for e in (await provider.fetch(CAL, WINDOW, None)).changed if e.hub_id == "h1"]
    assert moved.modified == T0 + timedelta(minutes=5)


async def test_cursor_expires_after_too_many_changes(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.cursor_max_changes = 3
    first = await provider.fetch(CAL, WINDOW, None)
    for i in range(3):
        server.create_external(CAL, event(hours=i))
    assert len((await provider.fetch(CAL, WINDOW, first.cursor)).changed) == 3
    server.create_external(CAL, event(hours=5))
    with pytest.raises(CursorInvalid):
        await provider.fetch(CAL, WINDOW, first.cursor)


async def test_garbage_cursor_is_invalid(provider: MemoryProvider) -> None:
    with pytest.raises(CursorInvalid):
        await provider.fetch(CAL, WINDOW, "deltatoken=abc")


async def test_moved_window_gives_a_full_listing(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.create_external(CAL, event())
    first = await provider.fetch(CAL, WINDOW, None)
    next_day = Window(WINDOW.start + timedelta(days=1), WINDOW.end + timedelta(days=1))
    result = await provider.fetch(CAL, next_day, first.cursor)
    assert result.full
    assert len(result.changed) == 1


async def test_event_moved_out_of_the_window_is_reported_as_left(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    rid = server.create_external(CAL, event())
    first = await provider.fetch(CAL, WINDOW, None)
    server.move(CAL, rid, WINDOW.end + timedelta(days=1), WINDOW.end + timedelta(days=2))
    delta = await provider.fetch(CAL, WINDOW, first.cursor)
    assert delta.left_window == [rid]
    assert delta.changed == [] and delta.deleted == []


async def test_bad_event_is_skipped_and_get_refuses_it(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    good = server.create_external(CAL, event())
    bad = server.add_bad_event(CAL, "VEVENT without DTSTART", data=event(hours=2))
    result = await provider.fetch(CAL, WINDOW, None)
    assert [e.remote_id for e in result.changed] == [good]
    assert [(s.remote_id, s.reason) for s in result.skipped] == [(bad, "VEVENT without DTSTART")]
    with pytest.raises(PermanentError):
        await provider.get(CAL, bad)


async def test_removed_calendar_is_not_found(
    server: MemoryServer, provider: MemoryProvider
) -> None:
    server.remove_calendar(CAL)
    with pytest.raises(NotFoundError):
        await provider.fetch(CAL, WINDOW, None)
    checks = await provider.check([CAL, OTHER], write=True)
    assert [c.ok for c in checks] == [True, False, True, True]


async def test_batch_larger_than_max_batch_is_refused(server: MemoryServer) -> None:
    options = {"server": server, "max_batch": 2}
    async with MemoryProvider(AccountConfig("mem", "memory", options)) as provider:
        items = [PushItem(f"h{i}", event(hours=i)) for i in range(3)]
        with pytest.raises(PermanentError, match="max_batch"):
            await provider.push(CAL, items)
    assert server.events(CAL) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 0}, "accounts.mem.max_batch"),
        ({"latency_ms": "fast"}, "accounts.mem.latency_ms"),
        ({"server": object()}, "accounts.mem.server"),
        ({"server": MemoryServer(), "state_file": "x.json"}, "either server or state_file"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemoryProvider(AccountConfig("mem", "memory", options))


async def test_state_file_persists_between_providers(tmp_path: Path) -> None:
    path = tmp_path / "calendars.json"
    ny = datetime(2026, 5, 4, 9, 0).astimezone(UTC).astimezone()  # an offset other than UTC
    data = replace(event("Café ☕ 会議"), start=ny, end=ny + timedelta(hours=1))
    options = {"state_file": str(path)}
    async with MemoryProvider(AccountConfig("mem", "memory", options)) as first:
        (created,) = await first.push(CAL, [PushItem("h1", data)])
        assert isinstance(created, PushResult)
        cursor = (await first.fetch(CAL, WINDOW, None)).cursor
    # the agent edits "between two runs", through the file
    agent = MemoryServer.load(path)
    holiday = EventData("Holiday", T0.date(), T0.date() + timedelta(days=1))
    holiday_id = agent.create_external(CAL, holiday)
    agent.save(path)
    async with MemoryProvider(AccountConfig("mem", "memory", options)) as second:
        fetched = await second.get(CAL, created.remote_id)
        assert fetched.hub_id == "h1" and fetched.version == created.version
        assert fetched.data == data
        delta = await second.fetch(CAL, WINDOW, cursor)
        assert [(e.remote_id, e.data) for e in delta.changed] == [(holiday_id, holiday)]


async def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "calendars.json"
    path.write_text(json.dumps({"format": 1, "calendars": "nope"}))
    provider = MemoryProvider(AccountConfig("mem", "memory", {"state_file": str(path)}))
    with pytest.raises(ValueError, match=r"accounts\.mem\.state_file .*malformed"):
        await provider.open()
