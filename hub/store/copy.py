"""``calhub migrate``: copy a SQLite hub into an empty PostgreSQL database, and prove it.

Every table of the SQLite file is copied row for row (agents, requests, appointments with their
tombstones, approvals, conflicts, sync status, calendar state with its cursors, the audit log,
the outbox, tokens, secrets, sessions: whatever the schema has, so that a table added by a later
migration is copied too), in one PostgreSQL transaction: the copy lands whole or not at all.
Both databases are first brought to the current schema version, so the columns match.

The change-counter triggers fire while rows arrive; the agents' counters are then set back to
the values they had in SQLite and the change stamps copied as they were, so that the first
pass on PostgreSQL is as cheap as the next one on SQLite would have been. The numbered keys'
sequences continue after the copied ids.
Finally every table's row count is compared on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hub.store.base import StoreError
from hub.store.pg_dialect import NUMBERED_KEYS
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore, SqliteTx

# Parents before children (foreign keys); any other table follows in name order.
_FIRST = ("agents", "requests", "appointments", "approvals")
_BATCH = 1000
# Tables the change-counter triggers write while the others are copied: copied last.
_AFTER_COUNTERS = ("hub_changes",)


@dataclass(frozen=True, slots=True)
class TableCount:
    """One table's rows in the source and, after the copy, in the target."""

    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


async def copy_hub(
    source: SqliteStore, target: PgStore, progress: Callable[[str], None] = lambda _: None
) -> list[TableCount]:
    """Copy every table of ``source`` into ``target`` (both open); refuses a target that
    already holds agents or appointments. Returns the row counts of both sides."""
    tables = await _tables(source)
    for table in ("agents", "appointments"):
        if (await target._rows(f"SELECT count(*) FROM {table}"))[0][0]:
            raise StoreError(f"{target.path}: the target already holds {table}: refusing to copy")
    async with target.transaction("migrate") as tx:
        for table in tables:
            if table not in _AFTER_COUNTERS:
                progress(f"{table}: {await _copy_table(source, tx, table)} rows")
        await _restore_counters(source, tx)
        for table in _AFTER_COUNTERS:
            # What the triggers stamped while rows arrived goes: the source's own stamps
            # belong with the counters just restored.
            await tx._run(f"DELETE FROM {table}")
            progress(f"{table}: {await _copy_table(source, tx, table)} rows")
        for table, key in NUMBERED_KEYS.items():
            if table in tables:
                await tx._run(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'),"
                    f" COALESCE((SELECT MAX({key}) FROM {table}), 0) + 1, false)"
                )
    counts = []
    for table in tables:
        src = (await source._rows(f'SELECT count(*) FROM "{table}"'))[0][0]
        dst = (await target._rows(f'SELECT count(*) FROM "{table}"'))[0][0]
        counts.append(TableCount(table, int(src), int(dst)))
    return counts


async def _tables(source: SqliteStore) -> list[str]:
    rows = await source._rows(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    names = sorted(r["name"] for r in rows)
    return [t for t in _FIRST if t in names] + [t for t in names if t not in _FIRST]


async def _copy_table(source: SqliteStore, tx: SqliteTx, table: str) -> int:
    columns = [r["name"] for r in await source._rows(f'PRAGMA table_info("{table}")')]
    names = ", ".join(f'"{c}"' for c in columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    copied = 0
    # One streaming read (the source is not written meanwhile), batch by batch.
    async with source._conn().execute(f'SELECT {names} FROM "{table}"') as cursor:
        while rows := await cursor.fetchmany(_BATCH):
            await tx._run_many(insert, [tuple(r) for r in rows])
            copied += len(rows)
    return copied


async def _restore_counters(source: SqliteStore, tx: SqliteTx) -> None:
    rows = await source._rows("SELECT id, hub_seq FROM agents")
    await tx._run_many(
        "UPDATE agents SET hub_seq = ? WHERE id = ? AND hub_seq <> ?",
        [(r["hub_seq"], r["id"], r["hub_seq"]) for r in rows],
    )


__all__ = ["TableCount", "copy_hub"]
