"""What the next sync pass would write from the hub side: a dry run of the real reconcile.

``GET /agents/{id}/status`` reports pending creates, updates and deletes. Rather than a
second copy of the reconcile rules, :func:`preview` reads the hub side exactly as a pass does
(:class:`hub.sync_read.HubReader`) and runs :func:`hub.reconcile.reconcile` as if the
provider had reported no change and every lookup had come back empty. It never calls the
provider and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.config import HubSettings
from hub.model import Agent
from hub.plan import Plan
from hub.reconcile import ReconcileInput, reconcile
from hub.spec import FetchResult
from hub.store.base import Store
from hub.sync_read import HubReader
from hub.window import sync_window


@dataclass(frozen=True, slots=True)
class Pending:
    """What the next pass would send to the agent's calendar."""

    creates: int = 0
    updates: int = 0
    deletes: int = 0

    @classmethod
    def of(cls, plan: Plan) -> Pending:
        creates = sum(1 for push in plan.pushes if push.is_create)
        return cls(creates, len(plan.pushes) - creates, len(plan.remote_deletes))


async def preview(
    store: Store, settings: HubSettings, agent: Agent, now: datetime, *, read_only: bool = False
) -> Plan:
    """The plan a pass of ``agent`` would make now if its calendar reported no change."""
    if agent.account is None:
        return Plan()
    window = sync_window(now, settings.days_past, settings.days_future)
    statuses = await store.list_status(agent.id, agent.account)
    nothing = FetchResult()  # an incremental fetch that saw no change
    hub = HubReader(store, agent, settings, window)
    appts = await hub.load(statuses, nothing, ())
    import_on = settings.import_external if agent.import_external is None else agent.import_external
    inp = ReconcileInput(
        agent=agent,
        account=agent.account,
        window=window,
        now=now,
        appointments=appts,
        statuses=statuses,
        fetch=nothing,
        render=await hub.renderer(appts.values()),
        import_external=import_on,
        conflict=settings.conflict,
        remote_delete=settings.remote_delete,
        read_only=read_only,
        # Asked of the provider by a real pass; here: nothing found, nothing looked up.
        looked_up={},
        found={},
    )
    return reconcile(inp)


async def pending(store: Store, settings: HubSettings, agent: Agent, now: datetime) -> Pending:
    """The creates, updates and deletes the next pass of ``agent`` would send."""
    return Pending.of(await preview(store, settings, agent, now))


__all__ = ["Pending", "pending", "preview"]
