"""Benchmark: the central calendar page with many agents, in headless Chromium.

N agents (default 50) with three entries per working day over two weeks (default: 1,500
entries, each against its own request, so that every title is rendered from a template) in a
SqliteStore, served by a real ``calhub serve``; Debian's Chromium (``/usr/bin/chromium``)
driven by Playwright. Phases:

* ``entries_api``: ``GET /calendar/entries`` for all agents and both weeks: one request;
* ``render_timeline``, ``render_agents``, ``render_group``: from navigating to
  ``/calendar?view=...&days=14`` until every entry of the range is in the page (the login
  session is made beforehand): the agents as rows (the view made for many agents), one
  column per agent and day, and everyone in one calendar;
* ``live_update``: an entry moved through the API until the open page shows it moved (the
  server-sent event, then one ``/calendar/entries?ids=`` read).

    .venv/bin/python bench/calendar_bench.py [--agents 50] [--per-day 3]
    .venv/bin/python bench/calendar_bench.py --screenshots docs/   # the docs' pictures

``wall_s`` is what a user waits; ``cpu_s`` is this process only (the server and the browser
run in their own). Target: each render under 1 s for 50 agents x 2 weeks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

from _report import Meter, PhaseResult, peak_rss_mb, report  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from hub.model import (  # noqa: E402
    Agent,
    Appointment,
    CalendarState,
    Kind,
    PushState,
    Request,
)
from hub.store.sqlite import SqliteStore  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "bench-token"
MONDAY = datetime(2030, 1, 7, tzinfo=UTC)
COLOURS = ["#3a87ad", "#8e44ad", "#27ae60", "#c0392b", "#16a085", "#d35400", "#2c3e50"]


async def seed(db: Path, agents: int, per_day: int) -> int:
    """``agents`` agents, ``per_day`` one-hour entries each working day of two weeks."""
    made = 0
    async with SqliteStore(db) as store, store.transaction("bench") as tx:
        appts, requests = [], []
        for a in range(agents):
            agent_id = f"agent{a:03d}"
            await tx.put_agent(
                Agent(id=agent_id, name=f"Agent {a:03d}", colour=COLOURS[a % len(COLOURS)])
            )
            for day in range(14):
                if day % 7 >= 5:
                    continue
                for n in range(per_day):
                    start = MONDAY + timedelta(days=day, hours=8 + 3 * n)
                    rid = f"R{a}-{day}-{n}"
                    requests.append(Request(id=rid, subject=f"Printer {rid}"))
                    appts.append(
                        Appointment(
                            id=f"e{a}-{day}-{n}",
                            agent_id=agent_id,
                            kind=Kind.PLANNED if n == 0 else Kind.MANUAL,
                            start=start,
                            end=start + timedelta(hours=1),
                            subject="" if n == 0 else "Visit",
                            request_id=rid,
                        )
                    )
        for request in requests:
            await tx.put_request(request)
        await tx.put_appointments(appts)
        made = len(appts)
    return made


async def seed_demo(db: Path) -> None:
    """A small, readable week for the documentation's screenshots."""
    people = [
        ("alice", "Alice Smith", "#3a87ad"),
        ("bob", "Bob Jones", "#8e44ad"),
        ("carol", "Carol Diaz", "#27ae60"),
        ("dave", "Dave Wu", "#c0392b"),
    ]
    rows = [
        # agent, day, hour, hours, kind, subject, request, state
        ("alice", 0, 9, 1.5, Kind.PLANNED, "", "1041", PushState.SYNC),
        ("alice", 1, 13, 2, Kind.MANUAL, "Install docking stations", "1043", PushState.SYNC),
        ("alice", 3, 10, 1, Kind.EXTERNAL, "Data unavailable", None, PushState.EXTERNAL),
        ("bob", 0, 11, 1, Kind.MANUAL, "Printer on 3rd floor", "1039", PushState.PENDING),
        ("bob", 2, 9, 3, Kind.PLANNED, "", "1044", PushState.SYNC),
        ("bob", 4, 14, 1, Kind.ACTION, "", "1030", PushState.SYNC),
        ("carol", 1, 8.5, 1, Kind.MANUAL, "VPN for new starters", "1045", PushState.SYNC),
        ("carol", 3, 15, 1.5, Kind.PLANNED, "", "1046", PushState.SYNC),
        ("dave", 2, 12, 1, Kind.EXTERNAL, "Data unavailable", None, PushState.EXTERNAL),
        ("dave", 4, 9, 2, Kind.MANUAL, "Server room check", "1047", PushState.SYNC),
    ]
    subjects = {
        "1041": "Laptop replacement",
        "1044": "Network switch upgrade",
        "1030": "Password reset",
        "1046": "Meeting room screen",
    }
    async with SqliteStore(db) as store:
        async with store.transaction("bench") as tx:
            for agent_id, name, colour in people:
                await tx.put_agent(Agent(id=agent_id, name=name, colour=colour))
            for n, (agent_id, day, hour, hours, kind, subject, rid, state) in enumerate(rows):
                if rid is not None:
                    await tx.put_request(Request(id=rid, subject=subjects.get(rid, subject)))
                start = MONDAY + timedelta(days=day, hours=hour)
                await tx.put_appointment(
                    Appointment(
                        id=f"demo{n}",
                        agent_id=agent_id,
                        kind=kind,
                        start=start,
                        end=start + timedelta(hours=hours),
                        subject=subject,
                        request_id=rid,
                        push_state=state,
                        private=kind is Kind.EXTERNAL,
                    )
                )
        async with store.transaction("sync:o365") as tx:
            await tx.put_calendar_state(
                CalendarState(
                    agent_id="dave",
                    account="o365",
                    needs_attention=True,
                    last_error="auth refused: the consent was revoked",
                )
            )


@contextmanager
def serve(directory: Path):
    config = directory / "calhub.toml"
    config.write_text(
        f'[hub]\ndatabase = "{directory / "hub.db"}"\n'
        '[admin]\nlisten = "127.0.0.1:0"\ntoken_env = "BENCH_CALHUB_TOKEN"\n',
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--config", str(config)],
        cwd=directory,
        env={"BENCH_CALHUB_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        match = re.fullmatch(r"calhub listening on (http://127\.0\.0\.1:\d+)\n", line)
        if not match:
            raise SystemExit(f"calhub serve did not start: {line!r} {process.stderr.read()}")  # type: ignore[union-attr]
        yield match.group(1)
    finally:
        process.terminate()
        process.communicate(timeout=30)


def call(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read()), dict(response.headers)


def session_cookie(url: str) -> str:
    request = urllib.request.Request(
        f"{url}/calendar/login",
        data=json.dumps({"token": TOKEN}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Origin": url},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        cookie = response.headers["Set-Cookie"]
    return re.search(r"calhub_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]


def new_page(browser: Any, url: str, width: int = 1600, height: int = 1000) -> Page:
    # bypass_csp: Playwright's polling predicates are evaluated strings, which the page's
    # CSP (rightly) forbids; the page's own code runs the same either way.
    context = browser.new_context(
        viewport={"width": width, "height": height},
        timezone_id="UTC",
        locale="en-US",
        bypass_csp=True,
    )
    context.add_cookies(
        [{"name": "calhub_session", "value": session_cookie(url), "url": url, "httpOnly": True}]
    )
    return context.new_page()


BREAKDOWN = """() => {
  const at = (part) => {
    const hit = performance.getEntriesByType('resource').find((e) => e.name.includes(part));
    return hit ? Math.round(hit.responseEnd) : null;
  };
  return {
    html_ms: Math.round(performance.getEntriesByType('navigation')[0].responseEnd),
    script_ms: at('event-calendar.min.js'),
    session_ms: at('/calendar/session'),
    entries_ms: at('/calendar/entries'),
    drawn_ms: Math.round(performance.now()),
    entries_requests: performance.getEntriesByType('resource')
      .filter((e) => e.name.includes('/calendar/entries')).length,
  };
}"""


def rendered(page: Page, url: str, view: str, expected: int) -> tuple[float, dict[str, int]]:
    """Seconds from navigating to the view until ``expected`` entries are in the page, and
    when (ms after navigation) each step of the way was done."""
    started = time.perf_counter()
    page.goto(f"{url}/calendar?date=2030-01-07&view={view}&days=14")
    page.wait_for_function(
        f"document.querySelectorAll('.ec-event[data-id]').length >= {expected}",
        polling="raf",
        timeout=60_000,
    )
    seconds = time.perf_counter() - started
    return seconds, page.evaluate(BREAKDOWN)


def bench(agents: int, per_day: int) -> None:
    phases: list[PhaseResult] = []

    def phase(name: str, meter: Meter, events: int, requests: int, **extra: Any) -> None:
        wall, cpu = meter.wall_s, meter.cpu_s
        result = PhaseResult(
            "calendar", name, agents, events, wall, cpu, peak_rss_mb(), requests, 0
        )
        result.extra.update(extra)
        phases.append(result)

    with tempfile.TemporaryDirectory(prefix="calhub-calendar-bench-") as tmp:
        directory = Path(tmp)
        with ThreadPoolExecutor(1) as pool:
            total = pool.submit(lambda: asyncio.run(seed(directory / "hub.db", agents, per_day)))
            events = total.result()
        with serve(directory) as url:
            ids = ",".join(f"agent{a:03d}" for a in range(agents))
            query = f"from=2030-01-07T00:00:00Z&to=2030-01-21T00:00:00Z&agents={ids}"
            with Meter() as m:
                body, _ = call(f"{url}/calendar/entries?{query}")
            assert len(body["entries"]) == events, len(body["entries"])
            size = len(json.dumps(body))
            phase("entries_api", m, events, 1, response_kb=round(size / 1024, 1))
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for view in ("timeline", "agents", "group"):
                    page = new_page(browser, url)
                    rendered(page, url, view, events)  # warm: files cached, as on a 2nd visit
                    page.goto("about:blank")  # the view loads in a renderer of its own
                    with Meter() as m:
                        seconds, steps = rendered(page, url, view, events)
                    m.wall_s = seconds
                    # requests: the session, then the entries of the whole range
                    load = round(os.getloadavg()[0], 2)  # other work on the machine, for reading
                    phase(f"render_{view}", m, events, 2, load_avg_1m=load, **steps)
                    if view == "timeline":
                        with Meter() as m:
                            call(
                                f"{url}/appointments/e0-0-1",
                                "PATCH",
                                {"start": "2030-01-07T16:00:00Z"},
                            )
                            page.wait_for_function(
                                "document.querySelector('[data-id=\"e0-0-1\"]')"
                                "?.textContent.includes('4:00')",
                                polling="raf",
                            )
                        phase("live_update", m, 1, 2)
                    page.context.close()
                browser.close()
    report(
        f"calendar page: {agents} agents x 2 weeks, {events} entries, headless Chromium",
        phases,
        sys.stdout,
        notes=["target: every render under 1 s (wall, navigation to all entries drawn)"],
    )


def screenshots(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="calhub-calendar-shots-") as tmp:
        directory = Path(tmp)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: asyncio.run(seed_demo(directory / "hub.db"))).result()
        with serve(directory) as url, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = new_page(browser, url, 1500, 820)
            for view, name in (("agents", "calendar-week.png"), ("group", "calendar-group.png")):
                days = "5" if view == "agents" else "7"
                page.goto(f"{url}/calendar?date=2030-01-07&view={view}&days={days}")
                page.wait_for_function(
                    "document.querySelectorAll('.ec-event[data-id]').length >= 10"
                )
                page.screenshot(path=str(out / name), full_page=True)
                print(f"wrote {out / name}")
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--per-day", type=int, default=3, help="entries per agent and day")
    parser.add_argument("--screenshots", type=Path, help="write the docs' screenshots here")
    args = parser.parse_args()
    if args.screenshots:
        screenshots(args.screenshots)
    else:
        bench(args.agents, args.per_day)


if __name__ == "__main__":
    main()
