"""Benchmark: google through the real scheduler, engine and SqliteStore against the Google fake.

N agents (default 100) with M hub appointments each (default 200) on one google account with
a service account impersonating every agent; the strict Google fake runs in a separate process
(so calhub's CPU time is calhub's alone) and adds a latency to every request (default 20 ms).
Phases:

* ``initial``: first pass of every agent: one full listing, then batches of 50 creates;
* ``echo``: the next pass reads calhub's own creates back once through the sync token;
* ``no_change``: nothing changed anywhere: one sync-token listing per agent;
* ``change_1pct``: 1 % of the appointments moved in the hub: one batch of patches per agent;
* ``change_5pct``: five times as many moved (see ``_report.change_counts``); the two change
  phases give the fixed CPU per agent pass and the CPU per changed event (a linear fit).

    .venv/bin/python bench/google_bench.py [--agents 100] [--events 200] [--latency-ms 20]

Requests are counted by the fake (token requests excluded; a batch is one request). Prints
human-readable figures, then one JSON line per phase (format in DESIGN.md). Targets: at most
0.03 requests per pushed event in ``initial``; 1 request per agent in ``no_change``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from plugins.google import GoogleProvider  # noqa: E402

BENCH = "google"
ACCOUNT = "gws"


def serve_fake(conn: Connection, latency_ms: float, users: list[str]) -> None:
    """Child process: the Google fake, answering counter queries over ``conn`` until "stop"."""
    asyncio.run(_serve(conn, latency_ms, users))


async def _serve(conn: Connection, latency_ms: float, users: list[str]) -> None:
    from tests.fakes.google import GoogleFake
    from tests.fakes.tls import TestCA

    tmp = Path(tempfile.mkdtemp(prefix="google-bench-"))
    ca = TestCA.create(tmp)
    async with GoogleFake(ca, latency_ms=latency_ms) as fake:
        for email in users:
            fake.add_user(email)
        key_file = tmp / "sa.json"
        key_file.write_text(json.dumps(fake.service_account_key()))
        conn.send(
            {
                "service_account_file": str(key_file),
                "base_url": fake.url,
                "ca_file": str(ca.ca_file),
            }
        )
        await answer_counters(
            conn,
            lambda: {
                "requests": fake.requests["api"] + fake.requests["batch"],
                "tokens": fake.requests["token"],
                "events": sum(len(fake.events(u)) for u in users),
                "calls": sum(fake.user(u).calls for u in users),
                "without_send_updates_none": fake.writes_without_send_updates_none,
            },
        )


async def run(args: argparse.Namespace, counters: Counters, options: dict[str, Any]) -> None:
    measured = await run_provider_phases(
        bench=BENCH, provider=GoogleProvider, kind="google", account=ACCOUNT, options=options,
        agents=args.agents, events=args.events, concurrency=args.concurrency,
        counters=counters, remote_total="events",
    )  # fmt: skip
    phases, after = measured.phases, measured.last
    title = (
        f"google: {args.agents} agents x {args.events} events, {args.latency_ms:g} ms per "
        f"request, {args.concurrency} passes at once"
    )
    notes = [
        f"{after['tokens']} token requests (one per impersonated agent); "
        f"{after['calls']} API calls in all (each call of a batch counts against the quota); "
        f"{after['without_send_updates_none']} writes without sendUpdates=none",
        "requests_per_changed_event of 'initial' is requests per pushed event (target <= 0.03)",
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
