"""Benchmark: the sync engine, scheduler and SqliteStore over the memory provider.

N agents (default 1,000) with M hub appointments each (default 100) on one memory account whose
server adds a simulated latency to every request (default 20 ms). Everything runs through the
real :class:`hub.scheduler.Scheduler` (its concurrency limits included) and a SqliteStore in a
temporary folder. Phases:

* ``initial``: first pass of every agent: every appointment pushed, in batches of 20;
* ``echo``: the next pass reads the hub's own writes back from the delta once;
* ``no_change``: nothing changed anywhere: one delta request per agent, no writes;
* ``change_1pct``: 1 % of the events changed, half moved in the hub (pushed), half dragged
  by the agents at the server (pulled back);
* ``change_5pct``: the same with five times as many events (1 and 5 per agent for 20 events).
  The two change phases give, by a linear fit, the fixed CPU of an agent pass and the CPU
  per changed event (targets: at most 2 ms and 0.5 ms).

    /tmp/venv/bin/python bench/sync_bench.py [--agents 1000] [--events 100] [--latency-ms 20]

The memory server runs in this process, so ``cpu_s`` includes its (small) share. Prints
human-readable figures and the targets (no-change pass: 1 request per agent; initial sync of
1,000 x 100 under 60 s wall; peak RSS under 300 MB; the fitted change pass costs), then one
JSON line per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

from _report import (  # noqa: E402
    CHANGE_PHASES,
    Meter,
    PhaseResult,
    change_counts,
    pass_cost,
    peak_rss_mb,
    report,
)

from hub.config import Config, HubSettings  # noqa: E402
from hub.metrics import Metrics  # noqa: E402
from hub.model import Agent, Appointment, Kind  # noqa: E402
from hub.scheduler import Scheduler  # noqa: E402
from hub.spec import AccountConfig, CalendarRef, ProviderRegistry  # noqa: E402
from hub.store.sqlite import SqliteStore  # noqa: E402
from hub.testing.memory import MemoryProvider, MemoryServer  # noqa: E402

BENCH = "sync_memory"
ACCOUNT = "mem"
INSERT_CHUNK = 5_000  # appointments per setup transaction


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big a run is: agents, and hub appointments per agent."""

    agents: int
    events: int

    @property
    def total(self) -> int:
        return self.agents * self.events


def agent_id(n: int) -> str:
    return f"agent{n:04d}"


async def populate(store: SqliteStore, sizes: Sizes) -> list[Agent]:
    """N agents with M manual appointments each, spread over the coming 50 days."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    agents = [
        Agent(id=agent_id(a), name=f"Agent {a}", email=f"{agent_id(a)}@example.com",
              account=ACCOUNT)
        for a in range(sizes.agents)
    ]  # fmt: skip
    async with store.transaction("api") as tx:
        agents = [await tx.put_agent(agent) for agent in agents]
    appts = [
        Appointment(
            id=f"{agent.id}-{i}", agent_id=agent.id, kind=Kind.MANUAL,
            start=today + timedelta(days=1 + i % 50, hours=8 + (i // 50) % 9),
            end=today + timedelta(days=1 + i % 50, hours=8 + (i // 50) % 9, minutes=45),
            subject=f"Visit {i}", note="Replace the toner",
        )
        for agent in agents
        for i in range(sizes.events)
    ]  # fmt: skip
    for start in range(0, len(appts), INSERT_CHUNK):
        async with store.transaction("api") as tx:
            await tx.put_appointments(appts[start : start + INSERT_CHUNK])
    return agents


async def change_some(
    store: SqliteStore, server: MemoryServer, agents: list[Agent], sizes: Sizes, per_agent: int
) -> tuple[int, int]:
    """Move ``per_agent`` events of every agent, alternating hub side and agent side;
    returns (hub, remote)."""
    hub_moves, remote_moves = [], 0
    shift = timedelta(hours=1)
    for a, agent in enumerate(agents):
        cal = CalendarRef(agent.id, agent.email)
        by_hub_id = {e.hub_id: e for e in server.events(cal)}
        for i in range(per_agent):
            appt_id = f"{agent.id}-{(i * 37) % sizes.events}"
            if (a + i) % 2 == 0:
                appt = await store.get_appointment(appt_id)
                assert appt is not None
                hub_moves.append(appt.evolve(start=appt.start + shift, end=appt.end + shift))
            else:
                event = by_hub_id[appt_id]
                server.move(
                    cal,
                    event.remote_id,
                    event.data.start + shift,  # type: ignore[operator]
                    event.data.end + shift,
                )  # type: ignore[operator]
                remote_moves += 1
    async with store.transaction("api") as tx:
        await tx.put_appointments(hub_moves)
    return len(hub_moves), remote_moves


async def measure(
    scheduler: Scheduler, server: MemoryServer, sizes: Sizes, phase: str, events: int,
    changed: int,
) -> PhaseResult:  # fmt: skip
    before = server.requests
    with Meter() as meter:
        results = await scheduler.run_once()
    bad = [(a, r.result, r.error) for a, r in results.items() if r.result != "ok"]
    if bad:
        raise SystemExit(f"{phase}: {len(bad)} passes did not end ok, e.g. {bad[:3]}")
    return PhaseResult(
        BENCH, phase, sizes.agents, events, meter.wall_s, meter.cpu_s, peak_rss_mb(),
        server.requests - before, changed,
    )  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    sizes = Sizes(args.agents, args.events)
    server = MemoryServer()
    registry = ProviderRegistry()
    registry.add(MemoryProvider)
    options = {"server": server, "latency_ms": args.latency_ms}
    config = Config(
        hub=HubSettings(max_concurrent_syncs=args.concurrency),
        accounts={ACCOUNT: AccountConfig(ACCOUNT, "memory", options)},
    )
    phases: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        store = SqliteStore(Path(tmp) / "hub.db")
        await store.open()
        try:
            with Meter() as setup:
                agents = await populate(store, sizes)
            async with Scheduler(store, config, registry, Metrics(), background=False) as sched:
                phases.append(await measure(sched, server, sizes, "initial", sizes.total,
                                            sizes.total))  # fmt: skip
                remote = sum(len(server.events(CalendarRef(a.id, a.email))) for a in agents)
                if remote != sizes.total:
                    raise SystemExit(f"initial: {remote} remote events, want {sizes.total}")
                phases.append(await measure(sched, server, sizes, "echo", sizes.total, 0))
                phases.append(await measure(sched, server, sizes, "no_change", sizes.total, 0))
                for phase, per_agent in zip(
                    CHANGE_PHASES, change_counts(sizes.events), strict=True
                ):
                    moves = await change_some(store, server, agents, sizes, per_agent)
                    changed = sum(moves)
                    phases.append(await measure(sched, server, sizes, phase, changed, changed))
        finally:
            await store.close()
    initial, no_change = phases[0], phases[2]
    notes = [
        f"setup (not measured): {setup.wall_s:.1f} s to store {sizes.total} appointments",
        f"target no-change pass = 1 request per agent: {no_change.requests / sizes.agents:g} "
        f"({'met' if no_change.requests == sizes.agents else 'MISSED'})",
        f"target initial sync under 60 s wall: {initial.wall_s:.1f} s "
        f"({'met' if initial.wall_s < 60 else 'MISSED'})",
        f"target peak RSS under 300 MB: {peak_rss_mb():.0f} MB "
        f"({'met' if peak_rss_mb() < 300 else 'MISSED'})",
        *pass_cost(phases),
    ]  # fmt: skip
    title = (
        f"sync engine over the memory provider: {sizes.agents} agents x {sizes.events} events, "
        f"{args.latency_ms:g} ms per request, {args.concurrency} passes at once"
    )
    report(title, phases, sys.stdout, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100, help="hub appointments per agent")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8, help="agent passes at once")
    args = parser.parse_args()
    if min(args.agents, args.events) < 1 or args.latency_ms < 0 or args.concurrency < 1:
        parser.error("--agents, --events and --concurrency must be >= 1, --latency-ms >= 0")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
