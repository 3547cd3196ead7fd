"""Routes of the central calendar page: the page, its static files, login, logout, and the
compact data it loads.

``GET /calendar`` and ``/calendar/static/...`` are public: the page holds no data and asks
``GET /calendar/session`` who is there; without a session it shows the login form, which posts
the admin token to ``POST /calendar/login``. Everything the page then reads or changes goes
through the authenticated API (cookie or bearer), so the page can do nothing a script with the
token could not. ``GET /calendar/entries`` loads a whole range for many agents in one request,
in a compact shape made for the calendar widget.

Security headers (a strict Content-Security-Policy: scripts and styles from this endpoint
only, nothing inline) are added to every response of the admin endpoint.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from hub.admin.auth import tokens_match
from hub.admin.context import hub_of
from hub.admin.errors import ApiError, invalid
from hub.admin.sessions import (
    SESSION_KEY,
    SESSIONS,
    clear_cookie,
    refuse_cross_site,
    set_cookie,
)
from hub.admin.validation import identifier, query, query_span, read_object
from hub.admin.views import EventRenderer, iso
from hub.config import CalendarSettings
from hub.model import Appointment

routes = web.RouteTableDef()

STATIC_DIR = Path(str(resources.files("hub.admin") / "static"))

MAX_IDS = 500  # ids per /calendar/entries?ids= call: a live update names a few

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the browser-facing headers on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


@routes.get("/calendar", name="calendar")
async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "calendar.html", headers={"Cache-Control": "no-store"})


@routes.post("/calendar/login", name="calendar-login")
async def login(request: web.Request) -> web.Response:
    """``{"token": ...}`` with the admin token: a session cookie. Refused from another site
    (a login CSRF would sign the victim into an attacker's session)."""
    hub = hub_of(request)
    refuse_cross_site(request, hub.config)
    body = await read_object(request)
    token = body.get("token")
    if not isinstance(token, str) or not token:
        raise invalid("token", "enter the admin token")
    expected = hub.config.admin.token
    if expected is not None and not tokens_match(token, expected):
        raise ApiError(401, "wrong admin token", field="token")
    session_id = await request.app[SESSIONS].create()
    response = web.json_response({"ok": True})
    set_cookie(response, request, hub.config, session_id)
    return response


@routes.post("/calendar/logout", name="calendar-logout")
async def logout(request: web.Request) -> web.Response:
    hub = hub_of(request)
    session_id = request.get(SESSION_KEY)
    if session_id is not None:
        await request.app[SESSIONS].end(session_id)
    response = web.json_response({"ok": True})
    clear_cookie(response, request, hub.config)
    return response


def calendar_settings_json(settings: CalendarSettings) -> dict[str, Any]:
    def clock(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    return {
        "working_days": list(settings.working_days),
        "day_start": clock(settings.day_start),
        "day_end": clock(settings.day_end),
        "slot_minutes": int(settings.slot.total_seconds() // 60),
        "planned_colour": settings.planned_colour,
    }


@routes.get("/calendar/session", name="calendar-session")
async def session(request: web.Request) -> web.Response:
    """What the page starts with: its CSRF token, the ``[calendar]`` settings, the agents
    (with their colour and whether their sync needs attention)."""
    hub = hub_of(request)
    session_id = request.get(SESSION_KEY)
    csrf = None if session_id is None else request.app[SESSIONS].csrf_token(session_id)
    return web.json_response(
        {
            "csrf": csrf,
            "calendar": calendar_settings_json(hub.config.calendar),
            "agents": await agents_json(hub.store),
        }
    )


async def agents_json(store: Any) -> list[dict[str, Any]]:
    attention = {
        state.agent_id: state.last_error or state.last_result or "needs attention"
        for state in await store.list_calendar_states()
        if state.needs_attention
    }
    return [
        {
            "id": agent.id,
            "name": agent.name,
            "colour": agent.colour,
            "attention": attention.get(agent.id),
        }
        for agent in await store.list_agents()
    ]


@routes.get("/calendar/agents", name="calendar-agents")
async def agents(request: web.Request) -> web.Response:
    return web.json_response(await agents_json(hub_of(request).store))


def _ids(value: str, field: str, most: int) -> list[str]:
    ids = [part for part in value.split(",") if part]
    if len(ids) > most:
        raise invalid(field, f"at most {most} ids")
    return [identifier(one, field) for one in ids]


@routes.get("/calendar/entries", name="calendar-entries")
async def entries(request: web.Request) -> web.Response:
    """Entries of ``agents`` (comma-separated; all when absent) overlapping [from, to), or
    the entries ``ids`` (comma-separated; gone ones are listed in ``gone``)."""
    hub = hub_of(request)
    params = query(request, ("agents", "from", "to", "ids"))
    renderer = EventRenderer(hub.store, hub.config.hub, await hub.store.list_agents())
    if "ids" in params:
        wanted = _ids(params["ids"], "ids", MAX_IDS)
        found = await hub.store.get_appointments(wanted)
        appts = [found[i] for i in wanted if i in found]
        gone = [i for i in wanted if i not in found]
    else:
        start, end = query_span(params)
        if start is None or end is None:
            raise invalid("from" if start is None else "to", "give both from and to")
        chosen = _ids(params.get("agents", ""), "agents", 1000) or None
        appts = await hub.store.list_appointments(start=start, end=end)
        if chosen is not None:
            keep = set(chosen)
            appts = [a for a in appts if a.agent_id in keep]
        gone = []
    await renderer.preload(appts)
    rows = [row for appt in appts if (row := await entry_json(renderer, appt)) is not None]
    return web.json_response({"entries": rows, "gone": gone})


async def entry_json(renderer: EventRenderer, appt: Appointment) -> dict[str, Any] | None:
    """One entry as the page draws it; None when its agent is gone."""
    event = await renderer.event(appt)
    if event is None:
        return None
    return {
        "id": appt.id,
        "agent": appt.agent_id,
        "kind": appt.kind.value,
        "title": event.subject,
        "start": iso(appt.start),
        "end": iso(appt.end),
        "all_day": appt.all_day,
        "private": appt.private,
        "state": appt.push_state.value,
        "read_only": appt.read_only,
        "version": appt.version,
        "request_id": appt.request_id,
    }


def add_static(app: web.Application) -> None:
    app.router.add_static(
        "/calendar/static", STATIC_DIR, name="calendar-static", append_version=False
    )


__all__ = ["add_static", "routes", "security_headers"]
