"""Provider behaviour against Radicale that the conformance suite does not reach: discovery,
recurring series changes, the moving window, the etag fallback, multiget batches, check()."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import icalendar
import pytest

from hub.spec import AuthError, CalendarRef, CursorInvalid, EventData, PushItem, Window
from plugins.caldav.provider import CalDAVProvider
from tests.caldav.conftest import account, cal_for
from tests.caldav.proxy import DavProxy, Fault
from tests.caldav.servers import DavServer, Phone, make_calendar, phone_ical

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60))


def series(start: datetime, count: int) -> bytes:
    cal = icalendar.Calendar.from_ical(phone_ical(EventData("Standup", start, start), "series-1"))
    event = cal.walk("VEVENT")[0]
    event["DTEND"] = icalendar.vDDDTypes(start + timedelta(minutes=15))
    event.add("RRULE", {"FREQ": "DAILY", "COUNT": count})
    return cal.to_ical()


@pytest.fixture
async def carol(radicale_proxy: DavProxy) -> AsyncIterator[CalDAVProvider]:
    opts = account(radicale_proxy.url).options
    config = replace(account(radicale_proxy.url), options={**opts, "username": "carol",
                                                            "password": "secret-c"})  # fmt: skip
    async with CalDAVProvider(config) as provider:
        yield provider


async def test_discovery_finds_the_first_calendar_holding_events(
    carol: CalDAVProvider, radicale_server: DavServer
) -> None:
    phone = Phone(radicale_server, "carol", radicale_server.url + "carol/a-tasks/")
    todo_only = (
        b'<?xml version="1.0"?><c:mkcalendar xmlns:d="DAV:" '
        b'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
        b'<c:supported-calendar-component-set><c:comp name="VTODO"/>'
        b"</c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>"
    )
    status, _, _ = await phone.send("MKCALENDAR", phone.collection_url, todo_only)
    assert status == 201
    work = await make_calendar(radicale_server, "carol", "b-work")

    assert (await carol.discovery.principal()).endswith("/carol/")
    found = await carol.discovery.collection(CalendarRef("carol", "carol@example.com"))
    assert found.url.endswith("/carol/b-work/")
    assert found.url.replace(carol.client.base_url, radicale_server.url) == work
    # and it is usable as the default calendar
    await carol.push_one(CalendarRef("carol", ""), PushItem("d-1", EventData("x", NOW, NOW)))


async def test_a_changed_series_reports_its_vanished_occurrences_as_deleted(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str
) -> None:
    cal = cal_for(radicale_collection)
    start = NOW + timedelta(days=1)
    href = await phone.put("standup.ics", series(start, 5))
    first = await dav.fetch(cal, WINDOW, None)
    assert len(first.changed) == 5 and {e.series_id for e in first.changed} == {href}

    await phone.put("standup.ics", series(start, 3))
    shorter = await dav.fetch(cal, WINDOW, first.cursor)
    assert len(shorter.changed) == 3
    keys = [(start + timedelta(days=d)).strftime("%Y%m%dT%H%M%SZ") for d in (3, 4)]
    assert sorted(shorter.deleted) == [f"{href}#{k}" for k in keys]

    await phone.delete(cal, href)
    gone = await dav.fetch(cal, WINDOW, shorter.cursor)
    assert gone.changed == []
    assert sorted(gone.deleted) == sorted(
        [href] + [f"{href}#{(start + timedelta(days=d)).strftime('%Y%m%dT%H%M%SZ')}"
                  for d in range(3)]
    )  # fmt: skip


async def test_events_entering_the_window_as_days_pass_are_fetched(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    cal = cal_for(radicale_collection)
    later = WINDOW.end + timedelta(days=1)
    href = await phone.create_external(cal, EventData("Later", later, later + timedelta(hours=1)))
    first = await dav.fetch(cal, WINDOW, None)
    assert first.changed == []

    tomorrow = Window(WINDOW.start + timedelta(days=2), WINDOW.end + timedelta(days=2))
    before = radicale_proxy.requests
    moved = await dav.fetch(cal, tomorrow, first.cursor)
    assert [e.remote_id for e in moved.changed] == [href]
    assert radicale_proxy.requests - before == 4  # ctag, sync-collection, slice, multiget
    assert (await dav.fetch(cal, tomorrow, moved.cursor)).changed == []


async def test_a_server_that_stops_offering_sync_collection_is_listed_by_etag(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    cal = cal_for(radicale_collection)
    href = await phone.create_external(cal, EventData("A", NOW, NOW + timedelta(hours=1)))
    first = await dav.fetch(cal, WINDOW, None)
    assert first.notices == []

    radicale_proxy.no_sync_collection = True  # e.g. a proxy in front that rejects the REPORT
    fallback = await dav.fetch(cal, WINDOW, first.cursor)
    assert fallback.full and [e.remote_id for e in fallback.changed] == [href]
    assert len(fallback.notices) == 1 and "sync-collection" in fallback.notices[0]

    await phone.delete(cal, href)
    after = await dav.fetch(cal, WINDOW, fallback.cursor)
    assert (after.deleted, after.notices) == ([href], [])  # reported once, not every pass


async def test_many_changes_cost_one_multiget_per_hundred(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    cal = cal_for(radicale_collection)
    first = await dav.fetch(cal, WINDOW, None)
    for i in range(150):
        start = NOW + timedelta(hours=i)
        await phone.create_external(cal, EventData(f"E{i}", start, start + timedelta(minutes=30)))
    before = radicale_proxy.requests
    changes = await dav.fetch(cal, WINDOW, first.cursor)
    assert len(changes.changed) == 150
    assert radicale_proxy.requests - before == 2 + 2  # ctag, sync-collection, 2 multigets


async def test_check_reports_each_step_and_never_raises(
    dav: CalDAVProvider, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    cal = cal_for(radicale_collection)
    missing = CalendarRef("ghost", "", "/alice/missing/")
    items = await dav.check([cal, missing], write=True)
    summary = [(i.what, i.ok) for i in items]
    assert summary == [
        ("principal", True), ("calendar alice", True), ("read alice", True),
        ("write alice", True), ("calendar ghost", False),
    ]  # fmt: skip
    assert (await dav.fetch(cal, WINDOW, None)).changed == []  # the probe was deleted

    async with CalDAVProvider(account(radicale_proxy.url, password="wrong")) as refused:
        items = await refused.check([cal])
    assert [(i.what, i.ok) for i in items] == [("principal", False), ("calendar alice", False)]
    assert "401" in items[0].detail


async def test_a_shared_service_account_serves_each_agents_own_calendar(
    radicale_server: DavServer, radicale_proxy: DavProxy
) -> None:
    # As docs/caldav.md describes: each agent owns /<agent>/helpdesk/, the "calhub" user may
    # write the events there, and each agent's `calendar` key points at their collection.
    for agent in ("alice", "bob"):
        phone = Phone(radicale_server, agent, f"{radicale_server.url}{agent}/helpdesk/")
        status, _, _ = await phone.send("MKCALENDAR", phone.collection_url)
        assert status in (201, 405)  # 405: made by an earlier run of this session
    service = replace(
        account(radicale_proxy.url),
        options={"url": radicale_proxy.url, "username": "calhub", "password": "secret-h"},
    )
    cals = [CalendarRef(a, f"{a}@example.com", f"/{a}/helpdesk/") for a in ("alice", "bob")]
    async with CalDAVProvider(service) as provider:
        items = await provider.check(cals, write=True)
        assert all(i.ok for i in items if i.what != "principal"), items
        for n, cal in enumerate(cals):
            await provider.push_one(cal, PushItem(f"shared-{n}", EventData("x", NOW, NOW)))
        listed = [await provider.fetch(cal, WINDOW, None) for cal in cals]
        assert [[e.hub_id for e in r.changed if e.hub_id] for r in listed] == [
            ["shared-0"],
            ["shared-1"],
        ]
        outside = CalendarRef("carol", "", "/carol/helpdesk/")
        assert [i.ok for i in await provider.check([outside])][-1] is False


_TOKEN_REFUSED = '<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:valid-sync-token/></d:error>'


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(410, method="REPORT"), CursorInvalid),
        (Fault(409, method="REPORT", body=_TOKEN_REFUSED), CursorInvalid),
        (Fault(403, method="REPORT", body=_TOKEN_REFUSED), CursorInvalid),
        (Fault(403, method="REPORT"), AuthError),  # no precondition: the rights, not the token
    ],
)
async def test_how_a_refused_sync_report_is_read(
    dav: CalDAVProvider,
    radicale_proxy: DavProxy,
    radicale_collection: str,
    fault: Fault,
    error: type[Exception],
) -> None:
    cal = cal_for(radicale_collection)
    first = await dav.fetch(cal, WINDOW, None)
    radicale_proxy.faults.append(fault)
    with pytest.raises(error):
        await dav.fetch(cal, WINDOW, first.cursor)


async def test_an_unchanged_calendar_costs_one_request_once_its_ctag_is_confirmed(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    cal = cal_for(radicale_collection)
    await phone.create_external(cal, EventData("A", NOW, NOW + timedelta(hours=1)))
    first = await dav.fetch(cal, WINDOW, None)
    costs, cursors = [], [first.cursor]
    for _ in range(3):
        before = radicale_proxy.requests
        again = await dav.fetch(cal, WINDOW, cursors[-1])
        assert (again.changed, again.deleted, again.full) == ([], [], False)
        costs.append(radicale_proxy.requests - before)
        cursors.append(again.cursor)
    # The first pass lists the changes too (the full listing may be newer than its ctag);
    # it found none, so the ctag names what the hub knows: from then on the ctag alone.
    assert costs == [2, 1, 1]
    assert cursors[1] == cursors[2] == cursors[3]

    other = await phone.create_external(cal, EventData("B", NOW, NOW + timedelta(hours=2)))
    changed = await dav.fetch(cal, WINDOW, cursors[-1])
    assert [e.remote_id for e in changed.changed] == [other]


async def test_without_a_ctag_each_pass_is_one_sync_collection_report(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    radicale_proxy.no_ctag = True
    cal = cal_for(radicale_collection)
    cursor = (await dav.fetch(cal, WINDOW, None)).cursor
    costs = []
    for _ in range(2):
        before = radicale_proxy.requests
        again = await dav.fetch(cal, WINDOW, cursor)
        assert (again.changed, again.deleted) == ([], [])
        costs.append(radicale_proxy.requests - before)
        cursor = again.cursor
    assert costs == [1, 1] and radicale_proxy.by_method["PROPFIND"] == 2  # the first fetch's

    href = await phone.create_external(cal, EventData("A", NOW, NOW + timedelta(hours=1)))
    assert [e.remote_id for e in (await dav.fetch(cal, WINDOW, cursor)).changed] == [href]


async def test_an_event_the_hub_wrote_and_the_phone_deleted_is_reported_although_the_ctag_is_back(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    cal = cal_for(radicale_collection)
    first = await dav.fetch(cal, WINDOW, None)
    confirmed = await dav.fetch(cal, WINDOW, first.cursor)  # the empty calendar's ctag
    (created,) = await dav.push(cal, [PushItem("h1", EventData("Visit", NOW, NOW))])
    assert not isinstance(created, Exception)
    await phone.delete(cal, created.remote_id)  # the calendar is as empty as the ctag says

    gone = await dav.fetch(cal, WINDOW, confirmed.cursor)
    assert gone.deleted == [created.remote_id]


async def test_a_cursor_from_another_process_is_checked_by_listing(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str, radicale_proxy: DavProxy
) -> None:
    cal = cal_for(radicale_collection)
    first = await dav.fetch(cal, WINDOW, None)
    confirmed = await dav.fetch(cal, WINDOW, first.cursor)
    async with CalDAVProvider(account(radicale_proxy.url)) as restarted:
        # What this process wrote before the restart (and the agent may have undone since)
        # is unknown to the new one: it lists the changes although the ctag did not move.
        before = radicale_proxy.by_method["REPORT"]
        again = await restarted.fetch(cal, WINDOW, confirmed.cursor)
        assert (again.changed, again.deleted) == ([], [])
        assert radicale_proxy.by_method["REPORT"] - before == 1
    before = radicale_proxy.by_method["REPORT"]
    await dav.fetch(cal, WINDOW, confirmed.cursor)
    assert radicale_proxy.by_method["REPORT"] == before  # the process that issued it: ctag only
