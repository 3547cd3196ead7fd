"""The google provider's own decisions, each against the strict fake: the discovery document
per account, batch answers matched by Content-ID, the error mapping, the mapping limits, one
token per impersonated agent; and the fake's strictness where calhub relies on it."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from hub.spec import (
    AuthError,
    CalendarRef,
    EventData,
    PermanentError,
    PushItem,
    PushResult,
    TransientError,
    Window,
    account_config,
)
from plugins.google import GoogleProvider
from plugins.google.client import DISCOVERY_FILE, UserLimits
from plugins.google.mapping import EVENT_COLOURS, event_id, nearest_colour_id
from tests.engine_support import hour
from tests.fakes.google import GoogleFake
from tests.google.conftest import USERS, account_for

BOB = CalendarRef("bob", USERS[1])


def event(i: int = 0, **kw: Any) -> EventData:
    return EventData(f"Visit {i}", hour(1 + i), hour(1 + i) + timedelta(minutes=30), **kw)


async def test_accounts_never_share_a_discovery_document(
    fake: GoogleFake, key_file: Path, provider: GoogleProvider, cal: CalendarRef
) -> None:
    shipped = DISCOVERY_FILE.read_text()
    other_root = fake.url.replace("127.0.0.1", "localhost")
    async with GoogleProvider(account_for(fake, key_file, "other", base_url=other_root)) as other:
        await provider.push(cal, [PushItem("hub-1", event())])  # aiogoogle edits its document
        assert provider.http.api.discovery_document is not other.http.api.discovery_document
        method = other.http.api.discovery_document["resources"]["events"]["methods"]["insert"]
        assert method["path"] == "calendars/{calendarId}/events"  # not rewritten by the other
        assert other.http.api["rootUrl"] == other_root + "/"
        assert str(other.http.events.list(calendarId="x").url).startswith(other_root + "/")
        assert str(provider.http.events.list(calendarId="x").url).startswith(fake.url + "/")
    assert DISCOVERY_FILE.read_text() == shipped


async def test_batch_answers_are_matched_by_content_id(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    # The fake answers the parts in reverse order, as Google may.
    items = [PushItem(f"hub-{i}", event(i)) for i in range(5)]
    outcomes = await provider.push(cal, items)
    assert [o.hub_id for o in outcomes if isinstance(o, PushResult)] == [i.hub_id for i in items]
    for item, outcome in zip(items, outcomes, strict=True):
        assert isinstance(outcome, PushResult)
        assert outcome.remote_id == event_id(item.hub_id)
        assert outcome.data is not None and outcome.data.subject == item.data.subject
    assert fake.requests["batch"] == 1


async def test_pushes_of_more_than_fifty_go_in_batches_of_fifty(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    items = [PushItem(f"hub-{i}", event(i % 40)) for i in range(120)]
    outcomes = await provider.push(cal, items)
    assert all(isinstance(o, PushResult) for o in outcomes)
    assert fake.requests["batch"] == 3 and fake.user(USERS[0]).calls == 120


async def test_each_agent_is_impersonated_with_its_own_cached_token(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    for _ in range(3):
        await provider.push(cal, [PushItem("hub-a", event())])
        await provider.push(BOB, [PushItem("hub-b", event())])
    subjects = [r["assertion"] for r in fake.token_requests]
    assert len(subjects) == 2  # one token per agent, reused
    assert fake.hub_ids(USERS[0]) == ["hub-a"] and fake.hub_ids(USERS[1]) == ["hub-b"]


async def test_errors_map_to_the_contract(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    fake.throttle(USERS[0], 1, status=403, reason="rateLimitExceeded")
    with pytest.raises(TransientError) as quota:
        await provider.get(cal, "abcdef")
    assert quota.value.retry_after and quota.value.retry_after > 0
    fake.fail(USERS[0], 1)
    with pytest.raises(TransientError, match="backendError"):
        await provider.get(cal, "abcdef")
    fake.throttle(USERS[0], 1, status=403, reason="forbidden")
    with pytest.raises(AuthError) as refused:
        await provider.get(cal, "abcdef")
    assert refused.value.mailbox == USERS[0]
    fake.delegated_scopes = frozenset()  # the Admin console lost the scope
    with pytest.raises(AuthError, match="unauthorized_client") as no_scope:
        await provider.get(BOB, "abcdef")
    assert no_scope.value.mailbox == USERS[1]


async def test_an_assertion_signed_with_another_key_is_refused(
    fake: GoogleFake, key_file: Path, tmp_path: Path, cal: CalendarRef
) -> None:
    genuine = json.loads(await anyio.Path(key_file).read_text())
    forged = {**fake.service_account_key("someone-else"), "client_email": genuine["client_email"]}
    path = tmp_path / "forged.json"
    await anyio.Path(path).write_text(json.dumps(forged))
    async with GoogleProvider(account_for(fake, path)) as provider:
        with pytest.raises(AuthError, match="Invalid JWT Signature"):
            await provider.get(cal, "abcdef")
    assert fake.tokens == {}


async def test_what_google_would_drop_silently_is_refused(
    provider: GoogleProvider, cal: CalendarRef
) -> None:
    long_categories = tuple(f"category {i:04d}" for i in range(100))  # > 1024 as JSON
    (outcome,) = await provider.push(cal, [PushItem("hub-cat", event(categories=long_categories))])
    assert isinstance(outcome, PermanentError) and "calhubCategories" in outcome.message
    (outcome,) = await provider.push(cal, [PushItem("hub-rem", event(reminder_minutes=50000))])
    assert isinstance(outcome, PermanentError) and "reminder" in outcome.message


async def test_the_agents_colour_becomes_the_nearest_google_colour_and_reads_back_exact(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    assert nearest_colour_id("#3a87ad") == "9" and nearest_colour_id(EVENT_COLOURS["11"]) == "11"
    result = await provider.push_one(cal, PushItem("hub-col", event(colour="#3a87ad")))
    (stored,) = fake.events(USERS[0])
    assert stored.fields["colorId"] == "9"
    assert (await provider.get(cal, result.remote_id)).data.colour == "#3a87ad"
    fake.owner_edit(USERS[0], stored.id, colorId="11")  # the owner picks another colour
    assert (await provider.get(cal, result.remote_id)).data.colour == EVENT_COLOURS["11"]


async def test_timed_events_are_written_in_the_calendars_zone_when_they_name_none(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    fake.user(USERS[0]).primary.time_zone = "Asia/Tokyo"
    await provider.fetch(cal, Window(hour(-1), hour(30)), None)  # learns the zone
    await provider.push_one(cal, PushItem("hub-tz", event()))
    (stored,) = fake.events(USERS[0])
    assert stored.fields["start"]["timeZone"] == "Asia/Tokyo"
    assert stored.fields["start"]["dateTime"].endswith("+09:00")


# --------------------------------------------------------------------------- the fake itself


async def api(fake: GoogleFake, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {fake.issue_token(USERS[0])}"}
    connector = aiohttp.TCPConnector(ssl=fake.ca.client_context())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, fake.url + path, headers=headers, **kw) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


EVENTS = "/calendar/v3/calendars/primary/events"


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ({"syncToken": "x", "timeMin": "2026-01-01T00:00:00Z"}, 400, "invalid"),
        ({"syncToken": "x", "privateExtendedProperty": "a=b"}, 400, "invalid"),
        ({"singleEvents": "True"}, 400, "invalidParameter"),
        ({"timeMin": "2026-01-01T00:00:00"}, 400, "badRequest"),
        ({"colour": "1"}, 400, "invalidParameter"),
        ({"q": "printer"}, 501, "notImplemented"),
    ],
)
async def test_the_fake_refuses_listings_google_refuses(
    fake: GoogleFake, query: dict[str, str], status: int, reason: str
) -> None:
    got, body = await api(fake, "GET", EVENTS, params=query)
    assert (got, body["error"]["errors"][0]["reason"]) == (status, reason)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"id": "UPPER-case", "start": {"date": "2026-05-01"}, "end": {"date": "2026-05-02"}},
         400, "invalid"),
        ({"id": "abcd", "start": {"date": "2026-05-01"}, "end": {"date": "2026-05-02"}},
         400, "invalid"),
        ({"start": {"date": "2026-05-02"}, "end": {"date": "2026-05-01"}}, 400, "timeRangeEmpty"),
        ({"subject": "Graph's name", "start": {"date": "2026-05-01"},
          "end": {"date": "2026-05-02"}}, 400, "invalid"),
        ({"recurrence": ["RRULE:FREQ=DAILY"], "start": {"date": "2026-05-01"},
          "end": {"date": "2026-05-02"}}, 501, "notImplemented"),
    ],
)  # fmt: skip
async def test_the_fake_refuses_events_google_refuses(
    fake: GoogleFake, body: dict[str, Any], status: int, reason: str
) -> None:
    got, answer = await api(fake, "POST", EVENTS, json=body)
    assert (got, answer["error"]["errors"][0]["reason"]) == (status, reason)


async def test_the_fake_keeps_a_deleted_events_id_and_drops_long_properties(
    fake: GoogleFake,
) -> None:
    long_key = "k" * 45
    body = {
        "id": "calhubtest1",
        "start": {"date": "2026-05-01"},
        "end": {"date": "2026-05-02"},
        "extendedProperties": {"private": {long_key: "v", "ok": "x" * 1025, "kept": "yes"}},
    }
    status, created = await api(fake, "POST", EVENTS, json=body)
    assert status == 200 and created["extendedProperties"]["private"] == {"kept": "yes"}
    assert (await api(fake, "DELETE", f"{EVENTS}/calhubtest1"))[0] == 204
    status, again = await api(fake, "POST", EVENTS, json=body)
    assert (status, again["error"]["errors"][0]["reason"]) == (409, "duplicate")
    status, gone = await api(fake, "DELETE", f"{EVENTS}/calhubtest1")
    assert (status, gone["error"]["errors"][0]["reason"]) == (410, "deleted")


async def test_listings_page_with_page_token_up_to_the_sync_token(
    fake: GoogleFake, key_file: Path, cal: CalendarRef
) -> None:
    for i in range(5):
        fake.owner_create(USERS[0], f"E{i}", hour(1 + i), hour(1 + i, 11))
    async with GoogleProvider(account_for(fake, key_file, page_size=2)) as provider:
        first = await provider.fetch(cal, Window(hour(-1), hour(30)), None)
        assert sorted(e.data.subject for e in first.changed) == [f"E{i}" for i in range(5)]
        assert fake.user(USERS[0]).requests == 3  # pages of 2, 2 and 1
        fake.owner_edit(USERS[0], first.changed[0].remote_id, summary="moved")
        again = await provider.fetch(cal, Window(hour(-1), hour(30)), first.cursor)
        assert [e.data.subject for e in again.changed] == ["moved"]


async def test_show_as_free_is_transparent(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    free = await provider.push_one(cal, PushItem("hub-free", event(show_as="free")))
    busy = await provider.push_one(cal, PushItem("hub-busy", event(1, show_as="busy")))
    stored = {e.id: e.fields["transparency"] for e in fake.events(USERS[0])}
    assert stored == {free.remote_id: "transparent", busy.remote_id: "opaque"}
    assert (await provider.get(cal, free.remote_id)).data.show_as == "free"
    assert (await provider.get(cal, busy.remote_id)).data.show_as == "busy"


async def test_user_limits_hold_the_concurrency_and_the_per_minute_budget() -> None:
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # a clock that moves only when waited on
        waits.append(seconds)
        now[0] += seconds

    limits = UserLimits(2, 60, clock=lambda: now[0], sleep=sleep)
    async with limits.hold("a@x", 50):
        pass
    assert waits == []  # a minute's worth is there at once
    async with limits.hold("A@x", 20):  # the same user: 10 calls short, 1 call per second
        pass
    assert waits == [pytest.approx(10.0)]
    async with limits.hold("b@x", 60):  # another user has its own budget
        pass
    assert len(waits) == 1

    running, peak = 0, 0

    async def request() -> None:
        nonlocal running, peak
        async with limits.hold("c@x"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(request)
    assert peak == 2


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "accounts.t.service_account_file: set service_account_file"),
        ({"service_account_file": "sa.json", "client_id": "c"}, "accounts.t.client_id: set"),
        ({"client_id": "c"}, "accounts.t.client_secret: client_id needs client_secret_env"),
        ({"service_account_file": "sa.json", "base_url": "http://proxy/"}, "base_url: must be"),
        ({"service_account_file": "sa.json", "page_size": 5000}, "page_size: must be 1..2500"),
    ],
)
def test_options_are_checked_when_the_config_loads(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        account_config(GoogleProvider, "t", options)


async def test_a_create_answered_409_brings_the_earlier_event_up_to_date(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    first = await provider.push_one(cal, PushItem("hub-late", event()))
    newer = EventData("Visit, moved", hour(5), hour(5, 11))  # the hub changed meanwhile
    again = await provider.push_one(cal, PushItem("hub-late", newer))
    assert again.remote_id == first.remote_id and again.version != first.version
    (stored,) = fake.events(USERS[0])
    assert stored.fields["summary"] == "Visit, moved"


async def test_a_create_whose_id_google_keeps_for_a_deleted_event_gets_its_own_id(
    provider: GoogleProvider, cal: CalendarRef, fake: GoogleFake
) -> None:
    first = await provider.push_one(cal, PushItem("hub-gone", event()))
    fake.owner_delete(USERS[0], first.remote_id)
    again = await provider.push_one(cal, PushItem("hub-gone", event()))  # no `replaces` known
    assert again.remote_id == event_id("hub-gone", first.remote_id) != first.remote_id
    assert fake.hub_ids(USERS[0]) == ["hub-gone"]
