"""Store transactions on both stores (SQLite, PostgreSQL): all or nothing, listeners after
commit, one writer at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import anyio
import anyio.lowlevel
import psycopg
import pytest

from hub.model import Agent, Appointment, Kind, Request, SyncStatus
from hub.store import StoreError
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from tests import pgserver

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
END = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)


class Boom(Exception):
    pass


class Interrupt(BaseException):
    """Not an Exception: like KeyboardInterrupt or SystemExit."""


@pytest.fixture
async def store(make_store: Callable[..., SqliteStore]) -> AsyncIterator[SqliteStore]:
    async with make_store() as opened:
        async with opened.transaction("api") as tx:
            await tx.put_agent(Agent(id="alice", name="Alice"))
            await tx.put_agent(Agent(id="bob", name="Bob"))
        yield opened


def appt(appt_id: str, agent_id: str = "alice") -> Appointment:
    return Appointment(id=appt_id, agent_id=agent_id, kind=Kind.MANUAL, start=START, end=END)


async def write_some(store: SqliteStore, appt_id: str) -> None:
    async with store.transaction("api") as tx:
        await tx.put_appointment(appt(appt_id))
        await tx.put_status(SyncStatus("alice", appt_id, "o365", "r", "v", "h", "h"))
        await tx.audit("appointment", appt_id, "note")


async def nothing_written(store: SqliteStore) -> bool:
    return (
        await store.list_appointments(include_deleted=True) == []
        and await store.list_status("alice", "o365") == []
        and [e.action for e in await store.list_audit()] == ["create", "create"]  # the agents
    )


@pytest.mark.parametrize("error", [Boom, Interrupt])
async def test_exception_rolls_back_everything_and_no_listener(
    store: SqliteStore, error: type[BaseException]
) -> None:
    seen: list[object] = []
    store.add_listener(lambda origin, ids: seen.append(ids))
    with pytest.raises(error):
        async with store.transaction("api") as tx:
            await tx.put_appointment(appt("a1"))
            await tx.put_status(SyncStatus("alice", "a1", "o365", "r", "v", "h", "h"))
            raise error()
    assert await nothing_written(store)
    assert seen == []
    await write_some(store, "a2")  # the writer is usable again
    assert [a.id for a in await store.list_appointments()] == ["a2"]


async def test_cancelled_task_rolls_back(store: SqliteStore) -> None:
    inside = asyncio.Event()

    async def writer() -> None:
        async with store.transaction("api") as tx:
            await tx.put_appointment(appt("a1"))
            inside.set()
            await asyncio.Event().wait()  # cancelled here

    task = asyncio.create_task(writer())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await nothing_written(store)
    await write_some(store, "a2")
    assert [a.id for a in await store.list_appointments()] == ["a2"]


async def test_anyio_cancel_scope_rolls_back(store: SqliteStore) -> None:
    # anyio re-raises cancellation at every await inside a cancelled scope; the rollback must
    # still run (it is shielded).
    with anyio.CancelScope() as scope:
        async with store.transaction("api") as tx:
            await tx.put_appointment(appt("a1"))
            scope.cancel()
            await anyio.lowlevel.checkpoint()
            await tx.put_appointment(appt("a2"))
    assert scope.cancelled_caught
    assert await nothing_written(store)
    await write_some(store, "a3")


async def test_listener_called_after_commit_with_changed_agents(store: SqliteStore) -> None:
    seen: list[tuple[str, frozenset[str]]] = []
    store.add_listener(lambda origin, ids: seen.append((origin, ids)))
    async with store.transaction("rule") as tx:
        await tx.put_appointment(appt("a1"))
        await tx.put_appointment(appt("b1", "bob"))
        await tx.put_status(SyncStatus("alice", "a1", "o365", "r", "v", "h", "h"))
    async with store.transaction("sync:o365") as tx:
        await tx.put_status(SyncStatus("alice", "a1", "o365", "r", "v2", "h", "h"))
    async with store.transaction("api") as tx:
        await tx.delete_appointment("b1")
    assert seen == [
        ("rule", frozenset({"alice", "bob"})),
        ("api", frozenset({"bob"})),
    ]


async def test_listener_sees_committed_state(store: SqliteStore) -> None:
    # The listener reads the file through a connection of its own, at the moment it is called
    # (a task it started would run later and see the commit anyway): the rows it sees are
    # committed ones, or the call came too early.
    seen: list[list[tuple[str, ...]]] = []

    def read_now(origin: str, ids: frozenset[str]) -> None:
        seen.append(read_elsewhere(store, "SELECT id FROM appointments ORDER BY id"))

    store.add_listener(read_now)
    await write_some(store, "a1")
    assert seen == [[("a1",)]]


def read_elsewhere(store: SqliteStore, sql: str) -> list[tuple[str, ...]]:
    """``sql``'s rows read right now through a connection of the test's own."""
    if isinstance(store, PgStore):
        with psycopg.connect(store.url, password=pgserver.PASSWORD) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        return [tuple(r) for r in db.execute(sql).fetchall()]


async def test_failing_listener_is_logged_not_raised(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken(origin: str, ids: frozenset[str]) -> None:
        raise RuntimeError("listener bug")

    store.add_listener(broken)
    store.add_listener(lambda origin, ids: calls.append(origin))
    with caplog.at_level(logging.ERROR, logger="hub.store.sqlite"):
        await write_some(store, "a1")
    assert calls == ["api"]
    assert "listener bug" in caplog.text
    assert await store.get_appointment("a1") is not None


async def test_readers_never_see_uncommitted_writes(store: SqliteStore) -> None:
    written = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with store.transaction("api") as tx:
            await tx.put_appointment(appt("a1"))
            written.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await written.wait()
    assert await store.get_appointment("a1") is None  # reading does not wait for the writer
    release.set()
    await task
    assert await store.get_appointment("a1") is not None


async def test_concurrent_transactions_serialize(store: SqliteStore) -> None:
    async def worker(n: int) -> None:
        for i in range(10):
            async with store.transaction(f"sync:w{n}") as tx:
                current = await tx.get_appointment("counter")
                await asyncio.sleep(0)  # let the other tasks try to write in between
                subject = str(int(current.subject) + 1) if current else "1"
                await tx.put_appointment(appt("counter").evolve(subject=subject))
                await tx.put_appointment(appt(f"w{n}-{i}", "bob"))

    await asyncio.gather(*(worker(n) for n in range(8)))
    counter = await store.get_appointment("counter")
    assert counter is not None and counter.subject == "80"  # no lost update
    assert counter.version == 80
    assert len(await store.list_appointments(agent_id="bob")) == 80


async def test_two_stores_on_one_database_wait_for_each_other(
    make_store: Callable[..., SqliteStore],
) -> None:
    # As two processes would (calhub serve and calhub sync, or two workers): busy_timeout, or
    # PostgreSQL's write lock, makes the second writer wait instead of failing.
    async with make_store() as one, make_store() as two:
        async with one.transaction("api") as tx:
            await tx.put_agent(Agent(id="alice", name="Alice"))

        async def worker(store: SqliteStore, prefix: str) -> None:
            for i in range(15):
                async with store.transaction("api") as tx:
                    current = await tx.get_request("counter")
                    await asyncio.sleep(0.005)  # the other store tries to write meanwhile
                    count = str(int(current.subject) + 1) if current else "1"
                    await tx.put_request(Request(id="counter", subject=count))
                    await tx.put_appointment(appt(f"{prefix}{i}"))

        await asyncio.gather(worker(one, "one-"), worker(two, "two-"))
        assert len(await one.list_appointments()) == 30
        assert len(await two.list_appointments()) == 30
        counter = await two.get_request("counter")
        assert counter is not None and counter.subject == "30"  # no lost update


async def test_nested_transaction_in_one_task_is_refused(store: SqliteStore) -> None:
    async with store.transaction("api") as tx:
        await tx.put_appointment(appt("a1"))
        with pytest.raises(RuntimeError, match="already open"):
            async with store.transaction("api"):
                pass
    assert await store.get_appointment("a1") is not None


async def test_tx_is_unusable_after_its_block(store: SqliteStore) -> None:
    async with store.transaction("api") as tx:
        pass
    with pytest.raises(StoreError, match="finished"):
        await tx.put_appointment(appt("late"))
    assert await store.get_appointment("late") is None


async def test_close_waits_for_the_transaction_in_flight(store: SqliteStore) -> None:
    inside = asyncio.Event()

    async def writer() -> None:
        async with store.transaction("api") as tx:
            inside.set()
            await asyncio.sleep(0.01)
            await tx.put_appointment(appt("a1"))

    task = asyncio.create_task(writer())
    await inside.wait()
    await store.close()
    await task
    await store.open()
    assert await store.get_appointment("a1") is not None


async def test_closed_store_refuses_transactions(make_store: Callable[..., SqliteStore]) -> None:
    store = make_store()
    with pytest.raises(StoreError, match="not open"):
        async with store.transaction("api"):
            pass


async def test_buffered_writes_keep_their_order(store: SqliteStore) -> None:
    def status(appt_id: str, version: str = "v") -> SyncStatus:
        return SyncStatus("alice", appt_id, "o365", "r", version, "h", "h")

    async with store.transaction("sync:o365") as tx:
        await tx.put_appointment(appt("a1"))
        await tx.put_status(status("a1"))
        await tx.purge_appointment("a1")  # takes the status row written just before
        await tx.put_status(status("a2"))
        await tx.delete_status("alice", "a2", "o365")
        await tx.put_status(status("a3"))
        await tx.put_status(status("a3", "v2"))  # the later write wins
        await tx.put_status(SyncStatus("bob", "b1", "o365", "r", "v", "h", "h"))
        await tx.delete_agent("bob")  # cascades over its buffered row
    assert [
        (s.appointment_id, s.remote_version) for s in await store.list_status("alice", "o365")
    ] == [("a3", "v2")]
    assert await store.list_status("bob", "o365") == []


async def test_finished_tx_refuses_buffered_writes(store: SqliteStore) -> None:
    async with store.transaction("api") as tx:
        pass
    with pytest.raises(StoreError, match="finished"):
        await tx.put_status(SyncStatus("alice", "a1", "o365", "r", "v", "h", "h"))
    with pytest.raises(StoreError, match="finished"):
        await tx.audit("appointment", "a1", "note")
    assert await store.list_status("alice", "o365") == []


async def test_database_errors_roll_back_and_become_store_errors(store: SqliteStore) -> None:
    with pytest.raises(
        StoreError, match=r'write rolled back: (no such table|relation "no_such_table" does not)'
    ):
        async with store.transaction("api") as tx:
            await tx.put_appointment(appt("a1"))
            await tx._run("INSERT INTO no_such_table VALUES (1)")
    assert await nothing_written(store)


async def test_cancelled_at_any_point_writes_all_or_nothing(store: SqliteStore) -> None:
    # Cancel the writer ever later, until a transaction gets through: whichever statement
    # (or the commit) it was waiting on, the writes land together or not at all, and the
    # next transaction works.
    for k in range(2000):
        appt_id = f"k{k}"

        async def writer(appt_id: str = appt_id) -> None:
            async with store.transaction("api") as tx:
                await tx.put_appointment(appt(appt_id))
                await tx.put_status(SyncStatus("alice", appt_id, "o365", "r", "v", "h", "h"))
                await tx.delete_status("alice", "nothing", "o365")  # a statement after it
                await tx.audit("appointment", appt_id, "note")

        task = asyncio.create_task(writer())
        await asyncio.sleep(k * 0.0001)
        task.cancel()
        finished = True
        try:
            await task
        except asyncio.CancelledError:
            finished = False
        written = (
            await store.get_appointment(appt_id) is not None,
            [s.appointment_id for s in await store.list_status("alice", "o365")] == [appt_id],
            [e.action for e in await store.list_audit(entity_id=appt_id)] == ["note", "create"],
        )
        assert written in ((True, True, True), (False, False, False)), (k, written)
        async with store.transaction("api") as tx:
            await tx.delete_status("alice", appt_id, "o365")
        if finished:
            break
    else:
        pytest.fail("the writer never finished")
