"""Hub-side records: agents, requests, appointments, approvals, conflicts, sync status.

An *appointment* is one entry in one agent's hub calendar. A multi-agent booking (source C)
is one appointment per agent sharing a ``group_id``; a request's plan (source A) is one
appointment per assigned agent; an external event imported from the agent's own calendar is an
appointment of kind ``external``, read-only in the hub.

Times: timed appointments hold aware UTC datetimes; all-day ones hold dates with an exclusive
end. ``version`` increases on every hub-side change; sync compares content hashes, not versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


def is_colour(value: object) -> bool:
    """Whether ``value`` is an agent colour as the hub takes it: ``#rrggbb``."""
    return isinstance(value, str) and _COLOUR.fullmatch(value) is not None


class Policy(StrEnum):
    """Whether an appointment goes to the agent's external calendar."""

    NEVER = "never"  # kept in the hub calendar, never pushed
    ALWAYS = "always"
    ASK = "ask"  # held in /approvals until approved
    AGENT = "agent"  # the agent's own value decides


class Kind(StrEnum):
    """Where an appointment came from (the seed's A, B, C, plus imported external events)."""

    PLANNED = "planned"  # A: a request's planned date + estimate
    ACTION = "action"  # B: a logged action (done-at + time taken)
    MANUAL = "manual"  # C: booked against a request
    EXTERNAL = "external"  # the agent's own event, imported read-only


class PushState(StrEnum):
    """The appointment's relation to the external calendar."""

    LOCAL = "local"  # policy never: hub calendar only
    PENDING = "pending"  # policy ask: waiting in /approvals
    SYNC = "sync"  # pushed and kept in two-way sync
    REJECTED = "rejected"  # ask rejected: hub calendar only
    EXTERNAL = "external"  # came from the external calendar (kind external)


class PairState(StrEnum):
    """Where a last-synced pair (:class:`SyncStatus`) stands; the value is what the store
    keeps, so rows written before the enum read back equal."""

    SYNCED = "synced"  # both sides as recorded
    CREATING = "creating"  # a create was sent and its result not committed yet (crash: find)
    STALE = "stale"  # a write was refused (412/404): re-read the event before deciding


class ConflictPolicy(StrEnum):
    """Who wins when both sides changed an appointment since the last pass."""

    NEWEST = "newest"
    HUB = "hub"
    REMOTE = "remote"


class RemoteDelete(StrEnum):
    """What a delete in the external calendar does to a hub-owned appointment."""

    FOLLOW = "follow"
    RESTORE = "restore"


@dataclass(slots=True)
class Agent:
    """A helpdesk agent and where their calendar lives."""

    id: str
    name: str
    email: str = ""
    account: str | None = None  # None: hub calendar and feed only
    calendar: str = ""
    create_appointments: Policy | None = None  # used where the hub policy is "agent"
    import_external: bool | None = None  # None: the hub's value
    colour: str | None = None
    feed_token: str = ""
    source: str = "api"  # "config" (from [[agents]]), "api", or "retired" (gone from the file)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(slots=True)
class Request:
    """A helpdesk request (ticket) the hub knows about through sources A, B, C."""

    id: str
    subject: str = ""
    customer: str = ""
    planned_start: datetime | date | None = None
    estimate_minutes: int | None = None
    planned_agents: tuple[str, ...] = ()
    updated_at: datetime | None = None


@dataclass(slots=True)
class Appointment:
    """One entry in one agent's hub calendar."""

    id: str
    agent_id: str
    kind: Kind
    start: datetime | date
    end: datetime | date
    subject: str = ""  # C: the booked subject; A/B: empty (the template renders it)
    note: str = ""
    location: str = ""
    private: bool = False
    show_as: str = "busy"
    request_id: str | None = None
    group_id: str | None = None  # shared by the entries of one multi-agent booking
    action_id: str | None = None  # B: the logged action it came from
    push_state: PushState = PushState.SYNC
    subject_override: str | None = None  # a subject edited remotely, rendered verbatim
    body_override: str | None = None  # a body edited remotely, rendered verbatim
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False  # tombstone: kept until sync carried the delete out
    deleted_at: datetime | None = None
    origin: str = "api"  # api | rule | sync:ACCOUNT of the last change

    @property
    def all_day(self) -> bool:
        return not isinstance(self.start, datetime)

    @property
    def read_only(self) -> bool:
        return self.kind is Kind.EXTERNAL

    def evolve(self, **changes: Any) -> Appointment:
        return replace(self, **changes)


@dataclass(slots=True)
class Approval:
    """An appointment held by the ``ask`` policy until someone approves or rejects it."""

    id: str
    appointment_id: str
    agent_id: str
    created_at: datetime
    decided_at: datetime | None = None
    approved: bool | None = None
    decided_by: str = ""


@dataclass(slots=True)
class Conflict:
    """Both sides changed one appointment since the last pass; the policy picked ``winner``."""

    id: str
    agent_id: str
    appointment_id: str
    account: str
    policy: str
    winner: str  # "hub" | "remote" | "kept-both" | "edit-beats-delete"
    hub: dict[str, Any] = field(default_factory=dict)  # the hub side as it was
    remote: dict[str, Any] = field(default_factory=dict)  # the remote side as it was
    detail: str = ""
    created_at: datetime | None = None


@dataclass(slots=True)
class SyncStatus:
    """One last-synced pair: a hub appointment and its remote event at one account.

    ``state`` is ``creating`` from just before a create is sent until its result is committed:
    a row left in that state after a crash tells the next pass to look the event up by hub id
    (:meth:`hub.spec.Provider.find`) instead of creating it again.
    """

    agent_id: str
    appointment_id: str
    account: str
    remote_id: str | None
    remote_version: str | None
    hub_hash: str | None  # content hash of what the hub last pushed or accepted
    remote_hash: str | None  # content hash of the remote event last seen
    state: PairState = PairState.SYNCED
    external: bool = False  # the remote event is not hub-owned (imported)
    series_id: str | None = None
    start: datetime | None = None  # last known span, to tell "left the window" from "deleted"
    end: datetime | None = None
    updated_at: datetime | None = None


@dataclass(slots=True)
class CalendarState:
    """Per agent calendar: cursor and the outcome of the last pass (/agents/{id}/status)."""

    agent_id: str
    account: str
    calendar: str = ""
    cursor: str | None = None
    cursor_at: datetime | None = None
    last_pass_at: datetime | None = None
    last_result: str | None = None  # ok | failed | needs-attention | stopped
    last_error: str | None = None
    needs_attention: bool = False
    allow_empty_once: bool = False  # admin override of the "remote suddenly empty" stop
    notices: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """A logged-in browser of the calendar page; only the hash of its secret id is kept."""

    id_hash: str
    created_at: datetime
    seen_at: datetime


@dataclass(slots=True)
class AuditEntry:
    """One change in the hub, with its origin (api, rule, sync:ACCOUNT, approval)."""

    id: int
    at: datetime
    origin: str
    entity: str
    entity_id: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PassResult:
    """The outcome of one sync pass of one agent calendar.

    ``result``: ``ok``; ``failed`` (transient errors outlasted the retries); ``needs-attention``
    (auth refused, calendar missing); ``stopped`` (a safety stop, such as a remote calendar that
    suddenly came back empty); ``skipped`` (no account, or a pass already running).
    """

    agent_id: str
    account: str | None
    result: str
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # pushed, pulled, deleted, conflicts...
    skipped_items: list[str] = field(default_factory=list)  # "remote-or-hub-id: reason"
    requests: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # needs-attention: "account" when the whole account is refused (one alert for all its
    # agents), "agent" when only this agent's mailbox or calendar is
    scope: str = ""
    # How much of the hub the pass read: "" (it ended before), "none" (the quiet path),
    # "changes" (what changed since the last clean pass) or "calendar" (the whole window)
    hub_read: str = ""

    @property
    def ok(self) -> bool:
        return self.result in ("ok", "skipped")
