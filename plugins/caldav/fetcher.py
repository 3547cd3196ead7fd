"""Reading a calendar collection: the full window listing and incremental changes.

Full fetch: PROPFIND depth 0 for the collection's ``CS:getctag``, then one for its
``sync-token`` and supported reports, then a calendar-query with the window's time-range (3
requests). Incremental fetch: the ctag again (PROPFIND depth 0); unchanged, the fetch ends
there (1 request). Otherwise an RFC 6578 sync-collection REPORT from the stored token, then
calendar-multiget for the changed resources in batches. A server without a ctag gets the
REPORT straight away (1 request when nothing changed). A server without sync-collection gets
an etag listing (PROPFIND depth 1) compared with the etags kept in the cursor instead; the
switch is reported once through ``FetchResult.notices`` and the log, never silently.

Why the ctag first: a server answers it far more cheaply than the REPORT or the sync-token
(Radicale: about 0.7x the REPORT's time, Xandikos: about 0.1x), and most passes find nothing
changed. But Radicale's and Xandikos's ctags are hashes of the content: an event this hub
wrote and the agent then deleted brings back the very ctag read before the write. So a ctag
is trusted only while nothing was written since, in this process, and only once a change
listing confirmed that it names the state the hub knows (the listing after it found nothing
the hub did not already know); otherwise the listing runs as well (2 requests). A cursor
this process did not issue (after a restart, or another process's) is never trusted.

Resources are read through :mod:`plugins.caldav.ical`; one that cannot be parsed is skipped
with its reason, the rest of the calendar still syncs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, tzinfo

import anyio

from hub.spec import (
    CursorInvalid,
    FetchResult,
    NotFoundError,
    PermanentError,
    SkippedEvent,
    Window,
)
from plugins.caldav import davxml
from plugins.caldav.client import XML, DavClient, quote_path
from plugins.caldav.cursor import Cursor
from plugins.caldav.davxml import CALDAV, CS, DAV, tag
from plugins.caldav.discovery import Collection
from plugins.caldav.errors import raise_for
from plugins.caldav.ical import (
    OCCURRENCE_SEP,
    IcalError,
    Resource,
    occurrence_time,
    read_resource,
)

log = logging.getLogger(__name__)

MULTIGET_BATCH = 100  # hrefs per calendar-multiget: about one request per 100 changed events
_MAX_SYNC_PAGES = 100  # a server truncating sync-collection (507) is asked again, this often
_SYNC_UNSUPPORTED = {400, 405, 415, 501}  # REPORT refused as such, not the token
_VALID_SYNC_TOKEN = tag(DAV, "valid-sync-token")
_SYNC_REPORT = tag(DAV, "sync-collection")
_COLLECTION_PROPS = [(DAV, "resourcetype"), (DAV, "sync-token"), (DAV, "supported-report-set")]


class SyncUnavailable(Exception):
    """The server refused sync-collection itself (not the token)."""


def sync_unavailable_notice(collection: Collection) -> str:
    return (
        f"CalDAV server has no sync-collection (RFC 6578) for {collection.url}: using an etag "
        "listing (PROPFIND depth 1), so each pass that finds a change lists every event's etag"
    )


class Fetcher:
    """Full and incremental fetches of one account's collections."""

    def __init__(self, client: DavClient, zone: tzinfo) -> None:
        self._client = client
        self._zone = zone
        # icalendar parsing is CPU-bound pure Python (about half a second per 1,000 events):
        # it runs in a worker thread so other agents' requests keep flowing on the loop.
        self._parsers = anyio.CapacityLimiter(2)
        self._noticed: set[str] = set()  # collections whose fallback was reported already
        # Etags of resources this provider wrote itself: the engine got them from push(), so
        # the next fetch need not download them again (one request, not two, after a write).
        self.written: dict[str, str] = {}
        # collection URL -> the cursor whose ctag may be trusted (see the module docstring)
        self._trusted: dict[str, str] = {}

    # ----------------------------------------------------------------------- requests

    async def multistatus(
        self, method: str, url: str, body: bytes, depth: str, operation: str
    ) -> davxml.Multistatus:
        """One PROPFIND or REPORT; raises the mapped ProviderError for any failure."""
        reply = await self._client.request(
            method, url, operation=operation, body=body, content_type=XML, depth=depth
        )
        label = method if method != "REPORT" else f"REPORT {operation.partition(':')[2]}"
        raise_for(reply.status, reply.headers, operation=label, resource=url)
        return _parse(reply.body, label, url)

    async def collection_props(self, collection: Collection) -> davxml.DavResponse:
        """PROPFIND depth 0 of the collection; raises NotFoundError when it does not exist."""
        response = await self._own_props(collection, _COLLECTION_PROPS)
        if response is None:
            raise PermanentError(f"PROPFIND {collection.url}: the collection did not answer")
        if response.status in (404, 410):
            # Xandikos answers 207 with a 404 response for a collection that does not exist.
            raise NotFoundError(f"PROPFIND {collection.url}: HTTP {response.status} (not found)")
        if not response.has_child(tag(DAV, "resourcetype"), tag(CALDAV, "calendar")):
            raise PermanentError(f"{collection.url} is not a calendar collection")
        return response

    async def ctag(self, collection: Collection) -> str | None:
        """The collection's ``CS:getctag`` (PROPFIND depth 0); None when the server has none."""
        response = await self._own_props(collection, [(CS, "getctag")])
        return (response.text(tag(CS, "getctag")) or None) if response is not None else None

    async def _own_props(
        self, collection: Collection, props: Iterable[tuple[str, str]]
    ) -> davxml.DavResponse | None:
        """PROPFIND depth 0: the collection's own response, None when it is not among them."""
        status = await self.multistatus(
            "PROPFIND", collection.url, davxml.propfind(props), "0", "propfind"
        )
        own = collection.path.rstrip("/")
        return next((r for r in status.responses if r.href.rstrip("/") == own), None)

    async def etag_listing(self, collection: Collection) -> dict[str, str]:
        """Every resource's etag (PROPFIND depth 1), keyed by decoded path."""
        props = [(DAV, "getetag"), (DAV, "resourcetype")]
        status = await self.multistatus(
            "PROPFIND", collection.url, davxml.propfind(props), "1", "propfind"
        )
        return {
            r.href: r.text(tag(DAV, "getetag")) or ""
            for r in status.responses
            if _is_member(r, collection)
            and not r.has_child(tag(DAV, "resourcetype"), tag(DAV, "collection"))
        }

    async def query(
        self, collection: Collection, start: datetime, end: datetime, *, data: bool
    ) -> list[davxml.DavResponse]:
        """calendar-query for events overlapping [start, end)."""
        body = davxml.calendar_query(start, end, data=data)
        status = await self.multistatus(
            "REPORT", collection.url, body, "1", "report:calendar-query"
        )
        return [r for r in status.responses if _is_member(r, collection)]

    async def multiget(
        self, collection: Collection, paths: Iterable[str]
    ) -> list[davxml.DavResponse]:
        """calendar-multiget in batches of :data:`MULTIGET_BATCH`."""
        found: list[davxml.DavResponse] = []
        ordered = sorted(paths)
        for i in range(0, len(ordered), MULTIGET_BATCH):
            body = davxml.calendar_multiget(quote_path(p) for p in ordered[i : i + MULTIGET_BATCH])
            status = await self.multistatus("REPORT", collection.url, body, "1", "report:multiget")
            found.extend(r for r in status.responses if _is_member(r, collection))
        return found

    async def sync_changes(
        self, collection: Collection, token: str
    ) -> tuple[dict[str, str], set[str], str]:
        """Changed paths (with etags), deleted paths and the new token since ``token``."""
        changed: dict[str, str] = {}
        deleted: set[str] = set()
        for _ in range(_MAX_SYNC_PAGES):
            reply = await self._client.request(
                "REPORT", collection.url, operation="report:sync-collection",
                body=davxml.sync_collection(token), content_type=XML, depth="0",
            )  # fmt: skip
            if reply.status == 410 or (
                reply.status in (403, 409, 412)
                and _VALID_SYNC_TOKEN in davxml.error_preconditions(reply.body)
            ):
                raise CursorInvalid(f"sync-token rejected by {collection.url}")
            if reply.status in _SYNC_UNSUPPORTED:
                raise SyncUnavailable(reply.status)
            raise_for(
                reply.status, reply.headers, operation="REPORT sync-collection",
                resource=collection.url,
            )  # fmt: skip
            status = _parse(reply.body, "report:sync-collection", collection.url)
            truncated = False
            for r in status.responses:
                if not _is_member(r, collection):
                    truncated = truncated or r.status == 507
                elif r.status == 404:
                    deleted.add(r.href)
                    changed.pop(r.href, None)
                else:
                    changed[r.href] = r.text(tag(DAV, "getetag")) or ""
                    deleted.discard(r.href)
            token = status.sync_token or token
            if not truncated:
                return changed, deleted, token
        raise PermanentError(f"sync-collection of {collection.url} never finished paging")

    # ----------------------------------------------------------------------- fetches

    async def full(
        self, collection: Collection, window: Window, *, force_etag: bool = False
    ) -> FetchResult:
        """Every event in the window, and a cursor for the next incremental fetch."""
        self._trusted.pop(collection.url, None)  # the listing may be newer than its ctag
        # The ctag is read before the token and the listing: a change landing in between is
        # listed again next time (the ctag moved), never missed.
        ctag = await self.ctag(collection)
        props = await self.collection_props(collection)
        self._forget_writes(collection)  # a full listing returns every version anyway
        token = props.text(tag(DAV, "sync-token"))
        reports = props.props.get(tag(DAV, "supported-report-set"))
        advertised = reports is None or reports.find(f".//{_SYNC_REPORT}") is not None
        result = FetchResult(full=True)
        if token and advertised and not force_etag:
            cursor = Cursor("sync", collection.url, window, token=token)
        else:
            cursor = Cursor("etag", collection.url, window)
            cursor.etags = await self.etag_listing(collection)
            self._notice(collection, result)
        cursor.ctag = ctag
        found = await self.query(collection, window.start, window.end, data=True)
        await self._take_all(found, window, cursor, result, incremental=False)
        result.cursor = cursor.encode()
        return result

    def writing(self, collection: Collection) -> None:
        """Called before any write to ``collection``: its stored ctag is trusted no more."""
        self._trusted.pop(collection.url, None)

    async def incremental(self, collection: Collection, window: Window, text: str) -> FetchResult:
        """What changed since the cursor ``text``; raises CursorInvalid for a rejected token."""
        cursor = Cursor.decode(text)
        if cursor.collection != collection.url:
            raise CursorInvalid("the cursor belongs to another calendar collection")
        ctag = await self.ctag(collection) if cursor.ctag else None
        if ctag is not None and ctag == cursor.ctag and self._trusted.get(collection.url) == text:
            if not _new_slices(cursor.window, window):
                return FetchResult(full=False, cursor=text)  # nothing changed: 1 request
            changed: dict[str, str] = {}
            deleted: set[str] = set()
        else:
            try:
                changed, deleted = await self._changes(collection, cursor)
            except SyncUnavailable:
                return await self.full(collection, window, force_etag=True)
            cursor.ctag = ctag
        self._trusted.pop(collection.url, None)
        self._drop_own_writes(collection, changed, deleted)
        known = not changed and not deleted  # the hub knows this state: the ctag names it
        for start, end in _new_slices(cursor.window, window):
            for r in await self.query(collection, start, end, data=False):
                changed.setdefault(r.href, r.text(tag(DAV, "getetag")) or "")
        cursor.window = window
        result = FetchResult(full=False)
        for path in sorted(deleted):
            self._deleted(path, cursor, result)
        if changed:
            found = []
            for r in await self.multiget(collection, changed):
                if r.status == 404 or tag(CALDAV, "calendar-data") not in r.props:
                    self._deleted(r.href, cursor, result)  # gone between listing and multiget
                else:
                    found.append(r)
            await self._take_all(found, window, cursor, result, incremental=True)
        _prune(cursor, window)
        result.cursor = cursor.encode()
        if known and cursor.ctag is not None:
            self._trusted[collection.url] = result.cursor
        return result

    def _drop_own_writes(
        self, collection: Collection, changed: dict[str, str], deleted: set[str]
    ) -> None:
        """Remove this provider's own writes (the hub knows them) from ``changed``.

        Every write the listing covered is forgotten. One it does not mention at all was
        undone since the cursor's state, on a server whose tokens name content (Xandikos: an
        event created and deleted again brings the old token back): it goes into ``changed``
        so that the multiget reads what is there now."""
        for path, etag in self._forget_writes(collection).items():
            if path in deleted:
                continue
            if path not in changed:
                changed[path] = ""
            elif etag and changed[path] == etag:
                del changed[path]

    def _forget_writes(self, collection: Collection) -> dict[str, str]:
        """Take this provider's writes to ``collection`` (path -> etag) out of ``written``."""
        mine = [p for p in self.written if p.startswith(collection.path)]
        return {path: self.written.pop(path) for path in mine}

    async def _changes(
        self, collection: Collection, cursor: Cursor
    ) -> tuple[dict[str, str], set[str]]:
        """Changed paths (with etags) and deleted paths since ``cursor``, which moves on."""
        if cursor.mode == "sync":
            changed, deleted, cursor.token = await self.sync_changes(collection, cursor.token or "")
            return changed, deleted
        listing = await self.etag_listing(collection)
        changed = {h: e for h, e in listing.items() if cursor.etags.get(h) != e}
        deleted = set(cursor.etags) - set(listing)
        cursor.etags = listing
        return changed, deleted

    # ----------------------------------------------------------------------- assembly

    def _notice(self, collection: Collection, result: FetchResult) -> None:
        if collection.url in self._noticed:
            return
        self._noticed.add(collection.url)
        notice = sync_unavailable_notice(collection)
        log.warning("%s", notice)
        result.notices.append(notice)

    def _deleted(self, path: str, cursor: Cursor, result: FetchResult) -> None:
        result.deleted.append(path)
        result.deleted.extend(f"{path}{OCCURRENCE_SEP}{k}" for k in cursor.series.pop(path, []))

    async def parse(self, path: str, etag: str, raw: bytes | str, window: Window) -> Resource:
        """One resource's events, parsed in a worker thread; raises IcalError."""
        return await anyio.to_thread.run_sync(
            read_resource, path, etag, raw, window, self._zone, limiter=self._parsers
        )

    async def _take_all(
        self,
        responses: Sequence[davxml.DavResponse],
        window: Window,
        cursor: Cursor,
        result: FetchResult,
        *,
        incremental: bool,
    ) -> None:
        def take_all() -> None:
            for response in responses:
                self._take(response, window, cursor, result, incremental=incremental)

        if responses:
            await anyio.to_thread.run_sync(take_all, limiter=self._parsers)

    def _take(
        self,
        response: davxml.DavResponse,
        window: Window,
        cursor: Cursor,
        result: FetchResult,
        *,
        incremental: bool,
    ) -> None:
        path = response.href
        etag = response.text(tag(DAV, "getetag")) or ""
        raw = response.text(tag(CALDAV, "calendar-data")) or ""
        try:
            resource = read_resource(path, etag, raw, window, self._zone)
        except IcalError as exc:
            result.skipped.append(SkippedEvent(path, str(exc)))
            return
        old = set(cursor.series.pop(path, []))
        if resource.series:
            keys = [e.remote_id.rpartition(OCCURRENCE_SEP)[2] for e in resource.events]
            if keys:
                cursor.series[path] = keys
            if incremental and not old:
                result.deleted.append(path)  # it may have been a single event until now
            old -= set(keys)
        for key in sorted(old):
            target = result.deleted if _in_window(key, window) else result.left_window
            target.append(f"{path}{OCCURRENCE_SEP}{key}")
        result.changed.extend(resource.events)
        result.left_window.extend(resource.outside)


def _parse(body: bytes, operation: str, url: str) -> davxml.Multistatus:
    try:
        return davxml.parse_multistatus(body)
    except davxml.XmlError as exc:
        raise PermanentError(f"{operation} {url}: {exc}") from None


def _is_member(response: davxml.DavResponse, collection: Collection) -> bool:
    """A resource inside the collection (not the collection itself)."""
    base = collection.path.rstrip("/") + "/"
    return response.href.startswith(base) and response.href.rstrip("/") != base.rstrip("/")


def _in_window(key: str, window: Window) -> bool:
    moment = occurrence_time(key)
    return window.start <= moment < window.end


def _new_slices(old: Window, new: Window) -> list[tuple[datetime, datetime]]:
    """Parts of ``new`` that ``old`` did not cover (the window moves forward day by day)."""
    slices = []
    if new.start < old.start:
        slices.append((new.start, min(old.start, new.end)))
    if new.end > old.end:
        slices.append((max(old.end, new.start), new.end))
    return slices


def _prune(cursor: Cursor, window: Window) -> None:
    # Occurrences long gone out of the window can never be reported again: drop their keys
    # so the cursor does not grow with every passing day.
    horizon = window.start - timedelta(days=1)
    for path in list(cursor.series):
        keys = [k for k in cursor.series[path] if occurrence_time(k) >= horizon]
        if keys:
            cursor.series[path] = keys
        else:
            del cursor.series[path]
