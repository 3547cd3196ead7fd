"""Retention of history (hub/housekeeping.py, Tx.prune): old audit entries and conflicts go."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.config import AdminSettings, Config, HubSettings
from hub.housekeeping import prune_history, run_daily
from hub.model import Agent, Conflict
from hub.service import serve
from hub.spec import ProviderRegistry
from hub.store.sqlite import SqliteStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # in the past: serve prunes by the real clock
SETTINGS = HubSettings(audit_retention=timedelta(days=30), conflict_retention=timedelta(days=10))


async def seed(path: Path) -> None:
    """Audit entries written 40, 20 and 1 day(s) ago; conflicts recorded 15 and 5 days ago."""
    for days in (40, 20, 1):
        at = NOW - timedelta(days=days)
        store = SqliteStore(path, clock=lambda at=at: at)
        async with store, store.transaction("api") as tx:
            await tx.audit("request", f"r{days}", "note")
    async with SqliteStore(path) as store, store.transaction("config") as tx:
        await tx.put_agent(Agent(id="alice", name="Alice", feed_token="fa"))
        for days in (15, 5):
            await tx.add_conflict(
                Conflict(
                    f"c{days}",
                    "alice",
                    "a1",
                    "o365",
                    "newest",
                    "hub",
                    created_at=NOW - timedelta(days=days),
                )
            )


async def test_prune_deletes_only_rows_older_than_the_cutoffs(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await seed(path)
    async with SqliteStore(path, clock=lambda: NOW) as store:
        async with store.transaction("housekeeping") as tx:
            counts = await tx.prune(NOW - timedelta(days=30), NOW - timedelta(days=10))
        assert counts == {"audit": 1, "conflicts": 1, "stamps": 0}
        kept = {e.entity_id for e in await store.list_audit(limit=1000)}
        assert {"r20", "r1"} <= kept and "r40" not in kept
        assert [c.id for c in await store.list_conflicts()] == ["c5"]
        # Nothing older is left: a second run deletes nothing.
        async with store.transaction("housekeeping") as tx:
            assert await tx.prune(NOW - timedelta(days=30), NOW - timedelta(days=10)) == {
                "audit": 0,
                "conflicts": 0,
                "stamps": 0,
            }


async def test_prune_history_uses_the_retentions_and_logs_the_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.db"
    await seed(path)
    caplog.set_level(logging.INFO, logger="hub.housekeeping")
    async with SqliteStore(path) as store:
        assert await prune_history(store, SETTINGS, clock=lambda: NOW) == {
            "audit": 1,
            "conflicts": 1,
            "stamps": 0,
        }
    (line,) = [r.getMessage() for r in caplog.records if r.name == "hub.housekeeping"]
    assert "1 audit entries and 1 conflicts" in line


async def test_run_daily_prunes_at_start_then_every_day(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await seed(path)
    naps: list[float] = []

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise Stop

    async with SqliteStore(path) as store:
        with pytest.raises(Stop):
            await run_daily(store, SETTINGS, clock=lambda: NOW, sleep=sleep)
        assert "r40" not in {e.entity_id for e in await store.list_audit(limit=1000)}
    assert naps == [86400.0, 86400.0]


async def test_serve_prunes_at_start_and_stops_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    await seed(path)
    config = Config(
        hub=HubSettings(
            database=str(path),
            audit_retention=timedelta(days=1),
            conflict_retention=timedelta(days=1),
        ),
        admin=AdminSettings(listen="127.0.0.1:0", token="t"),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(
        serve(config, ProviderRegistry(), announce=lambda _: None, stop=stop)
    )
    try:
        async with SqliteStore(path) as store:
            # Wait (bounded) for the start-up run; every seeded conflict is over a day old.
            for _ in range(500):
                if not await store.list_conflicts():
                    break
                await asyncio.sleep(0.01)
            assert await store.list_conflicts() == []
    finally:
        stop.set()
        assert await running == 0
