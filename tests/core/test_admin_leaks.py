"""What the admin endpoint must not give away: which agents exist (to a caller without the
admin token), a feed to an empty token, and links built from a Host header a client chose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from hub.admin.agents import feed_url
from hub.config import AdminSettings
from hub.model import Agent
from tests.core.admin_support import TOKEN, Api, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        yield api


async def test_unknown_agent_and_bad_feed_token_answer_alike(api: Api) -> None:
    """Without the admin token, nothing in the answer tells an id that exists from one
    that does not."""
    for query in ("?token=guess", "?token=", ""):
        known = await api.call("GET", f"/agents/alice/calendar.ics{query}", token=None)
        ghost = await api.call("GET", f"/agents/ghost/calendar.ics{query}", token=None)
        assert known.status == ghost.status == 401, (query, known.text, ghost.text)
        assert known.json == ghost.json, query
        assert known.headers.get("WWW-Authenticate") == ghost.headers.get("WWW-Authenticate")
    # A caller holding the admin token may know which agents exist.
    assert (await api.call("GET", "/agents/ghost/calendar.ics")).status == 404


async def _no_feed_token(api: Api, agent_id: str) -> None:
    agent = await api.store.get_agent(agent_id)
    assert agent is not None
    async with api.store.transaction("api") as tx:
        await tx.put_agent(replace(agent, feed_token=""))


@pytest.mark.parametrize("admin_token", [TOKEN, None], ids=["admin-token", "open-api"])
@pytest.mark.parametrize("feed_token", [True, False], ids=["feed-token", "no-feed-token"])
async def test_an_empty_token_never_opens_a_feed(
    tmp_path: Path, admin_token: str | None, feed_token: bool
) -> None:
    async with running_api(tmp_path / "hub.db", token=admin_token) as api:
        if not feed_token:
            await _no_feed_token(api, "alice")
        for query in ("?token=", "?token=%20", "?token"):
            reply = await api.call("GET", f"/agents/alice/calendar.ics{query}", token=None)
            assert reply.status == 401, (query, reply.text)
            # Not even next to a valid admin bearer token: a token given is judged.
            reply = await api.call("GET", f"/agents/alice/calendar.ics{query}")
            assert reply.status == 401, (query, reply.text)


def _agent() -> Agent:
    return Agent(id="alice", name="Alice", feed_token="tok-1")


@pytest.mark.parametrize(
    ("admin", "expected"),
    [
        (AdminSettings(), "http://127.0.0.1:8765/agents/alice/calendar.ics?token=tok-1"),
        (AdminSettings(listen="[::1]:9000"), "http://[::1]:9000/agents/alice/calendar.ics?token=tok-1"),
        (AdminSettings(listen="0.0.0.0:8765"), "/agents/alice/calendar.ics?token=tok-1"),
        (AdminSettings(listen="[::]:8765"), "/agents/alice/calendar.ics?token=tok-1"),
        (AdminSettings(listen="127.0.0.1:0"), "/agents/alice/calendar.ics?token=tok-1"),
        (
            AdminSettings(listen="0.0.0.0:8765", public_url="https://cal.example.com/calhub/"),
            "https://cal.example.com/calhub/agents/alice/calendar.ics?token=tok-1",
        ),
    ],
)  # fmt: skip
def test_feed_url_comes_from_the_configuration(admin: AdminSettings, expected: str) -> None:
    assert feed_url(admin, _agent()) == expected


async def test_feed_url_ignores_the_host_header(tmp_path: Path) -> None:
    async with running_api(tmp_path / "hub.db") as api:
        reply = await api.call("GET", "/agents/alice", headers={"Host": "evil.example:666"})
        assert reply.status == 200
        assert "evil" not in reply.json["feed_url"]
        assert reply.json["feed_url"].startswith("http://127.0.0.1:8765/agents/alice/")
