"""Fixtures of the CalDAV tests: the real servers (once per session), a fresh calendar per
test, a counting proxy in front, and providers connected through it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from hub.spec import AccountConfig, CalendarRef
from plugins.caldav.provider import CalDAVProvider
from tests.caldav.proxy import DavProxy
from tests.caldav.servers import USERS, DavServer, Phone, make_calendar, radicale, xandikos


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    with radicale(tmp_path_factory.mktemp("radicale")) as server:
        yield server


@pytest.fixture(scope="session")
def xandikos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    with xandikos(tmp_path_factory.mktemp("xandikos")) as server:
        yield server


def basic(user: str) -> str:
    return aiohttp.encode_basic_auth(user, USERS[user])


@pytest.fixture
async def radicale_proxy(radicale_server: DavServer) -> AsyncIterator[DavProxy]:
    proxy = DavProxy(radicale_server.url)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def radicale_collection(radicale_server: DavServer) -> str:
    """A fresh, empty calendar collection of alice (its URL on the server itself)."""
    return await make_calendar(radicale_server, "alice")


def account(url: str, **options: Any) -> AccountConfig:
    opts = {"url": url, "username": "alice", "password": USERS["alice"], **options}
    return AccountConfig("dav", "caldav", {k: v for k, v in opts.items() if v is not None})


def cal_for(collection_url: str) -> CalendarRef:
    """The agent calendar of a collection, given as a path relative to the account URL."""
    return CalendarRef("alice", "alice@example.com", urlsplit(collection_url).path)


@pytest.fixture
async def dav(radicale_proxy: DavProxy) -> AsyncIterator[CalDAVProvider]:
    """A provider for alice, talking to Radicale through the counting proxy."""
    async with CalDAVProvider(account(radicale_proxy.url)) as provider:
        yield provider


@pytest.fixture
def phone(radicale_server: DavServer, radicale_collection: str) -> Phone:
    return Phone(radicale_server, "alice", radicale_collection)
