"""A sync test bench: a real SqliteStore, a MemoryServer playing the agent's calendar, and an
AgentSync with a fixed clock and a sleep that records instead of waiting."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.backoff import RetryPolicy
from hub.config import HubSettings
from hub.model import Agent, Appointment, Kind, PassResult, PushState, Request
from hub.spec import AccountConfig, CalendarRef, EventData
from hub.store.sqlite import SqliteStore
from hub.sync import AgentSync
from hub.testing.memory import MemoryProvider, MemoryServer, StoredEvent

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday morning
ACCOUNT = "mem"


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A time ``day`` days from NOW's date (negative: in the past)."""
    base = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC) + timedelta(days=day)
    return base.replace(hour=hour, minute=minute)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Bench:
    """One agent ("alice") synced with one memory account ("mem")."""

    store: SqliteStore
    server: MemoryServer
    provider: MemoryProvider
    settings: HubSettings
    agent: Agent
    clock: Clock
    path: Path
    sleeps: list[float] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def cal(self) -> CalendarRef:
        return CalendarRef(self.agent.id, self.agent.email, self.agent.calendar)

    def engine(self, **settings: Any) -> AgentSync:
        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        return AgentSync(
            self.store,
            self.provider,
            ACCOUNT,
            replace(self.settings, **settings),
            clock=self.clock,
            sleep=sleep,
            retry_policy=RetryPolicy(attempts=4, base=0.5, cap=4.0),
        )

    async def sync(self, *, allow_empty: bool = False, **settings: Any) -> PassResult:
        return await self.engine(**settings).run(self.agent, allow_empty=allow_empty)

    async def set_agent(self, **changes: Any) -> None:
        self.agent = replace(self.agent, **changes)
        async with self.store.transaction("api") as tx:
            self.agent = await tx.put_agent(self.agent)

    async def add(
        self,
        start: datetime | date,
        end: datetime | date | None = None,
        *,
        kind: Kind = Kind.PLANNED,
        subject: str = "",
        note: str = "",
        push_state: PushState = PushState.SYNC,
        private: bool = False,
    ) -> Appointment:
        """A hub appointment of alice (kind planned by default, with its own request)."""
        n = next(self._ids)
        request = Request(id=f"R{n}", subject=f"Printer {n}", customer="ACME")
        if end is None:
            assert isinstance(start, datetime)
            end = start + timedelta(hours=1)
        appt = Appointment(
            id=f"a{n}",
            agent_id=self.agent.id,
            kind=kind,
            start=start,
            end=end,
            subject=subject,
            note=note,
            request_id=request.id,
            push_state=push_state,
            private=private,
        )
        async with self.store.transaction("api") as tx:
            await tx.put_request(request)
            return await tx.put_appointment(appt)

    async def edit(self, appt_id: str, **changes: Any) -> Appointment:
        current = await self.store.get_appointment(appt_id, include_deleted=True)
        assert current is not None
        async with self.store.transaction("api") as tx:
            return await tx.put_appointment(current.evolve(**changes))

    async def cancel(self, appt_id: str) -> None:
        async with self.store.transaction("api") as tx:
            await tx.delete_appointment(appt_id)

    async def hub(self, *, include_deleted: bool = False) -> list[Appointment]:
        return await self.store.list_appointments(
            agent_id=self.agent.id, include_deleted=include_deleted
        )

    async def get(self, appt_id: str) -> Appointment | None:
        return await self.store.get_appointment(appt_id, include_deleted=True)

    def remote(self) -> list[StoredEvent]:
        return self.server.events(self.cal)

    def remote_of(self, hub_id: str) -> StoredEvent:
        (event,) = [e for e in self.remote() if e.hub_id == hub_id]
        return event

    def external(self, subject: str, start: datetime, hours: float = 1, **extra: Any) -> str:
        data = EventData(subject, start, start + timedelta(hours=hours), **extra)
        return self.server.create_external(self.cal, data)

    async def audit_count(self) -> int:
        return len(await self.store.list_audit(limit=100_000))

    async def total_changes(self) -> int:
        """Rows changed by every write connection so far (SQLite's own counter)."""
        db = self.store._writer
        assert db is not None
        return db.total_changes


async def make_bench(tmp_path: Path, **settings: Any) -> Bench:
    clock = Clock()
    store = SqliteStore(tmp_path / "hub.db", clock=clock)
    await store.open()
    server = MemoryServer()
    provider = MemoryProvider(AccountConfig(ACCOUNT, "memory", {"server": server}))
    await provider.open()
    agent = Agent(id="alice", name="Alice Smith", email="alice@example.com", account=ACCOUNT)
    async with store.transaction("api") as tx:
        agent = await tx.put_agent(agent)
    return Bench(
        store=store,
        server=server,
        provider=provider,
        settings=HubSettings(**settings),
        agent=agent,
        clock=clock,
        path=tmp_path / "hub.db",
    )
