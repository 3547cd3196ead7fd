"""Incremental reads with events.list and sync tokens (Google's "Synchronize resources
efficiently" guide).

The full listing asks for the window (``timeMin``: events ending after it, ``timeMax``:
events starting before it) with ``singleEvents=true`` (recurring events come expanded), pages
with ``pageToken`` and ends on its last page with ``nextSyncToken``: the cursor. A later
listing sends only ``syncToken`` (Google refuses it together with timeMin, timeMax, q,
orderBy, updatedMin or privateExtendedProperty) and returns every event changed since, in or
out of the window, deleted ones as ``status: cancelled``. An expired token answers 410
``fullSyncRequired``, which is :class:`hub.spec.CursorInvalid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.spec import CalendarRef, FetchResult, PermanentError, SkippedEvent, Window
from plugins.google.errors import error_for
from plugins.google.mapping import MappingError, is_cancelled, remote_event, rfc3339

if TYPE_CHECKING:
    from plugins.google.client import GoogleHttp


@dataclass(slots=True)
class Listing:
    """One listing round folded: the result, and the calendar's time zone if it said."""

    result: FetchResult
    zone: str | None = None


async def list_events(
    http: GoogleHttp,
    cal: CalendarRef,
    calendar_id: str,
    window: Window,
    cursor: str | None,
    page_size: int,
) -> Listing:
    """Every page of one listing (full when ``cursor`` is None) up to its nextSyncToken."""
    params: dict[str, Any] = {
        "calendarId": calendar_id,
        "singleEvents": "true",  # aiogoogle would send Python's "True"
        "maxResults": page_size,
    }
    if cursor is None:
        params.update(timeMin=rfc3339(window.start), timeMax=rfc3339(window.end))
    else:
        params["syncToken"] = cursor
    listing = Listing(FetchResult(full=cursor is None))
    changed: dict[str, Any] = {}
    removed: set[str] = set()
    page_token: str | None = None
    while True:
        request = http.events.list(**params, pageToken=page_token)
        reply = await http.send(cal, request, operation="list")
        if not reply.ok:
            raise error_for(reply.status, reply.headers, reply.body, mailbox=cal.mailbox)
        body = reply.body if isinstance(reply.body, dict) else {}
        if isinstance(body.get("timeZone"), str):
            listing.zone = body["timeZone"]
        for item in body.get("items") or ():
            rid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(rid, str):
                listing.result.skipped.append(SkippedEvent("?", "event without an id"))
            elif is_cancelled(item):
                changed.pop(rid, None)
                removed.add(rid)
            else:
                removed.discard(rid)
                changed[rid] = item
        page_token = body.get("nextPageToken")
        if page_token:
            continue
        token = body.get("nextSyncToken")
        if not isinstance(token, str) or not token:
            raise PermanentError("google: listing ended without a nextSyncToken")
        listing.result.cursor = token
        break
    _fold(listing, changed, removed, window)
    return listing


def _fold(listing: Listing, changed: dict[str, Any], removed: set[str], window: Window) -> None:
    result = listing.result
    result.deleted = sorted(removed)
    for rid, item in changed.items():
        try:
            event = remote_event(item, listing.zone)
        except MappingError as exc:
            result.skipped.append(SkippedEvent(rid, str(exc)))
            continue
        if window.overlaps(event.data.start, event.data.end):
            result.changed.append(event)
        elif not result.full:
            # A token listing returns changes anywhere: this one is (now) outside the window.
            result.left_window.append(rid)
