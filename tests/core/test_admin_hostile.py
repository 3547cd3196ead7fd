"""Hostile input at the admin endpoint: each class of bad input gets a clear 4xx naming the
field, never a 500, and writes nothing (deep JSON, lone surrogates, control characters, bad
header bytes, appointments in another century)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar

from tests.core.admin_support import Api, running_api
from tests.core.test_admin_fuzz import ROUTES

SOON = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
BOOKING = {
    "subject": "Visit",
    "start": SOON.isoformat(),
    "end": (SOON + timedelta(hours=1)).isoformat(),
    "agents": ["alice"],
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        yield api


async def _booked(api: Api) -> str:
    reply = await api.call("POST", "/requests/R0/appointments", BOOKING)
    assert reply.status == 201, reply.text
    return reply.json["appointments"][0]["id"]


# --------------------------------------------------------------------------- deep JSON


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_deeply_nested_json_is_a_400_on_every_body_route(
    api: Api, method: str, path: str
) -> None:
    path = path.format(appointment=await _booked(api))
    before = api.table_counts()
    for raw in ("[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000):
        reply = await api.call(method, path, raw=raw, headers={"Content-Type": "application/json"})
        assert reply.status == 400, reply.text
        assert "deeper than" in reply.json["error"]
    assert api.table_counts() == before


async def test_brackets_inside_strings_do_not_count_as_nesting(api: Api) -> None:
    reply = await api.call("POST", "/requests/R1/appointments", {**BOOKING, "note": "[" * 5000})
    assert reply.status == 201, reply.text


# --------------------------------------------------------------------------- surrogates


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/agents", {"id": "dave", "name": "\ud800"}, "name"),
        ("POST", "/requests/R1/appointments", {**BOOKING, "subject": "x\udfff"}, "subject"),
        ("POST", "/requests/R1/appointments", {**BOOKING, "note": "\ud800"}, "note"),
        ("POST", "/requests/R1/appointments", {**BOOKING, "customer": "\udc80"}, "customer"),
        (
            "PUT",
            "/requests/R1/planned",
            {"agents": ["bob"], "start": BOOKING["start"], "subject": "\ud83d"},
            "subject",
        ),
        ("PATCH", "/appointments/{appointment}", {"location": "\ud800"}, "location"),
    ],
)
async def test_a_lone_surrogate_is_a_422_naming_the_field(
    api: Api, method: str, path: str, body: dict, field: str
) -> None:
    path = path.format(appointment=await _booked(api))
    before = api.table_counts()
    reply = await api.call(method, path, body)  # json.dumps writes "\ud800" as an escape
    assert reply.status == 422, reply.text
    assert reply.json["field"] == field
    assert "surrogate" in reply.json["error"]
    assert api.table_counts() == before


# --------------------------------------------------------------------------- header bytes


async def _raw_request(api: Api, head: bytes) -> bytes:
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize("value", [b"Bearer \xff", b"Bearer \xc3\x28" + b"x" * 10, b"\xff\xfe"])
async def test_non_ascii_bytes_in_authorization_are_a_401(api: Api, value: bytes) -> None:
    answer = await _raw_request(
        api,
        b"GET /agents HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
        + value
        + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b'"error"' in answer


async def test_a_non_ascii_feed_token_is_a_401(api: Api) -> None:
    answer = await _raw_request(
        api,
        b"GET /agents/alice/calendar.ics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xfftoken\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


# --------------------------------------------------------------------------- control chars


@pytest.mark.parametrize("name", ["Alice\nSmith", "Alice\r\nX-INJECTED:1", "A\x1b[31m", "A\x7f"])
async def test_an_agent_name_with_control_characters_is_refused(api: Api, name: str) -> None:
    created = await api.call("POST", "/agents", {"id": "dave", "name": name})
    assert created.status == 422 and created.json["field"] == "name", created.text
    patched = await api.call("PATCH", "/agents/bob", {"name": name})
    assert patched.status == 422 and patched.json["field"] == "name", patched.text


async def test_no_stored_value_breaks_a_feed(api: Api) -> None:
    """Values the API does not refuse (multi-line notes, odd characters in subjects) and
    values that reach the store another way (an old row, a remote calendar) still make a
    feed every calendar app can parse."""
    nasty = "line one\r\nline two\rthree\x01\x1b[0m\x7f END:VCALENDAR"
    reply = await api.call(
        "POST",
        "/requests/R1/appointments",
        {**BOOKING, "subject": "Sub\tject\x02", "note": nasty, "location": "a\nb"},
    )
    assert reply.status == 201, reply.text
    agent = await api.store.get_agent("alice")
    assert agent is not None
    agent.name = "Alice\r\nX-INJECTED:1\x00"  # e.g. written before names were checked
    async with api.store.transaction("config") as tx:
        await tx.put_agent(agent)
    feed = await api.call("GET", "/agents/alice/calendar.ics?token=feed-alice", token=None)
    assert feed.status == 200, feed.text
    raw = feed.text.encode()
    lines = raw.split(b"\r\n")
    assert not [line for line in lines if any(b < 32 and b != 9 for b in line)]
    cal = Calendar.from_ical(raw)
    assert str(cal["X-WR-CALNAME"]).startswith("Alice X-INJECTED:1")
    assert "X-INJECTED" not in cal
    (event,) = cal.walk("VEVENT")
    assert str(event["DESCRIPTION"]) == "line one\nline two\nthree[0m END:VCALENDAR"
    assert str(event["LOCATION"]) == "a\nb"


# --------------------------------------------------------------------------- spans


def _iso(moment: datetime) -> str:
    return moment.isoformat()


FAR = SOON + timedelta(days=11 * 366)
PAST = SOON - timedelta(days=11 * 366)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/requests/R1/appointments",
         {**BOOKING, "start": _iso(FAR), "end": _iso(FAR + timedelta(hours=1))}, "start"),
        ("POST", "/requests/R1/appointments",
         {**BOOKING, "end": _iso(FAR)}, "end"),
        ("POST", "/requests/R1/appointments",
         {**BOOKING, "end": _iso(SOON + timedelta(days=32))}, "end"),
        ("POST", "/requests/R1/appointments",
         {**BOOKING, "start": "1900-01-01", "end": "1900-01-02"}, "start"),
        ("PUT", "/requests/R1/planned", {"agents": ["alice"], "start": "4099-01-01"}, "start"),
        ("PUT", "/requests/R1/planned", {"agents": ["alice"], "start": _iso(PAST)}, "start"),
        ("POST", "/requests/R1/actions",
         {"agent": "alice", "done_at": _iso(PAST), "time_taken_minutes": 30}, "done_at"),
        ("PATCH", "/appointments/{appointment}", {"start": _iso(FAR)}, "start"),
        ("PATCH", "/appointments/{appointment}", {"end": _iso(SOON + timedelta(days=40))}, "end"),
        ("PATCH", "/appointments/{appointment}",
         {"start": "2999-01-01", "end": "2999-01-02"}, "start"),
    ],
)  # fmt: skip
async def test_spans_are_bounded_on_every_route_that_books_or_moves(
    api: Api, method: str, path: str, body: dict, field: str
) -> None:
    path = path.format(appointment=await _booked(api))
    before = api.table_counts()
    reply = await api.call(method, path, body)
    assert reply.status == 422, reply.text
    assert reply.json["field"] == field, reply.text
    assert api.table_counts() == before


async def test_the_bounds_leave_ordinary_spans_alone(api: Api) -> None:
    appointment = await _booked(api)
    month = {"start": _iso(SOON), "end": _iso(SOON + timedelta(days=31))}
    assert (await api.call("PATCH", f"/appointments/{appointment}", month)).status == 200
    nine_years = SOON + timedelta(days=9 * 365)
    body = {"agents": ["alice"], "start": _iso(nine_years)}
    assert (await api.call("PUT", "/requests/R2/planned", body)).status == 200
