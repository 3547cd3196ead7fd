"""iCalendar (RFC 5545) feed of one agent's hub calendar, built with the ``icalendar`` library.

One VEVENT per live appointment, with a UID that never changes (``<appointment id>@calhub``)
and ``SEQUENCE`` = the appointment's version, so calendar apps update entries in place rather
than duplicating them. A private entry is served as busy time only: summary
"Data unavailable", no description, no location — its content is not in the bytes at all.

A feed is fetched every few minutes by every subscribed app: it serves a window, by default
from :func:`feed_start` on, rather than years of history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

from icalendar import Calendar, Event, vText
from icalendar.parser import Contentline

from hub.model import Agent, Appointment, PushState
from hub.spec import PRIVATE_SUBJECT, EventData, as_utc
from hub.window import sync_window

PRODID = "-//calhub//calhub hub calendar//EN"
UID_DOMAIN = "calhub"
FEED_MIN_DAYS_PAST = 30  # a feed shows at least the last month, whatever [hub] days_past says
# RFC 5545 3.3.11 allows no control character in TEXT but HTAB; a line break is written "\n".
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BREAKS = re.compile(r"\r\n?|\n")
_ESCAPED = re.compile(r"[\\;,\n]")  # what TEXT escapes (RFC 5545 3.3.11)


def feed_start(now: datetime, days_past: int) -> datetime:
    """Default start of the feed's window: midnight UTC, ``max(days_past, 30)`` days before
    today (the window has no end)."""
    return sync_window(now, max(days_past, FEED_MIN_DAYS_PAST), 0).start


def uid(appointment_id: str) -> str:
    return f"{appointment_id}@{UID_DOMAIN}"


def text(value: str) -> str:
    """``value`` as an iCalendar TEXT may hold it: line breaks kept (the library escapes
    them), every other control character dropped. Values come from the API, the config and
    remote calendars; none may break the feed."""
    return _NOT_TEXT.sub("", _BREAKS.sub("\n", value))


def one_line(value: str) -> str:
    """:func:`text` on one line: each line break becomes a space (a calendar's name)."""
    return text(_BREAKS.sub(" ", value)).replace("\t", " ")


def _value(moment: datetime | date) -> datetime | date:
    # Timed entries in UTC (...Z) need no VTIMEZONE; all-day entries stay DATE values.
    return as_utc(moment) if isinstance(moment, datetime) else moment


def appointment_event(appt: Appointment, data: EventData, now: datetime) -> Event:
    """The VEVENT of one appointment (also the e-mail copies' attachment): stable UID,
    SEQUENCE = version, never an ATTENDEE or ORGANIZER (no invitation, no RSVP)."""
    event = Event()
    event.add("uid", uid(appt.id))
    event.add("dtstamp", now)
    event.add("dtstart", _value(appt.start))
    event.add("dtend", _value(appt.end))
    event.add("sequence", appt.version)
    if appt.created_at is not None:
        event.add("created", as_utc(appt.created_at))
    if appt.updated_at is not None:
        event.add("last-modified", as_utc(appt.updated_at))
    event.add("transp", "TRANSPARENT" if data.show_as == "free" else "OPAQUE")
    # Held for approval: shown, but not yet a firm booking.
    event.add("status", "TENTATIVE" if appt.push_state is PushState.PENDING else "CONFIRMED")
    if appt.private or data.private:
        event.add("class", "PRIVATE")
        event.add("summary", PRIVATE_SUBJECT)
        return event
    event.add("class", "PUBLIC")
    event.add("summary", text(data.subject))
    if data.body:
        event.add("description", text(data.body))
    if data.location:
        event.add("location", text(data.location))
    if data.categories:
        event.add("categories", [one_line(c) for c in data.categories])
    return event


_FEED_END = b"END:VCALENDAR\r\n"


def feed_head(agent: Agent) -> bytes:
    """The feed's calendar properties: its text up to the first VEVENT."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", one_line(f"{agent.name} (calhub)"))
    if agent.colour:
        cal.add("x-apple-calendar-color", agent.colour)
    text = cal.to_ical()
    assert text.endswith(_FEED_END)
    return text[: -len(_FEED_END)]


def feed_stamp(now: datetime | None = None) -> datetime:
    """The ``DTSTAMP`` of events rendered at ``now`` (whole seconds, UTC)."""
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


def event_text(appt: Appointment, data: EventData, stamp: datetime) -> bytes:
    """One VEVENT of the feed as its folded content lines: a feed is its head, its events'
    texts and an end line, so an unchanged event's text can be kept from one rendering of
    the feed to the next (see :mod:`hub.admin.feed_cache`).

    The bytes ``appointment_event(...).to_ical()`` gives, written directly: building the
    library's component costs some 200 us an event, and a feed has thousands. The library
    still escapes the text values and folds the long lines (its ``vText``, ``Contentline``);
    the properties come in its order (its ``Event.canonical_order``, then by name)."""
    private = appt.private or data.private
    lines = [
        "BEGIN:VEVENT",
        "SUMMARY:" + _text(PRIVATE_SUBJECT if private else text(data.subject)),
        _moment("DTSTART", _value(appt.start)),
        _moment("DTEND", _value(appt.end)),
        _moment("DTSTAMP", stamp),
        "UID:" + _text(uid(appt.id)),
        f"SEQUENCE:{int(appt.version)}",
    ]
    if data.categories and not private:
        lines.append("CATEGORIES:" + ",".join(_text(one_line(c)) for c in data.categories))
    lines.append("CLASS:PRIVATE" if private else "CLASS:PUBLIC")
    if appt.created_at is not None:
        lines.append(_moment("CREATED", as_utc(appt.created_at)))
    if data.body and not private:
        lines.append("DESCRIPTION:" + _text(text(data.body)))
    if appt.updated_at is not None:
        lines.append(_moment("LAST-MODIFIED", as_utc(appt.updated_at)))
    if data.location and not private:
        lines.append("LOCATION:" + _text(text(data.location)))
    pending = appt.push_state is PushState.PENDING
    lines.append("STATUS:TENTATIVE" if pending else "STATUS:CONFIRMED")
    lines.append("TRANSP:TRANSPARENT" if data.show_as == "free" else "TRANSP:OPAQUE")
    lines.append("END:VEVENT\r\n")
    return "\r\n".join(map(_folded, lines)).encode()


def _text(value: str) -> str:
    if _ESCAPED.search(value) is None:
        return value  # nothing the library would escape: most subjects and every UID
    return vText(value).to_ical().decode()


def _moment(name: str, value: datetime | date) -> str:
    day = f"{value.year:04d}{value.month:02d}{value.day:02d}"
    if isinstance(value, datetime):  # UTC here (_value, as_utc, feed_stamp)
        return f"{name}:{day}T{value.hour:02d}{value.minute:02d}{value.second:02d}Z"
    return f"{name};VALUE=DATE:{day}"


def _folded(line: str) -> str:
    # Lines under 75 octets are left as they are; the library folds the others.
    if len(line) < 75 and line.isascii():
        return line
    return str(Contentline(line).to_ical().decode())


def assemble_feed(head: bytes, events: Iterable[bytes]) -> bytes:
    """The feed made of :func:`feed_head` and :func:`event_text` pieces, in that order."""
    return b"".join((head, *events, _FEED_END))


def build_feed(
    agent: Agent,
    entries: Iterable[tuple[Appointment, EventData]],
    *,
    now: datetime | None = None,
) -> bytes:
    """The feed of ``agent``: each entry is an appointment and its rendered event content.
    Tombstones are left out."""
    stamp = feed_stamp(now)
    return assemble_feed(
        feed_head(agent),
        (event_text(appt, data, stamp) for appt, data in entries if not appt.deleted),
    )


__all__ = [
    "FEED_MIN_DAYS_PAST",
    "PRODID",
    "appointment_event",
    "assemble_feed",
    "build_feed",
    "event_text",
    "feed_head",
    "feed_stamp",
    "feed_start",
    "uid",
]
