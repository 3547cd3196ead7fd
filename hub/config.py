"""Configuration: the TOML file described in DESIGN.md, validated into frozen records.

A bad file is refused with one line per problem naming the key path and the reason
(``agents[2].account: no account named 'o356'``); :class:`ConfigError` carries them and the
command line prints them and exits with status 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from hub.calendars import clash, sharing
from hub.durations import parse_duration
from hub.mail.settings import AGENT_EMAIL_KEYS, EmailSettings, check_agent_copies, read_email
from hub.model import Agent, ConflictPolicy, Policy, RemoteDelete, is_colour
from hub.render import check_template
from hub.spec import AccountConfig, Option, Provider, ProviderRegistry
from hub.store import is_server_url

DEFAULT_SUBJECT_TEMPLATE = "[#{request_id}] {request_subject}"
DEFAULT_BODY_TEMPLATE = "{note}"


class ConfigError(Exception):
    """The configuration was refused; ``problems`` holds one ``key.path: reason`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class HubSettings:
    """The ``[hub]`` table."""

    database: str = "calhub.db"
    sync_interval: timedelta = timedelta(minutes=5)
    days_past: int = 7
    days_future: int = 60
    default_estimate: timedelta = timedelta(hours=1)
    create_appointments: Policy = Policy.ALWAYS
    action_appointments: bool = True
    import_external: bool = False
    conflict: ConflictPolicy = ConflictPolicy.NEWEST
    remote_delete: RemoteDelete = RemoteDelete.FOLLOW
    reminder_minutes: int | None = 15
    subject_template: str = DEFAULT_SUBJECT_TEMPLATE
    body_template: str = DEFAULT_BODY_TEMPLATE
    max_concurrent_syncs: int = 8  # agent passes running at once, all accounts together
    timezone: str = ""  # IANA zone template times are shown in; empty: the machine's zone
    audit_retention: timedelta = timedelta(days=365)  # audit entries older than this go
    conflict_retention: timedelta = timedelta(days=180)  # recorded conflicts older than this go
    # PostgreSQL (database = "postgresql://..."): the password's variable, resolved at load
    # (never written in the URL in the file), the CA of verified TLS, and how long a worker's
    # claim on an agent lasts without renewal (a dead worker's agents move on after it).
    database_password_env: str = ""
    database_password: str | None = None
    database_ca_file: str = ""
    lease_time: timedelta = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The ``[admin]`` table; ``token`` is resolved from ``token_env`` (None when unset)."""

    listen: str = "127.0.0.1:8765"
    token_env: str = "CALHUB_ADMIN_TOKEN"
    token: str | None = None
    public_url: str = ""  # how users reach the endpoint (a proxy's https URL); "" unset

    @property
    def base_url(self) -> str:
        """The absolute URL links to the endpoint start with: ``public_url``, else the listen
        address when it names one host and port, else "" (links are then relative). Never
        the Host header of a request, which any client can set."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        wildcard = host in ("0.0.0.0", "::") or self.port == 0
        if wildcard:
            return ""
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def host(self) -> str:
        host, _, _ = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class CalendarSettings:
    """The ``[calendar]`` table: how the central calendar page shades and slices the week.

    ``working_days`` are weekday names (``mon`` .. ``sun``); ``day_start`` and ``day_end`` are
    ``HH:MM`` minutes after midnight; ``slot`` is the grid's default slot length.
    """

    working_days: tuple[str, ...] = WEEKDAYS[:5]
    day_start: int = 8 * 60
    day_end: int = 17 * 60
    slot: timedelta = timedelta(minutes=30)
    planned_colour: str = "#f0ad4e"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    hub: HubSettings = field(default_factory=HubSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    calendar: CalendarSettings = field(default_factory=CalendarSettings)
    accounts: Mapping[str, AccountConfig] = field(default_factory=dict)
    agents: tuple[Agent, ...] = ()  # from [[agents]]; more may be managed through the API
    path: Path | None = None  # None: the embedded default
    # The keys each [[agents]] entry sets, by agent id: only those override what the API
    # stored for that agent (an unset key is not a reset).
    agent_keys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    email: EmailSettings | None = None  # [email]: None when the section is absent
    # Accounts whose provider gives every agent with an empty `calendar` one same calendar
    # (CalDAV: the principal's default), for :mod:`hub.calendars`.
    account_wide_default: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- loading

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)

# Upper bounds of the numeric and duration keys of [hub]: far above any real use, far below
# where date arithmetic overflows (a window of a million days) or a sleep never ends.
MAX_WINDOW_DAYS = 3650
MAX_REMINDER_MINUTES = 4 * 7 * 24 * 60
MAX_CONCURRENT_SYNCS = 1000
_WEEK, _MONTH, _CENTURY = timedelta(days=7), timedelta(days=31), timedelta(days=36525)
_HOUR = timedelta(hours=1)

_AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TOML_TYPES: Mapping[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "float",
    str: "string",
    dict: "table",
    list: "array",
}


def _describe(value: object) -> str:
    kind = next((name for t, name in _TOML_TYPES.items() if isinstance(value, t)), None)
    if kind in ("table", "array"):
        return f"a {kind}"
    return f"{kind or type(value).__name__} {value!r}"


def _typed(expected: type[T], label: str) -> Callable[[object], T]:
    """A converter accepting exactly ``expected`` (a bool is not an integer here)."""

    def convert(value: object) -> T:
        if isinstance(value, expected) and not (expected is not bool and isinstance(value, bool)):
            return value
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        raise ValueError(f"expected {label}, got {_describe(value)}")

    return convert


_str = _typed(str, "a string")
_bool = _typed(bool, "true or false")
_int = _typed(int, "an integer")


def _between(low: int, high: int) -> Callable[[object], int]:
    """An integer in ``[low, high]``: every number the hub computes with has a sane range,
    so a typo (``days_past = 1000000``) is refused here rather than overflowing a date."""

    def convert(value: object) -> int:
        number = _int(value)
        if number < low:
            raise ValueError(f"must be at least {low}, got {number}")
        if number > high:
            raise ValueError(f"must be at most {high}, got {number}")
        return number

    return convert


def _choice(enum: type[E], allowed: tuple[E, ...] | None = None) -> Callable[[object], E]:
    options = allowed or tuple(enum)

    def convert(value: object) -> E:
        text = _str(value)
        if text not in options:
            names = ", ".join(repr(str(o)) for o in options)
            raise ValueError(f"{text!r} is not one of {names}")
        return enum(text)

    return convert


def _duration(longest: timedelta, label: str) -> Callable[[object], timedelta]:
    """A duration longer than zero and at most ``longest`` (said as ``label``)."""

    def convert(value: object) -> timedelta:
        span = parse_duration(value)
        if span <= timedelta(0):
            raise ValueError(f"must be longer than zero, got {value!r}")
        if span > longest:
            raise ValueError(f"must be at most {label}, got {value!r}")
        return span

    return convert


def _reminder(value: object) -> int | None:
    # TOML has no null: `false` says "no reminder".
    if value is False:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if value > MAX_REMINDER_MINUTES:
            raise ValueError(f"must be at most {MAX_REMINDER_MINUTES} (4 weeks), got {value}")
        return value
    raise ValueError(f"expected minutes (an integer >= 0) or false, got {_describe(value)}")


def _template(value: object) -> str:
    text = _str(value)
    problems = check_template(text)
    if problems:
        raise ValueError("\n".join(problems))
    return text


def _colour(value: object) -> str:
    text = _str(value)
    if not is_colour(text):
        raise ValueError(f"expected a colour written '#rrggbb', got {text!r}")
    return text.lower()


def _zone(value: object) -> str:
    text = _str(value)
    if text:
        try:
            ZoneInfo(text)
        except (ValueError, LookupError):  # ZoneInfoNotFoundError is a KeyError
            hint = "use an IANA name such as 'Europe/Paris'"
            raise ValueError(f"unknown time zone {text!r} ({hint})") from None
    return text


def _listen(value: object) -> str:
    text = _str(value)
    host, sep, port = text.rpartition(":")
    hint = "expected 'host:port', e.g. '127.0.0.1:8765' or '[::1]:8765'"
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{hint}, got {text!r}")
    if int(port) > 65535:  # 0 asks the system for a free port (tests)
        raise ValueError(f"port {port} is out of range 0-65535")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{hint}, got {text!r}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host[1:-1]!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, e.g. '[{host}]:{port}'")
    return text


def _public_url(value: object) -> str:
    text = _str(value)
    if not text:
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"give scheme, host, port and path only, got {text!r}")
    return text


def _name(value: object) -> str:
    text = _str(value)
    if _CONTROL.search(text):  # the title of the agent's feed, and a log's one line
        raise ValueError(f"must be one line without control characters, got {text!r}")
    return text


def _agent_id(value: object) -> str:
    text = _str(value)
    if not _AGENT_ID.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a valid agent id (letters, digits and . _ @ -, "
            "starting with a letter or digit)"
        )
    return text


class _Table:
    """Reads one TOML table, adding a ``key.path: reason`` problem per bad or unknown key."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[str]) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, reason: str) -> None:
        self.problems.extend(f"{self.key(key)}: {line}" for line in reason.splitlines())

    def has(self, key: str) -> bool:
        return key in self.data

    def take(self, key: str, convert: Callable[[object], T], default: T) -> T:
        """The converted value of ``key``, or ``default`` when absent or bad (then recorded)."""
        self.seen.add(key)
        if key not in self.data:
            return default
        try:
            return convert(self.data[key])
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def table(self, key: str) -> _Table:
        """The sub-table ``key`` (empty when absent or not a table, which is recorded)."""
        self.seen.add(key)
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.problem(key, f"expected a table, got {_describe(value)}")
            value = {}
        return _Table(value, self.key(key), self.problems)

    def unknown(self, known: list[str] | None = None) -> None:
        """Record every key that was not read."""
        for key in self.data:
            if key not in self.seen:
                hint = f"; known keys: {', '.join(known)}" if known else ""
                self.problem(key, f"unknown key{hint}")


def _hub(t: _Table, env: Mapping[str, str]) -> HubSettings:
    d = HubSettings()
    password_env = t.take("database_password_env", _str, d.database_password_env)
    settings = HubSettings(
        database=t.take("database", _str, d.database),
        database_password_env=password_env,
        database_password=env.get(password_env) or None if password_env else None,
        database_ca_file=t.take("database_ca_file", _str, d.database_ca_file),
        lease_time=t.take("lease_time", _duration(_HOUR, "1h"), d.lease_time),
        sync_interval=t.take("sync_interval", _duration(_WEEK, "7d"), d.sync_interval),
        days_past=t.take("days_past", _between(0, MAX_WINDOW_DAYS), d.days_past),
        days_future=t.take("days_future", _between(0, MAX_WINDOW_DAYS), d.days_future),
        default_estimate=t.take("default_estimate", _duration(_MONTH, "31d"), d.default_estimate),
        create_appointments=t.take("create_appointments", _choice(Policy), d.create_appointments),
        action_appointments=t.take("action_appointments", _bool, d.action_appointments),
        import_external=t.take("import_external", _bool, d.import_external),
        conflict=t.take("conflict", _choice(ConflictPolicy), d.conflict),
        remote_delete=t.take("remote_delete", _choice(RemoteDelete), d.remote_delete),
        reminder_minutes=t.take("reminder_minutes", _reminder, d.reminder_minutes),
        subject_template=t.take("subject_template", _template, d.subject_template),
        body_template=t.take("body_template", _template, d.body_template),
        max_concurrent_syncs=t.take(
            "max_concurrent_syncs", _between(1, MAX_CONCURRENT_SYNCS), d.max_concurrent_syncs
        ),
        timezone=t.take("timezone", _zone, d.timezone),
        audit_retention=t.take(
            "audit_retention", _duration(_CENTURY, "100 years"), d.audit_retention
        ),
        conflict_retention=t.take(
            "conflict_retention", _duration(_CENTURY, "100 years"), d.conflict_retention
        ),
    )
    if not settings.database:
        t.problem("database", "must name a file")
    _check_server(t, settings)
    t.unknown(sorted(t.seen))
    return settings


def _check_server(t: _Table, settings: HubSettings) -> None:
    """A database server's URL carries no password, and a named password variable is set."""
    if not is_server_url(settings.database):
        return
    credentials = settings.database.split("://", 1)[1].split("@", 1)
    if len(credentials) == 2 and ":" in credentials[0]:
        t.problem("database", "no password in the URL: name its variable in database_password_env")
    if settings.database_password_env and settings.database_password is None:
        t.problem(
            "database_password_env",
            f"environment variable {settings.database_password_env} is not set",
        )


def _admin(t: _Table, env: Mapping[str, str]) -> AdminSettings:
    d = AdminSettings()
    listen = t.take("listen", _listen, d.listen)
    token_env = t.take("token_env", _str, d.token_env)
    public_url = t.take("public_url", _public_url, d.public_url)
    t.unknown(sorted(t.seen))
    return AdminSettings(
        listen=listen,
        token_env=token_env,
        token=env.get(token_env) or None,
        public_url=public_url,
    )


def _weekdays(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected an array of weekday names, got {_describe(value)}")
    days = tuple(v.lower()[:3] for v in value)
    bad = [v for v, day in zip(value, days, strict=True) if day not in WEEKDAYS]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a weekday (use {', '.join(WEEKDAYS)})")
    return tuple(day for day in WEEKDAYS if day in days)


def _clock_time(value: object) -> int:
    text = _str(value)
    match = re.fullmatch(r"([01]?\d|2[0-4]):([0-5]\d)", text)
    if match is None or int(match[1]) * 60 + int(match[2]) > 24 * 60:
        raise ValueError(f"expected a time of day as HH:MM, got {text!r}")
    return int(match[1]) * 60 + int(match[2])


def _slot(value: object) -> timedelta:
    slot = parse_duration(value)
    minutes = slot.total_seconds() / 60
    if not 5 <= minutes <= 60 or minutes != int(minutes):
        raise ValueError(f"must be whole minutes from 5m to 60m, got {value!r}")
    return slot


def _calendar(t: _Table) -> CalendarSettings:
    d = CalendarSettings()
    settings = CalendarSettings(
        working_days=t.take("working_days", _weekdays, d.working_days),
        day_start=t.take("day_start", _clock_time, d.day_start),
        day_end=t.take("day_end", _clock_time, d.day_end),
        slot=t.take("slot", _slot, d.slot),
        planned_colour=t.take("planned_colour", _colour, d.planned_colour),
    )
    if settings.day_end <= settings.day_start:
        t.problem("day_end", "must be after day_start")
    t.unknown(sorted(t.seen))
    return settings


def _option_value(option: Option, value: object) -> object:
    if option.type in _TOML_TYPES:
        label = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        return _typed(option.type, label.get(option.type, option.type.__name__))(value)
    if isinstance(value, option.type):
        return value
    try:  # e.g. Path: built from the string the file holds
        return option.type(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"expected {option.type.__name__}, got {_describe(value)}: {exc}"
        ) from None


def _secret(t: _Table, option: Option, env: Mapping[str, str]) -> object:
    key, env_key, file_key = option.key, f"{option.key}_env", f"{option.key}_file"
    t.seen.update((key, env_key, file_key))
    if t.has(key):
        t.problem(key, f"secrets are not written in the file; use {env_key} or {file_key}")
        return None
    if t.has(env_key) and t.has(file_key):
        t.problem(key, f"set either {env_key} or {file_key}, not both")
        return None
    if t.has(env_key):
        name = t.take(env_key, _str, "")
        value = env.get(name) if name else None
        if name and not value:
            t.problem(env_key, f"environment variable {name} is not set (or is empty)")
        return value
    if t.has(file_key):
        name = t.take(file_key, _str, "")
        if not name:
            return None
        try:
            return Path(name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            t.problem(file_key, f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}")
            return None
    if option.required:
        t.problem(key, f"required; set {env_key} (environment variable) or {file_key}")
    return option.default


def _account(
    name: str, t: _Table, registry: ProviderRegistry, env: Mapping[str, str]
) -> AccountConfig | None:
    before = len(t.problems)
    provider = t.take("provider", _str, "")
    if not provider:
        if not t.has("provider"):
            t.problem("provider", f"required; registered providers: {_names(registry)}")
        return None
    cls = registry.get(provider)
    clashing = registry.clash(provider)
    if cls is None and clashing:
        who = " and ".join(o.describe() for o in clashing)
        t.problem(
            "provider",
            f"provider {provider!r} is registered by {who}; uninstall one of them, or name "
            "the one to load in CALHUB_PLUGINS",
        )
        return None
    if cls is None:
        t.problem("provider", f"unknown provider {provider!r}; registered: {_names(registry)}")
        return None
    options: dict[str, object] = {}
    for option in cls.options:
        if option.secret:
            options[option.key] = _secret(t, option, env)
            continue
        if option.required and not t.has(option.key):
            t.seen.add(option.key)
            t.problem(option.key, f"required by provider {provider!r}")
            continue
        options[option.key] = t.take(
            option.key, lambda v, o=option: _option_value(o, v), option.default
        )
    known = sorted(
        k
        for o in cls.options
        for k in ((f"{o.key}_env", f"{o.key}_file") if o.secret else (o.key,))
    )
    t.unknown(["provider", *known])
    if len(t.problems) == before and not _provider_accepts(t, cls, options):
        return None
    return AccountConfig(name=name, provider=provider, options=options)


def _provider_accepts(t: _Table, cls: type[Provider], options: Mapping[str, Any]) -> bool:
    """Run the provider's own option check (a URL's form, a range), so that a bad value
    stops the service at start instead of failing its first sync."""
    try:
        found = [(str(key), str(reason)) for key, reason in cls.check_options(options)]
    except Exception as exc:  # a plugin's bug is reported like a bad value, never a traceback
        found = [("provider", f"{cls.name} could not check its options: {exc!r}")]
    for key, reason in found:
        t.problem(key, reason)
    return not found


def _names(registry: ProviderRegistry) -> str:
    return ", ".join(registry.names()) or "(none)"


AGENT_KEYS = [
    "id",
    "name",
    "email",
    "account",
    "calendar",
    "create_appointments",
    "import_external",
    "colour",
]


def _agents(
    value: object, accounts: Mapping[str, AccountConfig], bad: set[str], problems: list[str]
) -> tuple[tuple[Agent, ...], dict[str, frozenset[str]]]:
    """``[[agents]]`` and the keys each sets; ``bad`` holds accounts that exist but were
    refused (their agents get no second problem line)."""
    if not isinstance(value, list):
        problems.append(f"agents: expected [[agents]] tables, got {_describe(value)}")
        return (), {}
    agents: list[Agent] = []
    keys: dict[str, frozenset[str]] = {}
    first_index: dict[str, int] = {}
    for i, entry in enumerate(value):
        path = f"agents[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{path}: expected a table, got {_describe(entry)}")
            continue
        t = _Table(entry, path, problems)
        if not t.has("id"):
            t.problem("id", "required")
        agent_id = t.take("id", _agent_id, "")
        account = t.take("account", _str, "") or None
        if account is not None and account not in accounts and account not in bad:
            known = ", ".join(repr(a) for a in sorted(accounts)) or "none configured"
            t.problem("account", f"no account named {account!r} (accounts: {known})")
        agent = Agent(
            id=agent_id,
            name=t.take("name", _name, "") or agent_id,
            email=t.take("email", _str, ""),
            account=account,
            calendar=t.take("calendar", _str, ""),
            create_appointments=t.take(
                "create_appointments",
                _choice(Policy, (Policy.NEVER, Policy.ALWAYS, Policy.ASK)),
                None,
            ),
            import_external=t.take("import_external", _bool, None),
            colour=t.take("colour", _colour, None),
            source="config",
        )
        t.seen.update(AGENT_EMAIL_KEYS)  # read by hub.mail.settings with [email]
        t.unknown(AGENT_KEYS)
        if not agent_id:
            continue
        if agent_id in first_index:
            t.problem(
                "id", f"duplicate agent id {agent_id!r} (also agents[{first_index[agent_id]}])"
            )
            continue
        first_index[agent_id] = i
        agents.append(agent)
        keys[agent_id] = frozenset(entry) & frozenset(AGENT_KEYS)
    return tuple(agents), keys


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read the configuration: {exc.strerror or exc}"]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message already names the line and column: "Expected '=' (at line 3, column 7)".
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(
            [f"{path}: invalid TOML: arrays or inline tables nested too deeply"]
        ) from None


def load_config(
    path: Path | None,
    registry: ProviderRegistry,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate ``path`` (None: the embedded default). Raises :class:`ConfigError`
    with every problem found, one ``key.path: reason`` line each."""
    env = os.environ if env is None else env
    if path is None:
        admin = AdminSettings()
        return Config(admin=AdminSettings(token=env.get(admin.token_env) or None))
    problems: list[str] = []
    root = _Table(_read(path), "", problems)
    hub = _hub(root.table("hub"), env)
    admin = _admin(root.table("admin"), env)
    calendar = _calendar(root.table("calendar"))
    accounts: dict[str, AccountConfig] = {}
    refused: set[str] = set()
    account_tables = root.table("accounts")
    for name in account_tables.data:
        section = account_tables.table(name)
        shaped = isinstance(account_tables.data[name], dict)
        account = _account(name, section, registry, env) if shaped else None
        if account is None:
            refused.add(name)
        else:
            accounts[name] = account
    root.seen.add("agents")
    agents, agent_keys = _agents(root.data.get("agents", []), accounts, refused, problems)
    email = None
    if root.has("email"):
        password = Option("password", secret=True)
        email = read_email(
            root.table("email"), root.data.get("agents"), lambda t: _secret(t, password, env)
        )
    else:
        check_agent_copies(root.data.get("agents"), problems)
    root.unknown(["hub", "admin", "calendar", "accounts", "agents", "email"])
    account_wide = frozenset(
        name
        for name, account in accounts.items()
        if not getattr(registry.get(account.provider), "calendar_per_mailbox", True)
    )
    _shared_calendars(root.data.get("agents", []), agents, account_wide, problems)
    if problems:
        raise ConfigError(problems)
    return Config(
        hub=hub,
        admin=admin,
        calendar=calendar,
        accounts=accounts,
        agents=agents,
        path=path,
        agent_keys=agent_keys,
        email=email,
        account_wide_default=account_wide,
    )


def _shared_calendars(
    entries: object, agents: tuple[Agent, ...], account_wide: frozenset[str], problems: list[str]
) -> None:
    """A problem for each agent that would sync the remote calendar of an earlier one."""
    index = {
        entry.get("id"): i
        for i, entry in enumerate(entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    }
    for n, agent in enumerate(agents):
        other = sharing(agent, agents[:n], account_wide)
        if other is not None:
            problems.append(
                f"agents[{index.get(agent.id, n)}].calendar: {clash(agent, other, account_wide)}"
            )
