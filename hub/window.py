"""The sync window: which span of an agent's calendar a pass looks at.

Only events overlapping ``[today - days_past, today + days_future]`` are synced (DESIGN.md rule 6).
Days are whole UTC days and the last day is included, so the window ends at midnight UTC after
``today + days_future``.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hub.spec import Window, as_utc


def sync_window(now: datetime, days_past: int, days_future: int) -> Window:
    """The window for a pass running at ``now`` (aware; naive is taken as UTC)."""
    today = as_utc(now).date()
    start = datetime.combine(today - timedelta(days=days_past), time(), tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=days_future + 1), time(), tzinfo=UTC)
    return Window(start=start, end=end)
