"""The hub side of the exchange_ews end-to-end tests: a SqliteStore with agents alice and bob
on one exchange_ews account, synced by the real engine (AgentSync)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from plugins.exchange_ews import EwsProvider
from plugins.exchange_ews.adapter import HUB_ID_NAME
from tests.engine_support import EngineHub
from tests.fakes.ews import EwsFake

ACCOUNT = "onprem"
MAILBOXES = ("alice@contoso.example", "bob@contoso.example")


@dataclass
class Hub(EngineHub[EwsProvider, EwsFake]):
    """A hub database with agents alice and bob on one exchange_ews account."""

    account: ClassVar[str] = ACCOUNT

    def remote_hub_ids(self, agent_id: str = "alice") -> list[str]:
        """The hub ids tagged on the items of the agent's calendar (one per item)."""
        email = self.agents[agent_id].email
        return sorted(
            value
            for item in self.fake.items(email)
            for (_, name, _), value in item.extended.items()
            if name == HUB_ID_NAME
        )

    def requests(self, agent_id: str = "alice") -> int:
        email = self.agents[agent_id].email.lower()
        return sum(n for (mb, _), n in self.fake.ops.items() if mb == email)
