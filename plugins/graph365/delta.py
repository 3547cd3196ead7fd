"""Incremental reads with ``calendarView/delta``.

The first request carries the window (startDateTime/endDateTime); Graph then pages with
``@odata.nextLink`` and ends a round with ``@odata.deltaLink``, which is the cursor. Passing
the cursor back returns only what changed since. ``@removed`` items with reason "deleted" were
deleted; any other reason means the event left the window (nothing is deleted in the hub).
Delta listings do not carry extended properties, so ``hub_id`` is None here: the engine knows
its events from its status table and, after a crash, :meth:`GraphProvider.find`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.spec import CursorInvalid, FetchResult, PermanentError, SkippedEvent, Window
from plugins.graph365.errors import error_for
from plugins.graph365.mapping import MappingError, remote_event, utc_param

if TYPE_CHECKING:
    from plugins.graph365.client import GraphHttp


async def fetch_delta(
    http: GraphHttp,
    mailbox: str,
    calendar_path: str,
    window: Window,
    cursor: str | None,
    page_size: int,
) -> FetchResult:
    """One delta round: every page up to the deltaLink, folded into a :class:`FetchResult`."""
    if cursor is not None and not http.check_link(cursor):
        # A cursor from another base_url (config changed) cannot be honoured: start over.
        raise CursorInvalid("graph365: stored delta link is for another endpoint")
    url = cursor or http.url(
        f"{calendar_path}/calendarView/delta",
        {"startDateTime": utc_param(window.start), "endDateTime": utc_param(window.end)},
    )
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    result = FetchResult(full=cursor is None)
    changed: dict[str, Any] = {}
    removed: dict[str, str] = {}
    while True:
        reply = await http.send("GET", url, mailbox=mailbox, operation="delta", headers=headers)
        if not reply.ok:
            raise error_for(reply.status, reply.headers, reply.body, mailbox=mailbox)
        body = reply.body if isinstance(reply.body, dict) else {}
        for item in body.get("value") or ():
            _fold(item, changed, removed, result)
        next_link = body.get("@odata.nextLink")
        if next_link:
            if not http.check_link(next_link):
                raise PermanentError(f"graph365: nextLink points off base_url: {next_link!r}")
            url = next_link
            continue
        delta_link = body.get("@odata.deltaLink")
        if not delta_link or not http.check_link(delta_link):
            raise PermanentError("graph365: delta round ended without a usable deltaLink")
        result.cursor = delta_link
        break
    result.changed = list(changed.values())
    result.deleted = [rid for rid, reason in removed.items() if reason == "deleted"]
    result.left_window = [rid for rid, reason in removed.items() if reason != "deleted"]
    return result


def _fold(item: Any, changed: dict[str, Any], removed: dict[str, str], result: FetchResult) -> None:
    """Add one delta item; a later item for the same id replaces an earlier one."""
    rid = item.get("id") if isinstance(item, dict) else None
    if not isinstance(rid, str):
        result.skipped.append(SkippedEvent("?", "delta item without an id"))
        return
    if "@removed" in item:
        changed.pop(rid, None)
        removed[rid] = str((item.get("@removed") or {}).get("reason") or "")
        return
    if item.get("isCancelled"):
        # A cancelled meeting lingers until the owner removes it: it takes no time.
        changed.pop(rid, None)
        removed[rid] = "deleted"
        return
    removed.pop(rid, None)
    try:
        changed[rid] = remote_event(item)
    except MappingError as exc:
        changed.pop(rid, None)
        result.skipped.append(SkippedEvent(rid, str(exc)))
