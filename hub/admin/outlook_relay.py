"""Routes POST /agents/{id}/outlook-token and GET /agents/{id}/outlook (WebSocket).

``calhub outlook-agent`` runs in an agent's Windows session and dials out to the second
route; the hub's ``mapi`` provider then calls Outlook through that connection (see
:mod:`hub.relay`). The connection opens with the agent's *Outlook-agent token*, issued by the
first route (admin bearer) and shown once: the hub keeps only its SHA-256 hash (the token is
32 random bytes, so a fast hash is as good as a slow one). Issuing a new token revokes the
old one and drops the connection made with it. The token opens this agent's relay and
nothing else: every other route checks the admin token, which it is not.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import WSMsgType, web

from hub.admin.auth import RELAY_ROUTE, bearer, unauthorized
from hub.admin.context import HUB, agent_or_404, hub_of
from hub.admin.errors import ApiError

routes = web.RouteTableDef()

KIND = "outlook"
HEARTBEAT_S = 30.0  # a PC that went to sleep is noticed within a minute, not at the next call


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@routes.post("/agents/{id}/outlook-token", name="outlook-token")
async def issue_token(request: web.Request) -> web.Response:
    """A new Outlook-agent token for this agent, shown this once."""
    hub = hub_of(request)
    token = secrets.token_urlsafe(32)
    async with hub.store.transaction("api") as tx:
        agent = await agent_or_404(tx, request.match_info["id"])
        await tx.put_relay_token(agent.id, KIND, token_digest(token))
    await hub.relays.drop(agent.id, "the Outlook-agent token was replaced")
    return web.json_response(
        {"agent": agent.id, "token": token}, status=201, headers={"Cache-Control": "no-store"}
    )


async def _check_token(request: web.Request, agent_id: str) -> None:
    given = bearer(request)
    if given is None:
        raise unauthorized(
            "missing bearer token: the Outlook agent sends its token (CALHUB_OUTLOOK_TOKEN)"
        )
    stored = await hub_of(request).store.get_relay_token(agent_id, KIND)
    # An unknown agent and a wrong token look the same: the route tells no one who exists.
    if stored is None or not hmac.compare_digest(token_digest(given), stored):
        raise unauthorized(f"bad Outlook-agent token for agent {agent_id!r}")


@routes.get("/agents/{id}/outlook", name=RELAY_ROUTE)
async def relay(request: web.Request) -> web.WebSocketResponse:
    """The Outlook agent's connection: requests out, answers in, until either side closes."""
    hub = hub_of(request)
    agent_id = request.match_info["id"]
    await _check_token(request, agent_id)
    ws = web.WebSocketResponse(max_msg_size=hub.relays.max_message, heartbeat=HEARTBEAT_S)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "expected a WebSocket upgrade (the Outlook agent's connection)")
    await ws.prepare(request)
    link = hub.relays.attach(agent_id, ws)
    reason = "connection closed"
    try:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                link.receive(message.data)
            elif message.type is WSMsgType.ERROR:
                # aiohttp reports a frame over max_msg_size here and closes with 1009.
                reason = f"refused: {ws.exception()}"
                link.refuse(str(ws.exception()))
                break
            else:
                link.refuse(f"{message.type.name} messages are not part of the protocol")
    finally:
        if ws.close_code is not None:
            reason = f"{reason} (code {ws.close_code})"
        hub.relays.detach(link, reason)
    return ws


async def close_connections(app: web.Application) -> None:
    """On shutdown: close the relay connections, or their handlers hold the shutdown up."""
    await app[HUB].relays.close_all()
