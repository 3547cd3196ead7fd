"""Routes /approvals: the queue of appointments the ``ask`` policy holds back."""

from __future__ import annotations

from aiohttp import web

from hub.admin.context import hub_of
from hub.admin.validation import boolean, parse_fields, read_object
from hub.admin.views import approval_json

routes = web.RouteTableDef()


@routes.get("/approvals", name="approvals")
async def list_approvals(request: web.Request) -> web.Response:
    """Pending approvals, oldest first, each with its appointment."""
    hub = hub_of(request)
    approvals = await hub.store.list_approvals(pending_only=True)
    appts = await hub.store.get_appointments(a.appointment_id for a in approvals)
    views = hub.views()
    items = []
    for approval in approvals:
        appt = appts.get(approval.appointment_id)
        if appt is None:  # cancelled under a queued approval; nothing left to decide
            continue
        items.append({**approval_json(approval), "appointment": await views.one(appt)})
    return web.json_response(items)


@routes.post("/approvals/{id}", name="approval-decide")
async def decide(request: web.Request) -> web.Response:
    """Approve (the appointment syncs to the agent's calendar) or reject (it stays local)."""
    hub = hub_of(request)
    fields = parse_fields(await read_object(request), {"approve": boolean}, required=("approve",))
    approval, appt = await hub.rules.decide(request.match_info["id"], fields["approve"])
    return web.json_response(
        {**approval_json(approval), "appointment": await hub.views().one(appt)}
    )
