"""The CalDAV provider: phones (DAVx5, iOS), Nextcloud, iCloud, Fastmail, Radicale, Xandikos.

One provider object serves one ``[accounts.NAME]`` section; each agent calendar is a calendar
collection found by :mod:`plugins.caldav.discovery`. Hub appointments live at
``<collection>/<hub_id>.ics`` with UID ``<hub_id>@calhub``, so a retried create addresses the
same resource (``client_ids``): ``If-None-Match: *`` makes the second attempt a 412, and the
resource found there is linked when it carries our hub id. Updates and deletes send
``If-Match`` with the last etag. Occurrences of recurring external events
(``<href>#<recurrence-id>``) are read-only.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.spec import (
    AccountConfig,
    AuthError,
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
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    Telemetry,
    Window,
    http_url_problem,
)
from plugins.caldav import davxml, ical
from plugins.caldav.checks import run_checks
from plugins.caldav.client import ICAL, Credentials, DavClient, path_url, tls_context
from plugins.caldav.davxml import CALDAV, DAV, tag
from plugins.caldav.discovery import Collection, Discovery
from plugins.caldav.errors import error_for, raise_for
from plugins.caldav.fetcher import Fetcher

# get() of one occurrence expands its series this far around the recurrence id, so an
# override moved by up to a year is still found.
_OCCURRENCE_REACH = timedelta(days=400)
_EVERYTHING = Window(datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


class CalDAVProvider(Provider):
    """Two-way sync with a CalDAV calendar collection per agent."""

    name: ClassVar[str] = "caldav"
    title: ClassVar[str] = "CalDAV (Nextcloud, iCloud, Fastmail, Radicale, phones via DAVx5/iOS)"
    options: ClassVar[Sequence[Option]] = (
        Option("url", required=True, help="server root, principal or calendar home URL"),
        Option("username", help="user name for Basic authentication"),
        Option("password", secret=True, help="password (iCloud: an app-specific password)"),
        Option("token", secret=True, help="bearer token, instead of username/password"),
        Option("ca_file", help="CA bundle (PEM) to trust, for a self-signed server"),
        Option("verify_tls", type=bool, default=True, help="verify the server's certificate"),
        Option("timeout", type=float, default=30.0, help="seconds per request"),
        Option("timezone", default="UTC", help="IANA zone for floating (zone-less) times"),
    )
    supports_delta: ClassVar[bool] = True
    max_batch: ClassVar[int] = 1  # CalDAV writes one resource per request
    client_ids: ClassVar[bool] = True
    max_concurrency: ClassVar[int] = 4
    # The account's principal has one default calendar; the agent's email plays no part.
    calendar_per_mailbox: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        problem = http_url_problem(options.get("url"))
        if problem:
            yield "url", problem
        zone_name = str(options.get("timezone") or "UTC")
        try:
            ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            yield "timezone", f"unknown time zone {zone_name!r}"
        timeout = options.get("timeout")
        if timeout is not None and not 0 < float(timeout) <= 3600:
            yield "timeout", f"expected seconds between 0 and 3600, got {timeout!r}"

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        """Raises ValueError naming the option when the account's options are unusable."""
        super().__init__(account, telemetry)
        opts = account.options
        for key, reason in self.check_options(opts):
            raise ValueError(f"accounts.{account.name}.{key}: {reason}")
        self.zone = ZoneInfo(str(opts.get("timezone") or "UTC"))
        url = str(opts.get("url") or "")
        self.client = DavClient(
            url,
            Credentials(
                username=opts.get("username"),
                password=opts.get("password"),
                token=opts.get("token"),
            ),
            account=account.name,
            telemetry=self.telemetry,
            timeout=float(opts.get("timeout") or 30.0),
            tls=self._tls(account),
        )
        self.discovery = Discovery(self.client)
        self.fetcher = Fetcher(self.client, self.zone)

    @staticmethod
    def _tls(account: AccountConfig) -> ssl.SSLContext | bool:
        opts = account.options
        try:
            return tls_context(opts.get("ca_file") or None, bool(opts.get("verify_tls", True)))
        except ValueError as exc:
            raise ValueError(f"accounts.{account.name}.ca_file: {exc}") from None

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    async def _collection(self, cal: CalendarRef) -> Collection:
        return await self.discovery.collection(cal)

    # ----------------------------------------------------------------------- reading

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        collection = await self._collection(cal)
        try:
            if cursor is None:
                return await self.fetcher.full(collection, window)
            return await self.fetcher.incremental(collection, window, cursor)
        except NotFoundError:
            self.discovery.forget(cal)  # rediscover next time: the calendar may have moved
            raise

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        return await self._get(await self._collection(cal), remote_id)

    async def _get(self, collection: Collection, remote_id: str) -> RemoteEvent:
        path, key = ical.split_occurrence(remote_id)
        reply = await self.client.request("GET", path_url(collection.url, path), operation="get")
        raise_for(reply.status, reply.headers, operation="GET", resource=path, item=remote_id)
        etag = reply.etag or await self._etag(collection, path)
        if key is None:
            window = _EVERYTHING
        else:
            moment = ical.occurrence_time(key)
            window = Window(moment - _OCCURRENCE_REACH, moment + _OCCURRENCE_REACH)
        try:
            resource = await self.fetcher.parse(path, etag, reply.body, window)
        except ical.IcalError as exc:
            raise PermanentError(f"{path}: {exc}", item=remote_id) from None
        for event in resource.events:
            if event.remote_id == remote_id:
                return event
        raise NotFoundError(f"{remote_id} not found", item=remote_id)

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        collection = await self._collection(cal)
        paths = {collection.path + ical.resource_name(h): h for h in hub_ids}
        found: dict[str, RemoteEvent] = {}
        for response in await self.fetcher.multiget(collection, paths):
            raw = response.text(tag(CALDAV, "calendar-data"))
            hub_id = paths.get(response.href)
            if raw is None or hub_id is None:
                continue
            etag = response.text(tag(DAV, "getetag")) or ""
            try:
                resource = await self.fetcher.parse(response.href, etag, raw, _EVERYTHING)
            except ical.IcalError:
                continue  # unreadable: not a resource we wrote
            if resource.hub_id == hub_id and resource.events:
                found[hub_id] = resource.events[0]
        return found

    async def _etag(self, collection: Collection, path: str) -> str:
        """The etag of one resource, for servers that do not return it on PUT/GET."""
        url = path_url(collection.url, path)
        body = davxml.propfind([(DAV, "getetag")])
        status = await self.fetcher.multistatus("PROPFIND", url, body, "0", "propfind")
        for response in status.responses:
            etag = response.text(tag(DAV, "getetag"))
            if etag:
                return etag
        raise PermanentError(f"{path}: the server reports no etag")

    # ----------------------------------------------------------------------- writing

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        collection = await self._collection(cal)
        outcomes: list[PushOutcome] = []
        for item in items:
            try:
                outcomes.append(await self._push(collection, item))
            except AuthError:
                raise  # the whole account needs attention, not this item
            except ProviderError as exc:
                exc.item = exc.item or item.hub_id
                outcomes.append(exc)
        return outcomes

    async def _push(self, collection: Collection, item: PushItem) -> PushResult:
        reason = ical.problem(item.data)
        if reason is not None:
            raise PermanentError(f"{item.hub_id}: {reason}", item=item.hub_id)
        body = ical.to_ical(item.data, item.hub_id)
        if item.remote_id is None:
            path = collection.path + ical.resource_name(item.hub_id)
            headers = {"If-None-Match": "*"}
        else:
            path, key = ical.split_occurrence(item.remote_id)
            if key is not None:
                raise PermanentError(f"{item.remote_id}: occurrences of a series are read-only")
            headers = {"If-Match": item.version} if item.version else {}
        self.fetcher.writing(collection)
        reply = await self.client.request(
            "PUT", path_url(collection.url, path), operation="put", body=body,
            content_type=ICAL, headers=headers,
        )  # fmt: skip
        if reply.status == 412 and item.remote_id is None:
            return await self._link_existing(collection, path, item)
        error = error_for(reply.status, reply.headers, operation="PUT", resource=path)
        if error is not None:
            raise error
        etag = reply.etag or await self._etag(collection, path)
        self.fetcher.written[path] = etag
        return PushResult(item.hub_id, path, etag, item.data)

    async def _link_existing(self, collection: Collection, path: str, item: PushItem) -> PushResult:
        """A create met an existing resource: ours from an earlier attempt, or a stranger's."""
        try:
            existing = await self._get(collection, path)
        except NotFoundError:
            raise PreconditionFailed(f"PUT {path}: exists, then vanished") from None
        if existing.hub_id != item.hub_id:
            raise PreconditionFailed(f"PUT {path}: a resource not made for this hub id is there")
        return PushResult(item.hub_id, path, existing.version, existing.data)

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        collection = await self._collection(cal)
        path, key = ical.split_occurrence(remote_id)
        if key is not None:
            raise PermanentError(f"{remote_id}: occurrences of a series are read-only")
        self.fetcher.writing(collection)
        reply = await self.client.request(
            "DELETE", path_url(collection.url, path), operation="delete",
            headers={"If-Match": version} if version else {},
        )  # fmt: skip
        raise_for(reply.status, reply.headers, operation="DELETE", resource=path, item=remote_id)

    # ----------------------------------------------------------------------- check

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        return await run_checks(self, cals, write=write)


def probe_event() -> EventData:
    """The short event ``calhub check --write`` creates and deletes again."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    end = start + timedelta(minutes=5)
    return EventData(subject="calhub check (safe to delete)", start=start, end=end)


__all__ = ["CalDAVProvider", "probe_event"]
