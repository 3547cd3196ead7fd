"""What the admin endpoint's HTTP server writes to the log: access lines without secrets,
and client faults as a rate-limited warning instead of an ERROR with a traceback.

aiohttp logs a request it cannot parse, and a client that hangs up mid-body, with
``logger.exception``: any unauthenticated client could fill the log with tracebacks. Those
are the client's faults, not the hub's: :class:`ProtocolLog` turns them into one warning line
at most every ``interval`` seconds (counting what it held back) and passes everything else
(a bug in a handler) through unchanged. :func:`server_options` wires both into an
:class:`aiohttp.web.AppRunner` (or a test server).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger

from hub.redact import redact

CLIENT_FAULT_INTERVAL = 60.0  # seconds between two "client fault" warning lines
_CLIENT_FAULTS = (HttpProcessingError, ConnectionError, asyncio.CancelledError, TimeoutError)


class _Redacting(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The access log's lines with the values of secret query parameters dropped."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return redact(str(msg)), kwargs


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger, writing ``?token=[redacted]`` for a feed token."""

    def __init__(self, logger: logging.Logger, log_format: str = AccessLogger.LOG_FORMAT):
        super().__init__(_Redacting(logger, {}), log_format)  # type: ignore[arg-type]


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The HTTP server's own logger: client faults become a rate-limited warning line."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = CLIENT_FAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logger, {})
        self.interval = interval
        self.clock = clock
        self.held_back = 0  # client faults not written since the last line
        self._last: float | None = None

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        fault = kwargs.get("exc_info")
        if level < logging.ERROR or not isinstance(fault, _CLIENT_FAULTS):
            super().log(level, msg, *args, **kwargs)
            return
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self.held_back += 1
            return
        held, self.held_back, self._last = self.held_back, 0, now
        reason = redact(" ".join(str(fault).split())) or type(fault).__name__
        more = f" ({held} more since the last such line)" if held else ""
        self.logger.warning("client fault: %s: %s%s", redact(str(msg) % args), reason[:200], more)


def server_options(
    *, interval: float = CLIENT_FAULT_INTERVAL, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """Keyword arguments of :class:`aiohttp.web.AppRunner` for the admin endpoint."""
    return {
        "access_log_class": RedactingAccessLogger,
        "logger": ProtocolLog(logging.getLogger("aiohttp.server"), interval=interval, clock=clock),
    }


__all__ = ["ProtocolLog", "RedactingAccessLogger", "server_options"]
