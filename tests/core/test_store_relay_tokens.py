"""Relay tokens (the relay_tokens table), on both stores: only the hash is kept, a new one
replaces the old, they go with the agent, an unknown agent is refused, the log holds no hash."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from hub.model import Agent
from hub.store import ConstraintError
from hub.store.sqlite import SqliteStore


@pytest.fixture
async def store(make_store: Callable[..., SqliteStore]) -> AsyncIterator[SqliteStore]:
    async with make_store() as opened:
        async with opened.transaction("api") as tx:
            for agent_id in ("alice", "bob"):
                await tx.put_agent(Agent(id=agent_id, name=agent_id, account="outlook"))
        yield opened


async def test_a_new_token_replaces_the_old_per_agent_and_kind(store: SqliteStore) -> None:
    async with store.transaction("api") as tx:
        await tx.put_relay_token("alice", "outlook", "hash-1")
        await tx.put_relay_token("alice", "outlook", "hash-2")
        await tx.put_relay_token("alice", "other", "hash-3")
    assert await store.get_relay_token("alice", "outlook") == "hash-2"
    assert await store.get_relay_token("alice", "other") == "hash-3"
    assert await store.get_relay_token("bob", "outlook") is None
    entries = await store.list_audit()
    assert not any("hash-" in repr(entry) for entry in entries)


async def test_a_deleted_agent_takes_its_tokens_along(store: SqliteStore) -> None:
    async with store.transaction("api") as tx:
        await tx.put_relay_token("alice", "outlook", "hash-1")
    async with store.transaction("api") as tx:
        await tx.delete_agent("alice")
    assert await store.get_relay_token("alice", "outlook") is None


async def test_a_token_for_an_unknown_agent_is_refused(store: SqliteStore) -> None:
    with pytest.raises(ConstraintError, match="unknown agent 'carol'"):
        async with store.transaction("api") as tx:
            await tx.put_relay_token("carol", "outlook", "hash-1")
