"""The one wrapper around every call into a provider plugin.

The engine (:mod:`hub.sync`), the scheduler and ``calhub check`` never call a plugin's provider
object directly: they call a :class:`GuardedProvider` around it, which does in one place what
each caller would otherwise repeat (vdirsyncer enforces its storage flags in one metaclass):

- the capability flags of :data:`hub.spec.CAPABILITIES` are read through from the provider
  *object* (so an instance attribute, such as the memory provider's per-account
  ``max_batch``, counts), never copied by hand;
- an exception that is not a hub error becomes a :class:`~hub.spec.ProviderError` naming the
  provider and keeping the original message (the original is its ``__cause__``): a plugin's
  ``FileNotFoundError`` reads ``jsondir: FileNotFoundError: ...`` in the pass result, not
  "internal error"; a ``TimeoutError`` or ``ConnectionError`` becomes a
  :class:`~hub.spec.TransientError`, which the engine retries;
- :meth:`GuardedProvider.check` never raises: whatever escapes the plugin is reported as a
  failed step;
- with a limiter, every request waits for it (concurrent requests per account and mailbox);
- each call is reported to a :class:`CallLog` with its :class:`~hub.spec.CallStatus`.

``NotImplementedError`` passes through unchanged: the engine reads it from ``get`` and
``find`` as "this provider cannot" and carries on without them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import anyio

from hub.spec import (
    CAPABILITIES,
    AgentSecrets,
    CalendarRef,
    CallStatus,
    CheckItem,
    FetchResult,
    HubServices,
    PermanentError,
    Provider,
    ProviderError,
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    TransientError,
    Window,
)

T = TypeVar("T")

#: Exceptions of a plugin that say "try again later" (the engine retries TransientError).
_TRANSIENT = (TimeoutError, ConnectionError)


class CallLog(Protocol):
    """Where the wrapper reports each contract call (:class:`hub.metrics.Metrics` is one)."""

    def provider_call(
        self, account: str, operation: str, status: CallStatus, seconds: float
    ) -> None: ...


def foreign_error(provider_name: str, exc: BaseException, item: str | None = None) -> ProviderError:
    """The hub error standing for ``exc``, raised by a plugin that should not have let it out."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = f"{provider_name}: {detail}"
    if isinstance(exc, _TRANSIENT):
        return TransientError(message, item=item)
    return ProviderError(message, item=item)


class GuardedProvider(Provider):
    """A provider seen through the hub's boundary (see the module docstring).

    It is itself a :class:`~hub.spec.Provider`, so whatever takes a provider takes it;
    ``inner`` is the plugin's object. :meth:`limited` makes a view of the same provider whose
    requests wait for a limiter.
    """

    def __init__(
        self,
        inner: Provider,
        *,
        limiter: anyio.CapacityLimiter | None = None,
        calls: CallLog | None = None,
    ) -> None:
        super().__init__(inner.account, inner.telemetry)
        self.inner = inner
        self.limiter = limiter
        self.calls = calls

    def limited(self, limiter: anyio.CapacityLimiter) -> GuardedProvider:
        """The same provider, each request waiting for ``limiter``."""
        view = GuardedProvider(self.inner, limiter=limiter, calls=self.calls)
        view.services = self.services
        return view

    def attach(self, services: HubServices) -> None:
        """The plugin's object gets the hub's services (the wrapper holds none of its own)."""
        super().attach(services)
        self.inner.attach(services)

    # ------------------------------------------------------------------ identity

    @property  # type: ignore[override]
    def name(self) -> str:
        return self.inner.name

    @property  # type: ignore[override]
    def title(self) -> str:
        return self.inner.title

    # ------------------------------------------------------------------ one call

    async def _call(self, operation: str, fn: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        status = CallStatus.OK
        try:
            if self.limiter is None:
                return await fn()
            async with self.limiter:
                return await fn()
        except (ProviderError, NotImplementedError) as exc:
            status = CallStatus.of(exc)
            raise
        except Exception as exc:  # a plugin's own exception: named, never "internal error"
            error = foreign_error(self.inner.name, exc)
            status = CallStatus.of(error)
            raise error from exc
        finally:
            if self.calls is not None:
                seconds = time.perf_counter() - started
                self.calls.provider_call(self.account.name, operation, status, seconds)

    # ------------------------------------------------------------------ the contract

    async def open(self) -> None:
        await self._call("open", self.inner.open)

    async def close(self) -> None:
        await self._call("close", self.inner.close)

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        return await self._call("fetch", lambda: self.inner.fetch(cal, window, cursor))

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        outcomes = await self._call("push", lambda: self.inner.push(cal, items))
        if len(outcomes) != len(items):
            raise PermanentError(
                f"the provider answered {len(outcomes)} outcomes for {len(items)} items"
            )
        return [self._outcome(item, o) for item, o in zip(items, outcomes, strict=True)]

    def _outcome(self, item: PushItem, outcome: Any) -> PushOutcome:
        if isinstance(outcome, PushResult | ProviderError):
            return outcome
        if isinstance(outcome, BaseException):
            return foreign_error(self.inner.name, outcome, item=item.hub_id)
        kind = type(outcome).__name__
        return ProviderError(
            f"{self.inner.name}: push answered a {kind}, not a PushResult or an error",
            item=item.hub_id,
        )

    async def delete(self, cal: CalendarRef, remote_id: str, version: str | None) -> None:
        await self._call("delete", lambda: self.inner.delete(cal, remote_id, version))

    async def get(self, cal: CalendarRef, remote_id: str) -> RemoteEvent:
        return await self._call("get", lambda: self.inner.get(cal, remote_id))

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        return await self._call("find", lambda: self.inner.find(cal, hub_ids))

    def use_secrets(self, secrets: AgentSecrets) -> None:
        self.inner.use_secrets(secrets)

    async def authorize(self, cal: CalendarRef, say: Callable[[str], None]) -> str:
        return await self._call("authorize", lambda: self.inner.authorize(cal, say))

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        try:
            return list(await self._call("check", lambda: self.inner.check(cals, write)))
        except (ProviderError, NotImplementedError) as exc:
            # The contract says check reports and never raises; a plugin that raises anyway
            # still gets its reason shown.
            return [CheckItem("check", False, str(exc) or type(exc).__name__)]


def _flag(name: str) -> property:
    return property(lambda self: getattr(self.inner, name), doc=f"The provider's ``{name}``.")


for _name in CAPABILITIES:
    setattr(GuardedProvider, _name, _flag(_name))


def guard(provider: Provider, *, calls: CallLog | None = None) -> GuardedProvider:
    """``provider`` behind the boundary (itself when it already is)."""
    if isinstance(provider, GuardedProvider):
        return provider
    return GuardedProvider(provider, calls=calls)


__all__ = ["CallLog", "GuardedProvider", "foreign_error", "guard"]
