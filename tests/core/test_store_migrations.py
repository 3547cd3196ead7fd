"""Schema migrations: an older database is upgraded in place, a newer one is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import aiosqlite
import pytest

from hub.model import Agent, Appointment, Kind
from hub.store import ConstraintError, StoreError
from hub.store.schema import CURRENT_VERSION, INITIAL_SCHEMA, MIGRATIONS, Migration, migrate
from hub.store.sqlite import SqliteStore

T0 = "2026-04-01T08:00:00Z"


def build_version_1(path: Path) -> None:
    """A database as calhub with only migration 1 left it, with rows in it."""
    db = sqlite3.connect(path)
    try:
        for statement in INITIAL_SCHEMA.statements:
            db.execute(statement)
        db.executemany(
            "INSERT INTO agents (id, name, feed_token, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                ("alice", "Alice", "unique-token", T0, T0),
                ("bob", "Bob", "shared-token", T0, T0),
                ("carol", "Carol", "shared-token", T0, T0),
            ],
        )
        db.execute(
            'INSERT INTO appointments (id, agent_id, kind, start, "end", all_day, start_utc,'
            " end_utc, subject, request_id, version, created_at, updated_at)"
            " VALUES ('a1', 'alice', 'manual', '2026-05-01T10:00:00Z', '2026-05-01T11:00:00Z',"
            " 0, '2026-05-01T10:00:00.000000Z', '2026-05-01T11:00:00.000000Z', 'Visit', 'r1', 3,"
            " ?, ?)",
            (T0, T0),
        )
        db.execute(
            'INSERT INTO appointments (id, agent_id, kind, start, "end", all_day, start_utc,'
            " end_utc, created_at, updated_at, group_id)"
            " VALUES ('a2', 'bob', 'planned', '2026-05-02', '2026-05-03', 1,"
            " '2026-05-02T00:00:00.000000Z', '2026-05-03T00:00:00.000000Z', ?, ?, 'g1')",
            (T0, T0),
        )
        db.execute(
            "INSERT INTO sync_status (agent_id, account, appointment_id, remote_id)"
            " VALUES ('alice', 'o365', 'a1', 'remote-1')"
        )
        db.execute(
            "INSERT INTO audit (at, origin, entity, entity_id, action, detail)"
            " VALUES (?, 'api', 'appointment', 'a1', 'create', '{}')",
            (T0,),
        )
        db.execute("PRAGMA user_version = 1")
        db.commit()
    finally:
        db.close()


def schema_names(path: Path, kind: str) -> set[str]:
    """The names of the indexes (or triggers, ...) in the database at ``path``."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,)).fetchall()
        return {name for (name,) in rows}
    finally:
        db.close()


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert CURRENT_VERSION == MIGRATIONS[-1].version >= 3


async def test_new_database_gets_the_current_schema(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "new.db") as store:
        assert await store.schema_version() == CURRENT_VERSION
    assert {"appointments_agent_span", "agents_feed_token"} <= schema_names(
        tmp_path / "new.db", "index"
    )


async def test_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    build_version_1(path)
    assert "appointments_request" not in schema_names(path, "index")

    async with SqliteStore(path) as store:
        assert await store.schema_version() == CURRENT_VERSION
        # The rows survived, decoded as records.
        a1 = await store.get_appointment("a1")
        assert a1 is not None
        assert (a1.subject, a1.version, a1.request_id) == ("Visit", 3, "r1")
        assert a1.start == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
        a2 = await store.get_appointment("a2")
        assert a2 is not None and a2.all_day and a2.start == date(2026, 5, 2)
        assert [s.remote_id for s in await store.list_status("alice", "o365")] == ["remote-1"]
        assert [e.entity_id for e in await store.list_audit()] == ["a1"]
        # Migration 2: the lookups are indexed and feed tokens are unique; the two agents that
        # shared one lost it (the API issues new ones), the unique one kept its own.
        assert {
            "appointments_request",
            "appointments_group",
            "sync_status_appointment",
            "audit_entity",
            "agents_feed_token",
        } <= schema_names(path, "index")
        assert (await store.get_agent_by_feed_token("unique-token")).id == "alice"  # type: ignore[union-attr]
        assert await store.get_agent_by_feed_token("shared-token") is None
        assert [a.id for a in await store.list_appointments(request_id="r1")] == ["a1"]
        assert [a.id for a in await store.list_appointments(group_id="g1")] == ["a2"]
        # Migration 3: every agent starts its change counter at 0.
        assert [await store.get_hub_seq(a) for a in ("alice", "bob", "carol")] == [0, 0, 0]
        # Migration 10: every appointment (and pair) is stamped at its agent's counter: a pass
        # whose last clean pass saw an older counter reads them all, one that saw this none.
        assert await store.changed_since("alice", -1, 10) == ["a1"]
        assert await store.changed_since("bob", -1, 10) == ["a2"]
        assert await store.changed_since("alice", 0, 10) == []

        # The new schema works for writes.
        async with store.transaction("api") as tx:
            await tx.put_appointment(a1.evolve(subject="Visit moved"))
            await tx.put_appointment(
                Appointment(
                    "a3",
                    "bob",
                    Kind.MANUAL,
                    datetime(2026, 5, 3, 9, 0, tzinfo=UTC),
                    datetime(2026, 5, 3, 10, 0, tzinfo=UTC),
                )
            )
        moved = await store.get_appointment("a1")
        assert moved is not None and moved.version == 4
        # ... and its triggers count them, per agent.
        assert [await store.get_hub_seq(a) for a in ("alice", "bob", "carol")] == [1, 1, 0]
        assert await store.changed_since("alice", 0, 10) == ["a1"]
        assert await store.changed_since("bob", 0, 10) == ["a3"]
        assert {
            "hub_seq_agents_update",
            "hub_seq_appointments_insert",
            "hub_seq_requests_update",
            "hub_seq_sync_status_delete",
        } <= schema_names(path, "trigger")
        # Migration 4: retention finds old history by its time.
        assert {"audit_at", "conflicts_created_at"} <= schema_names(path, "index")
        with pytest.raises(ConstraintError, match="feed token"):
            async with store.transaction("api") as tx:
                await tx.put_agent(Agent(id="bob", name="Bob", feed_token="unique-token"))


async def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with SqliteStore(path):
        pass
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {CURRENT_VERSION + 7}")
    db.commit()
    db.close()

    store = SqliteStore(path)
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert f"schema version {CURRENT_VERSION + 7}" in message
    assert f"supports ({CURRENT_VERSION})" in message
    assert "future.db" in message
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION + 7
    db.close()


async def test_failed_step_is_rolled_back_and_earlier_steps_kept(tmp_path: Path) -> None:
    steps = (
        Migration(1, "one", ("CREATE TABLE t (x INTEGER)",)),
        Migration(2, "two", ("INSERT INTO t VALUES (1)", "INSERT INTO no_such_table VALUES (2)")),
    )
    async with aiosqlite.connect(tmp_path / "m.db", isolation_level=None) as db:
        with pytest.raises(StoreError, match=r"m\.db: schema migration 2 \(two\) failed"):
            await migrate(db, "m.db", steps)
        assert list(await db.execute_fetchall("PRAGMA user_version")) == [(1,)]
        assert list(await db.execute_fetchall("SELECT * FROM t")) == []
        # Fixed code migrates from where it stopped.
        fixed = (steps[0], Migration(2, "two", ("INSERT INTO t VALUES (1)",)))
        assert await migrate(db, "m.db", fixed) == 1
        assert await migrate(db, "m.db", fixed) == 2  # nothing left to do
        assert list(await db.execute_fetchall("SELECT * FROM t")) == [(1,)]


async def test_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other-app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (body TEXT)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()

    with pytest.raises(StoreError, match=r"other-app\.db: not a calhub database"):
        await SqliteStore(path).open()
    db = sqlite3.connect(path)
    try:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
        assert tables == ["notes"]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        db.close()


async def test_two_stores_opening_a_new_file_at_once_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    stores = [SqliteStore(path) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert [await s.schema_version() for s in stores] == [CURRENT_VERSION] * 4
    finally:
        for store in stores:
            await store.close()
