"""Admin API: /agents routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.model import Agent
from tests.core.admin_support import Api, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        yield api


async def test_create_get_list(api: Api) -> None:
    created = await api.call(
        "POST",
        "/agents",
        {
            "id": "dave",
            "name": "Dave",
            "email": "dave@example.com",
            "account": "o365",
            "create_appointments": "ask",
            "import_external": True,
            "colour": "#3a87ad",
        },
    )
    assert created.status == 201, created.text
    body = created.json
    assert (body["id"], body["account"], body["effective_policy"]) == ("dave", "o365", "always")
    assert len(body["feed_token"]) >= 32
    assert body["feed_url"].endswith(f"/agents/dave/calendar.ics?token={body['feed_token']}")

    got = await api.call("GET", "/agents/dave")
    assert got.status == 200 and got.json == body
    listed = await api.call("GET", "/agents")
    assert [a["id"] for a in listed.json] == ["alice", "bob", "dave"]
    assert all("feed_token" not in a for a in listed.json)


async def test_name_defaults_to_the_id(api: Api) -> None:
    created = await api.call("POST", "/agents", {"id": "eve"})
    assert created.status == 201 and created.json["name"] == "eve"


async def test_each_agent_gets_its_own_feed_token(api: Api) -> None:
    one = (await api.call("POST", "/agents", {"id": "a1"})).json["feed_token"]
    two = (await api.call("POST", "/agents", {"id": "a2"})).json["feed_token"]
    assert one != two


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"id": "alice"}, 409, "id"),
        ({"name": "No id"}, 422, "id"),
        ({"id": "x y"}, 422, "id"),
        ({"id": "ok", "account": "o356"}, 422, "account"),
        ({"id": "ok", "colour": "red"}, 422, "colour"),
        ({"id": "ok", "name": 5}, 422, "name"),
        ({"id": "ok", "import_external": "yes"}, 422, "import_external"),
        ({"id": "ok", "create_appointments": "agent"}, 422, "create_appointments"),
        ({"id": "ok", "email": "not an address"}, 422, "email"),
        ({"id": "ok", "feed_token": "mine"}, 422, "feed_token"),
    ],
)
async def test_create_refusals_name_the_field_and_write_nothing(
    api: Api, body: dict, status: int, field: str
) -> None:
    before = api.table_counts()
    reply = await api.call("POST", "/agents", body)
    assert (reply.status, reply.json.get("field")) == (status, field), reply.text
    assert reply.json["error"]
    assert api.table_counts() == before


async def test_unknown_account_lists_the_known_ones(api: Api) -> None:
    reply = await api.call("POST", "/agents", {"id": "ok", "account": "o356"})
    assert "o356" in reply.json["error"] and "o365" in reply.json["error"]


async def test_patch_changes_and_clears_fields(api: Api) -> None:
    reply = await api.call(
        "PATCH", "/agents/alice", {"name": "Alice S.", "create_appointments": "never"}
    )
    assert reply.status == 200, reply.text
    assert (reply.json["name"], reply.json["create_appointments"]) == ("Alice S.", "never")
    reply = await api.call("PATCH", "/agents/alice", {"account": None})
    assert reply.status == 200 and reply.json["account"] is None
    stored = await api.store.get_agent("alice")
    assert stored is not None and stored.account is None and stored.name == "Alice S."


async def test_rotating_the_feed_token(api: Api) -> None:
    old = (await api.call("GET", "/agents/alice")).json["feed_token"]
    reply = await api.call("PATCH", "/agents/alice", {"rotate_feed_token": True})
    new = reply.json["feed_token"]
    assert reply.status == 200 and new != old
    feed = "/agents/alice/calendar.ics?token="
    assert (await api.call("GET", feed + old, token=None)).status == 401
    assert (await api.call("GET", feed + new, token=None)).status == 200


async def test_patch_refusals(api: Api) -> None:
    before = api.table_counts()
    assert (await api.call("PATCH", "/agents/nobody", {"name": "x"})).status == 404
    reply = await api.call("PATCH", "/agents/alice", {"account": "nope"})
    assert (reply.status, reply.json["field"]) == (422, "account")
    reply = await api.call("PATCH", "/agents/alice", {"id": "renamed"})
    assert (reply.status, reply.json["field"]) == (422, "id")
    assert api.table_counts() == before


async def test_config_agents_are_edited_in_the_file(api: Api) -> None:
    async with api.store.transaction("config") as tx:
        await tx.put_agent(
            Agent(id="cfg", name="From file", feed_token="feed-cfg", source="config")
        )
    reply = await api.call("PATCH", "/agents/cfg", {"name": "x"})
    assert (reply.status, reply.json["field"]) == (409, "name")
    assert (await api.call("DELETE", "/agents/cfg")).status == 409
    rotated = await api.call("PATCH", "/agents/cfg", {"rotate_feed_token": True})
    assert rotated.status == 200 and rotated.json["feed_token"] != "feed-cfg"


async def test_delete(api: Api) -> None:
    assert (await api.call("DELETE", "/agents/bob")).status == 204
    assert (await api.call("GET", "/agents/bob")).status == 404
    assert (await api.call("DELETE", "/agents/bob")).status == 404
    assert await api.store.get_agent("bob") is None


async def test_racing_creates_of_one_id_make_one_agent(api: Api) -> None:
    replies = await asyncio.gather(
        *(api.call("POST", "/agents", {"id": "twin", "name": f"n{n}"}) for n in range(4))
    )
    assert sorted(r.status for r in replies) == [201, 409, 409, 409]
    (won,) = [r.json for r in replies if r.status == 201]
    stored = await api.store.get_agent("twin")
    assert stored is not None
    assert (stored.name, stored.feed_token) == (won["name"], won["feed_token"])


async def test_dropping_the_account_purges_tombstones_sync_would_have_carried_out(
    api: Api,
) -> None:
    made = await api.call("POST", "/agents", {"id": "dave", "account": "o365"})
    assert made.status == 201, made.text
    booked = await api.call(
        "POST",
        "/requests/R1/appointments",
        {
            "subject": "Visit",
            "start": "2026-05-04T09:00:00Z",
            "end": "2026-05-04T10:00:00Z",
            "agents": ["dave"],
        },
    )
    appt_id = booked.json["appointments"][0]["id"]
    assert (await api.call("DELETE", f"/appointments/{appt_id}")).status == 200
    assert await api.store.get_appointment(appt_id, include_deleted=True) is not None

    dropped = await api.call("PATCH", "/agents/dave", {"account": None})

    assert dropped.status == 200, dropped.text
    assert dropped.json["account"] is None
    assert await api.store.get_appointment(appt_id, include_deleted=True) is None
