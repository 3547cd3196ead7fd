"""Browser sessions of the calendar page: the login, the cookie, the CSRF check.

A browser logs in once with the admin token (``POST /calendar/login``) and gets a random
session id in a cookie that scripts cannot read (``HttpOnly``), that no other site's request
carries (``SameSite=Strict``), and that is ``Secure`` when the endpoint is reached over TLS or
``[admin] public_url`` is https. The store keeps only the SHA-256 of the id, so a copy of the
database lets nobody in. A session ends after :attr:`SessionPolicy.idle` without a request, after
:attr:`SessionPolicy.lifetime` in any case, or at logout.

Every state-changing request made with the cookie must come from the page itself: its
``Origin`` must be the endpoint's own, and it must carry the session's CSRF token in
:data:`CSRF_HEADER` (an HMAC of the session id, which the page reads from ``GET
/calendar/session``; another site can neither read it nor set the header). A state-changing
request with neither cookie nor bearer token but another site's ``Origin`` is refused too: it
protects the open API of a hub without admin token. Bearer tokens (scripts) are unaffected.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Middleware

from hub.admin.errors import ApiError
from hub.config import Config
from hub.model import BrowserSession
from hub.store.base import Store

COOKIE = "calhub_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_KEY = web.RequestKey("calhub_browser_session", str)  # the raw session id, when valid
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A session seen this recently is not written again: one write per minute of use, not per call.
TOUCH_EVERY = timedelta(minutes=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long a browser session lasts: ``idle`` without a request, ``lifetime`` at most."""

    idle: timedelta = timedelta(hours=2)
    lifetime: timedelta = timedelta(hours=12)


class Sessions:
    """Creates, checks and ends browser sessions in the store."""

    def __init__(
        self,
        store: Store,
        policy: SessionPolicy | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.policy = policy or SessionPolicy()
        self.clock = clock

    async def create(self) -> str:
        """A new session; returns its raw id (for the cookie only: it is never stored)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.store.transaction("session") as tx:
            # Logins are rare: the moment to forget sessions that ran out.
            await tx.delete_sessions(before=now - self.policy.idle)
            await tx.put_session(BrowserSession(_hash(session_id), now, now))
        return session_id

    async def check(self, session_id: str) -> bool:
        """Whether ``session_id`` is a live session; it is touched (idle timer restarted)."""
        if not session_id or len(session_id) > 200:
            return False
        id_hash = _hash(session_id)
        session = await self.store.get_session(id_hash)
        if session is None:
            return False
        now = self.clock()
        expired = (
            now - session.seen_at > self.policy.idle
            or now - session.created_at > self.policy.lifetime
        )
        if expired:
            async with self.store.transaction("session") as tx:
                await tx.delete_sessions(id_hash=id_hash)
            return False
        if now - session.seen_at >= TOUCH_EVERY:
            async with self.store.transaction("session") as tx:
                await tx.put_session(BrowserSession(id_hash, session.created_at, now))
        return True

    async def end(self, session_id: str) -> None:
        async with self.store.transaction("session") as tx:
            await tx.delete_sessions(id_hash=_hash(session_id))

    def csrf_token(self, session_id: str) -> str:
        # Keyed by the secret session id: nothing else to keep, and it survives a restart.
        return hmac.new(session_id.encode(), b"calhub-csrf", hashlib.sha256).hexdigest()

    def csrf_ok(self, session_id: str, given: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session_id).encode(), given.encode())


def own_origins(request: web.Request, config: Config) -> set[str]:
    """The origins the page may be served from: the address the request reached, and
    ``[admin] public_url`` behind a reverse proxy."""
    origins = {f"{request.scheme}://{request.host}"}
    if config.admin.public_url:
        scheme, _, rest = config.admin.public_url.partition("://")
        origins.add(f"{scheme}://{rest.split('/', 1)[0]}")
    return origins


def cookie_is_secure(request: web.Request, config: Config) -> bool:
    return request.secure or config.admin.public_url.startswith("https://")


def set_cookie(
    response: web.StreamResponse, request: web.Request, config: Config, value: str
) -> None:
    response.set_cookie(
        COOKIE,
        value,
        httponly=True,
        samesite="Strict",
        secure=cookie_is_secure(request, config),
        path="/",
    )


def clear_cookie(response: web.StreamResponse, request: web.Request, config: Config) -> None:
    response.del_cookie(
        COOKIE, path="/", httponly=True, samesite="Strict", secure=cookie_is_secure(request, config)
    )


def refuse_cross_site(request: web.Request, config: Config) -> None:
    """403 unless the request's ``Origin`` is the endpoint's own (a missing one too)."""
    origin = request.headers.get("Origin")
    if origin is None or origin not in own_origins(request, config):
        raise ApiError(403, "cross-site request refused (its Origin is not this endpoint)")


def session_middleware(sessions: Sessions, config: Config) -> Middleware:
    """Marks requests carrying a live session cookie (the auth middleware then lets them in)
    and applies the CSRF check to the state-changing ones."""

    @web.middleware
    async def middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        if "Authorization" in request.headers:
            return await handler(request)  # a script with its bearer token: no cookies used
        unsafe = request.method not in SAFE_METHODS
        session_id = request.cookies.get(COOKIE)
        if session_id and await sessions.check(session_id):
            if unsafe:
                refuse_cross_site(request, config)
                if not sessions.csrf_ok(session_id, request.headers.get(CSRF_HEADER, "")):
                    raise ApiError(403, f"missing or wrong {CSRF_HEADER} header")
            request[SESSION_KEY] = session_id
        elif unsafe and "Origin" in request.headers:
            # A browser sent it without our cookie: another site's form or script.
            refuse_cross_site(request, config)
        return await handler(request)

    return middleware


SESSIONS = web.AppKey("calhub_sessions", Sessions)


__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SESSIONS",
    "SESSION_KEY",
    "SessionPolicy",
    "Sessions",
    "clear_cookie",
    "refuse_cross_site",
    "session_middleware",
    "set_cookie",
]
