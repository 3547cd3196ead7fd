"""Routes /appointments and /appointments/{id}: read, move, resize, re-word, reassign, cancel.

A PATCH may carry ``version`` (the version the caller read): the edit is then refused with a
409 when the entry changed meanwhile. ``agent`` reassigns the entry to another agent's
calendar; the answer is the new entry, which has a new id.
"""

from __future__ import annotations

from aiohttp import web

from hub.admin.context import agent_filter, appointment_or_404, hub_of
from hub.admin.errors import invalid
from hub.admin.validation import (
    boolean,
    identifier,
    moment,
    parse_fields,
    query,
    query_span,
    read_object,
    text,
    version,
)
from hub.rules import Change

routes = web.RouteTableDef()


@routes.get("/appointments", name="appointments")
async def list_appointments(request: web.Request) -> web.Response:
    """Appointments overlapping [from, to) of one agent or all, ordered by start."""
    hub = hub_of(request)
    params = query(request, ("agent", "from", "to"))
    agent = await agent_filter(hub, params.get("agent"))
    start, end = query_span(params)
    appts = await hub.store.list_appointments(agent_id=agent, start=start, end=end)
    return web.json_response(await hub.views().many(appts))


@routes.get("/appointments/{id}", name="appointment")
async def get_appointment(request: web.Request) -> web.Response:
    hub = hub_of(request)
    appt = await appointment_or_404(hub, request.match_info["id"])
    return web.json_response(await hub.views().one(appt))


@routes.patch("/appointments/{id}", name="appointment-update")
async def update_appointment(request: web.Request) -> web.Response:
    hub = hub_of(request)
    appointment_id = request.match_info["id"]
    await appointment_or_404(hub, appointment_id)  # 404 before judging the body
    fields = parse_fields(
        await read_object(request),
        {
            "start": moment,
            "end": moment,
            "subject": text,
            "note": text,
            "location": text,
            "private": boolean,
            "agent": identifier,
            "version": version,
        },
    )
    if not set(fields) - {"version"}:
        raise invalid(
            "body", "name at least one of start, end, subject, note, location, private, agent"
        )
    appt = await hub.rules.change(appointment_id, Change(**fields))
    return web.json_response(await hub.views().one(appt))


@routes.delete("/appointments/{id}", name="appointment-delete")
async def delete_appointment(request: web.Request) -> web.Response:
    hub = hub_of(request)
    tombstone = await hub.rules.cancel(request.match_info["id"])
    return web.json_response(await hub.views().one(tombstone))
