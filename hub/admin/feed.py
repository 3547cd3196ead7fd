"""Route GET /agents/{id}/calendar.ics: an agent's hub calendar as an iCalendar feed.

Calendar apps cannot send headers, so besides the admin bearer token the feed opens with the
agent's own feed token in ``?token=``. A token given and wrong is refused even when no admin
token is configured, and agent A's feed token never opens agent B's feed.

The feed serves the appointments overlapping ``[from, to)``: by default from
:func:`hub.ics.feed_start` on, with no end; the query parameters ``from`` and ``to`` (ISO dates
or times) override either end.

Every answer carries an ``ETag`` (and ``Last-Modified`` once rendered): a poll naming the
current tag in ``If-None-Match`` gets a 304 from the agent's change counter alone, and a
changed feed is rendered once and served from :class:`hub.admin.feed_cache.FeedCache` until
the next change (see that module).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from wsgiref.handlers import format_date_time

import anyio.to_thread
from aiohttp import hdrs, web

from hub.admin.auth import FEED_ROUTE, bearer, check_admin, tokens_match, unauthorized
from hub.admin.context import AdminContext, hub_of
from hub.admin.errors import ApiError
from hub.admin.feed_cache import CachedFeed, FeedKey, etag_matches, feed_etag
from hub.admin.feed_events import EMPTY, FeedEvents, Place, in_window, place
from hub.admin.validation import query, query_span
from hub.admin.views import EventRenderer
from hub.config import HubSettings
from hub.ics import assemble_feed, event_text, feed_head, feed_stamp, feed_start
from hub.model import Agent, Appointment, Request
from hub.render import render_event

routes = web.RouteTableDef()

# More changed events than this since the cached version: render the whole feed again (one
# list query) rather than fetching them by id.
INCREMENTAL_LIMIT = 2000
# Up to this many events are rendered on the event loop; more go to a worker thread.
INLINE_EVENTS = 50


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
    now = datetime.now(UTC)
    start, end = query_span(params, feed_start(now, hub.config.hub.days_past))
    key = FeedKey(agent.id, start, end)
    # Read before the appointments: a change racing this request then gives the body a
    # newer content than its tag, never an older one (the next poll renders it again).
    seq = await hub.store.get_hub_seq(agent.id)
    if seq is None:  # deleted since get_agent
        raise ApiError(404, f"no agent {agent.id!r}", field="id")
    etag = feed_etag(key, seq, hub.config.hub)
    cached = hub.feeds.get(key, seq)
    if _not_modified(request, etag, cached):
        return web.Response(status=304, headers=_headers(agent, etag, cached))
    if cached is None:
        cached = await hub.feeds.fresh(
            key, seq, partial(_render, hub, agent, start, end, seq, key, now, etag)
        )
    # A rendering in flight may have been of a newer version: the body then goes with its tag.
    return web.Response(body=cached.body, headers=_headers(agent, cached.etag, cached))


def _not_modified(request: web.Request, etag: str, cached: CachedFeed | None) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when given; If-Modified-Since only without it,
    and only against a version whose Last-Modified no other version shares."""
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    since = request.if_modified_since
    if since is None or cached is None:
        return False
    if cached.unique_time:
        return cached.last_modified <= since
    return cached.last_modified < since


def _headers(agent: Agent, etag: str, cached: CachedFeed | None) -> dict[str, str]:
    headers = {
        "Content-Type": "text/calendar; charset=utf-8",
        "Content-Disposition": f'inline; filename="{agent.id}.ics"',
        # Apps may keep the feed but must ask again (with its tag) before showing it.
        "Cache-Control": "private, no-cache",
        "ETag": etag,
    }
    if cached is not None:
        headers["Last-Modified"] = format_date_time(cached.last_modified.timestamp())
    return headers


async def _render(
    hub: AdminContext, agent: Agent, start: datetime | None, end: datetime | None, seq: int,
    key: FeedKey, now: datetime, etag: str,
) -> CachedFeed:  # fmt: skip
    """Version ``seq`` of the feed ``key``: the version before with the events the store
    reports changed since then rendered again, or every event when there is no version
    before of this agent (or too much changed)."""
    before = hub.feeds.previous(key)
    base = before.events if before is not None and before.agent == agent else None
    changed = None
    # A lower counter than the version before's: the agent was deleted and made again.
    if before is not None and base is not None and before.seq <= seq:
        changed = await hub.store.changed_since(agent.id, before.seq, INCREMENTAL_LIMIT)
    last_modified, unique = hub.feeds.stamp(key, now)
    if base is None or changed is None:
        appts = await hub.store.list_appointments(agent_id=agent.id, start=start, end=end)
        events = await _rendered(hub, agent, appts, EMPTY, ())
    else:
        found = await hub.store.get_appointments(changed, include_deleted=True)
        shown = [a for a in found.values() if a.agent_id == agent.id and in_window(a, start, end)]
        events = await _rendered(hub, agent, shown, base, changed)
    body = assemble_feed(feed_head(agent), events.in_order())
    return CachedFeed(seq, etag, last_modified, body, unique, agent, events)


async def _rendered(
    hub: AdminContext,
    agent: Agent,
    appts: Sequence[Appointment],
    before: FeedEvents,
    changed: Sequence[str],
) -> FeedEvents:
    """``before`` with the ids ``changed`` taken out and ``appts`` rendered in."""
    renderer = EventRenderer(hub.store, hub.config.hub, [agent])
    await renderer.preload(appts)
    sources = [(appt, await renderer.request(appt.request_id)) for appt in appts]
    work = partial(_event_texts, agent, sources, hub.config.hub)
    if len(sources) <= INLINE_EVENTS:
        texts = work()
    else:  # thousands of events are CPU work: keep it off the event loop
        texts = await anyio.to_thread.run_sync(work, limiter=hub.render_limiter)
    if not changed:
        return FeedEvents.of(texts.values())
    changes: dict[str, tuple[Place, bytes] | None] = dict.fromkeys(changed)
    changes.update(texts)
    return before.evolve(changes)


def _event_texts(
    agent: Agent, sources: Sequence[tuple[Appointment, Request | None]], settings: HubSettings
) -> dict[str, tuple[Place, bytes]]:
    """Each appointment's place in the feed and event text, by id."""
    stamp = feed_stamp()
    texts = {}
    for appt, request in sources:
        data = render_event(appt, agent, request, settings)
        texts[appt.id] = (place(appt), event_text(appt, data, stamp))
    return texts
