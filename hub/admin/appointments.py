"""Routes /appointments and /appointments/{id}: read, move, resize, re-word, reassign, cancel.

A PATCH may carry ``version`` (the version the caller read): the edit is then refused with a
409 when the entry changed meanwhile. ``agent`` reassigns the entry to another agent's
calendar; the answer is the new entry, which has a new id.

``GET /appointments`` pages with ``limit`` and ``cursor`` (see :mod:`hub.admin.paging`);
without either it sends the whole list as before, streamed a chunk at a time.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from hub.admin.context import agent_filter, appointment_or_404, hub_of
from hub.admin.errors import invalid
from hub.admin.paging import cursor_after, page_limit, read_cursor
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
from hub.admin.views import AppointmentViews
from hub.model import Appointment
from hub.rules import Change

routes = web.RouteTableDef()

NEXT_CURSOR = "Next-Cursor"  # response header: the ?cursor= of the next page, when there is one
STREAM_CHUNK = 200  # appointments rendered between two yields to the event loop


@routes.get("/appointments", name="appointments")
async def list_appointments(request: web.Request) -> web.StreamResponse:
    """Appointments overlapping [from, to) of one agent or all, ordered by (start, id): one
    page with ``limit``/``cursor`` (the next page's URL in ``Link``), else the whole list."""
    hub = hub_of(request)
    params = query(request, ("agent", "from", "to", "limit", "cursor"))
    agent = await agent_filter(hub, params.get("agent"))
    start, end = query_span(params)
    after = read_cursor(params["cursor"]) if "cursor" in params else None
    limit = page_limit(params.get("limit"), after is not None)
    if limit is None:
        # A few at a time: twenty callers of a 10,000-entry list must not hold twenty lists.
        async with hub.whole_lists:
            appts = await hub.store.list_appointments(agent_id=agent, start=start, end=end)
            return await _stream(request, hub.views(), appts)
    async with hub.pages:
        # One more than the page: whether there is a next page is known without asking again.
        appts = await hub.store.list_appointments(
            agent_id=agent, start=start, end=end, after=after, limit=limit + 1
        )
        page, more = appts[:limit], len(appts) > limit
        response = web.json_response(await _json(hub.views(), page))
    if more:
        cursor = cursor_after(page[-1])
        response.headers["Link"] = f'<{request.rel_url.update_query(cursor=cursor)}>; rel="next"'
        response.headers[NEXT_CURSOR] = cursor
    return response


async def _stream(
    request: web.Request, views: AppointmentViews, appts: list[Appointment]
) -> web.StreamResponse:
    """The whole list as one JSON array, rendered and sent a chunk at a time: one snapshot
    of the store as before paging existed, but no chunk holds the event loop for long nor
    the whole document in memory at once."""
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    await response.write(b"[")
    for first in range(0, len(appts), STREAM_CHUNK):
        rows = await views.many(appts[first : first + STREAM_CHUNK])
        text = json.dumps(rows, separators=(", ", ": "))[1:-1]
        if first and text:
            text = ", " + text
        await response.write(text.encode())
        await asyncio.sleep(0)  # let /health and the other requests in between chunks
    await response.write(b"]")
    await response.write_eof()
    return response


async def _json(views: AppointmentViews, appts: list[Appointment]) -> list[dict[str, object]]:
    """The JSON of ``appts``, a chunk at a time with a turn of the event loop in between."""
    rows = await views.many(appts[:STREAM_CHUNK])
    for first in range(STREAM_CHUNK, len(appts), STREAM_CHUNK):
        await asyncio.sleep(0)
        rows += await views.many(appts[first : first + STREAM_CHUNK])
    return rows


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
