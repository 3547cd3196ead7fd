"""Routes POST /agents/{id}/sync, GET /agents/{id}/status and GET /conflicts."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from hub.admin.context import AdminContext, agent_filter, agent_or_404, hub_of
from hub.admin.errors import ApiError
from hub.admin.validation import boolean, limit, parse_fields, query, read_object
from hub.admin.views import calendar_state_json, conflict_json, pass_json
from hub.model import Agent
from hub.store.lease import Leases
from hub.sync_preview import pending

routes = web.RouteTableDef()


async def pending_pushes(hub: AdminContext, agent: Agent, now: datetime) -> dict[str, int]:
    """What the next pass would write to the agent's calendar: creates, updates and deletes,
    from a dry run of the real reconcile over the hub side (:mod:`hub.sync_preview`)."""
    found = await pending(hub.store, hub.config.hub, agent, now)
    return {"creates": found.creates, "updates": found.updates, "deletes": found.deletes}


@routes.post("/agents/{id}/sync", name="agent-sync")
async def sync_now(request: web.Request) -> web.Response:
    """Run a pass of this agent now; answers with the pass's result."""
    hub = hub_of(request)
    agent = await agent_or_404(hub.store, request.match_info["id"])
    fields = parse_fields(await read_object(request, optional=True), {"allow_empty": boolean})
    if agent.account is None:
        raise ApiError(409, f"agent {agent.id!r} has no account to sync with", field="account")
    if hub.control is None:
        raise ApiError(409, "no sync scheduler is running (no accounts configured)")
    result = await hub.control.sync_now(agent.id, allow_empty=fields.get("allow_empty", False))
    return web.json_response(pass_json(result))


@routes.get("/agents/{id}/status", name="agent-status")
async def status(request: web.Request) -> web.Response:
    hub = hub_of(request)
    agent = await agent_or_404(hub.store, request.match_info["id"])
    now = datetime.now(UTC)
    state = await hub.store.get_calendar_state(agent.id)
    return web.json_response(
        {
            "agent": agent.id,
            "account": agent.account,
            "calendar": None if state is None else calendar_state_json(state, now),
            "pending": await pending_pushes(hub, agent, now),
            "scheduler": None if hub.control is None else hub.control.agent_status(agent.id),
            "outlook": hub.relays.status(agent.id, agent.account),
            # Several workers on one database: the one whose lease of this agent is live.
            "worker": (
                await hub.store.lease_holder(agent.id) if isinstance(hub.store, Leases) else None
            ),
        }
    )


@routes.get("/conflicts", name="conflicts")
async def conflicts(request: web.Request) -> web.Response:
    """Conflicts the policy resolved, newest first."""
    hub = hub_of(request)
    params = query(request, ("agent", "limit"))
    agent = await agent_filter(hub, params.get("agent"))
    most = limit(params["limit"], "limit") if "limit" in params else 100
    found = await hub.store.list_conflicts(agent_id=agent, limit=most)
    return web.json_response([conflict_json(c) for c in found])
