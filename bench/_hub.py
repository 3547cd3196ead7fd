"""The hub side shared by the provider benchmarks: agents with appointments in a SqliteStore,
moving some of them, one measured scheduler pass per phase (the two change phases that
:func:`_report.pass_cost` fits included), and the provider's fake in a process of its own
(so that the hub's CPU figures are the hub's alone)."""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _report import CHANGE_PHASES, Meter, PhaseResult, change_counts, peak_rss_mb

from hub.config import Config, HubSettings
from hub.metrics import Metrics
from hub.model import Agent, Appointment, Kind
from hub.scheduler import Scheduler
from hub.spec import AccountConfig, Provider, ProviderRegistry
from hub.store.sqlite import SqliteStore

Counters = Callable[[], dict[str, Any]]


async def populate(store: SqliteStore, agents: int, events: int, account: str) -> list[Agent]:
    """``agents`` agents on ``account`` with ``events`` manual appointments each, in one
    transaction with the store's batched writes."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    made = []
    async with store.transaction("api") as tx:
        for a in range(agents):
            agent = Agent(
                id=f"agent{a:03d}", name=f"Agent {a}", email=f"agent{a:03d}@contoso.example",
                account=account, colour="#3a87ad",
            )  # fmt: skip
            made.append(await tx.put_agent(agent))
            starts = [
                today + timedelta(days=1 + i % 50, hours=8 + (i // 50) % 9) for i in range(events)
            ]
            await tx.put_appointments(
                [
                    Appointment(
                        id=f"{agent.id}-{i}", agent_id=agent.id, kind=Kind.MANUAL,
                        start=start, end=start + timedelta(minutes=45), subject=f"Visit {i}",
                    )
                    for i, start in enumerate(starts)
                ]
            )  # fmt: skip
    return made


async def move_some(store: SqliteStore, agents: list[Agent], events: int, per_agent: int) -> int:
    """Move ``per_agent`` of the ``events`` appointments of every agent (as :func:`populate`
    made them) by an hour; how many moved."""
    # 37 is prime: distinct appointments for any per_agent <= events not a multiple of 37.
    ids = [f"{agent.id}-{i * 37 % events}" for agent in agents for i in range(per_agent)]
    shift = timedelta(hours=1)
    async with store.transaction("api") as tx:
        found = await tx.get_appointments(ids)  # one query, not one per appointment
        assert len(found) == len(ids)
        await tx.put_appointments(
            [appt.evolve(start=appt.start + shift, end=appt.end + shift) for appt in found.values()]
        )
    return len(found)


class PassMeter:
    """Measures one scheduler pass per phase; ``counters()`` reads the fake's request count."""

    def __init__(self, bench: str, agents: int, counters: Callable[[], dict[str, Any]]) -> None:
        self.bench, self.agents, self.counters = bench, agents, counters

    async def measure(
        self, scheduler: Scheduler, phase: str, events: int, changed: int
    ) -> tuple[PhaseResult, dict[str, Any]]:
        before = self.counters()
        with Meter() as meter:
            results = await scheduler.run_once()
        after = self.counters()
        bad = {a: (r.result, r.error) for a, r in results.items() if r.result != "ok"}
        if bad:
            raise SystemExit(f"{phase}: passes did not end ok: {list(bad.items())[:3]}")
        requests = after["requests"] - before["requests"]
        result = PhaseResult(
            self.bench, phase, self.agents, events, meter.wall_s, meter.cpu_s, peak_rss_mb(),
            requests, changed,
        )  # fmt: skip
        return result, after

    async def change_phases(
        self,
        scheduler: Scheduler,
        store: SqliteStore,
        agents: list[Agent],
        events: int,
        handled: int | None = None,
    ) -> tuple[list[PhaseResult], dict[str, Any]]:
        """``change_1pct`` and ``change_5pct``: each moves some appointments of every agent
        in the hub (:func:`change_counts`), then measures the pass that pushes them.
        ``handled`` is the phases' ``events`` figure (default: the moved ones)."""
        phases, after = [], {}
        for phase, per_agent in zip(CHANGE_PHASES, change_counts(events), strict=True):
            moved = await move_some(store, agents, events, per_agent)
            count = moved if handled is None else handled
            result, after = await self.measure(scheduler, phase, count, moved)
            phases.append(result)
        return phases, after


def mailboxes(agents: int) -> list[str]:
    """The mailbox addresses of :func:`populate`'s agents."""
    return [f"agent{a:03d}@contoso.example" for a in range(agents)]


# --------------------------------------------------------------------------- the fake's process


def with_fake_in_child(
    serve: Callable[..., None],
    args: tuple[Any, ...],
    run: Callable[[Counters, Any], Awaitable[None]],
) -> None:
    """Start ``serve(conn, *args)`` in a spawned process, wait for the account options it
    sends, and run ``run(counters, options)``; ``counters()`` asks the fake for its counts."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, *args), daemon=True)
    proc.start()

    def counters() -> dict[str, Any]:
        parent.send("counters")
        return parent.recv()  # type: ignore[no-any-return]

    try:
        options = parent.recv()
        asyncio.run(run(counters, options))
    finally:
        parent.send("stop")
        proc.join(timeout=10)


async def answer_counters(conn: Connection, counts: Counters) -> None:
    """The fake's side of :func:`with_fake_in_child`: ``counts()`` for each "counters" until
    "stop" (the pipe is read in a worker thread: the fake keeps serving meanwhile)."""
    loop = asyncio.get_running_loop()
    while (cmd := await loop.run_in_executor(None, conn.recv)) != "stop":
        assert cmd == "counters", cmd
        conn.send(counts())


# --------------------------------------------------------------------------- the phases


@dataclass(frozen=True, slots=True)
class ProviderRun:
    """What :func:`run_provider_phases` measured, and the fake's counts along the way."""

    phases: list[PhaseResult]
    before: dict[str, Any]  # before the initial pass
    initial: dict[str, Any]  # after it
    last: dict[str, Any]  # after the last phase


async def run_provider_phases(
    *,
    bench: str,
    provider: type[Provider],
    kind: str,
    account: str,
    options: dict[str, Any],
    agents: int,
    events: int,
    concurrency: int,
    counters: Counters,
    remote_total: str,
) -> ProviderRun:
    """``agents`` x ``events`` hub appointments on ``account`` of ``provider`` (its type
    name ``kind``) in a temporary SqliteStore, then the phases every provider bench measures:
    ``initial`` (checked by the fake's count ``remote_total``), ``echo``, ``no_change`` and
    the two change phases."""
    with tempfile.TemporaryDirectory(prefix=f"{bench}-bench-db-") as tmp:
        store = SqliteStore(Path(tmp) / "hub.db")
        await store.open()
        try:
            made = await populate(store, agents, events, account)
            total = agents * events
            registry = ProviderRegistry()
            registry.add(provider)
            config = Config(
                hub=HubSettings(max_concurrent_syncs=concurrency),
                accounts={account: AccountConfig(account, kind, options)},
            )
            meter = PassMeter(bench, agents, counters)
            async with Scheduler(store, config, registry, Metrics(), background=False) as sched:
                before = counters()
                phase, initial = await meter.measure(sched, "initial", total, total)
                if initial[remote_total] != total:
                    raise SystemExit(
                        f"initial: {initial[remote_total]} remote events, want {total}"
                    )
                phases = [phase]
                phases.append((await meter.measure(sched, "echo", total, 0))[0])
                phases.append((await meter.measure(sched, "no_change", 0, 0))[0])
                changed, last = await meter.change_phases(sched, store, made, events)
                phases += changed
        finally:
            await store.close()
    return ProviderRun(phases, before, initial, last)
