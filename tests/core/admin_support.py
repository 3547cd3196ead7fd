"""Test support for the admin endpoint: a running app on a real SqliteStore, and a fake
scheduler. Each test module wraps :func:`running_api` in its own fixture."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from hub.admin import build_app
from hub.admin.httplog import server_options
from hub.config import AdminSettings, Config, HubSettings
from hub.metrics import Metrics
from hub.model import Agent, Appointment, Kind, PassResult, PushState
from hub.spec import AccountConfig
from hub.store.base import Store
from hub.store.sqlite import SqliteStore

TOKEN = "admin-secret-token"
DEFAULT = object()  # "use the Api's token" / "send no body"


@dataclass
class FakeControl:
    """A :class:`hub.control.SyncControl` that records what it was asked."""

    synced: list[tuple[str, bool]] = field(default_factory=list)
    triggered: list[str] = field(default_factory=list)

    def trigger(self, agent_id: str) -> None:
        self.triggered.append(agent_id)

    async def sync_now(self, agent_id: str, *, allow_empty: bool = False) -> PassResult:
        self.synced.append((agent_id, allow_empty))
        at = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
        return PassResult(
            agent_id, "o365", "ok", counts={"pushed": 2}, requests=3, started_at=at, finished_at=at
        )

    def agent_status(self, agent_id: str) -> dict[str, Any]:
        return {"running": False, "queued": agent_id in self.triggered, "next_run": None}


@dataclass
class Reply:
    status: int
    text: str
    headers: CIMultiDictProxy[str]

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Api:
    """The client of a running admin app, its store, and the database file for row counts."""

    client: TestClient
    store: SqliteStore
    db_path: Path
    token: str | None
    metrics: Metrics

    async def call(
        self,
        method: str,
        path: str,
        body: Any = DEFAULT,
        *,
        token: Any = DEFAULT,
        raw: bytes | str | io.BytesIO | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        bearer = self.token if token is DEFAULT else token
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        data = raw
        if body is not DEFAULT:
            data = json.dumps(body)
            sent["Content-Type"] = "application/json"
        response = await self.client.request(method, path, data=data, headers=sent)
        return Reply(response.status, await response.text(), response.headers)

    def table_counts(self) -> dict[str, int]:
        """Rows per table (audit included): equal before and after means nothing was written."""
        with sqlite3.connect(self.db_path) as db:
            tables = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            ]
            return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


async def add_external(store: Store, start: datetime) -> Appointment:
    """Store an imported (external, read-only) appointment "ext1" in alice's calendar, as
    sync would."""
    ext = Appointment(
        id="ext1",
        agent_id="alice",
        kind=Kind.EXTERNAL,
        start=start,
        end=start + timedelta(hours=1),
        subject="Dentist",
        push_state=PushState.EXTERNAL,
    )
    async with store.transaction("sync:o365") as tx:
        return await tx.put_appointment(ext)


ACCOUNTS = {"o365": AccountConfig(name="o365", provider="memory", options={})}


@asynccontextmanager
async def running_api(
    db_path: Path,
    *,
    settings: HubSettings | None = None,
    token: str | None = TOKEN,
    control: FakeControl | None = None,
    public_url: str = "",
) -> AsyncIterator[Api]:
    """The admin app over a fresh store with agents alice (account o365) and bob (none)."""
    store = SqliteStore(db_path)
    await store.open()
    async with store.transaction("config") as tx:
        await tx.put_agent(
            Agent(id="alice", name="Alice Smith", account="o365", feed_token="feed-alice")
        )
        await tx.put_agent(Agent(id="bob", name="Bob Jones", feed_token="feed-bob"))
    config = Config(
        hub=settings or HubSettings(),
        admin=AdminSettings(token=token, public_url=public_url),
        accounts=ACCOUNTS,
    )
    metrics = Metrics()
    app = build_app(store, config, metrics, control)
    try:
        server = TestServer(app)
        await server.start_server(**server_options())  # the logging `calhub serve` uses
        async with TestClient(server) as client:
            yield Api(client, store, db_path, token, metrics)
    finally:
        await store.close()
