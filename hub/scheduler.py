"""Concurrent per-agent sync passes: intervals, triggers, limits, graceful shutdown.

``async with Scheduler(store, config, registry, metrics) as s`` builds and opens one provider
per configured account, and (with ``background=True``) runs a dispatcher that starts each agent
calendar's pass every ``sync_interval`` (with jitter, so that agents spread out) and within a
second of a local change: the store's listener turns every commit whose origin is not a sync
into :meth:`Scheduler.trigger`, and several triggers close together make one pass.

Guarantees:

- never two passes of one agent at once (a lock per agent; :meth:`sync_now` waits for the
  pass in flight, then runs its own);
- at most ``max_concurrent_syncs`` passes at once, and at most ``provider.max_concurrency``
  requests in flight per (account, mailbox);
- one account failing (bad credentials, a provider that cannot be built) only affects the
  agents pointing at it;
- leaving the context stops scheduling, lets the passes in flight finish (up to
  ``stop_timeout`` seconds, then cancels them: a cancelled pass rolls its transaction back),
  and closes the providers.

On a store shared by several workers (one that offers :class:`hub.store.lease.Leases`, the
PostgreSQL store), this worker syncs only the agents it leases: a lease round every third of
``[hub] lease_time`` renews them and claims a fair share of the free ones; each pass runs
fenced by its lease's generation (a pass whose lease was taken over commits nothing); a
trigger for an agent another worker holds is left to that worker (the store's change
notifications reach it); leaving the context gives the leases back. On SQLite nothing of this
applies and the scheduler behaves as it always did.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.abc

from hub.backoff import RetryPolicy, Sleep
from hub.boundary import GuardedProvider
from hub.config import Config
from hub.metrics import Metrics
from hub.model import Agent, PassResult
from hub.secrets import StoreSecrets
from hub.spec import AuthError, HubServices, ProviderRegistry
from hub.store.base import Store, StoreError
from hub.store.lease import Fence, Leases, fenced
from hub.sync import AgentSync

log = logging.getLogger(__name__)

PassObserver = Callable[[PassResult], Awaitable[None]]  # e.g. hub.mail.alerts

DEBOUNCE_S = 0.3  # a trigger waits this long for more changes before its pass starts
JITTER = 0.1  # each interval is stretched or shrunk by up to this fraction
AGENT_REFRESH_S = 5.0  # how often the dispatcher looks for added or removed agents
MAX_START_SPREAD_S = 10.0  # first passes after start are spread over at most this long


class Scheduler:
    """Runs sync passes of every agent calendar; implements :class:`hub.control.SyncControl`."""

    def __init__(
        self,
        store: Store,
        config: Config,
        registry: ProviderRegistry,
        metrics: Metrics,
        *,
        background: bool = True,
        clock: Callable[[], datetime] | None = None,
        sleep: Sleep | None = None,
        retry_policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        debounce: float = DEBOUNCE_S,
        start_spread: float | None = None,
        stop_timeout: float = 30.0,
        observers: Sequence[PassObserver] = (),
        services: HubServices | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.background = background
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep
        self.retry_policy = retry_policy
        self.rng = rng or random.Random()
        self.debounce = debounce
        interval = config.hub.sync_interval.total_seconds()
        self.interval = max(1.0, interval)
        self.start_spread = (
            min(self.interval, MAX_START_SPREAD_S) if start_spread is None else start_spread
        )
        self.stop_timeout = stop_timeout
        self.observers = tuple(observers)
        self.services = services or HubServices()
        self._limiter = anyio.CapacityLimiter(max(1, config.hub.max_concurrent_syncs))
        self._providers: dict[str, GuardedProvider] = {}
        self._provider_locks: dict[str, anyio.Lock] = {}
        self._mailbox_limits: dict[tuple[str, str], anyio.CapacityLimiter] = {}
        self._agent_locks: dict[str, anyio.Lock] = {}
        self._due: dict[str, float] = {}  # agent id -> anyio.current_time() of its next pass
        self._scheduled: set[str] = set()  # agents the dispatcher knows
        self._background_running: set[str] = set()
        self._waiting: set[str] = set()
        self._active: set[str] = set()
        self._last: dict[str, PassResult] = {}
        self._needing_attention: set[str] = set()  # agents whose last pass needs attention
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._listening = False
        # Leasing, when several workers share the store: agent id -> lease generation.
        # A one-off run (calhub sync) does not lease: it is for a hub without workers.
        self.leases: Leases | None = store if background and isinstance(store, Leases) else None
        self.lease_seconds = max(1.0, config.hub.lease_time.total_seconds())
        self._held: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Scheduler:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.push_async_callback(self._close_providers)
            for name in self.config.accounts:
                try:
                    await self._provider(name)
                except Exception as exc:  # reported by each pass of the account's agents
                    log.warning("account %s cannot be opened yet: %s", name, exc)
            if not self._listening:
                self.store.add_listener(self._on_change)
                self._listening = True
            if self.background:
                if self.leases is not None:
                    # Given back after the task group (the lease loop) has stopped.
                    stack.push_async_callback(self._release_leases)
                    try:
                        await self._lease_round()  # start with a share, not with nothing
                    except StoreError as exc:  # the lease loop tries again
                        log.warning("first lease round failed: %s", exc)
                self._tg = await stack.enter_async_context(anyio.create_task_group())
                if self.leases is not None:
                    self._tg.start_soon(self._lease_loop)
                self._tg.start_soon(self._dispatch)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._closing = False
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._closing = True
        self._wake.set()
        with anyio.move_on_after(self.stop_timeout):
            while self._background_running or self._active:
                self._idle = anyio.Event()
                await self._idle.wait()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        stack, self._stack, self._tg = self._stack, None, None
        if stack is not None:
            await stack.__aexit__(*exc)

    async def _close_providers(self) -> None:
        providers, self._providers = self._providers, {}
        for name, provider in providers.items():
            try:
                with anyio.CancelScope(shield=True):
                    await provider.close()
            except Exception:
                log.exception("closing the provider of account %s failed", name)

    async def _provider(self, account: str) -> GuardedProvider:
        """The opened provider of ``account``, built and opened on first use."""
        lock = self._provider_locks.setdefault(account, anyio.Lock())
        async with lock:
            provider = self._providers.get(account)
            if provider is not None:
                return provider
            acc = self.config.accounts[account]
            cls = self.registry.get(acc.provider)
            if cls is None:
                raise LookupError(
                    f"no provider plugin named {acc.provider!r} "
                    f"(registered: {', '.join(self.registry.names()) or 'none'})"
                )
            inner = cls(acc, self.metrics)
            inner.use_secrets(StoreSecrets(self.store, account))
            provider = GuardedProvider(inner, calls=self.metrics)
            provider.attach(self.services)
            await provider.open()
            self._providers[account] = provider
            return provider

    def _mailbox_limit(self, account: str, mailbox: str, size: int) -> anyio.CapacityLimiter:
        key = (account, mailbox.strip().lower())
        limiter = self._mailbox_limits.get(key)
        if limiter is None:
            limiter = self._mailbox_limits[key] = anyio.CapacityLimiter(max(1, size))
        return limiter

    # ------------------------------------------------------------------ SyncControl

    def trigger(self, agent_id: str) -> None:
        """Ask for a pass of this agent within about a second (several asks: one pass)."""
        if self._closing or not self.background:
            return
        if self.leases is not None and agent_id not in self._held:
            return  # another worker's: its store hears of the change and triggers it there
        due = anyio.current_time() + self.debounce
        self._due[agent_id] = min(self._due.get(agent_id, math.inf), due)
        self._wake.set()

    async def sync_now(self, agent_id: str, *, allow_empty: bool = False) -> PassResult:
        """Run a pass now (after the one in flight, if any) and return its result."""
        return await self._pass(agent_id, allow_empty=allow_empty)

    def agent_status(self, agent_id: str) -> dict[str, Any]:
        """Live facts for /agents/{id}/status: running, queued, next run, last pass."""
        due = self._due.get(agent_id)
        next_run = None
        if due is not None and self.background and not self._closing:
            wait = max(0.0, due - anyio.current_time())
            next_run = (self.clock() + timedelta(seconds=wait)).isoformat()
        last = self._last.get(agent_id)
        return {
            "running": agent_id in self._active,
            "queued": agent_id in self._waiting,
            "next_run": next_run,
            "last_pass_at": last.finished_at.isoformat() if last and last.finished_at else None,
            "last_result": last.result if last else None,
            "last_error": last.error if last else None,
        }

    async def run_once(self, agent_ids: Sequence[str] | None = None) -> dict[str, PassResult]:
        """One pass of each agent (all agents with an account when None), concurrently within
        the limits; returns the results by agent id, in the order asked."""
        if agent_ids is None:
            agent_ids = [a.id for a in await self.store.list_agents() if a.account]
        results: dict[str, PassResult] = {}

        async def one(agent_id: str) -> None:
            results[agent_id] = await self._pass(agent_id)

        async with anyio.create_task_group() as tg:
            for agent_id in dict.fromkeys(agent_ids):
                tg.start_soon(one, agent_id)
        return {agent_id: results[agent_id] for agent_id in dict.fromkeys(agent_ids)}

    # ------------------------------------------------------------------ passes

    async def _pass(
        self, agent_id: str, *, allow_empty: bool = False, background: bool = False
    ) -> PassResult:
        lock = self._agent_locks.setdefault(agent_id, anyio.Lock())
        async with lock:
            self._waiting.add(agent_id)
            self._gauges()
            try:
                async with self._limiter:
                    self._waiting.discard(agent_id)
                    if background and self._closing:
                        # Shutting down: a scheduled pass that has not started yet is dropped.
                        return PassResult(agent_id, None, "skipped", error="shutting down")
                    self._active.add(agent_id)
                    self._gauges()
                    try:
                        result = await self._run_agent(agent_id, allow_empty)
                    finally:
                        self._active.discard(agent_id)
            finally:
                self._waiting.discard(agent_id)
                self._gauges()
        self._last[agent_id] = result
        self._gauges()
        await self._observe(result)
        # Only a finished pass changes it: kept per pass (counting every agent's last result
        # made each pass cost O(agents)).
        if result.result == "needs-attention":
            self._needing_attention.add(agent_id)
        else:
            self._needing_attention.discard(agent_id)
        self.metrics.attention.set(len(self._needing_attention))
        if not self._active and not self._background_running:
            self._idle.set()
        return result

    async def _run_agent(self, agent_id: str, allow_empty: bool) -> PassResult:
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            return PassResult(agent_id, None, "skipped", error="no such agent")
        if not agent.account:
            return PassResult(agent_id, None, "skipped", error="no account: hub calendar only")
        if agent.account not in self.config.accounts:
            return self._attention(agent, f"no account named {agent.account!r} is configured")
        try:
            provider = await self._provider(agent.account)
        except AuthError as exc:
            return self._attention(agent, f"authentication refused: {exc.message}")
        except Exception as exc:
            return self._attention(agent, f"cannot open account {agent.account!r}: {exc}")
        fence = None
        if self.leases is not None:
            generation = self._held.get(agent_id)
            if generation is None:
                holder = await self.leases.lease_holder(agent_id)
                return PassResult(
                    agent_id, agent.account, "skipped", error=f"leased by worker {holder}"
                )
            fence = Fence(agent_id, self.leases.worker, generation)
        limiter = self._mailbox_limit(agent.account, agent.email, provider.max_concurrency)
        engine = AgentSync(
            self.store,
            provider.limited(limiter),
            agent.account,
            self.config.hub,
            metrics=self.metrics,
            clock=self.clock,
            sleep=self.sleep,
            retry_policy=self.retry_policy,
            rng=self.rng,
        )
        try:
            if fence is None:
                return await engine.run(agent, allow_empty=allow_empty)
            with fenced(fence):
                return await engine.run(agent, allow_empty=allow_empty)
        except StoreError as exc:  # locked or failing database: the operator's, not a bug
            if self.background:  # run_once's caller reports each result itself
                log.warning("sync pass of %s failed: %s", agent_id, exc)
            self.metrics.sync_pass(agent.account, "failed", 0.0, "database")
            return PassResult(agent_id, agent.account, "failed", error=f"database: {exc}")
        except Exception as exc:  # one agent's bug must not stop the others
            log.exception("sync pass of %s failed unexpectedly", agent_id)
            self.metrics.sync_pass(agent.account, "failed", 0.0, "internal")
            return PassResult(
                agent_id, agent.account, "failed", error=f"internal error: {type(exc).__name__}"
            )

    async def _observe(self, result: PassResult) -> None:
        for observer in self.observers:
            try:
                await observer(result)
            except Exception:  # an alert that cannot be written must not fail the pass
                log.exception("pass observer %r failed for %s", observer, result.agent_id)

    def _attention(self, agent: Agent, reason: str) -> PassResult:
        log.warning("agent %s needs attention: %s", agent.id, reason)
        self.metrics.sync_pass(agent.account or "", "needs-attention", 0.0, "account")
        now = self.clock()
        return PassResult(
            agent.id,
            agent.account,
            "needs-attention",
            error=reason,
            started_at=now,
            finished_at=now,
            scope="account",
        )

    def _gauges(self) -> None:
        self.metrics.queue.set(len(self._waiting) + len(self._due_now()))
        self.metrics.running.set(len(self._active))

    # ------------------------------------------------------------------ background

    def _on_change(self, origin: str, agent_ids: frozenset[str]) -> None:
        # Changes the engine made itself must not bounce back as new passes.
        if origin.startswith("sync:"):
            return
        for agent_id in agent_ids:
            self.trigger(agent_id)

    def _due_now(self) -> list[str]:
        if not self.background:
            return []
        now = anyio.current_time()
        return [a for a, t in self._due.items() if t <= now and a not in self._background_running]

    async def _refresh_agents(self) -> None:
        agents = {a.id for a in await self.store.list_agents() if a.account}
        if self.leases is not None:
            agents &= set(self._held)
        now = anyio.current_time()
        for agent_id in agents - self._scheduled:
            self._due.setdefault(agent_id, now + self.rng.uniform(0, self.start_spread))
        for agent_id in self._scheduled - agents:
            self._due.pop(agent_id, None)
        self._scheduled = agents

    async def _dispatch(self) -> None:
        assert self._tg is not None
        next_refresh = 0.0
        while not self._closing:
            now = anyio.current_time()
            if now >= next_refresh:
                try:
                    await self._refresh_agents()
                except StoreError as exc:
                    log.warning("listing agents failed; retrying: %s", exc)
                except Exception:
                    log.exception("listing agents failed; retrying")
                next_refresh = now + AGENT_REFRESH_S
            for agent_id in self._due_now():
                del self._due[agent_id]
                self._background_running.add(agent_id)
                self._tg.start_soon(self._background_pass, agent_id)
            self._gauges()
            upcoming = [t for a, t in self._due.items() if a not in self._background_running]
            wait = min([next_refresh, *upcoming]) - anyio.current_time()
            with anyio.move_on_after(min(max(wait, 0.01), 1.0)):
                await self._wake.wait()
            self._wake = anyio.Event()

    # ------------------------------------------------------------------ leases

    async def _lease_loop(self) -> None:
        while not self._closing:
            await anyio.sleep(self.lease_seconds / 3)
            try:
                await self._lease_round()
            except StoreError as exc:  # the database is away: keep what we have, retry
                log.warning("lease round failed; retrying: %s", exc)

    async def _lease_round(self) -> None:
        assert self.leases is not None
        held = (await self.leases.lease_round(self.lease_seconds)).held
        gained, lost = set(held) - set(self._held), set(self._held) - set(held)
        self._held = held
        now = anyio.current_time()
        for agent_id in lost:
            self._scheduled.discard(agent_id)
            self._due.pop(agent_id, None)
        for agent_id in gained:
            # A taken-over agent may have been left mid-pass: its pass runs soon.
            self._scheduled.add(agent_id)
            self._due.setdefault(agent_id, now + self.rng.uniform(0, self.debounce))
        if gained or lost:
            log.info("leases: %d agents (+%d, -%d)", len(held), len(gained), len(lost))
            self._wake.set()

    async def _release_leases(self) -> None:
        assert self.leases is not None
        self._held = {}
        try:
            with anyio.CancelScope(shield=True):
                await self.leases.release_all()
        except StoreError as exc:  # they expire on their own within the lease time
            log.warning("releasing the leases failed: %s", exc)

    async def _background_pass(self, agent_id: str) -> None:
        try:
            await self._pass(agent_id, background=True)
        finally:
            self._background_running.discard(agent_id)
            if agent_id in self._scheduled and not self._closing:
                spread = self.rng.uniform(1 - JITTER, 1 + JITTER)
                periodic = anyio.current_time() + self.interval * spread
                # A trigger that came during the pass keeps its earlier time.
                self._due[agent_id] = min(self._due.get(agent_id, math.inf), periodic)
            if not self._active and not self._background_running:
                self._idle.set()
            self._wake.set()


__all__ = ["PassObserver", "Scheduler"]
