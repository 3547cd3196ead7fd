"""The hub side of the google end-to-end tests: a SqliteStore with agents alice and bob on
one google account, synced by the real engine (AgentSync)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hub.spec import Provider
from tests.engine_support import EngineHub
from tests.fakes.google import GoogleFake

ACCOUNT = "gws"


@dataclass
class Hub(EngineHub[Provider, GoogleFake]):
    """A hub database with agents alice and bob on one google account."""

    account: ClassVar[str] = ACCOUNT

    def email(self, agent_id: str = "alice") -> str:
        return self.agents[agent_id].email

    def remote_hub_ids(self, agent_id: str = "alice") -> list[str]:
        return self.fake.hub_ids(self.email(agent_id))

    def requests(self, agent_id: str = "alice") -> int:
        return self.fake.user_requests(self.email(agent_id))
