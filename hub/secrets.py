"""Per-agent provider secrets in the hub's database: :class:`hub.spec.AgentSecrets` on a store.

What a provider keeps this way (an OAuth refresh token from ``calhub authorize``) lives in the
``agent_secrets`` table only: never in the config file, a log line, an API response or a
calendar state row, and it goes with the agent when the agent is deleted.
"""

from __future__ import annotations

from hub.store.base import Store


class StoreSecrets:
    """The secrets of the agents of one account, read and written through ``store``."""

    def __init__(self, store: Store, account: str) -> None:
        self.store = store
        self.account = account

    async def get(self, agent_id: str) -> str | None:
        return await self.store.get_agent_secret(agent_id, self.account)

    async def put(self, agent_id: str, secret: str) -> None:
        async with self.store.transaction("authorize") as tx:
            await tx.put_agent_secret(agent_id, self.account, secret)

    def __repr__(self) -> str:
        return f"StoreSecrets(account={self.account!r})"  # never the values
