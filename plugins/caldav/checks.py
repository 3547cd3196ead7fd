"""``calhub check`` for a CalDAV account: principal, each agent's calendar, read, write.

Every step is reported as a :class:`hub.spec.CheckItem`; a failed step never raises, and a
step that depends on a failed one is not attempted (its failure would only repeat the cause).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hub.spec import CalendarRef, CheckItem, ProviderError, PushItem

if TYPE_CHECKING:
    from plugins.caldav.provider import CalDAVProvider


async def _step(items: list[CheckItem], what: str, action: Callable[[], Awaitable[str]]) -> bool:
    try:
        detail = await action()
    except ProviderError as exc:
        items.append(CheckItem(what, False, str(exc)))
        return False
    items.append(CheckItem(what, True, detail))
    return True


async def run_checks(
    provider: CalDAVProvider, cals: Sequence[CalendarRef], *, write: bool
) -> list[CheckItem]:
    """Check the account and each calendar in ``cals`` (with ``write``: a probe event)."""
    from plugins.caldav.provider import probe_event

    items: list[CheckItem] = []

    async def principal() -> str:
        return await provider.discovery.principal()

    # A shared service account may point at collections without any principal of its own,
    # so a missing principal is reported but does not stop the calendar checks.
    await _step(items, "principal", principal)
    for cal in cals:
        label = cal.agent_id or cal.calendar or "default"

        async def found(cal: CalendarRef = cal) -> str:
            collection = await provider.discovery.collection(cal)
            await provider.fetcher.collection_props(collection)
            return collection.url

        if not await _step(items, f"calendar {label}", found):
            continue

        async def read(cal: CalendarRef = cal) -> str:
            collection = await provider.discovery.collection(cal)
            now = datetime.now(UTC)
            events = await provider.fetcher.query(
                collection, now - timedelta(days=7), now + timedelta(days=7), data=False
            )
            return f"{len(events)} events within a week of today"

        if not await _step(items, f"read {label}", read) or not write:
            continue

        async def write_probe(cal: CalendarRef = cal) -> str:
            hub_id = f"calhub-check-{uuid.uuid4().hex}"
            created = await provider.push_one(cal, PushItem(hub_id, probe_event()))
            await provider.delete(cal, created.remote_id, created.version)
            return "probe event created and deleted"

        await _step(items, f"write {label}", write_probe)
    return items
