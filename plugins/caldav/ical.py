"""iCalendar for the CalDAV provider: EventData <-> VEVENT, and calendar resources -> events.

Writing: one VEVENT per hub appointment with UID ``<hub_id>@calhub`` and the hub tag in
``X-CALHUB-ID``; never ATTENDEE or ORGANIZER (an appointment, never a meeting).

Reading: a resource is one event, or a recurring series (RRULE/RDATE, EXDATE, RECURRENCE-ID
overrides) expanded with recurring-ical-events into its occurrences inside the window; each
occurrence gets the remote id ``<href>#<recurrence-id in UTC>`` and ``series_id = href``.
Floating times are read in the account's time zone. A private external event comes back as
busy time with the subject "Data unavailable" and nothing else, so its content never leaves
this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from hub.spec import PRIVATE_SUBJECT, EventData, RemoteEvent, ShowAs, Window, as_utc
from plugins.caldav.colours import nearest_name, normalise_hex, to_hex

HUB_PROP = "X-CALHUB-ID"
COLOUR_PROP = "X-CALHUB-COLOUR"
BUSY_PROP = "X-MICROSOFT-CDO-BUSYSTATUS"  # Outlook's out-of-office marker, read by many clients
PRODID = "-//calhub//CalDAV provider//EN"
OCCURRENCE_SEP = "#"

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]")


class _Text(icalendar.vText):
    """TEXT with RFC 5545 escaping only.

    icalendar's own escaping first turns a literal backslash-N into a line break, so a
    subject or location holding "\\N" (a Windows path, say) would come back changed.
    """

    def to_ical(self) -> bytes:
        text = str(self)
        for raw, escaped in (("\\", "\\\\"), (";", "\\;"), (",", "\\,")):
            text = text.replace(raw, escaped)
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
        return text.encode(self.encoding)


class IcalError(ValueError):
    """A resource that cannot be read as events; the message never quotes its content."""


def uid_for(hub_id: str) -> str:
    return f"{hub_id}@calhub"


def resource_name(hub_id: str) -> str:
    """The file name of a hub appointment's resource: stable, so a retried create hits it."""
    return _UNSAFE_NAME.sub("_", hub_id) + ".ics"


# --------------------------------------------------------------------------- writing


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or name.upper() == "UTC":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # a zone this machine does not know: write UTC, which is never wrong


def problem(data: EventData) -> str | None:
    """Why ``data`` cannot be written as a VEVENT, or None. Radicale stores an event that ends
    before it starts; every other calendar refuses it, so the provider refuses it first."""
    if isinstance(data.start, datetime) != isinstance(data.end, datetime):
        return "start and end mix a date and a date-time"
    if as_utc(data.end) < as_utc(data.start):
        return "the event ends before it starts"
    return None


def to_ical(data: EventData, hub_id: str, *, stamp: datetime | None = None) -> bytes:
    """The calendar object resource of one hub appointment."""
    cal = icalendar.Calendar()
    cal.add("VERSION", "2.0")
    cal.add("PRODID", PRODID)
    event = icalendar.Event()
    event.add("UID", uid_for(hub_id))
    stamp = (stamp or datetime.now(UTC)).astimezone(UTC)
    event.add("DTSTAMP", stamp)
    event.add("LAST-MODIFIED", stamp)
    event.add(HUB_PROP, hub_id)
    if data.all_day:
        event.add("DTSTART", data.start)
        event.add("DTEND", data.end)
    else:
        zone = _zone(data.timezone)
        for key, value in (("DTSTART", data.start), ("DTEND", data.end)):
            moment = as_utc(value)
            event.add(key, moment.astimezone(zone) if zone else moment)
    event.add("SUMMARY", _Text(data.subject))
    if data.body:
        event.add("DESCRIPTION", _Text(data.body))
    if data.location:
        event.add("LOCATION", _Text(data.location))
    event.add("CLASS", "PRIVATE" if data.private else "PUBLIC")
    event.add("TRANSP", "TRANSPARENT" if data.show_as == "free" else "OPAQUE")
    if data.show_as == "tentative":
        event.add("STATUS", "TENTATIVE")
    if data.show_as == "oof":
        event.add(BUSY_PROP, "OOF")
    if data.categories:
        event.add("CATEGORIES", list(data.categories))
    colour = normalise_hex(data.colour or "")
    if colour:
        event.add("COLOR", nearest_name(colour))
        event.add(COLOUR_PROP, colour)
    if data.reminder_minutes is not None:
        alarm = icalendar.Alarm()
        alarm.add("ACTION", "DISPLAY")
        alarm.add("DESCRIPTION", "Reminder")
        alarm.add("TRIGGER", timedelta(minutes=-data.reminder_minutes))
        event.add_component(alarm)
    cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class Resource:
    """What one calendar object resource holds, seen through the sync window.

    ``events``: its events (or occurrences) overlapping the window. ``outside``: the remote
    id of a single event that exists but lies outside the window. ``series``: whether it is
    an expanded recurring series (occurrence ids are then ``href#recurrence-id``).
    """

    href: str
    etag: str
    hub_id: str | None = None
    events: list[RemoteEvent] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    series: bool = False


def parse_calendar(raw: bytes | str) -> icalendar.Calendar:
    try:
        cal = icalendar.Calendar.from_ical(raw)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise IcalError(f"not valid iCalendar ({type(exc).__name__})") from None
    if not isinstance(cal, icalendar.Calendar):
        raise IcalError("not a VCALENDAR")
    return cal


def hub_id_of(cal: icalendar.Calendar) -> str | None:
    for event in cal.walk("VEVENT"):
        value = event.get(HUB_PROP)
        if value:
            return str(value).strip()
    return None


def occurrence_key(value: datetime | date, zone: tzinfo) -> str:
    """The UTC form of a recurrence id used in occurrence remote ids."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def split_occurrence(remote_id: str) -> tuple[str, str | None]:
    """``(href, recurrence key)`` of a remote id; the key is None for a single event."""
    href, sep, key = remote_id.rpartition(OCCURRENCE_SEP)
    if not sep or not re.fullmatch(r"\d{8}(T\d{6}Z)?", key):
        return remote_id, None
    return href, key


def occurrence_time(key: str) -> datetime:
    """The (UTC) moment of an occurrence key, for telling "left the window" from "deleted"."""
    if "T" in key:
        return datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return datetime.strptime(key, "%Y%m%d").replace(tzinfo=UTC)


def read_resource(
    href: str,
    etag: str,
    raw: bytes | str,
    window: Window,
    zone: tzinfo,
) -> Resource:
    """The events of one resource inside ``window``; raises :class:`IcalError`."""
    cal = parse_calendar(raw)
    vevents = cal.walk("VEVENT")
    if not vevents:
        raise IcalError("no VEVENT in the resource")
    hub_id = hub_id_of(cal)
    result = Resource(href=href, etag=etag, hub_id=hub_id)
    recurring = any("RRULE" in e or "RDATE" in e or "RECURRENCE-ID" in e for e in vevents)
    if hub_id is not None or not recurring:
        # A hub appointment someone made recurring on a phone stays one appointment.
        master = next((e for e in vevents if "RECURRENCE-ID" not in e), vevents[0])
        data = event_data(master, zone, hub_owned=hub_id is not None)
        if window.overlaps(data.start, data.end):
            modified = last_modified(master)
            result.events.append(RemoteEvent(href, etag, data, hub_id=hub_id, modified=modified))
        else:
            result.outside.append(href)
        return result
    result.series = True
    try:
        occurrences = recurring_ical_events.of(cal).between(
            _naive_in(window.start, zone), _naive_in(window.end, zone)
        )
    except Exception as exc:  # the library raises its own types for bad rules
        raise IcalError(f"recurrence cannot be expanded ({type(exc).__name__})") from None
    for occurrence in occurrences:
        data = event_data(occurrence, zone, hub_owned=False)
        if not window.overlaps(data.start, data.end):
            continue
        rid = occurrence.get("RECURRENCE-ID")
        moment = rid.dt if rid is not None else occurrence.decoded("DTSTART")
        remote_id = f"{href}{OCCURRENCE_SEP}{occurrence_key(moment, zone)}"
        result.events.append(RemoteEvent(remote_id, etag, data, series_id=href))
    return result


def last_modified(component: Any) -> datetime | None:
    """When the event was last changed (LAST-MODIFIED, else DTSTAMP), for the ``newest``
    conflict policy; None when neither is a readable UTC or zoned time."""
    for key in ("LAST-MODIFIED", "DTSTAMP"):
        try:
            value = component.decoded(key) if key in component else None
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
    return None


def _naive_in(moment: datetime, zone: tzinfo) -> datetime:
    # recurring-ical-events compares floating events against the bounds as given: hand it
    # local wall time in the account's zone so floating and zoned events line up.
    return moment.astimezone(zone).replace(tzinfo=None)


def _moment(component: Any, key: str, zone: tzinfo) -> datetime | date | None:
    if key not in component:
        return None
    try:
        value = component.decoded(key)
    except (ValueError, KeyError, TypeError):
        raise IcalError(f"{key} cannot be read") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return value
    raise IcalError(f"{key} is not a date or date-time")


def _span(component: Any, zone: tzinfo) -> tuple[datetime | date, datetime | date]:
    start = _moment(component, "DTSTART", zone)
    if start is None:
        raise IcalError("VEVENT without DTSTART")
    end = _moment(component, "DTEND", zone)
    if end is None and "DURATION" in component:
        try:
            end = start + component.decoded("DURATION")
        except (ValueError, TypeError):
            raise IcalError("DURATION cannot be read") from None
    if end is None:
        # RFC 5545 3.6.1: a DATE start without end lasts one day, a DATE-TIME start no time.
        end = start + timedelta(days=1) if not isinstance(start, datetime) else start
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise IcalError("DTSTART and DTEND mix a date and a date-time")
    if isinstance(start, datetime):
        start, end = as_utc(start), as_utc(end)
    if end < start:
        raise IcalError("DTEND before DTSTART")
    return start, end


def _show_as(component: Any) -> ShowAs:
    if str(component.get(BUSY_PROP, "")).upper() == "OOF":
        return "oof"
    if str(component.get("TRANSP", "")).upper() == "TRANSPARENT":
        return "free"
    if str(component.get("STATUS", "")).upper() == "TENTATIVE":
        return "tentative"
    return "busy"


def _reminder(component: Any) -> int | None:
    for alarm in component.walk("VALARM"):
        trigger = alarm.get("TRIGGER")
        if trigger is None or trigger.params.get("RELATED", "START") != "START":
            continue
        try:
            value = alarm.decoded("TRIGGER")
        except (ValueError, TypeError):
            continue
        if isinstance(value, timedelta) and value <= timedelta(0):
            return int(-value.total_seconds() // 60)
    return None


def _categories(component: Any) -> tuple[str, ...]:
    found: list[str] = []
    values = component.get("CATEGORIES")
    for prop in values if isinstance(values, list) else [values] if values else []:
        found.extend(str(c) for c in getattr(prop, "cats", []))
    return tuple(dict.fromkeys(c for c in found if c))


def _timezone_name(component: Any) -> str | None:
    prop = component.get("DTSTART")
    tzid = prop.params.get("TZID") if prop is not None else None
    return str(tzid) if tzid else None


def event_data(component: Any, zone: tzinfo, *, hub_owned: bool) -> EventData:
    """The EventData of one VEVENT (or expanded occurrence); private externals redacted."""
    start, end = _span(component, zone)
    private = str(component.get("CLASS", "PUBLIC")).upper() in ("PRIVATE", "CONFIDENTIAL")
    show_as = _show_as(component)
    timezone = _timezone_name(component)
    if private and not hub_owned:
        return EventData(
            subject=PRIVATE_SUBJECT, start=start, end=end, private=True, show_as=show_as,
            timezone=timezone,
        )  # fmt: skip
    colour_prop = component.get(COLOUR_PROP) or component.get("COLOR")
    return EventData(
        subject=str(component.get("SUMMARY", "")),
        start=start,
        end=end,
        body=str(component.get("DESCRIPTION", "")),
        location=str(component.get("LOCATION", "")),
        private=private,
        show_as=show_as,
        reminder_minutes=_reminder(component),
        categories=_categories(component),
        colour=to_hex(str(colour_prop)) if colour_prop else None,
        timezone=timezone,
    )
