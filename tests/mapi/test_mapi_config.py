"""The mapi account section: bad values are refused when the configuration loads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from hub.config import ConfigError, load_config
from hub.relay import RelayHub
from hub.spec import AccountConfig, HubServices, ProviderRegistry
from plugins.mapi import MapiProvider


@pytest.fixture
def registry() -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.add(MapiProvider)
    return registry


def load(tmp_path: Path, registry: ProviderRegistry, options: str):
    path = tmp_path / "calhub.toml"
    path.write_text(f'[accounts.outlook]\nprovider = "mapi"\n{options}\n')
    return load_config(path, registry, {})


def test_defaults(tmp_path: Path, registry: ProviderRegistry) -> None:
    account = load(tmp_path, registry, "").accounts["outlook"]
    provider = MapiProvider(account)
    assert provider.call_timeout == 60.0
    assert provider.offline_attention == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ('offline_attention = "soon"', "accounts.outlook.offline_attention: bad duration 'soon'"),
        ("call_timeout = 0", "accounts.outlook.call_timeout: expected seconds > 0"),
    ],
)
def test_bad_values_are_refused_at_load(
    tmp_path: Path, registry: ProviderRegistry, options: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, registry, options)
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_attach_registers_the_account_for_the_status() -> None:
    relays = RelayHub()
    assert relays.status("alice", "outlook") is None
    provider = MapiProvider(AccountConfig("outlook", "mapi", {"offline_attention": "1h"}))
    provider.attach(HubServices(relays=relays))
    status = relays.status("alice", "outlook")
    assert status is not None and status["connected"] is False
