"""Benchmark: the admin HTTP API under load, over loopback with an aiohttp client.

A SqliteStore in a temporary folder holds A agents (default 10) with N appointments each
(default 10,000). The real admin application (``build_app``, every middleware) serves on
127.0.0.1; C clients (default 50) send a bounded mix of requests (stops after R requests,
default 4,000, or T seconds, default 60, whichever comes first):

* 40 % ``GET /appointments?agent=…&from=…&to=…&limit=100``: a week of one agent, one page;
* 15 % ``GET /appointments?agent=…&limit=500&cursor=…``: walking one agent's list page by page;
* 25 % ``GET /agents/{id}/calendar.ics`` with the ``If-None-Match`` the client last got
  (a calendar app's poll: 304 while nothing changed);
* 20 % ``PATCH /appointments/{id}``: move an entry by 15 minutes (a write, one transaction);

while one more client polls ``GET /health`` every 20 ms and records its slowest answer. Then a
second phase asks ``GET /appointments?agent=…`` without a limit (the whole 10,000-entry list,
streamed) 20 times at once, with the health poll running.

    .venv/bin/python bench/api_bench.py [--agents 10] [--events 10000] [--clients 50]
                                        [--same-process]

The clients run in a process of their own (standard load-test practice: a load generator
sharing the server's interpreter takes half its CPU), so ``cpu_s``, ``peak_rss_mb`` and
``rss_mb`` are the server's alone and ``client_cpu_s`` is the load generator's; with
``--same-process`` the clients run on the server's event loop as the first version of this
bench did, and ``cpu_s`` includes their share.

Prints requests/s, p50/p99 latency, the worst /health stall, CPU and RSS, then one JSON line
per phase. Targets (issue 11): >= 1,000 requests/s, p99 <= 100 ms, /health never stalled more
than 50 ms, RSS <= 250 MB (the server's).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
from _report import Meter, PhaseResult, cpu_seconds, peak_rss_mb, report  # noqa: E402
from aiohttp import web  # noqa: E402

from hub.admin.app import build_app  # noqa: E402
from hub.config import AdminSettings, Config, HubSettings  # noqa: E402
from hub.metrics import Metrics  # noqa: E402
from hub.model import Agent, Appointment, Kind  # noqa: E402
from hub.store.sqlite import SqliteStore  # noqa: E402

HEALTH_EVERY = 0.02


def rss_mb() -> float:
    """The current resident set size in MiB (peak_rss_mb is the peak of the whole run)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


async def populate(store: SqliteStore, agents: int, events: int) -> list[Agent]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    made = []
    for a in range(agents):
        async with store.transaction("api") as tx:
            agent = await tx.put_agent(
                Agent(id=f"agent{a:02d}", name=f"Agent {a}", feed_token=f"feed-{a:02d}")
            )
            made.append(agent)
            appts = []
            for i in range(events):
                start = today + timedelta(days=i % 200 - 30, hours=8 + (i // 200) % 9)
                appts.append(
                    Appointment(
                        id=f"{agent.id}-{i}", agent_id=agent.id, kind=Kind.MANUAL, start=start,
                        end=start + timedelta(minutes=45), subject=f"Visit {i}",
                    )
                )  # fmt: skip
            await tx.put_appointments(appts)
    return made


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    kind_latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    health_worst: float = 0.0
    client_cpu_s: float = 0.0


async def health_poll(
    session: aiohttp.ClientSession, base: str, tally: Tally, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        began = time.perf_counter()
        async with session.get(base + "/health") as r:
            await r.read()
        tally.health_worst = max(tally.health_worst, time.perf_counter() - began)
        await asyncio.sleep(HEALTH_EVERY)


async def client(
    n: int, session: aiohttp.ClientSession, base: str, agents: list[str], events: int,
    budget: list[int], deadline: float, tally: Tally,
) -> None:  # fmt: skip
    rng = random.Random(n)
    etags: dict[str, str] = {}
    cursors: dict[str, str] = {}
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while budget[0] > 0 and time.perf_counter() < deadline:
        budget[0] -= 1
        agent = rng.choice(agents)
        roll = rng.random()
        headers: dict[str, str] = {}
        method, body = "GET", None
        if roll < 0.40:
            kind = "week"
            day = today + timedelta(days=rng.randrange(-30, 170))
            path = (
                f"/appointments?agent={agent}&from={day.date().isoformat()}"
                f"&to={(day + timedelta(days=7)).date().isoformat()}&limit=100"
            )
        elif roll < 0.55:
            kind = "page"
            path = f"/appointments?agent={agent}&limit=500"
            if agent in cursors:
                path += f"&cursor={cursors[agent]}"
        elif roll < 0.80:
            kind = "feed"
            path = f"/agents/{agent}/calendar.ics"
            if agent in etags:
                headers["If-None-Match"] = etags[agent]
        else:
            kind, method = "move", "PATCH"
            path = f"/appointments/{agent}-{rng.randrange(events)}"
            later = today + timedelta(days=rng.randrange(1, 100), hours=9)
            body = {"start": later.isoformat(), "end": (later + timedelta(hours=1)).isoformat()}
        began = time.perf_counter()
        async with session.request(method, base + path, json=body, headers=headers) as r:
            await r.read()
            status = r.status
            if kind == "feed" and "ETag" in r.headers:
                etags[agent] = r.headers["ETag"]
            if kind == "page":
                if "Next-Cursor" in r.headers:
                    cursors[agent] = r.headers["Next-Cursor"]
                else:
                    cursors.pop(agent, None)
        tally.latencies.append(time.perf_counter() - began)
        tally.kind_latencies.setdefault(kind, []).append(tally.latencies[-1])
        tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
        if status >= 400:
            tally.errors[f"{kind} {status}"] = tally.errors.get(f"{kind} {status}", 0) + 1


async def whole_list(session: aiohttp.ClientSession, base: str, agent: str, tally: Tally) -> None:
    began = time.perf_counter()
    async with session.get(f"{base}/appointments?agent={agent}") as r:
        size = len(await r.read())
        assert r.status == 200, r.status
    tally.latencies.append(time.perf_counter() - began)
    tally.by_kind[f"whole_list_{size // 1024} KiB"] = 1


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def phase(name: str, agents: int, events: int, meter: Meter, tally: Tally) -> PhaseResult:
    done = len(tally.latencies)
    extra = {
        "requests_per_s": round(done / meter.wall_s, 1) if meter.wall_s else None,
        "p50_ms": round(quantile(tally.latencies, 0.5) * 1000, 1),
        "p99_ms": round(quantile(tally.latencies, 0.99) * 1000, 1),
        "health_worst_ms": round(tally.health_worst * 1000, 1),
        "rss_mb": round(rss_mb(), 1),
        "mix": tally.by_kind,
        "p50_p99_ms_by_kind": {
            kind: [round(quantile(values, q) * 1000, 1) for q in (0.5, 0.99)]
            for kind, values in sorted(tally.kind_latencies.items())
        },
        "errors": tally.errors,
        "client_cpu_s": round(tally.client_cpu_s, 2),
    }
    return PhaseResult(
        "api", name, agents, events, meter.wall_s, meter.cpu_s, peak_rss_mb(), done, 0, extra
    )


async def load(name: str, base: str, agents: list[str], args: argparse.Namespace) -> Tally:
    """One phase's requests (and the /health poll beside them) against ``base``."""
    t, stop = Tally(), asyncio.Event()
    cpu = cpu_seconds()
    connector = aiohttp.TCPConnector(limit=args.clients + 5)
    async with aiohttp.ClientSession(connector=connector) as session:
        poll = asyncio.create_task(health_poll(session, base, t, stop))
        if name == "mixed":
            budget = [args.requests]
            deadline = time.perf_counter() + args.seconds
            clients = [
                client(n, session, base, agents, args.events, budget, deadline, t)
                for n in range(args.clients)
            ]
        else:
            clients = [whole_list(session, base, agents[n % len(agents)], t) for n in range(20)]
        await asyncio.gather(*clients)
        stop.set()
        await poll
    t.client_cpu_s = cpu_seconds() - cpu
    return t


def load_in_process(name: str, base: str, agents: list[str], args: argparse.Namespace) -> Tally:
    """:func:`load` in the clients' own process, on its own event loop."""
    return asyncio.run(load(name, base, agents, args))


async def main(args: argparse.Namespace) -> list[PhaseResult]:
    # Started before the store fills, so the clients' process is small and ready.
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        if not args.same_process:
            pool.submit(int).result()
        with tempfile.TemporaryDirectory() as tmp:
            return await serve(args, Path(tmp), pool)
    finally:
        pool.shutdown()


async def serve(
    args: argparse.Namespace, tmp: Path, pool: ProcessPoolExecutor
) -> list[PhaseResult]:
    store = SqliteStore(tmp / "api.db")
    await store.open()
    agents = [agent.id for agent in await populate(store, args.agents, args.events)]
    config = Config(hub=HubSettings(), admin=AdminSettings(token=None), accounts={})
    runner = web.AppRunner(build_app(store, config, Metrics(), None), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    results = []
    loop = asyncio.get_running_loop()
    try:
        for name in ("mixed", "whole_lists"):
            with Meter() as meter:
                if args.same_process:
                    t = await load(name, base, agents, args)
                else:
                    t = await loop.run_in_executor(pool, load_in_process, name, base, agents, args)
            results.append(phase(name, args.agents, args.events, meter, t))
    finally:
        await runner.cleanup()
        await store.close()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--same-process", action="store_true", help="run the clients on the server's loop"
    )
    args = parser.parse_args()
    phases = asyncio.run(main(args))
    report(
        f"api_bench: {args.agents} agents x {args.events} appointments, {args.clients} clients",
        phases,
        sys.stdout,
        [
            f"{p.phase}: {p.extra['requests_per_s']} requests/s, p50 {p.extra['p50_ms']} ms, "
            f"p99 {p.extra['p99_ms']} ms, worst /health {p.extra['health_worst_ms']} ms, "
            f"RSS {p.extra['rss_mb']} MB, server CPU {p.cpu_s:.1f} s"
            f" (clients {p.extra['client_cpu_s']} s), errors {p.extra['errors']}"
            for p in phases
        ]
        + ["targets: >= 1,000 requests/s, p99 <= 100 ms, /health <= 50 ms, RSS <= 250 MB"],
    )
