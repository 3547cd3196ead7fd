"""Support shared by the providers' end-to-end tests: one pass of the real engine with its
back-off waits recorded instead of slept, a booked (C) appointment with its request, and
:class:`EngineHub`, the hub side each provider's tests wrap around their fake."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from hub.backoff import RetryPolicy
from hub.config import HubSettings
from hub.model import Agent, Appointment, Kind, PassResult, Request
from hub.spec import Provider
from hub.store.base import Store
from hub.store.sqlite import SqliteStore
from hub.sync import AgentSync

TEST_RETRY = RetryPolicy(attempts=4, base=0.5, cap=4.0)


def hour(days: int, at: int = 10) -> datetime:
    """``at`` o'clock UTC, ``days`` days from today."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=at)


async def run_pass(
    store: Store,
    provider: Provider,
    account: str,
    settings: HubSettings,
    agent: Agent,
    waits: list[float],
    *,
    allow_empty: bool = False,
    **changes: Any,
) -> PassResult:
    """One AgentSync pass of ``agent``; ``changes`` override ``settings``."""

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    engine = AgentSync(
        store, provider, account, replace(settings, **changes), sleep=sleep,
        retry_policy=TEST_RETRY,
    )  # fmt: skip
    return await engine.run(agent, allow_empty=allow_empty)


async def book(
    store: Store, n: int, agent_id: str, start: datetime, subject: str, **extra: Any
) -> Appointment:
    """Appointment ``appt-<n>`` (kind manual, one hour) against its own request ``R<n>``."""
    request = Request(id=f"R{n}", subject=f"Printer {n}", customer="ACME")
    appt = Appointment(
        id=f"appt-{n}", agent_id=agent_id, kind=Kind.MANUAL, start=start,
        end=start + timedelta(hours=1), subject=subject, request_id=request.id, **extra,
    )  # fmt: skip
    async with store.transaction("api") as tx:
        await tx.put_request(request)
        return await tx.put_appointment(appt)


P = TypeVar("P", bound=Provider)
F = TypeVar("F")


@dataclass
class EngineHub(Generic[P, F]):
    """A hub database with agents (alice and bob) on one account of a provider whose fake
    is ``fake``; a subclass names the account and adds what it reads from its fake."""

    account: ClassVar[str]

    store: SqliteStore
    provider: P
    fake: F
    path: Path
    agents: dict[str, Agent]
    settings: HubSettings = field(default_factory=HubSettings)
    sleeps: dict[str, list[float]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def sync(
        self,
        agent_id: str = "alice",
        provider: P | None = None,
        *,
        allow_empty: bool = False,
        **settings: Any,
    ) -> PassResult:
        return await run_pass(
            self.store, provider or self.provider, self.account, self.settings,
            self.agents[agent_id], self.sleeps.setdefault(agent_id, []),
            allow_empty=allow_empty, **settings,
        )  # fmt: skip

    async def add(self, start: datetime, agent_id: str = "alice", **extra: Any) -> Appointment:
        n = next(self._ids)
        return await book(self.store, n, agent_id, start, f"Visit {n}", **extra)

    async def hub(self, agent_id: str = "alice") -> list[Appointment]:
        return await self.store.list_appointments(agent_id=agent_id)

    async def reopen(self) -> None:
        """A restarted hub: the same database file, a new connection."""
        await self.store.close()
        self.store = SqliteStore(self.path)
        await self.store.open()
