"""An in-process calendar server with a real server's semantics, for tests and benchmarks.

:class:`MemoryServer` holds calendars keyed by (mailbox, calendar). Every event has a remote
id, a version (etag) that changes on every write, its :class:`~hub.spec.EventData` and the hub
tag. Every write appends to a per-calendar change log whose sequence numbers back the delta
cursors, so a fetch with a cursor returns only what changed since, exactly like Graph's
calendarView/delta or CalDAV's sync-collection.

The server is strict where real servers are strict: an update or delete with a stale version
fails with :class:`~hub.spec.PreconditionFailed`, a create repeating a hub id returns the
event made the first time (Graph's ``transactionId``), a cursor can expire.

Knobs let a test play the other actors:

* the network and the service: :meth:`MemoryServer.fail_next`, :meth:`~MemoryServer.throttle`,
  :meth:`~MemoryServer.revoke_auth`, :meth:`~MemoryServer.expire_cursors`,
  :meth:`~MemoryServer.crash_after_write`, :meth:`~MemoryServer.race`, ``latency_ms``,
  ``cursor_max_changes``, :meth:`~MemoryServer.touch` (etag bumped for nothing);
* the agent editing their own calendar: :meth:`~MemoryServer.create_external`,
  :meth:`~MemoryServer.edit`, :meth:`~MemoryServer.move`, :meth:`~MemoryServer.delete`,
  :meth:`~MemoryServer.add_bad_event`.

Agent edits do not count as requests: they are not made through the provider. The request
counters (``requests``, ``requests_by_operation``, ``requests_by_mailbox``) count what the
provider sent, failed requests included.
"""

from __future__ import annotations

import bisect
import copy
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.spec import (
    AuthError,
    CalendarRef,
    CursorInvalid,
    EventData,
    FetchResult,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    SkippedEvent,
    TransientError,
    Window,
    as_utc,
)
from hub.testing.memory_codec import data_from_json, data_to_json, read_text, write_atomic

CalKey = tuple[str, str]

#: Operations that write; :meth:`MemoryServer.race` and the crash knob act on these only.
WRITE_OPERATIONS = frozenset({"push", "delete"})

_CURSOR_PREFIX = "mem1"


class SimulatedCrash(BaseException):
    """Raised by the crash knob *after* the remote write was done, like a process killed
    between the server's answer and the hub's status commit.

    A ``BaseException`` so that no ``except Exception`` in the engine can swallow it.
    """


def cal_key(cal: CalendarRef) -> CalKey:
    """The server's key of a calendar: mailbox addresses are case-insensitive."""
    return (cal.mailbox.strip().lower(), cal.calendar)


@dataclass(slots=True)
class StoredEvent:
    """One event as the server keeps it. ``bad_reason`` marks an event the provider cannot
    read (it is reported in :attr:`FetchResult.skipped`)."""

    remote_id: str
    version: str
    data: EventData
    hub_id: str | None = None
    bad_reason: str | None = None
    modified: datetime | None = None  # set on every write when the server has a clock

    def to_remote(self) -> RemoteEvent:
        return RemoteEvent(
            self.remote_id, self.version, self.data, self.hub_id, modified=self.modified
        )


@dataclass(slots=True)
class MemoryCalendar:
    """The events of one calendar and its change log of (sequence number, remote id)."""

    events: dict[str, StoredEvent] = field(default_factory=dict)
    log_seqs: list[int] = field(default_factory=list)
    log_ids: list[str] = field(default_factory=list)
    epoch: int = 0  # bumped by expire_cursors: every cursor issued before is refused

    def by_hub_id(self, hub_id: str) -> StoredEvent | None:
        for event in self.events.values():
            if event.hub_id == hub_id:
                return event
        return None


@dataclass(slots=True)
class _Fault:
    error: ProviderError
    remaining: int
    operation: str | None
    mailbox: str | None

    def matches(self, operation: str, mailbox: str) -> bool:
        return (self.operation in (None, operation)) and (self.mailbox in (None, mailbox))


@dataclass(frozen=True, slots=True)
class _Cursor:
    epoch: int
    seq: int
    window: tuple[str, str]

    def encode(self) -> str:
        return ";".join((_CURSOR_PREFIX, str(self.epoch), str(self.seq), *self.window))

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        parts = text.split(";")
        if len(parts) != 5 or parts[0] != _CURSOR_PREFIX:
            raise CursorInvalid(f"not a memory cursor: {text[:40]!r}")
        try:
            return cls(int(parts[1]), int(parts[2]), (parts[3], parts[4]))
        except ValueError:
            raise CursorInvalid(f"not a memory cursor: {text[:40]!r}") from None


def _window_key(window: Window) -> tuple[str, str]:
    return (as_utc(window.start).isoformat(), as_utc(window.end).isoformat())


def data_problems(data: EventData) -> list[str]:
    """Why a server would refuse this content (empty when it is acceptable)."""
    problems: list[str] = []
    if isinstance(data.start, datetime) != isinstance(data.end, datetime):
        return ["start and end must both be dates (all-day) or both be date-times"]
    if isinstance(data.start, datetime):
        assert isinstance(data.end, datetime)
        if data.start.tzinfo is None or data.end.tzinfo is None:
            problems.append("timed events need time-zone-aware start and end")
        elif data.end < data.start:
            problems.append("end is before start")
    elif data.end <= data.start:
        problems.append("an all-day event must end after its start day")
    if "\x00" in data.subject or "\x00" in data.body:
        problems.append("NUL character in subject or body")
    return problems


class MemoryServer:
    """In-process calendars with etags, a change log, expiring cursors and fault knobs.

    One server can be shared by several :class:`~hub.testing.memory.MemoryProvider` objects
    (pass it as ``options={"server": server}``) and inspected by the test directly.
    Calendars spring into existence on first use unless ``auto_create`` is false; a
    calendar removed with :meth:`remove_calendar` answers :class:`NotFoundError`.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        cursor_max_changes: int | None = None,
        auto_create: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.latency_ms = latency_ms
        #: stamps each write as the event's ``modified`` time (None: events carry no time,
        #: like a server that does not report one)
        self.clock = clock
        #: a cursor more than this many change-log entries behind expires (None: never)
        self.cursor_max_changes = cursor_max_changes
        self.auto_create = auto_create
        self.calendars: dict[CalKey, MemoryCalendar] = {}
        self.requests = 0
        self.requests_by_operation: Counter[str] = Counter()
        self.requests_by_mailbox: Counter[str] = Counter()
        self._counter = 0
        self._removed: set[CalKey] = set()
        self._faults: list[_Fault] = []
        self._item_faults: dict[str, list[ProviderError]] = {}
        self._revoked_all = False
        self._revoked: set[str] = set()
        self._races: list[tuple[str | None, Callable[[], object]]] = []
        self._crash_in: int | None = None

    # ------------------------------------------------------------------ calendars

    def add_calendar(self, cal: CalendarRef) -> MemoryCalendar:
        """Create (or re-create) a calendar."""
        key = cal_key(cal)
        self._removed.discard(key)
        return self.calendars.setdefault(key, MemoryCalendar())

    def remove_calendar(self, cal: CalendarRef) -> None:
        """Delete a calendar: further requests for it raise :class:`NotFoundError`."""
        key = cal_key(cal)
        self.calendars.pop(key, None)
        self._removed.add(key)

    def calendar(self, cal: CalendarRef) -> MemoryCalendar:
        """The calendar, created on first use when ``auto_create``; NotFoundError otherwise."""
        key = cal_key(cal)
        found = self.calendars.get(key)
        if found is not None:
            return found
        if key in self._removed or not self.auto_create:
            name = cal.calendar or "(default)"
            raise NotFoundError(f"404 Not Found: calendar {name} of {cal.mailbox}")
        return self.add_calendar(cal)

    def events(self, cal: CalendarRef) -> list[StoredEvent]:
        """Every event of a calendar, in creation order (for assertions)."""
        return list(self.calendar(cal).events.values())

    # ------------------------------------------------------------------ knobs: faults

    def fail_next(
        self,
        n: int,
        error: ProviderError,
        *,
        operation: str | None = None,
        mailbox: str | None = None,
    ) -> None:
        """The next ``n`` requests (of ``operation``, for ``mailbox``, when given) raise a copy
        of ``error`` before doing anything."""
        if n > 0:
            mbox = mailbox.lower() if mailbox else None
            self._faults.append(_Fault(error, n, operation, mbox))

    def throttle(self, n: int, retry_after: float = 1.0, *, mailbox: str | None = None) -> None:
        """The next ``n`` requests answer 429 Too Many Requests with ``Retry-After``."""
        error = TransientError("429 Too Many Requests", retry_after=retry_after)
        self.fail_next(n, error, mailbox=mailbox)

    def fail_item(self, hub_id: str, error: ProviderError, times: int = 1) -> None:
        """The next ``times`` pushes of ``hub_id`` come back as ``error`` (per item)."""
        self._item_faults.setdefault(hub_id, []).extend([error] * times)

    def revoke_auth(self, mailbox: str | None = None) -> None:
        """Refuse every request (or only those for ``mailbox``) with :class:`AuthError`."""
        if mailbox is None:
            self._revoked_all = True
        else:
            self._revoked.add(mailbox.lower())

    def restore_auth(self, mailbox: str | None = None) -> None:
        """Undo :meth:`revoke_auth` (``None``: for the account and every mailbox)."""
        if mailbox is None:
            self._revoked_all = False
            self._revoked.clear()
        else:
            self._revoked.discard(mailbox.lower())

    def expire_cursors(self, cal: CalendarRef | None = None) -> None:
        """Every cursor issued so far (for ``cal``, or all calendars) becomes invalid."""
        targets = [self.calendar(cal)] if cal is not None else list(self.calendars.values())
        for calendar in targets:
            calendar.epoch += 1

    def crash_after_write(self, writes: int = 1) -> None:
        """After the ``writes``-th item written from now (a create, update or delete done at
        the server), the provider raises :class:`SimulatedCrash` instead of answering.
        ``writes=0`` disarms it."""
        self._crash_in = writes if writes > 0 else None

    def race(self, edit: Callable[[], object], *, remote_id: str | None = None) -> None:
        """Run ``edit`` (typically an agent edit) just before the next write request is
        processed, or with ``remote_id`` just before the next write of that event (an update
        or delete): the edit lands between the engine's fetch and its write."""
        self._races.append((remote_id, edit))

    def _run_races(self, remote_id: str | None) -> None:
        due = [edit for target, edit in self._races if target == remote_id]
        self._races = [(target, edit) for target, edit in self._races if target != remote_id]
        for edit in due:
            edit()

    def clear_faults(self) -> None:
        """Drop every pending fault, race and crash; restore auth."""
        self._faults.clear()
        self._item_faults.clear()
        self._races.clear()
        self._crash_in = None
        self.restore_auth()

    def reset_counters(self) -> None:
        self.requests = 0
        self.requests_by_operation.clear()
        self.requests_by_mailbox.clear()

    # ------------------------------------------------------------------ knobs: the agent

    def create_external(
        self, cal: CalendarRef, data: EventData, *, hub_id: str | None = None
    ) -> str:
        """The agent creates an event in their own calendar; returns its remote id.
        ``hub_id`` forges a hub tag (e.g. an event copied from a hub-owned one)."""
        return self._insert(self.calendar(cal), data, hub_id).remote_id

    def edit(self, cal: CalendarRef, remote_id: str, data: EventData) -> str:
        """The agent replaces the event's content (the hub tag stays); returns the version."""
        event = self._existing(self.calendar(cal), remote_id)
        event.data = data
        event.bad_reason = None
        return self._bump(self.calendar(cal), event)

    def move(
        self, cal: CalendarRef, remote_id: str, start: datetime | date, end: datetime | date
    ) -> str:
        """The agent drags the event to a new time; returns the new version."""
        event = self._existing(self.calendar(cal), remote_id)
        return self.edit(cal, remote_id, replace(event.data, start=start, end=end))

    def delete(self, cal: CalendarRef, remote_id: str) -> None:
        """The agent deletes the event."""
        calendar = self.calendar(cal)
        self._existing(calendar, remote_id)
        self._remove(calendar, remote_id)

    def touch(self, cal: CalendarRef, remote_id: str | None = None) -> None:
        """The server bumps the version of one event (or all) without changing its content,
        as Exchange and some CalDAV servers do; delta reports them as changed."""
        calendar = self.calendar(cal)
        ids = [remote_id] if remote_id is not None else list(calendar.events)
        for rid in ids:
            self._bump(calendar, self._existing(calendar, rid))

    def add_bad_event(
        self,
        cal: CalendarRef,
        reason: str = "unparseable event",
        data: EventData | None = None,
    ) -> str:
        """An event the provider cannot read; fetch reports it in ``skipped``. Placed at
        ``data``'s time (default: the coming hour) so that window filtering applies."""
        if data is None:
            now = datetime.now(UTC).replace(microsecond=0)
            data = EventData("(unreadable)", now, now + timedelta(hours=1))
        event = self._insert(self.calendar(cal), data, None)
        event.bad_reason = reason
        return event.remote_id

    def get_event(self, cal: CalendarRef, remote_id: str) -> StoredEvent | None:
        return self.calendar(cal).events.get(remote_id)

    # ------------------------------------------------------------------ the provider's side

    def begin_request(self, operation: str, cal: CalendarRef | None) -> None:
        """Count one request and raise the fault due for it, if any. Called by the provider
        once per request, before :meth:`handle_fetch` and friends."""
        mailbox = cal_key(cal)[0] if cal is not None else ""
        self.requests += 1
        self.requests_by_operation[operation] += 1
        self.requests_by_mailbox[mailbox] += 1
        if self._revoked_all:
            raise AuthError("401 Unauthorized: credentials revoked")
        if mailbox in self._revoked:
            raise AuthError(f"403 Forbidden: access to {mailbox} revoked", mailbox=mailbox)
        for fault in self._faults:
            if fault.remaining > 0 and fault.matches(operation, mailbox):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                raise copy.copy(fault.error)
        if operation in WRITE_OPERATIONS:
            self._run_races(None)

    def handle_fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        calendar = self.calendar(cal)
        wkey = _window_key(window)
        since: _Cursor | None = None
        if cursor is not None:
            since = _Cursor.decode(cursor)
            if since.epoch != calendar.epoch:
                raise CursorInvalid("410 Gone: the sync state has expired")
            behind = len(calendar.log_seqs) - bisect.bisect_right(calendar.log_seqs, since.seq)
            if self.cursor_max_changes is not None and behind > self.cursor_max_changes:
                raise CursorInvalid(f"410 Gone: the cursor is {behind} changes behind")
            if since.window != wkey:
                # The window moved (a new day): what entered it was never reported, so the
                # only correct answer is a full listing of the new window.
                since = None
        head = _Cursor(calendar.epoch, self._counter, wkey).encode()
        if since is None:
            return self._full_listing(calendar, window, head)
        return self._delta(calendar, window, since, head)

    def handle_push(
        self, cal: CalendarRef, items: Iterable[PushItem]
    ) -> tuple[list[PushOutcome], bool]:
        """Apply each item; returns the outcomes and whether the crash knob fired (then the
        outcomes stop at the item whose write triggered it)."""
        calendar = self.calendar(cal)
        outcomes: list[PushOutcome] = []
        for item in items:
            outcome, wrote = self._push_one(calendar, item)
            outcomes.append(outcome)
            if wrote and self._crash_due():
                return outcomes, True
        return outcomes, False

    def handle_delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> bool:
        """Delete with precondition; returns whether the crash knob fired."""
        calendar = self.calendar(cal)
        self._run_races(remote_id)
        event = self._existing(calendar, remote_id)
        if version is not None and version != event.version:
            raise PreconditionFailed(
                f"412 Precondition Failed: {remote_id} is at {event.version}, not {version}",
                item=remote_id,
            )
        self._remove(calendar, remote_id)
        return self._crash_due()

    def handle_get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        event = self._existing(self.calendar(cal), remote_id)
        if event.bad_reason:
            raise PermanentError(event.bad_reason, item=remote_id)
        return event.to_remote()

    def handle_find(self, cal: CalendarRef, hub_ids: Iterable[str]) -> dict[str, RemoteEvent]:
        wanted = set(hub_ids)
        return {
            event.hub_id: event.to_remote()
            for event in self.calendar(cal).events.values()
            if event.hub_id in wanted and not event.bad_reason
        }

    # ------------------------------------------------------------------ internals

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def _log(self, calendar: MemoryCalendar, remote_id: str) -> int:
        seq = self._next()
        calendar.log_seqs.append(seq)
        calendar.log_ids.append(remote_id)
        return seq

    def _insert(self, calendar: MemoryCalendar, data: EventData, hub_id: str | None) -> StoredEvent:
        remote_id = f"evt-{self._next()}"
        event = StoredEvent(remote_id, "", data, hub_id)
        calendar.events[remote_id] = event
        self._bump(calendar, event)
        return event

    def _bump(self, calendar: MemoryCalendar, event: StoredEvent) -> str:
        event.version = f"v{self._log(calendar, event.remote_id)}"
        if self.clock is not None:
            event.modified = self.clock()
        return event.version

    def _remove(self, calendar: MemoryCalendar, remote_id: str) -> None:
        del calendar.events[remote_id]
        self._log(calendar, remote_id)  # the tombstone: delta reports it as deleted

    @staticmethod
    def _existing(calendar: MemoryCalendar, remote_id: str) -> StoredEvent:
        event = calendar.events.get(remote_id)
        if event is None:
            raise NotFoundError(f"404 Not Found: no event {remote_id}", item=remote_id)
        return event

    def _crash_due(self) -> bool:
        if self._crash_in is None:
            return False
        self._crash_in -= 1
        if self._crash_in > 0:
            return False
        self._crash_in = None
        return True

    def _push_one(self, calendar: MemoryCalendar, item: PushItem) -> tuple[PushOutcome, bool]:
        """One item's outcome and whether something was written."""
        faults = self._item_faults.get(item.hub_id)
        if faults:
            error = copy.copy(faults.pop(0))
            error.item = error.item or item.hub_id
            return error, False
        problems = data_problems(item.data)
        if item.remote_id is None:
            existing = calendar.by_hub_id(item.hub_id)
            if existing is not None:  # a retried create: link, never duplicate
                return PushResult(
                    item.hub_id, existing.remote_id, existing.version, existing.data
                ), False
            if problems:
                return PermanentError("; ".join(problems), item=item.hub_id), False
            event = self._insert(calendar, item.data, item.hub_id)
            return PushResult(item.hub_id, event.remote_id, event.version, event.data), True
        self._run_races(item.remote_id)
        event = calendar.events.get(item.remote_id)
        if event is None:
            return NotFoundError(
                f"404 Not Found: no event {item.remote_id}", item=item.remote_id
            ), False
        if item.version is not None and item.version != event.version:
            return PreconditionFailed(
                f"412 Precondition Failed: {item.remote_id} is at {event.version}, "
                f"not {item.version}",
                item=item.remote_id,
            ), False
        if problems:
            return PermanentError("; ".join(problems), item=item.hub_id), False
        event.data = item.data
        event.hub_id = item.hub_id
        event.bad_reason = None
        self._bump(calendar, event)
        return PushResult(item.hub_id, event.remote_id, event.version, event.data), True

    @staticmethod
    def _full_listing(calendar: MemoryCalendar, window: Window, head: str) -> FetchResult:
        result = FetchResult(cursor=head, full=True)
        for event in calendar.events.values():
            if window.overlaps(event.data.start, event.data.end):
                _report(result, event)
        return result

    @staticmethod
    def _delta(calendar: MemoryCalendar, window: Window, since: _Cursor, head: str) -> FetchResult:
        result = FetchResult(cursor=head, full=False)
        start = bisect.bisect_right(calendar.log_seqs, since.seq)
        seen: set[str] = set()
        for remote_id in calendar.log_ids[start:]:
            if remote_id in seen:
                continue
            seen.add(remote_id)
            event = calendar.events.get(remote_id)
            if event is None:
                result.deleted.append(remote_id)
            elif window.overlaps(event.data.start, event.data.end):
                _report(result, event)
            else:
                result.left_window.append(remote_id)
        return result

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Write the data to a ``state_file`` (blocking: for tests playing the agent between
        ``calhub sync`` runs; the provider saves through a worker thread)."""
        write_atomic(Path(path), json.dumps(self.to_json(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path, **knobs: Any) -> MemoryServer:
        """The server saved in ``path`` (an empty one when the file does not exist yet)."""
        text = read_text(Path(path))
        return cls(**knobs) if text is None else cls.from_json(json.loads(text), **knobs)

    def to_json(self) -> dict[str, Any]:
        """The server's data (not its knobs or counters) as JSON-compatible values."""
        return {
            "format": 1,
            "counter": self._counter,
            "removed": sorted(list(k) for k in self._removed),
            "calendars": [
                {
                    "mailbox": key[0],
                    "calendar": key[1],
                    "epoch": cal.epoch,
                    "log": [list(p) for p in zip(cal.log_seqs, cal.log_ids, strict=True)],
                    "events": [
                        {
                            "remote_id": e.remote_id,
                            "version": e.version,
                            "hub_id": e.hub_id,
                            "bad_reason": e.bad_reason,
                            "modified": e.modified.isoformat() if e.modified else None,
                            "data": data_to_json(e.data),
                        }
                        for e in cal.events.values()
                    ],
                }
                for key, cal in self.calendars.items()
            ],
        }

    @classmethod
    def from_json(cls, state: Any, **knobs: Any) -> MemoryServer:
        """A server holding the data of :meth:`to_json`; raises ValueError when malformed."""
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError("not a memory server state (expected an object with format 1)")
        server = cls(**knobs)
        try:
            server._counter = int(state["counter"])
            server._removed = {(str(m), str(c)) for m, c in state["removed"]}
            for entry in state["calendars"]:
                cal = MemoryCalendar(epoch=int(entry["epoch"]))
                for seq, remote_id in entry["log"]:
                    cal.log_seqs.append(int(seq))
                    cal.log_ids.append(str(remote_id))
                for e in entry["events"]:
                    cal.events[e["remote_id"]] = StoredEvent(
                        str(e["remote_id"]),
                        str(e["version"]),
                        data_from_json(e["data"]),
                        e["hub_id"],
                        e["bad_reason"],
                        datetime.fromisoformat(e["modified"]) if e.get("modified") else None,
                    )
                server.calendars[(str(entry["mailbox"]), str(entry["calendar"]))] = cal
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed memory server state: {exc!r}") from exc
        return server


def _report(result: FetchResult, event: StoredEvent) -> None:
    if event.bad_reason:
        result.skipped.append(SkippedEvent(event.remote_id, event.bad_reason))
    else:
        result.changed.append(event.to_remote())
