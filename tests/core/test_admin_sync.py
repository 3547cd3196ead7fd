"""Admin API end to end with the real scheduler and the memory provider: what the API does to
the hub calendar reaches the agent's external calendar (and what it holds back does not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.admin import build_app
from hub.config import AdminSettings, Config, HubSettings
from hub.metrics import Metrics
from hub.model import Agent, Policy
from hub.scheduler import Scheduler
from hub.spec import AccountConfig, CalendarRef, ProviderRegistry
from hub.store.sqlite import SqliteStore
from hub.testing.memory import MemoryProvider
from hub.testing.memory_server import MemoryServer

CAL = CalendarRef(agent_id="alice", mailbox="alice@example.com")


@dataclass
class Hub:
    client: TestClient
    server: MemoryServer

    async def call(self, method: str, path: str, body: object = None) -> dict:
        response = await self.client.request(method, path, json=body)
        assert response.status < 300, await response.text()
        return await response.json()

    async def sync(self) -> dict:
        result = await self.call("POST", "/agents/alice/sync")
        assert result["result"] == "ok", result
        return result

    def remote_subjects(self) -> list[str]:
        return sorted(e.to_remote().data.subject for e in self.server.events(CAL))


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    server = MemoryServer()
    registry = ProviderRegistry()
    registry.add(MemoryProvider)
    config = Config(
        hub=HubSettings(create_appointments=Policy.AGENT),
        admin=AdminSettings(token=None),
        accounts={"mem": AccountConfig(name="mem", provider="memory", options={"server": server})},
    )
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    async with store.transaction("config") as tx:
        await tx.put_agent(
            Agent(
                id="alice",
                name="Alice",
                email="alice@example.com",
                account="mem",
                create_appointments=Policy.ASK,
                feed_token="feed-alice",
            )
        )
    metrics = Metrics()
    try:
        async with Scheduler(store, config, registry, metrics, background=False) as scheduler:
            app = build_app(store, config, metrics, scheduler)
            async with TestClient(TestServer(app)) as client:
                yield Hub(client, server)
    finally:
        await store.close()


def soon(hours: int) -> str:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    return (start + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_ask_policy_holds_back_until_approved_then_edits_flow(hub: Hub) -> None:
    booked = await hub.call(
        "POST",
        "/requests/42/appointments",
        {"subject": "Visit", "start": soon(9), "end": soon(10), "agents": ["alice"]},
    )
    (appt,) = booked["appointments"]
    assert appt["push_state"] == "pending"
    await hub.sync()
    assert hub.remote_subjects() == []  # pending: not in the agent's calendar

    (queued,) = await hub.call("GET", "/approvals")
    await hub.call("POST", f"/approvals/{queued['id']}", {"approve": True})
    await hub.sync()
    assert hub.remote_subjects() == ["[#42] Visit"]
    shown = await hub.call("GET", f"/appointments/{appt['id']}")
    assert shown["sync"]["remote_id"] == hub.server.events(CAL)[0].remote_id

    await hub.call("PATCH", f"/appointments/{appt['id']}", {"start": soon(13)})
    await hub.sync()
    (event,) = hub.server.events(CAL)
    assert event.to_remote().data.start == datetime.fromisoformat(soon(13))

    await hub.call("DELETE", f"/appointments/{appt['id']}")
    await hub.sync()
    assert hub.remote_subjects() == []


async def test_rejected_stays_in_the_hub_calendar_only(hub: Hub) -> None:
    await hub.call(
        "PUT", "/requests/7/planned", {"agents": ["alice"], "start": soon(9), "subject": "Disk"}
    )
    (queued,) = await hub.call("GET", "/approvals")
    await hub.call("POST", f"/approvals/{queued['id']}", {"approve": False})
    await hub.sync()
    assert hub.remote_subjects() == []
    feed = await hub.client.get("/agents/alice/calendar.ics?token=feed-alice")
    assert "[#7] Disk" in await feed.text()
