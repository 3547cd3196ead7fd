"""Admin API: /appointments and /approvals routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.config import HubSettings
from hub.model import Policy, PushState, SyncStatus
from tests.core.admin_support import Api, add_external, running_api

T9 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        yield api


async def book(api: Api, start: str, end: str, agents: list[str], **extra: Any) -> list[dict]:
    body = {"subject": "Visit", "start": start, "end": end, "agents": agents, **extra}
    reply = await api.call("POST", "/requests/42/appointments", body)
    assert reply.status == 201, reply.text
    return reply.json["appointments"]


# --------------------------------------------------------------------------- reading


async def test_list_filters_by_agent_and_overlap(api: Api) -> None:
    (a1,) = await book(api, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["alice"])
    (a2,) = await book(api, "2026-05-05T09:00:00Z", "2026-05-05T10:00:00Z", ["alice"])
    (b1,) = await book(api, "2026-05-04T09:30:00Z", "2026-05-04T10:30:00Z", ["bob"])

    async def ids(query: str) -> list[str]:
        reply = await api.call("GET", "/appointments" + query)
        assert reply.status == 200, reply.text
        return [a["id"] for a in reply.json]

    assert await ids("") == [a1["id"], b1["id"], a2["id"]]
    assert await ids("?agent=alice") == [a1["id"], a2["id"]]
    # Overlap, not containment: [09:45, 10:15) touches a1 and b1.
    assert await ids("?from=2026-05-04T09:45:00Z&to=2026-05-04T10:15:00Z") == [a1["id"], b1["id"]]
    assert await ids("?agent=bob&from=2026-05-05") == []
    # An unencoded "+" arrives as a space; the offset still counts.
    assert await ids("?from=2026-05-05T11:00:00+02:00&agent=alice") == [a2["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?agent=ghost", "agent"),
        ("?from=yesterday", "from"),
        ("?from=2026-05-04T09:00:00", "from"),
        ("?from=2026-05-05T00:00:00Z&to=2026-05-04T00:00:00Z", "to"),
        ("?colour=red", "colour"),
        ("?agent=alice&agent=bob", "agent"),
    ],
)
async def test_list_refusals(api: Api, query: str, field: str) -> None:
    reply = await api.call("GET", "/appointments" + query)
    assert (reply.status, reply.json.get("field")) == (422, field), reply.text


async def test_get_one_with_sync_status(api: Api) -> None:
    (appt,) = await book(api, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["alice"])
    reply = await api.call("GET", f"/appointments/{appt['id']}")
    assert reply.status == 200 and reply.json["sync"] is None
    assert reply.json["display_subject"] == "[#42] Visit"
    async with api.store.transaction("sync:o365") as tx:
        await tx.put_status(
            SyncStatus("alice", appt["id"], "o365", "remote-1", "v1", "h", "h", state="synced")
        )
    reply = await api.call("GET", f"/appointments/{appt['id']}")
    assert reply.json["sync"]["remote_id"] == "remote-1"
    assert reply.json["sync"]["state"] == "synced"
    assert (await api.call("GET", "/appointments/nope")).status == 404


# --------------------------------------------------------------------------- editing


async def test_patch_moves_and_resizes(api: Api) -> None:
    (appt,) = await book(api, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["alice"])
    path = f"/appointments/{appt['id']}"
    moved = await api.call("PATCH", path, {"start": "2026-05-04T13:00:00+02:00"})
    assert moved.status == 200, moved.text
    assert (moved.json["start"], moved.json["end"]) == (
        "2026-05-04T11:00:00Z",
        "2026-05-04T12:00:00Z",
    )
    resized = await api.call("PATCH", path, {"end": "2026-05-04T12:30:00Z", "location": "Lab"})
    assert (resized.json["end"], resized.json["location"]) == ("2026-05-04T12:30:00Z", "Lab")
    assert resized.json["version"] == appt["version"] + 2


async def test_patch_subject_clears_the_remote_edit(api: Api) -> None:
    (appt,) = await book(api, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["alice"])
    stored = await api.store.get_appointment(appt["id"])
    assert stored is not None
    async with api.store.transaction("sync:o365") as tx:
        await tx.put_appointment(stored.evolve(subject_override="Changed in Outlook"))
    shown = await api.call("GET", f"/appointments/{appt['id']}")
    assert shown.json["display_subject"] == "Changed in Outlook"
    patched = await api.call("PATCH", f"/appointments/{appt['id']}", {"subject": "Visit 2"})
    assert patched.json["display_subject"] == "[#42] Visit 2"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"end": "2026-05-04T08:00:00Z"}, 422, "end"),
        ({"start": "2026-05-04"}, 422, "end"),  # all-day needs an end too
        ({"agent": "nobody"}, 422, "agent"),  # reassign to an agent that does not exist
        ({"start": "2026-05-04T11:00:00Z", "version": 9}, 409, "version"),  # changed meanwhile
        ({"version": 1}, 422, "body"),  # a precondition alone changes nothing
        ({"private": 1}, 422, "private"),
        ({}, 422, "body"),
    ],
)
async def test_patch_refusals_write_nothing(api: Api, body: dict, status: int, field: str) -> None:
    (appt,) = await book(api, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["alice"])
    before = api.table_counts()
    reply = await api.call("PATCH", f"/appointments/{appt['id']}", body)
    assert (reply.status, reply.json.get("field")) == (status, field), reply.text
    assert api.table_counts() == before


async def test_external_appointments_are_read_only(api: Api) -> None:
    ext = await add_external(api.store, T9)
    before = api.table_counts()
    patched = await api.call("PATCH", f"/appointments/{ext.id}", {"note": "mine now"})
    assert (patched.status, patched.json["field"]) == (409, "id")
    assert (await api.call("DELETE", f"/appointments/{ext.id}")).status == 409
    assert api.table_counts() == before
    shown = await api.call("GET", f"/appointments/{ext.id}")
    assert shown.json["read_only"] is True and shown.json["display_subject"] == "Dentist"


async def test_delete_leaves_a_tombstone(api: Api) -> None:
    (appt,) = await book(api, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["alice"])
    reply = await api.call("DELETE", f"/appointments/{appt['id']}")
    assert reply.status == 200 and reply.json["deleted"] is True
    assert (await api.call("GET", f"/appointments/{appt['id']}")).status == 404
    assert (await api.call("DELETE", f"/appointments/{appt['id']}")).status == 404
    tomb = await api.store.get_appointment(appt["id"], include_deleted=True)
    assert tomb is not None and tomb.deleted


async def test_delete_with_nothing_remote_answers_alike_and_leaves_no_tombstone(api: Api) -> None:
    (appt,) = await book(api, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["bob"])
    reply = await api.call("DELETE", f"/appointments/{appt['id']}")  # bob has no account
    assert reply.status == 200 and reply.json["deleted"] is True
    assert reply.json["id"] == appt["id"]
    assert await api.store.get_appointment(appt["id"], include_deleted=True) is None
    assert (await api.call("DELETE", f"/appointments/{appt['id']}")).status == 404


# --------------------------------------------------------------------------- approvals


@pytest.fixture
async def asking(tmp_path: Path) -> AsyncIterator[Api]:
    settings = HubSettings(create_appointments=Policy.ASK)
    async with running_api(tmp_path / "hub.db", settings=settings) as api:
        yield api


async def test_approvals_queue_and_approve(asking: Api) -> None:
    (appt,) = await book(asking, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["alice"])
    assert appt["push_state"] == "pending"
    queue = (await asking.call("GET", "/approvals")).json
    assert [q["appointment"]["id"] for q in queue] == [appt["id"]]
    reply = await asking.call("POST", f"/approvals/{queue[0]['id']}", {"approve": True})
    assert reply.status == 200, reply.text
    assert reply.json["approved"] is True and reply.json["appointment"]["push_state"] == "sync"
    assert (await asking.call("GET", "/approvals")).json == []
    again = await asking.call("POST", f"/approvals/{queue[0]['id']}", {"approve": False})
    assert again.status == 409
    stored = await asking.store.get_appointment(appt["id"])
    assert stored is not None and stored.push_state is PushState.SYNC


async def test_reject_keeps_it_local(asking: Api) -> None:
    (appt,) = await book(asking, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["bob"])
    (queued,) = (await asking.call("GET", "/approvals")).json
    reply = await asking.call("POST", f"/approvals/{queued['id']}", {"approve": False})
    assert reply.json["appointment"]["push_state"] == "rejected"
    shown = await asking.call("GET", "/appointments?agent=bob")
    assert [a["id"] for a in shown.json] == [appt["id"]]


async def test_approval_refusals(asking: Api) -> None:
    await book(asking, "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", ["bob"])
    (queued,) = (await asking.call("GET", "/approvals")).json
    path = f"/approvals/{queued['id']}"
    before = asking.table_counts()
    assert (await asking.call("POST", "/approvals/nope", {"approve": True})).status == 404
    reply = await asking.call("POST", path, {"approve": "yes"})
    assert (reply.status, reply.json["field"]) == (422, "approve")
    reply = await asking.call("POST", path, {})
    assert (reply.status, reply.json["field"]) == (422, "approve")
    assert (await asking.call("POST", path, raw="[true]")).status == 400
    assert asking.table_counts() == before
