"""The hub side of the graph365 end-to-end tests: a SqliteStore with agents alice and bob on
one graph365 account, synced by the real engine (AgentSync)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.config import HubSettings
from hub.model import Agent, Appointment, PassResult
from hub.spec import EventData, Window
from hub.store.sqlite import SqliteStore
from plugins.graph365 import GraphProvider
from tests.engine_support import book, run_pass
from tests.fakes.graph import GraphFake

ACCOUNT = "o365"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60))


def visit(i: int) -> EventData:
    """Event number ``i``: half an hour, ``i`` hours from now."""
    return EventData(f"Visit {i}", NOW + timedelta(hours=i), NOW + timedelta(hours=i, minutes=30))


def owner_creates(fake: GraphFake, mailbox: str, count: int) -> list[str]:
    """The owner creates ``count`` events E0.. in Outlook, one an hour from now; their ids."""
    return [
        fake.owner_create(
            mailbox, f"E{i}", NOW + timedelta(hours=i), NOW + timedelta(hours=i, minutes=30)
        )
        for i in range(count)
    ]


@dataclass
class Hub:
    """A hub database with agents alice and bob on one graph365 account."""

    store: SqliteStore
    provider: GraphProvider
    fake: GraphFake
    path: Path
    agents: dict[str, Agent]
    settings: HubSettings = field(default_factory=HubSettings)
    sleeps: dict[str, list[float]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def sync(
        self,
        agent_id: str = "alice",
        provider: GraphProvider | None = None,
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

    def remote_hub_ids(self, agent_id: str = "alice") -> list[str]:
        email = self.agents[agent_id].email
        return sorted(v for ev in self.fake.events(email) for v in ev.extended.values())

    def graph_requests(self, agent_id: str = "alice") -> int:
        email = self.agents[agent_id].email.lower()
        return sum(n for (mb, _), n in self.fake.mailbox_requests.items() if mb == email)

    async def reopen(self) -> None:
        """A restarted hub: the same database file, a new connection."""
        await self.store.close()
        self.store = SqliteStore(self.path)
        await self.store.open()
