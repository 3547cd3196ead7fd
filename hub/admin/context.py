"""What every admin handler works with, stored on the application under one :class:`web.AppKey`.

Handlers get it with :func:`hub_of`; the lookups here turn a missing agent, request or
appointment into a 404 naming the path parameter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import anyio
from aiohttp import web

from hub.admin.errors import ApiError, invalid
from hub.admin.feed_cache import FeedCache
from hub.admin.validation import identifier
from hub.admin.views import AppointmentViews
from hub.config import Config
from hub.control import SyncControl
from hub.mail.service import MailService
from hub.metrics import Metrics
from hub.model import Agent, Appointment, Request
from hub.relay import RelayHub
from hub.rules import Rules
from hub.store.base import Store, Tx

WHOLE_LISTS = 2  # more unpaged lists wait their turn rather than hold their lists together
PAGES = 4


@dataclass(slots=True)
class AdminContext:
    """The hub's state, configuration and services as the admin endpoint sees them.

    ``render_limiter`` bounds the worker threads that serialise iCalendar feeds; it is made
    when the application starts (an anyio limiter belongs to a running event loop).
    """

    store: Store
    config: Config
    metrics: Metrics
    control: SyncControl | None
    rules: Rules
    render_limiter: anyio.CapacityLimiter | None = None
    mail: MailService | None = None  # None without [email]
    relays: RelayHub = field(default_factory=RelayHub)  # Outlook agents' connections
    feeds: FeedCache = field(default_factory=FeedCache)  # rendered .ics feeds, by version
    # Unpaged GET /appointments answers read and sent at once: each holds its whole list.
    whole_lists: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(WHOLE_LISTS))
    # Pages of appointments built at once: the others wait outside the event loop's queue,
    # so that cheap requests (/health) are not queued behind fifty pages of JSON.
    pages: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(PAGES))

    def views(self) -> AppointmentViews:
        """Fresh appointment views for one HTTP request (their caches must not outlive it)."""
        return AppointmentViews(self.store, self.config.hub)


HUB = web.AppKey("calhub", AdminContext)


def hub_of(request: web.Request) -> AdminContext:
    return request.app[HUB]


async def agent_or_404(reader: Store | Tx, agent_id: str) -> Agent:
    """The agent, read through the store or inside a transaction; 404 when unknown."""
    agent = await reader.get_agent(agent_id)
    if agent is None:
        raise ApiError(404, f"no agent {agent_id!r}", field="id")
    return agent


async def request_or_404(hub: AdminContext, request_id: str) -> Request:
    found = await hub.store.get_request(request_id)
    if found is None:
        raise ApiError(404, f"no request {request_id!r}", field="request_id")
    return found


async def appointment_or_404(hub: AdminContext, appointment_id: str) -> Appointment:
    appt = await hub.store.get_appointment(appointment_id)
    if appt is None:
        raise ApiError(404, f"no appointment {appointment_id!r}", field="id")
    return appt


async def agent_filter(hub: AdminContext, value: str | None) -> str | None:
    """A query string's ``agent=`` filter: None when absent, 422 when no such agent."""
    if value is None:
        return None
    identifier(value, "agent")
    if await hub.store.get_agent(value) is None:
        raise invalid("agent", f"no agent named {value!r}")
    return value
