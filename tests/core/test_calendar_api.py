"""The calendar page's server side without a browser: login, the session cookie, the CSRF
check, expiry, security headers, the compact entries endpoint and the change stream."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.admin.events_stream import ChangeFeed
from hub.admin.sessions import CSRF_HEADER, SessionPolicy, Sessions
from hub.model import Agent, Appointment, Kind
from hub.store.sqlite import SqliteStore
from tests.core.admin_support import TOKEN, Api, running_api

CROSS_SITE = "cross-site request refused (its Origin is not this endpoint)"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        yield api


def origin(api: Api) -> str:
    return str(api.client.make_url("/")).rstrip("/")


async def login(api: Api) -> tuple[str, str]:
    """Log in as the page does; returns the session cookie and the CSRF token."""
    reply = await api.call(
        "POST", "/calendar/login", {"token": TOKEN}, token=None, headers={"Origin": origin(api)}
    )
    assert reply.status == 200, reply.text
    cookie = reply.headers["Set-Cookie"]
    session_id = re.search(r"calhub_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    session = await api.call("GET", "/calendar/session", token=None, headers=cookies(session_id))
    # The test client keeps cookies like a browser; the tests send theirs explicitly.
    api.client.session.cookie_jar.clear()
    return session_id, session.json["csrf"]


def cookies(session_id: str) -> dict[str, str]:
    return {"Cookie": f"calhub_session={session_id}"}


async def book(api: Api, agent: str, start: str, end: str, request: str = "42") -> dict[str, Any]:
    body = {"subject": "Visit", "start": start, "end": end, "agents": [agent]}
    reply = await api.call("POST", f"/requests/{request}/appointments", body)
    assert reply.status == 201, reply.text
    return reply.json["appointments"][0]


# --------------------------------------------------------------------------- login


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"token": TOKEN}, {}, 403, CROSS_SITE),  # no Origin at all
        ({"token": TOKEN}, {"Origin": "http://evil.test"}, 403, CROSS_SITE),
        ({"token": "guess"}, None, 401, "wrong admin token"),
        ({}, None, 422, "enter the admin token"),
    ],
)
async def test_login_refusals_make_no_session(
    api: Api, body: dict[str, str], headers: dict[str, str] | None, status: int, message: str
) -> None:
    sent = {"Origin": origin(api)} if headers is None else headers
    reply = await api.call("POST", "/calendar/login", body, token=None, headers=sent)
    assert (reply.status, reply.json["error"]) == (status, message)
    assert "Set-Cookie" not in reply.headers
    assert api.table_counts()["browser_sessions"] == 0


async def test_login_sets_a_strict_http_only_cookie_and_stores_only_its_hash(api: Api) -> None:
    reply = await api.call(
        "POST", "/calendar/login", {"token": TOKEN}, token=None, headers={"Origin": origin(api)}
    )
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    session_id = re.search(r"calhub_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    with sqlite3.connect(api.db_path) as db:
        stored = [row[0] for row in db.execute("SELECT id_hash FROM browser_sessions")]
    assert stored == [hashlib.sha256(session_id.encode()).hexdigest()]


async def test_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    async with running_api(tmp_path / "hub.db", public_url="https://calhub.example.com") as api:
        reply = await api.call(
            "POST",
            "/calendar/login",
            {"token": TOKEN},
            token=None,
            headers={"Origin": "https://calhub.example.com"},  # the proxy's origin is ours too
        )
        assert reply.status == 200
        assert "Secure" in reply.headers["Set-Cookie"]


# --------------------------------------------------------------------------- the cookie


async def test_the_cookie_opens_reads_and_checked_writes(api: Api) -> None:
    session_id, csrf = await login(api)
    assert (await api.call("GET", "/agents", token=None)).status == 401
    assert (await api.call("GET", "/agents", token=None, headers=cookies(session_id))).status == 200
    appt = await book(api, "alice", "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z")
    path = f"/appointments/{appt['id']}"
    body = {"start": "2026-05-04T11:00:00Z"}
    wrong = csrf[:-1] + ("1" if csrf.endswith("0") else "0")  # one hex digit off, always
    refusals = [
        ({}, "cross-site request refused"),
        ({"Origin": "http://evil.test", CSRF_HEADER: csrf}, "cross-site request refused"),
        ({"Origin": origin(api)}, f"missing or wrong {CSRF_HEADER} header"),
        ({"Origin": origin(api), CSRF_HEADER: wrong}, f"missing or wrong {CSRF_HEADER}"),
    ]
    for extra, message in refusals:
        reply = await api.call("PATCH", path, body, token=None, headers=cookies(session_id) | extra)
        assert reply.status == 403 and reply.json["error"].startswith(message), (extra, reply.text)
    assert (await api.store.get_appointment(appt["id"])).version == 1  # type: ignore[union-attr]
    ok = {"Origin": origin(api), CSRF_HEADER: csrf}
    reply = await api.call("PATCH", path, body, token=None, headers=cookies(session_id) | ok)
    assert reply.status == 200 and reply.json["start"] == "2026-05-04T11:00:00Z"


async def test_bearer_scripts_are_not_subject_to_the_cookie_checks(api: Api) -> None:
    appt = await book(api, "alice", "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z")
    reply = await api.call(
        "PATCH",
        f"/appointments/{appt['id']}",
        {"note": "from a script"},
        headers={"Origin": "http://elsewhere.test"},  # a browser cannot add the bearer header
    )
    assert reply.status == 200


async def test_an_open_hub_refuses_other_sites_but_not_scripts(tmp_path: Path) -> None:
    async with running_api(tmp_path / "hub.db", token=None) as api:
        body = {"subject": "x", "start": "2026-05-04T09:00:00Z", "end": "2026-05-04T10:00:00Z"}
        body["agents"] = ["alice"]  # type: ignore[assignment]
        forged = await api.call(
            "POST", "/requests/9/appointments", body, headers={"Origin": "http://evil.test"}
        )
        assert (forged.status, forged.json["error"]) == (403, forged.json["error"])
        assert "cross-site" in forged.json["error"]
        assert (await api.call("POST", "/requests/9/appointments", body)).status == 201


async def test_logout_ends_the_session_on_the_server(api: Api) -> None:
    session_id, csrf = await login(api)
    headers = cookies(session_id) | {"Origin": origin(api), CSRF_HEADER: csrf}
    reply = await api.call("POST", "/calendar/logout", token=None, headers=headers)
    assert reply.status == 200 and 'calhub_session=""' in reply.headers["Set-Cookie"]
    assert (await api.call("GET", "/agents", token=None, headers=cookies(session_id))).status == 401
    assert api.table_counts()["browser_sessions"] == 0


async def test_sessions_expire_when_idle_and_at_their_lifetime(tmp_path: Path) -> None:
    now = [datetime(2026, 5, 4, 8, tzinfo=UTC)]
    async with SqliteStore(tmp_path / "hub.db") as store:
        sessions = Sessions(
            store,
            SessionPolicy(idle=timedelta(minutes=30), lifetime=timedelta(hours=2)),
            clock=lambda: now[0],
        )
        idle = await sessions.create()
        busy = await sessions.create()
        for _ in range(4):  # busy is used every 25 minutes, idle never
            now[0] += timedelta(minutes=25)
            assert await sessions.check(busy)
        assert not await sessions.check(idle)  # 100 minutes without a request
        now[0] += timedelta(minutes=25)  # 125 minutes after login: past the lifetime
        assert not await sessions.check(busy)
        assert not await sessions.check(busy)  # and it stays dead
        assert not await sessions.check("made-up")


# --------------------------------------------------------------------------- the page


async def test_page_and_static_files_are_public_with_a_strict_csp(api: Api) -> None:
    page = await api.call("GET", "/calendar", token=None)
    assert page.status == 200 and "<script" in page.text
    assert "<script>" not in page.text  # no inline script: every script has a src
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    js = await api.call("GET", "/calendar/static/calendar.js", token=None)
    assert js.status == 200 and "textContent" in js.text
    vendor = await api.call(
        "GET", "/calendar/static/vendor/event-calendar/event-calendar.min.js", token=None
    )
    assert vendor.status == 200 and "EventCalendar v5.10.1" in vendor.text
    assert (await api.call("GET", "/calendar/session", token=None)).status == 401
    assert (await api.call("GET", "/calendar/entries", token=None)).status == 401
    json_reply = await api.call("GET", "/agents")
    assert json_reply.headers["X-Content-Type-Options"] == "nosniff"


async def test_session_tells_the_page_its_settings_and_agents(api: Api) -> None:
    reply = await api.call("GET", "/calendar/session")
    assert reply.json["csrf"] is None  # a bearer caller has no session to protect
    assert reply.json["calendar"] == {
        "working_days": ["mon", "tue", "wed", "thu", "fri"],
        "day_start": "08:00",
        "day_end": "17:00",
        "slot_minutes": 30,
        "planned_colour": "#f0ad4e",
    }
    assert [(a["id"], a["attention"]) for a in reply.json["agents"]] == [
        ("alice", None),
        ("bob", None),
    ]


# --------------------------------------------------------------------------- entries


async def test_entries_load_a_range_for_several_agents_in_one_request(api: Api) -> None:
    a = await book(api, "alice", "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z", "1")
    b = await book(api, "bob", "2026-05-05T09:00:00Z", "2026-05-05T10:00:00Z", "2")
    await book(api, "bob", "2026-06-05T09:00:00Z", "2026-06-05T10:00:00Z", "3")  # outside
    span = "from=2026-05-04T00:00:00Z&to=2026-05-11T00:00:00Z"
    both = await api.call("GET", f"/calendar/entries?{span}&agents=alice,bob")
    assert [e["id"] for e in both.json["entries"]] == [a["id"], b["id"]]
    first = both.json["entries"][0]
    assert first == {
        "id": a["id"],
        "agent": "alice",
        "kind": "manual",
        "title": "[#1] Visit",
        "start": "2026-05-04T09:00:00Z",
        "end": "2026-05-04T10:00:00Z",
        "all_day": False,
        "private": False,
        "state": "sync",
        "read_only": False,
        "version": 1,
        "request_id": "1",
    }
    only_bob = await api.call("GET", f"/calendar/entries?{span}&agents=bob")
    assert [e["id"] for e in only_bob.json["entries"]] == [b["id"]]
    by_id = await api.call("GET", f"/calendar/entries?ids={b['id']},gone1")
    assert [e["id"] for e in by_id.json["entries"]] == [b["id"]]
    assert by_id.json["gone"] == ["gone1"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-05-04T00:00:00Z", "to"),
        ("from=2026-05-04T00:00:00Z&to=2026-05-03T00:00:00Z", "to"),
        ("ids=bad%20id", "ids"),
        ("agent=alice", "agent"),
    ],
)
async def test_entries_refuse_bad_queries(api: Api, query: str, field: str) -> None:
    reply = await api.call("GET", f"/calendar/entries?{query}")
    assert (reply.status, reply.json["field"]) == (422, field)


# --------------------------------------------------------------------------- live


async def test_the_stream_names_the_changed_appointments(api: Api) -> None:
    appt = await book(api, "alice", "2026-05-04T09:00:00Z", "2026-05-04T10:00:00Z")
    response = await api.client.get(
        "/calendar/events", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await response.content.readuntil(b"\n\n") == b"retry: 1000\n: connected\n\n"
    patched = await api.call("PATCH", f"/appointments/{appt['id']}", {"note": "moved elsewhere"})
    assert patched.status == 200
    event = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 10)
    assert event == f'event: changed\ndata: ["{appt["id"]}"]\n\n'.encode()
    response.close()


async def test_a_stream_that_fell_behind_is_told_to_reload_and_shutdown_ends_it() -> None:
    feed = ChangeFeed()
    with feed.subscribe() as queue:
        for n in range(queue.maxsize + 5):
            feed.publish(frozenset({f"a{n}"}))
        assert await feed.next_batch(queue) is None  # some were lost: reload
        feed.publish(frozenset({"b"}))
        assert await feed.next_batch(queue) == ["b"]
        feed.close()
        with pytest.raises(EOFError):
            await feed.next_batch(queue)


async def test_entries_read_their_requests_in_one_query(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        await book(
            api, "alice", f"2026-05-0{4 + n}T09:00:00Z", f"2026-05-0{4 + n}T10:00:00Z", f"r{n}"
        )

    async def one_by_one(request_id: str) -> None:
        raise AssertionError(f"request {request_id} read on its own")

    monkeypatch.setattr(api.store, "get_request", one_by_one)
    reply = await api.call("GET", "/calendar/entries?from=2026-05-04&to=2026-05-08&agents=alice")
    assert [e["title"] for e in reply.json["entries"]] == [
        "[#r0] Visit",
        "[#r1] Visit",
        "[#r2] Visit",
    ]
    assert (await api.store.get_requests(["r1", "nope"])).keys() == {"r1"}


async def test_every_commit_that_touches_appointments_is_announced(tmp_path: Path) -> None:
    # A sync pass bringing a move back, a purge and a rollback, as the stream hears them.
    heard: list[frozenset[str]] = []
    async with SqliteStore(tmp_path / "hub.db") as store:
        store.add_appointment_listener(heard.append)
        async with store.transaction("api") as tx:
            await tx.put_agent(Agent(id="alice", name="Alice"))
        assert heard == []  # an agent alone is no appointment change
        start = datetime(2026, 5, 4, 9, tzinfo=UTC)
        appt = Appointment("a1", "alice", Kind.MANUAL, start, start + timedelta(hours=1))
        async with store.transaction("api") as tx:
            await tx.put_appointment(appt)
        async with store.transaction("sync:o365") as tx:
            moved = {"start": start + timedelta(hours=2), "end": start + timedelta(hours=3)}
            await tx.put_appointment(appt.evolve(**moved))
        with pytest.raises(RuntimeError):
            async with store.transaction("api") as tx:
                await tx.put_appointment(appt.evolve(note="never committed"))
                raise RuntimeError("rolled back")
        async with store.transaction("api") as tx:
            await tx.purge_appointment("a1")
        assert heard == [frozenset({"a1"})] * 3
