"""Fixtures for the google tests: a test CA, the strict Google fake with two Workspace users,
a service-account key on disk, an opened provider, and a hub database with both agents."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.model import Agent
from hub.spec import AccountConfig, CalendarRef, account_config
from hub.store.sqlite import SqliteStore
from plugins.google import GoogleProvider
from tests.fakes.google import GoogleFake
from tests.fakes.tls import TestCA
from tests.google.helpers import ACCOUNT, Hub

USERS = ("alice@acme.example", "bob@acme.example")


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
async def fake(ca: TestCA) -> AsyncIterator[GoogleFake]:
    async with GoogleFake(ca) as server:
        for email in USERS:
            server.add_user(email)
        yield server


@pytest.fixture
def key_file(tmp_path: Path, fake: GoogleFake) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(fake.service_account_key()))
    return path


def account_for(
    fake: GoogleFake, key_file: Path | None, name: str = ACCOUNT, **overrides: object
) -> AccountConfig:
    """The account section an administrator would write, pointed at the fake."""
    options: dict[str, object] = {"base_url": fake.url, "ca_file": str(fake.ca.ca_file)}
    if key_file is not None:
        options["service_account_file"] = str(key_file)
    options.update(overrides)
    return account_config(GoogleProvider, name, options)  # defaults and check_options applied


@pytest.fixture
async def provider(fake: GoogleFake, key_file: Path) -> AsyncIterator[GoogleProvider]:
    async with GoogleProvider(account_for(fake, key_file)) as prov:
        yield prov  # type: ignore[misc]


@pytest.fixture
def cal() -> CalendarRef:
    return CalendarRef(agent_id="alice", mailbox=USERS[0])


@pytest.fixture
async def hub(tmp_path: Path, fake: GoogleFake, provider: GoogleProvider) -> AsyncIterator[Hub]:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    agents = {}
    async with store.transaction("api") as tx:
        for agent_id, email in zip(("alice", "bob"), USERS, strict=True):
            agents[agent_id] = await tx.put_agent(
                Agent(id=agent_id, name=agent_id.title(), email=email, account=ACCOUNT)
            )
    bench = Hub(store, provider, fake, tmp_path / "hub.db", agents)
    yield bench
    await bench.store.close()
