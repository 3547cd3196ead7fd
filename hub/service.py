"""``calhub serve``: the admin endpoint and the sync scheduler in one long-running process.

Start-up order: refuse an unsafe listen address, open the store, bring the ``[[agents]]`` of
the config in, start housekeeping (:mod:`hub.housekeeping`, daily), e-mail (with ``[email]``:
:mod:`hub.mail.service`), the scheduler, then the HTTP site. SIGINT/SIGTERM stop in the
reverse order: the site stops accepting and finishes the requests in flight, the scheduler
finishes the passes in flight (they persist their results), the outbox sender finishes the
message in flight, housekeeping is cancelled (a prune in flight rolls back), and the store is
closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TextIO

from aiohttp import web

from hub.admin import build_app
from hub.admin.auth import listen_is_safe, new_feed_token
from hub.admin.httplog import server_options
from hub.calendars import clash, sharing
from hub.config import Config, ConfigError
from hub.housekeeping import run_daily
from hub.mail.service import MailService
from hub.metrics import Metrics
from hub.model import Agent
from hub.redact import RedactSecrets
from hub.relay import RelayHub
from hub.rules import purge_tombstones
from hub.scheduler import Scheduler
from hub.spec import HubServices, ProviderRegistry
from hub.store import Store, Tx, hub_store

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """One line per event on stderr (systemd's journal and cron mail both read it).

    Leaves logging alone when the host program (a test runner) already configured it.
    Secrets in query strings (a feed's ``?token=``) are redacted from every line.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactSecrets())
    logging.basicConfig(level=level, handlers=[handler])


def merge_agent(existing: Agent | None, configured: Agent, keys: frozenset[str]) -> Agent:
    """The stored agent after applying the ``keys`` the config sets for it.

    Fields the config does not set keep what the API stored; the feed token is kept, or made
    when there is none.
    """
    if existing is None:
        merged = replace(configured)
    else:
        changes = {key: getattr(configured, key) for key in keys if key != "id"}
        merged = replace(existing, **changes, source="config")
    if not merged.feed_token:
        merged.feed_token = new_feed_token()
    return merged


def _differs(a: Agent, b: Agent) -> bool:
    skip = {"created_at", "updated_at"}
    return any(getattr(a, f) != getattr(b, f) for f in a.__slots__ if f not in skip)


RETIRED = "retired"


async def upsert_config_agents(store: Store, config: Config) -> list[Agent]:
    """Bring the config's ``[[agents]]`` into the store; writes only what changed.

    An agent the file defined before and no longer does is retired first (see
    :func:`_retire`). Raises :class:`ConfigError` when a configured agent would sync the
    same remote calendar as an agent made through the API.
    """
    stored = {agent.id: agent for agent in await store.list_agents()}
    configured_ids = {a.id for a in config.agents}
    gone = [a for a in stored.values() if a.source == "config" and a.id not in configured_ids]
    if gone:
        async with store.transaction("config") as tx:
            for agent in gone:
                stored[agent.id] = await _retire(tx, agent)
        log.info(
            "agents removed from the config file retired (hub calendar and history kept, "
            "no longer synced): %s",
            ", ".join(sorted(a.id for a in gone)),
        )
    changed: list[Agent] = []
    merged_all = dict(stored)
    for configured in config.agents:
        keys = config.agent_keys.get(configured.id, frozenset())
        existing = stored.get(configured.id)
        merged = merged_all[configured.id] = merge_agent(existing, configured, keys)
        if existing is None or _differs(existing, merged):
            changed.append(merged)
    _refuse_shared_calendars(config, merged_all)
    if changed:
        async with store.transaction("config") as tx:
            for agent in changed:
                await tx.put_agent(agent)
        log.info("agents from the config stored: %s", ", ".join(a.id for a in changed))
    return changed


async def _retire(tx: Tx, agent: Agent) -> Agent:
    """An agent gone from the config file: kept with its hub calendar and history, but
    without its account, so nothing of it is pushed any more (as for a deleted agent), and
    editable or deletable through the API like any other."""
    await purge_tombstones(tx, agent.id)
    for approval in await tx.list_approvals(pending_only=True):
        if approval.agent_id == agent.id:
            await tx.decide_approval(approval.id, False, "withdrawn: agent left the config file")
    return await tx.put_agent(replace(agent, source=RETIRED, account=None))


def _refuse_shared_calendars(config: Config, agents: dict[str, Agent]) -> None:
    others = [a for a in agents.values() if a.source != "config"]
    for i, configured in enumerate(config.agents):  # all valid: the file's own indexes
        agent = agents[configured.id]
        other = sharing(agent, others, config.account_wide_default)
        if other is not None:
            reason = clash(agent, other, config.account_wide_default)
            raise ConfigError(
                [f"agents[{i}].calendar: {reason} (agent {other.id!r} was made through the API)"]
            )


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C raises KeyboardInterrupt
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _address(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _start_site(runner: web.AppRunner, config: Config) -> None:
    site = web.TCPSite(runner, config.admin.host, config.admin.port)
    try:
        await site.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            [f"admin.listen: cannot listen on {config.admin.listen}: {reason}"]
        ) from None


async def serve(
    config: Config,
    registry: ProviderRegistry,
    *,
    announce: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); the process exit status.

    Raises :class:`ConfigError` when the endpoint must not or cannot listen as configured,
    and :class:`hub.store.StoreError` when the database is unusable.
    """
    unsafe = listen_is_safe(config)
    if unsafe:
        raise ConfigError([unsafe])
    stop = stop or asyncio.Event()
    # Signals are caught from the start: one arriving during start-up ends a clean start.
    with _stop_on_signals(stop):
        # Closed in reverse: the site stops first, then the scheduler, then the store.
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(hub_store(config.hub))
            await upsert_config_agents(store, config)
            housekeeping = asyncio.create_task(run_daily(store, config.hub), name="housekeeping")
            stack.push_async_callback(_cancel, housekeeping)  # before the store closes
            metrics = Metrics()
            mail = None  # no [email]: no copies, no alerts; the outbox stays empty
            if config.email is not None:
                mail = await stack.enter_async_context(MailService(store, config))
            # One relay registry: the admin endpoint accepts the connections of Outlook
            # agents, the providers built by the scheduler call through them.
            relays = RelayHub()
            scheduler = None  # no accounts: hub calendars and feeds only; /sync answers 409
            if config.accounts:
                observers = mail.observers if mail is not None else []
                scheduler = await stack.enter_async_context(
                    Scheduler(
                        store,
                        config,
                        registry,
                        metrics,
                        background=True,
                        observers=observers,
                        services=HubServices(relays=relays),
                    )
                )
            runner = web.AppRunner(
                build_app(store, config, metrics, scheduler, mail, relays=relays),
                **server_options(),
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await _start_site(runner, config)
            announce(f"calhub listening on {_address(runner)}")
            await stop.wait()
            log.info("stopping: finishing requests and sync passes in flight")
    log.info("stopped")
    return 0
