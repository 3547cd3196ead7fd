"""Route GET /agents/{id}/calendar.ics: an agent's hub calendar as an iCalendar feed.

Calendar apps cannot send headers, so besides the admin bearer token the feed opens with the
agent's own feed token in ``?token=``. A token given and wrong is refused even when no admin
token is configured, and agent A's feed token never opens agent B's feed.

The feed serves the appointments overlapping ``[from, to)``: by default from
:func:`hub.ics.feed_start` on, with no end; the query parameters ``from`` and ``to`` (ISO dates
or times) override either end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import anyio.to_thread
from aiohttp import web

from hub.admin.auth import FEED_ROUTE, bearer, check_admin, tokens_match, unauthorized
from hub.admin.context import AdminContext, hub_of
from hub.admin.errors import ApiError
from hub.admin.validation import query, query_span
from hub.admin.views import EventRenderer
from hub.ics import build_feed, feed_start
from hub.model import Agent

routes = web.RouteTableDef()


_BAD_FEED_TOKEN = "bad feed token"
_NEEDS_TOKEN = "pass the agent's feed token as ?token=... or a bearer token"


def _authorise(
    request: web.Request, hub: AdminContext, agent: Agent | None, token: str | None
) -> Agent:
    """``agent`` (None: no such agent) when the caller may read its feed, else 401 or 404.

    An unknown agent and a wrong feed token get the same answer, so a caller without the
    admin token cannot tell which agent ids exist; only one entitled to know gets a 404.
    """
    if token is not None:
        # An empty ?token= is a wrong token, whatever the agent or the admin token is.
        if not tokens_match(token, agent.feed_token if agent is not None else None):
            raise unauthorized(_BAD_FEED_TOKEN)
        assert agent is not None  # tokens_match never matches without an expected token
        return agent
    if hub.config.admin.token and bearer(request) is None:
        raise unauthorized(_NEEDS_TOKEN)
    check_admin(request, hub.config.admin.token)
    if agent is None:
        raise ApiError(404, f"no agent {request.match_info['id']!r}", field="id")
    return agent


@routes.get("/agents/{id}/calendar.ics", name=FEED_ROUTE)
async def feed(request: web.Request) -> web.Response:
    hub = hub_of(request)
    params = query(request, ("token", "from", "to"))
    found = await hub.store.get_agent(request.match_info["id"])
    agent = _authorise(request, hub, found, params.get("token"))
    start, end = query_span(params, feed_start(datetime.now(UTC), hub.config.hub.days_past))
    renderer = EventRenderer(hub.store, hub.config.hub, [agent])
    entries = []
    for appt in await hub.store.list_appointments(agent_id=agent.id, start=start, end=end):
        event = await renderer.event(appt)
        if event is not None:
            entries.append((appt, event))
    # Serialising thousands of events is CPU work: keep it off the event loop.
    body = await anyio.to_thread.run_sync(
        partial(build_feed, agent, entries), limiter=hub.render_limiter
    )
    return web.Response(
        body=body,
        headers={
            "Content-Type": "text/calendar; charset=utf-8",
            "Content-Disposition": f'inline; filename="{agent.id}.ics"',
            "Cache-Control": "private, no-cache",
        },
    )
