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

Providers raise only the error classes below, never a library's own exception type (the hub's
one wrapper around provider calls, :mod:`hub.boundary`, turns anything else into a
:class:`ProviderError` naming the provider). The core never imports a provider; providers
import this module (or ``hub``, which re-exports it).

Errors
------
::

    ProviderError            base; ``message`` is shown to administrators, ``item`` names the
     |                       remote or hub id the error is about (None: the whole call)
     +-- TransientError      retry later (``retry_after`` seconds when the service says)
     +-- AuthError           credentials refused (``mailbox``: only this mailbox)
     +-- NotFoundError       the event, or the calendar, does not exist
     +-- AttentionNeeded     someone must act first (an agent program offline too long)
     +-- PreconditionFailed  the version sent is stale
     +-- PermanentError      this item is refused for good
     +-- CursorInvalid       the cursor expired or was rejected
"""

from __future__ import annotations

import hashlib
import inspect
import json
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

import pluggy

from hub.relay import RelayHub

PROJECT = "calhub"
ENTRY_POINT_GROUP = "calhub.providers"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ShowAs = Literal["busy", "free", "tentative", "oof"]


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """Base of every error a provider may raise. ``str(error)`` is shown to administrators.

    ``item`` (keyword only) is the remote id or hub id the error is about, when the error
    concerns one event rather than the whole call: a per-item outcome of :meth:`Provider.push`
    sets it to the item's hub id (or remote id), and the engine names it when it skips the
    item. Leave it None for an error of the whole request.
    """

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


class AttentionNeeded(ProviderError):
    """Someone must act before this agent's calendar can sync (its agent program has been
    offline too long, say): the pass ends ``needs-attention`` for this agent, which alerts
    the administrators (``[email] alerts_to``) once, and once more when a pass works again."""


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
        """Whether ``[start, end)`` overlaps the window: an event ending exactly at the
        window's start, or starting exactly at its end, does not. Dates count from midnight
        UTC, naive datetimes as UTC (:func:`as_utc`)."""
        s, e = as_utc(start), as_utc(end)
        return s < self.end and e > self.start


@dataclass(frozen=True, slots=True)
class CalendarRef:
    """Which calendar at an account: the agent, its mailbox address and calendar address.

    ``calendar`` is the value of the agent's ``calendar`` key: empty means the mailbox's default
    calendar (Graph/EWS: default calendar; Google: the user's primary calendar; CalDAV:
    discovered).
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
        """A stable hash of :meth:`canonical`: servers bump versions for nothing, content counts.

        Stored in every status row, so its value must never change: it is the SHA-256 of
        ``json.dumps(self.canonical(), sort_keys=True, ensure_ascii=False)``. A pass hashes
        every event it looks at, so that JSON text is written out directly here (the same
        bytes, several times faster); content of an unusual type takes the general path."""
        blob = _canonical_json(self)
        if blob is None:
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

    ``key``       the key in the file (and in :attr:`AccountConfig.options`).
    ``type``      ``str``, ``int``, ``float`` or ``bool`` (checked exactly: ``true`` is not
                  an integer), or any class built from the file's value (``Path``).
    ``required``  the config is refused without it.
    ``default``   the value handed over when the key is absent (None: no value).
    ``secret``    never written in the file: the config accepts ``KEY_env`` (an
                  environment variable name) or ``KEY_file`` (a file path) and hands the
                  provider the value under ``KEY``.
    ``help``      one line shown by ``calhub providers``.

    Checks across keys or of a value's form (a URL, a range) belong in
    :meth:`Provider.check_options`, which the config loader runs.
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


class CallStatus(StrEnum):
    """The one vocabulary of request and call outcomes in telemetry labels.

    Providers report each API request with one of these (:meth:`for_http` maps an HTTP
    status, :meth:`of` an exception); the hub's wrapper reports each contract call with them.
    A label outside the vocabulary is mapped by :meth:`parse`.
    """

    OK = "ok"
    TRANSIENT = "transient"  # timeout, connection reset, 5xx
    THROTTLED = "throttled"  # 429, ServerBusy
    AUTH = "auth"
    NOT_FOUND = "not-found"
    PRECONDITION = "precondition"
    PERMANENT = "permanent"
    CURSOR_INVALID = "cursor-invalid"
    ERROR = "error"  # anything else: a bug, an unexpected exception

    @classmethod
    def for_http(cls, status: int) -> CallStatus:
        """The outcome an HTTP status code stands for."""
        if status < 400:
            return cls.OK
        special = {
            401: cls.AUTH,
            403: cls.AUTH,
            404: cls.NOT_FOUND,
            410: cls.NOT_FOUND,
            412: cls.PRECONDITION,
            429: cls.THROTTLED,
        }
        if status in special:
            return special[status]
        return cls.TRANSIENT if status >= 500 else cls.PERMANENT

    @classmethod
    def of(cls, error: BaseException | None) -> CallStatus:
        """The outcome of a call that raised ``error`` (None: it succeeded)."""
        if error is None:
            return cls.OK
        if isinstance(error, TransientError) and error.retry_after is not None:
            return cls.THROTTLED  # the service said when to come back: it is throttling
        for kind, status in _ERROR_STATUS:
            if isinstance(error, kind):
                return status
        return cls.ERROR

    @classmethod
    def parse(cls, label: str) -> CallStatus:
        """A label of any provider in this vocabulary: a member's value, an HTTP status
        code, or an error class name (``"TransientError"``); anything else is ``error``."""
        text = str(label).strip()
        try:
            return cls(text.lower())
        except ValueError:
            pass
        if text.isdigit():
            return cls.for_http(int(text))
        by_name = {kind.__name__: status for kind, status in _ERROR_STATUS}
        return by_name.get(text, cls.ERROR)


class Telemetry(Protocol):
    """Where providers report each API request (metrics: calls, latency, throttling).

    ``status`` is a :class:`CallStatus` (any other label is mapped by
    :meth:`CallStatus.parse`)."""

    def request(self, account: str, operation: str, status: str, seconds: float) -> None: ...


class AgentSecrets(Protocol):
    """One account's per-agent secrets, kept in the hub's database (never in the config file,
    a log line or an API response): an OAuth refresh token a provider got from the agent's
    one-time consent (``calhub authorize ACCOUNT --agent ID``)."""

    async def get(self, agent_id: str) -> str | None: ...

    async def put(self, agent_id: str, secret: str) -> None: ...


class NullTelemetry:
    """Telemetry that records nothing (tests, ``calhub check``)."""

    def request(self, account: str, operation: str, status: str, seconds: float) -> None:
        return None


@dataclass(frozen=True, slots=True)
class HubServices:
    """What the running hub lends its providers beyond their account section.

    ``relays`` holds the live connections of programs on agents' PCs (the Outlook agent of
    the ``mapi`` provider), owned by ``calhub serve`` and shared with its admin endpoint. A
    provider built outside ``calhub serve`` (``calhub check``, tests) gets an empty one.
    """

    relays: RelayHub = field(default_factory=RelayHub)


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
    ``calendar_per_mailbox`` an agent whose ``calendar`` is empty uses its own mailbox's
                        default calendar; False: the account's one default calendar, whatever
                        the mailbox (CalDAV), so two such agents would share it.

    Lifecycle: the hub calls ``provider.attach(services)`` (its :class:`HubServices`), then
    ``await provider.open()`` before use and ``await provider.close()`` after (or
    ``async with provider``). Every method may raise :class:`TransientError`,
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
    calendar_per_mailbox: ClassVar[bool] = True

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        self.account = account
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        self.secrets: AgentSecrets | None = None
        self.services = HubServices()

    def use_secrets(self, secrets: AgentSecrets) -> None:
        """Hand the provider its account's per-agent secrets (the hub calls this after
        building it, before :meth:`open`). Providers that keep none ignore them."""
        self.secrets = secrets

    def attach(self, services: HubServices) -> None:
        """Called by the hub once, before :meth:`open`, with its shared services."""
        self.services = services

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        """Problems with an account's options, as ``(key, reason)`` pairs (none: usable).

        Run by the config loader after each :class:`Option` was type-checked and defaulted,
        so that a bad value (``url = "not a url"``) is refused when the service starts
        (``accounts.NAME.KEY: reason``, exit status 2) instead of at the first sync. No I/O.
        """
        return ()

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

    async def authorize(self, cal: CalendarRef, say: Callable[[str], None]) -> str:
        """The one-time consent of one agent (``calhub authorize``), for accounts that work
        per agent: talk to the administrator through ``say`` (the URL to open), keep what
        was granted through :attr:`secrets`, and return a one-line summary. Optional: the
        default refuses, as an account that needs no consent should."""
        raise PermanentError(f"{self.name}: this provider's accounts need no per-agent consent")


#: The methods every provider class must define itself, as ``async def``; a read-only
#: provider is excused from the writing ones.
REQUIRED_METHODS: tuple[str, ...] = ("fetch", "push", "delete", "get", "find", "check")
WRITE_METHODS: frozenset[str] = frozenset({"push", "delete"})
#: The capability flags (class attributes) the engine reads; see :class:`Provider`.
CAPABILITIES: tuple[str, ...] = (
    "supports_delta",
    "max_batch",
    "client_ids",
    "read_only",
    "max_concurrency",
)
_ASYNC_METHODS = (*REQUIRED_METHODS, "open", "close", "push_one")


def contract_problems(cls: type) -> list[str]:
    """What keeps ``cls`` from being a provider class, one line each (empty: none).

    Checked when a class registers, so a plugin missing a method is refused with the
    method's name at start-up instead of failing at its first sync."""
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        return [f"{cls!r} is not a Provider subclass"]
    if not cls.name:
        return [f"{cls.__qualname__} has no name"]
    return [*_method_problems(cls), *_declaration_problems(cls)]


def _method_problems(cls: type[Provider]) -> Iterable[str]:
    where = cls.__qualname__
    excused = WRITE_METHODS if cls.read_only is True else frozenset()
    for method in REQUIRED_METHODS:
        if method not in excused and getattr(cls, method, None) is getattr(Provider, method):
            yield f"{where} does not implement {method}() (required by hub.Provider)"
    for method in _ASYNC_METHODS:
        fn = inspect.getattr_static(cls, method, None)
        if fn is not None and not inspect.iscoroutinefunction(fn):
            yield f"{where}.{method} must be 'async def'"


def _declaration_problems(cls: type[Provider]) -> Iterable[str]:
    where = cls.__qualname__
    for flag in ("max_batch", "max_concurrency"):
        value = getattr(cls, flag)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            yield f"{where}.{flag} must be an integer >= 1, got {value!r}"
    for option in cls.options:
        if not isinstance(option, Option):
            yield f"{where}.options holds {option!r}, not an Option"


@dataclass(frozen=True, slots=True)
class PluginOrigin:
    """Where a plugin comes from: its entry-point name and its distribution."""

    plugin: str  # the entry-point name (the module name for a plugin passed in by a test)
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False  # shipped in the calhub distribution itself

    def describe(self) -> str:
        """``plugin jsondir from calhub-jsondir 1.2`` (what ``calhub providers`` shows)."""
        if self.distribution is None:
            return f"plugin {self.plugin}"
        version = f" {self.version}" if self.version else ""
        return f"plugin {self.plugin} from {self.distribution}{version}"


class ProviderRegistry:
    """Collects provider classes registered through :func:`calhub_register_providers`.

    A class must meet :func:`contract_problems` (else :meth:`add` raises TypeError naming
    what is missing). A name belongs to the first plugin that registers it; a built-in
    provider's name cannot be taken by another plugin (the other one is refused); when two
    third-party plugins register the same name neither gets it, and an account using it is
    a configuration error naming both (:meth:`clash`).
    """

    def __init__(self) -> None:
        self._classes: dict[str, type[Provider]] = {}
        self._sources: dict[str, PluginOrigin] = {}
        self._clashes: dict[str, list[PluginOrigin]] = {}
        self.current: PluginOrigin = PluginOrigin("?")

    @property
    def current_plugin(self) -> str:
        """The name of the plugin whose hook is running (set by the plugin loader)."""
        return self.current.plugin

    @current_plugin.setter
    def current_plugin(self, name: str) -> None:
        self.current = PluginOrigin(name)

    def add(self, cls: type[Provider]) -> None:
        problems = contract_problems(cls)
        if problems:
            kind = ValueError if problems[0].endswith("has no name") else TypeError
            raise kind("; ".join(problems))
        name, here = cls.name, self.current
        if name in self._clashes:
            if here not in self._clashes[name]:
                self._clashes[name].append(here)
            return
        first = self._sources.get(name)
        if first is None:
            self._classes[name] = cls
            self._sources[name] = here
            return
        if self._classes[name] is cls:
            return
        twice = f"provider {name!r} registered twice ({first.plugin} and {here.plugin})"
        if first.builtin:
            raise ValueError(f"{twice}: {name!r} is a built-in provider and cannot be replaced")
        if here.builtin:
            raise ValueError(f"{twice}: load built-in plugins first")
        # Two third-party plugins: which one loaded first is an accident of the install,
        # so neither gets the name.
        del self._classes[name], self._sources[name]
        self._clashes[name] = [first, here]

    def get(self, name: str) -> type[Provider] | None:
        return self._classes.get(name)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def origin(self, name: str) -> str:
        """The plugin (entry-point name) that registered ``name``."""
        return self._sources[name].plugin

    def source(self, name: str) -> PluginOrigin:
        """Where the plugin that registered ``name`` comes from."""
        return self._sources[name]

    def clash(self, name: str) -> list[PluginOrigin]:
        """The third-party plugins that all registered ``name`` (empty: no clash)."""
        return list(self._clashes.get(name, ()))

    def clashes(self) -> dict[str, list[PluginOrigin]]:
        return {name: list(origins) for name, origins in sorted(self._clashes.items())}


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


async def run_check_steps(
    cal: CalendarRef, steps: Sequence[tuple[str, Callable[[], Awaitable[object]]]]
) -> list[CheckItem]:
    """Run a provider's ``check`` steps for one calendar in order, one :class:`CheckItem` each,
    stopping at the first that raises a :class:`ProviderError` (the later steps depend on it)."""
    items: list[CheckItem] = []
    for label, step in steps:
        what = f"{cal.agent_id} <{cal.mailbox}>: {label}"
        try:
            await step()
        except ProviderError as exc:
            items.append(CheckItem(what, False, exc.message))
            break
        items.append(CheckItem(what, True))
    return items


def ca_bundle_context(ca_file: str) -> ssl.SSLContext:
    """A TLS context trusting the PEM bundle ``ca_file`` (a self-signed server, an inspecting
    proxy). Reads a file: call it off the event loop. ValueError names the file and why."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load {ca_file!r}: {exc}") from None


def account_config(
    provider: type[Provider], name: str = "test", options: Mapping[str, Any] | None = None
) -> AccountConfig:
    """The :class:`AccountConfig` the config loader would hand ``provider`` for ``options``:
    each declared :class:`Option`'s default applied where the key is absent, then
    :meth:`Provider.check_options` run. For tests and plugin fixtures; keys no option
    declares (a test server object) pass through. ValueError lists every problem as
    ``accounts.NAME.KEY: reason``."""
    given = dict(options or {})
    values: dict[str, Any] = {}
    problems: list[str] = []
    for option in provider.options:
        if option.key in given:
            values[option.key] = given.pop(option.key)
        elif option.required:
            problems.append(f"accounts.{name}.{option.key}: required by provider {provider.name!r}")
        else:
            values[option.key] = option.default
    values.update(given)
    if not problems:
        problems = [f"accounts.{name}.{k}: {why}" for k, why in provider.check_options(values)]
    if problems:
        raise ValueError("\n".join(problems))
    return AccountConfig(name=name, provider=provider.name, options=values)


def http_url_problem(url: object) -> str | None:
    """Why ``url`` is not an absolute http(s) URL with a host (None: it is one). For
    :meth:`Provider.check_options` of a provider talking to a web service."""
    text = str(url or "").strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"not a usable URL ({exc}): {text!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL with a host, got {text!r}"
    return None


def as_utc(value: datetime | date) -> datetime:
    """An aware UTC datetime for a datetime (naive means UTC) or a date (midnight UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


# Error class -> status; subclasses before their bases.
_ERROR_STATUS: tuple[tuple[type[BaseException], CallStatus], ...] = (
    (CursorInvalid, CallStatus.CURSOR_INVALID),
    (TransientError, CallStatus.TRANSIENT),
    (AuthError, CallStatus.AUTH),
    (NotFoundError, CallStatus.NOT_FOUND),
    (PreconditionFailed, CallStatus.PRECONDITION),
    (PermanentError, CallStatus.PERMANENT),
    (TimeoutError, CallStatus.TRANSIENT),
)


def _iso(value: datetime | date) -> str:
    if isinstance(value, datetime):
        utc = value if value.tzinfo is UTC else as_utc(value)
        if utc.year >= 1000:  # strftime writes %Y unpadded below that (glibc)
            # isoformat is strftime("%Y-%m-%dT%H:%M:%S") then the offset, several times faster
            return utc.isoformat()[:19] + "Z"
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


_json_str = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) writes


def _json_scalar(value: object) -> str | None:
    """``json.dumps`` of None, a bool, an int or a str; None for anything else."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is str:
        return _json_str(value)
    return None


def _canonical_json(data: EventData) -> str | None:
    """``json.dumps(data.canonical(), sort_keys=True, ensure_ascii=False)``, written out
    field by field in sorted key order; None when a field has a type that this does not
    write exactly as json.dumps would (then the caller takes json.dumps)."""
    categories = sorted(data.categories)
    if not all(type(c) is str for c in categories):
        return None
    body = _json_scalar(data.body.strip().replace("\r\n", "\n"))
    colour = _json_scalar((data.colour or "").lower() or None)
    end, start = _json_scalar(_iso(data.end)), _json_scalar(_iso(data.start))
    location, subject = _json_scalar(data.location.strip()), _json_scalar(data.subject.strip())
    private, show_as = _json_scalar(data.private), _json_scalar(data.show_as)
    reminder = _json_scalar(data.reminder_minutes)
    if None in (body, colour, end, start, location, subject, private, show_as, reminder):
        return None
    cats = ", ".join(map(_json_str, categories))
    return (
        f'{{"body": {body}, "categories": [{cats}], "colour": {colour}, "end": {end}, '
        f'"location": {location}, "private": {private}, "reminder_minutes": {reminder}, '
        f'"show_as": {show_as}, "start": {start}, "subject": {subject}}}'
    )
