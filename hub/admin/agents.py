"""Routes /agents and /agents/{id}: the agents whose calendars the hub keeps.

Agents from the config file (``source = "config"``) are re-read at every start, so the API
does not edit or delete them (409): only their feed token may be rotated here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from hub.admin.auth import new_feed_token
from hub.admin.context import AdminContext, agent_or_404, hub_of
from hub.admin.errors import ApiError, invalid
from hub.admin.validation import (
    agent_policy,
    boolean,
    colour,
    email,
    identifier,
    line,
    parse_fields,
    read_object,
    text,
)
from hub.admin.views import agent_json
from hub.calendars import clash, sharing
from hub.config import AdminSettings
from hub.model import Agent
from hub.rules import purge_tombstones

routes = web.RouteTableDef()

_EDITABLE = {
    "name": line,  # the title of the agent's feed: one line
    "email": email,
    "account": text,
    "calendar": text,
    "create_appointments": agent_policy,
    "import_external": boolean,
    "colour": colour,
}
# PATCH with null: back to "no account" / the hub's value / no colour.
_CLEARABLE = ("account", "create_appointments", "import_external", "colour")


def _check_account(hub: AdminContext, fields: dict[str, Any]) -> None:
    account = fields.get("account")
    if account is not None and account not in hub.config.accounts:
        known = ", ".join(sorted(hub.config.accounts)) or "none are configured"
        raise invalid("account", f"no account named {account!r} (accounts: {known})")


async def _refuse_shared_calendar(hub: AdminContext, agent: Agent) -> None:
    """409 when another agent syncs the remote calendar ``agent`` would. Called inside the
    write transaction: every committed agent is visible, and none can be added meanwhile."""
    wide = hub.config.account_wide_default
    other = sharing(agent, await hub.store.list_agents(), wide)
    if other is not None:
        raise ApiError(409, clash(agent, other, wide), field="calendar")


def feed_url(admin: AdminSettings, agent: Agent) -> str | None:
    """The agent's feed link: on ``[admin] public_url``, else on the listen address, else
    relative (listening on all interfaces names no address a user could reach)."""
    if not agent.feed_token:
        return None
    query = urlencode({"token": agent.feed_token})
    return f"{admin.base_url}/agents/{agent.id}/calendar.ics?{query}"


def detail(hub: AdminContext, agent: Agent) -> dict[str, Any]:
    """One agent with its feed token and feed URL."""
    data = agent_json(agent, hub.rules.policy_for(agent))
    data["feed_token"] = agent.feed_token or None
    data["feed_url"] = feed_url(hub.config.admin, agent)
    return data


@routes.get("/agents", name="agents")
async def list_agents(request: web.Request) -> web.Response:
    hub = hub_of(request)
    agents = await hub.store.list_agents()
    return web.json_response([agent_json(a, hub.rules.policy_for(a)) for a in agents])


@routes.post("/agents", name="agents-create")
async def create_agent(request: web.Request) -> web.Response:
    hub = hub_of(request)
    fields = parse_fields(
        await read_object(request), {"id": identifier, **_EDITABLE}, required=("id",)
    )
    _check_account(hub, fields)
    agent_id = fields.pop("id")
    fields.setdefault("name", agent_id)
    agent = Agent(id=agent_id, feed_token=new_feed_token(), source="api", **fields)
    async with hub.store.transaction("api") as tx:
        # Checked inside the transaction: put_agent replaces, so two racing creates of one
        # id must not both pass.
        if await tx.get_agent(agent_id) is not None:
            raise ApiError(409, f"agent {agent_id!r} exists already", field="id")
        await _refuse_shared_calendar(hub, agent)
        stored = await tx.put_agent(agent)
    return web.json_response(detail(hub, stored), status=201)


@routes.get("/agents/{id}", name="agent")
async def get_agent(request: web.Request) -> web.Response:
    hub = hub_of(request)
    agent = await agent_or_404(hub.store, request.match_info["id"])
    return web.json_response(detail(hub, agent))


@routes.patch("/agents/{id}", name="agent-update")
async def update_agent(request: web.Request) -> web.Response:
    hub = hub_of(request)
    fields = parse_fields(
        await read_object(request),
        {**_EDITABLE, "rotate_feed_token": boolean},
        nullable=_CLEARABLE,
    )
    rotate = fields.pop("rotate_feed_token", False)
    _check_account(hub, fields)
    async with hub.store.transaction("api") as tx:
        # Read-modify-write in one transaction: concurrent PATCHes do not undo each other.
        agent = await agent_or_404(tx, request.match_info["id"])
        if fields and agent.source == "config":
            raise ApiError(
                409,
                f"agent {agent.id!r} is defined in the config file; change it there",
                field=next(iter(fields)),
            )
        account_dropped = agent.account is not None and fields.get("account", "") is None
        for name, value in fields.items():
            setattr(agent, name, value)
        if rotate:
            agent.feed_token = new_feed_token()
        await _refuse_shared_calendar(hub, agent)
        stored = await tx.put_agent(agent)
        if account_dropped:
            await purge_tombstones(tx, agent.id)
    return web.json_response(detail(hub, stored))


@routes.delete("/agents/{id}", name="agent-delete")
async def delete_agent(request: web.Request) -> web.Response:
    hub = hub_of(request)
    async with hub.store.transaction("api") as tx:
        agent = await agent_or_404(tx, request.match_info["id"])
        if agent.source == "config":
            raise ApiError(
                409,
                f"agent {agent.id!r} is defined in the config file; remove it there",
                field="id",
            )
        await tx.delete_agent(agent.id)
    return web.Response(status=204)
