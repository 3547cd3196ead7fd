"""The hub side of provider ``mapi``: every contract call relayed to the agent's Outlook agent.

The provider lives in the hub process and owns no connection itself: ``calhub serve`` lends
it the relay registry (:class:`hub.relay.RelayHub`, through :meth:`Provider.attach`) into
which the admin endpoint puts each Outlook agent's WebSocket. A call finds its agent's
connection there, sends one request, and decodes the answer with :mod:`plugins.mapi.wire`
before trusting any of it.

No agent connected, a connection that drops mid-call, no answer in ``call_timeout`` or an
answer that is malformed: a :class:`TransientError` naming the agent, so the engine backs
off and deletes nothing (an offline PC is never an empty calendar). Outlook has no delta
cursor the object model exposes, so every fetch is a full window listing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from hub.durations import parse_duration
from hub.relay import CallTimeout, ConnectionLost, NotConnected, RequestTooLarge
from hub.spec import (
    AccountConfig,
    AttentionNeeded,
    CalendarRef,
    CallStatus,
    CheckItem,
    FetchResult,
    HubServices,
    NotFoundError,
    Option,
    PermanentError,
    Provider,
    ProviderError,
    PushItem,
    PushOutcome,
    RemoteEvent,
    Telemetry,
    TransientError,
    Window,
)
from plugins.mapi import wire

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_OFFLINE_ATTENTION = "30m"


class MapiProvider(Provider):
    """Outlook through its MAPI profile, reached through ``calhub outlook-agent``."""

    name: ClassVar[str] = "mapi"
    title: ClassVar[str] = "Outlook through its MAPI profile (served by calhub outlook-agent)"
    options: ClassVar[Sequence[Option]] = (
        Option(
            "call_timeout",
            float,
            default=DEFAULT_TIMEOUT_S,
            help="seconds the hub waits for the Outlook agent's answer to one call",
        ),
        Option(
            "offline_attention",
            str,
            default=DEFAULT_OFFLINE_ATTENTION,
            help="offline longer than this (e.g. '30m', '8h'), an agent needs attention",
        ),
    )
    supports_delta: ClassVar[bool] = False
    max_batch: ClassVar[int] = 10  # items per relayed push: one round trip, not ten
    max_concurrency: ClassVar[int] = 1  # one Outlook, one COM thread: calls queue anyway

    def __init__(self, account: AccountConfig, telemetry: Telemetry | None = None) -> None:
        super().__init__(account, telemetry)
        problems = list(self.check_options(account.options))
        if problems:
            key, reason = problems[0]
            raise ValueError(f"accounts.{account.name}.{key}: {reason}")
        self.call_timeout = float(account.options.get("call_timeout", DEFAULT_TIMEOUT_S))
        self.offline_attention: timedelta = parse_duration(
            account.options.get("offline_attention", DEFAULT_OFFLINE_ATTENTION)
        )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        timeout = options.get("call_timeout", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            yield "call_timeout", f"expected seconds > 0, got {timeout!r}"
        try:
            parse_duration(options.get("offline_attention", DEFAULT_OFFLINE_ATTENTION))
        except ValueError as exc:
            yield "offline_attention", str(exc)

    def attach(self, services: HubServices) -> None:
        super().attach(services)
        services.relays.watch(self.account.name, self.offline_attention)

    # ------------------------------------------------------------------ one relayed call

    async def _call(self, cal: CalendarRef, method: str, params: dict[str, Any]) -> Any:
        who = f"Outlook agent for {cal.agent_id}"
        started = time.perf_counter()
        status = CallStatus.OK
        try:
            reply = await self.services.relays.call(
                cal.agent_id, method, {"cal": wire.encode_cal(cal), **params}, self.call_timeout
            )
        except NotConnected:
            status = CallStatus.TRANSIENT
            relay = self.services.relays.status(cal.agent_id, self.account.name) or {}
            if relay.get("needs_attention"):
                # Offline past offline_attention: the pass ends needs-attention (and alerts).
                raise AttentionNeeded(
                    f"{who}: {relay['reason']}; start `calhub outlook-agent` in the agent's"
                    " Windows session"
                ) from None
            raise TransientError(f"{who} is not connected") from None
        except ConnectionLost as exc:
            status = CallStatus.TRANSIENT
            raise TransientError(f"{who} disconnected during {method}: {exc}") from None
        except CallTimeout:
            status = CallStatus.TRANSIENT
            raise TransientError(
                f"{who} did not answer {method} within {self.call_timeout:g} s"
            ) from None
        except RequestTooLarge as exc:
            status = CallStatus.PERMANENT
            raise PermanentError(f"{who}: {exc}") from None
        finally:
            self.telemetry.request(self.account.name, method, status, time.perf_counter() - started)
        if reply.error is not None:
            raise self._decode(cal, method, wire.decode_error, reply.error)
        return reply.result

    def _decode(self, cal: CalendarRef, method: str, decode: Callable[[Any], T], raw: Any) -> T:
        """Decode an answer; a malformed one is refused, logged and never trusted."""
        try:
            return decode(raw)
        except wire.WireError as exc:
            log.warning(
                "refused the answer of the Outlook agent for %s to %s: %s",
                cal.agent_id,
                method,
                exc,
            )
            raise TransientError(
                f"Outlook agent for {cal.agent_id} sent a malformed answer to {method}: {exc}"
            ) from None

    # ------------------------------------------------------------------ the contract

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        raw = await self._call(cal, "fetch", {"window": wire.encode_window(window)})
        return self._decode(cal, "fetch", wire.decode_fetch, raw)

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        if not items:
            return []
        if len(items) > self.max_batch:
            raise PermanentError(f"push of {len(items)} items exceeds max_batch={self.max_batch}")
        batch = list(items)
        raw = await self._call(cal, "push", {"items": [wire.encode_item(i) for i in batch]})
        return self._decode(cal, "push", lambda r: wire.decode_outcomes(r, batch), raw)

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        raw = await self._call(cal, "delete", {"remote_id": remote_id, "version": version})

        def deleted(r: Any) -> None:
            if r != {"deleted": remote_id}:
                raise wire.WireError(f"result: expected {{'deleted': {remote_id!r}}}")

        self._decode(cal, "delete", deleted, raw)

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        raw = await self._call(cal, "get", {"remote_id": remote_id})

        def event(r: Any) -> RemoteEvent:
            got = wire.decode_remote(r, "result")
            if got.remote_id != remote_id:
                raise wire.WireError(f"result.remote_id: {got.remote_id!r} answers {remote_id!r}")
            return got

        return self._decode(cal, "get", event, raw)

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        if not hub_ids:
            return {}
        wanted = list(dict.fromkeys(hub_ids))
        raw = await self._call(cal, "find", {"hub_ids": wanted})

        def found(r: Any) -> dict[str, RemoteEvent]:
            if not isinstance(r, dict) or not isinstance(r.get("found"), dict):
                raise wire.WireError("result.found: expected an object")
            events = {}
            for hub_id, entry in r["found"].items():
                event = wire.decode_remote(entry, f"result.found[{hub_id!r}]")
                if hub_id not in wanted or event.hub_id != hub_id:
                    raise wire.WireError(f"result.found: {hub_id!r} was not asked for")
                events[hub_id] = event
            return events

        return self._decode(cal, "find", found, raw)

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        items: list[CheckItem] = []
        for cal in cals:
            what = f"Outlook agent for {cal.agent_id}"
            try:
                raw = await self._call(cal, "check", {"write": write})
                items += self._decode(cal, "check", _check_items, raw)
            except (TransientError, PermanentError, NotFoundError) as exc:
                items.append(CheckItem(what, False, _check_reason(exc)))
            except ProviderError as exc:
                items.append(CheckItem(what, False, str(exc)))
        return items


def _check_reason(exc: ProviderError) -> str:
    if "is not connected" in exc.message:
        return (
            f"{exc.message} (the relay lives in `calhub serve`; start `calhub outlook-agent` "
            "on the agent's PC and check GET /agents/{id}/status)"
        )
    return exc.message


def _check_items(raw: Any) -> list[CheckItem]:
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
        raise wire.WireError("result.items: expected a list")
    items = []
    for i, entry in enumerate(raw["items"]):
        where = f"result.items[{i}]"
        what = wire.text_field(entry, "what", where) or ""
        detail = wire.text_field(entry, "detail", where) or ""
        ok = wire.bool_field(entry, "ok", where)
        items.append(CheckItem(what, ok, detail))
    return items
