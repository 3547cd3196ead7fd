"""EWS calendar items (as :mod:`records`) <-> :class:`hub.spec.EventData`.

Writes are in UTC and never carry attendees, so no invitation is ever sent. The round trip
is exact: what :func:`fields_for` writes, :func:`remote_event` reads back with the same
content hash, or every pass would see a remote edit nobody made. The agent's colour travels
as an Outlook category (``calhub colour #3a87ad``), which Outlook shows and EWS returns.
"""

from __future__ import annotations

from hub.spec import EventData, RemoteEvent, ShowAs
from plugins.exchange_ews.records import EwsItem, ItemFields

COLOUR_PREFIX = "calhub colour "

# LegacyFreeBusyStatus <-> show_as; WorkingElsewhere and NoData read as busy (the hub's
# four values are what every provider can store).
_SHOW_AS_OUT: dict[ShowAs, str] = {
    "free": "Free",
    "tentative": "Tentative",
    "busy": "Busy",
    "oof": "OOF",
}
_SHOW_AS_IN: dict[str, ShowAs] = {v: k for k, v in _SHOW_AS_OUT.items()}
# Personal is not private: Outlook shows it to delegates. Private and Confidential hide it.
_PRIVATE = {"Private", "Confidential"}


def fields_for(data: EventData) -> ItemFields:
    """The EWS fields of one create or update."""
    categories = list(data.categories)
    if data.colour:
        categories.append(COLOUR_PREFIX + data.colour.lower())
    return ItemFields(
        subject=data.subject,
        start=data.start,
        end=data.end,
        all_day=data.all_day,
        body=data.body,
        location=data.location,
        sensitivity="Private" if data.private else "Normal",
        free_busy=_SHOW_AS_OUT[data.show_as],
        reminder_minutes=data.reminder_minutes,
        categories=tuple(categories),
    )


def remote_event(item: EwsItem, series_id: str | None = None) -> RemoteEvent:
    """A GetItem result as a :class:`RemoteEvent`."""
    categories: list[str] = []
    colour: str | None = None
    for text in item.categories:
        if text.lower().startswith(COLOUR_PREFIX):
            colour = text[len(COLOUR_PREFIX) :].strip().lower() or None
        else:
            categories.append(text)
    data = EventData(
        subject=item.subject,
        start=item.start,
        end=item.end,
        body=item.body,
        location=item.location,
        private=item.sensitivity in _PRIVATE,
        show_as=_SHOW_AS_IN.get(item.free_busy, "busy"),
        reminder_minutes=item.reminder_minutes,
        categories=tuple(categories),
        colour=colour,
        timezone=item.timezone,
    )
    return RemoteEvent(
        remote_id=item.ref.item_id,
        version=item.ref.change_key,
        data=data,
        hub_id=item.hub_id,
        series_id=series_id,
        modified=item.modified,
    )
