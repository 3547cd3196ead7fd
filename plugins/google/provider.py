"""The ``google`` provider: agents' Google Calendar calendars through aiogoogle.

One provider object serves one ``[accounts.NAME]``, in one of two modes:

* **Workspace**: ``service_account_file`` names a service-account key with domain-wide
  delegation for the ``calendar.events`` scope; each agent's ``email`` is impersonated with
  its own token.
* **Personal accounts**: ``client_id`` and ``client_secret`` of a "desktop app" OAuth client;
  each agent consents once with ``calhub authorize ACCOUNT --agent ID`` and its refresh token
  is kept in the hub's database (:class:`hub.spec.AgentSecrets`).

An agent's ``calendar`` is a calendar id; empty means the user's primary calendar. Every
write sends ``sendUpdates=none`` and never attendees: no invitation is ever sent. aiogoogle is
the optional extra ``calhub[google]``, imported in :meth:`GoogleProvider.open`, so the plugin
registers (and ``calhub providers`` lists it) without it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from hub.spec import (
    AccountConfig,
    CalendarRef,
    CheckItem,
    EventData,
    FetchResult,
    NotFoundError,
    Option,
    PermanentError,
    Provider,
    ProviderError,
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    Telemetry,
    Window,
    run_check_steps,
)
from plugins.google.errors import error_for
from plugins.google.mapping import (
    HUB_ID_KEY,
    MappingError,
    event_body,
    event_id,
    is_cancelled,
    remote_event,
    rfc3339,
)

if TYPE_CHECKING:
    from aiogoogle.models import Request

    from plugins.google.client import GoogleHttp, Response

DEFAULT_BASE_URL = "https://www.googleapis.com/"
INSTALL_HINT = "google needs aiogoogle: install calhub[google]"
PRIMARY = "primary"
# Follow-up rounds of one push (link a 409 to its event, then update or re-create it).
_MAX_ROUNDS = 3


class GoogleProvider(Provider):
    """Google Calendar: sync-token reads, batched writes, Workspace or personal accounts."""

    name: ClassVar[str] = "google"
    title: ClassVar[str] = "Google Calendar (Workspace or personal accounts)"
    supports_delta: ClassVar[bool] = True
    max_batch: ClassVar[int] = 50
    client_ids: ClassVar[bool] = True
    max_concurrency: ClassVar[int] = 4
    options: ClassVar[Sequence[Option]] = (
        Option("service_account_file", help="service-account key (JSON), domain-wide delegation"),
        Option("client_id", help="OAuth client id (desktop app) for personal accounts"),
        Option("client_secret", secret=True, help="that client's secret (client_secret_env)"),
        Option("base_url", default=DEFAULT_BASE_URL, help="API root, for proxies and tests"),
        Option("token_url", help="OAuth token endpoint (default Google's)"),
        Option("auth_url", help="OAuth consent page for calhub authorize (default Google's)"),
        Option("ca_file", help="CA bundle for TLS (proxies, tests)"),
        Option("page_size", type=int, default=250, help="events per listing page (max 2500)"),
        Option(
            "requests_per_minute",
            type=int,
            default=500,
            help="calls per user per minute (Google allows 600)",
        ),
    )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        key, client = options.get("service_account_file"), options.get("client_id")
        if key and client:
            yield "client_id", "set service_account_file (Workspace) or client_id, not both"
        elif not key and not client:
            yield (
                "service_account_file",
                "set service_account_file (Workspace) or client_id + client_secret_env"
                " (personal accounts)",
            )
        elif client and not options.get("client_secret"):
            yield "client_secret", "client_id needs client_secret_env (or client_secret_file)"
        split = urlsplit(str(options.get("base_url") or DEFAULT_BASE_URL))
        if split.scheme != "https" and split.hostname not in ("127.0.0.1", "localhost"):
            yield "base_url", "must be an https URL"
        if not 1 <= int(options.get("page_size") or 250) <= 2500:
            yield "page_size", "must be 1..2500 (Google's maxResults)"
        if int(options.get("requests_per_minute") or 500) < 1:
            yield "requests_per_minute", "must be at least 1"

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        super().__init__(account, telemetry)
        self._http: GoogleHttp | None = None
        self._zones: dict[str, str] = {}  # calendar -> its time zone, from listings

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._http is not None:
            return
        try:
            from plugins.google.connect import connect
        except ImportError as exc:
            raise PermanentError(f"{INSTALL_HINT} ({exc.name} is missing)") from exc
        self._http = await connect(
            self.account,
            self.telemetry,
            lambda: self.secrets,
            base_url=str(self.account.options.get("base_url") or DEFAULT_BASE_URL),
            concurrency=self.max_concurrency,
        )

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    @property
    def http(self) -> GoogleHttp:
        if self._http is None:
            raise PermanentError("google: provider used before open()")
        return self._http

    # ------------------------------------------------------------------ contract

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        from plugins.google.listing import list_events

        page = min(2500, max(1, int(self.account.options.get("page_size") or 250)))
        listing = await list_events(self.http, cal, _calendar_id(cal), window, cursor, page)
        if listing.zone:
            self._zones[_zone_key(cal)] = listing.zone
        return listing.result

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        from plugins.google.batch import MAX_BATCH

        outcomes: list[PushOutcome] = []
        for start in range(0, len(items), MAX_BATCH):
            chunk = list(items[start : start + MAX_BATCH])
            try:
                outcomes.extend(await self._push_chunk(cal, chunk, _MAX_ROUNDS))
            except ProviderError as exc:
                if not outcomes:
                    raise
                # Earlier chunks went through: their results must reach the engine.
                outcomes.extend(exc for _ in chunk)
        return outcomes

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        request = self.http.events.delete(
            calendarId=_calendar_id(cal), eventId=remote_id, sendUpdates="none"
        )
        _if_match(request, version)
        await self._send_ok(cal, request, "delete", remote_id)

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        request = self.http.events.get(calendarId=_calendar_id(cal), eventId=remote_id)
        reply = await self._send_ok(cal, request, "get", remote_id)
        if is_cancelled(reply.body):
            raise NotFoundError(f"google: event {remote_id} was deleted", item=remote_id)
        try:
            return remote_event(reply.body, self._zones.get(_zone_key(cal)))
        except MappingError as exc:
            raise PermanentError(f"google: {exc}", item=remote_id) from exc

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        from plugins.google.batch import MAX_BATCH, run_batch

        found: dict[str, RemoteEvent] = {}
        ids = list(dict.fromkeys(hub_ids))
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start : start + MAX_BATCH]
            requests = [
                self.http.events.list(
                    calendarId=_calendar_id(cal),
                    privateExtendedProperty=f"{HUB_ID_KEY}={hub_id}",
                    singleEvents="true",
                    maxResults=10,
                )
                for hub_id in chunk
            ]
            replies = await run_batch(self.http, cal, requests, operation="find")
            for hub_id, reply in zip(chunk, replies, strict=True):
                _raise_for(reply, cal, hub_id)
                body = reply.body if isinstance(reply.body, dict) else {}
                for item in body.get("items") or ():
                    try:
                        event = remote_event(item, body.get("timeZone"))
                    except MappingError:
                        continue  # not readable, so not ours to link
                    if event.hub_id == hub_id and not is_cancelled(item):
                        found.setdefault(hub_id, event)
        return found

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        try:
            await self.open()
        except ProviderError as exc:
            return [CheckItem("connect", False, exc.message)]
        items: list[CheckItem] = []
        for cal in cals:
            items.extend(await self._check_calendar(cal, write))
        return items

    async def authorize(self, cal: CalendarRef, say: Callable[[str], None]) -> str:
        from plugins.google.consent import run_consent

        if self.secrets is None:
            raise PermanentError("google: authorize needs the hub's database")
        return await run_consent(self.account, cal, self.secrets, say, self.http)

    # ------------------------------------------------------------------ writes

    async def _push_chunk(
        self, cal: CalendarRef, chunk: list[PushItem], rounds: int
    ) -> list[PushOutcome]:
        """One batch for ``chunk``; creates answered 409 (made by an earlier attempt) are
        linked to their event, updated if its content is not what was asked, or re-created
        under another id if that event was deleted."""
        from plugins.google.batch import run_batch

        outcomes: list[PushOutcome | None] = [None] * len(chunk)
        requests: list[Request] = []
        sent: list[int] = []
        for i, item in enumerate(chunk):
            try:
                requests.append(self._write_request(cal, item))
                sent.append(i)
            except MappingError as exc:
                outcomes[i] = PermanentError(f"google: {exc}", item=item.hub_id)
        replies = await run_batch(self.http, cal, requests, operation="push") if requests else []
        taken: list[int] = []
        for i, reply in zip(sent, replies, strict=True):
            item = chunk[i]
            if reply.status == 409 and item.remote_id is None and rounds > 1:
                taken.append(i)
            else:
                outcomes[i] = self._push_outcome(cal, item, reply)
        if taken:
            linked = await self._link(cal, [chunk[i] for i in taken], rounds - 1)
            for i, outcome in zip(taken, linked, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    async def _link(
        self, cal: CalendarRef, creates: list[PushItem], rounds: int
    ) -> list[PushOutcome]:
        from plugins.google.batch import run_batch

        ids = [event_id(item.hub_id, item.replaces) for item in creates]
        requests = [self.http.events.get(calendarId=_calendar_id(cal), eventId=eid) for eid in ids]
        replies = await run_batch(self.http, cal, requests, operation="link")
        outcomes: list[PushOutcome | None] = [None] * len(creates)
        again: list[tuple[int, PushItem]] = []
        for i, (item, eid, reply) in enumerate(zip(creates, ids, replies, strict=True)):
            if not reply.ok:
                outcomes[i] = self._push_outcome(cal, item, reply)
            elif is_cancelled(reply.body):
                # Google keeps a deleted event's id: create under an id of its own.
                again.append((i, replace(item, replaces=eid)))
            else:
                outcomes[i] = self._linked(cal, item, reply.body, again, i)
        if again:
            redone = await self._push_chunk(cal, [item for _, item in again], rounds)
            for (i, _), outcome in zip(again, redone, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _linked(
        self,
        cal: CalendarRef,
        item: PushItem,
        body: Any,
        again: list[tuple[int, PushItem]],
        index: int,
    ) -> PushOutcome | None:
        try:
            event = remote_event(body, self._zones.get(_zone_key(cal)))
        except MappingError as exc:
            return PermanentError(f"google: {exc}", item=item.hub_id)
        if event.hub_id != item.hub_id:
            return PermanentError(
                f"google: event id {event.remote_id} belongs to another event", item=item.hub_id
            )
        if event.data.content_hash() == item.data.content_hash():
            return PushResult(item.hub_id, event.remote_id, event.version, event.data)
        # Made by an earlier attempt with older content: bring it up to date.
        again.append((index, replace(item, remote_id=event.remote_id, version=event.version)))
        return None

    def _write_request(self, cal: CalendarRef, item: PushItem) -> Request:
        zone = self._zones.get(_zone_key(cal), "UTC")
        if item.remote_id is None:
            body = event_body(item.data, zone, item.hub_id, item.replaces)
            return self.http.events.insert(
                calendarId=_calendar_id(cal), sendUpdates="none", json=body
            )
        body = event_body(item.data, zone, item.hub_id)
        del body["id"]  # an event's id is fixed at its creation
        request = self.http.events.patch(
            calendarId=_calendar_id(cal),
            eventId=item.remote_id,
            sendUpdates="none",
            json=body,
        )
        _if_match(request, item.version)
        return request

    def _push_outcome(self, cal: CalendarRef, item: PushItem, reply: Response) -> PushOutcome:
        if not reply.ok:
            return error_for(
                reply.status, reply.headers, reply.body, mailbox=cal.mailbox, item=item.hub_id
            )
        try:
            event = remote_event(reply.body, self._zones.get(_zone_key(cal)))
        except MappingError as exc:
            return PermanentError(f"google: {exc}", item=item.hub_id)
        return PushResult(item.hub_id, event.remote_id, event.version, event.data)

    async def _send_ok(
        self, cal: CalendarRef, request: Request, operation: str, item: str | None = None
    ) -> Response:
        return _raise_for(await self.http.send(cal, request, operation=operation), cal, item)

    # ------------------------------------------------------------------ check

    async def _check_calendar(self, cal: CalendarRef, write: bool) -> list[CheckItem]:
        from aiogoogle.models import Request as AioRequest

        now = datetime.now(UTC).replace(microsecond=0)
        made: list[str] = []

        async def token() -> None:
            await self.http.tokens.authorize(cal, AioRequest(method="GET", url=""))

        async def readable() -> None:
            request = self.http.events.list(
                calendarId=_calendar_id(cal),
                singleEvents="true",
                timeMin=rfc3339(now),
                timeMax=rfc3339(now + timedelta(days=1)),
                maxResults=1,
            )
            await self._send_ok(cal, request, "check")

        async def create_probe() -> None:
            probe = EventData(
                subject="calhub probe (safe to delete)",
                start=now + timedelta(days=365),
                end=now + timedelta(days=365, minutes=5),
                show_as="free",
            )
            body = event_body(probe, "UTC", f"calhub-probe-{secrets.token_hex(8)}")
            request = self.http.events.insert(
                calendarId=_calendar_id(cal), sendUpdates="none", json=body
            )
            reply = await self._send_ok(cal, request, "check")
            made.append(str(reply.body["id"]))

        how = (
            "token (impersonation)" if self.account.options.get("service_account_file") else "token"
        )
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            (f"{how} acquired", token),
            ("calendar readable", readable),
        ]
        if write:
            steps.append(("probe event created", create_probe))
            steps.append(("probe event deleted", lambda: self.delete(cal, made[0], None)))
        return await run_check_steps(cal, steps)


def _raise_for(reply: Response, cal: CalendarRef, item: str | None = None) -> Response:
    if not reply.ok:
        raise error_for(reply.status, reply.headers, reply.body, mailbox=cal.mailbox, item=item)
    return reply


def _if_match(request: Request, version: str | None) -> None:
    # No version (an event never read back) means an unconditional write.
    if version:
        request.headers["If-Match"] = version


def _calendar_id(cal: CalendarRef) -> str:
    return cal.calendar or PRIMARY


def _zone_key(cal: CalendarRef) -> str:
    return json.dumps([cal.agent_id, cal.mailbox.lower(), cal.calendar])
