"""The provider contract: pluggy hookspecs, the records providers exchange, the error classes.

Terminology
-----------
account
    One configured connection to a provider (``[accounts.NAME]`` in the config). A provider
    object is built for one account and serves every agent calendar that points at it.
calendar
    One agent's calendar at that account, addressed by a :class:`CalendarRef`.
hub id
    The id of an appointment in the hub. A hub-owned remote event carries it in a hidden
    provider property (Graph/EWS extended property, Google ``extendedProperties.private``,
    CalDAV ``X-CALHUB-ID``, MAPI user property); an event without it is *external*.
remote id / version
    The provider's id of an event and its opaque version (ETag, changeKey). Every update and
    delete sends the version as a precondition; a mismatch raises :class:`PreconditionFailed`.
cursor
    An opaque string (delta link, sync token) returned by :meth:`Provider.fetch`; passing it
    back asks for what changed since. A provider that cannot honour it raises
    :class:`CursorInvalid` and the engine fetches the full window instead.

Providers raise only the error classes below, never a library's own exception type. The core
never imports a provider; providers import this module (or ``hub``, which re-exports it).
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal, Protocol

import pluggy

PROJECT = "calhub"
ENTRY_POINT_GROUP = "calhub.providers"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ShowAs = Literal["busy", "free", "tentative", "oof"]


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """Base of every error a provider may raise. ``str(error)`` is shown to administrators."""

    def __init__(self, message: str, *, item: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.item = item  # remote or hub id the error is about, when there is one


class TransientError(ProviderError):
    """Timeout, connection reset, 5xx, 429/ServerBusy: retry later, honouring ``retry_after``."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, item: str | None = None
    ) -> None:
        super().__init__(message, item=item)
        self.retry_after = retry_after


class AuthError(ProviderError):
    """Credentials refused or access revoked: the account (or one mailbox) needs attention."""

    def __init__(self, message: str, *, mailbox: str | None = None, item: str | None = None):
        super().__init__(message, item=item)
        self.mailbox = mailbox  # set when only this mailbox is refused, not the whole account


class NotFoundError(ProviderError):
    """The event (or calendar) does not exist."""


class PreconditionFailed(ProviderError):
    """The remote version differs from the one sent: someone edited it since the last fetch."""


class PermanentError(ProviderError):
    """The provider refused this item for good (bad data, quota): skip it with this reason."""


class CursorInvalid(ProviderError):
    """The cursor expired or was rejected (410 Gone, syncStateNotFound, invalid sync-token)."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Window:
    """The sync window: events overlapping [start, end) are synced. Both aware, in UTC."""

    start: datetime
    end: datetime

    def overlaps(self, start: datetime | date, end: datetime | date) -> bool:
        s, e = as_utc(start), as_utc(end)
        return s < self.end and e > self.start


@dataclass(frozen=True, slots=True)
class CalendarRef:
    """Which calendar at an account: the agent, its mailbox address and calendar address.

    ``calendar`` is the value of the agent's ``calendar`` key: empty means the mailbox's default
    calendar (Graph/EWS: default calendar; Google: the agent's email; CalDAV: discovered).
    """

    agent_id: str
    mailbox: str
    calendar: str = ""


@dataclass(frozen=True, slots=True)
class EventData:
    """Provider-neutral content of one calendar event.

    Timed events have aware ``datetime`` start/end; all-day events have ``date`` start/end with
    an exclusive end (a one-day event on 1 May is 2026-05-01 .. 2026-05-02). ``timezone`` is the
    IANA zone the event was written in, for display only; comparisons use UTC.
    """

    subject: str
    start: datetime | date
    end: datetime | date
    body: str = ""
    location: str = ""
    private: bool = False
    show_as: ShowAs = "busy"
    reminder_minutes: int | None = None
    categories: tuple[str, ...] = ()
    colour: str | None = None
    timezone: str | None = None

    @property
    def all_day(self) -> bool:
        return not isinstance(self.start, datetime)

    def canonical(self) -> dict[str, Any]:
        """The fields that make up the content, normalised (UTC times), for hashing."""
        return {
            "subject": self.subject.strip(),
            "start": _iso(self.start),
            "end": _iso(self.end),
            "body": self.body.strip().replace("\r\n", "\n"),
            "location": self.location.strip(),
            "private": self.private,
            "show_as": self.show_as,
            "reminder_minutes": self.reminder_minutes,
            "categories": sorted(self.categories),
            "colour": (self.colour or "").lower() or None,
        }

    def content_hash(self) -> str:
        """A stable hash of :meth:`canonical`: servers bump versions for nothing, content counts."""
        blob = json.dumps(self.canonical(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


PRIVATE_SUBJECT = "Data unavailable"


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    """One event as the provider has it.

    ``hub_id`` is the hub tag read back from the hidden property, ``None`` for an external
    event (or when the provider's listing cannot return the property: Graph delta; the engine
    then relies on its status table and :meth:`Provider.find`). ``series_id`` groups the
    occurrences of an expanded recurring external event. ``modified`` (optional) lets the
    ``newest`` conflict policy compare change times; without it the fetch time is used.
    """

    remote_id: str
    version: str
    data: EventData
    hub_id: str | None = None
    series_id: str | None = None
    modified: datetime | None = None  # when the provider says it last changed, if it says


@dataclass(frozen=True, slots=True)
class SkippedEvent:
    """An event the provider could not read; the rest of the calendar still syncs."""

    remote_id: str
    reason: str


@dataclass(slots=True)
class FetchResult:
    """What :meth:`Provider.fetch` returns.

    ``full`` is true when ``changed`` lists *every* event in the window (initial fetch, no
    cursor, or a provider without delta support). Then an event the engine knows but that is
    absent may have been deleted *or* moved out of the window: the engine asks
    :meth:`Provider.get` before deleting anything. ``deleted`` holds remote ids the provider
    says were deleted; ``left_window`` remote ids that only left the window (never deleted in
    the hub).
    """

    changed: list[RemoteEvent] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    left_window: list[str] = field(default_factory=list)
    skipped: list[SkippedEvent] = field(default_factory=list)
    cursor: str | None = None
    full: bool = False
    notices: list[str] = field(default_factory=list)  # reported once, e.g. "no sync-collection"


@dataclass(frozen=True, slots=True)
class PushItem:
    """One create (``remote_id is None``) or update (with its expected ``version``).

    ``replaces`` is set on a create that re-creates a hub-owned event deleted remotely
    (``remote_delete = "restore"``, or an edit beating a delete): the deleted event's remote id.
    A provider whose idempotent create is keyed by the hub id (Graph's transactionId) must key
    it by both, or the server may answer with the deleted event instead of a new one.
    """

    hub_id: str
    data: EventData
    remote_id: str | None = None
    version: str | None = None
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class PushResult:
    """The outcome of one successful push: where it is now and its new version."""

    hub_id: str
    remote_id: str
    version: str
    data: EventData | None = None  # the content as stored, when the provider returns it


PushOutcome = PushResult | ProviderError


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One line of ``calhub check``: what was tried, whether it worked, and details."""

    what: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Option:
    """One key a provider accepts under ``[accounts.NAME]``.

    ``secret`` options are never written in the file: the config accepts ``KEY_env`` (an
    environment variable name) or ``KEY_file`` (a file path) and hands the provider the value
    under ``KEY``.
    """

    key: str
    type: type = str
    required: bool = False
    default: Any = None
    secret: bool = False
    help: str = ""


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """A validated ``[accounts.NAME]`` section: secrets resolved, defaults applied."""

    name: str
    provider: str
    options: Mapping[str, Any]


class Telemetry(Protocol):
    """Where providers report each API request (metrics: calls, latency, throttling)."""

    def request(self, account: str, operation: str, status: str, seconds: float) -> None: ...


class NullTelemetry:
    """Telemetry that records nothing (tests, ``calhub check``)."""

    def request(self, account: str, operation: str, status: str, seconds: float) -> None:
        return None


# --------------------------------------------------------------------------- the contract


class Provider:
    """Base class of every provider: one object per configured account.

    Capability flags are class attributes, read by the engine (not re-checked by each provider):

    ``supports_delta``  fetch with a cursor returns only changes (Graph delta, sync-collection).
    ``max_batch``       how many items one :meth:`push` call sends in one request at most.
    ``client_ids``      the remote id is chosen by the client (CalDAV hrefs/UIDs), so a retried
                        create addresses the same resource.
    ``read_only``       the engine never pushes or deletes (import only).
    ``max_concurrency`` concurrent requests per mailbox (Graph allows 4).

    Lifecycle: ``await provider.open()`` before use and ``await provider.close()`` after
    (or ``async with provider``). Every method may raise :class:`TransientError`,
    :class:`AuthError` or :class:`PermanentError`; the others are documented per method.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    options: ClassVar[Sequence[Option]] = ()
    supports_delta: ClassVar[bool] = False
    max_batch: ClassVar[int] = 1
    client_ids: ClassVar[bool] = False
    read_only: ClassVar[bool] = False
    max_concurrency: ClassVar[int] = 4

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        self.account = account
        self.telemetry: Telemetry = telemetry or NullTelemetry()

    async def open(self) -> None:
        """Open sessions and acquire what the provider needs. Idempotent."""

    async def close(self) -> None:
        """Release sessions. Idempotent."""

    async def __aenter__(self) -> Provider:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        """Events in ``window`` changed since ``cursor`` (all of them when ``cursor`` is None).

        Returns a :class:`FetchResult` with the next cursor. Raises :class:`CursorInvalid` when
        the cursor is expired or rejected, :class:`NotFoundError` when the calendar is missing.
        An event that cannot be parsed goes to ``skipped`` with its reason, never an exception.
        """
        raise NotImplementedError

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        """Create or update up to ``max_batch`` events; one outcome per item, in order.

        A create must be idempotent per hub id: a create retried after a crash links to the
        event made the first time (transactionId, UID derived from the hub id, ...) instead of
        making a second one. An update sends ``item.version`` as its precondition. Per-item
        failures come back as error instances (:class:`PreconditionFailed`,
        :class:`NotFoundError`, :class:`PermanentError`, :class:`TransientError`) in the list;
        an exception is raised only when the whole call failed.
        """
        raise NotImplementedError

    async def push_one(self, cal: CalendarRef, item: PushItem) -> PushResult:
        """Push one item, raising its error instead of returning it."""
        (outcome,) = await self.push(cal, [item])
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        """Delete one event, with ``version`` as precondition when given.

        Raises :class:`NotFoundError` when it is already gone (the engine counts that as done)
        and :class:`PreconditionFailed` when it was edited since ``version``.
        """
        raise NotImplementedError

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        """One event by remote id; :class:`NotFoundError` when it does not exist."""
        raise NotImplementedError

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        """Hub-owned events by hub id, for crash recovery: the ones that exist, keyed by hub id."""
        raise NotImplementedError

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        """What works: authentication, then per calendar read (and with ``write`` a probe
        event created and deleted). Never raises for a failed step: reports it."""
        raise NotImplementedError


class ProviderRegistry:
    """Collects provider classes registered through :func:`calhub_register_providers`."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Provider]] = {}
        self._origins: dict[str, str] = {}
        self.current_plugin: str = "?"

    def add(self, cls: type[Provider]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise TypeError(f"{cls!r} is not a Provider subclass")
        if not cls.name:
            raise ValueError(f"{cls.__qualname__} has no name")
        if cls.name in self._classes and self._classes[cls.name] is not cls:
            raise ValueError(
                f"provider {cls.name!r} registered twice "
                f"({self._origins[cls.name]} and {self.current_plugin})"
            )
        self._classes[cls.name] = cls
        self._origins[cls.name] = self.current_plugin

    def get(self, name: str) -> type[Provider] | None:
        return self._classes.get(name)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def origin(self, name: str) -> str:
        return self._origins[name]


@hookspec
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register provider classes with ``register.add(cls)``."""


# --------------------------------------------------------------------------- helpers


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date),
    None when absent or unreadable. Header names are matched case-insensitively, so plain
    dicts work as well as multidicts; providers put the result in TransientError.retry_after.
    """
    raw = next((str(v) for k, v in headers.items() if k.lower() == "retry-after"), "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def ca_bundle_context(ca_file: str) -> ssl.SSLContext:
    """A TLS context trusting the PEM bundle ``ca_file`` (a self-signed server, an inspecting
    proxy). Reads a file: call it off the event loop. ValueError names the file and why."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load {ca_file!r}: {exc}") from None


def as_utc(value: datetime | date) -> datetime:
    """An aware UTC datetime for a datetime (naive means UTC) or a date (midnight UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _iso(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()
