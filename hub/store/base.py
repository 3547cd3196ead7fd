"""The store interface: every read and write of hub state goes through it.

SQLite (:mod:`hub.store.sqlite`) is the embedded implementation; a second backend
(PostgreSQL) implements the same two classes. Reads are methods of :class:`Store`; writes happen
inside ``async with store.transaction(origin) as tx`` so that several changes (a hub-side
change and the sync status row that records it) commit together or not at all. Every change
of a hub record (agent, request, appointment, approval, conflict) adds an audit entry with the
transaction's origin (``api``, ``rule``, ``approval``, ``sync:ACCOUNT``); the sync engine's
bookkeeping (status rows, calendar state) is not audited. A put that changes nothing writes
nothing: a sync pass with nothing to do leaves the database as it was.

After a transaction commits, listeners added with :meth:`Store.add_listener` are called with
the origin and the ids of the agents whose calendars changed (an appointment, or the agent
itself, was written or deleted); the scheduler uses this to sync an agent within a second of a
local change. No call follows a rollback, nor a commit that changed no calendar.

Each agent also has a change counter, :meth:`Store.get_hub_seq`, that the store raises in the
transaction of every change that concerns the agent's calendar: its appointments, their
approvals and requests, the agent record, and its sync status rows. The sync engine skips
reading an unchanged calendar when the counter still has the value its last clean pass saw.

Commit hooks added with :meth:`Store.add_commit_hook` run inside every transaction, after its
body and before its commit, with the transaction itself: they see its
:meth:`Tx.appointment_changes` and may write through it (the e-mail copies go to the outbox
in the same transaction as the change). A hook that raises rolls the whole transaction back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Self

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
from hub.store.outbox import OutboxReads, OutboxWrites

ChangeListener = Callable[[str, frozenset[str]], None]
AppointmentListener = Callable[[frozenset[str]], None]


@dataclass(frozen=True, slots=True)
class AppointmentChange:
    """One appointment as it was when a transaction began and as it is now (None: it did not
    exist, or was purged)."""

    before: Appointment | None
    after: Appointment | None


class StoreError(Exception):
    """The database cannot be used: newer schema than the code, not a database, locked...

    The message is meant for the operator (the command line prints it as is).
    """


class StoreUnavailable(StoreError):
    """No write can start at all (another process held the lock past the busy timeout):
    the whole operation stops, rather than each of its writes failing in turn."""


class ConstraintError(StoreError, ValueError):
    """A write refers to something that does not exist or would break a uniqueness rule
    (an appointment for an unknown agent, a feed token already in use); nothing was written."""


class Tx(OutboxWrites, ABC):
    """Write operations inside one transaction (BEGIN IMMEDIATE in SQLite)."""

    origin: str

    @abstractmethod
    def appointment_changes(self) -> list[AppointmentChange]:
        """The appointments this transaction inserted, changed, deleted or purged so far,
        one entry per appointment, in the order they were first written."""

    # agents ------------------------------------------------------------------------------
    @abstractmethod
    async def put_agent(self, agent: Agent) -> Agent:
        """Insert or replace an agent; sets created_at/updated_at; returns what was stored."""

    @abstractmethod
    async def delete_agent(self, agent_id: str) -> bool:
        """Delete an agent, its appointments, approvals, sync status and calendar state."""

    @abstractmethod
    async def put_relay_token(self, agent_id: str, kind: str, token_hash: str) -> None:
        """Store the hash of the agent's relay token of ``kind``, replacing the old one
        (which then opens nothing). ConstraintError for an unknown agent."""

    # requests ----------------------------------------------------------------------------
    @abstractmethod
    async def put_request(self, request: Request) -> Request:
        """Insert or replace a request."""

    # appointments ------------------------------------------------------------------------
    @abstractmethod
    async def put_appointment(self, appt: Appointment) -> Appointment:
        """Insert, or update when the id exists. On update, when any content field changed,
        ``version`` is incremented and ``updated_at`` set; an unchanged put writes nothing.
        ``origin`` is set from the transaction. Returns the stored record."""

    @abstractmethod
    async def delete_appointment(self, appointment_id: str) -> Appointment | None:
        """Mark deleted (tombstone, version+1) so sync can carry the delete out. Returns the
        tombstone, or None when it did not exist."""

    @abstractmethod
    async def purge_appointment(self, appointment_id: str) -> None:
        """Remove a tombstone (or a record) for good, with its status rows and approvals."""

    # approvals ---------------------------------------------------------------------------
    @abstractmethod
    async def add_approval(self, approval: Approval) -> Approval: ...

    @abstractmethod
    async def decide_approval(self, approval_id: str, approved: bool, by: str) -> Approval:
        """Record the decision; raises KeyError when unknown, ValueError when decided."""

    # conflicts ---------------------------------------------------------------------------
    @abstractmethod
    async def add_conflict(self, conflict: Conflict) -> Conflict: ...

    # sync --------------------------------------------------------------------------------
    @abstractmethod
    async def put_status(self, status: SyncStatus) -> None:
        """Insert or replace the status row of (agent_id, appointment_id, account); sets
        ``updated_at`` when something other than it changed. Raises :class:`ConstraintError`
        for an unknown agent."""

    @abstractmethod
    async def delete_status(self, agent_id: str, appointment_id: str, account: str) -> None: ...

    @abstractmethod
    async def put_calendar_state(self, state: CalendarState) -> None: ...

    # browser sessions (not audited: they are not hub records) ---------------------------
    @abstractmethod
    async def put_session(self, session: BrowserSession) -> None:
        """Insert or update (its ``seen_at``) one session."""

    @abstractmethod
    async def delete_sessions(
        self, *, id_hash: str | None = None, before: datetime | None = None
    ) -> int:
        """Delete the session ``id_hash``, or those last seen before ``before``; how many."""

    @abstractmethod
    async def put_agent_secret(self, agent_id: str, account: str, secret: str) -> None:
        """Keep one agent's secret at one account (an OAuth refresh token), replacing any;
        ConstraintError for an unknown agent."""

    @abstractmethod
    async def audit(self, entity: str, entity_id: str, action: str, **detail: Any) -> None:
        """Add an audit entry (the put/delete methods above already add their own)."""

    # housekeeping ------------------------------------------------------------------------
    @abstractmethod
    async def prune(self, before_audit: datetime, before_conflicts: datetime) -> dict[str, int]:
        """Delete audit entries older than ``before_audit`` and conflicts older than
        ``before_conflicts``, and the change stamps of appointments gone with their sync
        records; returns how many of each went (keys ``audit``, ``conflicts``, ``stamps``).
        Not audited itself: it would grow what it shrinks."""

    # bulk writes (a backend may override them with one round trip per batch) ------------
    async def put_appointments(self, appts: Sequence[Appointment]) -> list[Appointment]:
        """:meth:`put_appointment` for each, in order; returns the stored records."""
        return [await self.put_appointment(appt) for appt in appts]

    async def put_statuses(self, statuses: Sequence[SyncStatus]) -> None:
        """:meth:`put_status` for each, in order."""
        for status in statuses:
            await self.put_status(status)

    # reads that see this transaction's own writes ----------------------------------------
    @abstractmethod
    async def get_agent(self, agent_id: str) -> Agent | None: ...

    @abstractmethod
    async def get_hub_seq(self, agent_id: str) -> int | None:
        """As :meth:`Store.get_hub_seq`, this transaction's own changes included."""

    @abstractmethod
    def hub_seq_at_end(self, agent_id: str) -> Callable[[], int | None]:
        """:meth:`get_hub_seq` as the transaction ends (after all of its writes, before it
        commits), read along with its last statements instead of in a round trip of its
        own: the returned function gives it once the transaction has ended."""

    @abstractmethod
    async def get_request(self, request_id: str) -> Request | None: ...

    @abstractmethod
    async def get_appointment(
        self, appointment_id: str, *, include_deleted: bool = False
    ) -> Appointment | None: ...

    @abstractmethod
    async def get_appointments(
        self, appointment_ids: Iterable[str], *, include_deleted: bool = False
    ) -> dict[str, Appointment]:
        """The appointments of these ids that exist, by id (one query, not one per id)."""

    @abstractmethod
    async def list_appointments(
        self,
        *,
        agent_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        request_id: str | None = None,
        group_id: str | None = None,
        kind: Kind | None = None,
        include_deleted: bool = False,
        after: tuple[datetime | date, str] | None = None,
        limit: int | None = None,
    ) -> list[Appointment]:
        """As :meth:`Store.list_appointments`."""

    @abstractmethod
    async def get_approval(self, approval_id: str) -> Approval | None: ...

    @abstractmethod
    async def list_approvals(self, *, pending_only: bool = True) -> list[Approval]: ...

    @abstractmethod
    async def list_status(self, agent_id: str, account: str) -> list[SyncStatus]: ...

    @abstractmethod
    async def get_calendar_state(self, agent_id: str) -> CalendarState | None: ...


CommitHook = Callable[[Tx], Awaitable[None]]


class Store(OutboxReads, ABC):
    """Reads, transactions and lifecycle of one hub database."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and migrate the schema to the current version."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def transaction(self, origin: str) -> AbstractAsyncContextManager[Tx]:
        """One write transaction; only one is open at a time (single writer)."""

    @abstractmethod
    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(origin, agent_ids)`` after each commit that changed calendars
        (appointments, or agents); a listener's exception is logged, not raised."""

    @abstractmethod
    def add_commit_hook(self, hook: CommitHook) -> None:
        """Run ``await hook(tx)`` in every transaction just before it commits."""

    @abstractmethod
    def add_appointment_listener(self, listener: AppointmentListener) -> None:
        """Call ``listener(appointment_ids)`` after each commit that wrote, deleted or purged
        appointments (the calendar page's live updates); exceptions are logged, not raised."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    # agents ------------------------------------------------------------------------------
    @abstractmethod
    async def get_session(self, id_hash: str) -> BrowserSession | None: ...

    @abstractmethod
    async def get_agent(self, agent_id: str) -> Agent | None: ...

    @abstractmethod
    async def get_hub_seq(self, agent_id: str) -> int | None:
        """The agent's change counter (None for an unknown agent): it grows with every
        committed change of the agent, its appointments, their approvals and requests, or its
        sync status rows; nothing else moves it."""

    @abstractmethod
    async def get_agent_by_feed_token(self, token: str) -> Agent | None: ...

    @abstractmethod
    async def get_relay_token(self, agent_id: str, kind: str) -> str | None:
        """The stored hash of the agent's relay token of ``kind``, None when none was issued."""

    @abstractmethod
    async def list_agents(self) -> list[Agent]: ...

    # requests ----------------------------------------------------------------------------
    @abstractmethod
    async def get_request(self, request_id: str) -> Request | None: ...

    @abstractmethod
    async def get_requests(self, request_ids: Iterable[str]) -> dict[str, Request]:
        """The requests of ``request_ids`` that exist, by id, read in one query (per chunk)."""

    # appointments ------------------------------------------------------------------------
    @abstractmethod
    async def get_appointment(
        self, appointment_id: str, *, include_deleted: bool = False
    ) -> Appointment | None: ...

    @abstractmethod
    async def get_appointments(
        self, appointment_ids: Iterable[str], *, include_deleted: bool = False
    ) -> dict[str, Appointment]:
        """The appointments of these ids that exist, by id (one query, not one per id)."""

    @abstractmethod
    async def list_appointments(
        self,
        *,
        agent_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        request_id: str | None = None,
        group_id: str | None = None,
        kind: Kind | None = None,
        include_deleted: bool = False,
        after: tuple[datetime | date, str] | None = None,
        limit: int | None = None,
    ) -> list[Appointment]:
        """Appointments matching every given filter; ``start``/``end`` keep those overlapping
        [start, end). Ordered by start, then id. ``after`` (a start and an id) keeps those
        after it in that order and ``limit`` the first so many: a page of the list, read from
        the index on (agent, start, id) or (start, id) rather than sorted whole."""

    # approvals ---------------------------------------------------------------------------
    @abstractmethod
    async def get_approval(self, approval_id: str) -> Approval | None: ...

    @abstractmethod
    async def list_approvals(self, *, pending_only: bool = True) -> list[Approval]: ...

    # conflicts ---------------------------------------------------------------------------
    @abstractmethod
    async def list_conflicts(
        self, *, agent_id: str | None = None, limit: int = 100
    ) -> list[Conflict]:
        """Newest first."""

    # sync --------------------------------------------------------------------------------
    @abstractmethod
    async def list_status(self, agent_id: str, account: str) -> list[SyncStatus]: ...

    @abstractmethod
    async def get_statuses(
        self,
        agent_id: str,
        account: str,
        *,
        appointment_ids: Iterable[str] = (),
        remote_ids: Iterable[str] = (),
    ) -> list[SyncStatus]:
        """The agent's status rows at ``account`` of these appointments or remote events
        (each row once, by appointment id): a change pass's pairs, read by index."""

    @abstractmethod
    async def has_status(self, agent_id: str, account: str) -> bool:
        """Whether the agent has any status row at ``account``."""

    @abstractmethod
    async def changed_since(self, agent_id: str, seq: int, limit: int) -> list[str] | None:
        """The ids of the appointments of the agent's calendar stamped after its counter
        (:meth:`get_hub_seq`) was ``seq``: changed, deleted, purged, or their request,
        approval or status row changed. None when there are more than ``limit``."""

    @abstractmethod
    async def get_calendar_state(self, agent_id: str) -> CalendarState | None: ...

    @abstractmethod
    async def list_calendar_states(self) -> list[CalendarState]: ...

    @abstractmethod
    async def get_agent_secret(self, agent_id: str, account: str) -> str | None:
        """The secret :meth:`Tx.put_agent_secret` kept, None when there is none."""

    # audit -------------------------------------------------------------------------------
    @abstractmethod
    async def list_audit(
        self, *, entity_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest first."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = [
    "AppointmentChange",
    "AppointmentListener",
    "ChangeListener",
    "CommitHook",
    "ConstraintError",
    "Store",
    "StoreError",
    "Tx",
]
