"""A provider's own option check (``Provider.check_options``) runs when the config loads: a bad
account value stops ``calhub`` at start with ``accounts.NAME.KEY: reason`` and exit status 2,
instead of starting the service and failing at the first sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import main
from hub.config import ConfigError, load_config
from hub.plugins import load_plugins
from hub.spec import Option, ProviderRegistry, account_config
from hub.testing.memory import MemoryProvider
from plugins.caldav.provider import CalDAVProvider
from plugins.graph365.provider import GraphProvider

# A usable account per provider, as TOML values; a test replaces or adds one key.
GOOD: dict[str, dict[str, str]] = {
    "memory": {},
    "caldav": {"url": '"https://dav.example.com/"'},
    "graph365": {"tenant_id": '"t"', "client_id": '"c"'},
}


def problems(tmp_path: Path, provider: str, key: str = "", value: str = "") -> list[str]:
    keys = {**GOOD[provider], **({key: value} if key else {})}
    lines = "".join(f"{k} = {v}\n" for k, v in keys.items())
    path = tmp_path / "calhub.toml"
    path.write_text(f'[accounts.acc]\nprovider = "{provider}"\n{lines}', encoding="utf-8")
    try:
        load_config(path, load_plugins(env={}).registry, env={})
    except ConfigError as exc:
        return exc.problems
    return []


@pytest.mark.parametrize(
    ("provider", "key", "value", "expected"),
    [
        (
            "memory",
            "latency_ms",
            "-100",
            "accounts.acc.latency_ms: expected a number >= 0, got -100",
        ),
        ("memory", "max_batch", "0", "accounts.acc.max_batch: expected a number >= 1, got 0"),
        (
            "caldav",
            "url",
            '"not a url"',
            "accounts.acc.url: expected an http:// or https:// URL with a host, got 'not a url'",
        ),
        ("caldav", "url", '"https://dav.example.com:port/"', "accounts.acc.url: not a usable URL"),
        ("caldav", "timezone", '"Mars/Olympus"', "accounts.acc.timezone: unknown time zone"),
        ("caldav", "timeout", "0.0", "accounts.acc.timeout: expected seconds between 0 and 3600"),
        ("graph365", "base_url", '"graph.microsoft.com"', "accounts.acc.base_url: expected an"),
        ("graph365", "authority", '"ftp://login"', "accounts.acc.authority: expected an"),
        ("graph365", "page_size", "0", "accounts.acc.page_size: expected 1 to 1000 events"),
    ],
)
def test_a_bad_account_value_is_refused_at_load(
    tmp_path: Path, provider: str, key: str, value: str, expected: str
) -> None:
    found = problems(tmp_path, provider, key, value)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize("provider", sorted(GOOD))
def test_good_values_pass(tmp_path: Path, provider: str) -> None:
    assert problems(tmp_path, provider) == []


def test_calhub_stops_at_start_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "calhub.toml"
    path.write_text(
        '[accounts.dav]\nprovider = "caldav"\nurl = "not a url"\n'
        '[[agents]]\nid = "alice"\nemail = "alice@example.com"\naccount = "dav"\n',
        encoding="utf-8",
    )
    assert main(["sync", "--config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "accounts.dav.url: expected an http:// or https:// URL with a host, got 'not a url'"
    ]
    assert not (tmp_path / "calhub.db").exists()  # refused before anything started


class Fussy(MemoryProvider):
    """A plugin whose own option check has a bug."""

    name = "fussy"
    options = (Option("level", int, default=1),)

    @classmethod
    def check_options(cls, options):  # type: ignore[no-untyped-def]
        raise KeyError("colour")


def test_a_failing_option_check_is_a_config_problem_not_a_traceback(tmp_path: Path) -> None:
    registry = ProviderRegistry()
    registry.add(Fussy)
    path = tmp_path / "calhub.toml"
    path.write_text('[accounts.f]\nprovider = "fussy"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, registry, env={})
    assert caught.value.problems == [
        "accounts.f.provider: fussy could not check its options: KeyError('colour')"
    ]


def test_account_config_applies_defaults_and_runs_the_check() -> None:
    account = account_config(CalDAVProvider, "dav", {"url": "https://dav.example.com/"})
    assert account.options["timeout"] == 30.0 and account.options["timezone"] == "UTC"
    assert account.provider == "caldav"
    with pytest.raises(ValueError, match=r"^accounts.g.tenant_id: required by provider"):
        account_config(GraphProvider, "g", {"client_id": "c"})
    with pytest.raises(ValueError, match=r"^accounts.m.latency_ms: expected a number >= 0"):
        account_config(MemoryProvider, "m", {"latency_ms": -1})
