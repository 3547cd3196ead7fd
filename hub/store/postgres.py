"""The PostgreSQL store: hub state on a database server that several calhub workers share.

It runs the SQLite store's query and transaction classes unchanged over
:class:`hub.store.pg_dialect.PgConnection` (one copy of the SQL, see that module), on psycopg 3
connections of its own:

- the *writer*, for write transactions. Isolation: ``READ COMMITTED`` with one
  transaction-level advisory lock taken first (``pg_advisory_xact_lock``), so that write
  transactions run one at a time across every worker, exactly as SQLite's ``BEGIN IMMEDIATE``
  makes them run one at a time across processes; and since ``READ COMMITTED`` takes a fresh
  snapshot for every statement, each statement after the lock sees every transaction committed
  before it. The outcome is that of a serial order of the write transactions, which is all the
  store's read-then-write code (no-op puts, versions, the change counters) relies on; a stronger
  level would only add serialization failures to retry. Waiting for the lock longer than
  ``lock_timeout`` (5 s, SQLite's busy timeout) raises :class:`StoreUnavailable`;
- the *reader*, in autocommit mode, for the store's read methods: each sees the last
  committed state, never a transaction in flight (SQLite's WAL reader);
- the *listener*: ``LISTEN calhub_changes``. A transaction that changed calendars sends
  ``pg_notify`` with the origin and ids (delivered on commit, never after a rollback), and each
  other worker calls its own listeners with them: an API write on one worker triggers the pass
  on the worker holding the agent, and the calendar page's live stream sees every worker's
  writes;
- the *lease* connection, for :class:`hub.store.lease.Leases` (its transactions take row locks
  only, never the write lock, so that renewals are not held up by a busy writer).

A transaction opened inside :func:`hub.store.lease.fenced` checks its lease before it commits
(``SELECT ... FOR SHARE`` of the lease row, which also holds off a takeover until the commit).

The password comes from ``password`` (``[hub] database_password_env``), never the URL in the
file; ``ca_file`` (``[hub] database_ca_file``) turns on verified TLS (``sslmode=verify-full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hub.store.base import StoreError, StoreUnavailable
from hub.store.lease import Fence, LeaseLost, LeaseRound, current_fence
from hub.store.pg_dialect import PgConnection
from hub.store.pg_schema import migrate, versions
from hub.store.sqlite import SqliteStore, SqliteTx

log = logging.getLogger(__name__)

CHANNEL = "calhub_changes"
WRITE_LOCK = 0x63616C6875620002  # the advisory lock of "a write transaction is running"
LOCK_TIMEOUT = "5s"
_NOTIFY_IDS = 100  # ids per notification: stays far below PostgreSQL's 8000-byte payload
_RECONNECT_S = 1.0


def redact_url(url: str) -> str:
    """``url`` without any password in it (for messages and logs)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://..."
    user = f"{params['user']}@" if params.get("user") else ""
    host, port = params.get("host", ""), f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


def default_worker_name() -> str:
    """``HOST:PID:RANDOM``: unique even for containers that share a host name and a pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


class PgStore(SqliteStore):
    """:class:`~hub.store.base.Store` on a PostgreSQL database (see the module docstring).

    It reuses :class:`SqliteStore`'s listener and hook bookkeeping; every connection-level
    method is its own.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        ca_file: str | None = None,
        clock: Callable[[], datetime] | None = None,
        worker: str | None = None,
    ) -> None:
        super().__init__(redact_url(url), clock=clock)
        self.url = url
        self._password = password
        self._ca_file = ca_file
        self.worker = worker or default_worker_name()
        self._pg_writer: PgConnection | None = None
        self._pg_reader: PgConnection | None = None
        self._lease_conn: PgConnection | None = None
        self._lease_lock = asyncio.Lock()
        self._listen_task: asyncio.Task[None] | None = None
        self._listening: psycopg.AsyncConnection[Any] | None = None
        # Tells this process's own notifications from the other workers'.
        self._token = os.urandom(8).hex()

    def __repr__(self) -> str:
        return f"PgStore({self.path!r})"

    def _conn(self) -> Any:
        if self._pg_reader is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._pg_reader

    # lifecycle ---------------------------------------------------------------------------
    def _conninfo(self) -> str:
        extra: dict[str, Any] = {"application_name": f"calhub {self.worker}"}
        if self._password:
            extra["password"] = self._password
        if self._ca_file:
            extra.update(sslmode="verify-full", sslrootcert=self._ca_file)
        return make_conninfo(self.url, **extra)

    async def _connect(self, file: str = "") -> Any:  # type: ignore[override]
        try:
            return await psycopg.AsyncConnection.connect(
                self._conninfo(), autocommit=True, connect_timeout=10
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"{self.path}: cannot connect to the database: {reason}") from exc

    async def _open(self) -> None:
        try:
            writer = await self._connect()
            self._pg_writer = PgConnection(writer, self._connect)
            await migrate(writer, self.path)
            reader = await self._connect()
            self._pg_reader = PgConnection(reader, self._connect, autocommit_reads=True)
            self._lease_conn = PgConnection(await self._connect(), self._connect)
            listener = self._listening = await self._connect()
            await listener.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            await self._close_connections()
            raise
        self._listen_task = asyncio.get_running_loop().create_task(self._listen(listener))
        self._writer = self._pg_writer  # type: ignore[assignment]  # "open" to the base class

    async def close(self) -> None:
        if self._tx_task is not None and self._tx_task is asyncio.current_task():
            raise RuntimeError("close() inside a transaction of the same task")
        async with self._write_lock:
            await self._close_connections()

    async def _close_connections(self) -> None:
        task, self._listen_task = self._listen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        conns = [self._pg_reader, self._pg_writer]
        self._pg_reader = self._pg_writer = None
        self._writer = None
        lease, self._lease_conn = self._lease_conn, None
        listening, self._listening = self._listening, None
        for conn in (*conns, lease):
            if conn is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
                    await conn.close()
        for raw in (listening,):
            if raw is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
                    await raw.close()

    @property
    def total_changes(self) -> int:
        """Rows inserted, updated or deleted through this store's writer since it opened."""
        if self._pg_writer is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._pg_writer.changes

    async def schema_version(self) -> int:
        if self._pg_reader is None:
            raise StoreError(f"{self.path}: the store is not open")
        return (await versions(self._pg_reader.raw)).get("hub", 0)

    # transactions ------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self, origin: str) -> AsyncIterator[SqliteTx]:
        task = asyncio.current_task()
        if task is not None and task is self._tx_task:
            raise RuntimeError("a transaction is already open in this task; use its tx")
        fence = current_fence()
        async with self._write_lock:
            db = self._pg_writer
            if db is None:
                raise StoreError(f"{self.path}: the store is not open")
            self._tx_task = task
            tx = SqliteTx(db, origin, self._clock)  # type: ignore[arg-type]
            try:
                await self._begin(db)
                yield tx
                for hook in self._commit_hooks:
                    await hook(tx)
                await tx._flush()
                if fence is not None:
                    await self._check_fence(db, fence)
                await self._send_changes(db, origin, tx)
                with anyio.CancelScope(shield=True):
                    await db.execute("COMMIT")
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._rollback(db)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"{self.path}: write rolled back: {exc}") from exc
                raise
            finally:
                tx._finish()
                self._tx_task = None
        self._notify(origin, frozenset(tx.changed_agents))
        self._notify_appointments(frozenset(tx.changed_appointments))

    async def _begin(self, db: PgConnection) -> None:
        try:
            await db.ensure()
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        await db.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        await db.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            await db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(f"{self.path}: cannot start a write transaction: {exc}") from exc

    async def _rollback(self, db: PgConnection) -> None:
        try:
            await db.raw.execute("ROLLBACK")
        except psycopg.Error:
            # A connection cut short mid-statement (cancellation, a lost server) cannot be
            # trusted for the next transaction: the next one starts on a new connection.
            log.warning("%s: writer connection dropped after a failed rollback", self.path)
            with contextlib.suppress(psycopg.Error):
                await db.raw.close()

    async def _check_fence(self, db: PgConnection, fence: Fence) -> None:
        rows = await db.execute_fetchall(
            "SELECT 1 FROM agent_leases WHERE agent_id = ? AND holder = ? AND generation = ?"
            " AND expires_at > clock_timestamp() FOR SHARE",
            (fence.agent_id, fence.holder, fence.generation),
        )
        if not rows:
            raise LeaseLost(
                f"lease of agent {fence.agent_id!r} (generation {fence.generation}) was lost:"
                " this pass committed nothing"
            )

    async def _send_changes(self, db: PgConnection, origin: str, tx: SqliteTx) -> None:
        agents, appts = sorted(tx.changed_agents), sorted(tx.changed_appointments)
        for offset in range(0, max(len(agents), len(appts)), _NOTIFY_IDS):
            payload = {
                "w": self._token,
                "o": origin,
                "a": agents[offset : offset + _NOTIFY_IDS],
                "p": appts[offset : offset + _NOTIFY_IDS],
            }
            await db.execute("SELECT pg_notify(?, ?)", (CHANNEL, json.dumps(payload)))

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Call this worker's listeners with the other workers' committed changes."""
        while True:
            try:
                async for note in conn.notifies():
                    self._received(note.payload)
            except psycopg.Error as exc:
                log.warning("%s: change notifications lost (%s); reconnecting", self.path, exc)
            with contextlib.suppress(psycopg.Error):
                await conn.close()
            while True:
                await asyncio.sleep(_RECONNECT_S)
                try:
                    conn = self._listening = await self._connect()
                    await conn.execute(f"LISTEN {CHANNEL}")
                    break
                except (StoreError, psycopg.Error) as exc:
                    log.warning("%s", exc)

    def _received(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            if note.get("w") == self._token:
                return  # our own: the listeners were called after the commit
            origin, agents, appts = str(note["o"]), note["a"], note["p"]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s: ignoring a malformed change notification", self.path)
            return
        self._notify(origin, frozenset(map(str, agents)))
        self._notify_appointments(frozenset(map(str, appts)))

    # leases ------------------------------------------------------------------------------
    @asynccontextmanager
    async def _lease_tx(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._lease_lock:
            if self._lease_conn is None:
                raise StoreError(f"{self.path}: the store is not open")
            await self._lease_conn.ensure()
            conn = self._lease_conn.raw
            try:
                async with conn.transaction():
                    yield conn
            except psycopg.Error as exc:
                raise StoreError(f"{self.path}: lease round failed: {exc}") from exc

    async def lease_round(self, lease_seconds: float) -> LeaseRound:
        lease = f"{lease_seconds:.3f} seconds"
        async with self._lease_tx() as conn:
            await conn.execute(
                "INSERT INTO calhub_workers (name) VALUES (%s) ON CONFLICT (name)"
                " DO UPDATE SET seen_at = clock_timestamp()",
                (self.worker,),
            )
            await conn.execute(
                "INSERT INTO agent_leases (agent_id) SELECT id FROM agents"
                " WHERE COALESCE(account, '') <> '' ON CONFLICT (agent_id) DO NOTHING"
            )
            # Ours until another worker takes it: a lease that ran out while this worker
            # was slow is still ours when nobody claimed it meanwhile (no pass ran elsewhere).
            await conn.execute(
                "UPDATE agent_leases SET expires_at = clock_timestamp() + %s::interval"
                " WHERE holder = %s",
                (lease, self.worker),
            )
            agents, workers = await _counts(conn, lease)
            held = await _held(conn, self.worker)
            share = -(-agents // max(1, workers))  # ceil: every agent has a worker
            if len(held) > share:
                excess = sorted(held)[share:]
                await conn.execute(
                    "UPDATE agent_leases SET holder = NULL, expires_at = '-infinity'"
                    " WHERE holder = %s AND agent_id = ANY(%s)",
                    (self.worker, excess),
                )
            elif len(held) < share:
                await conn.execute(
                    "UPDATE agent_leases SET holder = %s, generation = generation + 1,"
                    " expires_at = clock_timestamp() + %s::interval WHERE agent_id IN ("
                    "  SELECT agent_id FROM agent_leases"
                    "  WHERE holder IS NULL OR expires_at <= clock_timestamp()"
                    "  ORDER BY agent_id LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (self.worker, lease, share - len(held)),
                )
            return LeaseRound(await _held(conn, self.worker), workers, agents)

    async def release_all(self) -> None:
        async with self._lease_tx() as conn:
            await conn.execute(
                "UPDATE agent_leases SET holder = NULL, expires_at = '-infinity' WHERE holder = %s",
                (self.worker,),
            )
            await conn.execute("DELETE FROM calhub_workers WHERE name = %s", (self.worker,))

    async def lease_holder(self, agent_id: str) -> str | None:
        rows = await self._rows(
            "SELECT holder FROM agent_leases WHERE agent_id = ? AND expires_at > clock_timestamp()",
            (agent_id,),
        )
        return str(rows[0]["holder"]) if rows and rows[0]["holder"] else None


async def _counts(conn: psycopg.AsyncConnection[Any], lease: str) -> tuple[int, int]:
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM agent_leases),"
        " (SELECT count(*) FROM calhub_workers"
        "  WHERE seen_at > clock_timestamp() - %s::interval)",
        (lease,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def _held(conn: psycopg.AsyncConnection[Any], worker: str) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT agent_id, generation FROM agent_leases"
        " WHERE holder = %s AND expires_at > clock_timestamp()",
        (worker,),
    )
    return {str(a): int(g) for a, g in await cur.fetchall()}


__all__ = ["PgStore", "default_worker_name", "redact_url"]
