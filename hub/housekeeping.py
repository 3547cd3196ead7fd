"""Housekeeping: deleting history older than its retention, so a hub running for years stays
small.

``calhub serve`` runs :func:`run_daily` in the background (once at start, then every day);
``calhub sync`` calls :func:`prune_history` at the end of its pass. The retentions are
``[hub] audit_retention`` and ``[hub] conflict_retention``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from hub.config import HubSettings
from hub.store import Store, StoreError

log = logging.getLogger(__name__)

ORIGIN_HOUSEKEEPING = "housekeeping"
EVERY = timedelta(days=1)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def prune_history(
    store: Store, settings: HubSettings, *, clock: Clock = _utcnow
) -> dict[str, int]:
    """Delete the audit entries and conflicts older than their retention, and the change
    stamps nothing needs any more, in one transaction; logs one line with the counts and
    returns them."""
    now = clock()
    async with store.transaction(ORIGIN_HOUSEKEEPING) as tx:
        counts = await tx.prune(now - settings.audit_retention, now - settings.conflict_retention)
    log.info(
        "housekeeping: deleted %d audit entries and %d conflicts past their retention,"
        " and %d change stamps of purged appointments",
        counts.get("audit", 0),
        counts.get("conflicts", 0),
        counts.get("stamps", 0),
    )
    return counts


async def run_daily(
    store: Store,
    settings: HubSettings,
    *,
    clock: Clock = _utcnow,
    sleep: Sleep = asyncio.sleep,
    every: timedelta = EVERY,
) -> None:
    """:func:`prune_history` now and then every ``every``, until cancelled.

    A failed run (database locked, disk full) is logged and retried at the next one: history
    kept a day longer harms nobody, a dead background task would stop housekeeping for good.
    """
    while True:
        try:
            await prune_history(store, settings, clock=clock)
        except StoreError as exc:
            log.warning("housekeeping failed, retried in %s: %s", every, exc)
        await sleep(every.total_seconds())


__all__ = ["ORIGIN_HOUSEKEEPING", "prune_history", "run_daily"]
