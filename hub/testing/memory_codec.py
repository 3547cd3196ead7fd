"""The memory server's ``state_file``: JSON form of :class:`~hub.spec.EventData`, and
atomic file reads and writes.

Dates and date-times are tagged so that an all-day event comes back as dates and a timed
one as an aware date-time with the offset it was written with.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from hub.spec import EventData


def _when_to_json(value: datetime | date) -> dict[str, str]:
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    return {"date": value.isoformat()}


def _when_from_json(value: Any) -> datetime | date:
    if isinstance(value, dict):
        if "datetime" in value:
            return datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return date.fromisoformat(value["date"])
    raise ValueError(f"expected {{'date': ...}} or {{'datetime': ...}}, got {value!r}")


def data_to_json(data: EventData) -> dict[str, Any]:
    return {
        "subject": data.subject,
        "start": _when_to_json(data.start),
        "end": _when_to_json(data.end),
        "body": data.body,
        "location": data.location,
        "private": data.private,
        "show_as": data.show_as,
        "reminder_minutes": data.reminder_minutes,
        "categories": list(data.categories),
        "colour": data.colour,
        "timezone": data.timezone,
    }


def data_from_json(raw: Any) -> EventData:
    """The EventData of :func:`data_to_json`; ValueError/KeyError/TypeError when malformed."""
    return EventData(
        subject=str(raw["subject"]),
        start=_when_from_json(raw["start"]),
        end=_when_from_json(raw["end"]),
        body=str(raw.get("body", "")),
        location=str(raw.get("location", "")),
        private=bool(raw.get("private", False)),
        show_as=raw.get("show_as", "busy"),
        reminder_minutes=raw.get("reminder_minutes"),
        categories=tuple(raw.get("categories", ())),
        colour=raw.get("colour"),
        timezone=raw.get("timezone"),
    )


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write_atomic(path: Path, text: str) -> None:
    """Write-then-rename, so that a reader (or a crash) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
