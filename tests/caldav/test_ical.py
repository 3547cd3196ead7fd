"""EventData <-> VEVENT mapping and recurring expansion (no server)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub.spec import PRIVATE_SUBJECT, EventData, Window
from plugins.caldav import ical
from plugins.caldav.colours import nearest_name, to_hex

UTCZ = ZoneInfo("UTC")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def vcal(*lines: str) -> bytes:
    body = "\r\n".join(("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:test", *lines, "END:VCALENDAR"))
    return (body + "\r\n").encode()


def test_every_field_round_trips() -> None:
    data = EventData(
        "Fix printer",
        datetime(2026, 12, 1, 9, tzinfo=UTC),
        datetime(2026, 12, 1, 10, tzinfo=UTC),
        body="Toner\nand drum",
        location="Floor 3",
        private=True,
        show_as="tentative",
        reminder_minutes=15,
        categories=("Helpdesk", "a,b"),
        colour="#3A87AD",
        timezone="Europe/Berlin",
    )
    raw = ical.to_ical(data, "h1")
    (event,) = ical.read_resource("/c/h1.ics", '"e"', raw, WINDOW, UTCZ).events
    assert event.hub_id == "h1"
    assert event.data.canonical() == data.canonical()
    assert event.data.timezone == "Europe/Berlin"
    vevent = icalendar.Calendar.from_ical(raw).walk("VEVENT")[0]
    assert str(vevent["UID"]) == "h1@calhub"
    assert str(vevent["COLOR"]) == "steelblue"  # RFC 7986: a CSS3 name
    assert vevent.decoded("DTSTART") == datetime(2026, 12, 1, 10, tzinfo=ZoneInfo("Europe/Berlin"))
    assert b"BEGIN:VTIMEZONE" in raw and b"ATTENDEE" not in raw and b"ORGANIZER" not in raw


@pytest.mark.parametrize(
    ("show_as", "marker"),
    [
        ("free", b"TRANSP:TRANSPARENT"),
        ("oof", b"X-MICROSOFT-CDO-BUSYSTATUS:OOF"),
        ("busy", b"TRANSP:OPAQUE"),
    ],
)
def test_show_as_is_written_as_clients_read_it(show_as: str, marker: bytes) -> None:
    data = EventData("x", date(2026, 12, 1), date(2026, 12, 2), show_as=show_as)  # type: ignore[arg-type]
    raw = ical.to_ical(data, "h")
    assert marker in raw
    assert ical.read_resource("/c/h.ics", "e", raw, WINDOW, UTCZ).events[0].data.show_as == show_as


def test_the_change_time_comes_from_last_modified_or_dtstamp() -> None:
    raw = vcal(
        "BEGIN:VEVENT",
        "UID:m",
        "DTSTAMP:20261120T080000Z",
        "LAST-MODIFIED:20261121T093000Z",
        "DTSTART:20261201T090000Z",
        "SUMMARY:x",
        "END:VEVENT",
    )
    (event,) = ical.read_resource("/c/m.ics", "e", raw, WINDOW, UTCZ).events
    assert event.modified == datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    raw = raw.replace(b"LAST-MODIFIED:20261121T093000Z\r\n", b"")
    (event,) = ical.read_resource("/c/m.ics", "e", raw, WINDOW, UTCZ).events
    assert event.modified == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    written = ical.to_ical(EventData("x", date(2026, 12, 1), date(2026, 12, 2)), "h", stamp=NOW)
    assert ical.read_resource("/c/h.ics", "e", written, WINDOW, UTCZ).events[0].modified == NOW


def test_floating_times_are_read_in_the_accounts_zone() -> None:
    raw = vcal(
        "BEGIN:VEVENT",
        "UID:f",
        "DTSTART:20261201T090000",
        "DTEND:20261201T100000",
        "SUMMARY:Floating",
        "END:VEVENT",
    )
    (event,) = ical.read_resource("/c/f.ics", "e", raw, WINDOW, ZoneInfo("Europe/Paris")).events
    assert event.data.start == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_a_custom_vtimezone_is_honoured() -> None:
    raw = vcal(
        "BEGIN:VTIMEZONE",
        "TZID:Office Time",
        "BEGIN:STANDARD",
        "DTSTART:19700101T000000",
        "TZOFFSETFROM:+0530",
        "TZOFFSETTO:+0530",
        "END:STANDARD",
        "END:VTIMEZONE",
        "BEGIN:VEVENT",
        "UID:t",
        "DTSTART;TZID=Office Time:20261201T090000",
        "DURATION:PT30M",
        "SUMMARY:Zoned",
        "END:VEVENT",
    )
    (event,) = ical.read_resource("/c/t.ics", "e", raw, WINDOW, UTCZ).events
    assert event.data.start == datetime(2026, 12, 1, 3, 30, tzinfo=UTC)
    assert event.data.end == datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


def test_an_all_day_event_without_dtend_lasts_one_day() -> None:
    raw = vcal("BEGIN:VEVENT", "UID:d", "DTSTART;VALUE=DATE:20261224", "SUMMARY:Eve", "END:VEVENT")
    (event,) = ical.read_resource("/c/d.ics", "e", raw, WINDOW, UTCZ).events
    assert (event.data.start, event.data.end) == (date(2026, 12, 24), date(2026, 12, 25))


def test_a_private_external_event_keeps_nothing_but_its_time() -> None:
    raw = vcal(
        "BEGIN:VEVENT",
        "UID:p",
        "DTSTART:20261201T090000Z",
        "DTEND:20261201T100000Z",
        "SUMMARY:Secret",
        "DESCRIPTION:more",
        "LOCATION:where",
        "CATEGORIES:health",
        "CLASS:CONFIDENTIAL",
        "END:VEVENT",
    )
    (event,) = ical.read_resource("/c/p.ics", "e", raw, WINDOW, UTCZ).events
    assert event.data == EventData(
        PRIVATE_SUBJECT, event.data.start, event.data.end, private=True, timezone=None
    )


def test_a_series_expands_with_exdate_and_override_and_stable_ids() -> None:
    raw = vcal(
        "BEGIN:VEVENT",
        "UID:s",
        "DTSTART:20261201T090000Z",
        "DTEND:20261201T093000Z",
        "RRULE:FREQ=DAILY;COUNT=4",
        "EXDATE:20261203T090000Z",
        "SUMMARY:Standup",
        "END:VEVENT",
        "BEGIN:VEVENT",
        "UID:s",
        "RECURRENCE-ID:20261202T090000Z",
        "DTSTART:20261202T150000Z",
        "DTEND:20261202T153000Z",
        "SUMMARY:Late standup",
        "END:VEVENT",
    )
    resource = ical.read_resource("/c/s.ics", '"v1"', raw, WINDOW, UTCZ)
    assert resource.series
    ids = [e.remote_id for e in resource.events]
    assert ids == [
        "/c/s.ics#20261201T090000Z",
        "/c/s.ics#20261202T090000Z",
        "/c/s.ics#20261204T090000Z",
    ]
    assert {e.series_id for e in resource.events} == {"/c/s.ics"}
    assert resource.events[1].data.subject == "Late standup"
    assert resource.events[1].data.start == datetime(2026, 12, 2, 15, tzinfo=UTC)
    assert ical.split_occurrence(ids[1]) == ("/c/s.ics", "20261202T090000Z")


def test_a_series_is_expanded_only_inside_the_window() -> None:
    raw = vcal(
        "BEGIN:VEVENT",
        "UID:w",
        "DTSTART;VALUE=DATE:20261001",
        "RRULE:FREQ=WEEKLY",
        "SUMMARY:Weekly",
        "END:VEVENT",
    )
    events = ical.read_resource("/c/w.ics", "e", raw, WINDOW, UTCZ).events
    assert all(WINDOW.overlaps(e.data.start, e.data.end) for e in events)
    assert len(events) == 9  # Thursdays from 5 Nov to 31 Dec 2026


def test_a_hub_event_made_recurring_on_a_phone_stays_one_appointment() -> None:
    raw = vcal(
        "BEGIN:VEVENT",
        "UID:h@calhub",
        "X-CALHUB-ID:h",
        "DTSTART:20261201T090000Z",
        "DTEND:20261201T100000Z",
        "RRULE:FREQ=DAILY",
        "SUMMARY:Ours",
        "END:VEVENT",
    )
    resource = ical.read_resource("/c/h.ics", "e", raw, WINDOW, UTCZ)
    assert not resource.series
    assert [(e.remote_id, e.hub_id) for e in resource.events] == [("/c/h.ics", "h")]


def test_an_event_outside_the_window_is_reported_as_outside() -> None:
    raw = vcal("BEGIN:VEVENT", "UID:o", "DTSTART:20270301T090000Z", "SUMMARY:Later", "END:VEVENT")
    resource = ical.read_resource("/c/o.ics", "e", raw, WINDOW, UTCZ)
    assert (resource.events, resource.outside) == ([], ["/c/o.ics"])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not a calendar", "not valid iCalendar"),
        (vcal("BEGIN:VTODO", "UID:t", "END:VTODO"), "no VEVENT"),
        (vcal("BEGIN:VEVENT", "UID:x", "SUMMARY:Secret words", "END:VEVENT"), "without DTSTART"),
        (
            vcal(
                "BEGIN:VEVENT",
                "UID:x",
                "DTSTART:20261201T090000Z",
                "DTEND:20261201T080000Z",
                "SUMMARY:Secret words",
                "END:VEVENT",
            ),
            "DTEND before DTSTART",
        ),
    ],
)
def test_unreadable_resources_say_why_without_quoting_content(raw: bytes, reason: str) -> None:
    with pytest.raises(ical.IcalError, match=reason) as caught:
        ical.read_resource("/c/x.ics", "e", raw, WINDOW, UTCZ)
    assert "Secret" not in str(caught.value)


def test_problem_refuses_what_no_calendar_accepts() -> None:
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert ical.problem(EventData("x", start, start - timedelta(hours=1))) is not None
    assert ical.problem(EventData("x", start, date(2026, 12, 2))) is not None
    assert ical.problem(EventData("x", start, start)) is None


def test_resource_names_are_stable_and_safe() -> None:
    assert ical.resource_name("appt-1") == "appt-1.ics"
    assert ical.resource_name("a/b c") == "a_b_c.ics"


def test_colours() -> None:
    assert to_hex("SteelBlue") == "#4682b4"
    assert to_hex("#ABC") == "#aabbcc"
    assert to_hex("no-such-colour") is None
    assert nearest_name("#ff0001") == "red"


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r"), max_size=40
)
_ZONES = st.sampled_from([None, "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])


@st.composite
def event_data(draw: st.DrawFn) -> EventData:
    all_day = draw(st.booleans())
    if all_day:
        first = draw(st.dates(date(2026, 11, 2), date(2026, 12, 25)))
        start, end = first, first + timedelta(days=draw(st.integers(1, 5)))
    else:
        moment = draw(
            st.datetimes(datetime(2026, 11, 2), datetime(2026, 12, 25), timezones=st.just(UTC))
        ).replace(microsecond=0)
        start, end = moment, moment + timedelta(minutes=draw(st.integers(0, 600)))
    return EventData(
        subject=draw(_TEXT),
        start=start,
        end=end,
        body=draw(_TEXT),
        location=draw(_TEXT),
        private=draw(st.booleans()),
        show_as=draw(st.sampled_from(["busy", "free", "tentative", "oof"])),
        reminder_minutes=draw(st.none() | st.integers(0, 10_000)),
        categories=tuple(draw(st.lists(_TEXT.filter(str.strip), max_size=3, unique=True))),
        colour=draw(st.none() | st.from_regex(r"#[0-9a-f]{6}", fullmatch=True)),
        timezone=None if all_day else draw(_ZONES),
    )


@settings(max_examples=50, deadline=None)
@given(event_data())
@example(  # icalendar's own escaping turned a literal backslash-N into a line break
    EventData(
        subject="C:\\New\\N; a, b",
        start=datetime(2026, 11, 2, tzinfo=UTC),
        end=datetime(2026, 11, 2, 1, tzinfo=UTC),
        location="\\N",
        body="x\\ny",
    )
)
def test_any_hub_event_round_trips_through_icalendar(data: EventData) -> None:
    raw = ical.to_ical(data, "prop-1")
    (event,) = ical.read_resource("/c/p.ics", "e", raw, WINDOW, UTCZ).events
    assert event.hub_id == "prop-1"
    assert event.data.canonical() == data.canonical()
