"""``calhub outlook-agent``: the program on the agent's PC that serves the hub's requests.

It opens Outlook in its COM thread, dials out to ``GET /agents/{id}/outlook`` on the hub's
admin endpoint with its token, and answers each request (:mod:`hub.relay` describes the
messages) by running the matching :class:`plugins.mapi.outlook.OutlookSession` method in
the COM thread. Requests are handled concurrently on the event loop and queue in the COM
thread, so heartbeats flow while Outlook works. A lost connection is re-dialled with capped
exponential back-off; a refused token (revoked, or never issued) stops the program, since
retrying cannot fix it. Ctrl-C (SIGINT/SIGTERM) closes the connection and stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from hub.relay import DEFAULT_MAX_MESSAGE
from hub.spec import ProviderError, ca_bundle_context
from plugins.mapi import wire
from plugins.mapi.outlook import OutlookSession, OutlookUnavailable, com_apartment
from plugins.mapi.sta import ComThread

log = logging.getLogger("calhub.outlook_agent")

HEARTBEAT_S = 30.0
FIRST_RETRY_S = 1.0
EXIT_OK, EXIT_REFUSED = 0, 2


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """What ``calhub outlook-agent`` was started with."""

    hub: str
    agent: str
    token: str
    profile: str | None = None
    ca_file: str | None = None
    retry_cap: float = 60.0


class Refused(Exception):
    """The hub refused this agent for good (bad token, no such route): stop, don't retry."""


class RequestServer:
    """Answers the hub's request messages with the Outlook session, in the COM thread."""

    def __init__(self, agent_id: str, session: OutlookSession, com: ComThread) -> None:
        self.agent_id = agent_id
        self.session = session
        self.com = com
        self._methods: dict[str, Callable[[dict[str, Any], str], Awaitable[Any]]] = {
            "fetch": self._fetch,
            "push": self._push,
            "delete": self._delete,
            "get": self._get,
            "find": self._find,
            "check": self._check,
        }

    async def answer(self, text: str) -> str | None:
        """The answer message to one request message; None for one that cannot be answered."""
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("ignored a message from the hub that is not JSON")
            return None
        call_id = message.get("id") if isinstance(message, dict) else None
        if isinstance(call_id, bool) or not isinstance(call_id, int):
            log.warning("ignored a message from the hub without a request id")
            return None
        try:
            result = await self._dispatch(message)
        except ProviderError as exc:
            return json.dumps({"id": call_id, "error": wire.encode_error(exc)})
        except wire.WireError as exc:
            error = {"kind": "permanent", "message": f"bad request: {exc}"}
            return json.dumps({"id": call_id, "error": error})
        except Exception as exc:
            log.exception("request %s failed", call_id)
            error = {"kind": "permanent", "message": f"Outlook agent error: {type(exc).__name__}"}
            return json.dumps({"id": call_id, "error": error})
        return json.dumps({"id": call_id, "result": result})

    async def _dispatch(self, message: dict[str, Any]) -> Any:
        method = message.get("method")
        handler = self._methods.get(method) if isinstance(method, str) else None
        if handler is None:
            raise wire.WireError(f"method: unknown method {method!r}")
        params = message.get("params")
        if not isinstance(params, dict):
            raise wire.WireError("params: expected an object")
        cal = wire.decode_cal(params.get("cal"))
        if cal.agent_id != self.agent_id:
            raise wire.WireError(f"cal.agent: this Outlook agent serves {self.agent_id!r}")
        return await handler(params, cal.calendar)

    async def _fetch(self, params: dict[str, Any], calendar: str) -> Any:
        window = wire.decode_window(params.get("window"))
        return wire.encode_fetch(await self.com.run(self.session.fetch, calendar, window))

    async def _push(self, params: dict[str, Any], calendar: str) -> Any:
        raw = params.get("items")
        if not isinstance(raw, list):
            raise wire.WireError("items: expected a list")
        items = [wire.decode_item(entry, f"items[{i}]") for i, entry in enumerate(raw)]
        outcomes = await self.com.run(self.session.push, calendar, items)
        return {"outcomes": [wire.encode_outcome(o) for o in outcomes]}

    async def _delete(self, params: dict[str, Any], calendar: str) -> Any:
        remote_id, version = params.get("remote_id"), params.get("version")
        if not isinstance(remote_id, str) or not (version is None or isinstance(version, str)):
            raise wire.WireError("remote_id, version: expected strings")
        await self.com.run(self.session.delete, calendar, remote_id, version)
        return {"deleted": remote_id}

    async def _get(self, params: dict[str, Any], calendar: str) -> Any:
        remote_id = params.get("remote_id")
        if not isinstance(remote_id, str):
            raise wire.WireError("remote_id: expected a string")
        return wire.encode_remote(await self.com.run(self.session.get, calendar, remote_id))

    async def _find(self, params: dict[str, Any], calendar: str) -> Any:
        hub_ids = params.get("hub_ids")
        if not isinstance(hub_ids, list) or not all(isinstance(h, str) for h in hub_ids):
            raise wire.WireError("hub_ids: expected a list of strings")
        found = await self.com.run(self.session.find, calendar, hub_ids)
        return {"found": {h: wire.encode_remote(e) for h, e in found.items()}}

    async def _check(self, params: dict[str, Any], calendar: str) -> Any:
        items = await self.com.run(self.session.check, calendar, params.get("write") is True)
        return {"items": [{"what": i.what, "ok": i.ok, "detail": i.detail} for i in items]}


def relay_url(hub: str, agent_id: str) -> str:
    return f"{hub.rstrip('/')}/agents/{quote(agent_id, safe='')}/outlook"


async def _serve_connection(
    ws: aiohttp.ClientWebSocketResponse, server: RequestServer, stop: asyncio.Event
) -> None:
    """Answer requests until the hub closes the connection or ``stop`` is set."""
    tasks: set[asyncio.Task[None]] = set()

    async def answer(text: str) -> None:
        reply = await server.answer(text)
        if reply is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(reply)

    async def close_on_stop() -> None:
        await stop.wait()
        await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"agent stopping")

    closer = asyncio.create_task(close_on_stop())
    try:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                task = asyncio.create_task(answer(message.data))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif message.type is aiohttp.WSMsgType.ERROR:
                log.warning("connection error: %s", ws.exception())
                break
    finally:
        closer.cancel()
        # The COM calls in flight finish (Outlook cannot be interrupted); their answers
        # have nowhere to go once the connection is closed.
        if tasks:
            await asyncio.wait(tasks, timeout=10)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def _connect_loop(
    settings: AgentSettings,
    server: RequestServer,
    stop: asyncio.Event,
    ssl_ctx: ssl.SSLContext | None,
) -> None:
    url = relay_url(settings.hub, settings.agent)
    headers = {"Authorization": f"Bearer {settings.token}"}
    delay = FIRST_RETRY_S
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                async with http.ws_connect(
                    url,
                    headers=headers,
                    ssl=ssl_ctx if ssl_ctx is not None else True,
                    heartbeat=HEARTBEAT_S,
                    max_msg_size=DEFAULT_MAX_MESSAGE,
                ) as ws:
                    log.info("connected to %s as the Outlook agent of %s", url, settings.agent)
                    delay = FIRST_RETRY_S
                    await _serve_connection(ws, server, stop)
                    if stop.is_set():
                        return
                    log.warning("the hub closed the connection (code %s)", ws.close_code)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (401, 403):
                    raise Refused(
                        f"the hub refused the Outlook-agent token for {settings.agent!r} "
                        "(revoked or wrong): ask the hub's administrator for a new one "
                        f"(POST /agents/{settings.agent}/outlook-token)"
                    ) from None
                if exc.status == 404:
                    raise Refused(f"{url} is not a calhub relay: check --hub") from None
                log.warning("the hub refused the connection: HTTP %s", exc.status)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning(
                    "cannot reach the hub at %s: %s", settings.hub, exc or type(exc).__name__
                )
            wait = min(settings.retry_cap, delay) * random.uniform(0.8, 1.0)
            log.info("reconnecting in %.1f s", wait)
            await _wait(stop, wait)
            delay = min(settings.retry_cap, delay * 2)


def _stop_on_signals(stop: asyncio.Event) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt
            pass
    return installed


async def run_agent(
    settings: AgentSettings, factory: Callable[[], Any], stop: asyncio.Event | None = None
) -> int:
    """Run until stopped; the exit status. Raises :class:`OutlookUnavailable` or
    :class:`Refused` with the message to show."""
    stop = stop or asyncio.Event()
    installed = _stop_on_signals(stop)
    ssl_ctx = None
    if settings.ca_file:
        ssl_ctx = await asyncio.to_thread(ca_bundle_context, settings.ca_file)
    com = ComThread(*com_apartment())
    com.start()
    session = OutlookSession(factory, settings.profile)
    try:
        opened = await com.run(session.open)
        log.info("%s opened", opened)
        await _connect_loop(settings, RequestServer(settings.agent, session, com), stop, ssl_ctx)
    finally:
        for sig in installed:
            asyncio.get_running_loop().remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await com.run(session.close)
        await asyncio.to_thread(com.stop)
    log.info("stopped")
    return EXIT_OK


__all__ = ["AgentSettings", "OutlookUnavailable", "Refused", "RequestServer", "run_agent"]
