"""Benchmark: e-mail copies through the outbox, against aiosmtpd on loopback.

A SqliteStore with A agents (default 10) and E bookings per agent (default 50), made through
:class:`hub.rules.Rules` one booking per transaction. Phases:

* ``book_plain``: the bookings without the copy hook (the baseline);
* ``book_copies``: the same with the copy hook installed and copies on for every agent (the
  agent and one coordinator): what the hook adds to each change's transaction;
* ``send``: the background sender's batches deliver every message to a local aiosmtpd
  (``security = "none"``, loopback); ``requests`` counts SMTP messages.

    .venv/bin/python bench/mail_bench.py [--agents 10] [--events 50]

Prints human-readable figures, then one JSON line per phase (DESIGN.md "Benchmarks").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

from _report import Meter, PhaseResult, peak_rss_mb, report  # noqa: E402

from hub.config import HubSettings  # noqa: E402
from hub.mail.copies import CopyPlanner  # noqa: E402
from hub.mail.sender import OutboxSender  # noqa: E402
from hub.mail.settings import CopyTargets, EmailSettings, Security  # noqa: E402
from hub.model import Agent  # noqa: E402
from hub.rules import Booking, Rules  # noqa: E402
from hub.store.sqlite import SqliteStore  # noqa: E402
from tests.fakes.smtp import SmtpServer  # noqa: E402

START = datetime(2026, 5, 5, 8, 0, tzinfo=UTC)


async def book_all(rules: Rules, agents: int, events: int, prefix: str) -> None:
    for i in range(events):
        for a in range(agents):
            start = START + timedelta(hours=i)
            await rules.book(
                f"{prefix}{i}",
                Booking(
                    subject=f"Visit {i}",
                    start=start,
                    end=start + timedelta(hours=1),
                    agents=(f"agent{a}",),
                    note="Bring the spare parts",
                ),
            )


async def run(agents: int, events: int) -> list[PhaseResult]:
    server = SmtpServer(None, "none", auth=False)  # type: ignore[arg-type]
    await server.start()
    total = agents * events
    phases: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="calhub-mail-bench-") as tmp:
        store = SqliteStore(Path(tmp) / "hub.db")
        await store.open()
        try:
            async with store.transaction("config") as tx:
                for a in range(agents):
                    await tx.put_agent(
                        Agent(id=f"agent{a}", name=f"Agent {a}", email=f"a{a}@x.test")
                    )
            email = EmailSettings(
                host="127.0.0.1",
                port=server.port,
                sender="calhub@example.com",
                security=Security.NONE,
                debounce=timedelta(0),
                copies={
                    f"agent{a}": CopyTargets(to_agent=True, copy_to=("coord@x.test",))
                    for a in range(agents)
                },
            )
            hub = HubSettings(timezone="Europe/Paris")
            rules = Rules(store, hub)
            with Meter() as m:
                await book_all(rules, agents, events, "plain")
            phases.append(
                PhaseResult(
                    "mail", "book_plain", agents, total, m.wall_s, m.cpu_s, peak_rss_mb(), 0, total
                )
            )
            store.add_commit_hook(CopyPlanner(email, hub))
            with Meter() as m:
                await book_all(rules, agents, events, "copied")
            phases.append(
                PhaseResult(
                    "mail", "book_copies", agents, total, m.wall_s, m.cpu_s, peak_rss_mb(), 0, total
                )
            )
            sender = OutboxSender(store, email, batch=100)
            with Meter() as m:
                sent = await sender.send_due()
            assert len(server.received) == sent == 2 * total, (sent, len(server.received))
            phases.append(
                PhaseResult(
                    "mail", "send", agents, sent, m.wall_s, m.cpu_s, peak_rss_mb(), sent, sent
                )
            )
        finally:
            await store.close()
            await server.stop()
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    phases = asyncio.run(run(args.agents, args.events))
    plain, copies = phases[0].wall_s / phases[0].events, phases[1].wall_s / phases[1].events
    notes = [f"copy hook adds {1000 * (copies - plain):.2f} ms per booking transaction"]
    report(f"mail bench: {args.agents} agents x {args.events} bookings", phases, sys.stdout, notes)


if __name__ == "__main__":
    main()
