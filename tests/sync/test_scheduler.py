"""Scheduler: run_once, account isolation, limits, no concurrent passes, triggers, shutdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from hub.config import Config, HubSettings
from hub.metrics import Metrics
from hub.model import Agent, Appointment, Kind
from hub.scheduler import Scheduler
from hub.spec import (
    AccountConfig,
    AuthError,
    CalendarRef,
    EventData,
    FetchResult,
    ProviderRegistry,
    PushItem,
    PushOutcome,
    Window,
)
from hub.store.sqlite import SqliteStore
from hub.testing.memory import MemoryProvider, MemoryServer

from .helpers import NOW, Clock, at


class Gauge:
    """In-flight fetches: overall, per mailbox, and the most ever seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.by_mailbox: Counter[str] = Counter()
        self.peak_mailbox = 0
        self.by_agent: Counter[str] = Counter()
        self.peak_agent = 0


class SlowProvider(MemoryProvider):
    """The memory provider with a pause inside fetch, so that passes overlap if allowed."""

    name: ClassVar[str] = "slow-memory"
    gauge: ClassVar[Gauge]
    pause: ClassVar[float] = 0.05

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        g = self.gauge
        g.now += 1
        g.by_mailbox[cal.mailbox] += 1
        g.by_agent[cal.agent_id] += 1
        g.peak = max(g.peak, g.now)
        g.peak_mailbox = max(g.peak_mailbox, *g.by_mailbox.values())
        g.peak_agent = max(g.peak_agent, *g.by_agent.values())
        try:
            await anyio.sleep(self.pause)
            return await super().fetch(cal, window, cursor)
        finally:
            g.now -= 1
            g.by_mailbox[cal.mailbox] -= 1
            g.by_agent[cal.agent_id] -= 1


class World:
    """A store with agents, memory servers per account, and a config pointing at them."""

    def __init__(self, store: SqliteStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.servers: dict[str, MemoryServer] = {}
        self.accounts: dict[str, AccountConfig] = {}
        self.registry = ProviderRegistry()
        self.registry.add(MemoryProvider)
        self.registry.add(SlowProvider)
        self.metrics = Metrics()
        self.gauge = Gauge()
        SlowProvider.gauge = self.gauge

    def account(self, name: str, provider: str = "memory", **options: Any) -> MemoryServer:
        server = MemoryServer()
        self.servers[name] = server
        self.accounts[name] = AccountConfig(name, provider, {"server": server, **options})
        return server

    async def agent(self, agent_id: str, account: str | None, email: str = "") -> Agent:
        agent = Agent(agent_id, agent_id.title(), email or f"{agent_id}@example.com", account)
        async with self.store.transaction("api") as tx:
            return await tx.put_agent(agent)

    async def appointment(self, agent_id: str, day: int, appt_id: str | None = None) -> None:
        appt = Appointment(
            id=appt_id or f"{agent_id}-{day}",
            agent_id=agent_id,
            kind=Kind.MANUAL,
            start=at(day),
            end=at(day, 11),
            subject="Visit",
        )
        async with self.store.transaction("api") as tx:
            await tx.put_appointment(appt)

    def scheduler(
        self, *, background: bool = False, debounce: float = 0.05, **hub: Any
    ) -> Scheduler:
        settings = HubSettings(**hub)
        config = Config(hub=settings, accounts=dict(self.accounts))

        async def no_wait(seconds: float) -> None:
            return None

        return Scheduler(
            self.store,
            config,
            self.registry,
            self.metrics,
            background=background,
            clock=self.clock,
            sleep=no_wait,
            start_spread=0.0,
            debounce=debounce,
            stop_timeout=5.0,
        )

    def remote_count(self, account: str, agent_id: str) -> int:
        cal = CalendarRef(agent_id, f"{agent_id}@example.com")
        return len(self.servers[account].events(cal))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock(NOW)
    store = SqliteStore(tmp_path / "hub.db", clock=clock)
    await store.open()
    yield World(store, clock)
    await store.close()


async def wait_until(predicate: Any, limit: float = 5.0) -> None:
    """Poll a condition the scheduler's own tasks make true (they expose no event for it)."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_run_once_syncs_every_agent_with_an_account(world: World) -> None:
    world.account("mem")
    for name in ("alice", "bob"):
        await world.agent(name, "mem")
        await world.appointment(name, 1)
    await world.agent("carol", None)  # hub calendar only

    async with world.scheduler() as s:
        results = await s.run_once()

    assert set(results) == {"alice", "bob"}
    assert all(r.result == "ok" for r in results.values())
    assert world.remote_count("mem", "alice") == world.remote_count("mem", "bob") == 1


async def test_run_once_reports_unknown_and_accountless_agents(world: World) -> None:
    world.account("mem")
    await world.agent("carol", None)
    await world.agent("dave", "gone")  # its account was removed from the config

    async with world.scheduler() as s:
        results = await s.run_once(["carol", "nobody", "dave"])

    assert list(results) == ["carol", "nobody", "dave"]
    assert results["carol"].result == "skipped"
    assert results["nobody"].result == "skipped"
    assert results["dave"].result == "needs-attention"
    assert "gone" in (results["dave"].error or "")


async def test_auth_error_of_one_account_does_not_stop_the_others(world: World) -> None:
    broken = world.account("o365")
    world.account("dav")
    await world.agent("alice", "o365")
    await world.agent("bob", "dav")
    await world.appointment("alice", 1)
    await world.appointment("bob", 1)
    broken.revoke_auth()

    async with world.scheduler() as s:
        results = await s.run_once()
        status = s.agent_status("alice")

    assert results["alice"].result == "needs-attention"
    assert results["bob"].result == "ok"
    assert world.remote_count("dav", "bob") == 1
    assert status["last_result"] == "needs-attention"
    assert world.metrics.registry.get_sample_value("calhub_agents_needing_attention") == 1
    state = await world.store.get_calendar_state("alice")
    assert state is not None and state.needs_attention


async def test_global_limit_bounds_concurrent_passes(world: World) -> None:
    world.account("mem", provider="slow-memory")
    for i in range(6):
        await world.agent(f"agent{i}", "mem")

    async with world.scheduler(max_concurrent_syncs=2) as s:
        results = await s.run_once()

    assert all(r.result == "ok" for r in results.values())
    assert world.gauge.peak == 2


async def test_per_mailbox_limit_bounds_concurrent_requests(world: World) -> None:
    world.account("mem", provider="slow-memory")
    SlowProvider.max_concurrency = 1
    try:
        # Two agents sharing one mailbox (two calendars of one room, say).
        await world.agent("alice", "mem", email="room@example.com")
        await world.agent("bob", "mem", email="room@example.com")
        await world.agent("carol", "mem")
        async with world.scheduler(max_concurrent_syncs=8) as s:
            await s.run_once()
    finally:
        SlowProvider.max_concurrency = MemoryProvider.max_concurrency
    assert world.gauge.peak_mailbox == 1
    assert world.gauge.peak >= 2  # other mailboxes were not held back


async def test_never_two_passes_of_one_agent_at_once(world: World) -> None:
    world.account("mem", provider="slow-memory")
    await world.agent("alice", "mem")

    async with world.scheduler() as s, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(s.sync_now, "alice")

    assert world.gauge.peak_agent == 1
    assert world.servers["mem"].requests_by_operation["fetch"] == 4


async def test_local_changes_trigger_one_debounced_pass(world: World) -> None:
    world.account("mem")
    await world.agent("alice", "mem")

    # A generous debounce, so that the three commits below surely fall inside it.
    hourly = world.scheduler(background=True, debounce=0.5, sync_interval=timedelta(hours=1))
    async with hourly as s:
        await wait_until(lambda: s.agent_status("alice")["last_result"] == "ok")
        fetches = world.servers["mem"].requests_by_operation["fetch"]
        for day in (1, 2, 3):
            await world.appointment("alice", day)

        await wait_until(lambda: world.remote_count("mem", "alice") == 3)

        assert world.servers["mem"].requests_by_operation["fetch"] == fetches + 1
        # The pass's own writes (origin sync:mem) did not trigger another pass.
        await anyio.sleep(0.2)
        assert world.servers["mem"].requests_by_operation["fetch"] == fetches + 1
        assert s.agent_status("alice")["next_run"] is not None


async def test_graceful_stop_lets_the_pass_in_flight_finish(world: World) -> None:
    world.account("mem", provider="slow-memory")
    await world.agent("alice", "mem")
    await world.appointment("alice", 1)
    SlowProvider.pause = 0.3
    try:
        async with world.scheduler(background=True) as s:
            await wait_until(lambda: s.agent_status("alice")["running"])
    finally:
        SlowProvider.pause = 0.05
    # Leaving the context waited for the pass: its push and status commit are done.
    assert world.remote_count("mem", "alice") == 1
    rows = await world.store.list_status("alice", "mem")
    assert [r.state for r in rows] == ["synced"]
    assert s.agent_status("alice")["last_result"] == "ok"


async def test_sync_now_passes_the_empty_override(world: World) -> None:
    server = world.account("mem")
    await world.agent("alice", "mem")
    await world.appointment("alice", 1)
    cal = CalendarRef("alice", "alice@example.com")
    async with world.scheduler() as s:
        assert (await s.sync_now("alice")).result == "ok"
        for event in server.events(cal):
            server.delete(cal, event.remote_id)
        server.expire_cursors(cal)
        assert (await s.sync_now("alice")).result == "stopped"
        result = await s.sync_now("alice", allow_empty=True)
    assert result.result == "ok"
    assert await world.store.list_appointments(agent_id="alice") == []


class RefusingProvider(MemoryProvider):
    """A provider whose credentials are refused as it opens (a revoked client secret)."""

    name: ClassVar[str] = "refusing"

    async def open(self) -> None:
        raise AuthError("AADSTS7000215: invalid client secret")


class HeldPush(MemoryProvider):
    """The memory provider whose pushes wait until the test lets them go."""

    name: ClassVar[str] = "held-push"
    entered: ClassVar[anyio.Event]
    release: ClassVar[anyio.Event]

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        self.entered.set()
        await self.release.wait()
        return await super().push(cal, items)


@pytest.mark.parametrize("background", [False, True], ids=["run_once", "serve"])
async def test_credentials_refused_at_open_stop_no_other_account(
    world: World, background: bool
) -> None:
    world.registry.add(RefusingProvider)
    world.account("o365", provider="refusing")
    world.account("dav")
    await world.agent("alice", "o365")
    await world.agent("bob", "dav")
    await world.appointment("bob", 1)

    async with world.scheduler(background=background) as s:
        if background:  # `calhub serve`
            await wait_until(lambda: s.agent_status("alice")["last_result"] is not None)
            await wait_until(lambda: s.agent_status("bob")["last_result"] is not None)
        else:  # `calhub sync`
            await s.run_once()
        alice, bob = s.agent_status("alice"), s.agent_status("bob")

    assert alice["last_result"] == "needs-attention"
    assert "authentication refused" in (alice["last_error"] or "")
    assert bob["last_result"] == "ok", bob["last_error"]
    assert world.remote_count("dav", "bob") == 1


async def test_a_pass_writing_appointments_triggers_no_other_pass(world: World) -> None:
    server = world.account("mem")
    alice = await world.agent("alice", "mem")
    async with world.store.transaction("api") as tx:
        await tx.put_agent(replace(alice, import_external=True))
    await world.appointment("alice", 1, "visit")
    cal = CalendarRef("alice", "alice@example.com")

    hourly = world.scheduler(background=True, debounce=0.5, sync_interval=timedelta(hours=1))
    async with hourly as s:
        await wait_until(lambda: s.agent_status("alice")["last_result"] == "ok")
        (event,) = server.events(cal)
        server.move(cal, event.remote_id, at(2), at(2, 11))  # flows back into the hub
        server.create_external(cal, EventData("Dentist", at(3), at(3, 11)))  # is imported

        result = await s.sync_now("alice")
        status = s.agent_status("alice")

    assert result.counts.get("flow-back") == 1 and result.counts.get("import") == 1
    # The pass's own appointment writes asked for no pass: the next one is the hourly one.
    assert status["next_run"] is not None
    assert datetime.fromisoformat(status["next_run"]) > NOW + timedelta(minutes=30)


async def test_a_change_during_the_pass_is_synced_within_the_debounce(world: World) -> None:
    world.registry.add(HeldPush)
    HeldPush.entered, HeldPush.release = anyio.Event(), anyio.Event()
    world.account("mem", provider="held-push")
    await world.agent("alice", "mem")
    await world.appointment("alice", 1)

    hourly = world.scheduler(background=True, debounce=0.05, sync_interval=timedelta(hours=1))
    async with hourly:
        with anyio.fail_after(5):
            await HeldPush.entered.wait()  # the first pass read the hub and is pushing
        await world.appointment("alice", 2)  # committed while that pass runs
        HeldPush.release.set()
        # Not an hour later: the trigger that came during the pass keeps its time.
        await wait_until(lambda: world.remote_count("mem", "alice") == 2)


async def test_a_stream_of_changes_does_not_postpone_the_pass_forever(world: World) -> None:
    world.account("mem")
    await world.agent("alice", "mem")
    hourly = world.scheduler(background=True, debounce=0.3, sync_interval=timedelta(hours=1))
    async with hourly as s:
        await wait_until(lambda: s.agent_status("alice")["last_result"] == "ok")
        fetches = world.servers["mem"].requests_by_operation["fetch"]
        # A change every 50 ms, closer together than the debounce, for up to 5 s.
        for day in range(1, 101):
            await world.appointment("alice", day % 50 + 1, f"stream-{day}")
            await anyio.sleep(0.05)
            if world.servers["mem"].requests_by_operation["fetch"] > fetches:
                break
        assert world.servers["mem"].requests_by_operation["fetch"] > fetches
        assert day < 100  # the pass started while changes were still coming


class CountingOpens(MemoryProvider):
    """The memory provider counting how often a provider object of its class is opened."""

    name: ClassVar[str] = "counting-opens"
    opens: ClassVar[int] = 0

    async def open(self) -> None:
        type(self).opens += 1
        await super().open()


async def test_each_account_is_opened_once_not_once_per_pass(world: World) -> None:
    world.registry.add(CountingOpens)
    CountingOpens.opens = 0
    world.account("mem", provider="counting-opens")
    for name in ("alice", "bob"):
        await world.agent(name, "mem")
    async with world.scheduler() as s:
        await s.run_once()
        await s.run_once()
        await s.sync_now("alice")
    assert CountingOpens.opens == 1


async def test_a_pass_of_run_once_stops_on_a_calendar_that_came_back_empty(world: World) -> None:
    server = world.account("mem")
    await world.agent("alice", "mem")
    await world.appointment("alice", 1)
    cal = CalendarRef("alice", "alice@example.com")
    async with world.scheduler() as s:
        assert (await s.run_once())["alice"].result == "ok"
        for event in server.events(cal):
            server.delete(cal, event.remote_id)
        server.expire_cursors(cal)
        result = (await s.run_once())["alice"]
    # Only an explicit override (sync_now with allow_empty) deletes everything in the hub.
    assert result.result == "stopped"
    assert len(await world.store.list_appointments(agent_id="alice")) == 1
