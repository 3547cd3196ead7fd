"""Benchmark: exchange_ews through the real scheduler, engine, SqliteStore and exchangelib,
against the EWS fake.

N agents (default 100) with M hub appointments each (default 200) on one exchange_ews account
(NTLM, impersonation); the strict EWS fake runs in a separate process (so calhub's CPU time is
calhub's alone, exchangelib's XML work included) and adds a latency to every request (default
20 ms). Phases:

* ``initial``: first pass of every agent: a full listing, then every appointment pushed in
  CreateItem batches (each after a FindItem on the hub ids, the idempotent create);
* ``echo``: the next pass, where SyncFolderItems reports calhub's own creates back (with the
  ChangeKeys the creates returned, so nothing is read again);
* ``no_change``: nothing changed anywhere: one SyncFolderItems per agent;
* ``change_1pct``: 1 % of the appointments moved in the hub: one UpdateItem batch per agent;
* ``change_5pct``: five times as many moved (see ``_report.change_counts``); the two change
  phases give the fixed CPU per agent pass and the CPU per changed event (a linear fit).

    .venv/bin/python bench/ews_bench.py [--agents 100] [--events 200] [--latency-ms 20]
                                        [--threads 8] [--concurrency 8]

Requests are SOAP requests counted by the fake (NTLM handshake legs excluded; they happen once
per connection). Prints human-readable figures, then one JSON line per phase (format in
DESIGN.md), with the thread-pool size and requests per pushed event. Targets: 1 request per
agent in ``echo`` and ``no_change``; about 2/50 requests per pushed event in ``initial``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

from _hub import PassMeter, populate  # noqa: E402
from _report import PhaseResult, pass_cost, report  # noqa: E402

from hub.config import Config, HubSettings  # noqa: E402
from hub.metrics import Metrics  # noqa: E402
from hub.scheduler import Scheduler  # noqa: E402
from hub.spec import AccountConfig, ProviderRegistry  # noqa: E402
from plugins.exchange_ews import EwsProvider  # noqa: E402

BENCH = "exchange_ews"
ACCOUNT = "onprem"


def serve_fake(conn: Connection, latency_ms: float, mailboxes: list[str]) -> None:
    """Child process: the EWS fake, answering counter queries over ``conn`` until "stop"."""
    asyncio.run(_serve(conn, latency_ms, mailboxes))


async def _serve(conn: Connection, latency_ms: float, mailboxes: list[str]) -> None:
    from tests.fakes.ews import EwsFake
    from tests.fakes.tls import TestCA

    ca = TestCA.create(Path(tempfile.mkdtemp(prefix="ews-bench-")))
    async with EwsFake(ca, latency_ms=latency_ms) as fake:
        for address in mailboxes:
            fake.add_mailbox(address)
        conn.send(fake.account_options())
        loop = asyncio.get_running_loop()
        while (cmd := await loop.run_in_executor(None, conn.recv)) != "stop":
            assert cmd == "counters", cmd
            by_op: dict[str, int] = {}
            for (_, op), n in fake.ops.items():
                by_op[op] = by_op.get(op, 0) + n
            conn.send(
                {
                    "requests": fake.requests,
                    "by_operation": by_op,
                    "items": sum(len(mb.in_folder(mb.calendar)) for mb in fake.mailboxes.values()),
                    "peak_in_flight": fake.peak_in_flight,
                    "ntlm_handshakes": fake.ntlm_handshakes,
                    "invitations": fake.invitations,
                }
            )


def _counters(conn: Connection) -> dict[str, Any]:
    conn.send("counters")
    return conn.recv()


async def run(args: argparse.Namespace, conn: Connection, options: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="ews-bench-db-") as tmp:
        from hub.store.sqlite import SqliteStore

        store = SqliteStore(Path(tmp) / "hub.db")
        await store.open()
        try:
            agents = await populate(store, args.agents, args.events, ACCOUNT)
            total = args.agents * args.events
            registry = ProviderRegistry()
            registry.add(EwsProvider)
            options = {**options, "max_threads": args.threads}
            config = Config(
                hub=HubSettings(max_concurrent_syncs=args.concurrency),
                accounts={ACCOUNT: AccountConfig(ACCOUNT, "exchange_ews", options)},
            )
            meter = PassMeter(BENCH, args.agents, lambda: _counters(conn))
            phases: list[PhaseResult] = []
            ops: dict[str, dict[str, int]] = {}
            async with Scheduler(store, config, registry, Metrics(), background=False) as sched:
                before = _counters(conn)["by_operation"]
                phase, after = await meter.measure(sched, "initial", total, total)
                phases.append(phase)
                ops["initial"] = _diff(after["by_operation"], before)
                if after["items"] != total:
                    raise SystemExit(f"initial: {after['items']} remote items, want {total}")
                phases.append((await meter.measure(sched, "echo", total, 0))[0])
                phases.append((await meter.measure(sched, "no_change", 0, 0))[0])
                changed, after = await meter.change_phases(sched, store, agents, args.events)
                phases += changed
        finally:
            await store.close()
    for p in phases:
        p.extra.update(max_threads=args.threads, concurrent_passes=args.concurrency)
    title = (
        f"exchange_ews: {args.agents} agents x {args.events} events, {args.latency_ms:g} ms per "
        f"request, {args.concurrency} passes at once, {args.threads} EWS worker threads "
        f"(CapacityLimiter per account)"
    )
    notes = [
        f"initial by operation: {ops['initial']}",
        f"peak {after['peak_in_flight']} EWS requests in flight at the server; "
        f"{after['ntlm_handshakes']} NTLM handshakes; {after['invitations']} invitations",
        "requests_per_changed_event of 'initial' is requests per pushed event",
        *pass_cost(phases),
    ]
    report(title, phases, sys.stdout, notes)


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in sorted(after.items()) if n - before.get(k, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--events", type=int, default=200, help="hub appointments per agent")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=8, help="EWS worker threads (max_threads)")
    parser.add_argument("--concurrency", type=int, default=8, help="agent passes at once")
    args = parser.parse_args()
    mailboxes = [f"agent{a:03d}@contoso.example" for a in range(args.agents)]
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_fake, args=(child, args.latency_ms, mailboxes), daemon=True)
    proc.start()
    try:
        options = parent.recv()
        asyncio.run(run(args, parent, options))
    finally:
        parent.send("stop")
        proc.join(timeout=10)


if __name__ == "__main__":
    main()
