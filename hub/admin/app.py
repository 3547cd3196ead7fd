"""The aiohttp application of the admin endpoint: routes, middlewares and lifetimes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from aiohttp import web

from hub.admin import (
    agents,
    appointments,
    approvals,
    calendar_page,
    events_stream,
    feed,
    meta,
    outbox,
    outlook_relay,
    sources,
    syncing,
)
from hub.admin.auth import auth_middleware
from hub.admin.context import HUB, AdminContext
from hub.admin.errors import errors_middleware
from hub.admin.sessions import SESSIONS, Sessions, session_middleware
from hub.config import Config
from hub.control import SyncControl
from hub.mail.service import MailService
from hub.metrics import Metrics
from hub.relay import RelayHub
from hub.rules import Rules
from hub.store.base import Store

MAX_BODY = 1024 * 1024  # 1 MiB: far above any real request, far below a memory problem
FEED_RENDER_THREADS = 2


async def _feed_threads(app: web.Application) -> AsyncIterator[None]:
    # The limiter must be made inside the running loop that will use it.
    app[HUB].render_limiter = anyio.CapacityLimiter(FEED_RENDER_THREADS)
    yield
    app[HUB].render_limiter = None


def build_app(
    store: Store,
    config: Config,
    metrics: Metrics,
    control: SyncControl | None,
    mail: MailService | None = None,
    *,
    relays: RelayHub | None = None,
) -> web.Application:
    """The admin application over an opened ``store``; ``control`` is the sync scheduler,
    or None when no accounts are configured (sync routes then answer 409); ``mail`` the
    e-mail service (None without ``[email]``); ``relays`` the Outlook agents' connections,
    shared with the providers (a fresh one when not given)."""
    sessions = Sessions(store)
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[
            meta.counting_middleware(metrics),  # outermost: sees the final status
            errors_middleware,
            session_middleware(sessions, config),  # a browser's cookie and CSRF check
            auth_middleware(config.admin.token),
        ],
    )
    app[HUB] = AdminContext(
        store=store,
        config=config,
        metrics=metrics,
        control=control,
        rules=Rules(store, config.hub),
        mail=mail,
        relays=relays or RelayHub(),
    )
    app[SESSIONS] = sessions
    app[events_stream.CHANGES] = changes = events_stream.ChangeFeed()
    store.add_appointment_listener(changes.publish)
    app.on_shutdown.append(events_stream.close_streams)
    app.on_response_prepare.append(calendar_page.security_headers)
    app.cleanup_ctx.append(_feed_threads)
    app.on_shutdown.append(outlook_relay.close_connections)
    for module in (
        meta,
        agents,
        feed,
        syncing,
        sources,
        appointments,
        approvals,
        outbox,
        outlook_relay,
    ):
        app.router.add_routes(module.routes)
    app.router.add_routes(calendar_page.routes)
    app.router.add_routes(events_stream.routes)
    calendar_page.add_static(app)
    return app
