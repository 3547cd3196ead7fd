"""Routes under /requests/{rid}: the appointment sources A (plan), B (actions), C (bookings).

A request is created the first time any of these mentions it; reading one never mentioned is a
404. The bodies are parsed here; :mod:`hub.rules` decides what they do to the calendars.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.admin.context import hub_of, request_or_404
from hub.admin.validation import (
    agent_list,
    boolean,
    identifier,
    instant,
    minutes,
    moment,
    nonempty_text,
    parse_fields,
    read_object,
    text,
)
from hub.admin.views import request_json
from hub.rules import Action, Booking, Plan

routes = web.RouteTableDef()


def _request_id(request: web.Request) -> str:
    return identifier(request.match_info["rid"], "request_id")


@routes.get("/requests/{rid}", name="request")
async def get_request(request: web.Request) -> web.Response:
    hub = hub_of(request)
    found = await request_or_404(hub, request.match_info["rid"])
    appts = await hub.store.list_appointments(request_id=found.id)
    return web.json_response({**request_json(found), "appointments": await hub.views().many(appts)})


@routes.put("/requests/{rid}/planned", name="plan")
async def put_plan(request: web.Request) -> web.Response:
    hub = hub_of(request)
    rid = _request_id(request)
    fields = parse_fields(
        await read_object(request),
        {
            "agents": agent_list,
            "start": moment,
            "estimate_minutes": minutes,
            "subject": text,
            "customer": text,
        },
        required=("agents", "start"),
    )
    appts = await hub.rules.plan(rid, Plan(**fields))
    return web.json_response({"request_id": rid, "appointments": await hub.views().many(appts)})


@routes.delete("/requests/{rid}/planned", name="plan-clear")
async def clear_plan(request: web.Request) -> web.Response:
    hub = hub_of(request)
    cancelled = await hub.rules.clear_plan(request.match_info["rid"])
    return web.json_response(
        {"request_id": request.match_info["rid"], "cancelled": [a.id for a in cancelled]}
    )


@routes.post("/requests/{rid}/actions", name="actions")
async def post_action(request: web.Request) -> web.Response:
    hub = hub_of(request)
    rid = _request_id(request)
    fields = parse_fields(
        await read_object(request),
        {
            "agent": identifier,
            "done_at": instant,
            "time_taken_minutes": minutes,
            "add_to_calendar": boolean,
            "note": text,
            "subject": text,
            "customer": text,
        },
        required=("agent", "done_at", "time_taken_minutes"),
    )
    outcome = await hub.rules.log_action(rid, Action(**fields))
    body: dict[str, Any] = {"request_id": rid, "action_id": outcome.action_id}
    if outcome.appointment is None:
        body.update(appointment=None, reason=outcome.reason)
        return web.json_response(body)
    body.update(appointment=await hub.views().one(outcome.appointment), reason=None)
    return web.json_response(body, status=201)


@routes.post("/requests/{rid}/appointments", name="bookings-create")
async def post_booking(request: web.Request) -> web.Response:
    hub = hub_of(request)
    rid = _request_id(request)
    fields = parse_fields(
        await read_object(request),
        {
            "subject": nonempty_text,
            "start": moment,
            "end": moment,
            "agents": agent_list,
            "note": text,
            "private": boolean,
            "location": text,
            "request_subject": text,
            "customer": text,
        },
        required=("subject", "start", "end", "agents"),
    )
    appts = await hub.rules.book(rid, Booking(**fields))
    return web.json_response(
        {"request_id": rid, "appointments": await hub.views().many(appts)}, status=201
    )


@routes.get("/requests/{rid}/appointments", name="bookings")
async def list_bookings(request: web.Request) -> web.Response:
    hub = hub_of(request)
    found = await request_or_404(hub, request.match_info["rid"])
    appts = await hub.store.list_appointments(request_id=found.id)
    return web.json_response(await hub.views().many(appts))
