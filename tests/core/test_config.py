"""Loading and validating the TOML configuration (hub/config.py, hub/durations.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hub.config import (
    AdminSettings,
    CalendarSettings,
    Config,
    ConfigError,
    HubSettings,
    load_config,
)
from hub.durations import parse_duration
from hub.model import ConflictPolicy, Policy, RemoteDelete
from hub.spec import Option, Provider, ProviderRegistry


class _Declared(Provider):
    """Only declarations matter to the config loader; the registry still wants the
    contract's methods defined."""

    async def fetch(self, cal: Any, window: Any, cursor: Any) -> Any:
        raise NotImplementedError

    async def push(self, cal: Any, items: Any) -> Any:
        raise NotImplementedError

    async def delete(self, cal: Any, remote_id: Any, version: Any) -> None:
        raise NotImplementedError

    async def get(self, cal: Any, remote_id: Any) -> Any:
        raise NotImplementedError

    async def find(self, cal: Any, hub_ids: Any) -> Any:
        raise NotImplementedError

    async def check(self, cals: Any, write: bool = False) -> Any:
        raise NotImplementedError


class DavLike(_Declared):
    """A provider with the kinds of options real ones declare."""

    name = "davlike"
    title = "Test provider"
    options: ClassVar = (
        Option("url", str, required=True),
        Option("username", str, default="calhub"),
        Option("password", str, required=True, secret=True),
        Option("token", str, secret=True),
        Option("timeout", float, default=30.0),
        Option("verify", bool, default=True),
        Option("max_batch", int, default=10),
        Option("ca_file", Path),
    )


class Other(_Declared):
    name = "other"
    title = "Another provider"


@pytest.fixture
def registry() -> ProviderRegistry:
    reg = ProviderRegistry()
    reg.add(DavLike)
    reg.add(Other)
    return reg


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "calhub.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def problems_of(path: Path, registry: ProviderRegistry, env: dict[str, str] | None = None):
    with pytest.raises(ConfigError) as info:
        load_config(path, registry, env or {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


FULL = """
[hub]
database = "/var/lib/calhub/hub.db"
sync_interval = "90s"
days_past = 3
days_future = 30
default_estimate = "1h30m"
create_appointments = "agent"
action_appointments = false
import_external = true
conflict = "remote"
remote_delete = "restore"
reminder_minutes = 5
subject_template = "{kind}: {request_subject}"
body_template = "{note} ({customer})"
max_concurrent_syncs = 3
timezone = "Europe/Paris"
audit_retention = "90d"
conflict_retention = "30d"

[admin]
listen = "[::1]:9000"
token_env = "MY_TOKEN"

[accounts.phones]
provider = "davlike"
url = "https://dav.example.com/"
password_env = "DAV_PASSWORD"
timeout = 5
verify = false
ca_file = "/etc/ssl/test.pem"

[accounts.spare]
provider = "other"

[[agents]]
id = "alice"
name = "Alice Smith"
email = "alice@example.com"
account = "phones"
calendar = "/cal/alice/"
create_appointments = "ask"
import_external = false
colour = "#3A87AD"

[[agents]]
id = "bob"
"""


def test_every_key_is_read(write, registry) -> None:
    env = {"DAV_PASSWORD": "s3cret", "MY_TOKEN": "tok"}
    config = load_config(write(FULL), registry, env)
    assert config.hub == HubSettings(
        database="/var/lib/calhub/hub.db",
        sync_interval=timedelta(seconds=90),
        days_past=3,
        days_future=30,
        default_estimate=timedelta(hours=1, minutes=30),
        create_appointments=Policy.AGENT,
        action_appointments=False,
        import_external=True,
        conflict=ConflictPolicy.REMOTE,
        remote_delete=RemoteDelete.RESTORE,
        reminder_minutes=5,
        subject_template="{kind}: {request_subject}",
        body_template="{note} ({customer})",
        max_concurrent_syncs=3,
        timezone="Europe/Paris",
        audit_retention=timedelta(days=90),
        conflict_retention=timedelta(days=30),
    )
    assert config.admin == AdminSettings(listen="[::1]:9000", token_env="MY_TOKEN", token="tok")
    assert (config.admin.host, config.admin.port) == ("::1", 9000)
    phones = config.accounts["phones"]
    assert phones.provider == "davlike"
    assert dict(phones.options) == {
        "url": "https://dav.example.com/",
        "username": "calhub",
        "password": "s3cret",
        "token": None,
        "timeout": 5.0,
        "verify": False,
        "max_batch": 10,
        "ca_file": Path("/etc/ssl/test.pem"),
    }
    assert config.accounts["spare"].options == {}
    alice, bob = config.agents
    assert (alice.id, alice.name, alice.email, alice.account, alice.calendar) == (
        "alice",
        "Alice Smith",
        "alice@example.com",
        "phones",
        "/cal/alice/",
    )
    assert alice.create_appointments is Policy.ASK
    assert alice.import_external is False
    assert alice.colour == "#3a87ad"
    assert alice.source == bob.source == "config"
    assert config.agent_keys == {
        "alice": frozenset(
            {"id", "name", "email", "account", "calendar", "create_appointments"}
            | {"import_external", "colour"}
        ),
        "bob": frozenset({"id"}),
    }
    # Unset agent keys stay unset, so the hub's values apply.
    assert (bob.name, bob.account, bob.create_appointments, bob.import_external) == (
        "bob",
        None,
        None,
        None,
    )


def test_no_file_is_the_embedded_default(registry) -> None:
    assert load_config(None, registry, {}) == Config()
    config = load_config(None, registry, {"CALHUB_ADMIN_TOKEN": "t"})
    assert config.admin.token == "t"
    assert config.hub.database == "calhub.db"
    assert config.admin.listen == "127.0.0.1:8765"


def test_empty_file_is_all_defaults(write, registry) -> None:
    config = load_config(write(""), registry, {})
    assert (config.hub, config.admin, config.accounts, config.agents) == (
        HubSettings(),
        AdminSettings(),
        {},
        (),
    )


def test_reminder_false_means_none(write, registry) -> None:
    config = load_config(write("[hub]\nreminder_minutes = false\n"), registry, {})
    assert config.hub.reminder_minutes is None


def test_unset_token_env_gives_no_token(write, registry) -> None:
    config = load_config(write('[admin]\ntoken_env = "NOPE"\n'), registry, {"X": "y"})
    assert config.admin.token is None


def test_every_problem_is_reported_together_in_key_path_format(write, registry) -> None:
    text = """
colour = "red"

[hub]
days_past = "7"
sync_interval = "5 minutes"
create_appointments = "sometimes"
conflict = "mine"
remote_delete = "ignore"
import_external = "yes"
subject_template = "[#{request_id}] {request.subject}"
body_template = "{nope}"
databse = "x.db"
timezone = "Mars/Olympus"
max_concurrent_syncs = 0

[admin]
listen = "localhost"

[accounts.o365]
provider = "graph"

[accounts.phones]
provider = "davlike"
url = 7
password = "hunter2"
colour = 3

[[agents]]
id = "alice"
account = "o356"
colour = "blue"
create_appointments = "agent"

[[agents]]
id = "alice"
nickname = "Al"

[[agents]]
name = "No id"
"""
    problems = problems_of(write(text), registry)
    assert problems == [
        "hub.sync_interval: bad duration '5 minutes': write a number with units d, h, m, s "
        "(e.g. '30s', '90m', '1h30m', '2d') or whole seconds",
        "hub.days_past: expected an integer, got string '7'",
        "hub.create_appointments: 'sometimes' is not one of 'never', 'always', 'ask', 'agent'",
        "hub.import_external: expected true or false, got string 'yes'",
        "hub.conflict: 'mine' is not one of 'newest', 'hub', 'remote'",
        "hub.remote_delete: 'ignore' is not one of 'follow', 'restore'",
        "hub.subject_template: '{request.subject}': attribute, index, conversion and format "
        "syntax are not supported; known fields: request_id, request_subject, subject, "
        "customer, note, agent_name, agent_email, agent_id, kind, start, end, date, "
        "duration_minutes",
        "hub.body_template: unknown field 'nope'; known fields: request_id, request_subject, "
        "subject, customer, note, agent_name, agent_email, agent_id, kind, start, end, date, "
        "duration_minutes",
        "hub.max_concurrent_syncs: must be at least 1, got 0",
        "hub.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as 'Europe/Paris')",
        "hub.databse: unknown key; known keys: action_appointments, audit_retention, "
        "body_template, conflict, conflict_retention, create_appointments, database, "
        "database_ca_file, database_password_env, days_future, days_past, default_estimate, "
        "import_external, lease_time, max_concurrent_syncs, "
        "reminder_minutes, remote_delete, subject_template, sync_interval, timezone",
        "admin.listen: expected 'host:port', e.g. '127.0.0.1:8765' or '[::1]:8765', "
        "got 'localhost'",
        "accounts.o365.provider: unknown provider 'graph'; registered: davlike, other",
        "accounts.phones.url: expected a string, got integer 7",
        "accounts.phones.password: secrets are not written in the file; use password_env or "
        "password_file",
        "accounts.phones.colour: unknown key; known keys: provider, ca_file, max_batch, "
        "password_env, password_file, timeout, token_env, token_file, url, username, verify",
        "agents[0].account: no account named 'o356' (accounts: 'phones')",
        "agents[0].create_appointments: 'agent' is not one of 'never', 'always', 'ask'",
        "agents[0].colour: expected a colour written '#rrggbb', got 'blue'",
        "agents[1].nickname: unknown key; known keys: id, name, email, account, calendar, "
        "create_appointments, import_external, colour",
        "agents[1].id: duplicate agent id 'alice' (also agents[0])",
        "agents[2].id: required",
        "colour: unknown key; known keys: hub, admin, calendar, accounts, agents, email",
    ]


def test_agent_pointing_at_a_refused_account_gets_no_second_line(write, registry) -> None:
    text = '[accounts.o365]\nprovider = "graph"\n\n[[agents]]\nid = "a"\naccount = "o365"\n'
    assert problems_of(write(text), registry) == [
        "accounts.o365.provider: unknown provider 'graph'; registered: davlike, other",
    ]


def test_the_designs_example_line(write, registry) -> None:
    text = '[accounts.o365]\nprovider = "other"\n' + '[[agents]]\nid = "x"\n' * 2
    text += '[[agents]]\nid = "z"\naccount = "o356"\n'
    problems = problems_of(write(text), registry)
    assert problems[-1] == "agents[2].account: no account named 'o356' (accounts: 'o365')"


def test_missing_provider_and_required_options(write, registry) -> None:
    text = "[accounts.a]\n\n[accounts.b]\nprovider = 'davlike'\n"
    assert problems_of(write(text), registry) == [
        "accounts.a.provider: required; registered providers: davlike, other",
        "accounts.b.url: required by provider 'davlike'",
        "accounts.b.password: required; set password_env (environment variable) or password_file",
    ]


def test_secret_from_file_is_stripped(write, registry, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("  from-a-file\n", encoding="utf-8")
    text = f"[accounts.a]\nprovider = 'davlike'\nurl = 'u'\npassword_file = '{secret}'\n"
    config = load_config(write(text), registry, {})
    assert config.accounts["a"].options["password"] == "from-a-file"


def test_secret_env_unset_and_file_unreadable(write, registry, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    text = (
        "[accounts.a]\nprovider = 'davlike'\nurl = 'u'\npassword_env = 'DAV_PW'\n"
        f"[accounts.b]\nprovider = 'davlike'\nurl = 'u'\npassword_file = '{missing}'\n"
        "[accounts.c]\nprovider = 'davlike'\nurl = 'u'\npassword_env = 'X'\n"
        "password_file = '/x'\n"
    )
    assert problems_of(write(text), registry, {"OTHER": "1"}) == [
        "accounts.a.password_env: environment variable DAV_PW is not set (or is empty)",
        f"accounts.b.password_file: cannot read {missing}: No such file or directory",
        "accounts.c.password: set either password_env or password_file, not both",
    ]


def test_invalid_toml_names_the_line(write, registry) -> None:
    path = write("[hub]\ndays_past = 7\nconflict = newest\n")
    (problem,) = problems_of(path, registry)
    assert problem.startswith(f"{path}: invalid TOML: ")
    assert "line 3" in problem


def test_unreadable_file(tmp_path: Path, registry) -> None:
    path = tmp_path / "missing.toml"
    assert problems_of(path, registry) == [
        f"{path}: cannot read the configuration: No such file or directory"
    ]


def test_wrong_shapes(write, registry) -> None:
    text = 'hub = 3\nagents = "alice"\n[accounts]\nx = 1\n'
    assert problems_of(write(text), registry) == [
        "hub: expected a table, got integer 3",
        "accounts.x: expected a table, got integer 1",
        "agents: expected [[agents]] tables, got string 'alice'",
    ]


@pytest.mark.parametrize(
    ("listen", "ok"),
    [
        ("127.0.0.1:8765", True),
        ("0.0.0.0:80", True),
        ("[::1]:8765", True),
        ("localhost:8765", True),
        ("::1:8765", False),
        ("[::g]:8765", False),
        ("127.0.0.1:0", True),
        ("127.0.0.1:70000", False),
        (":8765", False),
        ("127.0.0.1:http", False),
    ],
)
def test_listen_addresses(write, registry, listen: str, ok: bool) -> None:
    path = write(f'[admin]\nlisten = "{listen}"\n')
    if ok:
        assert load_config(path, registry, {}).admin.listen == listen
    else:
        (problem,) = problems_of(path, registry)
        assert problem.startswith("admin.listen: ")


def test_bad_agent_id(write, registry) -> None:
    assert problems_of(write('[[agents]]\nid = "a/b"\n'), registry) == [
        "agents[0].id: 'a/b' is not a valid agent id (letters, digits and . _ @ -, "
        "starting with a letter or digit)"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("90m", 5400),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1d2h3m4s", 93784),
        ("300", 300),
        (45, 45),
    ],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5 minutes", "1x", "h", "1h1h", "-5m", 1.5, True, -3])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_zero_durations_are_refused_where_they_make_no_sense(write, registry) -> None:
    assert problems_of(write('[hub]\nsync_interval = "0s"\n'), registry) == [
        "hub.sync_interval: must be longer than zero, got '0s'"
    ]


def test_retention_durations_are_validated(write, registry) -> None:
    text = '[hub]\naudit_retention = "0d"\nconflict_retention = "half a year"\n'
    problems = problems_of(write(text), registry)
    assert problems[0] == "hub.audit_retention: must be longer than zero, got '0d'"
    assert problems[1].startswith("hub.conflict_retention: bad duration 'half a year'")
    defaults = load_config(write("[hub]\n"), registry, {}).hub
    assert (defaults.audit_retention, defaults.conflict_retention) == (
        timedelta(days=365),
        timedelta(days=180),
    )


def test_every_key_and_field_is_documented() -> None:
    from dataclasses import fields

    from hub.config import AGENT_KEYS
    from hub.render import FIELDS

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = {
        line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")
    }
    hub_keys = {f.name for f in fields(HubSettings)} - {"database_password"}  # resolved
    admin_keys = {f.name for f in fields(AdminSettings)} - {"token"}  # resolved, not a key
    calendar_keys = {f.name for f in fields(CalendarSettings)}
    keys = hub_keys | admin_keys | calendar_keys | set(AGENT_KEYS) | set(FIELDS) | {"provider"}
    missing = keys - documented
    assert not missing, f"keys missing from docs/configuration.md: {sorted(missing)}"


def test_calendar_section(write, registry) -> None:
    path = write(
        '[admin]\npublic_url = "https://calhub.example.com/"\n'
        '[calendar]\nworking_days = ["Monday", "tue", "sat"]\nday_start = "07:30"\n'
        'day_end = "18:00"\nslot = "15m"\nplanned_colour = "#AABBCC"\n'
    )
    config = load_config(path, registry, env={})
    assert config.admin.base_url == "https://calhub.example.com"
    assert config.calendar == CalendarSettings(
        working_days=("mon", "tue", "sat"),
        day_start=7 * 60 + 30,
        day_end=18 * 60,
        slot=parse_duration("15m"),
        planned_colour="#aabbcc",
    )
    assert load_config(write(""), registry, env={}).calendar == CalendarSettings()


def test_calendar_section_refusals(write, registry) -> None:
    path = write(
        '[admin]\npublic_url = "ftp://x"\n'
        '[calendar]\nworking_days = ["funday"]\nday_start = "25:00"\nslot = "2h"\n'
        'planned_colour = "orange"\nweekend = true\n'
    )
    assert problems_of(path, registry) == [
        "admin.public_url: expected an http:// or https:// URL, got 'ftp://x'",
        "calendar.working_days: 'funday' is not a weekday (use mon, tue, wed, thu, fri, sat, sun)",
        "calendar.day_start: expected a time of day as HH:MM, got '25:00'",
        "calendar.slot: must be whole minutes from 5m to 60m, got '2h'",
        "calendar.planned_colour: expected a colour written '#rrggbb', got 'orange'",
        "calendar.weekend: unknown key; known keys: day_end, day_start, planned_colour, slot, "
        "working_days",
    ]
    late = write('[calendar]\nday_start = "18:00"\nday_end = "08:00"\n')
    assert problems_of(late, registry) == ["calendar.day_end: must be after day_start"]
