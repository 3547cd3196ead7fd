"""Agent leases: how several workers on one database share the agents, and the fence that keeps
a pass whose lease was lost from committing anything.

A store that can lease (the PostgreSQL store) offers :class:`Leases`. The scheduler claims and
renews agents through it and runs each pass of a leased agent inside :func:`fenced`: every
write transaction opened in that context (the pass's own, in whatever task it runs) checks,
just before it commits and while holding the lease row, that the lease still has the
generation the pass started with and has not expired; if not, the transaction rolls back with
:class:`LeaseLost`. A takeover raises the generation, so a worker that was paused past its
lease (SIGSTOP, a long GC, a lost network) and resumes commits nothing.

The SQLite store has one process and no leases: the scheduler then runs as it always did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hub.store.base import StoreError


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a pass runs under: the agent, the worker holding it, its generation."""

    agent_id: str
    holder: str
    generation: int


class LeaseLost(StoreError):
    """The transaction's lease was taken over or expired: nothing of it was committed."""


@dataclass(frozen=True, slots=True)
class LeaseRound:
    """What one claim-and-renew round left this worker with: agent id -> generation."""

    held: dict[str, int]
    workers: int  # live workers, this one included
    agents: int  # agents with an account, leased or not


@runtime_checkable
class Leases(Protocol):
    """Lease operations of a store shared by several workers."""

    worker: str  # this worker's name

    async def lease_round(self, lease_seconds: float) -> LeaseRound:
        """Heartbeat, renew what this worker holds, claim its fair share of the unleased or
        expired agents (``FOR UPDATE SKIP LOCKED``), release what exceeds it."""

    async def release_all(self) -> None:
        """Give every lease of this worker back (a clean stop) and drop its heartbeat."""

    async def lease_holder(self, agent_id: str) -> str | None:
        """The worker whose lease of ``agent_id`` is live, None when none is."""


_FENCE: ContextVar[Fence | None] = ContextVar("calhub_fence", default=None)


@contextmanager
def fenced(fence: Fence) -> Iterator[None]:
    """Fence every write transaction opened in this context by ``fence``."""
    token = _FENCE.set(fence)
    try:
        yield
    finally:
        _FENCE.reset(token)


def current_fence() -> Fence | None:
    """The fence of the running context, None outside :func:`fenced`."""
    return _FENCE.get()


__all__ = ["Fence", "LeaseLost", "LeaseRound", "Leases", "current_fence", "fenced"]
