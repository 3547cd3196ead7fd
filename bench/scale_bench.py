"""Benchmark: one worker vs two workers on one PostgreSQL database, and SQLite for comparison.

N agents (default 1,000; the issue's full size is ``--agents 20000``) with M hub appointments
each (default 10) on one memory account whose server adds a simulated latency to every request
(default 20 ms). Three set-ups, each on a fresh database:

* ``sqlite-1``: the embedded store, one process;
* ``pg-1``: the PostgreSQL store, one worker holding every agent;
* ``pg-2``: two workers, each with its own PostgreSQL store (its own connections and worker
  name) and its own :class:`hub.scheduler.Scheduler`, sharing the agents by lease.

The two workers run in this one process, on one event loop, talking to the same in-process
memory server (the calendar service both would reach): the figures show how the work splits
when it is latency-bound, not what a second CPU adds. Phases of each set-up:

* ``initial``: every appointment pushed; ``no_change``: one cycle with nothing to do;
* ``change``: one event moved in the hub for 10 % of the agents;
* ``takeover`` (pg-2 only): worker B is killed (its connections cut, its leases left to
  expire); the time until worker A holds every agent, then A's cycle over all of them.

    .venv/bin/python bench/scale_bench.py [--agents 1000] [--events 10] [--latency-ms 20]
        [--concurrency 8] [--lease-s 5]

A temporary PostgreSQL server is started from Debian's package (as ``tests/pgserver.py`` does
for the tests, fsync off), one schema per set-up. Prints figures, then one JSON line per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

from _report import Meter, PhaseResult, peak_rss_mb, report  # noqa: E402
from sync_bench import ACCOUNT, Sizes, populate  # noqa: E402

from hub.config import Config, HubSettings  # noqa: E402
from hub.metrics import Metrics  # noqa: E402
from hub.model import Agent  # noqa: E402
from hub.scheduler import Scheduler  # noqa: E402
from hub.spec import AccountConfig, ProviderRegistry  # noqa: E402
from hub.store.base import Store  # noqa: E402
from hub.store.postgres import PgStore  # noqa: E402
from hub.store.sqlite import SqliteStore  # noqa: E402
from hub.testing.memory import MemoryProvider, MemoryServer  # noqa: E402
from tests import pgserver  # noqa: E402

BENCH = "scale"


class Setup:
    """One set-up's workers: a store and a scheduler each, sharing one memory server."""

    def __init__(self, name: str, stores: Sequence[Store], args: argparse.Namespace) -> None:
        self.name = name
        self.stores = list(stores)
        self.server = MemoryServer()
        self.registry = ProviderRegistry()
        self.registry.add(MemoryProvider)
        options = {"server": self.server, "latency_ms": args.latency_ms}
        self.config = Config(
            hub=HubSettings(max_concurrent_syncs=args.concurrency),
            accounts={ACCOUNT: AccountConfig(ACCOUNT, "memory", options)},
        )
        self.lease_s = args.lease_s
        self.held: list[list[str]] = [[] for _ in self.stores]

    async def share(self) -> None:
        """Lease rounds until every agent has a worker and the shares are even."""
        if not isinstance(self.stores[0], PgStore):
            self.held = [[a.id for a in await self.stores[0].list_agents()]]
            return
        while True:
            rounds = [await s.lease_round(self.lease_s) for s in self.stores]  # type: ignore[attr-defined]
            sizes = [len(r.held) for r in rounds]
            if sum(sizes) == rounds[0].agents and max(sizes) - min(sizes) <= 1:
                self.held = [sorted(r.held) for r in rounds]
                return

    async def cycle(self, phase: str, sizes: Sizes, changed: int) -> PhaseResult:
        """One pass of every agent, each worker running its own agents, all at once."""
        before = self.server.requests

        async def worker(store: Store, agents: list[str]) -> None:
            sched = Scheduler(store, self.config, self.registry, Metrics(), background=False)
            async with sched:
                results = await sched.run_once(agents)
            bad = [(a, r.result, r.error) for a, r in results.items() if r.result != "ok"]
            if bad:
                raise SystemExit(f"{self.name} {phase}: {len(bad)} passes failed: {bad[:3]}")

        with Meter() as meter:
            await asyncio.gather(
                *(worker(s, h) for s, h in zip(self.stores, self.held, strict=True))
            )
        return PhaseResult(
            BENCH, f"{self.name}:{phase}", sizes.agents, sizes.total, meter.wall_s, meter.cpu_s,
            peak_rss_mb(), self.server.requests - before, changed,
            extra={"workers": len(self.stores)},
        )  # fmt: skip


async def change_tenth(store: Store, sizes: Sizes) -> int:
    """Move one event of every tenth agent in the hub; returns how many moved."""
    moves = []
    for n in range(0, sizes.agents, 10):
        appt = await store.get_appointment(f"agent{n:04d}-0")
        assert appt is not None
        moves.append(appt.evolve(start=appt.start + timedelta(hours=1),
                                 end=appt.end + timedelta(hours=1)))  # fmt: skip
    async with store.transaction("api") as tx:
        await tx.put_appointments(moves)
    return len(moves)


async def run_setup(setup: Setup, sizes: Sizes) -> list[PhaseResult]:
    for store in setup.stores:
        await store.open()
    try:
        agents: list[Agent] = await populate(setup.stores[0], sizes)  # type: ignore[arg-type]
        assert len(agents) == sizes.agents
        await setup.share()
        phases = [
            await setup.cycle("initial", sizes, sizes.total),
            await setup.cycle("echo", sizes, 0),
            await setup.cycle("no_change", sizes, 0),
        ]
        moved = await change_tenth(setup.stores[0], sizes)
        phases.append(await setup.cycle("change", sizes, moved))
        if len(setup.stores) > 1:
            phases += await takeover(setup, sizes)
        return phases
    finally:
        for store in setup.stores:
            await store.close()


async def takeover(setup: Setup, sizes: Sizes) -> list[PhaseResult]:
    """Kill worker B (no release), then measure until worker A holds every agent."""
    survivor, victim = setup.stores[0], setup.stores[1]
    assert isinstance(survivor, PgStore) and isinstance(victim, PgStore)
    # Both renew (the bench's cycles run no lease loop), then B dies holding live leases.
    await survivor.lease_round(setup.lease_s)
    await victim.lease_round(setup.lease_s)
    await victim.close()  # its leases stay in the table until they expire, as after kill -9
    with Meter() as meter:
        while True:
            if len((await survivor.lease_round(setup.lease_s)).held) == sizes.agents:
                break
            await asyncio.sleep(setup.lease_s / 3)  # the scheduler's round interval
    setup.stores = [survivor]
    setup.held = [sorted((await survivor.lease_round(setup.lease_s)).held)]
    claimed = PhaseResult(
        BENCH, f"{setup.name}:takeover", sizes.agents, 0, meter.wall_s, meter.cpu_s,
        peak_rss_mb(), 0, 0, extra={"lease_s": setup.lease_s},
    )  # fmt: skip
    after = await setup.cycle("after_takeover", sizes, 0)
    await victim.open()  # reopened so that run_setup's close finds it open
    setup.stores.append(victim)
    return [claimed, after]


async def run(args: argparse.Namespace) -> None:
    sizes = Sizes(args.agents, args.events)
    server = pgserver.start()
    password = pgserver.PASSWORD

    def pg(worker: str) -> PgStore:
        return PgStore(server.fresh_url(), password=password, worker=worker)

    phases: list[PhaseResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
            phases += await run_setup(
                Setup("sqlite-1", [SqliteStore(Path(tmp) / "hub.db")], args), sizes
            )
        phases += await run_setup(Setup("pg-1", [pg("w1")], args), sizes)
        url = server.fresh_url()
        two = [PgStore(url, password=password, worker=w) for w in ("w1", "w2")]
        phases += await run_setup(Setup("pg-2", two, args), sizes)
    finally:
        server.stop()
    by = {p.phase: p for p in phases}
    one, both = by["pg-1:no_change"].wall_s, by["pg-2:no_change"].wall_s
    notes = [
        f"no-change cycle: sqlite-1 {by['sqlite-1:no_change'].wall_s:.2f} s, pg-1 {one:.2f} s,"
        f" pg-2 {both:.2f} s ({both / one:.0%} of pg-1)",
        f"change cycle: pg-1 {by['pg-1:change'].wall_s:.2f} s,"
        f" pg-2 {by['pg-2:change'].wall_s:.2f} s",
        f"takeover of a killed worker's agents: {by['pg-2:takeover'].wall_s:.1f} s with a"
        f" {args.lease_s:g} s lease",
    ]
    title = (
        f"scale-out: {sizes.agents} agents x {sizes.events} events, {args.latency_ms:g} ms per"
        f" request, {args.concurrency} passes at once per worker"
    )
    report(title, phases, sys.stdout, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10, help="hub appointments per agent")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8, help="passes at once per worker")
    parser.add_argument("--lease-s", type=float, default=5.0, help="lease time of the workers")
    args = parser.parse_args()
    if min(args.agents, args.events, args.concurrency) < 1 or args.latency_ms < 0:
        parser.error("--agents, --events and --concurrency must be >= 1, --latency-ms >= 0")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
