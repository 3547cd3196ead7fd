"""Support shared by the providers' end-to-end tests: one pass of the real engine with its
back-off waits recorded instead of slept, and a booked (C) appointment with its request."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.backoff import RetryPolicy
from hub.config import HubSettings
from hub.model import Agent, Appointment, Kind, PassResult, Request
from hub.spec import Provider
from hub.store.base import Store
from hub.sync import AgentSync

TEST_RETRY = RetryPolicy(attempts=4, base=0.5, cap=4.0)


def hour(days: int, at: int = 10) -> datetime:
    """``at`` o'clock UTC, ``days`` days from today."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=at)


async def run_pass(
    store: Store,
    provider: Provider,
    account: str,
    settings: HubSettings,
    agent: Agent,
    waits: list[float],
    *,
    allow_empty: bool = False,
    **changes: Any,
) -> PassResult:
    """One AgentSync pass of ``agent``; ``changes`` override ``settings``."""

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    engine = AgentSync(
        store, provider, account, replace(settings, **changes), sleep=sleep,
        retry_policy=TEST_RETRY,
    )  # fmt: skip
    return await engine.run(agent, allow_empty=allow_empty)


async def book(
    store: Store, n: int, agent_id: str, start: datetime, subject: str, **extra: Any
) -> Appointment:
    """Appointment ``appt-<n>`` (kind manual, one hour) against its own request ``R<n>``."""
    request = Request(id=f"R{n}", subject=f"Printer {n}", customer="ACME")
    appt = Appointment(
        id=f"appt-{n}", agent_id=agent_id, kind=Kind.MANUAL, start=start,
        end=start + timedelta(hours=1), subject=subject, request_id=request.id, **extra,
    )  # fmt: skip
    async with store.transaction("api") as tx:
        await tx.put_request(request)
        return await tx.put_appointment(appt)
