"""The ``graph365`` provider: agents' Microsoft 365 calendars through Microsoft Graph.

One provider object serves one ``[accounts.NAME]`` (an Entra ID app with the
Calendars.ReadWrite application permission); each agent's calendar is ``/users/{email}``
(or ``/users/{email}/calendars/{id}`` when the agent names a calendar).

msgraph-sdk and azure-identity are the optional extra ``calhub[graph]``: they are imported in
:meth:`GraphProvider.open`, so the plugin registers (and ``calhub providers`` lists it)
without them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import anyio

from hub.spec import (
    AccountConfig,
    CalendarRef,
    CheckItem,
    EventData,
    FetchResult,
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
    http_url_problem,
    run_check_steps,
)
from plugins.graph365.batch import MAX_BATCH, BatchRequest, run_batch
from plugins.graph365.delta import fetch_delta
from plugins.graph365.errors import error_for
from plugins.graph365.mapping import (
    MappingError,
    event_body,
    hub_id_expand,
    hub_id_filter,
    remote_event,
    utc_param,
)
from plugins.graph365.wire import Response

if TYPE_CHECKING:
    from plugins.graph365.client import GraphHttp

DEFAULT_BASE_URL = "https://graph.microsoft.com/v1.0"
# A sanity bound for odata.maxpagesize (Graph caps pages itself; no documented maximum).
MAX_PAGE_SIZE = 1000
INSTALL_HINT = "graph365 needs msgraph-sdk and azure-identity: install calhub[graph]"


class GraphProvider(Provider):
    """Microsoft 365 calendars over Graph: delta reads, $batch writes, app-only auth."""

    name: ClassVar[str] = "graph365"
    title: ClassVar[str] = "Microsoft 365 (Microsoft Graph)"
    supports_delta: ClassVar[bool] = True
    max_batch: ClassVar[int] = 20
    max_concurrency: ClassVar[int] = 4
    options: ClassVar[Sequence[Option]] = (
        Option("tenant_id", required=True, help="Entra ID tenant (directory) id"),
        Option("client_id", required=True, help="application (client) id"),
        Option("client_secret", secret=True, help="client secret (use client_secret_env)"),
        Option("certificate_file", help="PEM with the app's private key and certificate"),
        Option("authority", help="Entra ID host for national clouds or tests"),
        Option("base_url", default=DEFAULT_BASE_URL, help="Graph endpoint, incl. version"),
        Option("scope", help="token scope; default: the Graph host's /.default"),
        Option("ca_file", help="CA bundle for TLS (proxies, tests)"),
        Option("page_size", type=int, default=100, help="events per delta page"),
    )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        for key in ("base_url", "authority"):
            if options.get(key):
                problem = http_url_problem(options[key])
                if problem:
                    yield key, problem
        page = options.get("page_size")
        if page is not None and not 1 <= page <= MAX_PAGE_SIZE:
            yield "page_size", f"expected 1 to {MAX_PAGE_SIZE} events per page, got {page!r}"
        if options.get("client_secret") and options.get("certificate_file"):
            yield "client_secret", "set client_secret or certificate_file, not both"

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        super().__init__(account, telemetry)
        self._http: GraphHttp | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._http is not None:
            return
        try:
            from plugins.graph365.auth import build_credential, scope_for
            from plugins.graph365.client import GraphHttp, tls_context
        except ImportError as exc:
            raise PermanentError(f"{INSTALL_HINT} ({exc.name} is missing)") from exc
        opts = self.account.options
        base_url = str(opts.get("base_url") or DEFAULT_BASE_URL)
        # Both read files (certificate, CA bundle): off the event loop.
        credential = await anyio.to_thread.run_sync(build_credential, opts)
        verify = await anyio.to_thread.run_sync(tls_context, opts.get("ca_file"))
        try:
            self._http = GraphHttp(
                base_url=base_url,
                credential=credential,
                scope=scope_for(base_url, opts.get("scope")),
                account=self.account.name,
                telemetry=self.telemetry,
                verify=verify,
                per_mailbox=self.max_concurrency,
            )
        except BaseException:
            await credential.close()
            raise

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    @property
    def http(self) -> GraphHttp:
        if self._http is None:
            raise PermanentError("graph365: provider used before open()")
        return self._http

    # ------------------------------------------------------------------ contract

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        page = int(self.account.options.get("page_size") or 100)
        return await fetch_delta(self.http, cal.mailbox, _cal_path(cal), window, cursor, page)

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        path = _cal_path(cal)
        outcomes: list[PushOutcome] = []
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start : start + MAX_BATCH]
            requests = [self._push_request(path, item) for item in chunk]
            try:
                replies = await run_batch(self.http, cal.mailbox, requests, operation="push")
            except ProviderError as exc:
                if not outcomes:
                    raise
                # Earlier chunks went through: their results must reach the engine.
                outcomes.extend(exc for _ in chunk)
                continue
            outcomes.extend(
                _push_outcome(cal, item, reply) for item, reply in zip(chunk, replies, strict=True)
            )
        return outcomes

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        url = self.http.url(_event_path(_cal_path(cal), remote_id))
        await self._send_ok(
            "DELETE", url, cal, "delete", headers=_if_match(version), item=remote_id
        )

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        url = self.http.url(_event_path(_cal_path(cal), remote_id), {"$expand": hub_id_expand()})
        reply = await self._send_ok("GET", url, cal, "get", item=remote_id)
        try:
            return remote_event(reply.body)
        except MappingError as exc:
            raise PermanentError(f"graph365: {exc}", item=remote_id) from exc

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        found: dict[str, RemoteEvent] = {}
        ids = list(dict.fromkeys(hub_ids))
        events = f"{_cal_path(cal)}/events"
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start : start + MAX_BATCH]
            requests = [
                BatchRequest(
                    "GET",
                    self.http.url(
                        events, {"$filter": hub_id_filter(hub_id), "$expand": hub_id_expand()}
                    ),
                )
                for hub_id in chunk
            ]
            replies = await run_batch(self.http, cal.mailbox, requests, operation="find")
            for hub_id, reply in zip(chunk, replies, strict=True):
                _raise_for(reply, cal, hub_id)
                for obj in (reply.body or {}).get("value") or ():
                    try:
                        event = remote_event(obj)
                    except MappingError:
                        continue  # not readable, so not ours to link
                    if event.hub_id == hub_id:
                        found.setdefault(hub_id, event)
        return found

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        try:
            await self.open()
            await self.http.token()
        except ProviderError as exc:
            return [CheckItem("token acquired", False, exc.message)]
        items = [CheckItem("token acquired", True, f"scope {self.http.scope}")]
        for cal in cals:
            items.extend(await self._check_calendar(cal, write))
        return items

    # ------------------------------------------------------------------ helpers

    def _push_request(self, path: str, item: PushItem) -> BatchRequest:
        if item.remote_id is None:
            url = self.http.url(f"{path}/events")
            return BatchRequest("POST", url, event_body(item.data, item.hub_id, item.replaces))
        url = self.http.url(_event_path(path, item.remote_id))
        return BatchRequest("PATCH", url, event_body(item.data), _if_match(item.version))

    async def _send_ok(
        self,
        method: str,
        url: str,
        cal: CalendarRef,
        operation: str,
        *,
        body: object = None,
        headers: dict[str, str] | None = None,
        item: str | None = None,
    ) -> Response:
        reply = await self.http.send(
            method, url, mailbox=cal.mailbox, operation=operation, body=body, headers=headers
        )
        return _raise_for(reply, cal, item)

    async def _check_calendar(self, cal: CalendarRef, write: bool) -> list[CheckItem]:
        path = _cal_path(cal)
        now = datetime.now(UTC).replace(microsecond=0)
        calendar = self.http.url(path if cal.calendar else f"{path}/calendar")
        view = self.http.url(
            f"{path}/calendarView",
            {
                "startDateTime": utc_param(now),
                "endDateTime": utc_param(now + timedelta(days=1)),
                "$top": "1",
            },
        )
        made: list[str] = []

        async def create_probe() -> None:
            probe = EventData(
                subject="calhub probe (safe to delete)",
                start=now + timedelta(days=365),
                end=now + timedelta(days=365, minutes=5),
                show_as="free",
            )
            url = self.http.url(f"{path}/events")
            reply = await self._send_ok("POST", url, cal, "check", body=event_body(probe))
            made.append(str(reply.body["id"]))

        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("mailbox reachable", lambda: self._send_ok("GET", calendar, cal, "check")),
            ("calendar readable", lambda: self._send_ok("GET", view, cal, "check")),
        ]
        if write:
            steps.append(("probe event created", create_probe))
            steps.append(("probe event deleted", lambda: self.delete(cal, made[0], None)))
        return await run_check_steps(cal, steps)


def _push_outcome(cal: CalendarRef, item: PushItem, reply: Response) -> PushOutcome:
    if not reply.ok:
        return error_for(
            reply.status, reply.headers, reply.body, mailbox=cal.mailbox, item=item.hub_id
        )
    try:
        event = remote_event(reply.body)
    except MappingError as exc:
        return PermanentError(f"graph365: {exc}", item=item.hub_id)
    return PushResult(item.hub_id, event.remote_id, event.version, event.data)


def _raise_for(reply: Response, cal: CalendarRef, item: str | None = None) -> Response:
    if not reply.ok:
        raise error_for(reply.status, reply.headers, reply.body, mailbox=cal.mailbox, item=item)
    return reply


def _event_path(cal_path: str, remote_id: str) -> str:
    return f"{cal_path}/events/{quote(remote_id, safe='')}"


def _if_match(version: str | None) -> dict[str, str]:
    # No version (an event never read back) means an unconditional write.
    return {"If-Match": version} if version else {}


def _cal_path(cal: CalendarRef) -> str:
    if not cal.mailbox:
        raise PermanentError(f"graph365: agent {cal.agent_id} has no email (mailbox)")
    path = f"users/{quote(cal.mailbox, safe='@')}"
    if cal.calendar:
        path += f"/calendars/{quote(cal.calendar, safe='')}"
    return path
