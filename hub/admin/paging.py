"""Pages of appointment lists: the ``limit`` and ``cursor`` query parameters.

A cursor is opaque to callers: URL-safe base64 of the (start, id) of the last entry of the
page before, the list's own order, so the next page is a range scan of the store's index
from there. Entries added or moved meanwhile are seen at most once, in their new place.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime

from hub.admin.errors import invalid
from hub.model import Appointment
from hub.spec import as_utc

DEFAULT_LIMIT = 500  # a page when a cursor is given without a limit
MAX_LIMIT = 1000

_BAD_CURSOR = "not a cursor this endpoint gave out; start again without one"


def page_limit(value: str | None, cursor_given: bool) -> int | None:
    """The page size asked for: None (the whole list) when neither limit nor cursor is given,
    :data:`DEFAULT_LIMIT` for a cursor alone; 422 outside 1..:data:`MAX_LIMIT`."""
    if value is None:
        return DEFAULT_LIMIT if cursor_given else None
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise invalid("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def cursor_after(appt: Appointment) -> str:
    """The cursor of the page that follows ``appt``."""
    start: datetime | date = appt.start
    moment = as_utc(start).isoformat() if isinstance(start, datetime) else start.isoformat()
    raw = json.dumps([moment, appt.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(value: str) -> tuple[datetime | date, str]:
    """The (start, id) a cursor continues after; 422 naming ``cursor`` when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        moment, appointment_id = json.loads(raw)
        if not isinstance(moment, str) or not isinstance(appointment_id, str):
            raise ValueError(moment)
        start: datetime | date = (
            as_utc(datetime.fromisoformat(moment)) if "T" in moment else date.fromisoformat(moment)
        )
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise invalid("cursor", _BAD_CURSOR) from exc
    return start, appointment_id


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "cursor_after", "page_limit", "read_cursor"]
