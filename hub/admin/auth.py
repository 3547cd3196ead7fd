"""Who may call the admin endpoint: the bearer token, the feed tokens, the listen check.

Every route but /health needs ``Authorization: Bearer <[admin] token>`` when a token is
configured; without one the API is open, which :func:`listen_is_safe` allows on a loopback
address only. The iCalendar feed also opens with its agent's feed token in ``?token=``,
because calendar apps cannot send headers. Tokens are compared with
:func:`hmac.compare_digest`, so the time taken says nothing about how much of a guess was right.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

from aiohttp import web
from aiohttp.typedefs import Middleware

from hub.admin.errors import ApiError
from hub.admin.sessions import SESSION_KEY
from hub.config import Config

# The calendar page's HTML, script and login hold no data (hub.admin.calendar_page).
PUBLIC_ROUTES = frozenset({"health", "calendar", "calendar-login", "calendar-static"})
FEED_ROUTE = "feed"  # authenticated by its handler: feed token or admin token
RELAY_ROUTE = "outlook-relay"  # authenticated by its handler: that agent's Outlook-agent token
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="calhub"'}


def new_feed_token() -> str:
    return secrets.token_urlsafe(24)


def tokens_match(given: str, expected: str | None) -> bool:
    """Constant-time comparison; an unset or empty expected token never matches, nor does
    an empty given one."""
    if not expected or not given:
        return False
    try:
        sent = given.encode()
    except UnicodeEncodeError:
        # aiohttp hands undecodable header bytes over as lone surrogates ("\xff" becomes
        # "\udcff"): no token holds one, so this is simply a wrong token.
        return False
    return hmac.compare_digest(sent, expected.encode())


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None without one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers=_CHALLENGE)


def check_admin(request: web.Request, admin_token: str | None) -> None:
    """Refuse the request (401) unless it carries the admin token, when one is configured."""
    if not admin_token:
        return
    token = bearer(request)
    if token is None:
        raise unauthorized("missing bearer token (Authorization: Bearer ...)")
    if not tokens_match(token, admin_token):
        raise unauthorized("bad bearer token")


def auth_middleware(admin_token: str | None) -> Middleware:
    """The middleware that guards every route but the public ones and the feed."""

    @web.middleware
    async def middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        name = request.match_info.route.name
        # A browser session (hub.admin.sessions) stands for the admin token it was opened with.
        if (
            name not in PUBLIC_ROUTES
            and name not in (FEED_ROUTE, RELAY_ROUTE)
            and SESSION_KEY not in request
        ):
            check_admin(request, admin_token)
        return await handler(request)

    return middleware


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def listen_is_safe(config: Config) -> str | None:
    """Why the admin endpoint must not start as configured, or None when it may.

    Without a token the API is open, so it may only listen on a loopback address.
    """
    if config.admin.token:
        return None
    host = config.admin.host
    if is_loopback(host):
        return None
    return (
        f"admin.listen: {config.admin.listen!r} is not a loopback address and no admin token "
        f"is set; export {config.admin.token_env} or listen on 127.0.0.1"
    )
