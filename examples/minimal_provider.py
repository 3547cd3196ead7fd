"""A complete minimal calhub provider: each agent calendar is a folder of JSON files.

It implements the whole contract of :class:`hub.Provider` and passes the conformance suite
(tests/testkit/test_docs_plugin_example.py), so it is a template to copy: replace the file
operations with your service's API calls. Configure it as::

    [accounts.shared]
    provider = "jsondir"
    path = "/srv/calendars"     # one folder per mailbox, one per calendar inside it

What it shows:

* blocking work (file I/O here, a synchronous SDK elsewhere) runs in worker threads through
  ``anyio.to_thread`` with a :class:`anyio.CapacityLimiter`, never on the event loop;
* the version (etag) is a hash of the stored bytes, checked before every update and delete,
  under one lock with the write, so two concurrent updates from one version cannot both pass;
* the file name of a hub-owned event is derived from the hub id (``client_ids = True``), so a
  create retried after a crash finds the first one instead of making a duplicate;
* only the hub's error classes leave the provider: a missing file is
  :class:`hub.NotFoundError`, an unreadable one a :class:`hub.SkippedEvent` in the listing.

It keeps no cursor (``supports_delta = False``): every fetch is a full listing of the window.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread

from hub import (
    AccountConfig,
    CalendarRef,
    CheckItem,
    EventData,
    FetchResult,
    NotFoundError,
    Option,
    PermanentError,
    PreconditionFailed,
    Provider,
    ProviderError,
    ProviderRegistry,
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    SkippedEvent,
    Telemetry,
    Window,
    hookimpl,
)

T = TypeVar("T")
_REMOTE_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


def event_to_json(hub_id: str | None, data: EventData) -> str:
    """The file content of one event: the hub tag and the EventData fields."""
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    fields["start"], fields["end"] = data.start.isoformat(), data.end.isoformat()
    return json.dumps({"hub_id": hub_id, "event": fields}, ensure_ascii=False, indent=1)


def _when(text: str) -> datetime | date:
    return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)


def event_from_json(text: str) -> tuple[str | None, EventData]:
    raw = json.loads(text)
    fields = dict(raw["event"])
    fields["start"], fields["end"] = _when(fields["start"]), _when(fields["end"])
    fields["categories"] = tuple(fields.get("categories", ()))
    return raw["hub_id"], EventData(**fields)


def _version(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]


def _problem(data: EventData) -> str | None:
    """Why the event cannot be stored; a real service would answer 400 for these."""
    if isinstance(data.start, datetime) != isinstance(data.end, datetime):
        return "start and end must both be dates or both date-times"
    timed = isinstance(data.start, datetime) and isinstance(data.end, datetime)
    if timed and (data.start.tzinfo is None or data.end.tzinfo is None):  # type: ignore[union-attr]
        return "timed events need a time zone"
    if data.end < data.start:  # type: ignore[operator]  # same type, checked above
        return "end is before start"
    return None


class JsonDirProvider(Provider):
    """Calendars as folders of JSON files, one file per event."""

    name: ClassVar[str] = "jsondir"
    title: ClassVar[str] = "Folder of JSON files (example provider)"
    options: ClassVar[Sequence[Option]] = (
        Option("path", str, required=True, help="folder holding one folder per mailbox"),
    )
    supports_delta: ClassVar[bool] = False
    max_batch: ClassVar[int] = 1
    client_ids: ClassVar[bool] = True

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        # Run by the config loader: a bad value stops the service at start, not at a sync.
        if not str(options["path"]).strip():
            yield "path", "must name a folder"

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        super().__init__(account, telemetry)
        self.root = Path(account.options["path"])
        self._limiter: anyio.CapacityLimiter | None = None
        # Checking a version and writing are one step: the worker threads take turns.
        self._writing = threading.Lock()

    async def open(self) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(4)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def folder(self, cal: CalendarRef) -> Path:
        # quote() keeps "/" and ".." out of the path: a mailbox is not a path.
        return (
            self.root / quote(cal.mailbox, safe="@-_") / quote(cal.calendar or "default", safe="-_")
        )

    # -------------------------------------------------------------- blocking helpers (threads)

    def _file(self, cal: CalendarRef, remote_id: str, *, must_exist: bool = True) -> Path:
        folder = self.folder(cal)
        if not folder.is_dir():
            raise NotFoundError(f"calendar folder {folder} does not exist")
        path = folder / f"{remote_id}.json"
        if not _REMOTE_ID.fullmatch(remote_id) or (must_exist and not path.is_file()):
            raise NotFoundError(f"no event {remote_id!r}", item=remote_id)
        return path

    def _read(self, path: Path) -> RemoteEvent:
        blob = path.read_bytes()
        try:
            hub_id, data = event_from_json(blob.decode("utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(f"unreadable event file: {exc}", item=path.stem) from exc
        return RemoteEvent(path.stem, _version(blob), data, hub_id)

    def _list(self, cal: CalendarRef) -> tuple[list[RemoteEvent], list[SkippedEvent]]:
        folder = self.folder(cal)
        if not folder.is_dir():
            raise NotFoundError(f"calendar folder {folder} does not exist")
        events, skipped = [], []
        for path in sorted(folder.glob("*.json")):
            try:
                events.append(self._read(path))
            except PermanentError as exc:
                skipped.append(SkippedEvent(path.stem, exc.message))
        return events, skipped

    def _write(self, cal: CalendarRef, item: PushItem) -> PushOutcome:
        with self._writing:
            return self._write_locked(cal, item)

    def _write_locked(self, cal: CalendarRef, item: PushItem) -> PushOutcome:
        try:
            if item.remote_id is None:
                remote_id = "hub-" + hashlib.sha256(item.hub_id.encode()).hexdigest()[:32]
                path = self._file(cal, remote_id, must_exist=False)
                if path.exists():  # a retried create: link to the first one
                    existing = self._read(path)
                    return PushResult(item.hub_id, remote_id, existing.version, existing.data)
            else:
                path = self._file(cal, item.remote_id)
                current = _version(path.read_bytes())
                if item.version is not None and item.version != current:
                    raise PreconditionFailed(
                        f"{item.remote_id} changed since {item.version}", item=item.remote_id
                    )
            problem = _problem(item.data)
            if problem:
                raise PermanentError(problem, item=item.hub_id)
            blob = event_to_json(item.hub_id, item.data).encode("utf-8")
            # Write-then-rename: a crash never leaves half a file behind.
            partial = path.with_suffix(".partial")
            partial.write_bytes(blob)
            partial.replace(path)
            return PushResult(item.hub_id, path.stem, _version(blob), item.data)
        except ProviderError as exc:
            return exc  # per-item outcome: the rest of the batch goes on

    def _remove(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        with self._writing:
            path = self._file(cal, remote_id)
            if version is not None and version != _version(path.read_bytes()):
                raise PreconditionFailed(f"{remote_id} changed since {version}", item=remote_id)
            path.unlink()

    # -------------------------------------------------------------- the contract

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        events, skipped = await self._run(self._list, cal)
        inside = [e for e in events if window.overlaps(e.data.start, e.data.end)]
        return FetchResult(changed=inside, skipped=skipped, cursor=None, full=True)

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        return [await self._run(self._write, cal, item) for item in items]

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        await self._run(self._remove, cal, remote_id, version)

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        return await self._run(self._read, await self._run(self._file, cal, remote_id))

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        events, _ = await self._run(self._list, cal)
        wanted = set(hub_ids)
        return {e.hub_id: e for e in events if e.hub_id in wanted}

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        items = [CheckItem("root folder", self.root.is_dir(), str(self.root))]
        for cal in cals:
            try:
                events, _ = await self._run(self._list, cal)
                items.append(CheckItem(f"read {cal.mailbox}", True, f"{len(events)} events"))
                if write:
                    now = datetime.now(UTC)
                    probe = PushItem(f"probe-{now.timestamp()}", EventData("probe", now, now))
                    made = await self.push_one(cal, probe)
                    await self.delete(cal, made.remote_id, made.version)
                    items.append(CheckItem(f"write {cal.mailbox}", True, "probe written"))
            except ProviderError as exc:
                items.append(CheckItem(f"access {cal.mailbox}", False, str(exc)))
        return items


@hookimpl
def calhub_register_providers(register: ProviderRegistry) -> None:
    """Register the provider; the entry point in pyproject.toml points at this module."""
    register.add(JsonDirProvider)
