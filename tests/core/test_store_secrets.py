"""Per-agent provider secrets (the agent_secrets table) and StoreSecrets, the view of them a
provider gets: kept per agent and account, replaced, gone with the agent, never in a repr."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from hub.model import Agent
from hub.secrets import StoreSecrets
from hub.store import ConstraintError
from hub.store.sqlite import SqliteStore


@pytest.fixture
async def store(make_store: Callable[..., SqliteStore]) -> AsyncIterator[SqliteStore]:
    async with make_store() as opened:
        async with opened.transaction("api") as tx:
            for agent_id in ("alice", "bob"):
                await tx.put_agent(Agent(id=agent_id, name=agent_id, account="shop"))
        yield opened


async def test_secrets_are_per_agent_and_account_and_replaced(store: SqliteStore) -> None:
    shop, other = StoreSecrets(store, "shop"), StoreSecrets(store, "other")
    await shop.put("alice", "1//first")
    await shop.put("alice", "1//second")
    await other.put("alice", "1//elsewhere")
    assert await shop.get("alice") == "1//second"
    assert await other.get("alice") == "1//elsewhere"
    assert await shop.get("bob") is None
    assert "1//" not in repr(shop)


async def test_a_deleted_agent_takes_its_secrets_along(store: SqliteStore) -> None:
    await StoreSecrets(store, "shop").put("alice", "1//token")
    async with store.transaction("api") as tx:
        await tx.delete_agent("alice")
    assert await store.get_agent_secret("alice", "shop") is None


async def test_a_secret_for_an_unknown_agent_is_refused(store: SqliteStore) -> None:
    with pytest.raises(ConstraintError, match="unknown agent 'carol'"):
        await StoreSecrets(store, "shop").put("carol", "1//token")
