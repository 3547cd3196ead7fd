"""The provider conformance suite against two real CalDAV servers: Radicale and Xandikos.

Both run behind the counting proxy so the suite can check request budgets at the server side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.spec import CalendarRef
from hub.testing.conformance import DEFAULT_FIELDS, ProviderConformance
from plugins.caldav.provider import CalDAVProvider
from tests.caldav.conftest import account, cal_for
from tests.caldav.proxy import DavProxy
from tests.caldav.servers import DavServer, Phone, make_calendar

# Every EventData field the CalDAV mapping carries, not just the contract's minimum.
ALL_FIELDS = (
    *DEFAULT_FIELDS,
    "show_as",
    "reminder_minutes",
    "categories",
    "colour",
)


class CountingPhone(Phone):
    """The phone backdoor plus the proxy's request count."""

    def __init__(self, server: DavServer, user: str, collection: str, proxy: DavProxy) -> None:
        super().__init__(server, user, collection)
        self.proxy = proxy

    async def request_count(self) -> int:
        return self.proxy.requests


class _CalDAVConformance(ProviderConformance):
    """The suite wired to one CalDAV server (a subclass names it through ``server``).

    The listing carries hub ids (the contract's default). An unchanged calendar costs one
    request (its ctag) once a listing confirmed that ctag; the first incremental fetch after a
    full one is that confirmation, ctag and sync-collection: 2 requests, checked at the proxy.
    """

    no_change_fetch_requests = 2

    round_trip_fields = ALL_FIELDS
    user = "alice"

    @pytest.fixture
    def server(self) -> DavServer:
        raise NotImplementedError

    @pytest.fixture
    async def proxy(self, server: DavServer) -> AsyncIterator[DavProxy]:
        proxy = DavProxy(server.url)
        await proxy.start()
        yield proxy
        await proxy.stop()

    @pytest.fixture
    async def collection(self, server: DavServer) -> str:
        return await make_calendar(server, self.user)

    @pytest.fixture
    async def provider(self, proxy: DavProxy) -> AsyncIterator[CalDAVProvider]:
        async with CalDAVProvider(account(proxy.url)) as provider:
            yield provider

    @pytest.fixture
    def cal(self, collection: str) -> CalendarRef:
        return cal_for(collection)

    @pytest.fixture
    def missing_cal(self, collection: str) -> CalendarRef:
        # A calendar address is a collection path: a sibling of the agent's that was never
        # made (the suite's default name would sit outside the user's home).
        return cal_for(collection.rstrip("/") + "-missing/")

    @pytest.fixture
    def backdoor(self, server: DavServer, collection: str, proxy: DavProxy) -> Any:
        return CountingPhone(server, self.user, collection, proxy)


class TestRadicale(_CalDAVConformance):
    """Radicale (htpasswd users, from_file rights); it can expire a sync-token."""

    @pytest.fixture
    def server(self, radicale_server: DavServer) -> DavServer:
        return radicale_server


class TestXandikos(_CalDAVConformance):
    """Xandikos (git-backed, no auth of its own); its sync-tokens never expire."""

    @pytest.fixture
    def server(self, xandikos_server: DavServer) -> DavServer:
        return xandikos_server
