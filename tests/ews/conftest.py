"""Fixtures for the exchange_ews tests: a test CA, the strict EWS fake with two mailboxes, an
opened provider, and a hub database with two agents on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.model import Agent
from hub.spec import AccountConfig, CalendarRef
from hub.store.sqlite import SqliteStore
from plugins.exchange_ews import EwsProvider
from tests.ews.helpers import ACCOUNT, MAILBOXES, Hub
from tests.fakes.ews import EwsFake
from tests.fakes.tls import TestCA


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ews-ca"))


@pytest.fixture
async def fake(ca: TestCA) -> AsyncIterator[EwsFake]:
    async with EwsFake(ca) as server:
        for address in MAILBOXES:
            server.add_mailbox(address, calendars=("Field visits",))
        yield server


def account_for(fake: EwsFake, name: str = ACCOUNT, **overrides: object) -> AccountConfig:
    """The account section an administrator would write, pointed at the fake."""
    return AccountConfig(
        name=name, provider="exchange_ews", options=fake.account_options(**overrides)
    )


@pytest.fixture
async def provider(fake: EwsFake) -> AsyncIterator[EwsProvider]:
    async with EwsProvider(account_for(fake)) as prov:
        yield prov  # type: ignore[misc]


@pytest.fixture
def cal() -> CalendarRef:
    return CalendarRef(agent_id="alice", mailbox=MAILBOXES[0])


@pytest.fixture
async def hub(tmp_path: Path, fake: EwsFake, provider: EwsProvider) -> AsyncIterator[Hub]:
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
