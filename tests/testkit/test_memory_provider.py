"""The memory provider passes the provider conformance suite (and so keeps the suite honest:
every test in it must pass against the reference implementation)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.spec import AccountConfig, CalendarRef
from hub.testing.conformance import ProviderConformance
from hub.testing.memory import MemoryBackdoor, MemoryProvider, MemoryServer


@pytest.fixture
def server() -> MemoryServer:
    # Calendars exist only once added (a real server's behaviour): the suite checks that a
    # missing one is NotFoundError.
    return MemoryServer(auto_create=False)


class TestMemoryProvider(ProviderConformance):
    @pytest.fixture
    async def provider(self, server: MemoryServer) -> AsyncIterator[MemoryProvider]:
        async with MemoryProvider(AccountConfig("mem", "memory", {"server": server})) as p:
            yield p

    @pytest.fixture
    def cal(self, server: MemoryServer) -> CalendarRef:
        ref = CalendarRef("alice", "alice@example.com", "work")
        server.add_calendar(ref)
        return ref

    @pytest.fixture
    def backdoor(self, server: MemoryServer) -> MemoryBackdoor:
        return MemoryBackdoor(server)


class TestMemoryProviderSmallBatches(TestMemoryProvider):
    """max_batch is an option: the suite adapts the batch test to it (and skips it at 1)."""

    @pytest.fixture
    async def provider(self, server: MemoryServer) -> AsyncIterator[MemoryProvider]:
        options = {"server": server, "max_batch": 1}
        async with MemoryProvider(AccountConfig("mem", "memory", options)) as p:
            yield p
