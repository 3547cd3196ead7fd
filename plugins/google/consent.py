"""``calhub authorize``: Google's OAuth 2.0 flow for installed apps, with a loopback redirect.

1. Listen on ``http://127.0.0.1:PORT/`` (a free port), the redirect URI Google allows for
   desktop-app clients.
2. Print the consent URL (``access_type=offline`` and ``prompt=consent`` so that Google hands
   out a refresh token; PKCE with S256; a random ``state``), for the administrator to open in
   a browser signed in as the agent.
3. Google redirects the browser to the loopback address with ``code`` and ``state``; the
   code is exchanged at the token endpoint (with the PKCE verifier) for a refresh token.
4. The refresh token goes to the hub's database through :class:`hub.spec.AgentSecrets`: it is
   never printed, logged or written to the config file.

aiogoogle's ``authorization_url`` neither encodes the redirect URI nor sends PKCE, and its
``build_user_creds`` sends no ``code_verifier``: the URL and the exchange are built here and
the exchange is sent on an aiogoogle session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets as random
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiogoogle.models import Request
from aiohttp import web

from hub.spec import AccountConfig, AgentSecrets, CalendarRef, PermanentError
from plugins.google.auth import DEFAULT_AUTH_URL, SCOPE, UserTokens, token_error

if TYPE_CHECKING:
    from plugins.google.client import GoogleHttp

CONSENT_TIMEOUT_S = 300.0
_DONE_PAGE = "calhub: Google's answer was received. You can close this tab."


async def run_consent(
    account: AccountConfig,
    cal: CalendarRef,
    secrets: AgentSecrets,
    say: Callable[[str], None],
    http: GoogleHttp,
    *,
    timeout_s: float = CONSENT_TIMEOUT_S,
) -> str:
    """Run the flow for one agent and keep its refresh token; returns a one-line summary."""
    tokens = http.tokens
    if not isinstance(tokens, UserTokens):
        raise PermanentError(
            f"google: account {account.name} uses a service account (domain-wide delegation):"
            " its agents need no consent"
        )
    state = random.token_urlsafe(24)
    verifier = random.token_urlsafe(64)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    runner, redirect_uri = await _listen(state, answer)
    try:
        query = {
            "client_id": tokens.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": SCOPE,
            "access_type": "offline",
            "prompt": "consent",
            "state": state,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
        if cal.mailbox:
            query["login_hint"] = cal.mailbox
        auth_url = str(account.options.get("auth_url") or DEFAULT_AUTH_URL)
        say(
            f"Open this address in a browser signed in as {cal.mailbox or cal.agent_id}"
            f" and allow calhub access to the calendar:\n{auth_url}?{urlencode(query)}"
        )
        try:
            code = await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            raise PermanentError(
                f"google: no answer from the browser within {int(timeout_s)} s"
            ) from None
    finally:
        await runner.cleanup()
    refresh_token = await _exchange(tokens, cal, code, redirect_uri, verifier)
    await secrets.put(cal.agent_id, refresh_token)
    tokens.forget(cal)
    return (
        f"agent {cal.agent_id} authorized on account {account.name}: "
        "its refresh token is kept in the hub's database"
    )


async def _listen(state: str, answer: asyncio.Future[str]) -> tuple[web.AppRunner, str]:
    async def redirected(request: web.Request) -> web.Response:
        if request.query.get("state") != state:
            # Not our browser round trip (or a forged one): keep waiting for the real one.
            return web.Response(status=400, text="calhub: unexpected state")
        if not answer.done():
            if "code" in request.query:
                answer.set_result(request.query["code"])
            else:
                error = request.query.get("error", "no code")
                answer.set_exception(PermanentError(f"google: consent refused ({error})"))
        return web.Response(text=_DONE_PAGE)

    app = web.Application()
    app.router.add_get("/", redirected)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/"


async def _exchange(
    tokens: UserTokens, cal: CalendarRef, code: str, redirect_uri: str, verifier: str
) -> str:
    request = Request(
        method="POST",
        url=tokens.token_url,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        data=urlencode(
            {
                "code": code,
                "client_id": tokens.client_id,
                "client_secret": tokens.client_secret,
                "redirect_uri": redirect_uri,
                "grant_type": "authorization_code",
                "code_verifier": verifier,
            }
        ),
    )
    try:
        async with tokens.sessions() as session:
            body = await session.send(request)  # raises aiogoogle's HTTPError for >= 400
    except Exception as exc:
        raise token_error(exc, cal, what="exchanging the consent code") from None
    refresh_token = body.get("refresh_token") if isinstance(body, dict) else None
    if not refresh_token:
        raise PermanentError(
            "google: the token endpoint returned no refresh token (was access_type=offline"
            " honoured?): remove calhub's access from the Google account and run again"
        )
    return str(refresh_token)


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
