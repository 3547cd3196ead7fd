"""The admin endpoint: the HTTP API of DESIGN.md and the agents' iCalendar feeds.

:func:`build_app` makes the aiohttp application; :func:`listen_is_safe` tells the service
whether the configured listen address may be used without a token.
"""

from hub.admin.app import build_app
from hub.admin.auth import listen_is_safe

__all__ = ["build_app", "listen_is_safe"]
