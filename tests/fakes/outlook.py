"""A fake Outlook object model, written from Microsoft's Outlook VBA reference.

``calhub outlook-agent --object-model tests.fakes.outlook:Application`` drives it exactly as
it drives ``win32com.client.Dispatch("Outlook.Application")``: Application.GetNamespace,
NameSpace.Logon / CurrentProfileName / GetDefaultFolder / GetItemFromID, Folder.Items,
Items.Sort / IncludeRecurrences / Restrict / GetFirst / GetNext / Add, AppointmentItem with
its properties, Save / Delete / Send, PropertyAccessor, UserProperties, and errors shaped
like ``pywintypes.com_error`` (``hresult``, ``strerror``, ``excepinfo``, ``argerror``).

The calendar lives in a JSON file named by ``$CALHUB_FAKE_OUTLOOK`` (locked with flock), so
that the test process edits it "in Outlook" while the agent process serves it.

Strict where Outlook is strict (each from the reference):

- the user's zone is not UTC (``Europe/Berlin``): ``Start``/``End`` are local wall-clock
  times, only ``StartUTC``/``EndUTC`` are UTC; dates come back tagged UTC whatever they mean,
  as pywin32 returns COM dates;
- setting ``Start`` moves ``End`` along (the duration is kept);
- ``EntryID`` is empty until the first ``Save``;
- ``IncludeRecurrences`` expands occurrences only when the items were sorted by ``[Start]``
  ascending first, and then ``Count`` is undefined (2147483647);
- ``Restrict`` understands DASL (``@SQL=``) on ``urn:schemas:calendar:dtstart``/``dtend``
  (UTC, minutes: seconds are refused) and on named string properties; anything else is
  refused ("Cannot parse condition");
- ``PropertyAccessor.GetProperty`` raises for a property the item does not have;
- ``Delete`` moves the item to Deleted Items, where ``GetItemFromID`` still finds it;
- a ``Save`` with the end before the start is refused.

Knobs (in the state file, set through :class:`OutlookBackdoor`): ``busy`` (the next N calls
fail with RPC_E_CALL_REJECTED), ``vanish`` (entry ids that disappear just before their next
Save), ``exit_after_save`` (the agent process dies right after a Save: a disconnect
mid-push), ``session_lost``, ``installed``, ``profiles``, ``running_profile``, ``pst`` (a store
without PR_CHANGE_KEY).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.spec import CalendarRef, EventData

STATE_ENV = "CALHUB_FAKE_OUTLOOK"
ZONE = ZoneInfo("Europe/Berlin")


def _hr(code: int) -> int:
    return code - (1 << 32)


DISP_E_EXCEPTION = _hr(0x80020009)
RPC_E_CALL_REJECTED = _hr(0x80010001)
CO_E_CLASSSTRING = _hr(0x800401F3)
MAPI_E_NOT_FOUND = _hr(0x8004010F)
MAPI_E_OBJECT_DELETED = _hr(0x8004010A)
MAPI_E_LOGON_FAILED = _hr(0x80040111)
MAPI_E_END_OF_SESSION = _hr(0x80040200)
MAPI_E_CORRUPT_DATA = _hr(0x8004011B)
UNDEFINED_COUNT = 2147483647
HUB_PROP_PREFIX = "http://schemas.microsoft.com/mapi/string/"
PR_CHANGE_KEY = "http://schemas.microsoft.com/mapi/proptag/0x65E20102"
CALENDAR_ID, DELETED_ID, STORE_ID = "CAL0001", "DEL0001", "STORE0001"


class com_error(Exception):
    """``pywintypes.com_error``: (hresult, strerror, excepinfo, argerror)."""

    def __init__(
        self, hresult: int, strerror: str, excepinfo: tuple[Any, ...] | None = None, argerror=None
    ) -> None:
        super().__init__(hresult, strerror, excepinfo, argerror)
        self.hresult, self.strerror, self.excepinfo, self.argerror = (
            hresult,
            strerror,
            excepinfo,
            argerror,
        )


def outlook_error(scode: int, description: str) -> com_error:
    """An error raised by Outlook itself: DISP_E_EXCEPTION with the real code in excepinfo."""
    info = (4096, "Microsoft Outlook", description, None, 0, scode)
    return com_error(DISP_E_EXCEPTION, "Exception occurred.", info, None)


# --------------------------------------------------------------------------- the state file


def _default_state() -> dict[str, Any]:
    return {
        "installed": True,
        "profiles": ["Outlook"],
        "running_profile": None,
        "pst": False,
        "busy": 0,
        "vanish": [],
        "exit_after_save": False,
        "session_lost": False,
        "items": {},
        "sent": 0,
        "recipients_added": 0,
        "calls": 0,
    }


class StateFile:
    """The fake's calendar on disk, read and written under an exclusive lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with open(f"{self.path}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = (
                    json.loads(self.path.read_text()) if self.path.exists() else _default_state()
                )
                try:
                    yield state
                finally:  # an error raised inside still spends its knob (busy, vanish)
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(state))
                    tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def reset(self, **knobs: Any) -> None:
        with self.locked() as state:
            state.clear()
            state.update(_default_state(), **knobs)


def _state_file() -> StateFile:
    path = os.environ.get(STATE_ENV)
    if not path:
        raise RuntimeError(f"{STATE_ENV} names no state file")
    return StateFile(path)


def _enter(state: dict[str, Any]) -> None:
    """Every call into Outlook: the busy and session knobs."""
    state["calls"] += 1
    if state["busy"] > 0:
        state["busy"] -= 1
        raise com_error(RPC_E_CALL_REJECTED, "Call was rejected by callee.")
    if state["session_lost"]:
        raise outlook_error(MAPI_E_END_OF_SESSION, "The MAPI session has ended.")


# --------------------------------------------------------------------------- times


def _wall(value: datetime) -> datetime:
    """A date as pywin32 returns it: the wall-clock value, tagged UTC whatever it means."""
    return value.replace(tzinfo=UTC)


def _naive(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise com_error(DISP_E_EXCEPTION, "Type mismatch.")
    if value.tzinfo is not None:  # pywin32 passes aware datetimes on as UTC
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _to_local(utc: datetime) -> datetime:
    return utc.replace(tzinfo=UTC).astimezone(ZONE).replace(tzinfo=None)


def _to_utc(local: datetime) -> datetime:
    return local.replace(tzinfo=ZONE).astimezone(UTC).replace(tzinfo=None)


def _iso(value: datetime) -> str:
    return value.isoformat()


def _new_record(entry_id: str = "") -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    return {
        "entry_id": entry_id,
        "folder": CALENDAR_ID,
        "subject": "",
        "body": "",
        "location": "",
        "start_utc": _iso(now),
        "end_utc": _iso(now + timedelta(minutes=30)),
        "all_day": False,
        "busy": 2,
        "sensitivity": 0,
        "categories": "",
        "reminder_set": True,
        "reminder_minutes": 15,
        "meeting_status": 0,
        "props": {},
        "change_key": "",
        "modified": _iso(now),
        "recurrence": None,  # {"count": n, "interval_days": d}
    }


def _occurrences(record: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    start = datetime.fromisoformat(record["start_utc"])
    end = datetime.fromisoformat(record["end_utc"])
    rec = record["recurrence"]
    step = timedelta(days=rec["interval_days"])
    return [(start + i * step, end + i * step) for i in range(rec["count"])]


# --------------------------------------------------------------------------- filters

_CLAUSE = re.compile(r'"(?P<prop>[^"]+)"\s*(?P<op><=|>=|<|>|=)\s*\'(?P<value>(?:[^\']|\'\')*)\'')
_DASL_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def _parse_filter(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    if not text.startswith("@SQL="):
        raise outlook_error(DISP_E_EXCEPTION, f"Cannot parse condition. Error at {text[:30]!r}.")
    body = text[len("@SQL=") :]
    joiner = " OR " if " OR " in body else " AND "
    if " OR " in body and " AND " in body:
        raise outlook_error(DISP_E_EXCEPTION, "Cannot parse condition (AND with OR).")
    clauses = []
    for part in body.split(joiner):
        match = _CLAUSE.fullmatch(part.strip())
        if match is None:
            raise outlook_error(
                DISP_E_EXCEPTION, f"Cannot parse condition. Error at {part.strip()[:40]!r}."
            )
        prop, op, value = match["prop"], match["op"], match["value"].replace("''", "'")
        if prop in ("urn:schemas:calendar:dtstart", "urn:schemas:calendar:dtend"):
            if not _DASL_TIME.fullmatch(value):  # seconds or a locale the fake cannot read
                raise outlook_error(
                    DISP_E_EXCEPTION, f"Cannot parse condition. Error at {value!r}."
                )
        elif not (prop.startswith(HUB_PROP_PREFIX) and op == "="):
            raise outlook_error(DISP_E_EXCEPTION, f"Cannot parse condition: {prop!r} {op}.")
        clauses.append((prop, op, value))
    return joiner.strip(), clauses


def _matches(row: dict[str, Any], joiner: str, clauses: list[tuple[str, str, str]]) -> bool:
    def one(prop: str, op: str, value: str) -> bool:
        if prop.startswith(HUB_PROP_PREFIX):
            return row["props"].get(prop) == value
        mine = datetime.fromisoformat(
            row["start_utc"] if prop.endswith("dtstart") else row["end_utc"]
        ).replace(second=0, microsecond=0)
        other = datetime.strptime(value, "%Y-%m-%d %H:%M")
        return {
            "<": mine < other,
            ">": mine > other,
            "<=": mine <= other,
            ">=": mine >= other,
            "=": mine == other,
        }[op]

    results = [one(*c) for c in clauses]
    return all(results) if joiner == "AND" else any(results)


# --------------------------------------------------------------------------- objects


class _Recipients:
    def __init__(self, item: AppointmentItem) -> None:
        self._item = item

    @property
    def Count(self) -> int:
        return 0

    def Add(self, Name: str) -> None:
        with self._item._file.locked() as state:
            state["recipients_added"] += 1
        self._item._row["meeting_status"] = 1  # adding recipients makes a meeting


class PropertyAccessor:
    """``PropertyAccessor``: properties referenced by namespace."""

    def __init__(self, item: AppointmentItem) -> None:
        self._item = item

    def GetProperty(self, SchemaName: str) -> Any:
        row = self._item._row
        if SchemaName == PR_CHANGE_KEY:
            if self._item._pst or not row["change_key"]:
                raise outlook_error(MAPI_E_NOT_FOUND, f'The property "{SchemaName}" is unknown.')
            return bytes.fromhex(row["change_key"])
        if SchemaName in row["props"]:
            return row["props"][SchemaName]
        raise outlook_error(
            MAPI_E_NOT_FOUND, f'The property "{SchemaName}" is unknown or cannot be found.'
        )

    def SetProperty(self, SchemaName: str, Value: Any) -> None:
        if not SchemaName.startswith(HUB_PROP_PREFIX):
            raise outlook_error(DISP_E_EXCEPTION, f"The property {SchemaName!r} cannot be set.")
        if self._item._occurrence is not None:
            raise outlook_error(DISP_E_EXCEPTION, "An occurrence cannot be changed this way.")
        self._item._row["props"][SchemaName] = str(Value)

    def BinaryToString(self, Value: bytes) -> str:
        return bytes(Value).hex().upper()


class UserProperty:
    """One ``UserProperty`` (olText)."""

    def __init__(self, item: AppointmentItem, name: str) -> None:
        self._item, self.Name = item, name

    @property
    def Value(self) -> Any:
        return self._item._row["props"].get(f"user:{self.Name}", "")

    @Value.setter
    def Value(self, value: Any) -> None:
        self._item._row["props"][f"user:{self.Name}"] = str(value)


class UserProperties:
    """``UserProperties``: Add and Find."""

    def __init__(self, item: AppointmentItem) -> None:
        self._item = item

    def Add(self, Name: str, Type: int = 1, AddToFolderFields: bool = True, DisplayFormat=None):
        self._item._row["props"].setdefault(f"user:{Name}", "")
        return UserProperty(self._item, Name)

    def Find(self, Name: str, Custom: bool = True) -> UserProperty | None:
        if f"user:{Name}" in self._item._row["props"]:
            return UserProperty(self._item, Name)
        return None


class Folder:
    """A ``Folder``: the default calendar, or Deleted Items as an item's ``Parent``."""

    def __init__(self, app: Application, entry_id: str) -> None:
        self._app, self.EntryID, self.StoreID = app, entry_id, STORE_ID
        self.Name = "Calendar" if entry_id == CALENDAR_ID else "Deleted Items"

    @property
    def Items(self) -> Items:
        if self.EntryID != CALENDAR_ID:
            return Items(self._app, [])
        with self._app._file.locked() as state:
            _enter(state)
            rows = [r for r in state["items"].values() if r["folder"] == CALENDAR_ID]
            pst = state["pst"]
        return Items(self._app, [AppointmentItem(self._app, r, pst=pst) for r in rows])


class Items:
    """``Items``: Sort, IncludeRecurrences, Restrict, GetFirst/GetNext, Count, Item, Add."""

    def __init__(self, app: Application, items: list[AppointmentItem], expanded: bool = False):
        self._app = app
        self._items = items
        self._sort: tuple[str, bool] | None = None
        self._include = False
        self._expand = expanded
        self._cursor = 0

    def Sort(self, Property: str, Descending: bool = False) -> None:
        if Property != "[Start]":
            raise outlook_error(DISP_E_EXCEPTION, f"The property {Property!r} cannot be sorted on.")
        self._sort = (Property, bool(Descending))
        self._items.sort(key=lambda i: i._start_utc(), reverse=bool(Descending))

    @property
    def IncludeRecurrences(self) -> bool:
        return self._include

    @IncludeRecurrences.setter
    def IncludeRecurrences(self, value: bool) -> None:
        self._include = bool(value)
        # The reference: it only has an effect on items sorted by [Start], ascending, first.
        self._expand = self._include and self._sort == ("[Start]", False)

    @property
    def Count(self) -> int:
        return UNDEFINED_COUNT if self._expand else len(self._items)

    def Item(self, Index: int) -> AppointmentItem:
        if not 1 <= Index <= len(self._items):
            raise outlook_error(DISP_E_EXCEPTION, "Array index out of bounds.")
        return self._items[Index - 1]

    def Restrict(self, Filter: str) -> Items:
        joiner, clauses = _parse_filter(Filter)
        with self._app._file.locked() as state:
            _enter(state)
        candidates: list[AppointmentItem] = []
        for item in self._items:
            if item._row["recurrence"] and self._expand:
                candidates += item._expand()
            else:
                candidates.append(item)
        found = [i for i in candidates if _matches(i._view(), joiner, clauses)]
        if self._sort is not None:
            found.sort(key=lambda i: i._start_utc(), reverse=self._sort[1])
        result = Items(self._app, found, expanded=self._expand)
        result._sort = self._sort
        return result

    def GetFirst(self) -> AppointmentItem | None:
        self._cursor = 0
        return self.GetNext()

    def GetNext(self) -> AppointmentItem | None:
        if self._cursor >= len(self._items):
            return None
        self._cursor += 1
        return self._items[self._cursor - 1]

    def Add(self, Type: int = 1) -> AppointmentItem:
        if Type != 1:
            raise outlook_error(DISP_E_EXCEPTION, "This fake calendar holds appointments only.")
        with self._app._file.locked() as state:
            pst = state["pst"]
        return AppointmentItem(self._app, _new_record(), pst=pst)


class AppointmentItem:
    """``AppointmentItem``: the properties calhub reads and writes, Save, Delete, Send."""

    Class = 26  # olAppointment

    def __init__(
        self,
        app: Application,
        row: dict[str, Any],
        *,
        pst: bool = False,
        occurrence: tuple[datetime, datetime] | None = None,
    ) -> None:
        self._app = app
        self._file = app._file
        self._row = json.loads(json.dumps(row))  # the item object holds its own copy
        self._pst = pst
        self._occurrence = occurrence

    # -- views used by Items
    def _view(self) -> dict[str, Any]:
        if self._occurrence is None:
            return self._row
        start, end = self._occurrence
        return {**self._row, "start_utc": _iso(start), "end_utc": _iso(end)}

    def _start_utc(self) -> datetime:
        return datetime.fromisoformat(self._view()["start_utc"])

    def _expand(self) -> list[AppointmentItem]:
        return [
            AppointmentItem(self._app, self._row, pst=self._pst, occurrence=span)
            for span in _occurrences(self._row)
        ]

    def _get(self, key: str) -> Any:
        if self._row.get("corrupt"):
            raise outlook_error(MAPI_E_CORRUPT_DATA, "The item is corrupt and cannot be opened.")
        return self._view()[key]

    def _set(self, key: str, value: Any) -> None:
        if self._occurrence is not None:
            raise outlook_error(DISP_E_EXCEPTION, "This fake does not edit occurrences.")
        self._row[key] = value

    # -- identity
    @property
    def EntryID(self) -> str:
        return self._row["entry_id"]  # empty until the first Save

    @property
    def Parent(self) -> Folder:
        return Folder(self._app, self._row["folder"])

    @property
    def RecurrenceState(self) -> int:
        if not self._row["recurrence"]:
            return 0  # olApptNotRecurring
        return 2 if self._occurrence is not None else 1  # olApptOccurrence / olApptMaster

    @property
    def IsRecurring(self) -> bool:
        return bool(self._row["recurrence"])

    @property
    def LastModificationTime(self) -> datetime:
        return _wall(_to_local(datetime.fromisoformat(self._row["modified"])))

    @property
    def PropertyAccessor(self) -> PropertyAccessor:
        return PropertyAccessor(self)

    @property
    def UserProperties(self) -> UserProperties:
        return UserProperties(self)

    @property
    def Recipients(self) -> _Recipients:
        return _Recipients(self)

    # -- times
    @property
    def StartUTC(self) -> datetime:
        return _wall(datetime.fromisoformat(self._get("start_utc")))

    @StartUTC.setter
    def StartUTC(self, value: datetime) -> None:
        self._move_start(_naive(value))

    @property
    def EndUTC(self) -> datetime:
        return _wall(datetime.fromisoformat(self._get("end_utc")))

    @EndUTC.setter
    def EndUTC(self, value: datetime) -> None:
        self._set("end_utc", _iso(_naive(value)))

    @property
    def Start(self) -> datetime:
        return _wall(_to_local(datetime.fromisoformat(self._get("start_utc"))))

    @Start.setter
    def Start(self, value: datetime) -> None:
        self._move_start(_to_utc(_naive(value)))

    @property
    def End(self) -> datetime:
        return _wall(_to_local(datetime.fromisoformat(self._get("end_utc"))))

    @End.setter
    def End(self, value: datetime) -> None:
        self._set("end_utc", _iso(_to_utc(_naive(value))))

    def _move_start(self, start_utc: datetime) -> None:
        # Outlook keeps the duration: End moves with Start.
        old_start = datetime.fromisoformat(self._row["start_utc"])
        old_end = datetime.fromisoformat(self._row["end_utc"])
        self._set("start_utc", _iso(start_utc))
        self._set("end_utc", _iso(start_utc + (old_end - old_start)))

    @property
    def AllDayEvent(self) -> bool:
        return self._get("all_day")

    @AllDayEvent.setter
    def AllDayEvent(self, value: bool) -> None:
        self._set("all_day", bool(value))
        if value:  # snaps to local midnights
            start = self.Start.replace(tzinfo=None)
            midnight = start.replace(hour=0, minute=0, second=0)
            self._row["start_utc"] = _iso(_to_utc(midnight))
            self._row["end_utc"] = _iso(_to_utc(midnight + timedelta(days=1)))

    # -- plain properties
    def _plain(key: str, kind: type) -> property:  # type: ignore[misc]
        def getter(self: AppointmentItem) -> Any:
            return self._get(key)

        def setter(self: AppointmentItem, value: Any) -> None:
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise com_error(DISP_E_EXCEPTION, "Type mismatch.")
            self._set(key, kind(value))

        return property(getter, setter)

    Subject = _plain("subject", str)
    Body = _plain("body", str)
    Location = _plain("location", str)
    BusyStatus = _plain("busy", int)
    Sensitivity = _plain("sensitivity", int)
    Categories = _plain("categories", str)
    ReminderSet = _plain("reminder_set", bool)
    ReminderMinutesBeforeStart = _plain("reminder_minutes", int)
    MeetingStatus = _plain("meeting_status", int)
    del _plain

    # -- methods
    def Save(self) -> None:
        if self._occurrence is not None:
            raise outlook_error(DISP_E_EXCEPTION, "This fake does not save occurrences.")
        row = self._row
        if datetime.fromisoformat(row["end_utc"]) < datetime.fromisoformat(row["start_utc"]):
            raise outlook_error(
                DISP_E_EXCEPTION, "The end date you entered occurs before the start date."
            )
        with self._file.locked() as state:
            _enter(state)
            if row["entry_id"] in state["vanish"]:
                state["vanish"].remove(row["entry_id"])
                state["items"].pop(row["entry_id"], None)
                raise outlook_error(MAPI_E_OBJECT_DELETED, "The item has been moved or deleted.")
            if row["entry_id"] and row["entry_id"] not in state["items"]:
                raise outlook_error(MAPI_E_OBJECT_DELETED, "The item has been moved or deleted.")
            if not row["entry_id"]:
                row["entry_id"] = "00000000" + secrets.token_hex(20).upper()
            row["change_key"] = secrets.token_hex(22)
            row["modified"] = _iso(datetime.now(UTC).replace(microsecond=0, tzinfo=None))
            state["items"][row["entry_id"]] = json.loads(json.dumps(row))
            die = state["exit_after_save"]
            state["exit_after_save"] = False
        if die:
            os._exit(17)  # the agent dies after Outlook saved: the hub never hears back

    def Delete(self) -> None:
        with self._file.locked() as state:
            _enter(state)
            stored = state["items"].get(self._row["entry_id"])
            if stored is None:
                raise outlook_error(MAPI_E_OBJECT_DELETED, "The item has been moved or deleted.")
            stored["folder"] = DELETED_ID  # moved to Deleted Items
            stored["change_key"] = secrets.token_hex(22)

    def Send(self) -> None:
        with self._file.locked() as state:
            state["sent"] += 1


class NameSpace:
    """``NameSpace`` ("MAPI"): Logon, CurrentProfileName, GetDefaultFolder, GetItemFromID."""

    def __init__(self, app: Application) -> None:
        self._app = app
        self.CurrentProfileName = ""

    def Logon(self, Profile=None, Password=None, ShowDialog=None, NewSession=None) -> None:
        with self._app._file.locked() as state:
            running = state["running_profile"]
            if running:  # a running Outlook keeps its session: the profile is ignored
                self.CurrentProfileName = running
                return
            name = Profile or state["profiles"][0]
            if name not in state["profiles"]:
                raise outlook_error(MAPI_E_LOGON_FAILED, "Cannot log on: no such profile.")
            self.CurrentProfileName = name

    def _logged_on(self) -> None:
        if not self.CurrentProfileName:
            raise outlook_error(MAPI_E_LOGON_FAILED, "Not logged on.")

    def GetDefaultFolder(self, FolderType: int) -> Folder:
        self._logged_on()
        if FolderType != 9:
            raise outlook_error(DISP_E_EXCEPTION, "This fake has the calendar folder only.")
        return Folder(self._app, CALENDAR_ID)

    def GetItemFromID(self, EntryIDItem: str, EntryIDStore: str | None = None) -> AppointmentItem:
        self._logged_on()
        with self._app._file.locked() as state:
            _enter(state)
            row = state["items"].get(EntryIDItem)
            pst = state["pst"]
        if row is None or (EntryIDStore not in (None, STORE_ID)):
            raise outlook_error(
                MAPI_E_NOT_FOUND, "The operation failed. An object could not be found."
            )
        return AppointmentItem(self._app, row, pst=pst)


class Application:
    """``Outlook.Application``; the ``--object-model`` callable."""

    Name = "Outlook"
    Version = "16.0.0.0"

    def __init__(self) -> None:
        self._file = _state_file()
        with self._file.locked() as state:
            if not state["installed"]:
                raise com_error(CO_E_CLASSSTRING, "Invalid class string")
        self.Session = NameSpace(self)

    def GetNamespace(self, Type: str) -> NameSpace:
        if Type != "MAPI":
            raise outlook_error(DISP_E_EXCEPTION, "Only MAPI is a namespace.")
        return self.Session


# --------------------------------------------------------------------------- the backdoor


def _write_data(row: dict[str, Any], data: EventData) -> None:
    if isinstance(data.start, datetime):
        row["all_day"] = False
        row["start_utc"] = _iso(data.start.astimezone(UTC).replace(tzinfo=None))
        row["end_utc"] = _iso(data.end.astimezone(UTC).replace(tzinfo=None))  # type: ignore[union-attr]
    else:
        assert isinstance(data.end, date)
        row["all_day"] = True
        row["start_utc"] = _iso(
            _to_utc(datetime(data.start.year, data.start.month, data.start.day))
        )
        row["end_utc"] = _iso(_to_utc(datetime(data.end.year, data.end.month, data.end.day)))
    row["subject"], row["body"], row["location"] = data.subject, data.body, data.location
    row["sensitivity"] = 2 if data.private else 0
    row["busy"] = {"free": 0, "tentative": 1, "busy": 2, "oof": 3}[data.show_as]
    row["categories"] = ", ".join(data.categories)
    row["reminder_set"] = data.reminder_minutes is not None
    row["reminder_minutes"] = data.reminder_minutes or 0


class OutlookBackdoor:
    """The agent's own edits "in Outlook", for the conformance suite and the knobs."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.file = StateFile(path)

    def _save(self, row: dict[str, Any]) -> str:
        with self.file.locked() as state:
            if not row["entry_id"]:
                row["entry_id"] = "00000000" + secrets.token_hex(20).upper()
            row["change_key"] = secrets.token_hex(22)
            row["modified"] = _iso(datetime.now(UTC).replace(microsecond=0, tzinfo=None))
            state["items"][row["entry_id"]] = row
        return row["entry_id"]

    async def create_external(self, cal: CalendarRef, data: EventData) -> str:
        row = _new_record()
        _write_data(row, data)
        return self._save(row)

    async def edit(self, cal: CalendarRef, remote_id: str, data: EventData) -> None:
        row = self.item(remote_id)
        _write_data(row, data)
        self._save(row)

    async def delete(self, cal: CalendarRef, remote_id: str) -> None:
        with self.file.locked() as state:
            state["items"][remote_id]["folder"] = DELETED_ID

    async def expire_cursor(self, cal: CalendarRef) -> None:
        raise NotImplementedError  # Outlook's object model has no cursor to expire

    async def create_unreadable(self, cal: CalendarRef, start: datetime) -> str:
        """An item whose properties cannot be read (a corrupt item in the store)."""
        row = _new_record()
        _write_data(row, EventData("Corrupt", start, start + timedelta(hours=1)))
        row["corrupt"] = True
        return self._save(row)

    def create_series(self, data: EventData, count: int, interval_days: int = 1) -> str:
        row = _new_record()
        _write_data(row, data)
        row["recurrence"] = {"count": count, "interval_days": interval_days}
        return self._save(row)

    def item(self, entry_id: str) -> dict[str, Any]:
        with self.file.locked() as state:
            return state["items"][entry_id]

    def items(self, folder: str = CALENDAR_ID) -> list[dict[str, Any]]:
        with self.file.locked() as state:
            return [r for r in state["items"].values() if r["folder"] == folder]

    def knobs(self, **values: Any) -> None:
        with self.file.locked() as state:
            for key, value in values.items():
                if key not in state:
                    raise KeyError(key)
                state[key] = value

    def read(self, key: str) -> Any:
        with self.file.locked() as state:
            return state[key]
