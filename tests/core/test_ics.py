"""iCalendar feeds: hub/ics.py, and GET /agents/{id}/calendar.ics with its token checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event

from hub.config import HubSettings
from hub.ics import build_feed, feed_start
from hub.model import Agent, Appointment, Kind
from hub.render import render_event
from tests.core.admin_support import TOKEN, Api, running_api

T9 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
# Inside the feed's default window (the last 30 days on) whenever the tests run.
SOON = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
ALICE = Agent(id="alice", name="Alice Smith", colour="#3a87ad")
SECRET = "Divorce lawyer"


def appt(id: str, **kw: object) -> Appointment:
    fields: dict[str, object] = {
        "id": id,
        "agent_id": "alice",
        "kind": Kind.MANUAL,
        "start": T9,
        "end": T9 + timedelta(hours=1),
        "subject": f"Subject {id}",
        "note": f"Note {id}",
        "version": 3,
        "created_at": T9 - timedelta(days=1),
        "updated_at": T9 - timedelta(hours=1),
    }
    fields.update(kw)
    return Appointment(**fields)  # type: ignore[arg-type]


def feed_of(appts: list[Appointment]) -> bytes:
    settings = HubSettings()
    entries = [(a, render_event(a, ALICE, None, settings)) for a in appts]
    return build_feed(ALICE, entries, now=T9)


def events(raw: bytes) -> dict[str, Event]:
    cal = Calendar.from_ical(raw)
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_feed_is_valid_rfc5545() -> None:
    raw = feed_of([appt("a1"), appt("a2", start=date(2026, 5, 5), end=date(2026, 5, 6))])
    cal = Calendar.from_ical(raw)
    assert str(cal["VERSION"]) == "2.0"
    assert str(cal["PRODID"]).startswith("-//calhub//")
    assert str(cal["X-WR-CALNAME"]) == "Alice Smith (calhub)"
    assert raw.count(b"\r\n") == len(raw.splitlines())  # CRLF line ends
    assert max(len(line) for line in raw.split(b"\r\n")) <= 75  # folded lines
    found = events(raw)
    assert set(found) == {"a1@calhub", "a2@calhub"}
    timed, all_day = found["a1@calhub"], found["a2@calhub"]
    for event in (timed, all_day):
        for prop in ("UID", "DTSTAMP", "DTSTART", "DTEND", "SEQUENCE", "LAST-MODIFIED"):
            assert prop in event, prop
    assert timed.decoded("DTSTART") == T9
    assert timed.decoded("SEQUENCE") == 3
    assert str(timed["SUMMARY"]) == "Subject a1"
    assert str(timed["DESCRIPTION"]) == "Note a1"
    assert all_day.decoded("DTSTART") == date(2026, 5, 5)
    assert all_day["DTSTART"].params.get("VALUE") == "DATE"
    assert str(timed["TRANSP"]) == "OPAQUE"


def test_free_time_is_transparent_and_tombstones_are_left_out() -> None:
    raw = feed_of([appt("free", show_as="free"), appt("gone", deleted=True)])
    found = events(raw)
    assert list(found) == ["free@calhub"]
    assert str(found["free@calhub"]["TRANSP"]) == "TRANSPARENT"


def test_private_entries_carry_no_content() -> None:
    private = appt(
        "p1", subject=SECRET, note=f"{SECRET} notes", location="Smith & Co", private=True
    )
    raw = feed_of([private])
    event = events(raw)["p1@calhub"]
    assert str(event["CLASS"]) == "PRIVATE"
    assert str(event["SUMMARY"]) == "Data unavailable"
    assert "DESCRIPTION" not in event and "LOCATION" not in event
    for leak in (b"Divorce", b"Smith & Co", b"notes"):
        assert leak not in raw


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        booking = {
            "subject": "Visit",
            "start": SOON.isoformat(),
            "end": (SOON + timedelta(hours=1)).isoformat(),
            "agents": ["alice", "bob"],
        }
        assert (await api.call("POST", "/requests/42/appointments", booking)).status == 201
        private = {**booking, "subject": SECRET, "agents": ["alice"], "private": True}
        assert (await api.call("POST", "/requests/43/appointments", private)).status == 201
        yield api


FEED = "/agents/alice/calendar.ics"


async def test_feed_token_opens_the_feed_without_headers(api: Api) -> None:
    reply = await api.call("GET", FEED + "?token=feed-alice", token=None)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/calendar")
    assert len(events(reply.text.encode())) == 2
    assert SECRET not in reply.text


async def test_uids_are_stable_across_fetches(api: Api) -> None:
    first = events((await api.call("GET", FEED)).text.encode())
    second = events((await api.call("GET", FEED)).text.encode())
    assert set(first) == set(second) and len(first) == 2
    appts = await api.store.list_appointments(agent_id="alice")
    assert set(first) == {f"{a.id}@calhub" for a in appts}


async def test_feed_tokens(api: Api) -> None:
    assert (await api.call("GET", FEED, token=None)).status == 401
    assert (await api.call("GET", FEED + "?token=wrong", token=None)).status == 401
    # Bob's token does not open Alice's feed.
    assert (await api.call("GET", FEED + "?token=feed-bob", token=None)).status == 401
    assert (
        await api.call("GET", "/agents/bob/calendar.ics?token=feed-bob", token=None)
    ).status == 200
    # The admin token works as a bearer header, but not in the URL.
    assert (await api.call("GET", FEED)).status == 200
    assert (await api.call("GET", FEED + f"?token={TOKEN}", token=None)).status == 401
    assert (await api.call("GET", FEED, token="wrong")).status == 401


async def test_unknown_agent_feed(api: Api) -> None:
    assert (await api.call("GET", "/agents/ghost/calendar.ics")).status == 404
    # Without credentials, the feed does not tell which agents exist.
    reply = await api.call("GET", "/agents/ghost/calendar.ics?token=x", token=None)
    assert reply.status == 401


async def test_open_api_still_checks_a_given_feed_token(tmp_path: Path) -> None:
    async with running_api(tmp_path / "hub.db", token=None) as api:
        assert (await api.call("GET", FEED)).status == 200
        assert (await api.call("GET", FEED + "?token=wrong")).status == 401


# --------------------------------------------------------------------------- window


def test_default_window_starts_at_least_30_days_back() -> None:
    now = datetime(2026, 5, 4, 15, 30, tzinfo=UTC)
    assert feed_start(now, 7) == datetime(2026, 4, 4, tzinfo=UTC)
    assert feed_start(now, 60) == datetime(2026, 3, 5, tzinfo=UTC)


async def test_old_appointments_are_left_out_unless_asked_for(api: Api) -> None:
    old = {
        "subject": "Last year",
        "start": "2025-05-04T09:00:00Z",
        "end": "2025-05-04T10:00:00Z",
        "agents": ["alice"],
    }
    reply = await api.call("POST", "/requests/44/appointments", old)
    assert reply.status == 201
    old_uid = f"{reply.json['appointments'][0]['id']}@calhub"
    assert old_uid not in events((await api.call("GET", FEED)).text.encode())
    asked = events((await api.call("GET", FEED + "?from=2025-05-01")).text.encode())
    assert old_uid in asked and len(asked) == 3
    # A datetime works too, and "to" closes the window: only last year's entry is left.
    span = "?from=2025-05-04T08:00:00%2B00:00&to=2025-05-05"
    assert set(events((await api.call("GET", FEED + span)).text.encode())) == {old_uid}


@pytest.mark.parametrize(
    ("params", "field"),
    [("from=yesterday", "from"), ("to=2026-13-01", "to"), ("from=2026-05-02&to=2026-05-01", "to")],
)
async def test_bad_window_is_a_422_naming_the_field(api: Api, params: str, field: str) -> None:
    reply = await api.call("GET", f"{FEED}?token=feed-alice&{params}", token=None)
    assert reply.status == 422
    assert reply.json["field"] == field


# --------------------------------------------------------------------------- conditional GET


async def _counting_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch the feed route to record the agent of each rendering of a feed."""
    import hub.admin.feed as feed_route

    rendered: list[str] = []
    real = feed_route.feed_head

    def counting(agent: Agent) -> bytes:
        rendered.append(agent.id)
        return real(agent)

    monkeypatch.setattr(feed_route, "feed_head", counting)
    return rendered


async def _move_first(api: Api, agent: str) -> None:
    appts = await api.store.list_appointments(agent_id=agent)
    later = (SOON + timedelta(hours=2)).isoformat()
    reply = await api.call("PATCH", f"/appointments/{appts[0].id}", {"start": later})
    assert reply.status == 200, reply.text


async def test_unchanged_feed_is_a_304_without_rendering(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = await _counting_renders(monkeypatch)
    first = await api.call("GET", FEED + "?token=feed-alice", token=None)
    assert first.status == 200 and rendered == ["alice"]
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = await api.call(
        "GET", FEED + "?token=feed-alice", token=None, headers={"If-None-Match": etag}
    )
    assert again.status == 304 and again.text == ""
    assert again.headers["ETag"] == etag
    # Last-Modified of the cached version: a later If-Modified-Since is answered 304 too.
    since = {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}
    assert (await api.call("GET", FEED, headers=since)).status == 304
    old = {"If-Modified-Since": "Thu, 01 Jan 2015 00:00:00 GMT"}
    assert (await api.call("GET", FEED, headers=old)).status == 200
    # The admin token and the feed token see one feed, one tag; a plain fetch is cached.
    plain = await api.call("GET", FEED)
    assert plain.status == 200 and plain.headers["ETag"] == etag and plain.text == first.text
    assert rendered == ["alice"]
    # A tag that is not current gets the feed.
    stale = await api.call("GET", FEED, headers={"If-None-Match": 'W/"other"'})
    assert stale.status == 200


async def test_a_change_gives_a_new_tag_and_one_rendering(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = await _counting_renders(monkeypatch)
    etag = (await api.call("GET", FEED)).headers["ETag"]
    bob_etag = (await api.call("GET", "/agents/bob/calendar.ics")).headers["ETag"]
    await _move_first(api, "alice")
    changed = await api.call("GET", FEED, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    moved = (SOON + timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ")
    assert moved in changed.text
    for _ in range(3):
        fetched = await api.call("GET", FEED, headers={"If-None-Match": etag})
        assert fetched.status == 200 and fetched.text == changed.text
    # Alice's change leaves Bob's feed as it was.
    bob = await api.call("GET", "/agents/bob/calendar.ics", headers={"If-None-Match": bob_etag})
    assert bob.status == 304
    assert rendered == ["alice", "bob", "alice"]


async def test_concurrent_polls_of_a_changed_feed_render_it_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    rendered = await _counting_renders(monkeypatch)
    first = await api.call("GET", FEED)
    await _move_first(api, "alice")
    stale = {"If-None-Match": first.headers["ETag"]}
    replies = await asyncio.gather(*(api.call("GET", FEED, headers=stale) for _ in range(6)))
    assert {r.status for r in replies} == {200}
    assert len({r.text for r in replies}) == 1 and replies[0].text != first.text
    assert len({r.headers["ETag"] for r in replies}) == 1
    assert rendered == ["alice", "alice"]  # the first version, then the new one once


async def test_a_new_version_renders_only_the_events_that_changed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hub.admin.feed as feed_route

    rendered: list[str] = []
    real = feed_route.render_event

    def counting(appt: Appointment, *args: object) -> object:
        rendered.append(appt.id)
        return real(appt, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_route, "render_event", counting)
    first = await api.call("GET", FEED)
    assert len(rendered) == 2
    rendered.clear()
    await _move_first(api, "alice")
    moved = await api.store.list_appointments(agent_id="alice")
    changed = await api.call("GET", FEED)
    assert len(rendered) == 1 and rendered[0] in {a.id for a in moved}
    assert changed.text != first.text and len(events(changed.text.encode())) == 2
    assert SECRET not in changed.text
    # Only the moved event's text differs (its DTSTAMP included).
    before, after = events(first.text.encode()), events(changed.text.encode())
    same = [u for u in before if before[u].to_ical() == after[u].to_ical()]
    assert len(same) == 1 and f"{rendered[0]}@calhub" not in same


async def test_each_agent_has_its_own_cached_feed(api: Api) -> None:
    alice = await api.call("GET", FEED)
    bob = await api.call("GET", "/agents/bob/calendar.ics")
    assert alice.headers["ETag"] != bob.headers["ETag"]
    assert len(events(alice.text.encode())) == 2 and len(events(bob.text.encode())) == 1


async def test_windows_are_feeds_of_their_own(api: Api) -> None:
    whole = await api.call("GET", FEED)
    narrow = await api.call("GET", FEED + "?from=2015-01-01&to=2015-02-01")
    assert narrow.status == 200 and narrow.headers["ETag"] != whole.headers["ETag"]
    assert len(events(narrow.text.encode())) == 0 and len(events(whole.text.encode())) == 2


async def test_a_wrong_token_gets_no_304(api: Api) -> None:
    etag = (await api.call("GET", FEED)).headers["ETag"]
    headers = {"If-None-Match": etag}
    assert (
        await api.call("GET", FEED + "?token=feed-bob", token=None, headers=headers)
    ).status == 401
    assert (await api.call("GET", FEED, token=None, headers=headers)).status == 401


async def test_cached_feed_keeps_private_content_out(api: Api) -> None:
    first = await api.call("GET", FEED)
    cached = await api.call("GET", FEED + "?token=feed-alice", token=None)
    assert SECRET not in first.text and SECRET not in cached.text
    assert "Data unavailable" in cached.text


def test_feed_cache_is_bounded() -> None:
    from hub.admin.feed_cache import CachedFeed, FeedCache, FeedKey

    cache = FeedCache(max_feeds=2, max_bytes=10)
    keys = [FeedKey(name, None, None) for name in ("a", "b", "c")]
    for key in keys:
        cache.put(key, CachedFeed(1, "t", T9, b"1234"))
    assert len(cache) == 2 and cache.get(keys[0], 1) is None and cache.get(keys[2], 1)
    cache.put(keys[0], CachedFeed(1, "t", T9, b"12345678"))  # 12 bytes: b goes
    assert cache.get(keys[1], 1) is None and cache.get(keys[0], 1) is not None
    # An older version never replaces a newer one; a version other than the one asked is a miss.
    cache.put(keys[0], CachedFeed(2, "t2", T9, b"1"))
    cache.put(keys[0], CachedFeed(1, "t", T9, b"1"))
    assert cache.get(keys[0], 1) is None and cache.get(keys[0], 2) is not None


async def test_an_agent_change_renders_every_event_again(tmp_path: Path) -> None:
    settings = HubSettings(subject_template="{subject} with {agent_name}")
    async with running_api(tmp_path / "hub.db", settings=settings) as api:
        booking = {
            "subject": "Visit",
            "start": SOON.isoformat(),
            "end": (SOON + timedelta(hours=1)).isoformat(),
            "agents": ["alice"],
        }
        assert (await api.call("POST", "/requests/42/appointments", booking)).status == 201
        assert "Visit with Alice Smith" in (await api.call("GET", FEED)).text
        renamed = await api.call("PATCH", "/agents/alice", {"name": "Alice Jones"})
        assert renamed.status == 200, renamed.text
        again = (await api.call("GET", FEED)).text
        assert "Visit with Alice Jones" in again and "Alice Smith" not in again


# Mostly the characters TEXT escapes or folding must not split, some of any other kind.
_TEXT = st.lists(
    st.sampled_from('\\;,:\n\r\t"^ aZ\u00e9\u20ac\U0001f600')
    | st.characters(codec="utf-8", exclude_categories=("Cs",)),
    max_size=120,
).map("".join)
_MOMENT = st.datetimes(
    min_value=datetime(1, 1, 1, 0, 0), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    subject=_TEXT, body=_TEXT, location=_TEXT, categories=st.lists(_TEXT, max_size=3),
    private=st.booleans(), data_private=st.booleans(), free=st.booleans(),
    pending=st.booleans(), all_day=st.booleans(), start=_MOMENT, stamp=_MOMENT,
    created=st.none() | _MOMENT, updated=st.none() | _MOMENT,
    version=st.integers(1, 10**6), id=st.text("ab-_.@0Z9", min_size=1, max_size=90),
)  # fmt: skip
def test_event_text_is_the_librarys_rendering(
    subject: str, body: str, location: str, categories: list[str], private: bool,
    data_private: bool, free: bool, pending: bool, all_day: bool, start: datetime,
    stamp: datetime, created: datetime | None, updated: datetime | None, version: int, id: str,
) -> None:  # fmt: skip
    """event_text writes the VEVENT directly, byte for byte what icalendar makes of
    appointment_event (escapes, folding of long and multi-byte lines, property order)."""
    from hub.ics import appointment_event, event_text
    from hub.model import PushState
    from hub.spec import EventData

    begin: datetime | date = start.date() if all_day else start
    end: datetime | date = begin + timedelta(days=1) if all_day else start
    a = appt(
        id, start=begin, end=end, private=private, version=version, created_at=created,
        updated_at=updated, push_state=PushState.PENDING if pending else PushState.SYNC,
    )  # fmt: skip
    data = EventData(
        subject=subject, start=begin, end=end, body=body, location=location,
        private=data_private, show_as="free" if free else "busy", categories=tuple(categories),
    )  # fmt: skip
    assert event_text(a, data, stamp) == bytes(appointment_event(a, data, stamp).to_ical())
