"""Both stores (SQLite, PostgreSQL): every Store and Tx method, no-op puts, tombstones, the
overlap filter; and what is SQLite's own (paths, file modes, pragmas)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hub.model import (
    Agent,
    Appointment,
    Approval,
    CalendarState,
    Conflict,
    Kind,
    Policy,
    PushState,
    Request,
    SyncStatus,
)
from hub.store import ConstraintError, StoreError, open_store
from hub.store.sqlite import SqliteStore


class FakeClock:
    """A clock the test moves by hand, so timestamps are exact."""

    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(
    make_store: Callable[..., SqliteStore], clock: FakeClock
) -> AsyncIterator[SqliteStore]:
    async with make_store(clock=clock) as opened:
        yield opened


@pytest.fixture
async def sqlite_store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "hub.db", clock=clock) as opened:
        yield opened


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=UTC)


def appt(appt_id: str, agent_id: str = "alice", **fields: Any) -> Appointment:
    fields.setdefault("start", at(10))
    fields.setdefault("end", at(11))
    return Appointment(
        id=appt_id, agent_id=agent_id, kind=fields.pop("kind", Kind.MANUAL), **fields
    )


async def add_agents(store: SqliteStore, *ids: str) -> None:
    async with store.transaction("api") as tx:
        for agent_id in ids:
            await tx.put_agent(
                Agent(id=agent_id, name=agent_id.title(), feed_token=f"tok-{agent_id}")
            )


@pytest.fixture
async def alice(store: SqliteStore) -> SqliteStore:
    await add_agents(store, "alice")
    return store


async def audit_count(store: SqliteStore) -> int:
    return len(await store.list_audit(limit=1_000_000))


# agents ----------------------------------------------------------------------------------
async def test_agent_round_trip_and_timestamps(store: SqliteStore, clock: FakeClock) -> None:
    agent = Agent(
        id="alice",
        name="Alice",
        email="alice@example.com",
        account="o365",
        calendar="cal",
        create_appointments=Policy.ASK,
        import_external=True,
        colour="#3a87ad",
        feed_token="secret",
        source="config",
    )
    async with store.transaction("api") as tx:
        stored = await tx.put_agent(agent)
    assert stored.created_at == stored.updated_at == clock.now
    got = await store.get_agent("alice")
    assert got == stored
    assert got is not None and got.create_appointments is Policy.ASK
    assert await store.list_agents() == [stored]
    assert await store.get_agent("bob") is None

    clock.advance(minutes=5)
    async with store.transaction("api") as tx:
        renamed = await tx.put_agent(Agent(id="alice", name="Alice Smith", feed_token="secret"))
    assert renamed.created_at == stored.created_at
    assert renamed.updated_at == clock.now
    entries = await store.list_audit(entity_id="alice")
    assert [e.action for e in entries] == ["update", "create"]
    assert "name" in entries[0].detail["changed"]
    assert "secret" not in str(entries[0].detail)


async def test_unchanged_agent_put_writes_nothing(alice: SqliteStore, clock: FakeClock) -> None:
    before = await alice.get_agent("alice")
    count = await audit_count(alice)
    clock.advance(hours=1)
    seen: list[Any] = []
    alice.add_listener(lambda origin, ids: seen.append(ids))
    async with alice.transaction("api") as tx:
        await tx.put_agent(Agent(id="alice", name="Alice", feed_token="tok-alice"))
    assert await alice.get_agent("alice") == before
    assert await audit_count(alice) == count
    assert seen == []


async def test_feed_token_lookup(store: SqliteStore) -> None:
    await add_agents(store, "alice", "bob")
    async with store.transaction("api") as tx:
        await tx.put_agent(Agent(id="carol", name="Carol"))  # no token yet
    found = await store.get_agent_by_feed_token("tok-bob")
    assert found is not None and found.id == "bob"
    assert await store.get_agent_by_feed_token("") is None
    assert await store.get_agent_by_feed_token("tok-nobody") is None


async def test_feed_token_shared_by_two_agents_is_refused(store: SqliteStore) -> None:
    await add_agents(store, "alice")
    with pytest.raises(ConstraintError, match="feed token"):
        async with store.transaction("api") as tx:
            await tx.put_agent(Agent(id="bob", name="Bob", feed_token="tok-alice"))
    assert await store.get_agent("bob") is None


async def test_bad_agent_is_refused(store: SqliteStore) -> None:
    bad = Agent(id="bob", name="Bob", create_appointments="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="agent bob: create_appointments: 'sometimes' is not"):
        async with store.transaction("api") as tx:
            await tx.put_agent(bad)
    assert await store.list_agents() == []


async def test_delete_agent_cascades(alice: SqliteStore) -> None:
    await add_agents(alice, "bob")
    async with alice.transaction("api") as tx:
        await tx.put_appointment(appt("a1"))
        await tx.put_appointment(appt("b1", "bob"))
        await tx.add_approval(Approval("ap1", "a1", "alice", created_at=at(9)))
        await tx.put_status(SyncStatus("alice", "a1", "o365", "r1", "v1", "h", "h"))
        await tx.put_calendar_state(CalendarState("alice", "o365", cursor="c1"))
        await tx.add_conflict(Conflict("c1", "alice", "a1", "o365", "newest", "hub"))
    seen: list[frozenset[str]] = []
    alice.add_listener(lambda origin, ids: seen.append(ids))
    async with alice.transaction("api") as tx:
        assert await tx.delete_agent("alice") is True
        assert await tx.delete_agent("nobody") is False
    assert await alice.get_agent("alice") is None
    assert await alice.list_appointments(include_deleted=True) == [
        await alice.get_appointment("b1")
    ]
    assert await alice.get_approval("ap1") is None
    assert await alice.list_status("alice", "o365") == []
    assert await alice.get_calendar_state("alice") is None
    # Conflicts are history, like the audit log: they stay.
    assert [c.id for c in await alice.list_conflicts()] == ["c1"]
    assert seen == [frozenset({"alice"})]


# requests --------------------------------------------------------------------------------
async def test_request_round_trip_and_no_op(store: SqliteStore, clock: FakeClock) -> None:
    request = Request(
        id="r1",
        subject="Printer",
        customer="ACME",
        planned_start=date(2026, 5, 4),
        estimate_minutes=90,
        planned_agents=("alice", "bob"),
    )
    async with store.transaction("rule") as tx:
        stored = await tx.put_request(request)
    assert stored.updated_at == clock.now
    assert await store.get_request("r1") == stored
    assert await store.get_request("r2") is None
    count = await audit_count(store)
    clock.advance(minutes=1)
    async with store.transaction("rule") as tx:
        assert await tx.put_request(request) == stored
        moved = await tx.put_request(replace(request, planned_start=at(9)))
    assert moved.planned_start == at(9)
    assert await audit_count(store) == count + 1


# appointments ----------------------------------------------------------------------------
async def test_appointment_round_trip(alice: SqliteStore, clock: FakeClock) -> None:
    timed = appt(
        "a1",
        subject="Visit",
        note="bring cable",
        location="HQ",
        private=True,
        show_as="tentative",
        request_id="r1",
        group_id="g1",
        action_id="act1",
        push_state=PushState.PENDING,
        subject_override="Edited",
        body_override="Edited body",
        start=datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        end=datetime(2026, 5, 1, 13, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    all_day = appt("a2", kind=Kind.PLANNED, start=date(2026, 5, 2), end=date(2026, 5, 3))
    async with alice.transaction("rule") as tx:
        stored = await tx.put_appointments([timed, all_day])
    got = await alice.get_appointment("a1")
    assert got == stored[0]
    assert got is not None
    assert isinstance(got.start, datetime) and got.start.tzinfo == UTC  # stored as UTC
    assert got.start == at(10)
    assert (got.subject_override, got.body_override) == ("Edited", "Edited body")
    assert (got.version, got.origin, got.created_at) == (1, "rule", clock.now)
    day = await alice.get_appointment("a2")
    assert day is not None and day.all_day and day.start == date(2026, 5, 2)
    assert day.end == date(2026, 5, 3)


async def test_unchanged_put_writes_nothing(alice: SqliteStore, clock: FakeClock) -> None:
    async with alice.transaction("api") as tx:
        first = await tx.put_appointment(appt("a1", subject="Visit"))
    count = await audit_count(alice)
    seen: list[Any] = []
    alice.add_listener(lambda origin, ids: seen.append(ids))
    clock.advance(hours=1)
    same_instant = at(12, day=1).astimezone(timezone(timedelta(hours=2)))
    async with alice.transaction("sync:o365") as tx:
        again = await tx.put_appointment(
            appt("a1", subject="Visit", start=same_instant - timedelta(hours=2), version=7)
        )
    assert again == first
    assert await alice.get_appointment("a1") == first
    assert await audit_count(alice) == count
    assert seen == []


async def test_unchanged_puts_change_no_rows(alice: SqliteStore) -> None:
    status = SyncStatus("alice", "a1", "o365", "r1", "v1", "h", "h", start=at(10), end=at(11))
    state = CalendarState("alice", "o365", cursor="c1")
    async with alice.transaction("sync:o365") as tx:
        stored = await tx.put_appointment(appt("a1"))
        await tx.put_status(status)
        await tx.put_calendar_state(state)
    before = alice.total_changes
    async with alice.transaction("sync:o365") as tx:
        await tx.put_appointment(stored)
        await tx.put_appointments([stored])
        await tx.put_statuses([status, status])
        await tx.put_calendar_state(state)
        await tx.put_agent(Agent(id="alice", name="Alice", feed_token="tok-alice"))
    assert alice.total_changes == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start", at(9)),
        ("end", at(12)),
        ("subject", "New"),
        ("note", "n"),
        ("location", "l"),
        ("private", True),
        ("show_as", "free"),
        ("kind", Kind.PLANNED),
        ("request_id", "r9"),
        ("group_id", "g9"),
        ("action_id", "x9"),
        ("push_state", PushState.LOCAL),
        ("subject_override", "s"),
        ("body_override", "b"),
        ("deleted", True),
    ],
)
async def test_each_content_field_counts_as_a_change(
    alice: SqliteStore, clock: FakeClock, field: str, value: Any
) -> None:
    async with alice.transaction("api") as tx:
        first = await tx.put_appointment(appt("a1"))
    clock.advance(minutes=3)
    async with alice.transaction("sync:o365") as tx:
        changed = await tx.put_appointment(first.evolve(**{field: value}))
    assert changed.version == 2
    assert changed.updated_at == clock.now
    assert changed.created_at == first.created_at
    assert changed.origin == "sync:o365"
    assert getattr(await alice.get_appointment("a1", include_deleted=True), field) == value
    entry = (await alice.list_audit(entity_id="a1"))[0]
    assert entry.origin == "sync:o365"
    assert entry.detail["changed"] == [field]


async def test_bulk_put_mixes_inserts_updates_and_no_ops(alice: SqliteStore) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_appointments([appt("a1"), appt("a2")])
    async with alice.transaction("sync:o365") as tx:
        stored = await tx.put_appointments(
            [appt("a1"), appt("a2", subject="moved"), appt("a3"), appt("a3", subject="twice")]
        )
    assert [(a.id, a.version, a.subject) for a in stored] == [
        ("a1", 1, ""),
        ("a2", 2, "moved"),
        ("a3", 1, ""),
        ("a3", 2, "twice"),
    ]
    a3 = await alice.get_appointment("a3")
    assert a3 is not None and (a3.version, a3.subject) == (2, "twice")
    assert [e.action for e in await alice.list_audit(entity_id="a3")] == ["update", "create"]


async def test_bad_appointments_are_refused_and_nothing_is_written(alice: SqliteStore) -> None:
    naive = datetime(2026, 5, 1, 10, 0)
    cases: list[tuple[Appointment, type[Exception], str]] = [
        (appt("bad", start=naive), ValueError, "timezone-aware"),
        (appt("bad", start=at(12), end=at(11)), ValueError, "end is before start"),
        (appt("bad", start=date(2026, 5, 1)), ValueError, "both"),
        (appt("bad", agent_id="ghost"), ConstraintError, "unknown agent 'ghost'"),
        (appt("bad", kind="meeting"), ValueError, "kind: 'meeting' is not one of planned, "),
        (appt("bad", push_state="maybe"), ValueError, "push_state: 'maybe' is not one of local"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            async with alice.transaction("api") as tx:
                await tx.put_appointments([appt("good"), bad])
    assert await alice.list_appointments(include_deleted=True) == []


async def test_an_appointment_cannot_change_agent(alice: SqliteStore) -> None:
    await add_agents(alice, "bob")
    async with alice.transaction("api") as tx:
        await tx.put_appointment(appt("a1"))
    with pytest.raises(ConstraintError, match="belongs to agent 'alice'"):
        async with alice.transaction("api") as tx:
            await tx.put_appointment(appt("a1", agent_id="bob"))


async def test_a_refused_batch_leaves_no_trace_in_its_transaction(alice: SqliteStore) -> None:
    await add_agents(alice, "bob")
    async with alice.transaction("api") as tx:
        await tx.put_appointment(appt("a1"))
    count = await audit_count(alice)
    seen: list[frozenset[str]] = []
    alice.add_listener(lambda origin, ids: seen.append(ids))
    async with alice.transaction("api") as tx:
        with pytest.raises(ConstraintError):
            await tx.put_appointments([appt("new", "bob"), appt("a1", agent_id="bob")])
        # The caller went on and committed: nothing of the refused batch was written.
    assert await alice.get_appointment("new") is None
    assert await audit_count(alice) == count
    assert seen == []


async def test_tombstone_then_purge(alice: SqliteStore, clock: FakeClock) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_appointment(appt("a1"))
        await tx.add_approval(Approval("ap1", "a1", "alice", created_at=at(9)))
        await tx.put_status(SyncStatus("alice", "a1", "o365", "r1", "v1", "h", "h"))
    clock.advance(minutes=1)
    seen: list[tuple[str, frozenset[str]]] = []
    alice.add_listener(lambda origin, ids: seen.append((origin, ids)))
    async with alice.transaction("api") as tx:
        tomb = await tx.delete_appointment("a1")
        assert await tx.delete_appointment("a1") == tomb  # already a tombstone: no change
        assert await tx.delete_appointment("missing") is None
    assert tomb is not None
    assert (tomb.deleted, tomb.deleted_at, tomb.version) == (True, clock.now, 2)
    assert await alice.get_appointment("a1") is None
    assert await alice.get_appointment("a1", include_deleted=True) == tomb
    assert await alice.list_appointments() == []
    assert await alice.list_appointments(include_deleted=True) == [tomb]
    assert [e.action for e in await alice.list_audit(entity_id="a1")] == ["delete", "create"]
    assert seen == [("api", frozenset({"alice"}))]

    async with alice.transaction("sync:o365") as tx:
        await tx.purge_appointment("a1")
        await tx.purge_appointment("a1")  # gone already: nothing to do
    assert await alice.get_appointment("a1", include_deleted=True) is None
    assert await alice.list_status("alice", "o365") == []
    assert await alice.get_approval("ap1") is None
    # Forgetting a tombstone sync carried out does not change the calendar.
    assert seen == [("api", frozenset({"alice"}))]


async def test_get_appointments_by_ids(alice: SqliteStore) -> None:
    ids = [f"a{n:04d}" for n in range(1200)]  # more than one IN (...) chunk
    async with alice.transaction("api") as tx:
        await tx.put_appointments([appt(i) for i in ids])
        await tx.delete_appointment("a0001")
        in_tx = await tx.get_appointments(["a0002", "a1100", "nope"])
        assert sorted(in_tx) == ["a0002", "a1100"]
    found = await alice.get_appointments([*ids, "nope", "a0005"])
    assert sorted(found) == [i for i in ids if i != "a0001"]
    assert found["a0002"] == await alice.get_appointment("a0002")
    assert (await alice.get_appointments(["a0001"], include_deleted=True))["a0001"].deleted
    assert await alice.get_appointments([]) == {}


async def test_restoring_a_tombstone_clears_deleted_at(alice: SqliteStore) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_appointment(appt("a1"))
        tomb = await tx.delete_appointment("a1")
        assert tomb is not None
        back = await tx.put_appointment(tomb.evolve(deleted=False))
    assert (back.deleted, back.deleted_at, back.version) == (False, None, 3)
    assert (await alice.list_audit(entity_id="a1"))[0].action == "restore"


async def test_purging_a_live_entry_notifies(alice: SqliteStore) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_appointment(appt("a1"))
    seen: list[frozenset[str]] = []
    alice.add_listener(lambda origin, ids: seen.append(ids))
    async with alice.transaction("api") as tx:
        await tx.purge_appointment("a1")
    assert seen == [frozenset({"alice"})]


# pages of the list ------------------------------------------------------------------------
async def test_list_pages_by_start_then_id_from_a_key(alice: SqliteStore) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_appointments(
            [
                appt("b", start=at(9), end=at(10)),
                appt("a", start=at(9), end=at(10)),
                appt("c", start=at(8), end=at(9)),
                appt("day", kind=Kind.PLANNED, start=date(2026, 5, 1), end=date(2026, 5, 2)),
            ]
        )
    whole = [a.id for a in await alice.list_appointments()]
    assert whole == ["day", "c", "a", "b"]
    seen: list[str] = []
    after = None
    for _ in range(len(whole)):
        page = await alice.list_appointments(agent_id="alice", after=after, limit=1)
        if not page:
            break
        seen += [a.id for a in page]
        after = (page[-1].start, page[-1].id)
    assert seen == whole
    assert [a.id for a in await alice.list_appointments(after=(at(9), "a"), limit=5)] == ["b"]
    assert [a.id for a in await alice.list_appointments(limit=2)] == ["day", "c"]


# the overlap filter ------------------------------------------------------------------------
async def test_overlap_filter_window_edges_and_all_day(alice: SqliteStore) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_appointments(
            [
                appt("ends-at-window-start", start=at(8), end=at(10)),
                appt("crosses-window-start", start=at(9), end=at(10, 30)),
                appt("starts-at-window-start", start=at(10), end=at(11)),
                appt("zero-length-at-start", start=at(10), end=at(10)),
                appt("inside", start=at(11), end=at(11, 30)),
                appt("crosses-window-end", start=at(11, 30), end=at(13)),
                appt("starts-at-window-end", start=at(12), end=at(13)),
                appt(
                    "day-of-window", kind=Kind.PLANNED, start=date(2026, 5, 1), end=date(2026, 5, 2)
                ),
                appt(
                    "day-before", kind=Kind.PLANNED, start=date(2026, 4, 30), end=date(2026, 5, 1)
                ),
                appt("day-after", kind=Kind.PLANNED, start=date(2026, 5, 2), end=date(2026, 5, 3)),
            ]
        )
    found = await alice.list_appointments(agent_id="alice", start=at(10), end=at(12))
    assert [a.id for a in found] == [
        "day-of-window",  # midnight UTC sorts first
        "crosses-window-start",
        "starts-at-window-start",
        "zero-length-at-start",
        "inside",
        "crosses-window-end",
    ]
    days = await alice.list_appointments(start=date(2026, 5, 2), end=date(2026, 5, 3))
    assert [a.id for a in days] == ["day-after"]
    until = await alice.list_appointments(end=at(9))
    assert [a.id for a in until] == ["day-before", "day-of-window", "ends-at-window-start"]


async def test_list_filters(alice: SqliteStore) -> None:
    await add_agents(alice, "bob")
    async with alice.transaction("api") as tx:
        await tx.put_appointments(
            [
                appt("a1", request_id="r1", group_id="g1", start=at(12), end=at(13)),
                appt("b1", "bob", request_id="r1", group_id="g1", start=at(12), end=at(13)),
                appt("a2", request_id="r2", kind=Kind.ACTION),
                appt("a3", kind=Kind.EXTERNAL, push_state=PushState.EXTERNAL),
            ]
        )

    async def ids(**filters: Any) -> list[str]:
        return [a.id for a in await alice.list_appointments(**filters)]

    assert await ids() == ["a2", "a3", "a1", "b1"]  # by start, then id
    assert await ids(agent_id="bob") == ["b1"]
    assert await ids(request_id="r1") == ["a1", "b1"]
    assert await ids(group_id="g1", agent_id="alice") == ["a1"]
    assert await ids(kind=Kind.ACTION) == ["a2"]
    assert await ids(kind=Kind.EXTERNAL, request_id="r1") == []
    with pytest.raises(ValueError, match="timezone-aware"):
        await alice.list_appointments(start=datetime(2026, 5, 1))


# approvals and conflicts ---------------------------------------------------------------
async def test_approvals(alice: SqliteStore, clock: FakeClock) -> None:
    async with alice.transaction("rule") as tx:
        await tx.put_appointments([appt("a1"), appt("a2")])
        first = await tx.add_approval(Approval("ap1", "a1", "alice", created_at=at(9)))
        await tx.add_approval(Approval("ap2", "a2", "alice", created_at=at(9, 5)))
    assert first == await alice.get_approval("ap1")
    assert [a.id for a in await alice.list_approvals()] == ["ap1", "ap2"]
    clock.advance(minutes=2)
    async with alice.transaction("approval") as tx:
        decided = await tx.decide_approval("ap1", True, "admin")
        with pytest.raises(KeyError):
            await tx.decide_approval("nope", True, "admin")
        with pytest.raises(ValueError, match="already decided"):
            await tx.decide_approval("ap1", False, "admin")
    assert (decided.approved, decided.decided_by, decided.decided_at) == (True, "admin", clock.now)
    assert await alice.get_approval("ap1") == decided
    assert [a.id for a in await alice.list_approvals()] == ["ap2"]
    assert [a.id for a in await alice.list_approvals(pending_only=False)] == ["ap1", "ap2"]
    entry = (await alice.list_audit(entity_id="ap1"))[0]
    assert (entry.action, entry.origin, entry.detail) == ("approve", "approval", {"by": "admin"})
    with pytest.raises(ConstraintError, match="approval 'ap3'"):
        async with alice.transaction("rule") as tx:
            await tx.add_approval(Approval("ap3", "missing", "alice", created_at=at(9)))


async def test_conflicts_newest_first_with_snapshots(alice: SqliteStore, clock: FakeClock) -> None:
    async with alice.transaction("sync:o365") as tx:
        for n in range(3):
            clock.advance(seconds=1)
            await tx.add_conflict(
                Conflict(
                    f"c{n}",
                    "alice" if n != 1 else "bob",
                    "a1",
                    "o365",
                    "newest",
                    "remote",
                    hub={"start": at(10), "kind": Kind.MANUAL, "tags": {"x"}},
                    remote={"subject": "Größe"},
                    detail="both moved",
                )
            )
    conflicts = await alice.list_conflicts()
    assert [c.id for c in conflicts] == ["c2", "c1", "c0"]
    assert conflicts[0].hub == {"start": "2026-05-01T10:00:00Z", "kind": "manual", "tags": ["x"]}
    assert conflicts[0].remote == {"subject": "Größe"}
    assert conflicts[0].created_at == clock.now
    assert [c.id for c in await alice.list_conflicts(agent_id="alice", limit=1)] == ["c2"]
    with pytest.raises(ConstraintError, match="already recorded"):
        async with alice.transaction("sync:o365") as tx:
            await tx.add_conflict(Conflict("c0", "alice", "a1", "o365", "newest", "hub"))


# sync status and calendar state --------------------------------------------------------
async def test_status_rows(alice: SqliteStore, clock: FakeClock) -> None:
    row = SyncStatus(
        "alice",
        "a1",
        "o365",
        "r1",
        "v1",
        "hh",
        "rh",
        state="creating",
        external=True,
        series_id="s1",
        start=at(10),
        end=at(11),
    )
    async with alice.transaction("sync:o365") as tx:
        await tx.put_statuses([row, SyncStatus("alice", "a2", "o365", None, None, None, None)])
        await tx.put_status(SyncStatus("alice", "a1", "phones", "x", "y", None, None))
    stored = await alice.list_status("alice", "o365")
    assert [s.appointment_id for s in stored] == ["a1", "a2"]
    assert stored[0] == replace(row, updated_at=clock.now)
    first_write = clock.now

    clock.advance(minutes=1)
    async with alice.transaction("sync:o365") as tx:
        await tx.put_status(row)  # unchanged: no write, updated_at stays
        await tx.put_status(replace(row, remote_version="v2"))
        assert [s.remote_version for s in await tx.list_status("alice", "o365")] == ["v2", None]
    assert (await alice.list_status("alice", "o365"))[0].updated_at == clock.now

    clock.advance(minutes=1)
    async with alice.transaction("sync:o365") as tx:
        await tx.put_status(replace(row, remote_version="v2"))
        await tx.delete_status("alice", "a2", "o365")
    stored = await alice.list_status("alice", "o365")
    assert [(s.appointment_id, s.updated_at) for s in stored] == [
        ("a1", first_write + timedelta(minutes=1))
    ]
    assert [s.appointment_id for s in await alice.list_status("alice", "phones")] == ["a1"]
    with pytest.raises(ConstraintError, match="unknown agent 'ghost'"):
        async with alice.transaction("sync:o365") as tx:
            await tx.put_status(SyncStatus("ghost", "a1", "o365", None, None, None, None))


async def test_hub_seq_counts_what_concerns_each_agent_s_calendar(alice: SqliteStore) -> None:
    await add_agents(alice, "bob")
    status = SyncStatus("alice", "a1", "o365", "r1", "v1", "h", "h")

    async def moved(write: Any) -> dict[str, bool]:
        """Which agents' counters the transaction running ``write(tx)`` raised."""
        before = {a: await alice.get_hub_seq(a) for a in ("alice", "bob")}
        async with alice.transaction("api") as tx:
            await write(tx)
        return {a: (await alice.get_hub_seq(a) or 0) > (before[a] or 0) for a in before}

    alice_only = {"alice": True, "bob": False}
    nobody = {"alice": False, "bob": False}
    a1 = appt("a1", request_id="R1")
    assert await moved(lambda tx: tx.put_appointment(a1)) == alice_only
    assert await moved(lambda tx: tx.put_appointment(a1)) == nobody  # unchanged: no write
    assert await moved(lambda tx: tx.put_appointment(appt("b1", "bob"))) == {
        "alice": False,
        "bob": True,
    }
    # A request feeds the templates of the appointments that refer to it.
    assert await moved(lambda tx: tx.put_request(Request("R1", subject="Printer"))) == alice_only
    assert await moved(lambda tx: tx.put_request(Request("R1", subject="Printer"))) == nobody
    assert await moved(lambda tx: tx.put_request(Request("R2", subject="Other"))) == nobody
    assert await moved(lambda tx: tx.put_agent(Agent("alice", "Alice Jones"))) == alice_only
    assert await moved(lambda tx: tx.put_agent(Agent("alice", "Alice Jones"))) == nobody
    approval = Approval("p1", "a1", "alice", created_at=at(9))
    assert await moved(lambda tx: tx.add_approval(approval)) == alice_only
    assert await moved(lambda tx: tx.decide_approval("p1", True, "lead")) == alice_only
    assert await moved(lambda tx: tx.put_status(status)) == alice_only
    assert await moved(lambda tx: tx.put_status(status)) == nobody
    assert await moved(lambda tx: tx.delete_status("alice", "a1", "o365")) == alice_only
    assert await moved(lambda tx: tx.delete_appointment("a1")) == alice_only
    assert await moved(lambda tx: tx.purge_appointment("a1")) == alice_only
    state = CalendarState("alice", "o365", cursor="c1")
    assert await moved(lambda tx: tx.put_calendar_state(state)) == nobody  # the engine's own
    assert await alice.get_hub_seq("ghost") is None


async def test_changed_since_names_the_appointments_each_write_concerns(
    alice: SqliteStore,
) -> None:
    await add_agents(alice, "bob")

    async def changed(write: Any) -> dict[str, list[str] | None]:
        """Which appointments of each agent the transaction running ``write(tx)`` stamped."""
        before = {a: await alice.get_hub_seq(a) or 0 for a in ("alice", "bob")}
        async with alice.transaction("api") as tx:
            await write(tx)
        return {a: await alice.changed_since(a, seq, 10) for a, seq in before.items()}

    a1 = appt("a1", request_id="R1")
    assert await changed(lambda tx: tx.put_appointment(a1)) == {"alice": ["a1"], "bob": []}
    assert await changed(lambda tx: tx.put_appointment(a1)) == {"alice": [], "bob": []}
    assert await changed(lambda tx: tx.put_request(Request("R1", subject="Printer"))) == {
        "alice": ["a1"],
        "bob": [],
    }
    approval = Approval("p1", "a1", "alice", created_at=at(9))
    assert await changed(lambda tx: tx.add_approval(approval)) == {"alice": ["a1"], "bob": []}
    # A pair without an appointment (a create in flight, an import) is stamped by its row.
    status = SyncStatus("alice", "a9", "o365", "r9", "v1", "h", "h")
    assert await changed(lambda tx: tx.put_status(status)) == {"alice": ["a9"], "bob": []}
    assert await changed(lambda tx: tx.delete_status("alice", "a9", "o365")) == {
        "alice": ["a9"],
        "bob": [],
    }
    assert await changed(lambda tx: tx.put_appointment(appt("b1", "bob"))) == {
        "alice": [],
        "bob": ["b1"],
    }
    assert await changed(lambda tx: tx.delete_appointment("a1")) == {"alice": ["a1"], "bob": []}
    # A purged appointment's stamp stays: its pair is still found by it.
    assert await changed(lambda tx: tx.purge_appointment("a1")) == {"alice": ["a1"], "bob": []}
    # The agent record is no appointment's change (the engine fingerprints the agent).
    assert await changed(lambda tx: tx.put_agent(Agent("alice", "Alice Jones"))) == {
        "alice": [],
        "bob": [],
    }
    many = [appt(f"m{n}") for n in range(3)]
    assert await changed(lambda tx: tx.put_appointments(many)) == {
        "alice": ["m0", "m1", "m2"],
        "bob": [],
    }
    assert await alice.changed_since("alice", 0, 2) is None  # more than the limit
    assert await alice.changed_since("ghost", 0, 10) == []


async def test_prune_drops_the_stamps_of_appointments_gone_with_their_pairs(
    alice: SqliteStore,
) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_appointments([appt("a1"), appt("a2"), appt("a3")])
        await tx.put_status(SyncStatus("alice", "a2", "o365", "r2", "v1", "h", "h"))
    async with alice.transaction("api") as tx:
        for appt_id in ("a1", "a2"):
            await tx.purge_appointment(appt_id)
        # A pair whose appointment is gone still needs its stamp (its remote delete).
        await tx.put_status(SyncStatus("alice", "a2", "o365", "r2", "v1", "h", "h"))
    now = datetime.now(UTC) - timedelta(days=3650)
    async with alice.transaction("housekeeping") as tx:
        counts = await tx.prune(now, now)
    assert counts["stamps"] == 1
    assert await alice.changed_since("alice", -1, 10) == ["a2", "a3"]


async def test_statuses_are_read_by_appointment_and_by_remote_id(alice: SqliteStore) -> None:
    rows = [SyncStatus("alice", f"a{n}", "o365", f"r{n}", "v1", "h", "h") for n in range(4)]
    async with alice.transaction("sync:o365") as tx:
        await tx.put_statuses(rows)
        await tx.put_status(SyncStatus("alice", "a0", "phones", "r0", "v1", "h", "h"))
        assert [
            s.appointment_id for s in await tx.get_statuses("alice", "o365", remote_ids=["r3"])
        ] == ["a3"]
    assert await alice.has_status("alice", "o365")
    assert not await alice.has_status("alice", "gmail")
    found = await alice.get_statuses(
        "alice", "o365", appointment_ids=["a0", "a2", "nope"], remote_ids=["r2", "r1"]
    )
    assert [(s.appointment_id, s.account) for s in found] == [
        ("a0", "o365"),
        ("a1", "o365"),
        ("a2", "o365"),
    ]
    assert await alice.get_statuses("alice", "o365") == []


async def test_hub_seq_moves_with_the_transaction(alice: SqliteStore) -> None:
    start = await alice.get_hub_seq("alice")
    assert start is not None
    async with alice.transaction("sync:o365") as tx:
        # Buffered status rows count as soon as the transaction reads the counter.
        await tx.put_status(SyncStatus("alice", "a1", "o365", "r1", "v1", "h", "h"))
        assert (await tx.get_hub_seq("alice") or 0) > start
        assert await alice.get_hub_seq("alice") == start  # not committed yet
    committed = await alice.get_hub_seq("alice")
    with pytest.raises(RuntimeError):
        async with alice.transaction("api") as tx:
            await tx.put_appointment(appt("a2"))
            raise RuntimeError("rolled back")
    assert await alice.get_hub_seq("alice") == committed


async def test_calendar_state(alice: SqliteStore) -> None:
    await add_agents(alice, "bob")
    state = CalendarState(
        "alice",
        "o365",
        calendar="cal",
        cursor="delta-1",
        cursor_at=at(9),
        last_pass_at=at(9, 1),
        last_result="ok",
        needs_attention=False,
        allow_empty_once=True,
        notices=["slow"],
        stats={"pulled": 3},
    )
    async with alice.transaction("sync:o365") as tx:
        await tx.put_calendar_state(state)
        await tx.put_calendar_state(CalendarState("bob", "o365", last_result="failed"))
        assert await tx.get_calendar_state("alice") == state
    assert await alice.get_calendar_state("alice") == state
    assert [s.agent_id for s in await alice.list_calendar_states()] == ["alice", "bob"]
    async with alice.transaction("sync:o365") as tx:
        await tx.put_calendar_state(replace(state, cursor="delta-2"))
    got = await alice.get_calendar_state("alice")
    assert got is not None and got.cursor == "delta-2"
    with pytest.raises(ConstraintError, match="unknown agent 'ghost'"):
        async with alice.transaction("sync:o365") as tx:
            await tx.put_calendar_state(CalendarState("ghost", "o365"))


# audit -----------------------------------------------------------------------------------
async def test_audit_entries_carry_origin_and_detail(alice: SqliteStore, clock: FakeClock) -> None:
    async with alice.transaction("approval") as tx:
        await tx.audit("appointment", "a9", "note", reason="manual check", when=at(9))
    entry = (await alice.list_audit(entity_id="a9"))[0]
    assert (entry.entity, entry.action, entry.origin, entry.at) == (
        "appointment",
        "note",
        "approval",
        clock.now,
    )
    assert entry.detail == {"reason": "manual check", "when": "2026-05-01T09:00:00Z"}
    assert len(await alice.list_audit(limit=1)) == 1
    assert [e.entity_id for e in await alice.list_audit()][:2] == ["a9", "alice"]


# reads inside a transaction ------------------------------------------------------------
async def test_tx_reads_see_own_writes_store_reads_do_not(alice: SqliteStore) -> None:
    async with alice.transaction("api") as tx:
        await tx.put_agent(Agent(id="bob", name="Bob"))
        await tx.put_request(Request(id="r1"))
        await tx.put_appointment(appt("a1", request_id="r1"))
        await tx.add_approval(Approval("ap1", "a1", "alice", created_at=at(9)))
        assert (await tx.get_agent("bob")) is not None
        assert (await tx.get_request("r1")) is not None
        assert (await tx.get_appointment("a1")) is not None
        assert [a.id for a in await tx.list_appointments(request_id="r1")] == ["a1"]
        assert (await tx.get_approval("ap1")) is not None
        assert [a.id for a in await tx.list_approvals()] == ["ap1"]
        assert await alice.list_approvals() == []
        # The store's reader sees the last committed state only.
        assert await alice.get_agent("bob") is None
        assert await alice.get_appointment("a1") is None
    assert await alice.get_appointment("a1") is not None


async def test_memory_path_and_open_store(tmp_path: Path) -> None:
    store = open_store(":memory:")
    async with store:
        await add_agents(store, "alice")  # type: ignore[arg-type]
        assert [a.id for a in await store.list_agents()] == ["alice"]
    with pytest.raises(StoreError, match="not open"):
        await store.list_agents()


async def test_unusable_paths_give_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(
        StoreError, match=r"junk\.db: cannot open the database: file is not a database"
    ):
        await SqliteStore(junk).open()
    assert junk.read_bytes().startswith(b"this is not a database")
    with pytest.raises(StoreError, match=r"dir\.db: cannot open the database: No such file"):
        await SqliteStore(tmp_path / "no" / "such" / "dir.db").open()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
async def test_new_database_is_private_to_its_owner(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    async with store.transaction("api") as tx:
        await tx.put_agent(Agent(id="alice", name="Alice", feed_token="secret"))
    assert file_modes(store.path) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def file_modes(path: str) -> dict[str, int]:
    return {s: Path(path + s).stat().st_mode & 0o777 for s in ("", "-wal", "-shm")}


async def test_pragmas(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    rows = await store._rows("PRAGMA foreign_keys")
    assert rows[0][0] == 1
    assert (await store._rows("PRAGMA busy_timeout"))[0][0] == 5000
    assert (await store._rows("PRAGMA synchronous"))[0][0] == 1  # NORMAL
