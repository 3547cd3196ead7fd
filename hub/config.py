"""Configuration: the TOML file described in DESIGN.md, validated into frozen records.

A bad file is refused with one line per problem naming the key path and the reason
(``agents[2].account: no account named 'o356'``); :class:`ConfigError` carries them and the
command line prints them and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from hub.model import Agent, ConflictPolicy, Policy, RemoteDelete
from hub.spec import AccountConfig, ProviderRegistry

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


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The ``[admin]`` table; ``token`` is resolved from ``token_env`` (None when unset)."""

    listen: str = "127.0.0.1:8765"
    token_env: str = "CALHUB_ADMIN_TOKEN"
    token: str | None = None

    @property
    def host(self) -> str:
        host, _, _ = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    hub: HubSettings = field(default_factory=HubSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    accounts: Mapping[str, AccountConfig] = field(default_factory=dict)
    agents: tuple[Agent, ...] = ()  # from [[agents]]; more may be managed through the API
    path: Path | None = None  # None: the embedded default


def load_config(
    path: Path | None,
    registry: ProviderRegistry,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate ``path`` (None: the embedded default). Raises :class:`ConfigError`."""
    raise NotImplementedError  # implemented by the core-config work
