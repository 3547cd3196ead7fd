"""Relays: live connections from programs on agents' PCs that a hub provider calls through.

Some calendars can only be reached from the agent's own machine (Outlook through its MAPI
profile). A small program there dials out to the admin endpoint over a WebSocket and serves
the hub's requests. The hub side is one :class:`RelayHub`, owned by the service and lent to
providers through :class:`hub.spec.HubServices`, with one :class:`RelayLink` per connection.

The protocol is JSON text messages, request and response matched by id::

    hub -> agent   {"id": 7, "method": "fetch", "params": {...}}
    agent -> hub   {"id": 7, "result": ...}
                   {"id": 7, "error": {"kind": "not-found", "message": "..."}}

Nothing the agent sends is trusted before it is checked: a message that is not a JSON object,
has no integer id, answers no pending request (a late answer to a call that timed out, or a
made-up id) or carries anything but exactly one of ``result`` / ``error`` is refused and
logged, and the call it may have meant keeps waiting for a proper answer or its timeout.
An agent that keeps sending refused messages is disconnected. Size limits are the
WebSocket's (``max_message``): a larger frame closes the connection (1009).

Errors are this module's own (:class:`RelayError` and subclasses): the provider using the
relay turns them into the contract's :class:`hub.spec.TransientError`, naming the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE = 8 * 1024 * 1024  # a fetch of a busy 67-day window with bodies fits
MAX_REFUSALS = 20  # refused messages before the connection is closed as hostile
CLOSE_POLICY = 1008  # WebSocket close code: policy violation
CLOSE_GOING_AWAY = 1001
CLOSE_REPLACED = 4000  # another connection (or a new token) took this agent's place


class RelayError(Exception):
    """A relayed call that did not get a trustworthy answer."""


class NotConnected(RelayError):
    """No program is connected for this agent."""


class ConnectionLost(RelayError):
    """The connection closed while the call waited for its answer."""


class CallTimeout(RelayError):
    """No answer within the call's timeout."""


class RequestTooLarge(RelayError):
    """The request is larger than the relay's message limit."""


class Channel(Protocol):
    """The part of :class:`aiohttp.web.WebSocketResponse` a link uses."""

    async def send_str(self, data: str) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


@dataclass(frozen=True, slots=True)
class RelayReply:
    """A checked answer: exactly one of ``result`` and ``error`` is meaningful."""

    result: Any = None
    error: Mapping[str, Any] | None = None


def _check_reply(message: Any) -> tuple[int, RelayReply] | str:
    """The id and reply in ``message``, or the reason it is refused."""
    if not isinstance(message, dict):
        return "not a JSON object"
    call_id = message.get("id")
    if isinstance(call_id, bool) or not isinstance(call_id, int):
        return "no integer id"
    keys = set(message) - {"id"}
    if keys == {"result"}:
        return call_id, RelayReply(result=message["result"])
    if keys == {"error"}:
        error = message["error"]
        if not (
            isinstance(error, dict)
            and isinstance(error.get("kind"), str)
            and isinstance(error.get("message"), str)
        ):
            return f"id {call_id}: error is not an object with string kind and message"
        return call_id, RelayReply(error=error)
    return f"id {call_id}: expected exactly one of result and error, got {sorted(keys)}"


class RelayLink:
    """One live connection of one agent's program: calls out, answers in."""

    def __init__(
        self, agent_id: str, channel: Channel, max_message: int, on_message: Callable[[], None]
    ) -> None:
        self.agent_id = agent_id
        self.channel = channel
        self.max_message = max_message
        self.connected_at = datetime.now(UTC)
        self.refused = 0
        self._on_message = on_message
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[RelayReply]] = {}
        self._closed: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def close_soon(self, code: int, reason: str) -> None:
        """Close from synchronous code; the task is kept until done (the loop holds weak
        references only)."""
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def call(self, method: str, params: Mapping[str, Any], wait_s: float) -> RelayReply:
        """Send one request and wait for its checked answer.

        Raises :class:`ConnectionLost`, :class:`CallTimeout` or :class:`RequestTooLarge`.
        """
        if self._closed is not None:
            raise ConnectionLost(self._closed)
        call_id = next(self._ids)
        text = json.dumps({"id": call_id, "method": method, "params": params})
        if len(text.encode()) > self.max_message:
            raise RequestTooLarge(f"{method} request of {len(text)} bytes exceeds the limit")
        future: asyncio.Future[RelayReply] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            try:
                await self.channel.send_str(text)
            except (ConnectionError, RuntimeError) as exc:  # closing: aiohttp raises these
                raise ConnectionLost(f"sending failed: {exc}") from None
            try:
                async with asyncio.timeout(wait_s):
                    return await future
            except TimeoutError:
                raise CallTimeout(f"no answer to {method} within {wait_s:g} s") from None
        finally:
            self._pending.pop(call_id, None)

    def receive(self, text: str) -> str | None:
        """Take one text message from the agent; the reason when it is refused."""
        self._on_message()
        try:
            message = json.loads(text)
        except ValueError:
            return self.refuse("not JSON")
        checked = _check_reply(message)
        if isinstance(checked, str):
            return self.refuse(checked)
        call_id, reply = checked
        future = self._pending.get(call_id)
        if future is None or future.done():
            return self.refuse(f"id {call_id} answers no pending request")
        future.set_result(reply)
        return None

    def refuse(self, reason: str) -> str:
        """Log and count a refused message; too many close the connection."""
        self.refused += 1
        log.warning("refused a message from the agent program of %s: %s", self.agent_id, reason)
        if self.refused == MAX_REFUSALS:
            log.warning("closing the connection of %s: too many refused messages", self.agent_id)
            self.close_soon(CLOSE_POLICY, "too many refused messages")
        return reason

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.channel.close(code=code, message=reason.encode()[:120])

    def lost(self, reason: str) -> None:
        """The connection is gone: every call waiting on it fails now, not at its timeout."""
        self._closed = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(reason))


class RelayHub:
    """The live relay connections of every agent, and when each agent was last seen.

    ``watch(account, offline_attention)`` is called by a provider that serves its account
    through relays: agents of that account then show their connection in
    ``GET /agents/{id}/status``, needing attention once offline for longer than that.
    """

    def __init__(
        self,
        *,
        max_message: int = DEFAULT_MAX_MESSAGE,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.max_message = max_message
        self.clock = clock or (lambda: datetime.now(UTC))
        self.started_at = self.clock()
        self.calls = 0  # requests sent to agents' programs (benchmarks, diagnostics)
        self._links: dict[str, RelayLink] = {}
        self._last_seen: dict[str, datetime] = {}
        self._watched: dict[str, timedelta] = {}

    # ------------------------------------------------------------------ connections

    def attach(self, agent_id: str, channel: Channel) -> RelayLink:
        """Register a new connection; an older one of the same agent is closed."""
        old = self._links.get(agent_id)
        link = RelayLink(agent_id, channel, self.max_message, lambda: self._seen(agent_id))
        self._links[agent_id] = link
        self._seen(agent_id)
        if old is not None:
            old.lost("replaced by a new connection")
            old.close_soon(CLOSE_REPLACED, "replaced by a new connection")
        log.info("agent program of %s connected", agent_id)
        return link

    def detach(self, link: RelayLink, reason: str = "connection closed") -> None:
        """Forget a connection that closed; its waiting calls fail at once."""
        link.lost(reason)
        if self._links.get(link.agent_id) is link:
            del self._links[link.agent_id]
            self._seen(link.agent_id)
            log.info("agent program of %s disconnected: %s", link.agent_id, reason)

    async def drop(self, agent_id: str, reason: str) -> None:
        """Close the agent's connection, if any (its token was replaced)."""
        link = self._links.pop(agent_id, None)
        if link is not None:
            link.lost(reason)
            self._seen(agent_id)
            await link.close(CLOSE_REPLACED, reason)

    async def close_all(self) -> None:
        """Close every connection (the endpoint is shutting down)."""
        for agent_id in list(self._links):
            link = self._links.pop(agent_id)
            link.lost("the hub is shutting down")
            await link.close(CLOSE_GOING_AWAY, "the hub is shutting down")

    def connected(self, agent_id: str) -> bool:
        return agent_id in self._links

    async def call(
        self, agent_id: str, method: str, params: Mapping[str, Any], wait_s: float
    ) -> RelayReply:
        """One request to the agent's program; raises :class:`RelayError` subclasses."""
        link = self._links.get(agent_id)
        if link is None:
            raise NotConnected("not connected")
        self.calls += 1
        return await link.call(method, params, wait_s)

    def _seen(self, agent_id: str) -> None:
        self._last_seen[agent_id] = self.clock()

    # ------------------------------------------------------------------ status

    def watch(self, account: str, offline_attention: timedelta) -> None:
        """Agents of ``account`` are served through relays (called by its provider)."""
        self._watched[account] = offline_attention

    def status(self, agent_id: str, account: str | None) -> dict[str, Any] | None:
        """The relay facts of ``GET /agents/{id}/status``; None for an agent not on a relay."""
        link = self._links.get(agent_id)
        threshold = self._watched.get(account or "")
        if threshold is None and link is None:
            return None
        last_seen = self._last_seen.get(agent_id)
        now = self.clock()
        offline = None if link is not None else now - (last_seen or self.started_at)
        attention = offline is not None and threshold is not None and offline > threshold
        return {
            "connected": link is not None,
            "connected_since": None if link is None else link.connected_at.isoformat(),
            "last_seen": None if last_seen is None else last_seen.isoformat(),
            "offline_seconds": None if offline is None else round(offline.total_seconds()),
            "needs_attention": attention,
            "reason": (
                f"the agent program has been offline for more than {threshold}"
                if attention
                else None
            ),
        }


__all__ = [
    "CallTimeout",
    "Channel",
    "ConnectionLost",
    "NotConnected",
    "RelayError",
    "RelayHub",
    "RelayLink",
    "RelayReply",
    "RequestTooLarge",
]
