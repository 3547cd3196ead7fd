"""Admin API: /requests/{rid} routes (sources A, B, C)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from hub.config import HubSettings
from tests.core.admin_support import Api, running_api

PLAN = {"agents": ["alice", "bob"], "start": "2026-05-04T09:00:00+02:00", "subject": "Printer"}
BOOKING = {
    "subject": "On-site visit",
    "start": "2026-05-06T10:00:00Z",
    "end": "2026-05-06T11:30:00Z",
    "agents": ["alice", "bob"],
    "note": "Bring cables",
    "private": False,
    "location": "Room 4",
}
ACTION = {
    "agent": "bob",
    "done_at": "2026-05-04T14:00:00Z",
    "time_taken_minutes": 30,
    "add_to_calendar": True,
    "note": "Replaced toner",
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = HubSettings(default_estimate=timedelta(minutes=45))
    async with running_api(tmp_path / "hub.db", settings=settings) as api:
        yield api


# --------------------------------------------------------------------------- A


async def test_plan_and_replan(api: Api) -> None:
    first = await api.call("PUT", "/requests/1042/planned", PLAN)
    assert first.status == 200, first.text
    appts = {a["agent"]: a for a in first.json["appointments"]}
    assert appts["alice"]["start"] == "2026-05-04T07:00:00Z"
    assert appts["alice"]["end"] == "2026-05-04T07:45:00Z"  # the default estimate
    assert appts["alice"]["display_subject"] == "[#1042] Printer"

    moved = await api.call(
        "PUT",
        "/requests/1042/planned",
        {"agents": ["alice"], "start": "2026-05-05T08:00:00Z", "estimate_minutes": 120},
    )
    (alice,) = moved.json["appointments"]
    assert alice["id"] == appts["alice"]["id"]
    assert (alice["start"], alice["end"]) == ("2026-05-05T08:00:00Z", "2026-05-05T10:00:00Z")
    listed = await api.call("GET", "/requests/1042/appointments")
    assert [a["id"] for a in listed.json] == [alice["id"]]  # bob's was cancelled

    request = await api.call("GET", "/requests/1042")
    assert request.json["planned_agents"] == ["alice"]
    assert request.json["subject"] == "Printer"


async def test_all_day_plan(api: Api) -> None:
    reply = await api.call("PUT", "/requests/7/planned", {"agents": ["bob"], "start": "2026-05-04"})
    (appt,) = reply.json["appointments"]
    assert (appt["start"], appt["end"], appt["all_day"]) == ("2026-05-04", "2026-05-05", True)


async def test_clear_plan(api: Api) -> None:
    made = (await api.call("PUT", "/requests/1042/planned", PLAN)).json["appointments"]
    reply = await api.call("DELETE", "/requests/1042/planned")
    assert reply.status == 200
    assert sorted(reply.json["cancelled"]) == sorted(a["id"] for a in made)
    assert (await api.call("GET", "/requests/1042/appointments")).json == []
    # Alice's tombstone waits for sync; Bob (no account) has nothing remote: purged at once.
    left = await api.store.list_appointments(request_id="1042", include_deleted=True)
    assert [(a.agent_id, a.deleted) for a in left] == [("alice", True)]
    assert (await api.call("DELETE", "/requests/never/planned")).status == 404


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"agents": ["alice", "mallory"]}, 422, "agents"),
        ({"agents": "alice"}, 422, "agents"),
        ({"start": "2026-05-04T09:00:00"}, 422, "start"),  # naive: no offset
        ({"start": "next tuesday"}, 422, "start"),
        ({"start": 1714806000}, 422, "start"),
        ({"estimate_minutes": 0}, 422, "estimate_minutes"),
        ({"estimate_minutes": -5}, 422, "estimate_minutes"),
        ({"estimate_minutes": "60"}, 422, "estimate_minutes"),
        ({"estimate_minutes": True}, 422, "estimate_minutes"),
        ({"estimate_minutes": 10**12}, 422, "estimate_minutes"),
        ({"estimate": 60}, 422, "estimate"),  # unknown field
        ({"start": None}, 422, "start"),  # required
    ],
)
async def test_plan_refusals_write_nothing(api: Api, change: dict, status: int, field: str) -> None:
    before = api.table_counts()
    reply = await api.call("PUT", "/requests/1042/planned", {**PLAN, **change})
    assert (reply.status, reply.json.get("field")) == (status, field), reply.text
    assert api.table_counts() == before
    assert (await api.call("GET", "/requests/1042")).status == 404


async def test_bad_request_id_in_the_path(api: Api) -> None:
    reply = await api.call("PUT", "/requests/%20bad/planned", PLAN)
    assert (reply.status, reply.json["field"]) == (422, "request_id")


# --------------------------------------------------------------------------- B


async def test_action_with_appointment(api: Api) -> None:
    reply = await api.call("POST", "/requests/1042/actions", ACTION)
    assert reply.status == 201, reply.text
    appt = reply.json["appointment"]
    assert (appt["kind"], appt["agent"], appt["note"]) == ("action", "bob", "Replaced toner")
    assert (appt["start"], appt["end"]) == ("2026-05-04T14:00:00Z", "2026-05-04T14:30:00Z")
    assert appt["action_id"] == reply.json["action_id"]


async def test_action_not_asked(api: Api) -> None:
    reply = await api.call("POST", "/requests/1042/actions", {**ACTION, "add_to_calendar": False})
    assert reply.status == 200
    assert reply.json["appointment"] is None and "add_to_calendar" in reply.json["reason"]
    assert (await api.call("GET", "/requests/1042/appointments")).json == []


async def test_action_appointments_disabled(tmp_path: Path) -> None:
    async with running_api(
        tmp_path / "hub.db", settings=HubSettings(action_appointments=False)
    ) as api:
        reply = await api.call("POST", "/requests/1042/actions", ACTION)
        assert reply.status == 200
        assert reply.json["appointment"] is None
        assert "action_appointments" in reply.json["reason"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"agent": "ghost"}, "agent"),
        ({"done_at": "2026-05-04"}, "done_at"),  # a date has no time of day
        ({"time_taken_minutes": 0}, "time_taken_minutes"),
        ({"add_to_calendar": "yes"}, "add_to_calendar"),
        ({"note": ["x"]}, "note"),
    ],
)
async def test_action_refusals(api: Api, change: dict, field: str) -> None:
    before = api.table_counts()
    reply = await api.call("POST", "/requests/1042/actions", {**ACTION, **change})
    assert (reply.status, reply.json.get("field")) == (422, field), reply.text
    assert api.table_counts() == before


# --------------------------------------------------------------------------- C


async def test_multi_agent_booking(api: Api) -> None:
    reply = await api.call("POST", "/requests/1042/appointments", BOOKING)
    assert reply.status == 201, reply.text
    appts = reply.json["appointments"]
    assert sorted(a["agent"] for a in appts) == ["alice", "bob"]
    assert len({a["group_id"] for a in appts}) == 1
    assert all(a["subject"] == "On-site visit" and a["kind"] == "manual" for a in appts)
    listed = await api.call("GET", "/requests/1042/appointments")
    assert sorted(a["id"] for a in listed.json) == sorted(a["id"] for a in appts)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"end": "2026-05-06T09:00:00Z"}, "end"),  # before start
        ({"end": "2026-05-06T10:00:00Z"}, "end"),  # zero length
        ({"end": "2026-05-07"}, "end"),  # date with a time start
        ({"agents": ["alice", "ghost"]}, "agents"),
        ({"agents": []}, "agents"),
        ({"subject": "  "}, "subject"),
        ({"private": "no"}, "private"),
        ({"start": "2026-13-01T10:00:00Z"}, "start"),
        ({"start": "9999-12-31T23:00:00Z"}, "start"),  # out of range, not an overflow 500
        ({"colour": "#fff000"}, "colour"),
    ],
)
async def test_booking_refusals_write_nothing(api: Api, change: dict, field: str) -> None:
    before = api.table_counts()
    reply = await api.call("POST", "/requests/1042/appointments", {**BOOKING, **change})
    assert (reply.status, reply.json.get("field")) == (422, field), reply.text
    assert api.table_counts() == before


async def test_unknown_request_is_404(api: Api) -> None:
    for path in ("/requests/404", "/requests/404/appointments"):
        reply = await api.call("GET", path)
        assert (reply.status, reply.json["field"]) == (404, "request_id")
