"""The ``exchange_ews`` provider: agents' calendars on Exchange Server on premises, through EWS.

One provider object serves one ``[accounts.NAME]``: a service account holding the
ApplicationImpersonation role; each agent's ``email`` is the mailbox it impersonates. All EWS
work is done by :class:`plugins.exchange_ews.adapter.EwsAdapter` (exchangelib, blocking) in
worker threads, at most ``max_threads`` at a time per account (a CapacityLimiter): the event
loop never waits on EWS.

Reads: a full listing is SyncFolderItems from nothing (for the cursor, ids only) then FindItem
with a CalendarView over the window (recurring series expanded) and GetItem in chunks. An
incremental fetch is SyncFolderItems from the SyncState (the cursor) and GetItem of what it
reported: one request when nothing changed.

SyncFolderItems reports *net* changes against what the SyncState already told: an item the hub
created after the state was taken and the agent deleted before the next pass is reported
neither as created nor as deleted. The provider therefore remembers its own creates since the
last fetch of each calendar and GetItems the ones that did not come back; a missing one is
reported deleted. (That memory lives in the provider object: after a restart the daily full
listing, which verifies every known event, catches such a delete instead.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio

from hub.spec import (
    AccountConfig,
    CalendarRef,
    CallStatus,
    CheckItem,
    EventData,
    FetchResult,
    NotFoundError,
    Option,
    PermanentError,
    PreconditionFailed,
    Provider,
    ProviderError,
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    SkippedEvent,
    Telemetry,
    Window,
    as_utc,
    run_check_steps,
)
from plugins.exchange_ews.errors import error_for
from plugins.exchange_ews.mapping import fields_for, remote_event
from plugins.exchange_ews.records import (
    AUTH_NAMES,
    EWS_VERSIONS,
    MAX_THREADS,
    EwsFault,
    EwsItem,
    ItemRef,
)

if TYPE_CHECKING:
    from plugins.exchange_ews.adapter import EwsAdapter

T = TypeVar("T")

INSTALL_HINT = "exchange_ews needs exchangelib: install calhub[ews]"
GET_CHUNK = 50  # ids per GetItem: EWS accepts more, but a response per 50 stays small
DEFAULT_THREADS = 8  # well below EWS's default EWSMaxConcurrency of 27 per service account
_RECURRING = {"RecurringMaster"}
_SERIES = {"Occurrence", "Exception"}


@dataclass(slots=True)
class _Written:
    """What the hub wrote to one calendar since that calendar's last fetch: the remote ids
    it created, and the ChangeKey each write (create or update) left the item with."""

    created: set[str] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)

    def snapshot(self) -> _Written:
        return _Written(set(self.created), dict(self.versions))

    def forget(self, seen: _Written) -> None:
        self.created -= seen.created
        for item_id, version in seen.versions.items():
            if self.versions.get(item_id) == version:
                del self.versions[item_id]


class EwsProvider(Provider):
    """Exchange Server calendars over EWS: SyncFolderItems reads, batched writes, impersonation."""

    name: ClassVar[str] = "exchange_ews"
    title: ClassVar[str] = "Exchange Server on premises (EWS)"
    supports_delta: ClassVar[bool] = True
    max_batch: ClassVar[int] = 50
    max_concurrency: ClassVar[int] = 2
    options: ClassVar[Sequence[Option]] = (
        Option("url", required=True, help="EWS endpoint, https://HOST/EWS/Exchange.asmx"),
        Option("username", required=True, help="the impersonation service account, DOMAIN\\user"),
        Option("password", secret=True, required=True, help="its password (use password_env)"),
        Option("auth", default="ntlm", help="ntlm | basic"),
        Option("ca_file", help="CA bundle (PEM) the server's certificate is issued by"),
        Option("verify_tls", type=bool, default=True, help="verify the server's certificate"),
        Option("version", default="", help="pin the EWS version, e.g. Exchange2016 (no probe)"),
        Option("max_threads", type=int, default=DEFAULT_THREADS, help="concurrent EWS calls"),
        Option("timeout", type=int, default=60, help="seconds per EWS request"),
    )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        return option_problems(options)

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        super().__init__(account, telemetry)
        self._adapter: EwsAdapter | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._written: dict[tuple[str, str], _Written] = {}

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._adapter is not None:
            return
        try:
            from plugins.exchange_ews.adapter import EwsAdapter
        except ImportError as exc:
            raise PermanentError(f"{INSTALL_HINT} ({exc.name} is missing)") from exc
        settings = settings_for(self.account)
        self._limiter = anyio.CapacityLimiter(settings.max_threads)
        # Building the protocol reads no file and sends nothing, but it is exchangelib: off
        # the event loop like every other call.
        self._adapter = await anyio.to_thread.run_sync(EwsAdapter, settings)

    async def close(self) -> None:
        if self._adapter is not None:
            adapter, self._adapter = self._adapter, None
            await anyio.to_thread.run_sync(adapter.close)

    @property
    def adapter(self) -> EwsAdapter:
        if self._adapter is None:
            raise PermanentError("exchange_ews: provider used before open()")
        return self._adapter

    # ------------------------------------------------------------------ contract

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        mailbox = _mailbox(cal)
        written = self._written.setdefault((mailbox.lower(), cal.calendar), _Written())
        seen = written.snapshot()
        if cursor is None:
            result = await self._full(cal, window)
        else:
            result = await self._incremental(cal, window, cursor, seen)
        written.forget(seen)
        return result

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        mailbox = _mailbox(cal)
        outcomes: dict[int, PushOutcome] = {}
        creates: list[tuple[int, PushItem]] = []
        updates: list[tuple[int, PushItem]] = []
        for i, item in enumerate(items):
            problem = _refused(item.data)
            if problem:
                outcomes[i] = PermanentError(f"exchange_ews: {problem}", item=item.hub_id)
            elif item.remote_id is None:
                creates.append((i, item))
            else:
                updates.append((i, item))
        done = 0
        for group, send in ((updates, self._updates), (creates, self._creates)):
            if not group:
                continue
            try:
                results = await send(cal, [item for _, item in group])
            except ProviderError as exc:
                if not done:
                    raise
                results = [exc for _ in group]  # earlier writes went through: report them
            for (i, _), outcome in zip(group, results, strict=True):
                outcomes[i] = outcome
            done += len(group)
        written = self._written.setdefault((mailbox.lower(), cal.calendar), _Written())
        for i, _ in creates:
            if isinstance(outcome := outcomes[i], PushResult):
                written.created.add(outcome.remote_id)
        for outcome in outcomes.values():
            if isinstance(outcome, PushResult):
                written.versions[outcome.remote_id] = outcome.version
        return [outcomes[i] for i in range(len(items))]

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        mailbox = _mailbox(cal)
        if version:
            # DeleteItem does no ChangeKey check of its own: compare first, then delete.
            current = await self._get_one(cal, remote_id, "delete")
            if current.ref.change_key != version:
                raise PreconditionFailed(
                    "exchange_ews: the item changed since it was read (ChangeKey differs)",
                    item=remote_id,
                )
        await self._run("delete", cal, self.adapter.delete, mailbox, remote_id, item=remote_id)
        written = self._written.get((mailbox.lower(), cal.calendar))
        if written is not None:
            written.created.discard(remote_id)
            written.versions.pop(remote_id, None)

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        item = await self._get_one(cal, remote_id, "get")
        return remote_event(item, _series(item))

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        ids = list(dict.fromkeys(hub_ids))
        found: dict[str, RemoteEvent] = {}
        for start in range(0, len(ids), self.max_batch):
            for hub_id, event in (
                await self._find(cal, ids[start : start + self.max_batch])
            ).items():
                found.setdefault(hub_id, event)
        return found

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        try:
            await self.open()
        except ProviderError as exc:
            return [CheckItem("EWS settings", False, exc.message)]
        settings = self.adapter.settings
        endpoint = f"EWS at {settings.url} ({settings.auth})"
        items: list[CheckItem] = []
        for n, cal in enumerate(cals):
            steps = await self._check_calendar(cal, write)
            if n == 0:
                first = steps[0]
                refused = (
                    not first.ok
                    and first.detail.startswith("EWS ")
                    and any(kind in first.detail for kind in ("Unauthorized", "TLS", "Connection"))
                )
                items.append(CheckItem(endpoint, not refused, first.detail if refused else ""))
            items.extend(steps)
        if not cals:
            items.append(CheckItem(endpoint, True, "no agents to try it with"))
        return items

    # ------------------------------------------------------------------ reads

    async def _full(self, cal: CalendarRef, window: Window) -> FetchResult:
        mailbox = _mailbox(cal)
        # The SyncState first: a change made while the window is listed is reported again by
        # the next incremental fetch instead of being lost between the two.
        changes = await self._run("sync", cal, self.adapter.sync, mailbox, cal.calendar, None)
        listed = await self._run(
            "find", cal, self.adapter.calendar_view, mailbox, cal.calendar, window.start, window.end
        )
        result = FetchResult(cursor=changes.state, full=True)
        items = await self._get_many(cal, [ref.item_id for ref, _ in listed])
        for (ref, _kind), got in zip(listed, items, strict=True):
            self._take(result, window, ref.item_id, got, listing=True)
        return result

    async def _incremental(
        self, cal: CalendarRef, window: Window, cursor: str, written: _Written
    ) -> FetchResult:
        mailbox = _mailbox(cal)
        changes = await self._run("sync", cal, self.adapter.sync, mailbox, cal.calendar, cursor)
        result = FetchResult(cursor=changes.state, deleted=list(dict.fromkeys(changes.deleted)))
        reported = {ref.item_id for ref in changes.changed} | set(changes.deleted)
        # The net-change trap (module docstring): our creates that did not come back.
        unconfirmed = sorted(written.created - reported)
        # Our own writes coming back with the ChangeKey the write left are what the hub
        # already has: no GetItem (the pass after a push costs one request, not one per 50).
        changed = list(
            dict.fromkeys(
                ref.item_id
                for ref in changes.changed
                if written.versions.get(ref.item_id) != ref.change_key
            )
        )
        ids = changed + unconfirmed
        if not ids:
            return result
        items = await self._get_many(cal, ids)
        folder_id = await self._folder_id(cal)
        masters: list[EwsItem] = []
        for item_id, got in zip(ids, items, strict=True):
            if item_id in unconfirmed and (
                isinstance(got, NotFoundError)
                or (isinstance(got, EwsItem) and got.folder_id not in (None, folder_id))
            ):
                result.deleted.append(item_id)
                continue
            if isinstance(got, EwsItem) and got.kind in _RECURRING:
                masters.append(got)
                continue
            if isinstance(got, NotFoundError):
                result.deleted.append(item_id)  # deleted between SyncFolderItems and GetItem
                continue
            self._take(result, window, item_id, got, listing=False)
        for master in masters:
            await self._expand(cal, window, master, result)
        return result

    async def _expand(
        self, cal: CalendarRef, window: Window, master: EwsItem, result: FetchResult
    ) -> None:
        """A recurring master SyncFolderItems reported: its occurrences in the window, through a
        CalendarView (filtered by the series' UID)."""
        listed = await self._run(
            "find",
            cal,
            self.adapter.calendar_view,
            _mailbox(cal),
            cal.calendar,
            window.start,
            window.end,
        )
        ids = [ref.item_id for ref, kind in listed if kind in _SERIES]
        for item_id, got in zip(ids, await self._get_many(cal, ids), strict=True):
            if isinstance(got, EwsItem) and got.uid == master.uid:
                self._take(result, window, item_id, got, listing=False)

    def _take(
        self,
        result: FetchResult,
        window: Window,
        item_id: str,
        got: EwsItem | ProviderError,
        *,
        listing: bool,
    ) -> None:
        if isinstance(got, ProviderError):
            if not (listing and isinstance(got, NotFoundError)):  # gone since it was listed
                result.skipped.append(SkippedEvent(item_id, got.message))
            return
        if got.kind in _RECURRING:
            return  # a CalendarView lists occurrences, never the master itself
        event = remote_event(got, _series(got))
        if window.overlaps(event.data.start, event.data.end):
            result.changed.append(event)
        elif not listing:
            result.left_window.append(item_id)

    async def _get_many(
        self, cal: CalendarRef, ids: Sequence[str]
    ) -> list[EwsItem | ProviderError]:
        if not ids:
            return []
        mailbox = _mailbox(cal)
        raw = await self._run(
            "get", cal, self.adapter.get_items, mailbox, cal.calendar, list(ids), GET_CHUNK
        )
        return [
            error_for(got, mailbox=mailbox, item=item_id) if isinstance(got, EwsFault) else got
            for item_id, got in zip(ids, raw, strict=True)
        ]

    async def _get_one(self, cal: CalendarRef, remote_id: str, operation: str) -> EwsItem:
        (got,) = await self._get_many(cal, [remote_id])
        if isinstance(got, ProviderError):
            raise got
        if got.folder_id not in (None, await self._folder_id(cal)):
            raise NotFoundError(
                "exchange_ews: the item is no longer in the agent's calendar", item=remote_id
            )
        return got

    async def _folder_id(self, cal: CalendarRef) -> str | None:
        folder = await self._run("folder", cal, self.adapter.folder, _mailbox(cal), cal.calendar)
        return folder.id

    async def _find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        mailbox = _mailbox(cal)
        matches = await self._run(
            "find", cal, self.adapter.find_hub_ids, mailbox, cal.calendar, list(hub_ids)
        )
        wanted = set(hub_ids)
        found: dict[str, RemoteEvent] = {}
        for got in await self._get_many(cal, [ref.item_id for ref in matches]):
            if isinstance(got, EwsItem) and got.hub_id in wanted:
                found.setdefault(got.hub_id, remote_event(got, _series(got)))
        return found

    # ------------------------------------------------------------------ writes

    async def _creates(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        mailbox = _mailbox(cal)
        # Idempotent per hub id: a create retried after a crash links to the first one. A
        # restore (``replaces``) may look too: the deleted item is in Deleted Items, never in
        # the calendar folder the restriction searches.
        existing = await self._find(cal, [item.hub_id for item in items])
        outcomes: list[PushOutcome | None] = [None] * len(items)
        todo: list[tuple[int, PushItem]] = []
        for i, item in enumerate(items):
            event = existing.get(item.hub_id)
            if event is not None:
                outcomes[i] = PushResult(item.hub_id, event.remote_id, event.version, event.data)
            else:
                todo.append((i, item))
        if todo:
            sent = [(item.hub_id, fields_for(item.data)) for _, item in todo]
            refs = await self._run(
                "create", cal, self.adapter.create, mailbox, cal.calendar, sent, self.max_batch
            )
            for (i, item), ref in zip(todo, refs, strict=True):
                outcomes[i] = _outcome(item, ref, mailbox)
        return [o for o in outcomes if o is not None]

    async def _updates(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        mailbox = _mailbox(cal)
        sent = [
            (ItemRef(str(item.remote_id), item.version or ""), fields_for(item.data))
            for item in items
        ]
        refs = await self._run("update", cal, self.adapter.update, mailbox, sent, self.max_batch)
        return [_outcome(item, ref, mailbox) for item, ref in zip(items, refs, strict=True)]

    # ------------------------------------------------------------------ plumbing

    async def _run(
        self,
        operation: str,
        cal: CalendarRef,
        fn: Callable[..., T],
        *args: Any,
        item: str | None = None,
    ) -> T:
        """``fn(*args)`` in a worker thread under the account's limiter; faults become hub
        errors. Each call is reported to telemetry as one request (a chunked GetItem or
        CreateItem of more than 50 items is several)."""
        assert self._limiter is not None
        started = time.perf_counter()
        status = CallStatus.OK
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=self._limiter)
        except EwsFault as fault:
            error = error_for(fault, mailbox=cal.mailbox, item=item)
            status = CallStatus.of(error)
            raise error from None
        finally:
            self.telemetry.request(
                self.account.name, operation, status, time.perf_counter() - started
            )

    async def _check_calendar(self, cal: CalendarRef, write: bool) -> list[CheckItem]:
        now = datetime.now(UTC).replace(microsecond=0)
        made: list[PushResult] = []

        async def probe() -> None:
            data = EventData(
                subject="calhub probe (safe to delete)",
                start=now + timedelta(days=365),
                end=now + timedelta(days=365, minutes=5),
                show_as="free",
            )
            sent = [(f"calhub-probe-{now:%Y%m%d%H%M%S}", fields_for(data))]
            (ref,) = await self._run(
                "check", cal, self.adapter.create, _mailbox(cal), cal.calendar, sent, 1
            )
            if isinstance(ref, EwsFault):
                raise error_for(ref, mailbox=cal.mailbox)
            made.append(PushResult("probe", ref.item_id, ref.change_key))

        steps: list[tuple[str, Callable[[], Any]]] = [
            ("mailbox reachable (impersonation)", lambda: self._folder_id(cal)),
            (
                "calendar readable",
                lambda: self._run(
                    "check",
                    cal,
                    self.adapter.calendar_view,
                    _mailbox(cal),
                    cal.calendar,
                    now,
                    now + timedelta(days=1),
                ),
            ),
        ]
        if write:
            steps.append(("probe event created", probe))
            steps.append(("probe event deleted", lambda: self.delete(cal, made[0].remote_id, None)))
        return await run_check_steps(cal, steps)


def option_problems(opts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with an account's options, as (key, reason) pairs; no I/O."""
    problems: list[tuple[str, str]] = []
    url = str(opts.get("url") or "")
    if not url.lower().startswith(("https://", "http://")):
        problems.append(("url", f"{url!r} is not an http(s) URL of EWS (…/EWS/Exchange.asmx)"))
    auth = str(opts.get("auth") or "ntlm").lower()
    if auth not in AUTH_NAMES:
        problems.append(("auth", f"{auth!r} is not one of {', '.join(AUTH_NAMES)}"))
    version = str(opts.get("version") or "")
    if version and version not in EWS_VERSIONS:
        problems.append(
            ("version", f"{version!r} is not one of {', '.join(EWS_VERSIONS)} (or empty)")
        )
    threads = opts.get("max_threads")
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= MAX_THREADS):
        problems.append(("max_threads", f"{threads!r} is not between 1 and {MAX_THREADS}"))
    timeout = opts.get("timeout")
    if timeout is not None and not (isinstance(timeout, int) and timeout > 0):
        problems.append(("timeout", f"{timeout!r} is not a positive number of seconds"))
    return problems


def settings_for(account: AccountConfig) -> Any:
    """The adapter's :class:`Settings` from an account section; PermanentError names a bad key."""
    from plugins.exchange_ews.adapter import Settings

    opts = account.options
    problems = option_problems(opts)
    if problems:
        raise PermanentError(
            "; ".join(f"accounts.{account.name}.{key}: {why}" for key, why in problems)
        )
    return Settings(
        url=str(opts["url"]),
        username=str(opts.get("username") or ""),
        password=str(opts.get("password") or ""),
        auth=str(opts.get("auth") or "ntlm").lower(),
        ca_file=str(opts["ca_file"]) if opts.get("ca_file") else None,
        verify_tls=bool(opts.get("verify_tls", True)),
        version=str(opts.get("version") or ""),
        max_threads=int(opts.get("max_threads") or DEFAULT_THREADS),
        timeout=float(opts.get("timeout") or 60),
    )


def _outcome(item: PushItem, ref: ItemRef | EwsFault, mailbox: str) -> PushOutcome:
    if isinstance(ref, EwsFault):
        return error_for(ref, mailbox=mailbox, item=item.hub_id)
    return PushResult(item.hub_id, ref.item_id, ref.change_key)


def _refused(data: EventData) -> str | None:
    """Why EWS (or exchangelib before it) would refuse this content, checked per item so that
    one bad event never fails a batch."""
    if isinstance(data.start, datetime) != isinstance(data.end, datetime):
        return "start and end must both be dates or both be times"
    start: datetime | date = as_utc(data.start)
    end: datetime | date = as_utc(data.end)
    if end <= start:
        return f"end {data.end} is not after start {data.start}"
    return None


def _series(item: EwsItem) -> str | None:
    return item.uid if item.kind in _SERIES else None


def _mailbox(cal: CalendarRef) -> str:
    if not cal.mailbox:
        raise PermanentError(f"exchange_ews: agent {cal.agent_id} has no email (mailbox)")
    return cal.mailbox
