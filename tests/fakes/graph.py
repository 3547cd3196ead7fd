"""A strict fake of Microsoft Graph v1.0 calendars and the Entra ID token endpoint.

Written from Microsoft's documentation (event resource, calendarView delta, JSON batching,
transactionId, extended-property filters, throttling, the client-credentials flow), not from
what calhub's client sends: it rejects what Graph rejects, so a client gap shows up as a failing
test rather than a surprise in production.

What it serves over HTTPS (a trustme CA, see :mod:`tests.fakes.tls`):

* ``POST /{tenant}/oauth2/v2.0/token``: client_credentials with a client secret or a signed
  client assertion (certificate); plus OpenID configuration and instance discovery.
* ``/v1.0/users/{mailbox}[/calendars/{id}]/``: ``calendar``, ``calendarView``,
  ``calendarView/delta`` (window on the first request, ``$skiptoken`` paging, ``$deltatoken``),
  ``events`` (POST with ``transactionId`` de-duplication, GET with the extended-property
  ``$filter``), ``events/{id}`` (GET with ``$expand``, PATCH and DELETE with ``If-Match``).
* ``POST /v1.0/$batch``: at most 20 requests, unique ids, relative urls without the version
  segment, ``dependsOn``, per-item results in any order.

Knobs (plain methods, for tests): throttling with Retry-After, 503s, expired delta tokens,
revoked credentials or mailbox access, latency, and edits made by the mailbox owner. Counters
record requests per kind and per mailbox.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import jwt
from aiohttp import web
from cryptography import x509
from multidict import CIMultiDict, MultiMapping

from tests.fakes.tls import TestCA

GRAPH_RESOURCE = "https://graph.microsoft.com"
MAX_BATCH = 20
MAILBOX_CONCURRENCY = 4
DEFAULT_PAGE_SIZE = 10

# Windows names Outlook writes in originalStartTimeZone; the fake's own small table.
_WINDOWS_ZONES = {
    "UTC": "UTC",
    "Pacific Standard Time": "America/Los_Angeles",
    "Eastern Standard Time": "America/New_York",
    "W. Europe Standard Time": "Europe/Berlin",
    "GMT Standard Time": "Europe/London",
    "Tokyo Standard Time": "Asia/Tokyo",
}

# Properties of microsoft.graph.event a client may write (event resource, "Properties").
_WRITABLE = frozenset(
    {
        "allowNewTimeProposals",
        "attendees",
        "body",
        "categories",
        "end",
        "hideAttendees",
        "importance",
        "isAllDay",
        "isOnlineMeeting",
        "isReminderOn",
        "location",
        "locations",
        "multiValueExtendedProperties",
        "onlineMeetingProvider",
        "originalEndTimeZone",
        "originalStartTimeZone",
        "recurrence",
        "reminderMinutesBeforeStart",
        "responseRequested",
        "sensitivity",
        "showAs",
        "singleValueExtendedProperties",
        "start",
        "subject",
        "transactionId",
    }
)
_SENSITIVITY = {"normal", "personal", "private", "confidential"}
_SHOW_AS = {"free", "tentative", "busy", "oof", "workingElsewhere", "unknown"}
_PROP_ID = re.compile(
    r"^(String|Integer|Boolean|SystemTime|Binary|Double|Long|Short|Float|Currency|CLSID)"
    r" \{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}"
    r" (Name \S+|Id 0x[0-9a-fA-F]{1,4})$"
)
_EP_FILTER = re.compile(
    r"^singleValueExtendedProperties/Any\(ep: ep/id eq '((?:[^']|'')*)'"
    r" and ep/value eq '((?:[^']|'')*)'\)$"
)
_EP_EXPAND = re.compile(r"^singleValueExtendedProperties\(\$filter=id eq '((?:[^']|'')*)'\)$")
_ROUTE = re.compile(
    r"^users/(?P<user>[^/]+)(?:/calendars/(?P<cal>[^/]+))?/"
    r"(?P<rest>calendar|calendarView|calendarView/delta|events|events/(?P<eid>[^/]+))$"
)
_QUERY_OPTIONS = frozenset(
    {"$filter", "$expand", "$select", "$top", "$skip", "$orderby", "$count", "$search",
     "$skiptoken", "$deltatoken"}
)  # fmt: skip
_PREFER = re.compile(r'([A-Za-z][\w.]*)\s*=\s*("[^"]*"|[^,\s]+)')


class GraphError(Exception):
    """An error response in Graph's JSON shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {"date": _now().isoformat(), "request-id": str(uuid.uuid4())},
            }
        }


@dataclass(slots=True)
class Reply:
    """One response, either top-level or a $batch item."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FakeEvent:
    """An event as the fake stores it: local wall time in the zone it was written in."""

    id: str
    props: dict[str, Any]
    start: datetime  # naive, in start_tz
    end: datetime
    start_tz: str
    end_tz: str
    all_day: bool
    change_key: str
    created: datetime
    modified: datetime
    extended: dict[str, str] = field(default_factory=dict)  # property id (lower) -> value
    transaction_id: str | None = None
    series_master_id: str | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.change_key}"'

    def utc_span(self) -> tuple[datetime, datetime]:
        return _to_utc(self.start, self.start_tz), _to_utc(self.end, self.end_tz)


@dataclass(slots=True)
class _SyncState:
    mailbox: str
    start: datetime
    end: datetime
    seq: int  # change-log position the state covers
    known: frozenset[str]  # ids the client has in its view
    generation: int
    pending: list[dict[str, Any]] = field(default_factory=list)  # remaining page items


@dataclass(slots=True)
class Mailbox:
    """One user's mailbox with its default calendar and change log."""

    email: str
    calendar_id: str
    events: dict[str, FakeEvent] = field(default_factory=dict)
    log: list[tuple[int, str]] = field(default_factory=list)
    generation: int = 0  # bumped to expire every delta token of this mailbox
    deleted_items: dict[str, FakeEvent] = field(default_factory=dict)  # by transactionId
    access_denied: bool = False
    throttle_left: int = 0
    throttle_status: int = 429
    retry_after: float = 1.0
    in_flight: int = 0


@dataclass(slots=True)
class _Token:
    client_id: str
    audience: str
    expires: float


class GraphFake:
    """The fake service: ``async with GraphFake(ca) as fake:`` serves on 127.0.0.1."""

    def __init__(
        self,
        ca: TestCA,
        *,
        tenant: str = "contoso-tenant",
        client_id: str = "calhub-app",
        client_secret: str = "s3cret",
        certificate_pem: bytes | None = None,
        latency_ms: float = 0.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        token_lifetime_s: int = 3599,
    ) -> None:
        self.ca = ca
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.certificate = (
            x509.load_pem_x509_certificate(certificate_pem) if certificate_pem else None
        )
        self.latency = latency_ms / 1000
        self.page_size = page_size
        self.token_lifetime = token_lifetime_s
        self.mailboxes: dict[str, Mailbox] = {}
        self.tokens: dict[str, _Token] = {}
        self.credentials_revoked = False
        self.link_base: str | None = None  # knob: hand out next/delta links on another origin
        # knob: a create repeating the transactionId of a deleted event answers with that
        # deleted event (as Exchange might, from Deleted Items) instead of creating one
        self.transactions_outlive_deletes = False
        self.requests: Counter[str] = Counter()  # HTTP requests by kind
        self.mailbox_requests: Counter[tuple[str, str]] = Counter()  # (mailbox, kind) HTTP
        self.without_immutable_id = 0  # requests (and batch items) missing the Prefer
        self.attendee_writes = 0
        self.peak_in_flight: Counter[str] = Counter()  # per mailbox, incl. $batch waves
        self.auth_headers_seen: list[str] = []
        self._states: dict[str, _SyncState] = {}
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def authority(self) -> str:
        return self.url

    def account_options(self) -> dict[str, object]:
        """The graph365 account options that point calhub at this fake (trusting its CA)."""
        return {
            "tenant_id": self.tenant,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "authority": self.authority,
            "base_url": self.base_url,
            "ca_file": str(self.ca.ca_file),
        }

    async def __aenter__(self) -> GraphFake:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
        app.router.add_get("/common/discovery/instance", self._instance_discovery)
        app.router.add_route("*", "/v1.0/{tail:.*}", self._graph)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ca.server_context())
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ knobs

    def add_mailbox(self, email: str) -> Mailbox:
        key = email.lower()
        if key not in self.mailboxes:
            self.mailboxes[key] = Mailbox(email=email, calendar_id=_new_id("cal"))
        return self.mailboxes[key]

    def mailbox(self, email: str) -> Mailbox:
        return self.mailboxes[email.lower()]

    def throttle(
        self, email: str, count: int, *, retry_after: float = 1.0, status: int = 429
    ) -> None:
        """The next ``count`` requests touching this mailbox get ``status`` with Retry-After."""
        mb = self.mailbox(email)
        mb.throttle_left, mb.retry_after, mb.throttle_status = count, retry_after, status

    def expire_delta_tokens(self, email: str) -> None:
        self.mailbox(email).generation += 1

    def revoke_credentials(self) -> None:
        """The app's secret is revoked: the token endpoint refuses it, issued tokens die."""
        self.credentials_revoked = True
        self.tokens.clear()

    def deny_mailbox(self, email: str, denied: bool = True) -> None:
        """An application access policy no longer covers this mailbox (403)."""
        self.mailbox(email).access_denied = denied

    def events(self, email: str) -> list[FakeEvent]:
        return list(self.mailbox(email).events.values())

    def owner_create(
        self,
        email: str,
        subject: str,
        start: datetime | date,
        end: datetime | date,
        *,
        tz: str = "W. Europe Standard Time",
        sensitivity: str = "normal",
        body: str = "",
        location: str = "",
        show_as: str = "busy",
        reminder_minutes: int | None = 15,
        categories: tuple[str, ...] = (),
        series_master_id: str | None = None,
    ) -> str:
        """The mailbox owner creates an event in Outlook (no calhub property)."""
        props: dict[str, Any] = {
            "subject": subject,
            "sensitivity": sensitivity,
            "showAs": show_as,
            "body": {"contentType": "text", "content": body},
            "location": {"displayName": location},
            "isReminderOn": reminder_minutes is not None,
            "reminderMinutesBeforeStart": reminder_minutes or 0,
            "categories": list(categories),
        }
        all_day = not isinstance(start, datetime)
        s, e = (_owner_local(start, tz), _owner_local(end, tz))
        ev = FakeEvent(
            id=_new_id("AAMk"),
            props=props,
            start=s,
            end=e,
            start_tz=tz,
            end_tz=tz,
            all_day=all_day,
            change_key=_new_id("ck"),
            created=_now(),
            modified=_now(),
            series_master_id=series_master_id,
        )
        mb = self.mailbox(email)
        mb.events[ev.id] = ev
        self._log(mb, ev.id)
        return ev.id

    def owner_edit(
        self,
        email: str,
        event_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        **props: Any,
    ) -> None:
        """The owner edits (moves, renames, marks private) an event in Outlook."""
        mb = self.mailbox(email)
        ev = mb.events[event_id]
        if start is not None:
            ev.start, ev.start_tz = _owner_local(start, ev.start_tz), ev.start_tz
        if end is not None:
            ev.end = _owner_local(end, ev.end_tz)
        for key, value in props.items():
            if key == "body":
                ev.props["body"] = {"contentType": "text", "content": value}
            elif key == "location":
                ev.props["location"] = {"displayName": value}
            else:
                ev.props[key] = value
        self._touch(mb, ev)

    def owner_delete(self, email: str, event_id: str) -> None:
        mb = self.mailbox(email)
        self._remove(mb, event_id)

    def _remove(self, mb: Mailbox, event_id: str) -> None:
        ev = mb.events.pop(event_id)
        if ev.transaction_id:
            mb.deleted_items[ev.transaction_id] = ev
        self._log(mb, event_id)

    # ------------------------------------------------------------------ token endpoint

    async def _token(self, request: web.Request) -> web.Response:
        self.requests["token"] += 1
        await self._delay()
        tenant = request.match_info["tenant"]
        form = await request.post()
        token_url = f"{self.url}/{tenant}/oauth2/v2.0/token"
        if tenant != self.tenant:
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003, "Unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return _aad_error(
                400, "unauthorized_client", 700016, "Application not found in the directory."
            )
        scope = str(form.get("scope", ""))
        if not scope.endswith("/.default") or " " in scope.strip():
            return _aad_error(
                400, "invalid_scope", 1002012, "The scope must be a single resource/.default."
            )
        if self.credentials_revoked:
            return _aad_error(
                401, "invalid_client", 7000222, "The provided client secret keys are expired."
            )
        if "client_secret" in form:
            if form["client_secret"] != self.client_secret:
                return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        elif "client_assertion" in form:
            problem = self._check_assertion(str(form["client_assertion"]), token_url)
            if problem:
                return _aad_error(401, "invalid_client", 700027, problem)
        else:
            return _aad_error(
                401, "invalid_client", 7000218, "client_assertion or client_secret required."
            )
        token = secrets.token_urlsafe(24)
        audience = scope.removesuffix("/.default").rstrip("/")
        self.tokens[token] = _Token(
            self.client_id, audience, time.monotonic() + self.token_lifetime
        )
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            }
        )

    def _check_assertion(self, assertion: str, token_url: str) -> str | None:
        if self.certificate is None:
            return "No certificate is registered for this application."
        try:
            claims = jwt.decode(
                assertion,
                key=self.certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=token_url,
            )
        except jwt.PyJWTError as exc:
            return f"Client assertion failed signature validation: {exc}"
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return "Client assertion issuer/subject is not the client id."
        return None

    async def _openid(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        base = f"{self.url}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                ],
            }
        )

    async def _instance_discovery(self, request: web.Request) -> web.Response:
        host = f"127.0.0.1:{self.port}"
        return web.json_response(
            {
                "tenant_discovery_endpoint": (
                    f"{self.url}/{self.tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            }
        )

    # ------------------------------------------------------------------ Graph

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        kind = "batch" if tail == "$batch" else _kind(request.method, tail)
        self.requests[kind] += 1
        self.auth_headers_seen.append(request.headers.get("Authorization", ""))
        await self._delay()
        try:
            self._authenticate(request.headers.get("Authorization", ""))
            if tail == "$batch":
                if request.method != "POST":
                    raise GraphError(405, "BadRequest", "Only POST is allowed on $batch.")
                reply = await self._batch(request)
            else:
                body = await _read_json(request)
                reply = await self._top_level(request, tail, kind, body)
        except GraphError as err:
            reply = Reply(err.status, err.body(), err.headers)
        if reply.status == 204 or reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def _authenticate(self, header: str) -> None:
        if not header:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        scheme, _, value = header.partition(" ")
        token = self.tokens.get(value) if scheme.lower() == "bearer" else None
        if token is None:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if token.expires < time.monotonic():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        if token.audience != GRAPH_RESOURCE:
            raise GraphError(401, "InvalidAuthenticationToken", "Invalid audience.")

    async def _top_level(self, request: web.Request, tail: str, kind: str, body: Any) -> Reply:
        query = _query(request.query_string)
        mb = self._mailbox_of(tail)
        if mb is None:
            return self._dispatch(request.method, tail, query, request.headers, body)
        self.mailbox_requests[(mb.email.lower(), kind)] += 1
        self._gate(mb)
        if mb.in_flight >= MAILBOX_CONCURRENCY:
            raise _concurrency_error()
        mb.in_flight += 1
        self._peak(mb, mb.in_flight)
        try:
            await self._delay()  # the work itself takes time while holding the slot
            return self._dispatch(request.method, tail, query, request.headers, body)
        finally:
            mb.in_flight -= 1

    def _gate(self, mb: Mailbox) -> None:
        """Access and throttling knobs, checked before any work (as Graph does)."""
        if mb.access_denied:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials.")
        if mb.throttle_left > 0:
            mb.throttle_left -= 1
            headers = {"Retry-After": f"{mb.retry_after:g}"}
            if mb.throttle_status == 429:
                raise GraphError(
                    429, "ApplicationThrottled", "Application is over its limit.", headers
                )
            raise GraphError(
                mb.throttle_status, "ServiceUnavailable", "Service unavailable.", headers
            )

    def _mailbox_of(self, tail: str) -> Mailbox | None:
        m = _ROUTE.match(tail)
        return self.mailboxes.get(unquote(m["user"]).lower()) if m else None

    # ------------------------------------------------------------------ $batch

    async def _batch(self, request: web.Request) -> Reply:
        await self._delay()  # the other half of the latency, as for any mailbox request
        payload = await _read_json(request)
        reqs = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(reqs, list) or not reqs:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        if len(reqs) > MAX_BATCH:
            raise GraphError(
                400, "BadRequest", f"Number of requests exceeds the maximum of {MAX_BATCH}."
            )
        ids = [r.get("id") if isinstance(r, dict) else None for r in reqs]
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise GraphError(400, "BadRequest", "Batch request ids must be unique strings.")
        for r in reqs:
            url = r.get("url")
            if not isinstance(url, str) or not url.startswith("/") or "://" in url:
                raise GraphError(400, "BadRequest", "Invalid request URL: must be relative.")
            if r.get("method") not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
                raise GraphError(400, "BadRequest", "Invalid batch request method.")
            for dep in r.get("dependsOn") or ():
                if dep not in ids:
                    raise GraphError(400, "BadRequest", f"dependsOn '{dep}' is not in the batch.")
        for email in {mb.email.lower() for r in reqs if (mb := self._mailbox_of(_path(r)))}:
            self.mailbox_requests[(email, "batch")] += 1
        done: dict[str, Reply] = {}
        remaining = {r["id"]: r for r in reqs}
        while remaining:
            wave = [
                r for r in remaining.values() if all(d in done for d in r.get("dependsOn") or ())
            ]
            if not wave:
                raise GraphError(400, "BadRequest", "Circular dependsOn in batch.")
            per_mailbox: Counter[str] = Counter()
            for r in wave:
                del remaining[r["id"]]
                done[r["id"]] = self._batch_item(r, done, per_mailbox)
        responses = [
            {"id": rid, "status": rep.status, "headers": rep.headers, "body": rep.body}
            for rid, rep in done.items()
        ]
        responses.reverse()  # Graph documents that responses may come in any order
        for item in responses:
            if item["body"] is None:
                del item["body"]
        return Reply(200, {"responses": responses})

    def _batch_item(
        self, r: dict[str, Any], done: Mapping[str, Reply], per_mailbox: Counter[str]
    ) -> Reply:
        if any(done[d].status >= 400 for d in r.get("dependsOn") or ()):
            return Reply(424, _error_body("FailedDependency", "A dependency failed."))
        split = urlsplit(r["url"])
        tail = split.path.lstrip("/")
        if tail.split("/", 1)[0] in ("v1.0", "beta"):
            seg = tail.split("/", 1)[0]
            return Reply(
                400, _error_body("BadRequest", f"Resource not found for the segment '{seg}'.")
            )
        headers = CIMultiDict((str(k), str(v)) for k, v in (r.get("headers") or {}).items())
        if "body" in r and "Content-Type" not in headers:
            return Reply(400, _error_body("BadRequest", "Content-Type header must be specified."))
        mb = self._mailbox_of(tail)
        try:
            query = _query(split.query)
            if mb is not None:
                self._gate(mb)
                per_mailbox[mb.email.lower()] += 1
                self._peak(mb, per_mailbox[mb.email.lower()] + mb.in_flight)
                if per_mailbox[mb.email.lower()] + mb.in_flight > MAILBOX_CONCURRENCY:
                    raise _concurrency_error()
            return self._dispatch(r["method"], tail, query, headers, r.get("body"))
        except GraphError as err:
            return Reply(err.status, err.body(), err.headers)

    # ------------------------------------------------------------------ resources

    def _dispatch(
        self, method: str, tail: str, query: dict[str, str], headers: MultiMapping[str], body: Any
    ) -> Reply:
        prefer = _prefer(headers)
        if prefer.get("IdType") != "ImmutableId":
            self.without_immutable_id += 1
        m = _ROUTE.match(tail)
        if m is None:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{tail}'.")
        user = unquote(m["user"])
        mb = self.mailboxes.get(user.lower())
        if mb is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        if m["cal"] is not None and m["cal"] != mb.calendar_id:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found.")
        rest, eid = m["rest"], m["eid"]
        tz = prefer.get("outlook.timezone", "UTC")
        if rest == "calendar" and method == "GET":
            return Reply(200, {"id": mb.calendar_id, "name": "Calendar", "canEdit": True})
        if rest == "calendarView" and method == "GET":
            return self._calendar_view(mb, query, tz)
        if rest == "calendarView/delta" and method == "GET":
            size = int(prefer.get("odata.maxpagesize", self.page_size))
            return self._delta(mb, query, tz, min(size, 1000))
        if rest == "events" and method == "POST":
            return self._create(mb, body, tz)
        if rest == "events" and method == "GET":
            return self._list(mb, query, tz)
        if eid is not None:
            ev = mb.events.get(eid)
            if ev is None:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found.")
            if method == "GET":
                return Reply(200, _render(ev, tz, _expand(query)))
            match = headers.get("If-Match")
            if match is not None and match not in ("*", ev.etag):
                raise GraphError(
                    412,
                    "ErrorIrresolvableConflict",
                    "The change key passed in the request does not match the current change "
                    "key for the item.",
                )
            if method == "PATCH":
                self._write(ev, body, creating=False)
                self._touch(mb, ev)
                return Reply(200, _render(ev, tz, None))
            if method == "DELETE":
                self._remove(mb, eid)
                return Reply(204)
        raise GraphError(405, "ErrorInvalidRequest", f"{method} is not supported on {rest}.")

    def _create(self, mb: Mailbox, body: Any, tz: str) -> Reply:
        if not isinstance(body, dict):
            raise GraphError(400, "RequestBodyRead", "A request body is required.")
        txn = body.get("transactionId")
        if txn:
            for ev in mb.events.values():
                if ev.transaction_id == txn:
                    return Reply(201, _render(ev, tz, None))
            if self.transactions_outlive_deletes and txn in mb.deleted_items:
                return Reply(201, _render(mb.deleted_items[txn], tz, None))
        if "start" not in body or "end" not in body:
            raise GraphError(400, "ErrorInvalidRequest", "start and end are required.")
        ev = FakeEvent(
            id=_new_id("AAMk"),
            props={"categories": [], "isReminderOn": True, "reminderMinutesBeforeStart": 15},
            start=datetime.min,
            end=datetime.min,
            start_tz="UTC",
            end_tz="UTC",
            all_day=False,
            change_key=_new_id("ck"),
            created=_now(),
            modified=_now(),
            transaction_id=txn,
        )
        self._write(ev, body, creating=True)
        mb.events[ev.id] = ev
        self._log(mb, ev.id)
        return Reply(201, _render(ev, tz, None))

    def _write(self, ev: FakeEvent, body: Any, *, creating: bool) -> None:
        if not isinstance(body, dict):
            raise GraphError(400, "RequestBodyRead", "A request body is required.")
        for key in body:
            if key.startswith("@odata."):
                continue
            if key not in _WRITABLE or (key == "transactionId" and not creating):
                raise GraphError(
                    400,
                    "RequestBodyRead",
                    f"The property '{key}' does not exist on type 'microsoft.graph.event'. "
                    "Make sure to only use property names that are defined by the type.",
                )
        if body.get("attendees"):
            self.attendee_writes += 1
            raise GraphError(
                400, "ErrorInvalidRequest", "calhub never invites: attendees are refused."
            )
        if "sensitivity" in body and body["sensitivity"] not in _SENSITIVITY:
            raise GraphError(400, "ErrorInvalidRequest", "Invalid sensitivity.")
        if "showAs" in body and body["showAs"] not in _SHOW_AS:
            raise GraphError(400, "ErrorInvalidRequest", "Invalid showAs.")
        start = _parse_dt_tz(body["start"], "start") if "start" in body else None
        end = _parse_dt_tz(body["end"], "end") if "end" in body else None
        all_day = bool(body.get("isAllDay", ev.all_day))
        new_start = start or (ev.start, ev.start_tz)
        new_end = end or (ev.end, ev.end_tz)
        if _to_utc(*new_end) < _to_utc(*new_start):
            raise GraphError(400, "ErrorInvalidRequest", "The end must not be before the start.")
        if all_day and any(v[0].time() != datetime.min.time() for v in (new_start, new_end)):
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "An all-day event's start and end must be midnight.",
            )
        for prop in body.get("singleValueExtendedProperties") or ():
            pid, value = prop.get("id", ""), prop.get("value")
            if not _PROP_ID.match(pid) or not isinstance(value, str):
                raise GraphError(400, "ErrorInvalidProperty", f"Invalid property id '{pid}'.")
            ev.extended[pid.lower()] = value
        ev.start, ev.start_tz = new_start
        ev.end, ev.end_tz = new_end
        ev.all_day = all_day
        for key, value in body.items():
            if key not in ("start", "end", "isAllDay", "singleValueExtendedProperties"):
                ev.props[key] = value

    def _list(self, mb: Mailbox, query: dict[str, str], tz: str) -> Reply:
        flt = query.get("$filter")
        events = list(mb.events.values())
        if flt is not None:
            m = _EP_FILTER.match(flt)
            if m is None:
                raise GraphError(400, "BadRequest", f"Invalid filter clause: {flt}")
            pid, value = m[1].replace("''", "'").lower(), m[2].replace("''", "'")
            events = [ev for ev in events if ev.extended.get(pid) == value]
        return Reply(200, {"value": [_render(ev, tz, _expand(query)) for ev in events]})

    def _calendar_view(self, mb: Mailbox, query: dict[str, str], tz: str) -> Reply:
        start, end = _window(query)
        top = int(query.get("$top", "10"))
        hits = [ev for ev in mb.events.values() if _overlaps(ev, start, end)]
        return Reply(200, {"value": [_render(ev, tz, None) for ev in hits[:top]]})

    def _delta(self, mb: Mailbox, query: dict[str, str], tz: str, size: int) -> Reply:
        key = mb.email.lower()
        if "$skiptoken" in query or "$deltatoken" in query:
            token = query.get("$skiptoken") or query.get("$deltatoken") or ""
            state = self._states.get(token)
            if state is None or state.mailbox != key or state.generation != mb.generation:
                raise GraphError(
                    410, "syncStateNotFound", "The sync state generation is not found."
                )
            if "$deltatoken" in query:
                state = self._changes_since(mb, state, tz)
        else:
            start, end = _window(query)
            view = [ev for ev in mb.events.values() if _overlaps(ev, start, end)]
            state = _SyncState(
                mailbox=key,
                start=start,
                end=end,
                seq=self._seq,
                known=frozenset(ev.id for ev in view),
                generation=mb.generation,
                pending=[_render(ev, tz, None) for ev in view],
            )
        page, rest = state.pending[:size], state.pending[size:]
        link = f"{self.link_base or self.url}/v1.0/users/{mb.email}/calendarView/delta"
        nxt = replace(state, pending=rest)
        token = secrets.token_urlsafe(12)
        self._states[token] = nxt
        body: dict[str, Any] = {"value": page}
        if rest:
            body["@odata.nextLink"] = f"{link}?$skiptoken={token}"
        else:
            body["@odata.deltaLink"] = f"{link}?$deltatoken={token}"
        return Reply(200, body)

    def _changes_since(self, mb: Mailbox, state: _SyncState, tz: str) -> _SyncState:
        changed: dict[str, None] = {}
        for seq, eid in mb.log:
            if seq > state.seq:
                changed.pop(eid, None)
                changed[eid] = None
        known = set(state.known)
        items: list[dict[str, Any]] = []
        for eid in changed:
            ev = mb.events.get(eid)
            if ev is not None and _overlaps(ev, state.start, state.end):
                items.append(_render(ev, tz, None))
                known.add(eid)
            elif ev is None:
                # Graph reports a delete even of an item created after the token was issued.
                items.append({"id": eid, "@removed": {"reason": "deleted"}})
                known.discard(eid)
            elif eid in known:
                items.append({"id": eid, "@removed": {"reason": "changed"}})
                known.discard(eid)
        return replace(state, seq=self._seq, known=frozenset(known), pending=items)

    # ------------------------------------------------------------------ helpers

    def _log(self, mb: Mailbox, eid: str) -> None:
        self._seq += 1
        mb.log.append((self._seq, eid))

    def _touch(self, mb: Mailbox, ev: FakeEvent) -> None:
        ev.change_key = _new_id("ck")
        ev.modified = _now()
        self._log(mb, ev.id)

    def _peak(self, mb: Mailbox, now_running: int) -> None:
        key = mb.email.lower()
        self.peak_in_flight[key] = max(self.peak_in_flight[key], now_running)

    async def _delay(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency / 2)  # half before, half while holding the slot


class OwnerBackdoor:
    """Edits "by the agent" in Outlook, in the shape the conformance suite expects."""

    def __init__(self, fake: GraphFake, tz: str = "W. Europe Standard Time") -> None:
        self.fake = fake
        self.tz = tz

    async def create_external(self, cal: Any, data: Any) -> str:
        return self.fake.owner_create(
            cal.mailbox,
            data.subject,
            data.start,
            data.end,
            tz=self.tz,
            sensitivity="private" if data.private else "normal",
            body=data.body,
            location=data.location,
            show_as=data.show_as,
            reminder_minutes=data.reminder_minutes,
            categories=data.categories,
        )

    async def edit(self, cal: Any, remote_id: str, data: Any) -> None:
        self.fake.owner_edit(
            cal.mailbox,
            remote_id,
            start=data.start,
            end=data.end,
            subject=data.subject,
            body=data.body,
            location=data.location,
            sensitivity="private" if data.private else "normal",
            showAs=data.show_as,
            isReminderOn=data.reminder_minutes is not None,
            reminderMinutesBeforeStart=data.reminder_minutes or 0,
            categories=list(data.categories),
        )

    async def delete(self, cal: Any, remote_id: str) -> None:
        self.fake.owner_delete(cal.mailbox, remote_id)

    async def expire_cursor(self, cal: Any) -> None:
        self.fake.expire_delta_tokens(cal.mailbox)

    async def request_count(self) -> int:
        return sum(n for kind, n in self.fake.requests.items() if kind != "token")


def _kind(method: str, tail: str) -> str:
    m = _ROUTE.match(tail)
    if m is None:
        return "other"
    rest = m["rest"]
    if rest == "calendarView/delta":
        return "delta"
    if rest == "events":
        return "create" if method == "POST" else "find"
    if rest.startswith("events/"):
        return {"GET": "get", "PATCH": "update", "DELETE": "delete"}.get(method, "other")
    return rest.lower()


def _path(r: dict[str, Any]) -> str:
    return urlsplit(r["url"]).path.lstrip("/")


def _query(raw: str) -> dict[str, str]:
    query = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    for key in query:
        if key.startswith("$") and key not in _QUERY_OPTIONS:
            raise GraphError(400, "BadRequest", f"Query option '{key}' is not allowed.")
    return query


def _prefer(headers: MultiMapping[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in headers.getall("Prefer", []):
        for key, val in _PREFER.findall(value):
            out[key] = val.strip('"')
    return out


def _expand(query: dict[str, str]) -> str | None:
    raw = query.get("$expand")
    if raw is None:
        return None
    m = _EP_EXPAND.match(raw)
    if m is None:
        raise GraphError(400, "BadRequest", f"Invalid $expand: {raw}")
    return m[1].replace("''", "'").lower()


def _render(ev: FakeEvent, tz: str, expand: str | None) -> dict[str, Any]:
    start_utc, end_utc = ev.utc_span()
    if ev.all_day:
        start = {"dateTime": _fmt(ev.start), "timeZone": tz}
        end = {"dateTime": _fmt(ev.end), "timeZone": tz}
    else:
        zone = _zone(tz)
        start = {"dateTime": _fmt(start_utc.astimezone(zone)), "timeZone": tz}
        end = {"dateTime": _fmt(end_utc.astimezone(zone)), "timeZone": tz}
    p = ev.props
    out: dict[str, Any] = {
        "@odata.etag": ev.etag,
        "id": ev.id,
        "createdDateTime": ev.created.isoformat().replace("+00:00", "Z"),
        "lastModifiedDateTime": ev.modified.isoformat().replace("+00:00", "Z"),
        "changeKey": ev.change_key,
        "categories": list(p.get("categories") or []),
        "transactionId": ev.transaction_id,
        "originalStartTimeZone": ev.start_tz,
        "originalEndTimeZone": ev.end_tz,
        "iCalUId": f"040000008200E00074C5B7101A82E008{ev.id[-16:]}",
        "reminderMinutesBeforeStart": p.get("reminderMinutesBeforeStart", 15),
        "isReminderOn": p.get("isReminderOn", True),
        "subject": p.get("subject", ""),
        "bodyPreview": (p.get("body") or {}).get("content", "")[:255],
        "importance": p.get("importance", "normal"),
        "sensitivity": p.get("sensitivity", "normal"),
        "isAllDay": ev.all_day,
        "isCancelled": False,
        "isOrganizer": True,
        "seriesMasterId": ev.series_master_id,
        "showAs": p.get("showAs", "busy"),
        "type": "occurrence" if ev.series_master_id else "singleInstance",
        "body": p.get("body") or {"contentType": "text", "content": ""},
        "start": start,
        "end": end,
        "location": p.get("location") or {"displayName": ""},
        "attendees": [],
        "organizer": {"emailAddress": {"name": "Owner", "address": "owner@example.com"}},
    }
    if expand is not None:
        out["singleValueExtendedProperties"] = [
            {"id": pid, "value": value} for pid, value in ev.extended.items() if pid == expand
        ]
    return out


def _parse_dt_tz(value: Any, name: str) -> tuple[datetime, str]:
    if not isinstance(value, dict) or set(value) - {"dateTime", "timeZone", "@odata.type"}:
        raise GraphError(400, "RequestBodyRead", f"'{name}' must be a dateTimeTimeZone.")
    tz = value.get("timeZone") or "UTC"
    _zone(tz)
    try:
        dt = datetime.fromisoformat(str(value.get("dateTime", ""))[:26])
    except ValueError as exc:
        raise GraphError(400, "RequestBodyRead", f"Invalid '{name}.dateTime'.") from exc
    if dt.tzinfo is not None:
        raise GraphError(400, "RequestBodyRead", f"'{name}.dateTime' must not carry an offset.")
    return dt, tz


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(_WINDOWS_ZONES.get(name, name))
    except (KeyError, ValueError) as exc:
        raise GraphError(400, "ErrorTimeZoneNotSupported", f"Unknown time zone '{name}'.") from exc


def _to_utc(local: datetime, tz: str) -> datetime:
    return local.replace(tzinfo=_zone(tz)).astimezone(UTC)


def _owner_local(value: datetime | date, tz: str) -> datetime:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(_zone(tz)).replace(tzinfo=None)
    return datetime(value.year, value.month, value.day)


def _overlaps(ev: FakeEvent, start: datetime, end: datetime) -> bool:
    s, e = ev.utc_span()
    return s < end and e > start


def _window(query: dict[str, str]) -> tuple[datetime, datetime]:
    try:
        start = datetime.fromisoformat(query["startDateTime"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(query["endDateTime"].replace("Z", "+00:00"))
    except (KeyError, ValueError) as exc:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters "
            "StartDateTime and EndDateTime.",
        ) from exc
    return (
        start if start.tzinfo else start.replace(tzinfo=UTC),
        end if end.tzinfo else end.replace(tzinfo=UTC),
    )


def _fmt(dt: datetime) -> str:
    return dt.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.0000000")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _error_body(code: str, message: str) -> dict[str, Any]:
    return GraphError(0, code, message).body()


def _concurrency_error() -> GraphError:
    return GraphError(
        429,
        "ApplicationThrottled",
        "MailboxConcurrency: more than 4 concurrent requests to this mailbox.",
        {"Retry-After": "1"},
    )


def _aad_error(status: int, error: str, code: int, description: str) -> web.Response:
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": _now().isoformat(),
        },
        status=status,
    )


async def _read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc


__all__ = ["GRAPH_RESOURCE", "FakeEvent", "GraphError", "GraphFake", "Mailbox", "OwnerBackdoor"]
