"""E-mail tied to a running hub: ``async with MailService(store, config) as mail`` installs the
copy hook on the store, makes the alert observer for the scheduler (:attr:`observers`) and runs
the outbox sender in the background; leaving it lets the batch in flight finish (up to
``stop_timeout`` seconds), then stops the sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from hub.config import Config
from hub.mail.alerts import AttentionAlerts
from hub.mail.copies import CopyPlanner
from hub.mail.sender import Backoff, OutboxSender
from hub.scheduler import PassObserver
from hub.store.base import Store

log = logging.getLogger(__name__)


class MailService:
    """The copy hook, the alert observer and the background sender of one hub."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        clock: Callable[[], datetime] | None = None,
        backoff: Backoff | None = None,
        poll: float = 5.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if config.email is None:
            raise ValueError("no [email] section in the configuration")
        self.store = store
        self.email = config.email
        self.sender = OutboxSender(store, config.email, clock=clock, backoff=backoff, poll=poll)
        self.planner = CopyPlanner(config.email, config.hub, clock=clock)
        self.alerts = AttentionAlerts(
            store, config.email, config.hub, clock=clock, on_enqueue=self.sender.wake
        )
        self.stop_timeout = stop_timeout
        self._task: asyncio.Task[None] | None = None
        self._installed = False

    @property
    def observers(self) -> list[PassObserver]:
        """What the scheduler calls after each pass (alerts, when ``alerts_to`` is set)."""
        return [self.alerts.observe] if self.email.alerts_to else []

    def install(self) -> None:
        """Write copies from now on (the hook of every later transaction)."""
        if not self._installed:
            self.store.add_commit_hook(self.planner)
            self.store.add_listener(self._after_commit)
            self._installed = True

    def _after_commit(self, origin: str, agent_ids: frozenset[str]) -> None:
        if self.planner.take_wrote():
            self.sender.wake()

    async def __aenter__(self) -> MailService:
        self.install()
        self._task = asyncio.create_task(self.sender.run(), name="outbox-sender")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.sender.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.stop_timeout)
        except TimeoutError:
            log.warning("the outbox sender did not stop within %s s", self.stop_timeout)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["MailService"]
