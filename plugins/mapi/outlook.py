"""The one module that touches Outlook's object model (COM through pywin32, or a fake).

Everything here runs in the Outlook agent's COM thread (:mod:`plugins.mapi.sta`), never on
its event loop, and is written against Microsoft's Outlook object model reference:

- the window query sorts ``Items`` by ``[Start]``, then sets ``IncludeRecurrences``, then
  ``Restrict``s, in that order (the reference's order; any other expands nothing), and walks
  the result with ``GetFirst``/``GetNext`` (``Count`` is undefined with recurrences). The
  filter is DASL (``@SQL=``) on ``urn:schemas:calendar:dtstart``/``dtend``: DASL compares
  in UTC, Jet in the user's local time and locale. Outlook ignores seconds in filters, so
  the filter is widened to whole minutes and the exact overlap is checked on ``StartUTC`` /
  ``EndUTC`` (``Start``/``End`` are local wall-clock times; only all-day events use them);
- occurrences of a recurring series share the master's ``EntryID``: an occurrence's remote
  id is ``ENTRYID@START`` and its ``series_id`` the master's id; they are read-only;
- the hub id is a named property in PS_PUBLIC_STRINGS through ``PropertyAccessor``;
- the version is PR_CHANGE_KEY (``LastModificationTime`` where the store has none, e.g. a
  PST), compared before every ``Save``/``Delete``: an edit made in Outlook since the hub's
  fetch raises :class:`PreconditionFailed`;
- appointments stay ``olNonMeeting``: no recipient is ever added and ``Send`` never called;
- ``Delete`` moves an item to Deleted Items, where ``GetItemFromID`` still finds it: an item
  whose folder is not the calendar any more counts as not found.

COM errors (``pywintypes.com_error``: ``hresult``, ``strerror``, ``excepinfo``; Outlook's
own errors arrive as DISP_E_EXCEPTION with the real code in ``excepinfo[5]``) become the
contract's errors in :func:`provider_error`. This is the module a reviewer changes for a
different Outlook; nothing else imports win32com or pythoncom.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hub.spec import (
    AuthError,
    CheckItem,
    EventData,
    FetchResult,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    PushItem,
    PushOutcome,
    PushResult,
    RemoteEvent,
    ShowAs,
    SkippedEvent,
    TransientError,
    Window,
    as_utc,
)

DEFAULT_OBJECT_MODEL = "win32com.client:Dispatch"  # called with "Outlook.Application"

# OlDefaultFolders, OlItemType, OlObjectClass, OlMeetingStatus, OlRecurrenceState
OL_FOLDER_CALENDAR = 9
OL_APPOINTMENT_ITEM = 1
OL_APPOINTMENT_CLASS = 26
OL_NON_MEETING = 0
OL_APPT_OCCURRENCE, OL_APPT_EXCEPTION = 2, 3
# OlBusyStatus and OlSensitivity
OL_FREE, OL_TENTATIVE, OL_BUSY, OL_OUT_OF_OFFICE, OL_WORKING_ELSEWHERE = 0, 1, 2, 3, 4
OL_NORMAL, OL_PERSONAL, OL_PRIVATE, OL_CONFIDENTIAL = 0, 1, 2, 3

BUSY_IN: dict[int, ShowAs] = {
    OL_FREE: "free",
    OL_TENTATIVE: "tentative",
    OL_BUSY: "busy",
    OL_OUT_OF_OFFICE: "oof",
    OL_WORKING_ELSEWHERE: "busy",  # as Graph's workingElsewhere: not available to book
}
BUSY_OUT: dict[str, int] = {
    "free": OL_FREE,
    "tentative": OL_TENTATIVE,
    "busy": OL_BUSY,
    "oof": OL_OUT_OF_OFFICE,
}

PS_PUBLIC_STRINGS = "{00020329-0000-0000-C000-000000000046}"
HUB_ID_PROPERTY = f"http://schemas.microsoft.com/mapi/string/{PS_PUBLIC_STRINGS}/calhub-hub-id"
PR_CHANGE_KEY = "http://schemas.microsoft.com/mapi/proptag/0x65E20102"
DASL_START = "urn:schemas:calendar:dtstart"
DASL_END = "urn:schemas:calendar:dtend"
OCCURRENCE_SEP = "@"
FIND_CHUNK = 40  # hub ids OR-ed into one Restrict
MAX_LISTED = 20_000  # items walked per fetch: a guard against a series without end


def _hr(code: int) -> int:
    """An HRESULT as pywin32 reports it: a signed 32-bit integer."""
    return code - (1 << 32) if code & 0x80000000 else code


DISP_E_EXCEPTION = _hr(0x80020009)
RPC_E_CALL_REJECTED = _hr(0x80010001)  # "Call was rejected by callee": Outlook is busy
RPC_E_SERVERCALL_RETRYLATER = _hr(0x8001010A)
RPC_E_DISCONNECTED = _hr(0x80010108)  # Outlook was closed under us
RPC_S_SERVER_UNAVAILABLE = _hr(0x800706BA)
CO_E_SERVER_EXEC_FAILURE = _hr(0x80080005)
CO_E_CLASSSTRING = _hr(0x800401F3)  # "Invalid class string": Outlook is not installed
REGDB_E_CLASSNOTREG = _hr(0x80040154)
MAPI_E_NOT_FOUND = _hr(0x8004010F)
MAPI_E_OBJECT_DELETED = _hr(0x8004010A)
MAPI_E_INVALID_ENTRYID = _hr(0x80040107)
MAPI_E_OBJECT_CHANGED = _hr(0x80040109)
MAPI_E_LOGON_FAILED = _hr(0x80040111)
MAPI_E_NETWORK_ERROR = _hr(0x80040115)
MAPI_E_END_OF_SESSION = _hr(0x80040200)
E_ACCESSDENIED = _hr(0x80070005)

BUSY = {RPC_E_CALL_REJECTED, RPC_E_SERVERCALL_RETRYLATER}
UNREACHABLE = {
    RPC_E_DISCONNECTED,
    RPC_S_SERVER_UNAVAILABLE,
    CO_E_SERVER_EXEC_FAILURE,
    MAPI_E_NETWORK_ERROR,
}
GONE = {MAPI_E_NOT_FOUND, MAPI_E_OBJECT_DELETED, MAPI_E_INVALID_ENTRYID}
SESSION_LOST = {MAPI_E_LOGON_FAILED, MAPI_E_END_OF_SESSION, E_ACCESSDENIED}
NOT_INSTALLED = {CO_E_CLASSSTRING, REGDB_E_CLASSNOTREG}
BUSY_RETRY_S = 5.0


class OutlookUnavailable(Exception):
    """Outlook cannot serve at all (not installed, unknown profile): the agent stops."""


# --------------------------------------------------------------------------- COM plumbing


def com_apartment() -> tuple[Callable[[], None], Callable[[], None]]:
    """Enter and leave a single-threaded apartment, for the COM thread (no-ops off Windows)."""
    try:
        pythoncom = importlib.import_module("pythoncom")
    except ImportError:
        return (lambda: None), (lambda: None)
    return pythoncom.CoInitialize, pythoncom.CoUninitialize


def load_object_model(spec: str | None) -> Callable[[], Any]:
    """The callable returning an ``Outlook.Application``: ``MODULE:CALLABLE``, or pywin32's
    ``Dispatch("Outlook.Application")`` by default. ValueError says what is wrong."""
    if not spec:
        module_name, attr, default = "win32com.client", "Dispatch", True
    else:
        module_name, sep, attr = spec.partition(":")
        default = False
        if not sep or not module_name or not attr:
            raise ValueError(f"--object-model: expected MODULE:CALLABLE, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if default:
            raise OutlookUnavailable(
                "pywin32 is not installed: on Windows run `pip install calhub[mapi]` "
                "(the Outlook agent drives Outlook through pywin32)"
            ) from None
        raise ValueError(f"--object-model: cannot import {module_name}: {exc}") from None
    target = getattr(module, attr, None)
    if not callable(target):
        raise ValueError(f"--object-model: {module_name} has no callable {attr!r}")
    if default:
        return lambda: target("Outlook.Application")
    return target


def com_code(exc: BaseException) -> tuple[int, str] | None:
    """(HRESULT, description) of a COM error, None for any other exception. Outlook's own
    errors come as DISP_E_EXCEPTION with the real code and text in ``excepinfo``."""
    hresult = getattr(exc, "hresult", None)
    if isinstance(hresult, bool) or not isinstance(hresult, int):
        return None
    text = str(getattr(exc, "strerror", "") or "")
    info = getattr(exc, "excepinfo", None)
    if hresult == DISP_E_EXCEPTION and isinstance(info, tuple) and len(info) >= 6:
        text = str(info[2] or text)
        if isinstance(info[5], int) and info[5]:
            hresult = info[5]
    return hresult, text


def provider_error(exc: BaseException, what: str) -> ProviderError:
    """The contract's error for an exception raised by the object model during ``what``."""
    if isinstance(exc, ProviderError):
        return exc
    code = com_code(exc)
    if code is None:
        return PermanentError(f"{what}: {type(exc).__name__}: {exc}")
    hresult, text = code
    label = f"{text or 'COM error'} (HRESULT 0x{hresult & 0xFFFFFFFF:08X})"
    if hresult in BUSY:
        return TransientError(f"Outlook is busy ({what}): {label}", retry_after=BUSY_RETRY_S)
    if hresult in UNREACHABLE:
        return TransientError(f"Outlook cannot be reached ({what}): {label}")
    if hresult in GONE:
        return NotFoundError(f"{what}: not found in Outlook: {label}")
    if hresult == MAPI_E_OBJECT_CHANGED:
        return PreconditionFailed(f"{what}: changed in Outlook meanwhile: {label}")
    if hresult in SESSION_LOST:
        return AuthError(f"the MAPI session was refused or lost ({what}): {label}")
    return PermanentError(f"Outlook refused {what}: {label}")


@contextlib.contextmanager
def guarded(what: str) -> Iterator[None]:
    """Turn whatever the object model raises inside into the contract's errors."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        raise provider_error(exc, what) from None


# --------------------------------------------------------------------------- conversions


def _utc(value: Any) -> datetime:
    """A ``*UTC`` property as an aware UTC datetime: pywin32 hands COM dates back tagged
    with some zone or none; the wall-clock value of StartUTC/EndUTC is UTC whatever the tag."""
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, tzinfo=UTC
    )


def _naive_utc(value: datetime) -> datetime:
    return as_utc(value).replace(tzinfo=None)


def _wall_date(value: Any) -> date:
    return date(value.year, value.month, value.day)


def _dasl_time(value: datetime) -> str:
    # Minutes only: Outlook evaluates filters without seconds and mis-reads them otherwise.
    return as_utc(value).strftime("%Y-%m-%d %H:%M")


def dasl_window(window: Window) -> str:
    """Items overlapping the window, widened to whole minutes, in UTC."""
    start = as_utc(window.start).replace(second=0, microsecond=0)
    end = as_utc(window.end)
    if end.second or end.microsecond:
        end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return f"@SQL=\"{DASL_START}\" < '{_dasl_time(end)}' AND \"{DASL_END}\" > '{_dasl_time(start)}'"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def dasl_hub_ids(hub_ids: Sequence[str]) -> str:
    return "@SQL=" + " OR ".join(f'"{HUB_ID_PROPERTY}" = {_quote(h)}' for h in hub_ids)


def _occurrence_id(entry_id: str, start: datetime) -> str:
    return f"{entry_id}{OCCURRENCE_SEP}{start.strftime('%Y%m%dT%H%M%SZ')}"


def _split_id(remote_id: str) -> tuple[str, datetime | None]:
    entry_id, sep, when = remote_id.partition(OCCURRENCE_SEP)
    if not sep:
        return entry_id, None
    try:
        return entry_id, datetime.strptime(when, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise NotFoundError(f"{remote_id!r} is no Outlook item id") from None


def check_event(data: EventData) -> None:
    """Refuse what Outlook would refuse on Save, before anything is written."""
    if isinstance(data.start, datetime) != isinstance(data.end, datetime):
        raise PermanentError("start and end must both be dates or both date-times")
    if as_utc(data.end) < as_utc(data.start):
        raise PermanentError("the end date occurs before the start date")
    if data.show_as not in BUSY_OUT:
        raise PermanentError(f"unknown show_as {data.show_as!r}")


# --------------------------------------------------------------------------- the session


class OutlookSession:
    """Outlook's default calendar in one MAPI profile; every method is blocking COM work for
    the COM thread, raising only the contract's errors (and :class:`OutlookUnavailable`
    from :meth:`open`)."""

    def __init__(self, factory: Callable[[], Any], profile: str | None) -> None:
        self.factory = factory
        self.profile = profile
        self.app: Any = None
        self.namespace: Any = None
        self.calendar: Any = None
        self.profile_name = ""

    # ------------------------------------------------------------------ logon

    def open(self) -> str:
        """Start (or attach to) Outlook, log on to the profile, open the default calendar;
        a line saying what was opened."""
        try:
            self.app = self.factory()
        except Exception as exc:
            code = com_code(exc)
            if code is not None and code[0] in NOT_INSTALLED:
                raise OutlookUnavailable(
                    "Outlook is not installed on this PC (Outlook.Application is not "
                    "registered); the Outlook agent needs classic Outlook for Windows"
                ) from None
            raise OutlookUnavailable(f"Outlook could not be started: {exc}") from None
        try:
            self.namespace = self.app.GetNamespace("MAPI")
            self._logon()
            self.calendar = self.namespace.GetDefaultFolder(OL_FOLDER_CALENDAR)
            version = str(getattr(self.app, "Version", "") or "?")
            return f"Outlook {version}, profile {self.profile_name!r}, {self.calendar.Name}"
        except OutlookUnavailable:
            raise
        except Exception as exc:
            raise OutlookUnavailable(str(provider_error(exc, "opening the calendar"))) from None

    def _logon(self) -> None:
        try:
            if self.profile:
                self.namespace.Logon(self.profile, "", False, False)
            else:
                self.namespace.Logon()
        except Exception as exc:
            code = com_code(exc)
            if self.profile and code is not None and code[0] in (MAPI_E_LOGON_FAILED, *GONE):
                raise OutlookUnavailable(
                    f"Outlook has no profile named {self.profile!r} (Control Panel > Mail > "
                    "Show Profiles lists them; --profile takes one of those names)"
                ) from None
            raise
        self.profile_name = str(self.namespace.CurrentProfileName or "")
        if self.profile and self.profile_name.lower() != self.profile.lower():
            # One Outlook process holds one profile: a running Outlook keeps its own.
            raise OutlookUnavailable(
                f"Outlook is running with profile {self.profile_name!r}, not {self.profile!r}: "
                f"close Outlook, or start the agent with --profile {self.profile_name!r}"
            )

    def close(self) -> None:
        """Drop the references, so that COM can release Outlook (the user's Outlook stays)."""
        self.calendar = self.namespace = self.app = None

    # ------------------------------------------------------------------ reading

    def _check_calendar(self, calendar: str) -> None:
        if calendar:
            raise NotFoundError(
                f"calendar {calendar!r}: the Outlook agent serves the default calendar of its "
                "profile; leave the agent's calendar key empty"
            )

    def _hub_id(self, item: Any) -> str | None:
        try:
            value = item.PropertyAccessor.GetProperty(HUB_ID_PROPERTY)
        except Exception as exc:
            code = com_code(exc)
            if code is not None and code[0] in GONE:
                return None  # GetProperty raises for a property the item does not have
            raise
        return str(value) if value else None

    def _version(self, item: Any) -> str:
        accessor = item.PropertyAccessor
        try:
            key = accessor.GetProperty(PR_CHANGE_KEY)
        except Exception as exc:
            code = com_code(exc)
            if code is None or code[0] not in GONE:
                raise
            # A store without change keys (PST): the modification time, to the second.
            modified = item.LastModificationTime
            return "lm:" + datetime(*tuple(modified.timetuple())[:6]).isoformat()
        return "ck:" + str(accessor.BinaryToString(key))

    def _read(self, item: Any) -> RemoteEvent:
        all_day = bool(item.AllDayEvent)
        start_utc = _utc(item.StartUTC)
        start: datetime | date
        end: datetime | date
        if all_day:  # all-day events live in local dates: Start/End are midnights there
            start, end = _wall_date(item.Start), _wall_date(item.End)
        else:
            start, end = start_utc, _utc(item.EndUTC)
        entry_id = str(item.EntryID)
        remote_id, series_id = entry_id, None
        if item.RecurrenceState in (OL_APPT_OCCURRENCE, OL_APPT_EXCEPTION):
            remote_id, series_id = _occurrence_id(entry_id, start_utc), entry_id
        categories = tuple(c.strip() for c in str(item.Categories or "").split(",") if c.strip())
        data = EventData(
            subject=str(item.Subject or ""),
            start=start,
            end=end,
            body=str(item.Body or "").replace("\r\n", "\n"),
            location=str(item.Location or ""),
            private=item.Sensitivity in (OL_PRIVATE, OL_CONFIDENTIAL),
            show_as=BUSY_IN.get(int(item.BusyStatus), "busy"),
            reminder_minutes=int(item.ReminderMinutesBeforeStart) if item.ReminderSet else None,
            categories=categories,
        )
        return RemoteEvent(
            remote_id=remote_id,
            version=self._version(item),
            data=data,
            hub_id=None if series_id else self._hub_id(item),
            series_id=series_id,
        )

    def _walk(self, window: Window) -> Iterator[Any]:
        """The calendar's items and occurrences overlapping ``window`` (widened to minutes)."""
        items = self.calendar.Items
        items.Sort("[Start]")  # first, ascending: IncludeRecurrences needs it
        items.IncludeRecurrences = True
        found = items.Restrict(dasl_window(window))
        item = found.GetFirst()
        walked = 0
        while item is not None and walked < MAX_LISTED:
            walked += 1
            yield item
            item = found.GetNext()

    def fetch(self, calendar: str, window: Window) -> FetchResult:
        self._check_calendar(calendar)
        result = FetchResult(full=True)
        with guarded("listing the calendar"):
            for item in self._walk(window):
                if getattr(item, "Class", OL_APPOINTMENT_CLASS) != OL_APPOINTMENT_CLASS:
                    continue
                try:
                    with guarded("reading an item"):
                        event = self._read(item)
                except (NotFoundError, PermanentError) as exc:
                    result.skipped.append(
                        SkippedEvent(str(getattr(item, "EntryID", "?")), str(exc))
                    )
                    continue
                if window.overlaps(event.data.start, event.data.end):
                    result.changed.append(event)
        return result

    def _item(self, entry_id: str) -> Any:
        """The calendar item with this EntryID; NotFoundError when gone or moved away."""
        with guarded(f"opening {entry_id}"):
            item = self.namespace.GetItemFromID(entry_id, self.calendar.StoreID)
            # Deleted items keep their EntryID in Deleted Items: not ours any more.
            if str(item.Parent.EntryID) != str(self.calendar.EntryID):
                raise NotFoundError(f"{entry_id}: no longer in the calendar (moved or deleted)")
        return item

    def get(self, calendar: str, remote_id: str) -> RemoteEvent:
        self._check_calendar(calendar)
        entry_id, occurrence = _split_id(remote_id)
        item = self._item(entry_id)
        if occurrence is None:
            with guarded(f"reading {remote_id}"):
                return self._read(item)
        around = Window(occurrence - timedelta(minutes=1), occurrence + timedelta(minutes=1))
        with guarded(f"reading {remote_id}"):
            for found in self._walk(around):
                if str(found.EntryID) == entry_id and _utc(found.StartUTC) == occurrence:
                    return self._read(found)
        raise NotFoundError(f"{remote_id}: no such occurrence")

    def _find(self, hub_ids: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for i in range(0, len(hub_ids), FIND_CHUNK):
            chunk = hub_ids[i : i + FIND_CHUNK]
            items = self.calendar.Items.Restrict(dasl_hub_ids(chunk))
            item = items.GetFirst()
            while item is not None:
                hub_id = self._hub_id(item)
                if hub_id in chunk:
                    found.setdefault(hub_id, item)
                item = items.GetNext()
        return found

    def find(self, calendar: str, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        self._check_calendar(calendar)
        with guarded("finding hub events"):
            return {hub_id: self._read(item) for hub_id, item in self._find(hub_ids).items()}

    # ------------------------------------------------------------------ writing

    def _write(self, appt: Any, data: EventData) -> None:
        if int(appt.MeetingStatus) != OL_NON_MEETING:
            raise PermanentError("it is a meeting in Outlook; calhub only writes appointments")
        appt.Subject = data.subject
        appt.Body = data.body
        appt.Location = data.location
        # AllDayEvent first: switching it snaps Start/End. Start before End: Outlook moves
        # End along when Start changes, keeping the duration.
        if data.all_day:
            appt.AllDayEvent = True
            appt.Start = datetime(data.start.year, data.start.month, data.start.day)
            appt.End = datetime(data.end.year, data.end.month, data.end.day)
        else:
            assert isinstance(data.start, datetime) and isinstance(data.end, datetime)
            appt.AllDayEvent = False
            appt.StartUTC = _naive_utc(data.start)
            appt.EndUTC = _naive_utc(data.end)
        appt.Sensitivity = OL_PRIVATE if data.private else OL_NORMAL
        appt.BusyStatus = BUSY_OUT[data.show_as]
        appt.Categories = ", ".join(data.categories)
        if data.reminder_minutes is None:
            appt.ReminderSet = False
        else:
            appt.ReminderSet = True
            appt.ReminderMinutesBeforeStart = data.reminder_minutes

    def _expect(self, item: Any, version: str | None, what: str) -> None:
        if version is not None and self._version(item) != version:
            raise PreconditionFailed(f"{what}: edited in Outlook since the hub's last fetch")

    def _stored(self, hub_id: str, appt: Any) -> PushResult:
        """What Outlook holds now: its content too, since Outlook keeps no per-event colour
        (and rounds what it must), so the engine compares the next fetch with this, not with
        what it sent."""
        event = self._read(appt)
        return PushResult(hub_id, event.remote_id, event.version, event.data)

    def _push_one(self, item: PushItem) -> PushResult:
        check_event(item.data)
        if item.remote_id is None:
            with guarded(f"creating {item.hub_id}"):
                existing = self._find([item.hub_id]).get(item.hub_id)
                if existing is not None:  # a retried create: link, never a second copy
                    return self._stored(item.hub_id, existing)
                appt = self.calendar.Items.Add(OL_APPOINTMENT_ITEM)
                self._write(appt, item.data)
                appt.PropertyAccessor.SetProperty(HUB_ID_PROPERTY, item.hub_id)
                appt.Save()
                return self._stored(item.hub_id, appt)
        entry_id, occurrence = _split_id(item.remote_id)
        if occurrence is not None:
            raise PermanentError(f"{item.remote_id}: occurrences of a series are read-only")
        appt = self._item(entry_id)
        with guarded(f"updating {item.remote_id}"):
            self._expect(appt, item.version, item.remote_id)
            self._write(appt, item.data)
            appt.Save()
            return self._stored(item.hub_id, appt)

    def push(self, calendar: str, items: Sequence[PushItem]) -> list[PushOutcome]:
        self._check_calendar(calendar)
        outcomes: list[PushOutcome] = []
        for item in items:
            try:
                outcomes.append(self._push_one(item))
            except (NotFoundError, PreconditionFailed, PermanentError) as exc:
                outcomes.append(exc)
        return outcomes

    def delete(self, calendar: str, remote_id: str, version: str | None) -> None:
        self._check_calendar(calendar)
        entry_id, occurrence = _split_id(remote_id)
        if occurrence is not None:
            raise PermanentError(f"{remote_id}: occurrences of a series are read-only")
        appt = self._item(entry_id)
        with guarded(f"deleting {remote_id}"):
            self._expect(appt, version, remote_id)
            appt.Delete()

    # ------------------------------------------------------------------ check

    def check(self, calendar: str, write: bool) -> list[CheckItem]:
        items = [CheckItem("Outlook", True, f"profile {self.profile_name!r}")]
        try:
            self._check_calendar(calendar)
            with guarded("reading the calendar"):
                name = str(self.calendar.Name)
            items.append(CheckItem(f"read {name}", True, "default calendar of the profile"))
        except ProviderError as exc:
            return [*items, CheckItem("read calendar", False, str(exc))]
        if write:
            now = datetime.now(UTC).replace(microsecond=0)
            probe = EventData("calhub write probe", now, now, show_as="free")
            try:
                result = self._push_one(PushItem(f"calhub-probe-{time.time_ns()}", probe))
                self.delete(calendar, result.remote_id, result.version)
                items.append(CheckItem("write", True, "probe appointment created and deleted"))
            except ProviderError as exc:
                items.append(CheckItem("write", False, str(exc)))
        return items
