"""The memory provider: the reference implementation of the provider contract.

``MemoryProvider`` (provider name ``memory``) talks to a :class:`MemoryServer`, an in-process
calendar server with etags, a change log, expiring cursors and fault knobs. Tests pass a
server they hold (``AccountConfig(..., options={"server": server})``) to play the agent and
the network; the command line uses ``state_file`` so that ``calhub sync`` run in separate
processes sees one server::

    [accounts.demo]
    provider = "memory"
    state_file = "memory-calendars.json"   # loaded on open, saved after each write
    latency_ms = 20                         # simulated latency per request
    max_batch = 20
    shared = true                           # several processes at once (see below)

With ``shared = true`` several running processes (the workers of a PostgreSQL hub) use the
file at once: each request takes an exclusive ``flock`` on ``STATE_FILE.lock``, reloads the
file and, when it wrote, saves it before letting go. Meant for small test calendars: every
request reads the whole file.

It is registered like any third-party plugin, through the ``calhub.providers`` entry point
``memory = "hub.testing.memory"`` and the hook implementation below.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread

from hub.spec import (
    AccountConfig,
    CalendarRef,
    CallStatus,
    CheckItem,
    EventData,
    FetchResult,
    Option,
    PermanentError,
    Provider,
    ProviderError,
    ProviderRegistry,
    PushItem,
    PushOutcome,
    RemoteEvent,
    Telemetry,
    Window,
    hookimpl,
)
from hub.testing.memory_codec import read_text, write_atomic
from hub.testing.memory_server import MemoryServer, SimulatedCrash, StoredEvent, cal_key

__all__ = [
    "MemoryBackdoor",
    "MemoryProvider",
    "MemoryServer",
    "SimulatedCrash",
    "StoredEvent",
    "cal_key",
    "calhub_register_providers",
]

DEFAULT_MAX_BATCH = 20


def _number_problem(options: Mapping[str, Any], key: str, minimum: float) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        return f"expected a number >= {minimum}, got {value!r}"
    return None


class MemoryProvider(Provider):
    """A provider backed by a :class:`MemoryServer`: delta cursors, batches of ``max_batch``,
    server-chosen ids, one request per call (fetch, push batch, delete, get, find, check)."""

    name: ClassVar[str] = "memory"
    title: ClassVar[str] = "In-memory calendars (tests, demos, benchmarks)"
    options: ClassVar[Sequence[Option]] = (
        Option("state_file", str, help="JSON file holding the calendars between processes"),
        Option("latency_ms", float, default=None, help="simulated latency of each request"),
        Option("max_batch", int, default=DEFAULT_MAX_BATCH, help="items per push request"),
        Option("shared", bool, default=False, help="state_file used by several processes"),
    )
    supports_delta: ClassVar[bool] = True
    max_batch: ClassVar[int] = DEFAULT_MAX_BATCH  # the default; the option sets it per account
    client_ids: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        for key, minimum in (("latency_ms", 0), ("max_batch", 1)):
            problem = _number_problem(options, key, minimum)
            if problem:
                yield key, problem
        server = options.get("server")  # tests hand a server object in (not a file key)
        if server is not None and not isinstance(server, MemoryServer):
            yield "server", "expected a MemoryServer"
        if server is not None and options.get("state_file"):
            yield "server", "give either server or state_file"

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        super().__init__(account, telemetry)
        opts = account.options
        for key, reason in self.check_options(opts):
            raise ValueError(f"accounts.{account.name}.{key}: {reason}")
        state_file = opts.get("state_file")
        self.state_file: Path | None = Path(state_file) if state_file else None
        self.shared = bool(opts.get("shared")) and self.state_file is not None
        self.server: MemoryServer = opts.get("server") or MemoryServer()
        latency = opts.get("latency_ms")
        self._latency_ms: float | None = None if latency is None else float(latency)
        # An instance attribute shadowing the class flag: the engine reads provider.max_batch.
        max_batch = opts.get("max_batch")
        self.max_batch = DEFAULT_MAX_BATCH if max_batch is None else int(max_batch)
        self.requests = 0  # requests this provider object sent (the server counts all)
        self._limiter: anyio.CapacityLimiter | None = None
        self._save_lock: anyio.Lock | None = None
        self._opened = False

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._opened:
            return
        self._limiter = anyio.CapacityLimiter(1)
        self._save_lock = anyio.Lock()
        if self.state_file is not None:
            self.server = await self._load(self.state_file)
        self._opened = True

    async def close(self) -> None:
        self._opened = False

    async def _load(self, path: Path) -> MemoryServer:
        text = await anyio.to_thread.run_sync(read_text, path, limiter=self._limiter)
        if text is None:
            return MemoryServer()
        try:
            return MemoryServer.from_json(json.loads(text))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"accounts.{self.account.name}.state_file {path}: {exc}") from exc

    async def _persist(self) -> None:
        if self.state_file is None or self.shared:  # shared: saved inside the request
            return
        assert self._save_lock is not None, "MemoryProvider used before open()"
        async with self._save_lock:
            # Serialised on the event loop so that the snapshot is consistent; written in a
            # thread because file I/O blocks.
            text = json.dumps(self.server.to_json(), ensure_ascii=False)
            await anyio.to_thread.run_sync(
                write_atomic, self.state_file, text, limiter=self._limiter
            )

    @asynccontextmanager
    async def _request(self, operation: str, cal: CalendarRef | None) -> AsyncIterator[None]:
        """One request: latency, the server's faults, then the body; reported to telemetry."""
        started = time.perf_counter()
        self.requests += 1
        latency = self.server.latency_ms if self._latency_ms is None else self._latency_ms
        if latency:
            await anyio.sleep(latency / 1000)
        try:
            async with self._exclusive(writes=operation in ("push", "delete")):
                self.server.begin_request(operation, cal)
                yield
        except ProviderError as exc:
            self._report(operation, CallStatus.of(exc), started)
            raise
        self._report(operation, CallStatus.OK, started)

    @asynccontextmanager
    async def _exclusive(self, *, writes: bool) -> AsyncIterator[None]:
        """With ``shared``: the file locked against the other processes, reloaded, and saved
        after a write, around one request."""
        if not self.shared:
            yield
            return
        assert self.state_file is not None and self._save_lock is not None
        path = self.state_file
        async with self._save_lock:
            fd = await anyio.to_thread.run_sync(_lock, path.with_name(path.name + ".lock"))
            try:
                self.server = await self._load(path)
                yield
                if writes:
                    text = json.dumps(self.server.to_json(), ensure_ascii=False)
                    await anyio.to_thread.run_sync(write_atomic, path, text)
            finally:
                await anyio.to_thread.run_sync(os.close, fd)  # closing releases the flock

    def _report(self, operation: str, status: CallStatus, started: float) -> None:
        self.telemetry.request(self.account.name, operation, status, time.perf_counter() - started)

    async def _crash(self, what: str) -> None:
        await self._persist()  # the write is done: it survives the crash
        raise SimulatedCrash(f"simulated crash after {what}")

    # ------------------------------------------------------------------ the contract

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        async with self._request("fetch", cal):
            return self.server.handle_fetch(cal, window, cursor)

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        if not items:
            return []
        if len(items) > self.max_batch:
            raise PermanentError(f"push of {len(items)} items exceeds max_batch={self.max_batch}")
        async with self._request("push", cal):
            outcomes, crashed = self.server.handle_push(cal, items)
        if crashed:
            await self._crash(f"pushing {len(outcomes)} of {len(items)} items")
        await self._persist()
        return outcomes

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        async with self._request("delete", cal):
            crashed = self.server.handle_delete(cal, remote_id, version)
        if crashed:
            await self._crash(f"deleting {remote_id}")
        await self._persist()

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        async with self._request("get", cal):
            return self.server.handle_get(cal, remote_id)

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        if not hub_ids:
            return {}
        async with self._request("find", cal):
            return self.server.handle_find(cal, hub_ids)

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        where = str(self.state_file) if self.state_file else "in-process server"
        items = [CheckItem("connect", True, where)]
        for cal in cals:
            label = f"{cal.mailbox} {cal.calendar or '(default calendar)'}"
            try:
                async with self._request("check", cal):
                    events = self.server.calendar(cal).events
                items.append(CheckItem(f"read {label}", True, f"{len(events)} events"))
                if write:
                    items.append(await self._probe(cal, label))
            except ProviderError as exc:
                items.append(CheckItem(f"read {label}", False, str(exc)))
        return items

    async def _probe(self, cal: CalendarRef, label: str) -> CheckItem:
        now = datetime.now(UTC).replace(microsecond=0)
        probe = EventData("calhub write probe", now, now)
        try:
            result = await self.push_one(cal, PushItem(f"calhub-probe-{time.time_ns()}", probe))
            await self.delete(cal, result.remote_id, result.version)
        except ProviderError as exc:
            return CheckItem(f"write {label}", False, str(exc))
        return CheckItem(f"write {label}", True, "probe event created and deleted")


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


class MemoryBackdoor:
    """The agent's own edits at a :class:`MemoryServer`, in the shape the conformance suite's
    ``backdoor`` fixture expects."""

    def __init__(self, server: MemoryServer) -> None:
        self.server = server

    async def create_external(self, cal: CalendarRef, data: EventData) -> str:
        return self.server.create_external(cal, data)

    async def edit(self, cal: CalendarRef, remote_id: str, data: EventData) -> None:
        self.server.edit(cal, remote_id, data)

    async def delete(self, cal: CalendarRef, remote_id: str) -> None:
        self.server.delete(cal, remote_id)

    async def expire_cursor(self, cal: CalendarRef) -> None:
        self.server.expire_cursors(cal)

    async def create_unreadable(self, cal: CalendarRef, start: datetime) -> str:
        """An event at ``start`` the provider cannot read (fetch reports it as skipped)."""
        data = EventData("(unreadable)", start, start + timedelta(hours=1))
        return self.server.add_bad_event(cal, "unparseable event", data)

    async def request_count(self) -> int:
        return self.server.requests


@hookimpl
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register the memory provider."""
    register.add(MemoryProvider)
