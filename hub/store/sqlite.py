"""The embedded store: hub state in one SQLite file, through aiosqlite.

Two connections to one WAL database:

- the *writer*, in autocommit mode so that this module alone decides where transactions begin
  and end. One write transaction at a time (an :class:`asyncio.Lock`), opened with
  ``BEGIN IMMEDIATE`` so that another process's writer makes us wait (``busy_timeout``) at the
  start instead of failing half-way; committed at the end of the ``async with`` block and rolled
  back on any exception, cancellation included. Transactions queued behind the writer share
  one commit, each in a savepoint (group commit: see :meth:`SqliteStore.transaction`);
- the *reader*, ``query_only``, used by the :class:`Store` read methods. WAL lets it read the
  last committed state while the writer writes, so a reader never sees another coroutine's
  uncommitted changes. Reads inside a transaction go through the :class:`Tx` and see its own
  writes.

aiosqlite runs each connection's calls in order on its own thread, which is also what keeps a
cancelled transaction safe: the ROLLBACK queued after a cancelled statement runs after it.
Each call is a round trip to that thread (and a wait for the GIL while the event loop is
busy), and those round trips, not SQLite, are most of what a transaction costs; so a
transaction sends its statements in as few of them as it can (:func:`run_steps`): the
``BEGIN IMMEDIATE`` goes with its first statement, buffered writes with the next statement
that needs them or with the ``COMMIT``.

``":memory:"`` opens a private temporary file instead, since two connections to an in-memory
database would see two different databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from hub.model import (
    Agent,
    Appointment,
    Approval,
    AuditEntry,
    BrowserSession,
    CalendarState,
    Conflict,
    Kind,
    Request,
    SyncStatus,
)
from hub.store import codec
from hub.store.base import (
    AppointmentChange,
    AppointmentListener,
    ChangeListener,
    CommitHook,
    ConstraintError,
    Store,
    StoreError,
    StoreUnavailable,
    Tx,
)
from hub.store.schema import migrate, user_version
from hub.store.sqlite_outbox import OutboxQueries, OutboxTxWrites

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

BUSY_TIMEOUT_MS = 5000
# SQLite allows 32766 bound parameters per statement; stay well below for IN (...) lists.
_IN_CHUNK = 500
# Rows turned into records between two turns of the event loop (about 2 ms of work).
_DECODE_CHUNK = 200


def _utcnow() -> datetime:
    return datetime.now(UTC)


# One statement of a batch sent to the connection's thread: (how, sql, parameters), where how
# is "rows" (a query: its rows), "run" (a statement: its cursor), "many" (executemany: None),
# "begin" (opening the transaction: StoreUnavailable when the database stays locked) or
# "put:MESSAGE" (a write whose violated constraint is the ConstraintError MESSAGE).
Step = tuple[str, str, Any]


class _BeginRefused(Exception):
    """The ``BEGIN`` of a batch failed (the database stayed locked past busy_timeout)."""


def _run_steps(conn: sqlite3.Connection, steps: Sequence[Step]) -> list[Any]:
    """On the connection's own thread: run ``steps`` in order, stopping at the first error."""
    results: list[Any] = []
    for how, sql, params in steps:
        if how == "rows":
            results.append(conn.execute(sql, params).fetchall())
        elif how == "many":
            conn.executemany(sql, params)
            results.append(None)
        elif how == "begin":
            try:
                conn.execute(sql)
            except sqlite3.OperationalError as exc:
                raise _BeginRefused(str(exc)) from exc
            results.append(None)
        elif how.startswith("put:"):
            try:
                results.append(conn.execute(sql, params))
            except sqlite3.IntegrityError as exc:
                raise ConstraintError(how[4:]) from exc
        else:
            results.append(conn.execute(sql, params))
    return results


async def run_steps(db: Any, steps: Sequence[Step]) -> list[Any]:
    """Run ``steps`` on ``db`` in one round trip to aiosqlite's thread; a connection that
    offers ``run_steps`` itself (:class:`hub.store.pg_dialect.PgConnection`) runs them.

    aiosqlite has no public call for several statements at once; ``Connection._execute``
    (queue a function for its thread, await the result) is what each of its own methods is
    built on, unchanged from aiosqlite 0.17 to 0.22."""
    own = getattr(db, "run_steps", None)
    if own is not None:
        return list(await own(steps))
    return list(await db._execute(_run_steps, db._conn, steps))


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for offset in range(0, len(items), size):
        yield items[offset : offset + size]


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"


def _upsert_sql(
    table: str, columns: Sequence[str], key: Sequence[str], *, unless_same: Sequence[str] = ()
) -> str:
    """Insert, or update on a key conflict; with ``unless_same``, an update only when one of
    those columns differs (SQLite then leaves the row alone: no write at all)."""
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in key)
    sql = f"{_insert_sql(table, columns)} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    if unless_same:
        sql += " WHERE " + " OR ".join(f'"{c}" IS NOT excluded."{c}"' for c in unless_same)
    return sql


# Rows deleted per statement when pruning history: each statement stays short, and the event
# loop gets a turn between them.
_PRUNE_BATCH = 5000

_AUDIT_SQL = (
    "INSERT INTO audit (at, origin, entity, entity_id, action, detail) VALUES (?, ?, ?, ?, ?, ?)"
)
_APPOINTMENT_INSERT = _insert_sql("appointments", codec.APPOINTMENT_COLUMNS)
_APPOINTMENT_INSERT_NEW = _APPOINTMENT_INSERT + " ON CONFLICT (id) DO NOTHING"
_APPOINTMENT_UPDATE = "UPDATE appointments SET {} WHERE id = :id".format(
    ", ".join(f'"{c}" = :{c}' for c in codec.APPOINTMENT_COLUMNS if c != "id")
)
_AGENT_UPSERT = _upsert_sql("agents", codec.AGENT_COLUMNS, ("id",))
_REQUEST_UPSERT = _upsert_sql("requests", codec.REQUEST_COLUMNS, ("id",))
_STATUS_UPSERT = _upsert_sql(
    "sync_status",
    codec.STATUS_COLUMNS,
    codec.STATUS_KEY,
    unless_same=[c for c in codec.STATUS_COLUMNS if c not in (*codec.STATUS_KEY, "updated_at")],
)
_CALENDAR_STATE_UPSERT = _upsert_sql(
    "calendar_state",
    codec.CALENDAR_STATE_COLUMNS,
    ("agent_id",),
    unless_same=[c for c in codec.CALENDAR_STATE_COLUMNS if c != "agent_id"],
)


# Change stamps of appointments that are gone with their pairs: a change pass would find
# nothing to do with them (a purged appointment's stamp matters while its status row lives).
_PRUNE_STAMPS = """DELETE FROM hub_changes WHERE NOT EXISTS (
        SELECT 1 FROM appointments a
        WHERE a.id = hub_changes.appointment_id AND a.agent_id = hub_changes.agent_id
    ) AND NOT EXISTS (
        SELECT 1 FROM sync_status s
        WHERE s.appointment_id = hub_changes.appointment_id
        AND s.agent_id = hub_changes.agent_id
    )"""


class _Queries(OutboxQueries, ABC):
    """The read side, shared by the store (reader connection) and a transaction (writer)."""

    @abstractmethod
    def _conn(self) -> aiosqlite.Connection:
        """The connection these reads go through."""

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._conn().execute_fetchall(sql, params))

    async def _queries(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """The rows of several queries, read in one round trip."""
        if not queries:
            return []
        if len(queries) == 1:
            return [await self._rows(*queries[0])]
        return await run_steps(self._conn(), [("rows", sql, params) for sql, params in queries])

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    async def _rows_in(
        self, sql: str, ids: Sequence[str], params: Sequence[Any] = ()
    ) -> list[sqlite3.Row]:
        """Rows of ``sql`` for ``ids``: its ``IN ({})`` gets the ids, a chunk at a time
        (after ``params``, the values of the placeholders before it), in one round trip."""
        return [r for rows in await self._queries(self._in_queries(sql, ids, params)) for r in rows]

    @staticmethod
    def _in_queries(
        sql: str, ids: Sequence[str], params: Sequence[Any] = ()
    ) -> list[tuple[str, Sequence[Any]]]:
        """The queries :meth:`_rows_in` runs: one per chunk of ``ids``."""
        return [
            (sql.format(_placeholders(len(chunk))), (*params, *chunk)) for chunk in _chunks(ids)
        ]

    # browser sessions --------------------------------------------------------------------
    async def get_session(self, id_hash: str) -> BrowserSession | None:
        row = await self._one("SELECT * FROM browser_sessions WHERE id_hash = ?", (id_hash,))
        if row is None:
            return None
        return BrowserSession(
            id_hash=row["id_hash"],
            created_at=codec.decode_datetime(row["created_at"]),
            seen_at=codec.decode_datetime(row["seen_at"]),
        )

    # agents ------------------------------------------------------------------------------
    async def get_agent(self, agent_id: str) -> Agent | None:
        row = await self._one("SELECT * FROM agents WHERE id = ?", (agent_id,))
        return None if row is None else codec.agent_from_row(row)

    async def get_hub_seq(self, agent_id: str) -> int | None:
        row = await self._one("SELECT hub_seq FROM agents WHERE id = ?", (agent_id,))
        return None if row is None else int(row["hub_seq"])

    async def get_agent_by_feed_token(self, token: str) -> Agent | None:
        if not token:  # an agent without a token must never match an empty one
            return None
        row = await self._one("SELECT * FROM agents WHERE feed_token = ?", (token,))
        return None if row is None else codec.agent_from_row(row)

    async def get_relay_token(self, agent_id: str, kind: str) -> str | None:
        row = await self._one(
            "SELECT token_hash FROM relay_tokens WHERE agent_id = ? AND kind = ?", (agent_id, kind)
        )
        return None if row is None else str(row["token_hash"])

    async def list_agents(self) -> list[Agent]:
        return [
            codec.agent_from_row(r) for r in await self._rows("SELECT * FROM agents ORDER BY id")
        ]

    # requests ----------------------------------------------------------------------------
    async def get_request(self, request_id: str) -> Request | None:
        row = await self._one("SELECT * FROM requests WHERE id = ?", (request_id,))
        return None if row is None else codec.request_from_row(row)

    async def get_requests(self, request_ids: Iterable[str]) -> dict[str, Request]:
        rows = await self._rows_in(
            "SELECT * FROM requests WHERE id IN ({})", sorted(set(request_ids))
        )
        return {r["id"]: codec.request_from_row(r) for r in rows}

    # appointments ------------------------------------------------------------------------
    async def get_appointment(
        self, appointment_id: str, *, include_deleted: bool = False
    ) -> Appointment | None:
        sql = "SELECT * FROM appointments WHERE id = ?"
        if not include_deleted:
            sql += " AND deleted = 0"
        row = await self._one(sql, (appointment_id,))
        return None if row is None else codec.appointment_from_row(row)

    async def get_appointments(
        self, appointment_ids: Iterable[str], *, include_deleted: bool = False
    ) -> dict[str, Appointment]:
        sql = "SELECT * FROM appointments WHERE id IN ({})"
        if not include_deleted:
            sql += " AND deleted = 0"
        rows = await self._rows_in(sql, sorted(set(appointment_ids)))
        return {r["id"]: codec.appointment_from_row(r) for r in rows}

    async def list_appointments(
        self,
        *,
        agent_id: str | None = None,
        start: datetime | date | None = None,
        end: datetime | date | None = None,
        request_id: str | None = None,
        group_id: str | None = None,
        kind: Kind | None = None,
        include_deleted: bool = False,
        after: tuple[datetime | date, str] | None = None,
        limit: int | None = None,
    ) -> list[Appointment]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("agent_id", agent_id),
            ("request_id", request_id),
            ("group_id", group_id),
            ("kind", None if kind is None else Kind(kind).value),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if end is not None:
            where.append("start_utc < ?")
            params.append(codec.instant_key(end, "list_appointments: end"))
        if start is not None:
            # Overlap with [start, end): ends after the window starts; a zero-length entry
            # counts as its instant, so one exactly at the window start is inside.
            key = codec.instant_key(start, "list_appointments: start")
            where.append("(end_utc > ? OR start_utc >= ?)")
            params += [key, key]
        if after is not None:
            # A row value, so that the index on (..., start_utc, id) starts the scan there.
            where.append("(start_utc, id) > (?, ?)")
            params += [codec.instant_key(after[0], "list_appointments: after"), after[1]]
        if not include_deleted:
            where.append("deleted = 0")
        sql = "SELECT * FROM appointments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_utc, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        rows = await self._rows(sql, params)
        appts: list[Appointment] = []
        for first in range(0, len(rows), _DECODE_CHUNK):
            if first:
                # A whole calendar is thousands of rows: let other requests in between.
                await asyncio.sleep(0)
            appts += map(codec.appointment_from_row, rows[first : first + _DECODE_CHUNK])
        return appts

    # approvals ---------------------------------------------------------------------------
    async def get_approval(self, approval_id: str) -> Approval | None:
        row = await self._one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return None if row is None else codec.approval_from_row(row)

    async def list_approvals(self, *, pending_only: bool = True) -> list[Approval]:
        sql = "SELECT * FROM approvals"
        if pending_only:
            sql += " WHERE decided_at IS NULL"
        sql += " ORDER BY created_at, id"
        return [codec.approval_from_row(r) for r in await self._rows(sql)]

    # conflicts ---------------------------------------------------------------------------
    async def list_conflicts(
        self, *, agent_id: str | None = None, limit: int = 100
    ) -> list[Conflict]:
        rows = await self._newest("conflicts", "seq", "agent_id", agent_id, limit)
        return [codec.conflict_from_row(r) for r in rows]

    # sync --------------------------------------------------------------------------------
    async def list_status(self, agent_id: str, account: str) -> list[SyncStatus]:
        rows = await self._rows(
            "SELECT * FROM sync_status WHERE agent_id = ? AND account = ? ORDER BY appointment_id",
            (agent_id, account),
        )
        return [codec.status_from_row(r) for r in rows]

    async def get_statuses(
        self,
        agent_id: str,
        account: str,
        *,
        appointment_ids: Iterable[str] = (),
        remote_ids: Iterable[str] = (),
    ) -> list[SyncStatus]:
        key = "SELECT * FROM sync_status WHERE agent_id = ? AND account = ? AND "
        queries = [
            *self._in_queries(
                key + "appointment_id IN ({})", sorted(set(appointment_ids)), (agent_id, account)
            ),
            *self._in_queries(
                key + "remote_id IN ({})", sorted(set(remote_ids)), (agent_id, account)
            ),
        ]
        found = {r["appointment_id"]: r for rows in await self._queries(queries) for r in rows}
        return [codec.status_from_row(found[k]) for k in sorted(found)]

    async def has_status(self, agent_id: str, account: str) -> bool:
        row = await self._one(
            "SELECT 1 FROM sync_status WHERE agent_id = ? AND account = ? LIMIT 1",
            (agent_id, account),
        )
        return row is not None

    async def changed_since(self, agent_id: str, seq: int, limit: int) -> list[str] | None:
        rows = await self._rows(
            "SELECT appointment_id FROM hub_changes WHERE agent_id = ? AND seq > ?"
            " ORDER BY appointment_id LIMIT ?",
            (agent_id, seq, limit + 1),
        )
        return None if len(rows) > limit else [r[0] for r in rows]

    async def get_calendar_state(self, agent_id: str) -> CalendarState | None:
        row = await self._one("SELECT * FROM calendar_state WHERE agent_id = ?", (agent_id,))
        return None if row is None else codec.calendar_state_from_row(row)

    async def list_calendar_states(self) -> list[CalendarState]:
        rows = await self._rows("SELECT * FROM calendar_state ORDER BY agent_id")
        return [codec.calendar_state_from_row(r) for r in rows]

    async def get_agent_secret(self, agent_id: str, account: str) -> str | None:
        row = await self._one(
            "SELECT secret FROM agent_secrets WHERE agent_id = ? AND account = ?",
            (agent_id, account),
        )
        return None if row is None else str(row["secret"])

    # audit -------------------------------------------------------------------------------
    async def list_audit(
        self, *, entity_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        rows = await self._newest("audit", "id", "entity_id", entity_id, limit)
        return [codec.audit_from_row(r) for r in rows]

    async def _newest(
        self, table: str, seq: str, column: str, value: str | None, limit: int
    ) -> list[sqlite3.Row]:
        """The last ``limit`` rows of a history table, newest first, optionally filtered."""
        where = "" if value is None else f" WHERE {column} = ?"
        params = ([] if value is None else [value]) + [max(0, limit)]
        return await self._rows(f"SELECT * FROM {table}{where} ORDER BY {seq} DESC LIMIT ?", params)


class SqliteTx(_Queries, OutboxTxWrites, Tx):
    """One write transaction on the writer connection; valid only inside its ``async with``.

    Every call into aiosqlite is a round trip to its thread, and those dominate a sync pass:
    so audit rows are buffered until the commit, sync status rows until the next statement
    that reads or deletes status rows (or the commit), each buffer written in one batch and
    sent together with the statement that follows it; ``begin`` (the store's
    ``BEGIN IMMEDIATE``) is sent with the first statement, and :meth:`_commit` sends what is
    left with the ``COMMIT``. Agents known to exist are remembered (an agent read in this
    transaction exists until it ends: nobody else writes meanwhile). A status row is written by
    a statement that leaves an unchanged row alone.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        origin: str,
        clock: Clock,
        *,
        begin: str | None = None,
        where: str = "",
    ) -> None:
        self._db: aiosqlite.Connection | None = db
        self.origin = origin
        self._clock = clock
        self._begin = begin  # sent before the first statement; None: begun by the store
        self._begun = begin is None
        self._where = where  # the database, for messages
        self._pending: list[Step] = []  # writes sent with the next statement
        self._ended = False  # the COMMIT or RELEASE was sent
        self._end_reads: list[tuple[str, Any, list[Any]]] = []  # (sql, params, result box)
        self._boxes: list[tuple[Step, list[Any]]] = []  # end reads sent, to give their rows
        self.changed_agents: set[str] = set()
        self.changed_appointments: set[str] = set()
        self._known_agents: set[str] = set()
        self._audits: list[tuple[Any, ...]] = []
        self._statuses: list[dict[str, Any]] = []
        # appointment id -> [row before the transaction, row now]; None: absent or purged
        self._changes: dict[str, list[Mapping[str, Any] | None]] = {}

    def _changed(self, appointment_id: str, old: Mapping[str, Any] | None, new: Any) -> None:
        entry = self._changes.setdefault(appointment_id, [old, None])
        entry[1] = new

    def appointment_changes(self) -> list[AppointmentChange]:
        return [
            AppointmentChange(
                None if before is None else codec.appointment_from_row(before),
                None if after is None else codec.appointment_from_row(after),
            )
            for before, after in self._changes.values()
            if before is not None or after is not None  # made and purged in this transaction
        ]

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            # Outside BEGIN ... COMMIT the writer is in autocommit mode: a late write would
            # commit on its own, outside any transaction.
            raise StoreError("this transaction is finished; open a new one")
        return self._db

    def _final_steps(self) -> list[Step]:
        self._write_statuses()
        for sql, params, box in self._end_reads:
            step: Step = ("rows", sql, params)
            self._pending.append(step)
            self._boxes.append((step, box))  # filled when the step has run
        self._end_reads = []
        audits, self._audits = self._audits, []
        if audits:
            self._pending.append(("many", _AUDIT_SQL, audits))
        steps, self._pending = self._pending, []
        return steps

    def hub_seq_at_end(self, agent_id: str) -> Callable[[], int | None]:
        box: list[Any] = []
        self._end_reads.append(("SELECT hub_seq FROM agents WHERE id = ?", (agent_id,), box))

        def seq() -> int | None:
            if not box:
                raise RuntimeError("hub_seq_at_end: the transaction has not ended")
            return None if not box[0] else int(box[0][0][0])

        return seq

    @property
    def _untouched(self) -> bool:
        """Whether nothing was sent or buffered: there is nothing to commit."""
        return not (self._begun or self._pending or self._statuses or self._audits)

    async def _flush(self, end: str | None = None) -> None:
        """Write the buffered rows, then ``end`` (the COMMIT, a savepoint's RELEASE), in one
        round trip; ``end`` only once something began."""
        steps = self._final_steps()
        if end is not None and (steps or self._begun):
            steps.append(("run", end, ()))
            self._ended = True
        if steps:
            await self._send(steps)

    def _finish(self) -> None:
        self._db = None

    def _now(self) -> str:
        return codec.encode_time(self._clock(), "clock")

    async def _send(self, steps: list[Step]) -> list[Any]:
        """Run ``steps`` after the begin and the buffered writes, in one round trip; their
        results."""
        db = self._conn()
        first: list[Step] = []
        if not self._begun:
            assert self._begin is not None
            first.append(("begin", self._begin, ()))
            self._begun = True
        first += self._pending
        self._pending = []
        sent = [*first, *steps]
        try:
            results = await run_steps(db, sent)
            if self._boxes:
                boxes, self._boxes = self._boxes, []
                for i, step in enumerate(sent):
                    for queued, box in boxes:
                        if step is queued:
                            box.append(results[i])
            return results[len(first) :]
        except _BeginRefused as exc:
            raise StoreUnavailable(
                f"{self._where}: cannot start a write transaction: {exc}"
            ) from exc.__cause__

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list((await self._send([("rows", sql, params)]))[0])

    async def _queries(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        if not queries:
            return []
        return await self._send([("rows", sql, params) for sql, params in queries])

    async def _run(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return (await self._send([("run", sql, params)]))[0]  # type: ignore[no-any-return]

    async def _run_many(self, sql: str, rows: Sequence[Any]) -> None:
        if rows:
            await self._send([("many", sql, rows)])

    def _write_statuses(self) -> None:
        """Queue the buffered status rows for the next statement: before anything that reads
        or deletes status rows (directly, or by cascade), so that it sees them in the order
        they were put."""
        rows, self._statuses = self._statuses, []
        if rows:
            self._pending.append(("many", _STATUS_UPSERT, rows))

    async def _require_agents(self, agent_ids: Iterable[str], what: str) -> None:
        # Checked up front, not left to the foreign key, so that the error names the agent and
        # a batch fails before any of it is written.
        wanted = sorted(set(agent_ids) - self._known_agents)
        if not wanted:
            return
        found = {
            r["id"] for r in await self._rows_in("SELECT id FROM agents WHERE id IN ({})", wanted)
        }
        self._known_agents |= found
        missing = [a for a in wanted if a not in found]
        if missing:
            raise ConstraintError(f"{what}: unknown agent {', '.join(map(repr, missing))}")

    # agents ------------------------------------------------------------------------------
    async def put_agent(self, agent: Agent) -> Agent:
        row = codec.agent_row(agent)
        old = await self._one("SELECT * FROM agents WHERE id = ?", (agent.id,))
        if old is not None and codec.same_row(old, row, ignore=("created_at", "updated_at")):
            return codec.agent_from_row(old)
        now = self._now()
        row["created_at"] = old["created_at"] if old is not None else row["created_at"] or now
        row["updated_at"] = now
        try:
            await self._run(_AGENT_UPSERT, row)
        except sqlite3.IntegrityError as exc:
            raise ConstraintError(
                f"agent {agent.id!r}: feed token is already used by another agent"
                if "feed_token" in str(exc)
                else f"agent {agent.id!r}: {exc}"
            ) from exc
        if old is None:
            self._write_audit("agent", agent.id, "create")
        else:
            # Field names only: the feed token is a secret and must not land in the log.
            changed = sorted(
                k for k in row if k not in ("created_at", "updated_at") and old[k] != row[k]
            )
            self._write_audit("agent", agent.id, "update", changed=changed)
        self.changed_agents.add(agent.id)
        self._known_agents.add(agent.id)
        return codec.agent_from_row(row)

    async def delete_agent(self, agent_id: str) -> bool:
        self._write_statuses()  # the cascade takes the agent's buffered rows too
        cursor = await self._run("DELETE FROM agents WHERE id = ?", (agent_id,))
        if cursor.rowcount == 0:
            return False
        self._write_audit("agent", agent_id, "delete")
        self.changed_agents.add(agent_id)
        self._known_agents.discard(agent_id)
        return True

    async def put_relay_token(self, agent_id: str, kind: str, token_hash: str) -> None:
        await self._require_agents([agent_id], "relay token")
        await self._run(
            "INSERT INTO relay_tokens (agent_id, kind, token_hash, issued_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, kind) DO UPDATE"
            " SET token_hash = excluded.token_hash, issued_at = excluded.issued_at",
            (agent_id, kind, token_hash, self._now()),
        )
        # The kind only: the hash must not land in the log either.
        self._write_audit("agent", agent_id, "relay-token", kind=kind)

    # requests ----------------------------------------------------------------------------
    async def put_request(self, request: Request) -> Request:
        row = codec.request_row(request)
        old = await self._one("SELECT * FROM requests WHERE id = ?", (request.id,))
        if old is not None and codec.same_row(old, row, ignore=("updated_at",)):
            return codec.request_from_row(old)
        row["updated_at"] = self._now()
        await self._run(_REQUEST_UPSERT, row)
        self._write_audit("request", request.id, "create" if old is None else "update")
        return codec.request_from_row(row)

    # appointments ------------------------------------------------------------------------
    async def put_appointment(self, appt: Appointment) -> Appointment:
        row = codec.appointment_row(appt)
        await self._require_agents([appt.agent_id], f"appointment {appt.id}")
        # Most single puts are new entries (an initial sync imports thousands): try the
        # insert first, one round trip; an existing id takes the compare-and-update path.
        self._prepare_insert(row, self._now())
        cursor = await self._run(_APPOINTMENT_INSERT_NEW, row)
        if cursor.rowcount == 0:
            return (await self.put_appointments([appt]))[0]
        self._inserted(row)
        return codec.appointment_from_row(row)

    async def put_appointments(self, appts: Sequence[Appointment]) -> list[Appointment]:
        """Validate every entry, then write the batch in a few round trips."""
        if not appts:
            return []
        rows = [codec.appointment_row(a) for a in appts]
        await self._require_agents((r["agent_id"] for r in rows), f"appointment {rows[0]['id']}")
        current: dict[str, dict[str, Any]] = {
            r["id"]: dict(r)
            for r in await self._rows_in(
                "SELECT * FROM appointments WHERE id IN ({})", [r["id"] for r in rows]
            )
        }
        current_before = dict(current)
        inserts: list[dict[str, Any]] = []
        updates: list[tuple[dict[str, Any], str, list[str]]] = []  # row, action, changed
        stored: list[dict[str, Any]] = []
        now = self._now()
        # First decide for every entry (a refusal leaves no trace), then write.
        for row in rows:
            old = current.get(row["id"])
            if old is None:
                self._prepare_insert(row, now)
                inserts.append(row)
            elif old["agent_id"] != row["agent_id"]:
                raise ConstraintError(
                    f"appointment {row['id']!r} belongs to agent {old['agent_id']!r},"
                    f" not {row['agent_id']!r}"
                )
            elif changed := codec.changed_content(old, row):
                row["version"] = old["version"] + 1
                row["created_at"] = old["created_at"]
                row["deleted_at"] = (old["deleted_at"] or now) if row["deleted"] else None
                row["updated_at"] = now
                row["origin"] = self.origin
                updates.append((row, _appointment_action(old, row), changed))
            else:
                stored.append(old)  # unchanged: nothing to write
                continue
            current[row["id"]] = row
            stored.append(row)
        # An id inserted by this batch and changed again later in it is inserted once, first.
        await self._run_many(_APPOINTMENT_INSERT, inserts)
        await self._run_many(_APPOINTMENT_UPDATE, [row for row, _, _ in updates])
        for row in inserts:
            self._inserted(row)
        for row, action, changed in updates:
            self._changed(row["id"], current_before.get(row["id"]), row)
            self._write_audit(
                "appointment", row["id"], action, changed=changed, version=row["version"]
            )
            self.changed_agents.add(row["agent_id"])
            self.changed_appointments.add(row["id"])
        return [codec.appointment_from_row(r) for r in stored]

    def _prepare_insert(self, row: dict[str, Any], now: str) -> None:
        row["version"] = max(1, row["version"])
        row["created_at"] = row["created_at"] or now
        row["updated_at"] = now
        row["deleted_at"] = (row["deleted_at"] or now) if row["deleted"] else None
        row["origin"] = self.origin

    def _inserted(self, row: dict[str, Any]) -> None:
        self._changed(row["id"], None, row)
        detail = {k: row[k] for k in ("agent_id", "kind", "start", "end")}
        self._write_audit("appointment", row["id"], "create", **detail)
        self.changed_agents.add(row["agent_id"])
        self.changed_appointments.add(row["id"])

    async def delete_appointment(self, appointment_id: str) -> Appointment | None:
        appt = await self.get_appointment(appointment_id, include_deleted=True)
        if appt is None or appt.deleted:
            return appt
        # put_appointments, not put_appointment: the row exists, no insert to try first.
        return (await self.put_appointments([appt.evolve(deleted=True)]))[0]

    async def purge_appointment(self, appointment_id: str) -> None:
        old = await self._one("SELECT * FROM appointments WHERE id = ?", (appointment_id,))
        self._write_statuses()
        await self._run("DELETE FROM sync_status WHERE appointment_id = ?", (appointment_id,))
        if old is None:
            return
        await self._run("DELETE FROM appointments WHERE id = ?", (appointment_id,))
        self._changed(appointment_id, dict(old), None)
        self._write_audit("appointment", appointment_id, "purge")
        self.changed_appointments.add(appointment_id)
        if not old["deleted"]:
            # Purging a tombstone only forgets what sync already carried out; purging a live
            # entry removes it from the calendar.
            self.changed_agents.add(old["agent_id"])

    # approvals ---------------------------------------------------------------------------
    async def add_approval(self, approval: Approval) -> Approval:
        row = codec.approval_row(approval)
        try:
            await self._run(_insert_sql("approvals", codec.APPROVAL_COLUMNS), row)
        except sqlite3.IntegrityError as exc:
            raise ConstraintError(
                f"approval {approval.id!r}: already exists, or its appointment"
                f" {approval.appointment_id!r} or agent {approval.agent_id!r} is unknown"
            ) from exc
        self._write_audit("approval", approval.id, "create", appointment_id=approval.appointment_id)
        return codec.approval_from_row(row)

    async def decide_approval(self, approval_id: str, approved: bool, by: str) -> Approval:
        approval = await self.get_approval(approval_id)
        if approval is None:
            raise KeyError(approval_id)
        if approval.decided_at is not None:
            raise ValueError(f"approval {approval_id!r} was already decided")
        now = self._now()
        await self._run(
            "UPDATE approvals SET decided_at = ?, approved = ?, decided_by = ? WHERE id = ?",
            (now, int(approved), by, approval_id),
        )
        self._write_audit("approval", approval_id, "approve" if approved else "reject", by=by)
        approval.decided_at = codec.decode_datetime(now)
        approval.approved = approved
        approval.decided_by = by
        return approval

    # housekeeping ------------------------------------------------------------------------
    async def prune(self, before_audit: datetime, before_conflicts: datetime) -> dict[str, int]:
        return {
            "audit": await self._prune_table("audit", "id", "at", before_audit),
            "conflicts": await self._prune_table(
                "conflicts", "seq", "created_at", before_conflicts
            ),
            "stamps": (await self._run(_PRUNE_STAMPS)).rowcount,
        }

    async def _prune_table(self, table: str, key: str, column: str, before: datetime) -> int:
        sql = (
            f"DELETE FROM {table} WHERE {key} IN"
            f" (SELECT {key} FROM {table} WHERE {column} < ? LIMIT {_PRUNE_BATCH:d})"
        )
        cutoff = codec.encode_time(before, "before")
        total = 0
        while True:
            cursor = await self._run(sql, (cutoff,))
            total += cursor.rowcount
            if cursor.rowcount < _PRUNE_BATCH:
                return total

    # conflicts ---------------------------------------------------------------------------
    async def add_conflict(self, conflict: Conflict) -> Conflict:
        row = codec.conflict_row(conflict)
        row["created_at"] = row["created_at"] or self._now()
        try:
            await self._run(_insert_sql("conflicts", codec.CONFLICT_COLUMNS), row)
        except sqlite3.IntegrityError as exc:
            raise ConstraintError(f"conflict {conflict.id!r}: already recorded") from exc
        self._write_audit(
            "conflict", conflict.id, "record", winner=conflict.winner, policy=conflict.policy
        )
        return codec.conflict_from_row(row)

    # sync --------------------------------------------------------------------------------
    async def put_status(self, status: SyncStatus) -> None:
        await self.put_statuses([status])

    async def put_statuses(self, statuses: Sequence[SyncStatus]) -> None:
        """Write the rows that differ from what is stored (bar ``updated_at``)."""
        self._conn()  # refuse a finished transaction now, not silently at the next flush
        if not statuses:
            return
        rows = [codec.status_row(s) for s in statuses]
        await self._require_agents(
            (r["agent_id"] for r in rows), f"sync status of {rows[0]['appointment_id']}"
        )
        now = self._now()
        for row in rows:
            row["updated_at"] = now
        self._statuses += rows

    async def delete_status(self, agent_id: str, appointment_id: str, account: str) -> None:
        self._write_statuses()
        await self._run(
            "DELETE FROM sync_status WHERE agent_id = ? AND account = ? AND appointment_id = ?",
            (agent_id, account, appointment_id),
        )

    async def list_status(self, agent_id: str, account: str) -> list[SyncStatus]:
        self._write_statuses()
        return await super().list_status(agent_id, account)

    async def get_statuses(
        self,
        agent_id: str,
        account: str,
        *,
        appointment_ids: Iterable[str] = (),
        remote_ids: Iterable[str] = (),
    ) -> list[SyncStatus]:
        self._write_statuses()
        return await super().get_statuses(
            agent_id, account, appointment_ids=appointment_ids, remote_ids=remote_ids
        )

    async def has_status(self, agent_id: str, account: str) -> bool:
        self._write_statuses()
        return await super().has_status(agent_id, account)

    async def changed_since(self, agent_id: str, seq: int, limit: int) -> list[str] | None:
        self._write_statuses()  # their triggers stamp
        return await super().changed_since(agent_id, seq, limit)

    async def get_hub_seq(self, agent_id: str) -> int | None:
        self._write_statuses()  # their triggers raise the counter
        seq = await super().get_hub_seq(agent_id)
        if seq is not None:
            self._known_agents.add(agent_id)  # spares the writes that follow their check
        return seq

    async def put_calendar_state(self, state: CalendarState) -> None:
        # Sent with the next statement or the COMMIT: one statement, which leaves an unchanged
        # row alone, and names the agent if it is unknown.
        self._conn()  # refuse a finished transaction now, not silently at the next flush
        row = codec.calendar_state_row(state)
        unknown = f"calendar state: unknown agent {state.agent_id!r}"
        self._pending.append((f"put:{unknown}", _CALENDAR_STATE_UPSERT, row))

    # browser sessions --------------------------------------------------------------------
    async def put_session(self, session: BrowserSession) -> None:
        await self._run(
            "INSERT INTO browser_sessions (id_hash, created_at, seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT (id_hash) DO UPDATE SET seen_at = excluded.seen_at",
            (
                session.id_hash,
                codec.encode_time(session.created_at, "created_at"),
                codec.encode_time(session.seen_at, "seen_at"),
            ),
        )

    async def delete_sessions(
        self, *, id_hash: str | None = None, before: datetime | None = None
    ) -> int:
        if id_hash is not None:
            cursor = await self._run("DELETE FROM browser_sessions WHERE id_hash = ?", (id_hash,))
        elif before is not None:
            cursor = await self._run(
                "DELETE FROM browser_sessions WHERE seen_at < ?",
                (codec.encode_time(before, "before"),),
            )
        else:
            raise ValueError("delete_sessions: give id_hash or before")
        return cursor.rowcount

    async def put_agent_secret(self, agent_id: str, account: str, secret: str) -> None:
        await self._require_agents([agent_id], "agent secret")
        await self._run(
            "INSERT INTO agent_secrets (agent_id, account, secret, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, account)"
            " DO UPDATE SET secret = excluded.secret, updated_at = excluded.updated_at",
            (agent_id, account, secret, self._now()),
        )

    # audit -------------------------------------------------------------------------------
    async def audit(self, entity: str, entity_id: str, action: str, **detail: Any) -> None:
        self._conn()  # refuse a finished transaction now, not silently at the next flush
        self._write_audit(entity, entity_id, action, **detail)

    def _write_audit(self, entity: str, entity_id: str, action: str, **detail: Any) -> None:
        at = self._now()
        self._audits.append((at, self.origin, entity, entity_id, action, codec.to_json(detail)))


async def _pragma(db: aiosqlite.Connection, pragma: str) -> str:
    rows = await db.execute_fetchall(f"PRAGMA {pragma}")
    return str(next(iter(rows))[0])


def _probe(file: str) -> None:
    # A new database is created readable by its owner only: it holds the agents' feed
    # tokens, and SQLite gives its -wal and -shm files the same permissions.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    sqlite3.connect(file).close()


def _appointment_action(old: Any, new: dict[str, Any]) -> str:
    if new["deleted"] and not old["deleted"]:
        return "delete"
    if old["deleted"] and not new["deleted"]:
        return "restore"
    return "update"


@dataclass(slots=True)
class _Batch:
    """Transactions sharing one ``BEGIN ... COMMIT`` (see :meth:`SqliteStore.transaction`)."""

    committed: asyncio.Future[None]  # done when the batch committed, or failed
    closer: bool = False  # whether a member is queued to commit it


class SqliteStore(_Queries, Store):
    """:class:`~hub.store.base.Store` on one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        self.path = os.fspath(path)
        self._clock = clock or _utcnow
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._tx_task: asyncio.Task[Any] | None = None
        self._batch: _Batch | None = None  # the open group commit, if any
        self._queued = 0  # transactions waiting for the writer
        self._closing: set[asyncio.Task[None]] = set()
        self._listeners: list[ChangeListener] = []
        self._commit_hooks: list[CommitHook] = []
        self._appointment_listeners: list[AppointmentListener] = []
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _conn(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._reader

    # lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._write_lock:  # two concurrent opens must not both connect
            if self._writer is None:
                await self._open()

    async def _open(self) -> None:
        file = self.path
        if file == ":memory:":
            self._tempdir = tempfile.TemporaryDirectory(prefix="calhub-")
            file = str(Path(self._tempdir.name) / "calhub.db")
        try:
            self._writer = await self._connect(file)
            # Migrate first: it refuses a database that is not ours before anything changes.
            await migrate(self._writer, self.path)
            await self._use_wal(self._writer)
            self._reader = await self._connect(file)
            await self._reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            await self._close_connections()
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
                raise StoreError(f"{self.path}: cannot open the database: {reason}") from exc
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: cannot open the database: {exc}") from exc
            raise

    async def _use_wal(self, db: aiosqlite.Connection) -> None:
        # WAL is a property of the file: set once, it stays. Switching needs an exclusive
        # lock, and SQLite may refuse it at once, without the busy handler, while another
        # connection is opening the same file (two processes starting together): retry for
        # as long as busy_timeout would have waited.
        deadline = anyio.current_time() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = await _pragma(db, "journal_mode")
                if mode.lower() != "wal":
                    mode = await _pragma(db, "journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or anyio.current_time() > deadline:
                    raise
                await anyio.sleep(0.02)
        if mode.lower() != "wal":
            log.warning("%s: journal mode is %s, not WAL; readers may wait", self.path, mode)

    async def _connect(self, file: str) -> aiosqlite.Connection:
        # A failed aiosqlite.connect() leaves its worker thread to stop on its own, which then
        # reports to a possibly closed event loop (omnilib/aiosqlite#259): try the file with
        # plain sqlite3 first so that a missing directory or a permission error fails here.
        await anyio.to_thread.run_sync(_probe, file)
        db = await aiosqlite.connect(file, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            for pragma in (
                "foreign_keys = ON",
                f"busy_timeout = {BUSY_TIMEOUT_MS}",
                "synchronous = NORMAL",
            ):
                await db.execute(f"PRAGMA {pragma}")
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        if self._tx_task is not None and self._tx_task is asyncio.current_task():
            raise RuntimeError("close() inside a transaction of the same task")
        # Let the transaction in flight finish before the connections go.
        async with self._write_lock:
            try:
                if self._batch is not None and self._writer is not None:
                    with anyio.CancelScope(shield=True), contextlib.suppress(StoreError):
                        await self._commit(self._writer, self._batch)
                if self._writer is not None:
                    with anyio.CancelScope(shield=True):
                        # SQLite's advice for long-lived connections: refresh the planner's
                        # statistics where they went stale (usually does nothing, quickly).
                        await self._writer.execute("PRAGMA optimize")
            finally:
                await self._close_connections()

    async def _close_connections(self) -> None:
        reader, writer, self._reader, self._writer = self._reader, self._writer, None, None
        for db in (reader, writer):
            if db is not None:
                with anyio.CancelScope(shield=True):
                    await db.close()
        if self._tempdir is not None:
            await anyio.to_thread.run_sync(self._tempdir.cleanup)
            self._tempdir = None

    @property
    def total_changes(self) -> int:
        """Rows inserted, updated or deleted through this store since it opened (SQLite's own
        counter): a test asserts with it that a pass with nothing to do writes nothing."""
        if self._writer is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._writer.total_changes

    async def schema_version(self) -> int:
        return await user_version(self._conn())

    # transactions ------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self, origin: str) -> AsyncIterator[SqliteTx]:
        """One transaction; transactions queued behind it share its commit (group commit).

        The first of a batch opens ``BEGIN IMMEDIATE``; while others wait for the writer,
        the batch stays open and each of them runs in a savepoint of its own, so one that
        fails is rolled back alone and the others keep their writes. The batch commits when
        nobody waits any more (or when the member that left it open, queued again behind
        the others, gets the writer back). Each caller leaves its ``async with`` only once
        its batch committed: what it was told succeeded is on disk, and a failed commit
        fails every member of the batch.
        """
        task = asyncio.current_task()
        if task is not None and task is self._tx_task:
            # The lock is not re-entrant: waiting for it here would wait forever.
            raise RuntimeError("a transaction is already open in this task; use its tx")
        await self._acquire_writer()
        close_batch = False
        try:
            if self._writer is None:
                raise StoreError(f"{self.path}: the store is not open")
            db = self._writer
            batch = self._batch
            joined = batch is not None
            self._tx_task = task
            # The BEGIN IMMEDIATE (or a member's SAVEPOINT) goes with the transaction's first
            # statement, and a lone transaction's last writes with its COMMIT: round trips to
            # the writer thread are most of what a transaction costs.
            tx = SqliteTx(
                db,
                origin,
                self._clock,
                begin="SAVEPOINT member" if joined else "BEGIN IMMEDIATE",
                where=self.path,
            )
            if batch is None:
                if db.in_transaction:  # a COMMIT failed after its caller was cancelled
                    await db.rollback()
                batch = self._batch = _Batch(asyncio.get_running_loop().create_future())
            commit_now = False
            try:
                yield tx
                for hook in self._commit_hooks:
                    await hook(tx)
                if joined:
                    await tx._flush(end="RELEASE member")
                elif tx._untouched:
                    # Nothing was read or written: no transaction to commit or keep open.
                    self._batch = None
                    batch.committed.set_result(None)
                elif self._queued:
                    await tx._flush()
                else:
                    commit_now = True
            except BaseException as exc:
                # Shielded so that a cancelled task still rolls back; should the wait be cut
                # short anyway, the rollback is queued on the writer thread before anything
                # the next transaction sends.
                with anyio.CancelScope(shield=True):
                    await self._undo(db, batch if joined else None, tx)
                if isinstance(exc, sqlite3.Error):  # disk full, I/O error, a stray constraint
                    raise StoreError(f"{self.path}: write rolled back: {exc}") from exc
                raise
            finally:
                if not commit_now:
                    tx._finish()
                self._tx_task = None
            if commit_now:
                try:
                    with anyio.CancelScope(shield=True):
                        await self._commit(db, batch, tx)
                finally:
                    tx._finish()
            elif batch.committed.done():
                pass  # the empty transaction above
            elif self._queued == 0:
                with anyio.CancelScope(shield=True):
                    await self._commit(db, batch)
            elif not batch.closer:
                batch.closer = close_batch = True
        finally:
            self._write_lock.release()
        if close_batch:
            # In a task of its own: a caller cancelled now must not leave the batch open.
            closing = asyncio.get_running_loop().create_task(self._close_batch(batch))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        await asyncio.shield(batch.committed)
        self._notify(origin, frozenset(tx.changed_agents))
        self._notify_appointments(frozenset(tx.changed_appointments))

    async def _acquire_writer(self) -> None:
        # Counted while waiting: a transaction that ends while others wait leaves its batch
        # open for them.
        self._queued += 1
        try:
            await self._write_lock.acquire()
        finally:
            self._queued -= 1

    async def _close_batch(self, batch: _Batch) -> None:
        """Commit ``batch`` once the transactions queued before this call have joined it."""
        await self._acquire_writer()
        try:
            if self._batch is batch and self._writer is not None:
                with anyio.CancelScope(shield=True):
                    await self._commit(self._writer, batch)
        except StoreError:
            pass  # every member gets it from batch.committed
        finally:
            self._write_lock.release()

    async def _commit(
        self, db: aiosqlite.Connection, batch: _Batch, tx: SqliteTx | None = None
    ) -> None:
        """Commit ``batch``; with ``tx`` (a lone transaction) its buffered writes go with
        the COMMIT, in one round trip."""
        self._batch = None
        commit = asyncio.ensure_future(db.commit() if tx is None else tx._flush(end="COMMIT"))
        # The batch is settled by the COMMIT's end, whoever still waits for it.
        commit.add_done_callback(functools.partial(self._settle, batch))
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The COMMIT runs on, on the writer's thread: wait for it all the same, so that
            # what this caller reads after its cancellation already sees it.
            with contextlib.suppress(BaseException):
                await asyncio.wait([commit])
            raise
        except StoreUnavailable:  # its BEGIN, sent with the COMMIT, was refused
            raise
        except ConstraintError:  # a buffered write refused with the COMMIT: nothing commits
            with contextlib.suppress(sqlite3.Error):
                await db.rollback()
            raise
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.rollback()
            raise batch.committed.exception() from exc  # type: ignore[misc]

    def _settle(self, batch: _Batch, commit: asyncio.Future[None]) -> None:
        error = "the commit was cancelled" if commit.cancelled() else commit.exception()
        if error is not None:
            self._fail(batch, StoreError(f"{self.path}: write rolled back: {error}"))
        elif not batch.committed.done():
            batch.committed.set_result(None)

    async def _undo(self, db: aiosqlite.Connection, batch: _Batch | None, tx: SqliteTx) -> None:
        """Roll back the failed transaction: the whole batch when it was the batch's first
        (the others join only after it), else its savepoint alone (none when it never sent
        a statement)."""
        if batch is not None and not tx._begun:
            return
        if batch is not None:
            try:
                try:
                    await db.execute("ROLLBACK TO member")
                except sqlite3.OperationalError:
                    if tx._ended:
                        # Cancelled while its RELEASE was on its way: it ran, the writes
                        # belong to the batch now (as after a cancel during a commit).
                        return
                    raise
                await db.execute("RELEASE member")
                if db.in_transaction:
                    return
                reason = "the database ended the transaction"
            except sqlite3.Error as exc:
                reason = str(exc)
            # Some errors (disk full, I/O) end the whole transaction: the batch is lost.
            self._fail(batch, StoreError(f"{self.path}: write rolled back: {reason}"))
        self._batch = None
        with contextlib.suppress(sqlite3.Error):
            await db.rollback()

    def _fail(self, batch: _Batch, error: StoreError) -> None:
        if self._batch is batch:
            self._batch = None
        if not batch.committed.done():
            batch.committed.set_exception(error)
            batch.committed.exception()  # retrieved: a batch nobody waits for logs nothing

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def add_commit_hook(self, hook: CommitHook) -> None:
        self._commit_hooks.append(hook)

    def add_appointment_listener(self, listener: AppointmentListener) -> None:
        self._appointment_listeners.append(listener)

    def _notify_appointments(self, appointment_ids: frozenset[str]) -> None:
        if not appointment_ids:
            return
        for listener in list(self._appointment_listeners):
            try:
                listener(appointment_ids)
            except Exception:
                log.exception("store appointment listener %r failed", listener)

    def _notify(self, origin: str, agent_ids: frozenset[str]) -> None:
        if not agent_ids:
            return
        for listener in list(self._listeners):
            try:
                listener(origin, agent_ids)
            except Exception:
                log.exception("store listener %r failed (origin %s)", listener, origin)


__all__ = ["SqliteStore", "SqliteTx"]
