"""GET /appointments in pages: limit, cursor, Link and Next-Cursor; the unpaged list streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import hub.admin.appointments as appointments_route
from hub.admin.paging import MAX_LIMIT
from tests.core.admin_support import Api, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        # Three bookings of two agents each: pairs of entries share a start (ties by id).
        for hour in (11, 9, 10):
            body = {
                "subject": "Visit",
                "start": f"2026-05-04T{hour:02d}:00:00Z",
                "end": f"2026-05-04T{hour:02d}:30:00Z",
                "agents": ["alice", "bob"],
            }
            assert (await api.call("POST", "/requests/42/appointments", body)).status == 201
        yield api


async def _walk(api: Api, query: str) -> tuple[list[str], int]:
    """Every id of the paged list from ``query`` on, following Next-Cursor; and the pages."""
    ids: list[str] = []
    pages = 0
    path = "/appointments" + query
    while pages < 20:  # a cursor that does not move on must fail the test, not hang it
        reply = await api.call("GET", path)
        assert reply.status == 200, reply.text
        pages += 1
        ids += [a["id"] for a in reply.json]
        cursor = reply.headers.get("Next-Cursor")
        if cursor is None:
            assert "Link" not in reply.headers
            return ids, pages
        assert f"cursor={cursor}" in reply.headers["Link"]
        assert reply.headers["Link"].endswith('; rel="next"')
        path = "/appointments" + query + ("&" if "?" in query else "?") + f"cursor={cursor}"
    raise AssertionError(f"more than 20 pages: {ids}")


async def test_pages_follow_the_whole_list_in_start_then_id_order(api: Api) -> None:
    whole = await api.call("GET", "/appointments")
    assert "Next-Cursor" not in whole.headers and len(whole.json) == 6
    expected = [a["id"] for a in sorted(whole.json, key=lambda a: (a["start"], a["id"]))]
    assert [a["id"] for a in whole.json] == expected
    for limit in (1, 2, 4, 6):
        ids, pages = await _walk(api, f"?limit={limit}")
        assert ids == expected
        assert pages == -(-6 // limit)


async def test_pages_of_one_agent_and_window(api: Api) -> None:
    alice = await api.call("GET", "/appointments?agent=alice&from=2026-05-04T09:45:00Z")
    ids, pages = await _walk(api, "?agent=alice&from=2026-05-04T09:45:00Z&limit=1")
    assert ids == [a["id"] for a in alice.json] and len(ids) == 2 and pages == 2


async def test_a_cursor_alone_gets_a_default_page(api: Api) -> None:
    first = await api.call("GET", "/appointments?limit=1")
    rest = await api.call("GET", "/appointments?cursor=" + first.headers["Next-Cursor"])
    assert len(rest.json) == 5 and "Next-Cursor" not in rest.headers


async def test_whole_list_is_streamed_in_chunks_as_one_array(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_go = (await api.call("GET", "/appointments")).json
    for chunk in (1, 4):
        monkeypatch.setattr(appointments_route, "STREAM_CHUNK", chunk)
        assert (await api.call("GET", "/appointments")).json == one_go
    assert (await api.call("GET", "/appointments?agent=alice&to=2020-01-01")).json == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        (f"?limit={MAX_LIMIT + 1}", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=-1", "limit"),
        ("?cursor=nonsense", "cursor"),
        ("?cursor=WyJ4IiwxXQ", "cursor"),  # ["x",1]
        ("?cursor=", "cursor"),
        ("?limit=1&limit=2", "limit"),
    ],
)
async def test_bad_page_parameters_are_422_naming_the_field(
    api: Api, query: str, field: str
) -> None:
    reply = await api.call("GET", "/appointments" + query)
    assert reply.status == 422, reply.text
    assert reply.json["field"] == field
