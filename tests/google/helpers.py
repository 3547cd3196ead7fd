"""The hub side of the google end-to-end tests: a SqliteStore with agents alice and bob on
one google account, synced by the real engine (AgentSync)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from hub.config import HubSettings
from hub.model import Agent, Appointment, PassResult
from hub.spec import Provider
from hub.store.sqlite import SqliteStore
from tests.engine_support import book, run_pass
from tests.fakes.google import GoogleFake

ACCOUNT = "gws"


@dataclass
class Hub:
    """A hub database with agents alice and bob on one google account."""

    store: SqliteStore
    provider: Provider
    fake: GoogleFake
    path: Path
    agents: dict[str, Agent]
    settings: HubSettings = field(default_factory=HubSettings)
    sleeps: dict[str, list[float]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def sync(
        self,
        agent_id: str = "alice",
        provider: Provider | None = None,
        *,
        allow_empty: bool = False,
        **settings: Any,
    ) -> PassResult:
        return await run_pass(
            self.store, provider or self.provider, ACCOUNT, self.settings,
            self.agents[agent_id], self.sleeps.setdefault(agent_id, []),
            allow_empty=allow_empty, **settings,
        )  # fmt: skip

    async def add(self, start: datetime, agent_id: str = "alice", **extra: Any) -> Appointment:
        n = next(self._ids)
        return await book(self.store, n, agent_id, start, f"Visit {n}", **extra)

    async def hub(self, agent_id: str = "alice") -> list[Appointment]:
        return await self.store.list_appointments(agent_id=agent_id)

    def email(self, agent_id: str = "alice") -> str:
        return self.agents[agent_id].email

    def remote_hub_ids(self, agent_id: str = "alice") -> list[str]:
        return self.fake.hub_ids(self.email(agent_id))

    def requests(self, agent_id: str = "alice") -> int:
        return self.fake.user_requests(self.email(agent_id))

    async def reopen(self) -> None:
        """A restarted hub: the same database file, a new connection."""
        await self.store.close()
        self.store = SqliteStore(self.path)
        await self.store.open()
