"""A strict fake of the Google Calendar API v3 (events) and Google's OAuth 2.0 token endpoint.

Written from Google's documentation, not from what calhub's client sends: the events
resource and events.list/get/insert/patch/delete references, the guides "Synchronize
resources efficiently" (sync tokens), "Sending batch requests", "Handle API errors" and
"Manage quotas", "Using OAuth 2.0 for server to server applications" (service accounts,
domain-wide delegation) and "OAuth 2.0 for iOS & desktop apps" (loopback redirect, PKCE).
It rejects what Google rejects; what it does not implement answers 501, never a silently
wrong result.

Served over HTTPS (a trustme CA, see :mod:`tests.fakes.tls`):

* ``POST /token``: the JWT-bearer grant (an RS256 assertion verified against the service
  account's public key: iss, aud, iat/exp at most an hour apart, scope; ``sub`` only with
  domain-wide delegation for those scopes), ``authorization_code`` (with the PKCE verifier)
  and ``refresh_token``.
* ``GET /o/oauth2/v2/auth``: the consent page; the "user" consents at once and the browser is
  redirected to the loopback ``redirect_uri`` with ``code`` and ``state``.
* ``/calendar/v3/calendars/{calendarId}/events[/{eventId}]``: list (full window listing,
  ``syncToken``, ``pageToken``, ``privateExtendedProperty``), insert (client-chosen ids),
  get, patch and delete with ``If-Match``.
* ``POST /batch/calendar/v3``: multipart/mixed, at most 1000 calls, per-part answers by
  Content-ID, in reverse order (Google does not promise the order).

Knobs: quota errors (403 rateLimitExceeded / 429), 503s, expired sync tokens, delegation or a
refresh token revoked per user, latency, and edits made by the calendar's owner.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.tls import TestCA

MAX_BATCH = 1000
MAX_RESULTS = 2500
DEFAULT_RESULTS = 250
CALENDAR_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/calendar", "https://www.googleapis.com/auth/calendar.events"}
)
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# "When making an access token request this value is always https://oauth2.googleapis.com/token"
JWT_AUDIENCE = "https://oauth2.googleapis.com/token"
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_EVENT_PATH = re.compile(r"^/calendar/v3/calendars/(?P<cal>[^/]+)/events(?:/(?P<eid>[^/]+))?$")
_MAX_PROP_KEY, _MAX_PROP_VALUE = 44, 1024
# Query parameters every Google API takes ("standard query parameters").
_STANDARD = frozenset({"alt", "fields", "key", "prettyPrint", "quotaUser", "userIp"})
_LIST_PARAMS = frozenset(
    {"alwaysIncludeEmail", "eventTypes", "iCalUID", "maxAttendees", "maxResults", "orderBy",
     "pageToken", "privateExtendedProperty", "q", "sharedExtendedProperty", "showDeleted",
     "showHiddenInvitations", "singleEvents", "syncToken", "timeMax", "timeMin", "timeZone",
     "updatedMin"}
)  # fmt: skip
_LIST_DONE = frozenset(
    {"maxResults", "pageToken", "privateExtendedProperty", "showDeleted", "singleEvents",
     "syncToken", "timeMax", "timeMin"}
)  # fmt: skip
# events.list: "syncToken ... cannot be used together with" these.
_NOT_WITH_SYNC = ("iCalUID", "orderBy", "privateExtendedProperty", "q",
                  "sharedExtendedProperty", "timeMin", "timeMax", "updatedMin")  # fmt: skip
_WRITE_PARAMS = frozenset(
    {"conferenceDataVersion", "maxAttendees", "sendNotifications", "sendUpdates",
     "supportsAttachments", "eventLabelVersion"}
)  # fmt: skip
# Writable event fields the fake implements; the other writable ones answer 501.
_FIELDS_DONE = frozenset(
    {"summary", "description", "location", "start", "end", "visibility", "transparency",
     "reminders", "extendedProperties", "colorId", "id", "attendees", "status"}
)  # fmt: skip
_FIELDS_NOT_DONE = frozenset(
    {"anyoneCanAddSelf", "attachments", "birthdayProperties", "conferenceData",
     "eventType", "focusTimeProperties", "gadget", "guestsCanInviteOthers",
     "guestsCanModify", "guestsCanSeeOtherGuests", "originalStartTime",
     "outOfOfficeProperties", "recurrence", "sequence", "source", "workingLocationProperties"}
)  # fmt: skip
_READ_ONLY = frozenset(
    {"kind", "etag", "htmlLink", "created", "updated", "creator", "organizer", "iCalUID",
     "recurringEventId", "hangoutLink", "privateCopy", "locked", "endTimeUnspecified"}
)  # fmt: skip


class ApiError(Exception):
    """An error answer in Google's JSON shape."""

    def __init__(
        self, code: int, reason: str, message: str, *, domain: str = "global", **headers: str
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.domain = code, reason, message, domain
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "errors": [{"domain": self.domain, "reason": self.reason, "message": self.message}],
                "code": self.code,
                "message": self.message,
            }
        }


@dataclass(slots=True)
class Reply:
    """One answer, top-level or a batch part."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FakeEvent:
    """An event as the fake stores it: the resource's JSON fields plus bookkeeping."""

    id: str
    fields: dict[str, Any]
    status: str = "confirmed"
    revision: int = 1
    changed_at: int = 0  # position in the calendar's change log
    created: str = ""
    updated: str = ""
    recurring_event_id: str | None = None
    span_hint: tuple[datetime, datetime] | None = None  # when the fields hold a leap second

    @property
    def etag(self) -> str:
        return f'"{3_000_000_000_000 + self.revision}"'

    def span(self) -> tuple[datetime, datetime]:
        if self.span_hint is not None:
            return self.span_hint
        return _instant(self.fields["start"]), _instant(self.fields["end"])

    @property
    def private(self) -> dict[str, str]:
        return (self.fields.get("extendedProperties") or {}).get("private") or {}


@dataclass(slots=True)
class FakeCalendar:
    """One calendar with its events and change log position."""

    id: str
    owner: str
    time_zone: str = "Europe/Berlin"
    events: dict[str, FakeEvent] = field(default_factory=dict)
    seq: int = 0
    generation: int = 0  # bumped to expire every sync token of this calendar


@dataclass(slots=True)
class User:
    """A Google account (a Workspace user or a personal account) with its primary calendar."""

    email: str
    primary: FakeCalendar
    delegation: bool = True  # domain-wide delegation reaches this user
    throttle_left: int = 0
    throttle_status: int = 403
    throttle_reason: str = "rateLimitExceeded"
    retry_after: str | None = None
    fail_left: int = 0
    requests: int = 0  # HTTP requests made as this user (a batch is one)
    calls: int = 0  # API calls (each call of a batch counts)


@dataclass(slots=True)
class _Token:
    email: str
    scopes: frozenset[str]
    expires: float


@dataclass(slots=True)
class _Grant:
    """An authorization code or a refresh token of the installed-app flow."""

    email: str
    client_id: str
    scopes: frozenset[str]
    redirect_uri: str = ""
    challenge: str | None = None


@dataclass(slots=True)
class _Page:
    calendar: str
    params: dict[str, str]
    items: list[dict[str, Any]]
    sync_token: str | None


class GoogleFake:
    """The fake service: ``async with GoogleFake(ca) as fake:`` serves on 127.0.0.1."""

    def __init__(
        self,
        ca: TestCA,
        *,
        latency_ms: float = 0.0,
        token_lifetime_s: int = 3599,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.ca = ca
        self.latency = latency_ms / 1000
        self.token_lifetime = token_lifetime_s
        self.max_batch = max_batch
        self.users: dict[str, User] = {}
        self.calendars: dict[str, FakeCalendar] = {}
        self.service_accounts: dict[str, rsa.RSAPublicKey] = {}  # client_email -> key
        self.delegated_scopes: frozenset[str] = CALENDAR_SCOPES  # knob: the Admin console
        self.clients: dict[str, str] = {}  # desktop OAuth clients: id -> secret
        self.consent_denied = False  # knob: the user clicks "Cancel"
        self.tokens: dict[str, _Token] = {}
        self._codes: dict[str, _Grant] = {}
        self.refresh_tokens: dict[str, _Grant] = {}
        self._sync_tokens: dict[str, tuple[str, int, int]] = {}
        self._pages: dict[str, _Page] = {}
        self.requests: Counter[str] = Counter()  # HTTP requests by kind
        self.writes_without_send_updates_none = 0
        self.attendee_writes = 0
        self.auth_headers_seen: list[str] = []
        self.token_requests: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/o/oauth2/v2/auth"

    async def __aenter__(self) -> GoogleFake:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/token", self._token)
        app.router.add_get("/o/oauth2/v2/auth", self._consent)
        app.router.add_post("/batch/calendar/v3", self._batch)
        app.router.add_route("*", "/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ca.server_context())
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ set-up knobs

    def add_user(self, email: str, time_zone: str = "Europe/Berlin") -> User:
        key = email.lower()
        if key not in self.users:
            primary = FakeCalendar(id=email, owner=key, time_zone=time_zone)
            self.calendars[email.lower()] = primary
            self.users[key] = User(email=email, primary=primary)
        return self.users[key]

    def add_calendar(self, owner: str, calendar_id: str) -> FakeCalendar:
        cal = FakeCalendar(id=calendar_id, owner=owner.lower())
        self.calendars[calendar_id.lower()] = cal
        return cal

    def service_account_key(self, name: str = "calhub-sync") -> dict[str, str]:
        """A new service account's JSON key file, as the Cloud console downloads it."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"{name}@calhub-project.iam.gserviceaccount.com"
        self.service_accounts[email] = private.public_key()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": "calhub-project",
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": self.auth_url,
            "token_uri": self.token_url,
            "auth_provider_x509_cert_url": f"{self.url}/oauth2/v1/certs",
            "client_x509_cert_url": f"{self.url}/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    def add_desktop_client(self) -> tuple[str, str]:
        """A new "desktop app" OAuth client: (client_id, client_secret)."""
        client_id = f"{secrets.randbelow(10**12)}-{secrets.token_hex(8)}.apps.googleusercontent.com"
        secret = "GOCSPX-" + secrets.token_urlsafe(21)
        self.clients[client_id] = secret
        return client_id, secret

    def grant_refresh_token(self, email: str, client_id: str) -> str:
        """A refresh token as if ``email`` had consented (skips the browser round trip)."""
        token = "1//" + secrets.token_urlsafe(40)
        self.refresh_tokens[token] = _Grant(email.lower(), client_id, CALENDAR_SCOPES)
        return token

    def issue_token(self, email: str, scopes: frozenset[str] = CALENDAR_SCOPES) -> str:
        """An access token for ``email`` (tests that call the API without calhub)."""
        token = "ya29." + secrets.token_urlsafe(32)
        self.tokens[token] = _Token(email.lower(), scopes, time.time() + self.token_lifetime)
        return token

    # ------------------------------------------------------------------ failure knobs

    def throttle(
        self,
        email: str,
        count: int,
        *,
        status: int = 403,
        reason: str = "rateLimitExceeded",
        retry_after: str | None = None,
    ) -> None:
        """The next ``count`` calls as this user get a quota error."""
        user = self.user(email)
        user.throttle_left, user.throttle_status = count, status
        user.throttle_reason, user.retry_after = reason, retry_after

    def fail(self, email: str, count: int) -> None:
        """The next ``count`` calls as this user get 503 backendError."""
        self.user(email).fail_left = count

    def expire_sync_tokens(self, calendar: str) -> None:
        self.calendar(calendar).generation += 1

    def revoke_delegation(self, email: str) -> None:
        """The Workspace admin takes this user out of the delegation: tokens die too."""
        self.user(email).delegation = False
        self._drop_tokens(email)

    def revoke_refresh_tokens(self, email: str) -> None:
        """The user removes calhub's access in their Google account."""
        key = email.lower()
        for token in [t for t, g in self.refresh_tokens.items() if g.email == key]:
            del self.refresh_tokens[token]
        self._drop_tokens(email)

    def _drop_tokens(self, email: str) -> None:
        for token in [t for t, v in self.tokens.items() if v.email == email.lower()]:
            del self.tokens[token]

    # ------------------------------------------------------------------ reading state

    def user(self, email: str) -> User:
        return self.users[email.lower()]

    def calendar(self, calendar_id: str) -> FakeCalendar:
        return self.calendars[calendar_id.lower()]

    def events(self, calendar: str, *, cancelled: bool = False) -> list[FakeEvent]:
        return [
            e
            for e in self.calendar(calendar).events.values()
            if cancelled or e.status != "cancelled"
        ]

    def hub_ids(self, calendar: str) -> list[str]:
        return sorted(
            e.private["calhubId"] for e in self.events(calendar) if "calhubId" in e.private
        )

    def user_requests(self, email: str) -> int:
        return self.user(email).requests

    # ------------------------------------------------------------------ the owner's edits

    def owner_create(
        self,
        calendar: str,
        summary: str,
        start: datetime | date,
        end: datetime | date,
        *,
        tz: str | None = None,
        visibility: str = "default",
        description: str = "",
        location: str = "",
        transparency: str = "opaque",
        reminder_minutes: int | None = None,
        color_id: str | None = None,
        recurring_event_id: str | None = None,
    ) -> str:
        """The owner creates an event in Google Calendar (no calhub property)."""
        cal = self.calendar(calendar)
        zone = tz or cal.time_zone
        fields: dict[str, Any] = {
            "summary": summary,
            "description": description,
            "location": location,
            "start": _owner_when(start, zone),
            "end": _owner_when(end, zone),
            "visibility": visibility,
            "transparency": transparency,
            "reminders": {"useDefault": True}
            if reminder_minutes is None
            else {
                "useDefault": False,
                "overrides": [{"method": "popup", "minutes": reminder_minutes}],
            },
        }
        if color_id:
            fields["colorId"] = color_id
        base = uuid.uuid4().hex[:26]
        eid = base if recurring_event_id is None else f"{recurring_event_id}_{_compact(start)}"
        ev = FakeEvent(id=eid, fields=fields, recurring_event_id=recurring_event_id)
        self._store(cal, ev, creating=True)
        return eid

    def owner_create_series(
        self, calendar: str, summary: str, first: datetime, minutes: int, count: int
    ) -> list[str]:
        """A weekly recurring event of ``count`` occurrences, as singleEvents lists them."""
        master = uuid.uuid4().hex[:26]
        return [
            self.owner_create(
                calendar,
                summary,
                first + timedelta(weeks=i),
                first + timedelta(weeks=i, minutes=minutes),
                recurring_event_id=master,
            )
            for i in range(count)
        ]

    def owner_edit(
        self,
        calendar: str,
        event_id: str,
        *,
        start: datetime | date | None = None,
        end: datetime | date | None = None,
        **fields: Any,
    ) -> None:
        """The owner edits an event (moves it, renames it, makes it private...)."""
        cal = self.calendar(calendar)
        ev = cal.events[event_id]
        zone = ev.fields["start"].get("timeZone") or cal.time_zone
        if start is not None:
            ev.fields["start"] = _owner_when(start, zone)
        if end is not None:
            ev.fields["end"] = _owner_when(end, zone)
        ev.fields.update(fields)
        self._store(cal, ev)

    def owner_create_leap_second(self, calendar: str, start: datetime) -> str:
        """An event starting on a leap second (RFC 3339 allows ``:60``), which Python's
        datetime cannot represent: what a client must skip rather than fail on."""
        eid = self.owner_create(calendar, "Leap", start, start + timedelta(hours=1), tz="UTC")
        ev = self.calendar(calendar).events[eid]
        ev.span_hint = ev.span()
        ev.fields["start"] = {"dateTime": start.strftime("%Y-%m-%dT%H:%M:60Z"), "timeZone": "UTC"}
        return eid

    def owner_delete(self, calendar: str, event_id: str) -> None:
        cal = self.calendar(calendar)
        ev = cal.events[event_id]
        ev.status = "cancelled"
        self._store(cal, ev)

    # ------------------------------------------------------------------ OAuth

    async def _token(self, request: web.Request) -> web.Response:
        self.requests["token"] += 1
        await self._delay()
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Invalid content type")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.token_requests.append(form)
        grant = form.get("grant_type")
        if grant == JWT_GRANT:
            return self._jwt_grant(form.get("assertion", ""))
        if grant == "authorization_code":
            return self._code_grant(form)
        if grant == "refresh_token":
            return self._refresh_grant(form)
        return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _jwt_grant(self, assertion: str) -> web.Response:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _oauth_error(400, "invalid_grant", "Invalid JWT: malformed")
        key = self.service_accounts.get(str(unverified.get("iss")))
        if key is None or header.get("alg") != "RS256":
            return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=JWT_AUDIENCE,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
                leeway=0,
            )
        except jwt.InvalidAudienceError:
            return _oauth_error(400, "invalid_grant", "Invalid JWT: audience")
        except jwt.ExpiredSignatureError:
            return _oauth_error(
                400, "invalid_grant", "Invalid JWT: Token must be a short-lived token"
            )
        except jwt.PyJWTError:
            return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            return _oauth_error(
                400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)"
            )
        scopes = frozenset(str(claims["scope"]).split())
        if not scopes:
            return _oauth_error(400, "invalid_scope", "Empty or missing scope not allowed.")
        subject = claims.get("sub")
        if subject is None:
            # The service account as itself: it has no calendar the hub could use.
            return self._issue(str(claims["iss"]), scopes)
        user = self.users.get(str(subject).lower())
        if user is None:
            return _oauth_error(400, "invalid_grant", "Invalid email or User ID")
        if not user.delegation or not scopes <= self.delegated_scopes:
            return _oauth_error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client"
                " not authorized for any of the scopes requested.",
            )
        return self._issue(user.email, scopes)

    def _code_grant(self, form: dict[str, str]) -> web.Response:
        client = self._client(form)
        if isinstance(client, web.Response):
            return client
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.client_id != client:
            return _oauth_error(400, "invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if digest.decode().rstrip("=") != grant.challenge:
                return _oauth_error(400, "invalid_grant", "Invalid code verifier.")
        refresh = self.grant_refresh_token(grant.email, client)
        return self._issue(grant.email, grant.scopes, refresh_token=refresh)

    def _refresh_grant(self, form: dict[str, str]) -> web.Response:
        client = self._client(form)
        if isinstance(client, web.Response):
            return client
        grant = self.refresh_tokens.get(form.get("refresh_token", ""))
        if grant is None or grant.client_id != client:
            return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        return self._issue(grant.email, grant.scopes)

    def _client(self, form: dict[str, str]) -> str | web.Response:
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if form.get("client_secret") != self.clients[client_id]:
            return _oauth_error(401, "invalid_client", "Unauthorized")
        return client_id

    def _issue(
        self, email: str, scopes: frozenset[str], refresh_token: str | None = None
    ) -> web.Response:
        token = self.issue_token(email, scopes)
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
        }
        if refresh_token is not None or email.lower() in self.users:
            body["scope"] = " ".join(sorted(scopes))
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return web.json_response(body)

    async def _consent(self, request: web.Request) -> web.Response:
        """The consent page: the signed-in user (``login_hint``) allows at once."""
        q = request.query
        client_id = q.get("client_id", "")
        redirect_uri = q.get("redirect_uri", "")
        split = urlsplit(redirect_uri)
        if client_id not in self.clients:
            return web.Response(status=401, text="Error 401: invalid_client")
        if split.scheme != "http" or split.hostname not in ("127.0.0.1", "localhost", "[::1]"):
            return web.Response(status=400, text="Error 400: redirect_uri_mismatch")
        if q.get("response_type") != "code":
            return web.Response(status=400, text="Error 400: unsupported_response_type")
        scopes = frozenset(q.get("scope", "").split())
        if not scopes or not scopes <= CALENDAR_SCOPES:
            return web.Response(status=400, text="Error 400: invalid_scope")
        challenge = q.get("code_challenge")
        if challenge is not None and q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="Error 400: invalid_request (plain PKCE)")
        email = q.get("login_hint", "").lower()
        if email not in self.users:
            return web.Response(status=400, text="Error 400: no such account")
        answer: dict[str, str] = {}
        if self.consent_denied:
            answer["error"] = "access_denied"
        else:
            code = "4/" + secrets.token_urlsafe(30)
            self._codes[code] = _Grant(email, client_id, scopes, redirect_uri, challenge)
            answer.update(code=code, scope=" ".join(sorted(scopes)))
        if "state" in q:
            answer["state"] = q["state"]
        raise web.HTTPFound(f"{redirect_uri}?{urlencode(answer)}")

    # ------------------------------------------------------------------ the API

    async def _api(self, request: web.Request) -> web.Response:
        self.requests["api"] += 1
        await self._delay()
        try:
            token = self._authenticate(request.headers.get("Authorization", ""))
            user = self.users.get(token.email)
            if user is None:
                raise ApiError(403, "forbidden", "The service account has no calendar access.")
            user.requests += 1
            body = await _json_body(request)
            reply = self._call(user, request.method, request.path_qs, dict(request.headers), body)
        except ApiError as exc:
            reply = Reply(exc.code, exc.body(), dict(exc.headers))
        return _respond(reply)

    async def _batch(self, request: web.Request) -> web.Response:
        self.requests["batch"] += 1
        await self._delay()
        try:
            token = self._authenticate(request.headers.get("Authorization", ""))
            user = self.users.get(token.email)
            if user is None:
                raise ApiError(403, "forbidden", "The service account has no calendar access.")
            user.requests += 1
            if request.content_type != "multipart/mixed":
                raise ApiError(400, "badRequest", "Batch requests must be multipart/mixed")
            boundary = _boundary(request.headers["Content-Type"])
            parts = _parse_parts(await request.text(), boundary)
            if not parts:
                raise ApiError(400, "badRequest", "Batch request contains no calls")
            if len(parts) > self.max_batch:
                raise ApiError(400, "badRequest", f"A batch holds at most {self.max_batch} calls")
        except ApiError as exc:
            return _respond(Reply(exc.code, exc.body(), dict(exc.headers)))
        out_boundary = "batch_" + secrets.token_hex(8)
        chunks: list[str] = []
        answers = []
        for content_id, method, target, headers, body in parts:
            try:
                if target.startswith("/batch"):
                    raise ApiError(400, "badRequest", "Nested batch requests are not allowed")
                reply = self._call(user, method, target, headers, body)
            except ApiError as exc:
                reply = Reply(exc.code, exc.body(), dict(exc.headers))
            answers.append((content_id, reply))
        for content_id, reply in reversed(answers):  # Google promises no order
            status_text = web.Response(status=reply.status).reason
            payload = "" if reply.body is None else json.dumps(reply.body, ensure_ascii=False)
            head = [f"HTTP/1.1 {reply.status} {status_text}"]
            if payload:
                head.append("Content-Type: application/json; charset=UTF-8")
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            chunks.append(
                f"--{out_boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{content_id}>\r\n\r\n"
                + "\r\n".join(head)
                + "\r\n\r\n"
                + payload
                + "\r\n"
            )
        chunks.append(f"--{out_boundary}--\r\n")
        return web.Response(
            body="".join(chunks).encode(),
            headers={"Content-Type": f"multipart/mixed; boundary={out_boundary}"},
        )

    def _authenticate(self, header: str) -> _Token:
        self.auth_headers_seen.append(header[:12])
        kind, _, value = header.partition(" ")
        token = self.tokens.get(value) if kind.lower() == "bearer" else None
        if token is None or token.expires < time.time():
            raise ApiError(
                401,
                "authError",
                "Request had invalid authentication credentials.",
                **{"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if not token.scopes & CALENDAR_SCOPES:
            raise ApiError(403, "insufficientPermissions", "Insufficient Permission")
        return token

    def _call(
        self, user: User, method: str, target: str, headers: dict[str, str], body: Any
    ) -> Reply:
        """One API call (top-level or a batch part) as ``user``."""
        user.calls += 1
        self._quota(user)
        split = urlsplit(target)
        match = _EVENT_PATH.match(split.path)
        if match is None:
            raise ApiError(501, "notImplemented", f"{method} {split.path} is not implemented")
        query = parse_qs(split.query, keep_blank_values=True)
        cal = self._calendar_for(user, _unquote(match["cal"]))
        eid = _unquote(match["eid"]) if match["eid"] else None
        if_match = next((v for k, v in headers.items() if k.lower() == "if-match"), None)
        if eid is None and method == "GET":
            return self._list(cal, query)
        if eid is None and method == "POST":
            return self._insert(cal, query, body)
        if eid is not None and method == "GET":
            _params(query, frozenset({"alwaysIncludeEmail", "maxAttendees", "timeZone"}), set())
            return Reply(200, self._render(cal, self._event(cal, eid)))
        if eid is not None and method == "PATCH":
            return self._patch(cal, eid, query, body, if_match)
        if eid is not None and method == "DELETE":
            return self._delete(cal, eid, query, if_match)
        raise ApiError(501, "notImplemented", f"{method} on events is not implemented")

    def _quota(self, user: User) -> None:
        if user.throttle_left > 0:
            user.throttle_left -= 1
            extra = {"Retry-After": user.retry_after} if user.retry_after else {}
            domain = "usageLimits"
            raise ApiError(
                user.throttle_status, user.throttle_reason, "Rate Limit Exceeded",
                domain=domain, **extra,
            )  # fmt: skip
        if user.fail_left > 0:
            user.fail_left -= 1
            raise ApiError(503, "backendError", "Backend Error")

    def _calendar_for(self, user: User, calendar_id: str) -> FakeCalendar:
        if calendar_id == "primary":
            return user.primary
        cal = self.calendars.get(calendar_id.lower())
        if cal is None or cal.owner != user.email.lower():
            raise ApiError(404, "notFound", "Not Found")
        return cal

    def _event(self, cal: FakeCalendar, eid: str) -> FakeEvent:
        ev = cal.events.get(eid)
        if ev is None:
            raise ApiError(404, "notFound", "Not Found")
        return ev

    # ------------------------------------------------------------------ events.list

    def _list(self, cal: FakeCalendar, query: dict[str, list[str]]) -> Reply:
        params = _params(query, _LIST_PARAMS, {"privateExtendedProperty"})
        page_token = params.pop("pageToken", None)
        if page_token is not None:
            return self._next_page(cal, page_token, params)
        not_done = sorted(set(params) - _LIST_DONE)
        sync = params.get("syncToken")
        if sync is not None:
            clash = [p for p in _NOT_WITH_SYNC if p in params]
            if clash:
                raise ApiError(
                    400, "invalid", f"The syncToken cannot be used together with {clash[0]}."
                )
        if not_done:
            raise ApiError(501, "notImplemented", f"events.list: {', '.join(not_done)}")
        single = _bool(params.get("singleEvents", "false"), "singleEvents")
        show_deleted = _bool(params.get("showDeleted", "false"), "showDeleted")
        size = _max_results(params.get("maxResults"))
        if not single and any(e.recurring_event_id for e in cal.events.values()):
            raise ApiError(501, "notImplemented", "recurring events without singleEvents=true")
        if sync is not None:
            since = self._since(cal, sync)
            events = [e for e in cal.events.values() if e.changed_at > since]
        else:
            events = self._filtered(cal, params, show_deleted)
        events.sort(key=lambda e: (e.changed_at, e.id))
        items = [self._render(cal, e) for e in events]
        token = self._sync_token(cal)
        return self._page(cal, params, items, size, token)

    def _filtered(
        self, cal: FakeCalendar, params: dict[str, Any], show_deleted: bool
    ) -> list[FakeEvent]:
        low = _rfc3339(params["timeMin"], "timeMin") if "timeMin" in params else None
        high = _rfc3339(params["timeMax"], "timeMax") if "timeMax" in params else None
        if low is not None and high is not None and high <= low:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        wanted: list[tuple[str, str]] = []
        for constraint in params.get("privateExtendedProperty", []):
            key, sep, value = constraint.partition("=")
            if not sep or not key:
                raise ApiError(400, "invalid", "Invalid privateExtendedProperty constraint")
            wanted.append((key, value))
        out = []
        for ev in cal.events.values():
            if ev.status == "cancelled" and not show_deleted:
                continue
            start, end = ev.span()
            if low is not None and end <= low:  # timeMin bounds the end (exclusive)
                continue
            if high is not None and start >= high:  # timeMax bounds the start (exclusive)
                continue
            if any(ev.private.get(k) != v for k, v in wanted):
                continue
            out.append(ev)
        return out

    def _since(self, cal: FakeCalendar, token: str) -> int:
        state = self._sync_tokens.get(token)
        if state is None:
            raise ApiError(400, "invalid", "Invalid sync token value.")
        calendar, generation, seq = state
        if calendar != cal.id.lower():
            raise ApiError(400, "invalid", "Invalid sync token value.")
        if generation != cal.generation:
            raise ApiError(
                410,
                "fullSyncRequired",
                "Sync token is no longer valid, a full sync is required.",
                domain="calendar",
            )
        return seq

    def _sync_token(self, cal: FakeCalendar) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
        self._sync_tokens[token] = (cal.id.lower(), cal.generation, cal.seq)
        return token

    def _page(
        self,
        cal: FakeCalendar,
        params: dict[str, Any],
        items: list[dict[str, Any]],
        size: int,
        sync_token: str,
    ) -> Reply:
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"p{cal.seq}"',
            "summary": cal.id,
            "updated": _now_text(),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [{"method": "popup", "minutes": 10}],
            "items": items[:size],
        }
        if len(items) > size:
            token = secrets.token_urlsafe(18)
            self._pages[token] = _Page(cal.id.lower(), dict(params), items[size:], sync_token)
            body["nextPageToken"] = token
        else:
            body["nextSyncToken"] = sync_token
        return Reply(200, body)

    def _next_page(self, cal: FakeCalendar, token: str, params: dict[str, Any]) -> Reply:
        page = self._pages.pop(token, None)
        if page is None or page.calendar != cal.id.lower():
            raise ApiError(400, "invalid", "Invalid page token value.")
        if params != page.params:
            raise ApiError(400, "invalid", "The parameters of a page request must not change.")
        size = _max_results(params.get("maxResults"))
        return self._page(cal, params, page.items, size, page.sync_token or "")

    # ------------------------------------------------------------------ writes

    def _write_params(self, query: dict[str, list[str]]) -> dict[str, Any]:
        params = _params(query, _WRITE_PARAMS, set())
        updates = params.get("sendUpdates")
        if updates is not None and updates not in ("all", "externalOnly", "none"):
            raise ApiError(400, "invalid", "Invalid sendUpdates value.")
        if updates != "none":
            self.writes_without_send_updates_none += 1
        return params

    def _insert(self, cal: FakeCalendar, query: dict[str, list[str]], body: Any) -> Reply:
        self._write_params(query)
        fields = _validated(body, creating=True)
        eid = fields.pop("id", None)
        if eid is None:
            eid = uuid.uuid4().hex[:26]
        elif not _EVENT_ID.match(eid):
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if eid in cal.events:  # a cancelled event keeps its id too
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        ev = FakeEvent(id=eid, fields=fields)
        _check_event(ev)
        self._store(cal, ev, creating=True)
        return Reply(200, self._render(cal, ev))

    def _patch(
        self,
        cal: FakeCalendar,
        eid: str,
        query: dict[str, list[str]],
        body: Any,
        if_match: str | None,
    ) -> Reply:
        self._write_params(query)
        ev = self._event(cal, eid)
        _precondition(ev, if_match)
        if ev.status == "cancelled":
            raise ApiError(404, "notFound", "Not Found")
        patch = _validated(body, creating=False)
        if "id" in patch and patch.pop("id") != eid:
            raise ApiError(400, "invalid", "The event id cannot be changed.")
        merged = _merge(ev.fields, patch)
        candidate = FakeEvent(id=eid, fields=_drop_long_properties(merged))
        _check_event(candidate)
        ev.fields = candidate.fields
        self._store(cal, ev)
        return Reply(200, self._render(cal, ev))

    def _delete(
        self, cal: FakeCalendar, eid: str, query: dict[str, list[str]], if_match: str | None
    ) -> Reply:
        self._write_params(query)
        ev = self._event(cal, eid)
        if ev.status == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        _precondition(ev, if_match)
        ev.status = "cancelled"
        self._store(cal, ev)
        return Reply(204)

    def _store(self, cal: FakeCalendar, ev: FakeEvent, *, creating: bool = False) -> None:
        now = _now_text()
        if creating:
            ev.created = now
        else:
            ev.revision += 1
        if ev.fields.get("attendees"):
            self.attendee_writes += 1
        ev.updated = now
        cal.seq += 1
        ev.changed_at = cal.seq
        cal.events[ev.id] = ev

    def _render(self, cal: FakeCalendar, ev: FakeEvent) -> dict[str, Any]:
        if ev.status == "cancelled":
            out: dict[str, Any] = {"kind": "calendar#event", "etag": ev.etag, "id": ev.id}
            out["status"] = "cancelled"
            if ev.recurring_event_id:
                out["recurringEventId"] = ev.recurring_event_id
            return out
        f = ev.fields
        out = {
            "kind": "calendar#event",
            "etag": ev.etag,
            "id": ev.id,
            "status": ev.status,
            "htmlLink": f"https://www.google.com/calendar/event?eid={ev.id}",
            "created": ev.created,
            "updated": ev.updated,
            "creator": {"email": cal.owner, "self": True},
            "organizer": {"email": cal.owner, "self": True},
            "start": dict(f["start"]),
            "end": dict(f["end"]),
            "iCalUID": f"{ev.id}@google.com",
            "sequence": ev.revision - 1,
            "reminders": f.get("reminders") or {"useDefault": True},
            "eventType": "default",
        }
        for key in ("summary", "description", "location", "colorId", "attendees"):
            if f.get(key):
                out[key] = f[key]
        if f.get("visibility", "default") != "default":
            out["visibility"] = f["visibility"]
        if f.get("transparency") == "transparent":
            out["transparency"] = "transparent"
        if f.get("extendedProperties"):
            out["extendedProperties"] = json.loads(json.dumps(f["extendedProperties"]))
        if ev.recurring_event_id:
            out["recurringEventId"] = ev.recurring_event_id
            out["originalStartTime"] = dict(f["start"])
        return out

    async def _delay(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)


class OwnerBackdoor:
    """Edits "by the agent" in Google Calendar, in the shape the conformance suite expects."""

    def __init__(self, fake: GoogleFake, tz: str = "America/Los_Angeles") -> None:
        self.fake = fake
        self.tz = tz

    @staticmethod
    def calendar(cal: Any) -> str:
        return cal.calendar or cal.mailbox

    async def create_external(self, cal: Any, data: Any) -> str:
        return self.fake.owner_create(
            self.calendar(cal),
            data.subject,
            data.start,
            data.end,
            tz=self.tz,
            visibility="private" if data.private else "default",
            description=data.body,
            location=data.location,
            transparency="transparent" if data.show_as == "free" else "opaque",
            reminder_minutes=data.reminder_minutes,
        )

    async def edit(self, cal: Any, remote_id: str, data: Any) -> None:
        self.fake.owner_edit(
            self.calendar(cal),
            remote_id,
            start=data.start,
            end=data.end,
            summary=data.subject,
            description=data.body,
            location=data.location,
            visibility="private" if data.private else "default",
        )

    async def delete(self, cal: Any, remote_id: str) -> None:
        self.fake.owner_delete(self.calendar(cal), remote_id)

    async def create_unreadable(self, cal: Any, start: Any) -> str:
        return self.fake.owner_create_leap_second(self.calendar(cal), start)

    async def expire_cursor(self, cal: Any) -> None:
        self.fake.expire_sync_tokens(self.calendar(cal))

    async def request_count(self) -> int:
        return self.fake.requests["api"] + self.fake.requests["batch"]


# --------------------------------------------------------------------------- validation


def _validated(body: Any, *, creating: bool) -> dict[str, Any]:
    """The writable fields of an event body; 400 for unknown or read-only ones, 501 for
    writable ones the fake does not implement."""
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "This API does not support parsing form-encoded input.")
    unknown = [k for k in body if k not in _FIELDS_DONE | _FIELDS_NOT_DONE | _READ_ONLY]
    if unknown:
        raise ApiError(
            400, "invalid", f'Invalid JSON payload received. Unknown name "{unknown[0]}"'
        )
    not_done = [k for k in body if k in _FIELDS_NOT_DONE]
    if not_done:
        raise ApiError(501, "notImplemented", f"event field {not_done[0]} is not implemented")
    fields = {k: v for k, v in body.items() if k in _FIELDS_DONE}
    if fields.get("status", "confirmed") != "confirmed":
        raise ApiError(501, "notImplemented", "writing status other than confirmed")
    fields.pop("status", None)
    if creating:
        for required in ("start", "end"):
            if required not in fields:
                raise ApiError(400, "required", f"Missing {required} time.")
    return _drop_long_properties(fields) if creating else fields


def _drop_long_properties(fields: dict[str, Any]) -> dict[str, Any]:
    """Google keeps extended properties up to 44-character keys and 1024-character values
    and drops longer ones without an error."""
    ext = fields.get("extendedProperties")
    if not isinstance(ext, dict):
        return fields
    for scope in ("private", "shared"):
        props = ext.get(scope)
        if isinstance(props, dict):
            ext[scope] = {
                str(k): str(v)
                for k, v in props.items()
                if v is not None and len(str(k)) <= _MAX_PROP_KEY and len(str(v)) <= _MAX_PROP_VALUE
            }
    return fields


def _check_event(ev: FakeEvent) -> None:
    f = ev.fields
    start, end = _when(f.get("start"), "start"), _when(f.get("end"), "end")
    if ("date" in f["start"]) != ("date" in f["end"]):
        raise ApiError(
            400, "invalid", "Start and end times must either both be date or both be dateTime."
        )
    if end <= start:
        raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
    if f.get("visibility", "default") not in ("default", "public", "private", "confidential"):
        raise ApiError(400, "invalid", "Invalid visibility value.")
    if f.get("transparency", "opaque") not in ("opaque", "transparent"):
        raise ApiError(400, "invalid", "Invalid transparency value.")
    if "colorId" in f and f["colorId"] not in {str(i) for i in range(1, 12)}:
        raise ApiError(400, "invalid", "Invalid color id value.")
    for key in ("summary", "description", "location"):
        if key in f and not isinstance(f[key], str):
            raise ApiError(400, "invalid", f"Invalid value for {key}.")
    _check_reminders(f.get("reminders"))


def _check_reminders(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ApiError(400, "invalid", "Invalid reminders.")
    overrides = value.get("overrides") or []
    if value.get("useDefault") and overrides:
        raise ApiError(
            400,
            "cannotUseDefaultRemindersAndSpecifyOverride",
            "Cannot specify both default reminders and overrides at the same time.",
        )
    if len(overrides) > 5:
        raise ApiError(400, "tooManyReminders", "Too many reminders.")
    for o in overrides:
        if not isinstance(o, dict) or o.get("method") not in ("email", "popup"):
            raise ApiError(400, "invalid", "Invalid reminder method.")
        minutes = o.get("minutes")
        if not isinstance(minutes, int) or not 0 <= minutes <= 40320:
            raise ApiError(400, "invalid", "Invalid reminder minutes.")


def _when(value: Any, name: str) -> datetime:
    if not isinstance(value, dict) or ("date" in value) == ("dateTime" in value):
        raise ApiError(400, "required", f"Missing {name} time.")
    tz = value.get("timeZone")
    if tz is not None:
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(
                400, "timeZoneInvalid", f"Invalid time zone definition for {name} time."
            ) from None
    if "date" in value:
        try:
            return datetime.combine(
                date.fromisoformat(str(value["date"])), datetime.min.time(), UTC
            )
        except ValueError:
            raise ApiError(400, "invalid", f"Invalid {name} date.") from None
    try:
        when = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid", f"Invalid {name} time.") from None
    if when.tzinfo is None:
        if tz is None:
            raise ApiError(400, "invalid", f"Missing time zone definition for {name} time.")
        when = when.replace(tzinfo=ZoneInfo(str(tz)))
    return when.astimezone(UTC)


def _instant(value: dict[str, Any]) -> datetime:
    return _when(value, "time")


def _precondition(ev: FakeEvent, if_match: str | None) -> None:
    if if_match is not None and if_match != "*" and if_match != ev.etag:
        raise ApiError(412, "conditionNotMet", "Precondition Failed", domain="global")


def _merge(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Patch semantics: objects merge field by field, null clears, anything else replaces."""
    out = json.loads(json.dumps(old))
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = json.loads(json.dumps(value))
    return out


def _params(
    query: dict[str, list[str]], allowed: frozenset[str], repeated: set[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values in query.items():
        if key in _STANDARD:
            if key in ("fields", "alt"):
                raise ApiError(501, "notImplemented", f"query parameter {key}")
            continue
        if key not in allowed:
            raise ApiError(400, "invalidParameter", f"Invalid parameter: {key}")
        if key in repeated:
            out[key] = values
        elif len(values) > 1:
            raise ApiError(400, "invalidParameter", f"Parameter {key} given twice")
        else:
            out[key] = values[0]
    return out


def _bool(value: str, name: str) -> bool:
    if value not in ("true", "false"):
        raise ApiError(400, "invalidParameter", f"Invalid boolean value for {name}: '{value}'")
    return value == "true"


def _max_results(value: str | None) -> int:
    if value is None:
        return DEFAULT_RESULTS
    if not value.isdigit() or int(value) < 1:
        raise ApiError(400, "invalid", "Invalid value for maxResults")
    return min(int(value), MAX_RESULTS)


def _rfc3339(value: str, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ApiError(400, "badRequest", f"Bad Request: {name} must be RFC 3339 with an offset")
    return when.astimezone(UTC)


def _owner_when(value: datetime | date, zone: str) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return {"dateTime": aware.astimezone(ZoneInfo(zone)).isoformat(), "timeZone": zone}


def _compact(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ").lower()
    return value.strftime("%Y%m%d")


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unquote(value: str) -> str:
    from urllib.parse import unquote

    return unquote(value)


def _boundary(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ApiError(400, "badRequest", "multipart/mixed without a boundary")
    return match.group(1)


def _parse_parts(text: str, boundary: str) -> list[tuple[str, str, str, dict[str, str], Any]]:
    """(content id, method, target, headers, JSON body) of each part of a batch request."""
    parts = []
    for raw in text.split("--" + boundary)[1:]:
        if raw.startswith("--"):
            break
        head, _, inner = raw.strip("\r\n").replace("\r\n", "\n").partition("\n\n")
        part_headers = _headers(head)
        if part_headers.get("content-type", "").split(";")[0].strip() != "application/http":
            raise ApiError(400, "badRequest", "Each batch part must be application/http")
        content_id = part_headers.get("content-id", "").strip("<>") or str(len(parts))
        request_line, _, rest = inner.partition("\n")
        fields = request_line.split()
        if len(fields) != 3 or not fields[2].startswith("HTTP/"):
            raise ApiError(400, "badRequest", f"Bad request line in batch part: {request_line!r}")
        method, target = fields[0], fields[1]
        if target.startswith("http"):
            target = urlsplit(target).path + (
                "?" + urlsplit(target).query if urlsplit(target).query else ""
            )
        req_head, _, payload = rest.partition("\n\n")
        headers = _headers(req_head)
        body: Any = None
        if payload.strip():
            if headers.get("content-type", "").split(";")[0].strip() != "application/json":
                raise ApiError(400, "badRequest", "A batch part's body must be application/json")
            try:
                body = json.loads(payload)
            except ValueError:
                raise ApiError(400, "parseError", "Parse Error") from None
        parts.append((content_id, method, target, headers, body))
    return parts


def _headers(block: str) -> dict[str, str]:
    out = {}
    for line in block.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


async def _json_body(request: web.Request) -> Any:
    if request.method not in ("POST", "PATCH", "PUT"):
        return None
    raw = await request.read()
    if not raw:
        return None
    if request.content_type != "application/json":
        raise ApiError(400, "parseError", "This API does not support parsing form-encoded input.")
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "parseError", "Parse Error") from None


def _respond(reply: Reply) -> web.Response:
    if reply.body is None:
        return web.Response(status=reply.status, headers=reply.headers)
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)
