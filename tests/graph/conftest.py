"""Fixtures for the graph365 tests: a test CA, the strict Graph fake, an opened provider, and
a hub database with two agents on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.model import Agent
from hub.spec import AccountConfig, CalendarRef
from hub.store.sqlite import SqliteStore
from plugins.graph365 import GraphProvider
from tests.fakes.graph import GraphFake
from tests.fakes.tls import TestCA
from tests.graph.helpers import ACCOUNT, Hub

MAILBOXES = ("alice@contoso.example", "bob@contoso.example")


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
async def fake(ca: TestCA) -> AsyncIterator[GraphFake]:
    async with GraphFake(ca) as server:
        for email in MAILBOXES:
            server.add_mailbox(email)
        yield server


def account_for(fake: GraphFake, name: str = "o365", **overrides: object) -> AccountConfig:
    """The account section an administrator would write, pointed at the fake."""
    options = {**fake.account_options(), "page_size": 50, **overrides}
    return AccountConfig(name=name, provider="graph365", options=options)


@pytest.fixture
async def provider(fake: GraphFake) -> AsyncIterator[GraphProvider]:
    async with GraphProvider(account_for(fake)) as prov:
        yield prov  # type: ignore[misc]


@pytest.fixture
def cal() -> CalendarRef:
    return CalendarRef(agent_id="alice", mailbox=MAILBOXES[0])


@pytest.fixture
async def hub(tmp_path: Path, fake: GraphFake, provider: GraphProvider) -> AsyncIterator[Hub]:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    agents = {}
    async with store.transaction("api") as tx:
        for agent_id, email in zip(("alice", "bob"), MAILBOXES, strict=True):
            agents[agent_id] = await tx.put_agent(
                Agent(id=agent_id, name=agent_id.title(), email=email, account=ACCOUNT)
            )
    bench = Hub(store, provider, fake, tmp_path / "hub.db", agents)
    yield bench
    await bench.store.close()
