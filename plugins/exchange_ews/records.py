"""The plain records the EWS adapter hands up and takes down: no exchangelib type crosses it.

:mod:`plugins.exchange_ews.adapter` is the only module that touches exchangelib; it turns
exchangelib's CalendarItem objects into :class:`EwsItem` and its exceptions into
:class:`EwsFault`, so mapping, error translation and the provider stay plain async Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

# The EWS versions calhub speaks (RequestServerVersion names; Exchange2019 speaks Exchange2016).
# TextBody, the server's text rendering of an HTML body, needs Exchange 2013.
EWS_VERSIONS = ("Exchange2013", "Exchange2013_SP1", "Exchange2016", "Exchange2019")
AUTH_NAMES = ("ntlm", "basic")
MAX_THREADS = 27  # EWS's default EWSMaxConcurrency per account


@dataclass(frozen=True, slots=True)
class ItemRef:
    """An EWS item id with its ChangeKey (the item's version)."""

    item_id: str
    change_key: str


@dataclass(frozen=True, slots=True)
class ItemFields:
    """The writable content of one calendar item, in EWS terms (what CreateItem/UpdateItem set)."""

    subject: str
    start: datetime | date
    end: datetime | date
    all_day: bool
    body: str
    location: str
    sensitivity: str  # Normal | Private
    free_busy: str  # Free | Tentative | Busy | OOF
    reminder_minutes: int | None
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EwsItem:
    """One calendar item as GetItem returned it.

    ``start``/``end`` are UTC datetimes, or dates for an all-day item (already read in the
    item's own time zone). ``kind`` is EWS's CalendarItemType (Single, Occurrence, Exception,
    RecurringMaster); ``uid`` groups a series.
    """

    ref: ItemRef
    subject: str
    start: datetime | date
    end: datetime | date
    body: str
    body_is_html: bool
    location: str
    sensitivity: str
    free_busy: str
    reminder_minutes: int | None
    categories: tuple[str, ...]
    hub_id: str | None
    timezone: str | None  # IANA zone of the Windows time-zone id the item was written in
    kind: str
    uid: str | None
    modified: datetime | None
    folder_id: str | None


@dataclass(frozen=True, slots=True)
class SyncChanges:
    """What SyncFolderItems reported since a SyncState, every page read."""

    changed: list[ItemRef]  # Create and Update, in the order reported
    deleted: list[str]
    state: str


class EwsFault(Exception):
    """An EWS failure in plain terms: the ResponseCode (or a transport kind), its text, and the
    server's back-off when it sent one (ErrorServerBusy's BackOffMilliseconds, in seconds)."""

    def __init__(self, code: str, message: str, *, back_off: float | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.back_off = back_off
