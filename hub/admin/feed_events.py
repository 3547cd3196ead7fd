"""The rendered events of one version of a feed, in the feed's order, and the next version.

A feed is its head, one VEVENT text per appointment in the store's list order (start, then
id) and an end line. :class:`FeedEvents` keeps those texts by appointment id with their place
in that order, so that the next version of the feed is this one with the few events the
store reports changed (:meth:`hub.store.base.Store.changed_since`) put in, moved or taken
out: the cost of a new version grows with the change, not with the calendar.

A :class:`FeedEvents` is never changed once made (the cache and a rendering in flight may
share one); :meth:`FeedEvents.evolve` makes the next one.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from hub.model import Appointment
from hub.store.codec import instant_key

# Bytes of bookkeeping per event besides its text (dict slot, key tuple, list slot): what
# the cache's byte budget counts for it.
_ENTRY_OVERHEAD = 200

Place = tuple[str, str]  # (start as the store orders it, appointment id)


def place(appt: Appointment) -> Place:
    """Where ``appt`` goes in the feed: the order of the store's lists."""
    return instant_key(appt.start), appt.id


def in_window(appt: Appointment, start: datetime | date | None, end: datetime | None) -> bool:
    """Whether the feed of the window [start, end) shows ``appt``: the test of the store's
    ``list_appointments`` (overlap; a zero-length entry counts as its instant)."""
    if appt.deleted:
        return False
    first = instant_key(appt.start)
    if end is not None and not first < instant_key(end):
        return False
    if start is None:
        return True
    key = instant_key(start)
    return instant_key(appt.end) > key or first >= key


@dataclass(frozen=True, slots=True)
class FeedEvents:
    """Each event's text by appointment id, and the ids in the feed's order."""

    texts: Mapping[str, tuple[Place, bytes]]
    order: tuple[Place, ...] | list[Place]
    size: int  # bytes held, for the cache's budget

    @classmethod
    def of(cls, entries: Iterable[tuple[Place, bytes]]) -> FeedEvents:
        texts = {where[1]: (where, text) for where, text in entries}
        order = sorted(where for where, _ in texts.values())
        size = sum(len(text) + _ENTRY_OVERHEAD for _, text in texts.values())
        return cls(texts, order, size)

    def evolve(self, changes: Mapping[str, tuple[Place, bytes] | None]) -> FeedEvents:
        """The next version: each id of ``changes`` gets its new place and text, or (None)
        leaves the feed. Ids not in ``changes`` keep their text."""
        texts = dict(self.texts)
        order = list(self.order)
        size = self.size
        for appointment_id, new in changes.items():
            old = texts.pop(appointment_id, None)
            if old is not None:
                del order[bisect_left(order, old[0])]
                size -= len(old[1]) + _ENTRY_OVERHEAD
            if new is not None:
                texts[appointment_id] = new
                insort(order, new[0])
                size += len(new[1]) + _ENTRY_OVERHEAD
        return FeedEvents(texts, order, size)

    def in_order(self) -> Iterator[bytes]:
        """The events' texts in the feed's order."""
        texts = self.texts
        return (texts[appointment_id][1] for _, appointment_id in self.order)

    def __len__(self) -> int:
        return len(self.texts)


EMPTY = FeedEvents({}, (), 0)

__all__ = ["EMPTY", "FeedEvents", "Place", "in_window", "place"]
