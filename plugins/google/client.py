"""The Calendar API client: aiogoogle builds the requests, calhub sends and reads them.

What is decided here, once, for every request:

* **The discovery document ships with the plugin** (``calendar.v3.json``, see its NOTICE) and
  is loaded *per account* into its own ``GoogleAPI``: aiogoogle edits the document it is given
  (it adds parameters and rewrites each method's path template on first use), so a shared
  copy would carry one account's edits, and ``rootUrl`` (the ``base_url`` option) into another.
* **One session per account.** aiogoogle's ``Aiogoogle`` object keeps its session in a
  ContextVar (each asyncio task would open its own) and raises for every status >= 400;
  calhub keeps one ``AiohttpSession`` whose connector trusts ``ca_file``, sends through its
  ``send(..., full_res=True, raise_for_status=False)`` and maps statuses in
  :mod:`plugins.google.errors`. Token requests get a fresh session from the same factory
  (aiogoogle's managers close the session they are handed).
* **Only base_url's origin** ever receives a token: a request (or a stored cursor) for
  another scheme, host or port is refused.
* **401 once.** A 401 means the access token died early (revoked): the cached token is
  dropped and the request sent once more with a fresh one; a second 401 is an AuthError for
  that agent.
* **Per-user limits.** At most ``max_concurrency`` requests in flight per user, and a token
  bucket below Google's 600 requests per minute per user; a batch of *n* calls counts *n*
  (Google counts each call of a batch against the quota).
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiogoogle.models import Request
from aiogoogle.resource import GoogleAPI
from aiogoogle.sessions.aiohttp_session import AiohttpSession

from hub.spec import CalendarRef, PermanentError, Telemetry, TransientError, ca_bundle_context

DISCOVERY_FILE = Path(__file__).with_name("calendar.v3.json")


class TokenSource(Protocol):
    """Puts an agent's access token on a request (see :mod:`plugins.google.auth`)."""

    async def authorize(self, cal: CalendarRef, request: Request) -> None: ...

    def forget(self, cal: CalendarRef) -> None: ...


@dataclass(frozen=True, slots=True)
class Response:
    """A Calendar API response (or batch part): status, headers, decoded body."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return self.status < 400


@cache
def _discovery_text() -> str:
    return DISCOVERY_FILE.read_text(encoding="utf-8")


def calendar_api(base_url: str) -> GoogleAPI:
    """A ``GoogleAPI`` of Calendar v3 rooted at ``base_url``, on its own copy of the shipped
    discovery document (aiogoogle mutates the document it is given)."""
    document = copy.deepcopy(json.loads(_discovery_text()))
    root = base_url.rstrip("/") + "/"
    document["rootUrl"] = root
    document["baseUrl"] = root + document["servicePath"]
    return GoogleAPI(document)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The TLS context requests verify against (reads a file: call it off the event loop)."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ca_bundle_context(ca_file)
    except ValueError as exc:
        raise PermanentError(f"google: ca_file cannot be used ({exc})") from exc


def session_factory(context: ssl.SSLContext, timeout_s: float) -> Callable[[], AiohttpSession]:
    """New aiogoogle sessions trusting ``context`` (one per account, one per token request)."""

    def make() -> AiohttpSession:
        return AiohttpSession(
            connector=aiohttp.TCPConnector(ssl=context),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    return make


class UserLimits:
    """At most ``concurrency`` requests in flight per user, and at most ``per_minute`` calls
    per user per minute (a token bucket holding one minute's worth)."""

    def __init__(
        self,
        concurrency: int,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.concurrency = max(1, concurrency)
        self.per_minute = max(1, per_minute)
        self._clock = clock
        self._sleep = sleep
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._buckets: dict[str, list[float]] = {}  # user -> [tokens, last refill]
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, user: str, calls: int = 1) -> AsyncIterator[None]:
        key = user.strip().lower()
        await self._take(key, min(max(1, calls), self.per_minute))
        sem = self._sems.setdefault(key, asyncio.Semaphore(self.concurrency))
        async with sem:
            yield

    async def _take(self, key: str, calls: int) -> None:
        rate = self.per_minute / 60.0
        async with self._locks.setdefault(key, asyncio.Lock()):
            bucket = self._buckets.setdefault(key, [float(self.per_minute), self._clock()])
            while True:
                now = self._clock()
                bucket[0] = min(float(self.per_minute), bucket[0] + (now - bucket[1]) * rate)
                bucket[1] = now
                if bucket[0] >= calls:
                    bucket[0] -= calls
                    return
                await self._sleep((calls - bucket[0]) / rate)


class GoogleHttp:
    """Sends aiogoogle-built requests for one account and returns raw :class:`Response`."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenSource,
        sessions: Callable[[], AiohttpSession],
        account: str,
        telemetry: Telemetry,
        limits: UserLimits,
    ) -> None:
        split = urlsplit(base_url)
        if split.scheme != "https" and split.hostname not in ("127.0.0.1", "localhost"):
            raise PermanentError(f"google: base_url must be https: {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.origin = _origin(base_url)
        self.api = calendar_api(base_url)
        self.events = self.api.events
        self.batch_url = self.base_url + str(self.api["batchPath"])
        self.tokens = tokens
        self.account = account
        self.telemetry = telemetry
        self.limits = limits
        self._session = sessions()

    async def close(self) -> None:
        await self._session.close()

    def check_link(self, url: str) -> bool:
        """Whether ``url`` is on base_url's origin and under its path."""
        return _origin(url) == self.origin and url.startswith(self.base_url)

    async def send(
        self, cal: CalendarRef, request: Request, *, operation: str, calls: int = 1
    ) -> Response:
        """One request as ``cal``'s user; raises only for transport and token failures (HTTP
        errors are returned). ``calls`` is how many API calls it carries (a batch)."""
        if not self.check_link(str(request.url)):
            raise PermanentError(f"google: refusing to send a request to {request.url!r}")
        for attempt in (1, 2):
            await self.tokens.authorize(cal, request)
            raw = await self._send_once(cal, request, operation, calls)
            if raw.status_code == 401 and attempt == 1:
                self.tokens.forget(cal)  # a token revoked before its expiry: fetch a new one
                continue
            break
        headers = {str(k): str(v) for k, v in (raw.headers or {}).items()}
        body = raw.json if raw.json is not None else raw.data
        return Response(raw.status_code, headers, body)

    async def _send_once(self, cal: CalendarRef, request: Request, operation: str, calls: int):
        began = time.perf_counter()
        status = "error"
        async with self.limits.hold(cal.mailbox, calls):
            try:
                raw = await self._session.send(request, full_res=True, raise_for_status=False)
                status = str(raw.status_code)
                return raw
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise TransientError(
                    f"google: {operation} {cal.mailbox}: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                self.telemetry.request(self.account, operation, status, time.perf_counter() - began)


def _origin(url: str) -> tuple[str, str, int | None]:
    split = urlsplit(url)
    return split.scheme, (split.hostname or "").lower(), split.port
