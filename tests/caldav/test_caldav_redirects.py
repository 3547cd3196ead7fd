"""CalDAV credentials never follow a redirect to another origin.

A server (or anyone able to answer for it) that redirects a PROPFIND to another host must
not receive the account's password or token there: the client follows the redirect, as
WebDAV methods need, but sends Authorization only to the account's own origin and those
its discovery trusted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.spec import NullTelemetry
from plugins.caldav.client import Credentials, DavClient


@dataclass
class Seen:
    """The Authorization header of each request a server received, by path."""

    auth: dict[str, str | None] = field(default_factory=dict)


def _app(seen: Seen, redirects: dict[str, str]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        seen.auth[request.path] = request.headers.get("Authorization")
        target = redirects.get(request.path)
        if target is not None:
            return web.Response(status=307, headers={"Location": target})
        return web.Response(status=207, body=b"<multistatus xmlns='DAV:'/>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def servers() -> AsyncIterator[tuple[TestServer, Seen, TestServer, Seen]]:
    """The account's server and a stranger's (another port: another origin)."""
    stranger_seen = Seen()
    stranger = TestServer(_app(stranger_seen, {}))
    await stranger.start_server()
    home_seen = Seen()
    redirects = {
        "/dav/away/": str(stranger.make_url("/loot/")),
        "/dav/moved/": "/dav/here/",  # same origin: credentials go along
    }
    home = TestServer(_app(home_seen, redirects))
    await home.start_server()
    yield home, home_seen, stranger, stranger_seen
    await home.close()
    await stranger.close()


@pytest.mark.parametrize(
    ("credentials", "header"),
    [
        (Credentials(username="calhub", password="s3cret"), "Basic Y2FsaHViOnMzY3JldA=="),
        (Credentials(token="bearer-s3cret"), "Bearer bearer-s3cret"),
    ],
)
async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    servers: tuple[TestServer, Seen, TestServer, Seen], credentials: Credentials, header: str
) -> None:
    home, home_seen, stranger, stranger_seen = servers
    client = DavClient(
        str(home.make_url("/dav/")), credentials, account="phones", telemetry=NullTelemetry()
    )
    try:
        away = await client.request("PROPFIND", str(home.make_url("/dav/away/")), operation="t")
        moved = await client.request("PROPFIND", str(home.make_url("/dav/moved/")), operation="t")
    finally:
        await client.close()
    assert away.status == moved.status == 207
    assert away.url.startswith(str(stranger.make_url("/loot/")))
    assert stranger_seen.auth == {"/loot/": None}  # followed, without the credentials
    assert home_seen.auth == {"/dav/away/": header, "/dav/moved/": header, "/dav/here/": header}


def test_two_agents_on_one_caldav_account_default_calendar_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """CalDAV ignores the agent's email: without a calendar key, both agents would sync
    the account principal's default calendar."""
    from hub.config import ConfigError, load_config
    from hub.plugins import load_plugins

    path = tmp_path / "calhub.toml"
    path.write_text(
        '[accounts.phones]\nprovider = "caldav"\nurl = "https://dav.example/"\n'
        'username = "calhub"\n'
        '[[agents]]\nid = "alice"\nemail = "alice@x.com"\naccount = "phones"\n'
        '[[agents]]\nid = "bob"\nemail = "bob@x.com"\naccount = "phones"\n',
        encoding="utf-8",
    )
    registry = load_plugins({}).registry
    with pytest.raises(ConfigError) as info:
        load_config(path, registry, {})
    assert info.value.problems == [
        "agents[1].calendar: agents 'alice' and 'bob' would both sync the account's default "
        "calendar of account 'phones'; give one of them its own calendar (or mailbox)"
    ]
    path.write_text(path.read_text() + 'calendar = "bob/calendar/"\n', encoding="utf-8")
    assert len(load_config(path, registry, {}).agents) == 2
