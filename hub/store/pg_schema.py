"""The schema migrations of the PostgreSQL store: the same versions as SQLite's, plus the
cluster's own tables (workers and agent leases).

The hub's migrations are :data:`hub.store.schema.MIGRATIONS`, one list for both databases:
each ``CREATE TABLE``/``CREATE INDEX``/``ALTER TABLE``/``UPDATE`` statement is translated by
:func:`hub.store.pg_dialect.ddl`. A statement that has no PostgreSQL spelling of that kind
(SQLite's trigger syntax) is given here, by version, in :data:`POSTGRES_STATEMENTS`; a new
migration with a trigger and no entry here is refused with a clear error (a test walks every
migration), never half applied.

Versions are kept in ``calhub_schema`` (one row per part: ``hub`` for the shared migrations,
``cluster`` for :data:`CLUSTER_MIGRATIONS`). Each step runs in its own transaction under a
transaction-level advisory lock, so two workers starting together migrate once; a database
newer than this calhub is refused, as in SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from hub.store.base import StoreError
from hub.store.pg_dialect import ddl
from hub.store.schema import HUB_CHANGES_TABLE, MIGRATIONS, RESTAMP_ALL, Migration

# One advisory lock id for "the schema is being changed" (any 64-bit number of our own).
MIGRATE_LOCK = 0x63616C6875620001

_BUMP_BY_AGENT = """CREATE FUNCTION calhub_bump_by_agent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE agents SET hub_seq = hub_seq + 1 WHERE id = OLD.agent_id;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.agent_id IS DISTINCT FROM OLD.agent_id) THEN
        UPDATE agents SET hub_seq = hub_seq + 1 WHERE id = NEW.agent_id;
    END IF;
    RETURN NULL;
END $$"""

_BUMP_BY_REQUEST = """CREATE FUNCTION calhub_bump_by_request() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET hub_seq = hub_seq + 1 WHERE id IN (
        SELECT agent_id FROM appointments
        WHERE request_id IN (
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.id END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.id END
        )
    );
    RETURN NULL;
END $$"""

# The agent record itself, its hub_seq excepted (that update is the counter's own).
_BUMP_AGENT = """CREATE FUNCTION calhub_bump_agent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.hub_seq IS NOT DISTINCT FROM OLD.hub_seq THEN
        NEW.hub_seq := OLD.hub_seq + 1;
    END IF;
    RETURN NEW;
END $$"""


def _after_each_row(table: str, function: str) -> str:
    return (
        f"CREATE TRIGGER hub_seq_{table} AFTER INSERT OR UPDATE OR DELETE ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


# Version 10: raise an agent's counter and stamp one appointment with the value it now has.
_STAMP = """CREATE FUNCTION calhub_stamp(p_agent TEXT, p_appointment TEXT) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    new_seq BIGINT;
BEGIN
    UPDATE agents SET hub_seq = hub_seq + 1 WHERE id = p_agent RETURNING hub_seq INTO new_seq;
    IF FOUND THEN
        INSERT INTO hub_changes (agent_id, appointment_id, seq)
        VALUES (p_agent, p_appointment, new_seq)
        ON CONFLICT (agent_id, appointment_id) DO UPDATE SET seq = EXCLUDED.seq;
    END IF;
END $$"""


def _stamp_rows(name: str, column: str) -> str:
    """A trigger function stamping the appointment a row names in ``column`` (as
    :func:`hub.store.schema._stamps`: the old agent too when an update moved the row)."""
    return f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (NEW.agent_id IS DISTINCT FROM OLD.agent_id
            OR NEW.{column} IS DISTINCT FROM OLD.{column})) THEN
        PERFORM calhub_stamp(OLD.agent_id, OLD.{column});
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM calhub_stamp(NEW.agent_id, NEW.{column});
    END IF;
    RETURN NULL;
END $$"""


_STAMP_BY_REQUEST = """CREATE FUNCTION calhub_stamp_by_request() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM calhub_stamp(agent_id, id) FROM appointments
    WHERE request_id IN (
        CASE WHEN TG_OP <> 'INSERT' THEN OLD.id END,
        CASE WHEN TG_OP <> 'DELETE' THEN NEW.id END
    );
    RETURN NULL;
END $$"""


def _replace_trigger(table: str, function: str) -> tuple[str, str]:
    return f"DROP TRIGGER hub_seq_{table} ON {table}", _after_each_row(table, function)


# Version -> the PostgreSQL statements of that migration, where translation cannot do it.
POSTGRES_STATEMENTS: dict[int, tuple[str, ...]] = {
    3: (
        "ALTER TABLE agents ADD COLUMN hub_seq BIGINT NOT NULL DEFAULT 0",
        _BUMP_AGENT,
        "CREATE TRIGGER hub_seq_agents_update BEFORE UPDATE ON agents"
        " FOR EACH ROW EXECUTE FUNCTION calhub_bump_agent()",
        _BUMP_BY_AGENT,
        _after_each_row("appointments", "calhub_bump_by_agent"),
        _after_each_row("approvals", "calhub_bump_by_agent"),
        _after_each_row("sync_status", "calhub_bump_by_agent"),
        _BUMP_BY_REQUEST,
        _after_each_row("requests", "calhub_bump_by_request"),
    ),
    10: (
        ddl(HUB_CHANGES_TABLE),
        ddl("CREATE INDEX hub_changes_seq ON hub_changes (agent_id, seq)"),
        ddl("CREATE INDEX sync_status_remote ON sync_status (agent_id, account, remote_id)"),
        _STAMP,
        _stamp_rows("calhub_stamp_appointment", "id"),
        _stamp_rows("calhub_stamp_by_appointment", "appointment_id"),
        _STAMP_BY_REQUEST,
        *_replace_trigger("appointments", "calhub_stamp_appointment"),
        *_replace_trigger("approvals", "calhub_stamp_by_appointment"),
        *_replace_trigger("sync_status", "calhub_stamp_by_appointment"),
        *_replace_trigger("requests", "calhub_stamp_by_request"),
        "DROP FUNCTION calhub_bump_by_agent",
        "DROP FUNCTION calhub_bump_by_request",
        ddl(RESTAMP_ALL),
    ),
}

# Tables only a cluster of workers needs (SQLite has one process and no leases).
CLUSTER_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "workers and agent leases",
        (
            # A worker's heartbeat: the workers seen within a lease time share the agents.
            """CREATE TABLE calhub_workers (
                name TEXT COLLATE "C" PRIMARY KEY,
                started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
                seen_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
            )""",
            # One row per agent with an account, made by the first claim that sees it.
            # generation grows with every change of holder: the fence of a pass's writes.
            """CREATE TABLE agent_leases (
                agent_id TEXT COLLATE "C" PRIMARY KEY
                    REFERENCES agents(id) ON DELETE CASCADE,
                holder TEXT COLLATE "C",
                generation BIGINT NOT NULL DEFAULT 0,
                expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
            )""",
            "CREATE INDEX agent_leases_holder ON agent_leases (holder)",
        ),
    ),
)

PARTS: dict[str, tuple[Migration, ...]] = {"hub": MIGRATIONS, "cluster": CLUSTER_MIGRATIONS}


def statements(step: Migration) -> tuple[str, ...]:
    """The PostgreSQL statements of one shared migration step."""
    if step.version in POSTGRES_STATEMENTS:
        return POSTGRES_STATEMENTS[step.version]
    for statement in step.statements:
        if statement.lstrip().upper().startswith("CREATE TRIGGER"):
            raise StoreError(
                f"schema migration {step.version} ({step.description}) has a trigger without"
                " a PostgreSQL version in hub.store.pg_schema.POSTGRES_STATEMENTS"
            )
    return tuple(ddl(s) for s in step.statements)


async def versions(conn: psycopg.AsyncConnection[object]) -> dict[str, int]:
    """The version of each part (empty: no calhub schema here)."""
    # pg_tables, not to_regclass(): a catalog cache lookup may not yet see the table that
    # another worker's migration committed while this one waited for the lock.
    cur = await conn.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename = 'calhub_schema'"
    )
    if await cur.fetchone() is None:
        return {}
    cur = await conn.execute("SELECT part, version FROM calhub_schema")
    return {str(p): int(v) for p, v in await cur.fetchall()}


async def migrate(conn: psycopg.AsyncConnection[object], where: str) -> int:
    """Bring the database on ``conn`` (autocommit mode) to the last version of every part;
    returns the ``hub`` version found before."""
    found = (await versions(conn)).get("hub", 0)
    for part, steps in PARTS.items():
        await _migrate_part(conn, where, part, steps)
    return found


async def _migrate_part(
    conn: psycopg.AsyncConnection[object], where: str, part: str, steps: Sequence[Migration]
) -> None:
    latest = steps[-1].version
    for step in steps:
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                current = await _current(conn, where, part)
                if current > latest:
                    raise StoreError(
                        f"{where}: database schema version {current} ({part}) is newer than"
                        f" this calhub supports ({latest}); upgrade calhub"
                    )
                if current >= step.version:
                    continue
                for statement in statements(step) if part == "hub" else step.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO calhub_schema (part, version) VALUES (%s, %s)"
                    " ON CONFLICT (part) DO UPDATE SET version = excluded.version",
                    (part, step.version),
                )
        except psycopg.Error as exc:
            raise StoreError(
                f"{where}: schema migration {step.version} ({step.description}) failed: {exc}"
            ) from exc


async def _current(conn: psycopg.AsyncConnection[object], where: str, part: str) -> int:
    found = await versions(conn)
    if not found:
        cur = await conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() LIMIT 1"
        )
        if await cur.fetchone():
            # Tables but no calhub schema: another program's database, not a new one.
            raise StoreError(f"{where}: not a calhub database (it has tables but no calhub schema)")
        await conn.execute(
            'CREATE TABLE calhub_schema (part TEXT COLLATE "C" PRIMARY KEY,'
            " version BIGINT NOT NULL)"
        )
    return found.get(part, 0)


__all__ = ["CLUSTER_MIGRATIONS", "POSTGRES_STATEMENTS", "migrate", "statements", "versions"]
