"""CalDAV provider rules against real Radicale, each with a test that fails when it breaks:
a create never takes over another hub id's resource, find() answers only for resources tagged
with the asked id, and an occurrence that left the window is never reported deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar

from hub.spec import EventData, PreconditionFailed, PushItem, PushResult, Window
from plugins.caldav.provider import CalDAVProvider
from tests.caldav.conftest import cal_for
from tests.caldav.servers import Phone, phone_ical

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60))


def visit(subject: str = "Visit", days: int = 1) -> EventData:
    return EventData(subject, NOW + timedelta(days=days), NOW + timedelta(days=days, hours=1))


def daily(start: datetime, count: int, subject: str) -> bytes:
    """A daily series of ``count`` 15-minute occurrences, as a phone writes it."""
    cal = icalendar.Calendar.from_ical(phone_ical(EventData(subject, start, start), "series-2"))
    event = cal.walk("VEVENT")[0]
    event["DTEND"] = icalendar.vDDDTypes(start + timedelta(minutes=15))
    event.add("RRULE", {"FREQ": "DAILY", "COUNT": count})
    return cal.to_ical()


async def test_a_create_meeting_a_resource_of_another_hub_id_is_a_precondition_failure(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str
) -> None:
    # Another hub appointment's event sits at the path this create addresses (a client
    # copied it there, or two hub ids map to one file name).
    theirs = phone_ical(visit("Theirs"), "other@calhub", hub_id="other")
    await phone.put("mine.ics", theirs)

    (outcome,) = await dav.push(cal_for(radicale_collection), [PushItem("mine", visit("Mine"))])

    assert isinstance(outcome, PreconditionFailed), outcome
    status, body, _ = await phone.send("GET", phone.url_of("mine.ics"))
    assert status == 200 and b"X-CALHUB-ID:other" in body and b"Theirs" in body


async def test_find_answers_only_for_resources_tagged_with_the_asked_hub_id(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str
) -> None:
    cal = cal_for(radicale_collection)
    await phone.put("untagged.ics", phone_ical(visit("A phone's own"), "untagged-uid"))
    await phone.put("other-tag.ics", phone_ical(visit("Copied"), "copied-uid", hub_id="someone"))
    (ours,) = await dav.push(cal, [PushItem("ours", visit("Ours"))])
    assert isinstance(ours, PushResult)

    found = await dav.find(cal, ["untagged", "other-tag", "ours"])

    assert set(found) == {"ours"}  # nothing at <hub id>.ics is ours without our tag
    assert found["ours"].remote_id == ours.remote_id and found["ours"].hub_id == "ours"


async def test_an_occurrence_of_a_changed_series_that_left_the_window_is_not_deleted(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str
) -> None:
    cal = cal_for(radicale_collection)
    start = WINDOW.start + timedelta(hours=2)
    href = await phone.put("standup.ics", daily(start, 5, "Standup"))
    first = await dav.fetch(cal, WINDOW, None)
    assert len(first.changed) == 5

    # Two days later the phone renames the series: its first two occurrences are now before
    # the window.
    await phone.put("standup.ics", daily(start, 5, "Standup (room 2)"))
    later = Window(WINDOW.start + timedelta(days=2), WINDOW.end + timedelta(days=2))
    moved = await dav.fetch(cal, later, first.cursor)

    keys = [(start + timedelta(days=d)).strftime("%Y%m%dT%H%M%SZ") for d in range(5)]
    assert sorted(e.remote_id for e in moved.changed) == [f"{href}#{k}" for k in keys[2:]]
    assert moved.deleted == []
    assert sorted(moved.left_window) == [f"{href}#{k}" for k in keys[:2]]
