"""What the admin endpoint and the command line may ask of the sync scheduler.

A Protocol, so that the admin endpoint can be built and tested without the scheduler (the
embedded default has no accounts) and the scheduler without the endpoint.
"""

from __future__ import annotations

from typing import Any, Protocol

from hub.model import PassResult


class SyncControl(Protocol):
    """Implemented by :class:`hub.scheduler.Scheduler`."""

    def trigger(self, agent_id: str) -> None:
        """Ask for a pass of this agent soon (debounced, within about a second)."""

    async def sync_now(self, agent_id: str, *, allow_empty: bool = False) -> PassResult:
        """Run a pass of this agent now and return its result (waits for one in flight).
        ``allow_empty`` overrides the "remote calendar suddenly empty" stop once."""

    def agent_status(self, agent_id: str) -> dict[str, Any]:
        """Live scheduler facts for /agents/{id}/status: running, queued, next_run (ISO)."""
