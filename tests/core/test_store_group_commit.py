"""Group commit in the SQLite store: transactions queued behind the writer share one commit,
each in a savepoint of its own; a failing one loses only its own writes, each caller gets its
own answer, and no caller is told of a write that a crash can still take away."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.model import Agent, Appointment, Kind
from hub.store import StoreError
from hub.store.sqlite import SqliteStore

T9 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def _appt(n: int) -> Appointment:
    return Appointment(
        id=f"a{n}", agent_id="alice", kind=Kind.MANUAL, start=T9 + timedelta(hours=n),
        end=T9 + timedelta(hours=n, minutes=30), subject=f"Visit {n}",
    )  # fmt: skip


async def _opened(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    async with store.transaction("test") as tx:
        await tx.put_agent(Agent(id="alice", name="Alice"))
    return store


async def _statements(store: SqliteStore) -> list[str]:
    """The statements the writer runs from now on, in order."""
    seen: list[str] = []
    assert store._writer is not None
    await store._writer.set_trace_callback(seen.append)
    return seen


async def _put(store: SqliteStore, n: int, fail: BaseException | None = None) -> Appointment:
    async with store.transaction(f"caller{n}") as tx:
        stored = await tx.put_appointment(_appt(n))
        if fail is not None:
            raise fail
        return stored


async def test_queued_transactions_share_one_commit(tmp_path: Path) -> None:
    store = await _opened(tmp_path)
    try:
        seen = await _statements(store)
        told: list[str] = []
        store.add_listener(lambda origin, agents: told.append(origin))
        results = await asyncio.gather(*(_put(store, n) for n in range(10)))
        # Each caller got its own entry back, and its own notice after the commit.
        assert [r.id for r in results] == [f"a{n}" for n in range(10)]
        assert sorted(told) == sorted(f"caller{n}" for n in range(10))
        assert sum(s.startswith("BEGIN") for s in seen) == 1
        assert sum(s == "COMMIT" for s in seen) == 1
        assert len(await store.list_appointments(agent_id="alice")) == 10
        # Alone, a transaction commits at once.
        seen.clear()
        await _put(store, 10)
        assert sum(s == "COMMIT" for s in seen) == 1 and "SAVEPOINT member" not in seen
    finally:
        await store.close()


async def test_a_failing_transaction_loses_only_its_own_writes(tmp_path: Path) -> None:
    store = await _opened(tmp_path)
    try:
        seen = await _statements(store)

        async def duplicate_agent() -> None:
            async with store.transaction("clash") as tx:
                await tx.put_appointment(_appt(90))
                await tx.put_agent(Agent(id="bob", name="Bob", feed_token="t"))
                await tx.put_agent(Agent(id="carol", name="Carol", feed_token="t"))  # taken

        calls = [_put(store, n, ValueError(n) if n in (0, 3) else None) for n in range(6)]
        results = await asyncio.gather(*calls, duplicate_agent(), return_exceptions=True)
        assert sum(s == "COMMIT" for s in seen) == 1  # they did share the batch
        errors = {n: r for n, r in enumerate(results) if isinstance(r, BaseException)}
        assert set(errors) == {0, 3, 6}
        assert [errors[0].args, errors[3].args] == [(0,), (3,)]  # each its own error
        assert "feed token" in str(errors[6])
        for n in (1, 2, 4, 5):
            assert isinstance(results[n], Appointment) and results[n].id == f"a{n}"
        kept = {a.id for a in await store.list_appointments(agent_id="alice")}
        assert kept == {"a1", "a2", "a4", "a5"}
        assert await store.get_agent("bob") is None
    finally:
        await store.close()


async def test_a_failed_commit_fails_every_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _opened(tmp_path)
    try:
        assert store._writer is not None
        real = store._writer.commit
        calls = 0

        async def broken() -> None:
            nonlocal calls
            calls += 1
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store._writer, "commit", broken)
        results = await asyncio.gather(*(_put(store, n) for n in range(4)), return_exceptions=True)
        assert calls == 1
        assert all(isinstance(r, StoreError) and "disk I/O" in str(r) for r in results)
        monkeypatch.setattr(store._writer, "commit", real)
        assert await store.list_appointments(agent_id="alice") == []
        await _put(store, 7)  # the writer is usable again
        assert [a.id for a in await store.list_appointments(agent_id="alice")] == ["a7"]
    finally:
        await store.close()


_CRASH = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from tests.core.test_store_group_commit import _opened, _put
from pathlib import Path

async def main():
    store = await _opened(Path({tmp!r}))
    told = open({told!r}, "a", buffering=1)

    async def put(n):
        await _put(store, n)
        told.write(f"a{{n}}\\n")  # the caller was told: this must survive

    await asyncio.gather(*(put(n) for n in range(5)))  # one batch, committed

    async def crash():
        async with store.transaction("crash") as tx:
            await tx.put_appointment(__import__("tests.core.test_store_group_commit",
                                                fromlist=["_appt"])._appt(99))
            os._exit(3)  # the process dies with the second batch open

    await asyncio.gather(*(put(n) for n in range(5, 9)), crash())

asyncio.run(main())
"""


def test_a_crash_mid_batch_loses_nothing_a_caller_was_told(tmp_path: Path) -> None:
    told = tmp_path / "told.txt"
    script = _CRASH.format(root=str(ROOT), tmp=str(tmp_path), told=str(told))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, timeout=60, check=False
    )
    assert done.returncode == 3
    reported = told.read_text().split()
    assert set(reported) >= {f"a{n}" for n in range(5)}
    with sqlite3.connect(tmp_path / "hub.db") as db:
        stored = {row[0] for row in db.execute("SELECT id FROM appointments")}
    assert set(reported) <= stored  # everything a caller was told of is there
    assert "a99" not in stored
