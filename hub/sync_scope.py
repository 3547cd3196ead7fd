"""What the parts of one sync pass share: the engine, the agent calendar, the clock, the tally.

A pass (:mod:`hub.sync`) is read by :class:`hub.sync_read.PassReader` (provider fetches and
lookups, the hub's appointments) and written by :class:`hub.sync_apply.PlanApplier` (the
plan's hub writes, remote deletes and pushes); both are a :class:`PassScope` of the same
pass, counting into one :class:`Tally`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from hub.model import Agent
from hub.spec import CalendarRef, Window
from hub.window import sync_window

if TYPE_CHECKING:
    from hub.sync import AgentSync

log = logging.getLogger("hub.sync")

T = TypeVar("T")


@dataclass(slots=True)
class Tally:
    """What one pass did: counts by action label, skipped items, provider calls."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    requests: int = 0

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append(f"{item}: {reason}")
        self.counts["skipped"] += 1
        log.warning("sync skipped %s: %s", item, reason)


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in runs of at most ``size``."""
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


class PassScope:
    """One pass of one agent calendar at one account: what its reader and writer share."""

    def __init__(self, engine: AgentSync, agent: Agent, tally: Tally, now: datetime) -> None:
        self.engine = engine
        self.store = engine.store
        self.provider = engine.provider
        self.account = engine.account
        self.settings = engine.settings
        self.agent = agent
        self.tally = tally
        self.now = now
        self.cal = CalendarRef(agent.id, agent.email, agent.calendar)
        settings = engine.settings
        self.window: Window = sync_window(now, settings.days_past, settings.days_future)

    async def calls(self, call: Callable[[], Awaitable[T]]) -> T:
        """One provider call with the engine's retry policy, counted in the tally."""
        return await self.engine.call(self.tally, call)
