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
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

from _hub import (  # noqa: E402
    Counters,
    answer_counters,
    mailboxes,
    run_provider_phases,
    with_fake_in_child,
)
from _report import pass_cost, report  # noqa: E402

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
        await answer_counters(conn, lambda: _counts(fake))


def _counts(fake: Any) -> dict[str, Any]:
    by_op: dict[str, int] = {}
    for (_, op), n in fake.ops.items():
        by_op[op] = by_op.get(op, 0) + n
    return {
        "requests": fake.requests,
        "by_operation": by_op,
        "items": sum(len(mb.in_folder(mb.calendar)) for mb in fake.mailboxes.values()),
        "peak_in_flight": fake.peak_in_flight,
        "ntlm_handshakes": fake.ntlm_handshakes,
        "invitations": fake.invitations,
    }


async def run(args: argparse.Namespace, counters: Counters, options: dict[str, Any]) -> None:
    measured = await run_provider_phases(
        bench=BENCH, provider=EwsProvider, kind="exchange_ews", account=ACCOUNT,
        options={**options, "max_threads": args.threads}, agents=args.agents,
        events=args.events, concurrency=args.concurrency, counters=counters,
        remote_total="items",
    )  # fmt: skip
    phases, after = measured.phases, measured.last
    ops = {"initial": _diff(measured.initial["by_operation"], measured.before["by_operation"])}
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
    with_fake_in_child(
        serve_fake,
        (args.latency_ms, mailboxes(args.agents)),
        lambda counters, options: run(args, counters, options),
    )


if __name__ == "__main__":
    main()
