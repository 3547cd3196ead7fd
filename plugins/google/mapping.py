"""Google Calendar event JSON <-> :class:`hub.spec.EventData`, and the ids calhub derives.

Writes never carry attendees (no invitation is ever sent). The round trip must be exact: what
:func:`event_body` writes, :func:`remote_event` reads back with the same content hash, or every
pass would see a remote edit that nobody made. Google keeps no categories and only 11 event
colours, so the agent's exact colour and the categories travel in ``extendedProperties.private``
beside the hub id; the colour is read back only while the event's ``colorId`` is still the one
calhub chose for it (an owner who picks another colour is a real edit).

Google drops private extended properties silently when a key is longer than 44 characters or
a value longer than 1024: a value calhub cannot store whole is refused here, never truncated.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.spec import EventData, RemoteEvent, ShowAs, as_utc

HUB_ID_KEY = "calhubId"
COLOUR_KEY = "calhubColour"
CATEGORIES_KEY = "calhubCategories"
MAX_PROPERTY_KEY = 44
MAX_PROPERTY_VALUE = 1024
MAX_REMINDER_MINUTES = 40320  # four weeks: Google's limit for a reminder override

# Google's event palette (colors.get, "event"): colorId -> background.
EVENT_COLOURS: dict[str, str] = {
    "1": "#a4bdfc",
    "2": "#7ae7bf",
    "3": "#dbadff",
    "4": "#ff887c",
    "5": "#fbd75b",
    "6": "#ffb878",
    "7": "#46d6db",
    "8": "#e1e1e1",
    "9": "#5484ed",
    "10": "#51b749",
    "11": "#dc2127",
}
_PRIVATE = {"private", "confidential"}


class MappingError(ValueError):
    """An event calhub cannot read or write; the message says which field and why."""


def event_id(hub_id: str, replaces: str | None = None) -> str:
    """The client-chosen event id of a create: base32hex (0-9, a-v) of a hash of the hub id,
    52 characters, so a retried create addresses the same event and Google answers 409.

    A restore (``replaces``: the deleted event's id) gets another id: Google keeps a deleted
    event as ``cancelled`` and refuses its id for a new one.
    """
    key = hub_id if replaces is None else f"{hub_id}\x00restores\x00{replaces}"
    digest = hashlib.sha256(key.encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def nearest_colour_id(colour: str) -> str:
    """The colorId of Google's event palette nearest to ``colour`` (``#rrggbb``)."""
    rgb = _rgb(colour)
    return min(EVENT_COLOURS, key=lambda cid: _distance(rgb, _rgb(EVENT_COLOURS[cid])))


def event_body(
    data: EventData, zone: str, hub_id: str | None = None, replaces: str | None = None
) -> dict[str, Any]:
    """The JSON of an insert (with ``hub_id``: the client-chosen id) or a patch.

    ``zone`` is the IANA zone a timed event is written in when the event names none (the
    calendar's zone).
    """
    if as_utc(data.end) <= as_utc(data.start):
        raise MappingError("the event ends before it starts")
    tz = data.timezone or zone
    props = {
        COLOUR_KEY: (data.colour or "").lower(),
        CATEGORIES_KEY: json.dumps(list(data.categories), ensure_ascii=False)
        if data.categories
        else "",
    }
    if hub_id is not None:
        props[HUB_ID_KEY] = hub_id
    for key, value in props.items():
        if len(value) > MAX_PROPERTY_VALUE:
            raise MappingError(f"{key} is longer than Google keeps ({MAX_PROPERTY_VALUE})")
    body: dict[str, Any] = {
        "summary": data.subject,
        "description": data.body,
        "location": data.location,
        "start": _when_out(data.start, tz),
        "end": _when_out(data.end, tz),
        "visibility": "private" if data.private else "default",
        "transparency": "transparent" if data.show_as == "free" else "opaque",
        "reminders": _reminders_out(data.reminder_minutes),
        "extendedProperties": {"private": props},
    }
    if data.colour:
        body["colorId"] = nearest_colour_id(data.colour)
    if hub_id is not None:
        body["id"] = event_id(hub_id, replaces)
    return body


def remote_event(obj: Any, zone: str | None = None) -> RemoteEvent:
    """A Google event (from a listing, get, or a write's response) as a :class:`RemoteEvent`.

    ``zone`` is the calendar's time zone (the listing's ``timeZone``), the event's display
    zone when the event names none.
    """
    if not isinstance(obj, dict):
        raise MappingError("event is not a JSON object")
    remote_id = obj.get("id")
    if not isinstance(remote_id, str) or not remote_id:
        raise MappingError("event without an id")
    etag = obj.get("etag")
    if not isinstance(etag, str) or not etag:
        raise MappingError("event without an etag")
    start, start_tz = _when_in(obj.get("start"), "start")
    end, _ = _when_in(obj.get("end"), "end")
    private = _private_props(obj)
    hub_id = private.get(HUB_ID_KEY) or None
    data = EventData(
        subject=str(obj.get("summary") or ""),
        start=start,
        end=end,
        body=str(obj.get("description") or ""),
        location=str(obj.get("location") or ""),
        private=obj.get("visibility") in _PRIVATE,
        show_as=_show_as(obj),
        reminder_minutes=_reminder_in(obj.get("reminders")),
        categories=_categories(private.get(CATEGORIES_KEY)),
        colour=_colour_in(obj.get("colorId"), private.get(COLOUR_KEY)),
        timezone=start_tz or zone,
    )
    return RemoteEvent(
        remote_id=remote_id,
        version=etag,
        data=data,
        hub_id=hub_id,
        series_id=obj.get("recurringEventId") or None,
        modified=_instant(obj.get("updated")),
    )


def is_cancelled(obj: Any) -> bool:
    """A deleted event (or a cancelled occurrence) as listings and get return it."""
    return isinstance(obj, dict) and obj.get("status") == "cancelled"


def rfc3339(value: datetime) -> str:
    """A window bound as timeMin/timeMax want it: RFC 3339 in UTC with a Z."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- helpers


def _when_out(value: datetime | date, tz: str) -> dict[str, str]:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}
    try:
        local = as_utc(value).astimezone(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"unknown time zone {tz!r}") from exc
    return {"dateTime": local.isoformat(), "timeZone": tz}


def _when_in(value: Any, name: str) -> tuple[datetime | date, str | None]:
    if not isinstance(value, dict):
        raise MappingError(f"{name}: missing")
    if value.get("date"):
        try:
            return date.fromisoformat(str(value["date"])), None
        except ValueError as exc:
            raise MappingError(f"{name}: unreadable date {value['date']!r}") from exc
    raw = value.get("dateTime")
    if not raw:
        raise MappingError(f"{name}: neither date nor dateTime")
    try:
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as exc:
        raise MappingError(f"{name}: unreadable dateTime {raw!r}") from exc
    tz = value.get("timeZone") or None
    if when.tzinfo is None:  # RFC 3339 requires an offset unless timeZone says the zone
        if not tz:
            raise MappingError(f"{name}: dateTime {raw!r} without offset or timeZone")
        try:
            when = when.replace(tzinfo=ZoneInfo(tz))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise MappingError(f"{name}: unknown time zone {tz!r}") from exc
    return when.astimezone(UTC), tz


def _reminders_out(minutes: int | None) -> dict[str, Any]:
    if minutes is None:
        return {"useDefault": False, "overrides": []}
    if not 0 <= minutes <= MAX_REMINDER_MINUTES:
        raise MappingError(f"reminder of {minutes} minutes is outside 0..{MAX_REMINDER_MINUTES}")
    return {"useDefault": False, "overrides": [{"method": "popup", "minutes": minutes}]}


def _reminder_in(value: Any) -> int | None:
    if not isinstance(value, dict) or value.get("useDefault"):
        return None  # the calendar's default: not known without another request
    popups = [
        o.get("minutes")
        for o in value.get("overrides") or ()
        if isinstance(o, dict) and isinstance(o.get("minutes"), int)
    ]
    return min(popups) if popups else None


def _show_as(obj: dict[str, Any]) -> ShowAs:
    if obj.get("eventType") == "outOfOffice":
        return "oof"
    return "free" if obj.get("transparency") == "transparent" else "busy"


def _private_props(obj: dict[str, Any]) -> dict[str, str]:
    ext = obj.get("extendedProperties")
    private = ext.get("private") if isinstance(ext, dict) else None
    if not isinstance(private, dict):
        return {}
    return {str(k): str(v) for k, v in private.items() if isinstance(v, str)}


def _categories(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _colour_in(colour_id: Any, ours: str | None) -> str | None:
    if ours and colour_id == nearest_colour_id(ours):
        return ours
    return EVENT_COLOURS.get(str(colour_id)) if colour_id else None


def _rgb(colour: str) -> tuple[int, int, int]:
    text = colour.strip().lstrip("#")
    try:
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    except ValueError as exc:
        raise MappingError(f"colour {colour!r} is not #rrggbb") from exc


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None  # only an aid for the "newest" conflict policy
