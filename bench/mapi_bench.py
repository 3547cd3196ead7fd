"""Benchmark: provider mapi through the real scheduler, the relay and real Outlook agents.

N agents (default 4) with M hub appointments each (default 200) on one mapi account; each
agent has its own ``calhub outlook-agent`` process serving the fake Outlook object model
(tests/fakes/outlook.py, one calendar file per agent), dialled into the hub's admin endpoint
in this process. Phases:

* ``initial``: first pass of every agent: pushes every appointment, 10 per relayed request;
* ``no_change``: nothing changed: one relayed fetch (a full window listing) per agent;
* ``change_1pct``: 1 % of the appointments moved in the hub: one push per agent;
* ``change_5pct``: five times as many moved (see ``_report.change_counts``); the two change
  phases give the fixed CPU per agent pass and the CPU per changed event (a linear fit).

    .venv/bin/python bench/mapi_bench.py [--agents 4] [--events 200]

Requests are the relayed calls the hub sent (the fake's file-backed object model, not the
relay, dominates the wall time). Prints figures, then one JSON line per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
from _hub import PassMeter, populate  # noqa: E402
from _report import pass_cost, report  # noqa: E402
from aiohttp import web  # noqa: E402

from hub.admin import build_app  # noqa: E402
from hub.config import AdminSettings, Config, HubSettings  # noqa: E402
from hub.metrics import Metrics  # noqa: E402
from hub.relay import RelayHub  # noqa: E402
from hub.scheduler import Scheduler  # noqa: E402
from hub.spec import AccountConfig, HubServices, ProviderRegistry  # noqa: E402
from hub.store.sqlite import SqliteStore  # noqa: E402
from plugins.mapi import MapiProvider  # noqa: E402
from tests.fakes.outlook import STATE_ENV, StateFile  # noqa: E402

BENCH = "mapi"
ACCOUNT = "outlook"
TOKEN = "bench-admin-token"


async def _token(url: str, agent: str) -> str:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/agents/{agent}/outlook-token", headers=headers) as reply,
    ):
        return (await reply.json())["token"]


async def _connected(relays: RelayHub, agents: list[str]) -> None:
    for _ in range(600):
        if all(relays.connected(a) for a in agents):
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the Outlook agents did not connect")


async def run(agents: int, events: int, workdir: Path) -> None:
    store = SqliteStore(workdir / "hub.db")
    await store.open()
    made = await populate(store, agents, events, ACCOUNT)
    config = Config(
        hub=HubSettings(database=str(workdir / "hub.db"), days_future=60),
        admin=AdminSettings(token=TOKEN),
        accounts={ACCOUNT: AccountConfig(ACCOUNT, "mapi", {"call_timeout": 120.0})},
    )
    relays = RelayHub()
    registry = ProviderRegistry()
    registry.add(MapiProvider)
    runner = web.AppRunner(build_app(store, config, Metrics(), None, relays=relays))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    processes = []
    try:
        for agent in made:
            state = workdir / f"{agent.id}.json"
            StateFile(state).reset()
            env = {**os.environ, STATE_ENV: str(state)}
            env["CALHUB_OUTLOOK_TOKEN"] = await _token(url, agent.id)
            command = [
                sys.executable, "-m", "hub", "outlook-agent", "--hub", url, "--agent", agent.id,
                "--object-model", "tests.fakes.outlook:Application",
            ]  # fmt: skip
            processes.append(
                await asyncio.create_subprocess_exec(
                    *command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL
                )
            )
        await _connected(relays, [a.id for a in made])
        meter = PassMeter(BENCH, agents, lambda: {"requests": relays.calls})
        phases = []
        async with Scheduler(
            store, config, registry, Metrics(), background=False,
            services=HubServices(relays=relays),
        ) as scheduler:  # fmt: skip
            total = agents * events
            result, _ = await meter.measure(scheduler, "initial", total, total)
            phases.append(result)
            result, _ = await meter.measure(scheduler, "no_change", total, 0)
            phases.append(result)
            changed, _ = await meter.change_phases(scheduler, store, made, events, total)
            phases += changed
        report(
            f"mapi: {agents} agents x {events} events through the relay and real Outlook agents",
            phases,
            sys.stdout,
            notes=[
                "requests: relayed calls (fetch, push of up to 10, get, find, delete)",
                *pass_cost(phases),
            ],
        )
    finally:
        for process in processes:
            process.terminate()
            await process.wait()
        await runner.cleanup()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mapi-bench-") as workdir:
        asyncio.run(run(args.agents, args.events, Path(workdir)))


if __name__ == "__main__":
    main()
