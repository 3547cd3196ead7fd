"""The hub side of the graph365 end-to-end tests: a SqliteStore with agents alice and bob on
one graph365 account, synced by the real engine (AgentSync)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from hub.spec import EventData, Window
from plugins.graph365 import GraphProvider
from tests.engine_support import EngineHub
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
class Hub(EngineHub[GraphProvider, GraphFake]):
    """A hub database with agents alice and bob on one graph365 account."""

    account: ClassVar[str] = ACCOUNT

    def remote_hub_ids(self, agent_id: str = "alice") -> list[str]:
        email = self.agents[agent_id].email
        return sorted(v for ev in self.fake.events(email) for v in ev.extended.values())

    def graph_requests(self, agent_id: str = "alice") -> int:
        email = self.agents[agent_id].email.lower()
        return sum(n for (mb, _), n in self.fake.mailbox_requests.items() if mb == email)
