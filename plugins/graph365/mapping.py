"""Graph event JSON <-> :class:`hub.spec.EventData`.

Writes are in UTC (``timeZone: "UTC"``) and never carry attendees, so no invitation is ever
sent. Reads understand any ``timeZone`` Graph hands back, Windows names included.

The round trip must be exact: what :func:`event_body` writes, :func:`remote_event` reads back
with the same content hash, or every pass would see a remote edit that nobody made. That is
why the agent's colour travels as an Outlook category (``calhub colour #3a87ad``): delta
listings do not return extended properties, categories they do.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

from hub.spec import EventData, RemoteEvent, ShowAs, as_utc
from plugins.graph365.timezones import to_iana, zone

# A fixed property-set GUID of calhub: the hub id lives in "String {guid} Name calhubId".
PROPERTY_SET = "2c1e7f0a-5b7d-4c55-9a0e-6f2b8c1d3e4a"
HUB_ID_PROPERTY = f"String {{{PROPERTY_SET}}} Name calhubId"
COLOUR_PREFIX = "calhub colour "
_TRANSACTION_NS = uuid.UUID(PROPERTY_SET)

_SHOW_AS_IN: dict[str, ShowAs] = {
    "free": "free",
    "tentative": "tentative",
    "busy": "busy",
    "oof": "oof",
    "workingElsewhere": "busy",
    "unknown": "busy",
}
_PRIVATE = {"private", "confidential"}
_TAG = re.compile(r"<[^>]+>")
_BLOCK_END = re.compile(r"</(p|div|li|h\d)>|<br\s*/?>", re.IGNORECASE)


class MappingError(ValueError):
    """A Graph event calhub cannot read; the message says which field and why."""


def transaction_id(hub_id: str, replaces: str | None = None) -> str:
    """The create's transactionId: the same hub id always gives the same one, so Graph
    returns the event made by an earlier (crashed or retried) attempt instead of a twin.

    A restore (``replaces``: the deleted event's id) gets another one: Exchange keeps a
    deleted item in Deleted Items, and a repeated transactionId could answer with it.
    """
    key = hub_id if replaces is None else f"{hub_id}\x00restores\x00{replaces}"
    return str(uuid.uuid5(_TRANSACTION_NS, key))


def event_body(
    data: EventData, hub_id: str | None = None, replaces: str | None = None
) -> dict[str, Any]:
    """The JSON of a POST (with ``hub_id``: transactionId and the hub-id property) or PATCH."""
    categories = list(data.categories)
    if data.colour:
        categories.append(COLOUR_PREFIX + data.colour.lower())
    body: dict[str, Any] = {
        "subject": data.subject,
        "body": {"contentType": "text", "content": data.body},
        "start": _dt_out(data.start),
        "end": _dt_out(data.end),
        "isAllDay": data.all_day,
        "location": {"displayName": data.location},
        "sensitivity": "private" if data.private else "normal",
        "showAs": data.show_as,
        "isReminderOn": data.reminder_minutes is not None,
        "categories": categories,
        "responseRequested": False,
    }
    if data.reminder_minutes is not None:
        body["reminderMinutesBeforeStart"] = data.reminder_minutes
    if hub_id is not None:
        body["transactionId"] = transaction_id(hub_id, replaces)
        body["singleValueExtendedProperties"] = [{"id": HUB_ID_PROPERTY, "value": hub_id}]
    return body


def remote_event(obj: dict[str, Any]) -> RemoteEvent:
    """A Graph event (from delta, GET or a create's response) as a :class:`RemoteEvent`."""
    remote_id = obj.get("id")
    if not isinstance(remote_id, str) or not remote_id:
        raise MappingError("event without an id")
    version = obj.get("@odata.etag") or obj.get("changeKey")
    if not isinstance(version, str):
        raise MappingError("event without @odata.etag or changeKey")
    all_day = bool(obj.get("isAllDay"))
    start = _dt_in(obj.get("start"), "start", all_day)
    end = _dt_in(obj.get("end"), "end", all_day)
    categories, colour = _split_categories(obj.get("categories") or [])
    reminder = obj.get("reminderMinutesBeforeStart") if obj.get("isReminderOn") else None
    data = EventData(
        subject=obj.get("subject") or "",
        start=start,
        end=end,
        body=_body_text(obj.get("body")),
        location=((obj.get("location") or {}).get("displayName") or ""),
        private=obj.get("sensitivity") in _PRIVATE,
        show_as=_SHOW_AS_IN.get(obj.get("showAs") or "busy", "busy"),
        reminder_minutes=reminder if isinstance(reminder, int) else None,
        categories=tuple(categories),
        colour=colour,
        timezone=to_iana(obj.get("originalStartTimeZone")),
    )
    return RemoteEvent(
        remote_id=remote_id,
        version=version,
        data=data,
        hub_id=hub_id_of(obj),
        series_id=obj.get("seriesMasterId") or None,
        modified=_instant(obj.get("lastModifiedDateTime")),
    )


def hub_id_of(obj: dict[str, Any]) -> str | None:
    """The hub id from an expanded ``singleValueExtendedProperties``, None when absent."""
    for prop in obj.get("singleValueExtendedProperties") or ():
        if str(prop.get("id", "")).lower() == HUB_ID_PROPERTY.lower():
            value = prop.get("value")
            return value if isinstance(value, str) and value else None
    return None


def hub_id_filter(hub_id: str) -> str:
    """The documented ``$filter`` that finds events carrying this hub id."""
    return (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{_quote(HUB_ID_PROPERTY)}'"
        f" and ep/value eq '{_quote(hub_id)}')"
    )


def hub_id_expand() -> str:
    """The ``$expand`` that returns the hub-id property with an event."""
    return f"singleValueExtendedProperties($filter=id eq '{_quote(HUB_ID_PROPERTY)}')"


def utc_param(value: datetime) -> str:
    """A window bound as calendarView wants it: ISO 8601 in UTC with a Z."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    return value.replace("'", "''")  # OData string literal escaping


def _dt_out(value: datetime | date) -> dict[str, str]:
    if isinstance(value, datetime):
        text = as_utc(value).strftime("%Y-%m-%dT%H:%M:%S")
    else:
        text = f"{value.isoformat()}T00:00:00"
    return {"dateTime": text, "timeZone": "UTC"}


def _dt_in(value: Any, name: str, all_day: bool) -> datetime | date:
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise MappingError(f"{name}: missing dateTime")
    raw = str(value["dateTime"])
    try:
        # Graph writes seven fractional digits; fromisoformat takes at most six.
        local = datetime.fromisoformat(raw[:26] if "." in raw else raw)
    except ValueError as exc:
        raise MappingError(f"{name}: unreadable dateTime {raw!r}") from exc
    if all_day:
        return local.date()  # all-day events float: the date is the same in every zone
    tz_name = value.get("timeZone") or "UTC"
    try:
        tz = zone(tz_name)
    except ValueError as exc:
        raise MappingError(f"{name}: {exc}") from exc
    if local.tzinfo is None:
        local = local.replace(tzinfo=tz)
    return local.astimezone(UTC)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None  # only an aid for the "newest" conflict policy: absent is fine


def _split_categories(raw: list[Any]) -> tuple[list[str], str | None]:
    categories: list[str] = []
    colour: str | None = None
    for item in raw:
        text = str(item)
        if text.lower().startswith(COLOUR_PREFIX):
            colour = text[len(COLOUR_PREFIX) :].strip().lower() or None
        else:
            categories.append(text)
    return categories, colour


def _body_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType", "text")).lower() != "html":
        return content
    # An owner edit in Outlook turns the body into HTML; the hub keeps plain text.
    text = _TAG.sub("", _BLOCK_END.sub("\n", content))
    return html.unescape(text).strip()
