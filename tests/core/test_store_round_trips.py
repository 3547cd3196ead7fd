"""How many round trips to the writer thread a transaction takes (SQLite): each one costs a
thread hop and a wait for the event loop while the write lock is held, so a sync pass's
transactions send their statements together. And what :meth:`Tx.hub_seq_at_end` reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.model import Agent, CalendarState, SyncStatus
from hub.store import ConstraintError, sqlite
from hub.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "hub.db") as opened:
        async with opened.transaction("api") as tx:
            await tx.put_agent(Agent(id="alice", name="Alice"))
        yield opened


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The statements of each round trip to the writer thread, as they are sent."""
    sent: list[list[str]] = []
    real: Callable[..., Any] = sqlite._run_steps

    def counted(conn: Any, steps: Any) -> Any:
        sent.append([" ".join(sql.split()[:2]) for _, sql, _ in steps])
        return real(conn, steps)

    monkeypatch.setattr(sqlite, "_run_steps", counted)
    return sent


def status(appt_id: str) -> SyncStatus:
    return SyncStatus("alice", appt_id, "o365", f"r-{appt_id}", "v", "h", "h")


async def test_a_pass_s_status_write_takes_two_round_trips(
    store: SqliteStore, hops: list[list[str]]
) -> None:
    # The engine's write transaction: the counter as it starts, the rows, the counter at
    # the end (sync_apply.PlanApplier.transaction).
    async with store.transaction("sync:o365") as tx:
        before = await tx.get_hub_seq("alice")
        after = tx.hub_seq_at_end("alice")
        await tx.put_statuses([status("a1"), status("a2")])
        await tx.audit("sync", "a1", "note")
    assert hops == [
        ["BEGIN IMMEDIATE", "SELECT hub_seq"],
        ["INSERT INTO", "SELECT hub_seq", "INSERT INTO", "COMMIT"],  # rows, counter, audit
    ]
    assert before is not None and after() == await store.get_hub_seq("alice") > before


async def test_a_calendar_state_write_takes_one_round_trip(
    store: SqliteStore, hops: list[list[str]]
) -> None:
    async with store.transaction("sync:o365") as tx:
        await tx.put_calendar_state(CalendarState("alice", "o365", cursor="c1"))
    assert hops == [["BEGIN IMMEDIATE", "INSERT INTO", "COMMIT"]]
    state = await store.get_calendar_state("alice")
    assert state is not None and state.cursor == "c1"
    with pytest.raises(ConstraintError, match="unknown agent 'ghost'"):
        async with store.transaction("sync:o365") as tx:
            await tx.put_calendar_state(CalendarState("ghost", "o365"))
    async with store.transaction("sync:o365") as tx:  # the writer is usable again
        await tx.put_calendar_state(CalendarState("alice", "o365", cursor="c2"))
    state = await store.get_calendar_state("alice")
    assert state is not None and state.cursor == "c2"


async def test_an_empty_transaction_sends_nothing(
    store: SqliteStore, hops: list[list[str]]
) -> None:
    async with store.transaction("sync:o365"):
        pass
    assert hops == []


async def test_hub_seq_at_end_is_read_after_the_transaction_s_writes(store: SqliteStore) -> None:
    async with store.transaction("sync:o365") as tx:
        start = await tx.get_hub_seq("alice")
        end = tx.hub_seq_at_end("alice")
        with pytest.raises(RuntimeError, match="not ended"):
            end()
        await tx.put_status(status("a1"))
    assert start is not None and end() == await store.get_hub_seq("alice") == start + 1
