"""Benchmark: calhub's CalDAV sync against vdirsyncer on the same Radicale collection.

One Radicale collection of N events (default 2,000) is synced to a local store by calhub (the
real engine, AgentSync with import on, into a SqliteStore) and by vdirsyncer (filesystem
storage, run as a subprocess with a generated config), in the same run: an initial sync, the
first no-change re-sync after it, steady no-change re-syncs (median of --repeat), a pass
after K events were edited "on a phone" and one after 5K more were: from calhub's two change
passes a linear fit gives its fixed CPU per pass and its CPU per changed event. HTTP requests
are counted at the server side, from Radicale's request log, which also gives the seconds
Radicale spent answering them.

How it measures: calhub is a long-running service, so its passes run in this (warm) process;
vdirsyncer is a command, so each of its passes is a new process. Both are reported: its
whole wall time (interpreter start-up and imports included) and its time inside
``vdirsyncer.cli.app()`` once its modules are imported (start-up excluded), with a ratio for
each. calhub's pass is split into the provider's fetch and the engine + store around it.

    /tmp/venv/bin/python bench/caldav_vs_vdirsyncer.py [--events 2000] [--changes 20] [--repeat 5]

Prints human-readable figures, then one JSON line per phase (format in DESIGN.md). Goal: a
no-change re-sync at least 10x faster than vdirsyncer's, with at most 2 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the bench imports calhub from the checkout
sys.path.insert(0, str(ROOT / "bench"))

from _report import fit_cost  # noqa: E402

from hub.config import HubSettings  # noqa: E402
from hub.model import Agent  # noqa: E402
from hub.spec import AccountConfig, CalendarRef, FetchResult, Window  # noqa: E402
from hub.store.sqlite import SqliteStore  # noqa: E402
from hub.sync import AgentSync  # noqa: E402
from plugins.caldav.provider import CalDAVProvider  # noqa: E402

USER, PASSWORD, CALENDAR = "bench", "bench-pw", "cal"
BENCH = "caldav_vs_vdirsyncer"


@dataclass
class Phase:
    """One measured phase of one tool."""

    tool: str
    phase: str
    events: int
    changed: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    requests: int
    server_s: float  # what Radicale says it spent answering this phase's requests
    inner_s: float  # calhub: inside provider.fetch; vdirsyncer: inside app(), start-up excluded
    extra: dict[str, object] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        return {
            "bench": BENCH,
            "phase": f"{self.tool}_{self.phase}",
            "agents": 1,
            "events": self.events,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "requests": self.requests,
            "server_s": round(self.server_s, 4),
            ("fetch_s" if self.tool == "calhub" else "inproc_s"): round(self.inner_s, 4),
            "requests_per_agent": self.requests,
            "requests_per_changed_event": (
                round(self.requests / self.changed, 3) if self.changed else None
            ),
            "events_per_s": round(self.events / self.wall_s, 1) if self.wall_s else None,
            **self.extra,
        }


# --------------------------------------------------------------------------- the server


def vevent(i: int, start: datetime, summary: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    fmt = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:bench-{i}\r\nDTSTAMP:{stamp}\r\nDTSTART:{start.strftime(fmt)}\r\n"
        f"DTEND:{(start + timedelta(minutes=30)).strftime(fmt)}\r\nSUMMARY:{summary}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def event_start(i: int, today: datetime) -> datetime:
    # 2,000 events over the next 50 days: inside calhub's default window (7 past, 60 future).
    return today + timedelta(days=1 + i % 50, hours=8 + (i // 50) % 10, minutes=(i % 2) * 30)


def populate(storage: Path, events: int) -> None:
    """Write the collection straight into Radicale's storage: much faster than N PUTs."""
    collection = storage / "collection-root" / USER / CALENDAR
    collection.mkdir(parents=True)
    props = {"tag": "VCALENDAR", "C:supported-calendar-component-set": "VEVENT"}
    (collection / ".Radicale.props").write_text(json.dumps(props))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for i in range(events):
        (collection / f"bench-{i}.ics").write_text(vevent(i, event_start(i, today), f"Event {i}"))


class Radicale:
    """Radicale as a subprocess; its INFO log has one line per request it answered."""

    def __init__(self, tmp: Path, port: int) -> None:
        (tmp / "users").write_text(f"{USER}:{PASSWORD}\n")
        self.log = tmp / "radicale.log"
        self.url = f"http://127.0.0.1:{port}/"
        cmd = [
            sys.executable, "-m", "radicale", "--server-hosts", f"127.0.0.1:{port}",
            "--storage-filesystem-folder", str(tmp / "storage"), "--auth-type", "htpasswd",
            "--auth-htpasswd-filename", str(tmp / "users"),
            "--auth-htpasswd-encryption", "plain", "--auth-delay", "0",
            "--rights-type", "owner_only", "--logging-level", "info",
        ]  # fmt: skip
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT)

    def counts(self) -> tuple[int, float]:
        """Requests answered so far, and the seconds Radicale says it spent on them."""
        lines = self.log.read_bytes().splitlines()
        spent = 0.0
        for line in lines:
            if b" response status for " in line and b" in " in line:
                spent += float(line.split(b" in ", 1)[1].split(b" ", 1)[0])
        return sum(1 for line in lines if b" request for " in line), spent

    async def ready(self) -> None:
        """Wait until it answers, then warm its item cache (Radicale parses every item on the
        first listing, several seconds for 2,000): both tools are measured on a warm server."""
        auth = aiohttp.encode_basic_auth(USER, PASSWORD)
        async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
            for _ in range(200):
                try:
                    async with session.get(self.url) as resp:
                        await resp.read()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"Radicale did not start: {self.log.read_text()[-2000:]}")
            body = b'<propfind xmlns="DAV:"><prop><getetag/><sync-token/></prop></propfind>'
            for depth in ("1", "0"):
                url = f"{self.url}{USER}/{CALENDAR}/"
                async with session.request("PROPFIND", url, data=body, headers={"Depth": depth}):
                    pass

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._out.close()


async def edit_on_phone(server: Radicale, count: int, events: int, hours: int = 1) -> None:
    """Move ``count`` events to ``hours`` after their first start, as a phone would (PUT over
    HTTP)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    auth = aiohttp.encode_basic_auth(USER, PASSWORD)
    async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
        for i in range(0, events, max(1, events // count))[:count]:
            start = event_start(i, today) + timedelta(hours=hours)
            body = vevent(i, start, f"Event {i} (moved {hours} h)")
            url = f"{server.url}{USER}/{CALENDAR}/bench-{i}.ics"
            async with session.put(url, data=body.encode()) as resp:
                assert resp.status in (201, 204), resp.status


# --------------------------------------------------------------------------- the tools


class TimedProvider(CalDAVProvider):
    """The CalDAV provider, adding up the wall time its fetches take (the rest of a pass is
    the engine and the store)."""

    fetch_s: float = 0.0

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        started = time.perf_counter()
        try:
            return await super().fetch(cal, window, cursor)
        finally:
            self.fetch_s += time.perf_counter() - started


class Calhub:
    """calhub's side: the CalDAV provider and the real engine into a SqliteStore."""

    def __init__(self, tmp: Path, server: Radicale) -> None:
        self.store = SqliteStore(tmp / "calhub.db")
        options = {"url": server.url, "username": USER, "password": PASSWORD}
        self.provider = TimedProvider(AccountConfig("dav", "caldav", options))
        self.agent = Agent(id="bench", name="Bench", account="dav", calendar=f"/{USER}/{CALENDAR}/")
        self.engine = AgentSync(self.store, self.provider, "dav", HubSettings(import_external=True))

    async def open(self) -> None:
        await self.store.open()
        await self.provider.open()
        async with self.store.transaction("api") as tx:
            self.agent = await tx.put_agent(self.agent)

    async def close(self) -> None:
        await self.provider.close()
        await self.store.close()

    async def sync(self) -> dict[str, int]:
        result = await self.engine.run(self.agent)
        if result.result != "ok":
            raise RuntimeError(f"calhub pass {result.result}: {result.error}")
        return result.counts


class Vdirsyncer:
    """vdirsyncer's side: a filesystem storage paired with the CalDAV collection."""

    def __init__(self, tmp: Path, server: Radicale) -> None:
        self.local = tmp / "vdir"
        self.local.mkdir()
        self.config = tmp / "vdirsyncer.conf"
        self.config.write_text(
            f'[general]\nstatus_path = "{tmp / "vdir-status"}/"\n\n'
            '[pair bench]\na = "local"\nb = "remote"\ncollections = null\n'
            'conflict_resolution = "b wins"\n\n'
            f'[storage local]\ntype = "filesystem"\npath = "{self.local}/"\nfileext = ".ics"\n\n'
            f'[storage remote]\ntype = "caldav"\nurl = "{server.url}{USER}/{CALENDAR}/"\n'
            f'username = "{USER}"\npassword = "{PASSWORD}"\n'
        )

    def run(self, *args: str) -> tuple[float, float, float]:
        """Run one vdirsyncer command; returns the CPU seconds and peak RSS (MB) of that
        process, and the seconds it spent in ``app()`` after its imports (start-up excluded).

        A small wrapper prints both at exit: the peak is the process's own VmHWM (Linux's
        ru_maxrss of a child counts the parent's memory it was forked from)."""
        argv = ["vdirsyncer", "-c", str(self.config), *args]
        cmd = [sys.executable, "-c", _VDIRSYNCER_WRAPPER, *argv]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        output = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"vdirsyncer {' '.join(args)} failed: {output[-2000:]}")
        return (
            usage.ru_utime + usage.ru_stime,
            _field(output, "VmHWM") / 1024,
            _field(output, "InApp"),
        )


# Start-up is the interpreter and the imports, including those vdirsyncer makes lazily
# inside its sync command; the clock starts after them, right before app().
_VDIRSYNCER_WRAPPER = (
    "import atexit, sys, time\n"
    "from vdirsyncer.cli import app\n"
    "import vdirsyncer.cli.tasks, vdirsyncer.cli.config, vdirsyncer.cli.utils\n"
    "import vdirsyncer.storage.dav, vdirsyncer.storage.filesystem, vdirsyncer.sync\n"
    "started = time.perf_counter()\n"
    "atexit.register(lambda: print('InApp', time.perf_counter() - started))\n"
    "atexit.register(lambda: print('VmHWM', open('/proc/self/status').read()"
    ".split('VmHWM:')[1].split()[0]))\n"
    "sys.argv = sys.argv[1:]\n"
    "app()\n"
)


def _field(output: str, name: str) -> float:
    """The ``<name> <number>`` line the wrapper printed."""
    for line in reversed(output.splitlines()):
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return float("nan")


def own_peak_rss_mb() -> float:
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024


# --------------------------------------------------------------------------- measuring


async def measure_calhub(
    calhub: Calhub, server: Radicale, phase: str, events: int, changed: int
) -> Phase:
    before = server.counts()
    fetch = calhub.provider.fetch_s
    cpu, wall = time.process_time(), time.perf_counter()
    await calhub.sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    fetch = calhub.provider.fetch_s - fetch
    await asyncio.sleep(0.2)  # let Radicale flush its log line
    peak = own_peak_rss_mb()
    after = server.counts()
    return Phase(
        "calhub", phase, events, changed, wall, cpu, peak,
        after[0] - before[0], after[1] - before[1], fetch,
    )  # fmt: skip


async def measure_vdirsyncer(
    vdir: Vdirsyncer, server: Radicale, phase: str, events: int, changed: int
) -> Phase:
    before = server.counts()
    wall = time.perf_counter()
    cpu, peak, in_app = await anyio.to_thread.run_sync(vdir.run, "sync")
    wall = time.perf_counter() - wall
    await asyncio.sleep(0.2)
    after = server.counts()
    return Phase(
        "vdirsyncer", phase, events, changed, wall, cpu, peak,
        after[0] - before[0], after[1] - before[1], in_app,
    )  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def median(runs: list[Phase]) -> Phase:
    """The run with the median wall time (the shared machine makes single runs noisy)."""
    return sorted(runs, key=lambda p: p.wall_s)[len(runs) // 2]


async def main(events: int, changes: int, repeat: int) -> list[Phase]:
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="calhub-bench-") as name:
        tmp = Path(name)
        populate(tmp / "storage", events)
        server = Radicale(tmp, free_port())
        try:
            await server.ready()
            calhub, vdir = Calhub(tmp, server), Vdirsyncer(tmp, server)
            await calhub.open()
            try:
                await anyio.to_thread.run_sync(vdir.run, "discover")
                for phase, count in (("initial", events), ("first_nochange", 0)):
                    phases.append(await measure_calhub(calhub, server, phase, events, count))
                    phases.append(await measure_vdirsyncer(vdir, server, phase, events, count))
                ours, theirs = [], []
                for _ in range(repeat):
                    ours.append(await measure_calhub(calhub, server, "nochange", events, 0))
                    theirs.append(await measure_vdirsyncer(vdir, server, "nochange", events, 0))
                phases += [median(ours), median(theirs)]
                await edit_on_phone(server, changes, events)
                phases.append(await measure_calhub(calhub, server, "change", events, changes))
                phases.append(await measure_vdirsyncer(vdir, server, "change", events, changes))
                more = min(events, 5 * changes)
                await edit_on_phone(server, more, events, hours=2)
                phases.append(await measure_calhub(calhub, server, "change5", events, more))
                phases.append(await measure_vdirsyncer(vdir, server, "change5", events, more))
                stored = len(await calhub.store.list_appointments(agent_id="bench"))
                local = len(list(vdir.local.glob("*.ics")))
            finally:
                await calhub.close()
        finally:
            server.stop()
    report(phases, ours + theirs, events, changes, stored, local)
    return phases


PHASES = ("initial", "first_nochange", "nochange", "change", "change5")


def report(
    phases: list[Phase],
    runs: list[Phase],
    events: int,
    changes: int,
    stored: int,
    local: int,
) -> None:
    by = {(p.tool, p.phase): p for p in phases}
    print(f"CalDAV sync of one Radicale collection of {events} events ({changes} changed)")
    print(f"  calhub stored {stored} appointments; vdirsyncer wrote {local} files")
    print("  calhub: warm, in this process; inner s = inside the provider's fetch")
    print("  vdirsyncer: one process per pass; inner s = inside app(), start-up excluded")
    print(
        f"  {'phase':<16}{'tool':<12}{'wall s':>9}{'inner s':>9}{'server s':>10}{'cpu s':>8}"
        f"{'requests':>10}{'RSS MB':>8}"
    )
    for p in phases:
        print(
            f"  {p.phase:<16}{p.tool:<12}{p.wall_s:>9.3f}{p.inner_s:>9.3f}{p.server_s:>10.3f}"
            f"{p.cpu_s:>8.3f}{p.requests:>10}{p.peak_rss_mb:>8.1f}"
        )
    for tool in ("calhub", "vdirsyncer"):
        mine = [p for p in runs if p.tool == tool]
        walls = " ".join(f"{p.wall_s:.3f}" for p in mine)
        print(f"  nochange runs, {tool}: wall {walls}; requests {[p.requests for p in mine]}")
    for phase in PHASES:
        ours, theirs = by[("calhub", phase)], by[("vdirsyncer", phase)]
        total = theirs.wall_s / ours.wall_s if ours.wall_s else float("inf")
        inner = theirs.inner_s / ours.wall_s if ours.wall_s else float("inf")
        print(
            f"  {phase}: calhub {total:.1f}x faster than vdirsyncer's whole run, {inner:.1f}x "
            f"than its run without start-up; requests {ours.requests} vs {theirs.requests}; "
            f"Radicale's own time {ours.server_s:.3f} s vs {theirs.server_s:.3f} s; calhub's "
            f"engine + store {ours.wall_s - ours.inner_s:.3f} s"
        )
    nochange, theirs = by[("calhub", "nochange")], by[("vdirsyncer", "nochange")]
    for label, base in (("whole run", theirs.wall_s), ("without start-up", theirs.inner_s)):
        ratio = base / nochange.wall_s
        goal = ratio >= 10 and nochange.requests <= 2
        print(
            f"  goal (no-change >= 10x faster than vdirsyncer's {label}, <= 2 requests): "
            f"{ratio:.1f}x, {nochange.requests} request(s): {'met' if goal else 'NOT met'}"
        )
    changed = [by[("calhub", "change")], by[("calhub", "change5")]]
    cost = fit_cost([(1, p.changed, p.cpu_s) for p in changed])
    for line in cost.notes():
        print(f"  calhub {line}")
    for p in changed:
        p.extra.update(cost.extra())
    for p in phases:
        print(json.dumps(p.record()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events in the collection")
    parser.add_argument(
        "--changes", type=int, default=20, help="events edited before the change pass"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="no-change passes per tool (the median is kept)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.events, args.changes, max(1, args.repeat)))
