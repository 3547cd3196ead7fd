"""Benchmark: graph365 through the real scheduler, engine and SqliteStore against the Graph fake.

N agents (default 100) with M hub appointments each (default 200) on one graph365 account; the
strict Graph fake runs in a separate process (so calhub's CPU time is calhub's alone) and adds
a latency to every request (default 20 ms). Phases:

* ``initial``: first pass of every agent: pushes every appointment in $batch requests;
* ``echo``: the next pass reads calhub's own creates back once (delta carries no hub ids);
* ``no_change``: nothing changed anywhere: one delta request per agent;
* ``change_1pct``: 1 % of the appointments moved in the hub: pushed in one $batch per agent;
* ``change_5pct``: five times as many moved (see ``_report.change_counts``); the two change
  phases give the fixed CPU per agent pass and the CPU per changed event (a linear fit).

    /tmp/venv/bin/python bench/graph_bench.py [--agents 100] [--events 200] [--latency-ms 20]

Requests are counted by the fake (token requests excluded). Prints human-readable figures,
then one JSON line per phase (format in DESIGN.md). Targets: at most 0.06 requests per pushed
event in ``initial``; 1 request per agent in ``no_change``.
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

from plugins.graph365 import GraphProvider  # noqa: E402

BENCH = "graph365"
ACCOUNT = "o365"


# --------------------------------------------------------------------------- the fake


def serve_fake(conn: Connection, latency_ms: float, mailboxes: list[str]) -> None:
    """Child process: the Graph fake, answering counter queries over ``conn`` until "stop"."""
    asyncio.run(_serve(conn, latency_ms, mailboxes))


async def _serve(conn: Connection, latency_ms: float, mailboxes: list[str]) -> None:
    from tests.fakes.graph import GraphFake
    from tests.fakes.tls import TestCA

    ca = TestCA.create(Path(tempfile.mkdtemp(prefix="graph-bench-")))
    async with GraphFake(ca, latency_ms=latency_ms) as fake:
        for email in mailboxes:
            fake.add_mailbox(email)
        conn.send(fake.account_options())
        await answer_counters(
            conn,
            lambda: {
                "requests": sum(n for k, n in fake.requests.items() if k != "token"),
                "by_kind": dict(fake.requests),
                "events": sum(len(mb.events) for mb in fake.mailboxes.values()),
                "peak_in_flight": max(fake.peak_in_flight.values(), default=0),
                "without_immutable_id": fake.without_immutable_id,
            },
        )


async def run(args: argparse.Namespace, counters: Counters, options: dict[str, Any]) -> None:
    measured = await run_provider_phases(
        bench=BENCH, provider=GraphProvider, kind="graph365", account=ACCOUNT, options=options,
        agents=args.agents, events=args.events, concurrency=args.concurrency,
        counters=counters, remote_total="events",
    )  # fmt: skip
    phases, after = measured.phases, measured.last
    title = (
        f"graph365: {args.agents} agents x {args.events} events, {args.latency_ms:g} ms per "
        f"request, {args.concurrency} passes at once"
    )
    notes = [
        f"peak {after['peak_in_flight']} requests in flight per mailbox; "
        f"{after['without_immutable_id']} requests without ImmutableId",
        "requests_per_changed_event of 'initial' is requests per pushed event (target <= 0.06)",
        *pass_cost(phases),
    ]
    report(title, phases, sys.stdout, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--events", type=int, default=200, help="hub appointments per agent")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8, help="agent passes at once")
    args = parser.parse_args()
    with_fake_in_child(
        serve_fake,
        (args.latency_ms, mailboxes(args.agents)),
        lambda counters, options: run(args, counters, options),
    )


if __name__ == "__main__":
    main()
