"""A strict fake of Exchange Web Services (SOAP 1.1) for calendars, as Exchange Server 2016 has it.

Written from Microsoft's EWS reference (the operations' request and response elements, the
types schema's element order, ResponseCode, ExchangeImpersonation, RequestServerVersion,
SyncFolderItems, CalendarView, ExtendedFieldURI restrictions, UpdateItem ConflictResolution,
EWS throttling), not from what exchangelib sends: it rejects what EWS rejects, so a client gap
shows up as a failing test.

What it serves over HTTPS (a trustme CA) at ``POST /EWS/Exchange.asmx``:

* authentication: Basic, and NTLM through pyspnego's acceptor (connection-bound, as IIS does:
  the handshake authenticates the TCP connection, later requests on it need no header). The
  acceptor reads its users from the file named by ``NTLM_USER_FILE``; the fake sets that
  variable while it runs, as pyspnego offers no other way to hand an acceptor a credential.
* SOAP headers: RequestServerVersion (required, a version Exchange 2016 knows) and
  ExchangeImpersonation/ConnectingSID (the service account must hold the impersonation role
  for the mailbox: ErrorImpersonateUserDenied otherwise, ErrorNonExistentMailbox for an
  unknown address); every answer carries ServerVersionInfo.
* operations: GetFolder, FindFolder, SyncFolderItems (opaque signed SyncStates, net changes,
  MaxChangesReturned paging, IncludesLastItemInRange), FindItem (CalendarView expanding
  daily series, IndexedPageItemView with restrictions on extended properties), GetItem,
  CreateItem, UpdateItem (ChangeKey per ConflictResolution), DeleteItem, ConvertId.
* strictness: element order and required attributes of what it reads, read-only properties
  refused on create, SendMeetingInvitations(OrCancellations) and SendMeetingCancellations
  required for calendar items, one property per change description.

Knobs (plain methods, for tests and the bench): ErrorServerBusy with BackOffMilliseconds,
HTTP 503, impersonation denied, expired SyncStates, latency, holding an operation open, and
edits made by the mailbox owner in Outlook. Counters record operations per mailbox.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import secrets
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import spnego
from aiohttp import web
from lxml import etree

from tests.fakes.tls import TestCA

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
PATH = "/EWS/Exchange.asmx"

# RequestServerVersion values an Exchange 2016 server accepts (RequestServerVersion page).
SERVER_VERSIONS = (
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2016",
)
MAX_SYNC_CHANGES = 512

# Windows time-zone ids Outlook writes, and the fake's own small table of their IANA zones.
WINDOWS_ZONES = {
    "UTC": "UTC",
    "Pacific Standard Time": "America/Los_Angeles",
    "Eastern Standard Time": "America/New_York",
    "W. Europe Standard Time": "Europe/Berlin",
    "GMT Standard Time": "Europe/London",
    "Tokyo Standard Time": "Asia/Tokyo",
}

# The element order of t:ItemType then t:CalendarItemType (types.xsd), for the children a
# calendar item may have; the rank is its position.
_ITEM_ORDER = """
MimeContent ItemId ParentFolderId ItemClass Subject Sensitivity Body Attachments
DateTimeReceived Size Categories Importance InReplyTo IsSubmitted IsDraft IsFromMe
IsResend IsUnmodified InternetMessageHeaders DateTimeSent DateTimeCreated ResponseObjects
ReminderDueBy ReminderIsSet ReminderNextTime ReminderMinutesBeforeStart DisplayCc
DisplayTo HasAttachments ExtendedProperty Culture EffectiveRights LastModifiedName
LastModifiedTime IsAssociated WebClientReadFormQueryString WebClientEditFormQueryString
ConversationId UniqueBody Flag StoreEntryId InstanceKey NormalizedBody
EntityExtractionResult PolicyTag ArchiveTag RetentionDate Preview
RightsManagementLicenseData PredictedActionReasons IsClutter BlockStatus HasBlockedImages
TextBody IconIndex SearchKey SortKey Hashtags Mentions MentionedMe MentionsPreview
MentionsEx AppliedHashtags AppliedHashtagsPreview Likes LikesPreview
PendingSocialActivityTagIds AtAllMention CanDelete InferenceClassification UID
RecurrenceId DateTimeStamp Start End OriginalStart IsAllDayEvent LegacyFreeBusyStatus
Location When IsMeeting IsCancelled IsRecurring MeetingRequestWasSent IsResponseRequested
CalendarItemType MyResponseType Organizer RequiredAttendees OptionalAttendees Resources
ConflictingMeetingCount AdjacentMeetingCount ConflictingMeetings AdjacentMeetings Duration
TimeZone AppointmentReplyTime AppointmentSequenceNumber AppointmentState Recurrence
FirstOccurrence LastOccurrence ModifiedOccurrences DeletedOccurrences MeetingTimeZone
StartTimeZone EndTimeZone ConferenceType AllowNewTimeProposal IsOnlineMeeting
MeetingWorkspaceUrl NetShowUrl EnhancedLocation StartWallClock EndWallClock
StartTimeZoneId EndTimeZoneId IntendedFreeBusyStatus JoinOnlineMeetingUrl
OnlineMeetingSettings IsOrganizer CalendarActivityData DoNotForwardMeeting
""".split()  # noqa: SIM905 - the schema order, readable
_RANK = {name: i for i, name in enumerate(_ITEM_ORDER)}
# Properties the server computes: setting one is ErrorInvalidPropertySet.
_READ_ONLY = {
    "ItemId",
    "ParentFolderId",
    "DateTimeReceived",
    "Size",
    "DateTimeCreated",
    "DateTimeSent",
    "HasAttachments",
    "LastModifiedName",
    "LastModifiedTime",
    "TextBody",
    "IsMeeting",
    "IsCancelled",
    "IsRecurring",
    "MeetingRequestWasSent",
    "CalendarItemType",
    "MyResponseType",
    "Organizer",
    "Duration",
    "AppointmentState",
    "FirstOccurrence",
    "LastOccurrence",
    "OriginalStart",
    "RecurrenceId",
}
# The FieldURIs of the properties the fake stores, and their element names.
_FIELD_URIS = {
    "item:Subject": "Subject",
    "item:Sensitivity": "Sensitivity",
    "item:Body": "Body",
    "item:Categories": "Categories",
    "item:ReminderIsSet": "ReminderIsSet",
    "item:ReminderMinutesBeforeStart": "ReminderMinutesBeforeStart",
    "item:ParentFolderId": "ParentFolderId",
    "item:DateTimeCreated": "DateTimeCreated",
    "item:LastModifiedTime": "LastModifiedTime",
    "item:TextBody": "TextBody",
    "item:ItemClass": "ItemClass",
    "calendar:UID": "UID",
    "calendar:Start": "Start",
    "calendar:End": "End",
    "calendar:IsAllDayEvent": "IsAllDayEvent",
    "calendar:LegacyFreeBusyStatus": "LegacyFreeBusyStatus",
    "calendar:Location": "Location",
    "calendar:IsMeeting": "IsMeeting",
    "calendar:IsRecurring": "IsRecurring",
    "calendar:CalendarItemType": "CalendarItemType",
    "calendar:StartTimeZone": "StartTimeZone",
    "calendar:EndTimeZone": "EndTimeZone",
    "calendar:MeetingTimeZone": "MeetingTimeZone",
    "calendar:IsResponseRequested": "IsResponseRequested",
}
_SENSITIVITY = {"Normal", "Personal", "Private", "Confidential"}
_FREE_BUSY = {"Free", "Tentative", "Busy", "OOF", "WorkingElsewhere", "NoData"}
_CONFLICT = {"NeverOverwrite", "AutoResolve", "AlwaysOverwrite"}
_INVITATIONS = {"SendToNone", "SendOnlyToAll", "SendToAllAndSaveCopy"}
_INVITATIONS_OR_CANCELLATIONS = _INVITATIONS | {"SendOnlyToChanged", "SendToChangedAndSaveCopy"}
_DELETE_TYPES = {"HardDelete", "SoftDelete", "MoveToDeletedItems"}
_TEXTS = {
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorItemNotFound": "The specified object was not found in the store.",
    "ErrorIrresolvableConflict": (
        "The send or update operation could not be performed because the change key passed "
        "in the request does not match the current change key for the item."
    ),
    "ErrorInvalidSyncStateData": "Synchronization state data is corrupt or otherwise invalid.",
    "ErrorImpersonateUserDenied": (
        "The account does not have permission to impersonate the requested user."
    ),
    "ErrorNonExistentMailbox": "The SMTP address has no mailbox associated with it.",
    "ErrorCalendarEndDateIsEarlierThanStartDate": "EndDate is earlier than StartDate",
    "ErrorInvalidServerVersion": "The specified server version is invalid.",
    "ErrorSchemaValidation": "The request failed schema validation.",
    "ErrorInvalidPropertySet": "Set action is invalid for property.",
    "ErrorIncorrectUpdatePropertyCount": (
        "An object within a change description must contain one and only one property to modify."
    ),
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorInvalidIdMalformed": "Id is malformed.",
    "ErrorSendMeetingInvitationsRequired": (
        "SendMeetingInvitations attribute is required for calendar items."
    ),
    "ErrorSendMeetingCancellationsRequired": (
        "SendMeetingCancellations attribute is required for calendar items."
    ),
    "ErrorInvalidRequest": "The request is invalid.",
}


class Fault(Exception):
    """A SOAP fault (HTTP 500) with an EWS ResponseCode in its detail."""

    def __init__(self, code: str, message: str = "", *, back_off_ms: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message or _TEXTS.get(code, code)
        self.back_off_ms = back_off_ms


class ItemError(Exception):
    """One response message with ResponseClass="Error" (the rest of the request goes on)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = message or _TEXTS.get(code, code)


@dataclass
class FakeItem:
    """One calendar item (a single appointment, or the master of a daily series)."""

    id: str
    folder: str
    subject: str = ""
    start: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    end: datetime = datetime(2000, 1, 1, 1, tzinfo=UTC)
    all_day: bool = False
    body: str = ""
    body_type: str = "Text"
    location: str = ""
    sensitivity: str = "Normal"
    free_busy: str = "Busy"
    categories: list[str] = field(default_factory=list)
    reminder_set: bool = False
    reminder_minutes: int = 15
    extended: dict[tuple[str, str, str], str] = field(default_factory=dict)
    start_tz: str = "UTC"
    end_tz: str = "UTC"
    uid: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: int = 0
    series_count: int = 0  # > 0: a RecurringMaster repeating daily this many times
    attendees: int = 0
    corrupt: bool = False  # GetItem answers ErrorItemCorrupt (a damaged item in the store)

    @property
    def change_key(self) -> str:
        return _b64(f"CK|{self.id}|{self.version}")

    def hub_ids(self) -> list[str]:
        return list(self.extended.values())


@dataclass
class _Folder:
    id: str
    name: str
    cls: str = "IPF.Appointment"
    parent: str | None = None


@dataclass
class FakeMailbox:
    """One mailbox: its folders, items and the SyncStates handed out for it."""

    address: str
    folders: dict[str, _Folder] = field(default_factory=dict)
    items: dict[str, FakeItem] = field(default_factory=dict)
    calendar: str = ""
    deleted_items: str = ""
    root: str = ""
    states: dict[int, dict[str, int]] = field(default_factory=dict)
    impersonation_denied: bool = False

    def in_folder(self, folder: str) -> list[FakeItem]:
        return [item for item in self.items.values() if item.folder == folder]


@dataclass
class _Connection:
    """NTLM state of one TCP connection: the acceptor mid-handshake, then who it is."""

    context: Any = None
    user: str | None = None


@dataclass(frozen=True)
class _Occurrence:
    master: FakeItem
    index: int

    @property
    def id(self) -> str:
        return _b64(f"OCC|{self.master.id}|{self.index}")

    @property
    def start(self) -> datetime:
        return self.master.start + timedelta(days=self.index)

    @property
    def end(self) -> datetime:
        return self.master.end + timedelta(days=self.index)


class EwsFake:
    """The fake service: ``async with EwsFake(ca) as fake:`` serves on 127.0.0.1."""

    def __init__(
        self,
        ca: TestCA,
        *,
        username: str = "CONTOSO\\svc-calhub",
        password: str = "Pa55w.rd",
        auth: tuple[str, ...] = ("ntlm", "basic"),
        latency_ms: float = 0.0,
    ) -> None:
        self.ca = ca
        self.username = username
        self.password = password
        self.auth = auth
        self.latency = latency_ms / 1000
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.ops: Counter[tuple[str, str]] = Counter()  # (mailbox, operation) answered
        self.requests = 0  # SOAP requests answered (NTLM handshake legs not counted)
        self.http_requests = 0
        self.ntlm_handshakes = 0
        self.invitations = 0  # writes that would have mailed someone
        self.versions_seen: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._busy: dict[str, list[int]] = {}  # mailbox -> back-off ms of the next faults
        self._unavailable = 0
        self._hold: str | None = None
        self.held = asyncio.Event()  # set when a held operation arrived
        self._release = asyncio.Event()
        self._connections: dict[Any, _Connection] = {}
        self._transports: set[Any] = set()
        self._secret = secrets.token_bytes(16)
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._user_file: Path | None = None
        self._env_before: str | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{PATH}"

    def account_options(self, **overrides: object) -> dict[str, object]:
        """The exchange_ews account options pointing calhub at this fake (trusting its CA)."""
        return {
            "url": self.url,
            "username": self.username,
            "password": self.password,
            "auth": "ntlm",
            "ca_file": str(self.ca.ca_file),
            "version": "Exchange2016",
            **overrides,
        }

    async def __aenter__(self) -> EwsFake:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        domain, _, user = self.username.rpartition("\\")
        handle, name = tempfile.mkstemp(prefix="ews-fake-users-")
        with os.fdopen(handle, "w") as out:
            out.write(f"{domain}:{user}:{self.password}\n")
        self._user_file = Path(name)
        self._env_before = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = name
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", PATH, self._endpoint)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ca.server_context())
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for transport in self._transports:
            transport.abort()  # keep-alive connections a client dropped without closing
        self._transports.clear()
        self._connections.clear()
        if self._user_file is not None:
            if self._env_before is None:
                os.environ.pop("NTLM_USER_FILE", None)
            else:
                os.environ["NTLM_USER_FILE"] = self._env_before
            self._user_file.unlink(missing_ok=True)
            self._user_file = None

    # ------------------------------------------------------------------ knobs

    def add_mailbox(self, address: str, *, calendars: tuple[str, ...] = ()) -> FakeMailbox:
        mb = FakeMailbox(address)
        for kind, name, cls in (
            ("root", "Top of Information Store", "IPF.Note"),
            ("calendar", "Calendar", "IPF.Appointment"),
            ("deleted_items", "Deleted Items", "IPF.Note"),
        ):
            fid = self._new_id("F")
            mb.folders[fid] = _Folder(fid, name, cls, parent=mb.root or None)
            setattr(mb, kind, fid)
        for name in calendars:
            fid = self._new_id("F")
            mb.folders[fid] = _Folder(fid, name, parent=mb.calendar)
        self.mailboxes[address.lower()] = mb
        return mb

    def mailbox(self, address: str) -> FakeMailbox:
        return self.mailboxes[address.lower()]

    def folder_id(self, address: str, name: str = "") -> str:
        mb = self.mailbox(address)
        if not name:
            return mb.calendar
        return next(f.id for f in mb.folders.values() if f.name == name)

    def items(self, address: str, folder: str = "") -> list[FakeItem]:
        """The items in the mailbox's calendar (or the named calendar folder)."""
        return self.mailbox(address).in_folder(self.folder_id(address, folder))

    def busy(self, address: str, count: int = 1, back_off_ms: int = 2000) -> None:
        """The next ``count`` requests for the mailbox get ErrorServerBusy."""
        self._busy.setdefault(address.lower(), []).extend([back_off_ms] * count)

    def unavailable(self, count: int = 1) -> None:
        """The next ``count`` requests get HTTP 503 (an IIS/CAS outage, not a SOAP answer)."""
        self._unavailable += count

    def deny_impersonation(self, address: str, denied: bool = True) -> None:
        self.mailbox(address).impersonation_denied = denied

    def expire_sync_states(self, address: str) -> None:
        self.mailbox(address).states.clear()

    def hold(self, operation: str) -> None:
        """Keep the next ``operation`` request open until :meth:`release`."""
        self._hold = operation
        self.held.clear()
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def owner_create(
        self,
        address: str,
        subject: str,
        start: datetime | date,
        end: datetime | date,
        *,
        folder: str = "",
        tz: str = "W. Europe Standard Time",
        body: str = "",
        html: bool = False,
        location: str = "",
        sensitivity: str = "Normal",
        free_busy: str = "Busy",
        categories: tuple[str, ...] = (),
        reminder_minutes: int | None = None,
        daily: int = 0,
    ) -> str:
        """The owner creates an appointment in Outlook (``daily`` > 0: a daily series)."""
        mb = self.mailbox(address)
        item = FakeItem(id=self._new_id("I"), folder=self.folder_id(address, folder))
        item.uid = secrets.token_hex(16)
        self._owner_set(
            item, tz, subject=subject, start=start, end=end, body=body, html=html,
            location=location, sensitivity=sensitivity, free_busy=free_busy,
            categories=categories, reminder_minutes=reminder_minutes,
        )  # fmt: skip
        item.series_count = daily
        item.version = next(self._clock)
        mb.items[item.id] = item
        return item.id

    def owner_edit(
        self, address: str, item_id: str, *, tz: str = "W. Europe Standard Time", **changes: Any
    ) -> None:
        """The owner edits an item in Outlook: ``subject``, ``start``/``end``, ``body`` ..."""
        item = self.mailbox(address).items[item_id]
        self._owner_set(item, tz, **changes)
        item.version = next(self._clock)
        item.modified = datetime.now(UTC)

    def owner_delete(self, address: str, item_id: str, *, hard: bool = False) -> None:
        """The owner deletes an item in Outlook: it moves to Deleted Items (a new ItemId)."""
        self._remove(self.mailbox(address), item_id, "HardDelete" if hard else "MoveToDeletedItems")

    def _owner_set(self, item: FakeItem, tz: str, **changes: Any) -> None:
        for name, value in changes.items():
            if name in ("start", "end"):
                if isinstance(value, datetime):
                    setattr(item, name, value.astimezone(UTC))
                    item.all_day = False
                else:  # all day: midnight in the owner's zone
                    local = datetime(value.year, value.month, value.day, tzinfo=_zone(tz))
                    setattr(item, name, local.astimezone(UTC))
                    item.all_day = True
                item.start_tz = item.end_tz = tz
            elif name == "html":
                item.body_type = "HTML" if value else "Text"
            elif name == "body":
                item.body = (
                    f"<html><body><p>{value}</p></body></html>" if changes.get("html") else value
                )
            elif name == "reminder_minutes":
                item.reminder_set = value is not None
                item.reminder_minutes = value or 0
            elif name == "categories":
                item.categories = list(value)
            else:
                setattr(item, name, value)

    # ------------------------------------------------------------------ HTTP

    async def _endpoint(self, request: web.Request) -> web.StreamResponse:
        self.http_requests += 1
        if request.transport is not None:
            self._transports.add(request.transport)
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        user = self._authenticate(request)
        if isinstance(user, web.Response):
            await request.read()
            return user
        if self._unavailable:
            self._unavailable -= 1
            await request.read()
            return web.Response(status=503, text="Service Unavailable", content_type="text/html")
        ctype = request.headers.get("Content-Type", "")
        if not ctype.lower().startswith("text/xml"):
            # SOAP 1.1 is text/xml; application/soap+xml is SOAP 1.2, which EWS does not speak.
            return web.Response(status=415, text=f"unsupported Content-Type {ctype!r}")
        raw = await request.read()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            status, body = await self._soap(raw)
        finally:
            self.in_flight -= 1
        return web.Response(status=status, body=body, content_type="text/xml", charset="utf-8")

    def _authenticate(self, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        transport = request.transport
        conn = self._connections.get(transport)
        if not header and conn is not None and conn.user:
            return conn.user  # an NTLM-authenticated connection stays authenticated
        if scheme.lower() == "basic" and "basic" in self.auth:
            try:
                user, _, password = base64.b64decode(token).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return self._challenge()
            if user.lower() == self.username.lower() and password == self.password:
                return user
            return self._challenge()
        if scheme.lower() in ("ntlm", "negotiate") and "ntlm" in self.auth:
            return self._ntlm(transport, scheme, token)
        return self._challenge()

    def _ntlm(self, transport: Any, scheme: str, token: str) -> str | web.Response:
        for stale in [t for t in self._connections if t is None or t.is_closing()]:
            del self._connections[stale]
        conn = self._connections.setdefault(transport, _Connection())
        try:
            data = base64.b64decode(token)
            if conn.context is None or conn.user is not None:
                conn.context, conn.user = spnego.server(protocol="ntlm"), None
            answer = conn.context.step(data)
        except Exception:  # any acceptor failure is a refused logon, as IIS answers it
            conn.context = None
            return self._challenge()
        if not conn.context.complete:
            return web.Response(
                status=401,
                headers={
                    "WWW-Authenticate": f"{scheme} {base64.b64encode(answer or b'').decode()}"
                },
            )
        principal = str(conn.context.client_principal or "")
        conn.context = None
        if principal.lower() != self.username.lower():
            return self._challenge()
        self.ntlm_handshakes += 1
        conn.user = principal
        return principal

    def _challenge(self) -> web.Response:
        headers = []
        if "ntlm" in self.auth:
            headers += [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
        if "basic" in self.auth:
            headers.append(("WWW-Authenticate", 'Basic realm="mail.contoso.example"'))
        from multidict import CIMultiDict

        return web.Response(status=401, headers=CIMultiDict(headers), text="401 - Unauthorized")

    # ------------------------------------------------------------------ SOAP

    async def _soap(self, raw: bytes) -> tuple[int, bytes]:
        try:
            envelope = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError as exc:
            return 500, _fault_xml(Fault("ErrorSchemaValidation", f"not XML: {exc}"))
        mailbox = ""
        try:
            if envelope.tag != f"{{{SOAP}}}Envelope":
                raise Fault(
                    "ErrorSchemaValidation",
                    f"root element {envelope.tag} is not a SOAP 1.1 Envelope",
                )
            header = envelope.find(f"{{{SOAP}}}Header")
            body = envelope.find(f"{{{SOAP}}}Body")
            if body is None or len(body) != 1:
                raise Fault("ErrorSchemaValidation", "the Body must hold exactly one operation")
            operation = body[0]
            if etree.QName(operation).namespace != M:
                raise Fault("ErrorSchemaValidation", f"{operation.tag} is not an EWS operation")
            name = etree.QName(operation).localname
            version = self._version(header)
            mb = self._impersonated(header)
            mailbox = mb.address if mb else ""
            queue = self._busy.get(mailbox.lower())
            if queue:
                raise Fault("ErrorServerBusy", back_off_ms=queue.pop(0))
            if self._hold == name:
                self._hold = None
                self.held.set()
                await self._release.wait()
            handler = getattr(self, f"_op_{name}", None)
            if handler is None:
                raise Fault("ErrorInvalidRequest", f"the fake does not serve {name}")
            if mb is None and name != "ConvertId":
                raise Fault(
                    "ErrorImpersonateUserDenied", "the fake serves impersonated mailboxes only"
                )
            messages = handler(mb, operation, version)
        except Fault as fault:
            self.requests += 1
            self.ops[(mailbox.lower(), "fault")] += 1
            return 500, _fault_xml(fault)
        self.requests += 1
        self.ops[(mailbox.lower(), name)] += 1
        response = etree.Element(f"{{{M}}}{name}Response", nsmap={"m": M, "t": T})
        container = etree.SubElement(response, f"{{{M}}}ResponseMessages")
        for message in messages:
            container.append(message)
        return 200, _envelope(response)

    def _version(self, header: Any) -> str:
        element = None if header is None else header.find(f"{{{T}}}RequestServerVersion")
        if element is None or not element.get("Version"):
            raise Fault("ErrorSchemaValidation", "RequestServerVersion with a Version is required")
        version = element.get("Version")
        if version not in SERVER_VERSIONS:
            raise Fault("ErrorInvalidServerVersion")
        self.versions_seen[version] += 1
        return version

    def _impersonated(self, header: Any) -> FakeMailbox | None:
        element = None if header is None else header.find(f"{{{T}}}ExchangeImpersonation")
        if element is None:
            return None
        sid = _only(element, "ConnectingSID")
        ids = list(_elements(sid))
        if len(ids) != 1 or _local(ids[0]) not in (
            "PrimarySmtpAddress", "SmtpAddress", "PrincipalName", "SID",
        ):  # fmt: skip
            raise Fault("ErrorSchemaValidation", "ConnectingSID needs exactly one identifier")
        address = (ids[0].text or "").strip().lower()
        mb = self.mailboxes.get(address)
        if mb is None:
            raise Fault("ErrorNonExistentMailbox")
        if mb.impersonation_denied:
            raise Fault("ErrorImpersonateUserDenied")
        return mb

    # ------------------------------------------------------------------ operations

    def _op_ConvertId(self, mb: Any, op: Any, version: str) -> list[Any]:
        if not op.get("DestinationFormat"):
            raise Fault("ErrorSchemaValidation", "ConvertId requires DestinationFormat")
        ids = _only(op, "SourceIds", M)
        return [
            _error_message("ConvertId", ItemError("ErrorInvalidIdMalformed"))
            for _ in _elements(ids)
        ]

    def _op_GetFolder(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _expect(op, ["FolderShape", "FolderIds"])
        out = []
        for ref in _elements(_only(op, "FolderIds", M)):
            try:
                folder = self._folder_ref(mb, ref)
            except ItemError as err:
                out.append(_error_message("GetFolder", err))
                continue
            msg = _message("GetFolder")
            folders = etree.SubElement(msg, f"{{{M}}}Folders")
            folders.append(_folder_xml(folder))
            out.append(msg)
        return out

    def _op_FindFolder(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _require(op, "Traversal")
        _expect(
            op,
            [
                "FolderShape",
                "IndexedPageFolderView",
                "FractionalPageFolderView",
                "Restriction",
                "ParentFolderIds",
            ],
        )
        out = []
        for ref in _elements(_only(op, "ParentFolderIds", M)):
            try:
                parent = self._folder_ref(mb, ref)
            except ItemError as err:
                out.append(_error_message("FindFolder", err))
                continue
            children = [f for f in mb.folders.values() if f.parent == parent.id]
            msg = _message("FindFolder")
            root = etree.SubElement(
                msg, f"{{{M}}}RootFolder",
                TotalItemsInView=str(len(children)), IncludesLastItemInRange="true",
            )  # fmt: skip
            folders = etree.SubElement(root, f"{{{T}}}Folders")
            for child in children:
                folders.append(_folder_xml(child))
            out.append(msg)
        return out

    def _op_SyncFolderItems(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _expect(
            op,
            ["ItemShape", "SyncFolderId", "SyncState", "Ignore", "MaxChangesReturned", "SyncScope"],
        )
        shape = _shape(_only(op, "ItemShape", M))
        folder = self._folder_ref(mb, _single(_only(op, "SyncFolderId", M)), fault=True)
        max_el = op.find(f"{{{M}}}MaxChangesReturned")
        if max_el is None:
            raise Fault("ErrorSchemaValidation", "MaxChangesReturned is required")
        limit = int(max_el.text or "0")
        if not 1 <= limit <= MAX_SYNC_CHANGES:
            raise Fault("ErrorSchemaValidation", f"MaxChangesReturned {limit} is not in 1..512")
        state_el = op.find(f"{{{M}}}SyncState")
        known = (
            {}
            if state_el is None or not (state_el.text or "").strip()
            else self._state(mb, folder, state_el.text.strip())
        )
        ignore = {
            el.get("Id")
            for el in (op.find(f"{{{M}}}Ignore") if op.find(f"{{{M}}}Ignore") is not None else [])
        }
        current = {item.id: item for item in mb.in_folder(folder.id)}
        changes: list[tuple[str, str, FakeItem | None]] = []
        for item_id, item in current.items():
            if item_id in ignore:
                continue
            if item_id not in known:
                changes.append(("Create", item_id, item))
            elif known[item_id] != item.version:
                changes.append(("Update", item_id, item))
        changes += [("Delete", item_id, None) for item_id in known if item_id not in current]
        page, more = changes[:limit], len(changes) > limit
        new_known = dict(known)
        for kind, item_id, item in page:
            if kind == "Delete":
                new_known.pop(item_id, None)
            else:
                assert item is not None
                new_known[item_id] = item.version
        msg = _message("SyncFolderItems")
        etree.SubElement(msg, f"{{{M}}}SyncState").text = self._new_state(mb, folder, new_known)
        etree.SubElement(msg, f"{{{M}}}IncludesLastItemInRange").text = "false" if more else "true"
        container = etree.SubElement(msg, f"{{{M}}}Changes")
        for kind, item_id, item in page:
            change = etree.SubElement(container, f"{{{T}}}{kind}")
            if item is None:
                etree.SubElement(
                    change, f"{{{T}}}ItemId", Id=item_id, ChangeKey=_b64(f"CK|{item_id}|gone")
                )
            else:
                change.append(self._item_xml(mb, item, shape))
        return [msg]

    def _op_FindItem(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _require(op, "Traversal")
        if op.get("Traversal") not in ("Shallow", "SoftDeleted", "Associated"):
            raise Fault("ErrorSchemaValidation", f"Traversal {op.get('Traversal')!r}")
        _expect(op, [
            "ItemShape", "IndexedPageItemView", "FractionalPageItemView",
            "SeekToConditionPageItemView", "CalendarView", "ContactsView", "GroupBy",
            "DistinguishedGroupBy", "Restriction", "SortOrder", "ParentFolderIds", "QueryString",
        ])  # fmt: skip
        shape = _shape(_only(op, "ItemShape", M))
        if "Body" in shape.fields:
            raise ItemErrorFault(
                "ErrorInvalidPropertyRequest", "Body cannot be requested by FindItem"
            )
        view = op.find(f"{{{M}}}CalendarView")
        restriction = op.find(f"{{{M}}}Restriction")
        if view is not None and restriction is not None:
            raise Fault(
                "ErrorInvalidRestriction", "a CalendarView cannot be combined with a Restriction"
            )
        out = []
        for ref in _elements(_only(op, "ParentFolderIds", M)):
            try:
                folder = self._folder_ref(mb, ref)
            except ItemError as err:
                out.append(_error_message("FindItem", err))
                continue
            msg = _message("FindItem")
            if view is not None:
                entries = self._calendar_view(mb, folder, view)
                root = etree.SubElement(
                    msg, f"{{{M}}}RootFolder",
                    TotalItemsInView=str(len(entries)), IncludesLastItemInRange="true",
                )  # fmt: skip
                items = etree.SubElement(root, f"{{{T}}}Items")
                for entry in entries:
                    items.append(self._item_xml(mb, entry, shape))
            else:
                matcher = _restriction(restriction)
                found = [i for i in mb.in_folder(folder.id) if matcher(i)]
                page = op.find(f"{{{M}}}IndexedPageItemView")
                offset, size = 0, len(found)
                if page is not None:
                    _require(page, "Offset")
                    _require(page, "BasePoint")
                    offset = int(page.get("Offset", "0"))
                    size = int(page.get("MaxEntriesReturned") or len(found) or 1)
                chunk = found[offset : offset + size]
                end = offset + len(chunk)
                root = etree.SubElement(
                    msg, f"{{{M}}}RootFolder", IndexedPagingOffset=str(end),
                    TotalItemsInView=str(len(found)),
                    IncludesLastItemInRange="true" if end >= len(found) else "false",
                )  # fmt: skip
                items = etree.SubElement(root, f"{{{T}}}Items")
                for item in chunk:
                    items.append(self._item_xml(mb, item, shape))
            out.append(msg)
        return out

    def _op_GetItem(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _expect(op, ["ItemShape", "ItemIds"])
        shape = _shape(_only(op, "ItemShape", M))
        out = []
        for ref in _elements(_only(op, "ItemIds", M)):
            try:
                entry = self._item_ref(mb, ref)
                if isinstance(entry, FakeItem) and entry.corrupt:
                    raise ItemError("ErrorItemCorrupt", "The item is corrupt.")
            except ItemError as err:
                out.append(_error_message("GetItem", err))
                continue
            msg = _message("GetItem")
            etree.SubElement(msg, f"{{{M}}}Items").append(self._item_xml(mb, entry, shape))
            out.append(msg)
        return out

    def _op_CreateItem(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _expect(op, ["SavedItemFolderId", "Items"])
        invitations = op.get("SendMeetingInvitations")
        if invitations is None:
            raise Fault("ErrorSendMeetingInvitationsRequired")
        if invitations not in _INVITATIONS:
            raise Fault("ErrorSchemaValidation", f"SendMeetingInvitations {invitations!r}")
        saved = op.find(f"{{{M}}}SavedItemFolderId")
        folder = (
            self._folder_ref(mb, _single(saved), fault=True)
            if saved is not None
            else mb.folders[mb.calendar]
        )
        out = []
        for element in _elements(_only(op, "Items", M)):
            if _local(element) != "CalendarItem":
                out.append(
                    _error_message(
                        "CreateItem",
                        ItemError("ErrorInvalidRequest", "the fake stores calendar items only"),
                    )
                )
                continue
            item = FakeItem(id=self._new_id("I"), folder=folder.id, uid=secrets.token_hex(16))
            try:
                self._write_all(item, element, creating=True)
                self._check_span(item)
            except ItemError as err:
                out.append(_error_message("CreateItem", err))
                continue
            if invitations != "SendToNone" and item.attendees:
                self.invitations += 1
            item.version = next(self._clock)
            mb.items[item.id] = item
            msg = _message("CreateItem")
            items = etree.SubElement(msg, f"{{{M}}}Items")
            cal = etree.SubElement(items, f"{{{T}}}CalendarItem")
            etree.SubElement(cal, f"{{{T}}}ItemId", Id=item.id, ChangeKey=item.change_key)
            out.append(msg)
        return out

    def _op_UpdateItem(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _expect(op, ["SavedItemFolderId", "ItemChanges"])
        _require(op, "ConflictResolution")
        conflict = op.get("ConflictResolution")
        if conflict not in _CONFLICT:
            raise Fault("ErrorSchemaValidation", f"ConflictResolution {conflict!r}")
        invitations = op.get("SendMeetingInvitationsOrCancellations")
        if invitations is None:
            raise Fault(
                "ErrorSendMeetingInvitationsRequired",
                "SendMeetingInvitationsOrCancellations is required for calendar items",
            )
        if invitations not in _INVITATIONS_OR_CANCELLATIONS:
            raise Fault(
                "ErrorSchemaValidation", f"SendMeetingInvitationsOrCancellations {invitations!r}"
            )
        out = []
        for change in _elements(_only(op, "ItemChanges", M)):
            _expect(change, ["ItemId", "OccurrenceItemId", "RecurringMasterItemId", "Updates"], T)
            ref = _first(change)
            try:
                entry = self._item_ref(mb, ref)
                if isinstance(entry, _Occurrence):
                    raise ItemError(
                        "ErrorInvalidRequest", "the fake does not edit single occurrences"
                    )
                sent_key = ref.get("ChangeKey")
                if conflict != "AlwaysOverwrite" and sent_key and sent_key != entry.change_key:
                    # NeverOverwrite fails on any conflict; AutoResolve cannot resolve a
                    # change to the same properties either (the fake treats all as such).
                    raise ItemError("ErrorIrresolvableConflict")
                staged = FakeItem(
                    **{
                        **entry.__dict__,
                        "categories": list(entry.categories),
                        "extended": dict(entry.extended),
                    }
                )
                self._apply_updates(staged, _only(change, "Updates", T))
                self._check_span(staged)
            except ItemError as err:
                out.append(_error_message("UpdateItem", err))
                continue
            staged.version = next(self._clock)
            staged.modified = datetime.now(UTC)
            mb.items[entry.id] = staged
            msg = _message("UpdateItem")
            items = etree.SubElement(msg, f"{{{M}}}Items")
            cal = etree.SubElement(items, f"{{{T}}}CalendarItem")
            etree.SubElement(cal, f"{{{T}}}ItemId", Id=staged.id, ChangeKey=staged.change_key)
            results = etree.SubElement(msg, f"{{{M}}}ConflictResults")
            etree.SubElement(results, f"{{{T}}}Count").text = "0"
            out.append(msg)
        return out

    def _op_DeleteItem(self, mb: FakeMailbox, op: Any, version: str) -> list[Any]:
        _expect(op, ["ItemIds"])
        _require(op, "DeleteType")
        kind = op.get("DeleteType")
        if kind not in _DELETE_TYPES:
            raise Fault("ErrorSchemaValidation", f"DeleteType {kind!r}")
        out = []
        for ref in _elements(_only(op, "ItemIds", M)):
            try:
                entry = self._item_ref(mb, ref)
                if isinstance(entry, _Occurrence):
                    raise ItemError(
                        "ErrorInvalidRequest", "the fake does not delete single occurrences"
                    )
                if op.get("SendMeetingCancellations") is None:
                    raise ItemError("ErrorSendMeetingCancellationsRequired")
            except ItemError as err:
                out.append(_error_message("DeleteItem", err))
                continue
            # DeleteItem takes no ChangeKey precondition: EWS ignores one sent with the id.
            self._remove(mb, entry.id, kind)
            out.append(_message("DeleteItem"))
        return out

    # ------------------------------------------------------------------ helpers

    def _folder_ref(self, mb: FakeMailbox, ref: Any, *, fault: bool = False) -> _Folder:
        try:
            kind = _local(ref)
            if kind == "DistinguishedFolderId":
                _require(ref, "Id")
                which = {
                    "calendar": mb.calendar,
                    "msgfolderroot": mb.root,
                    "root": mb.root,
                    "deleteditems": mb.deleted_items,
                }.get(ref.get("Id"))
                box = ref.find(f"{{{T}}}Mailbox")
                if box is not None:
                    address = (_text(box, "EmailAddress") or "").lower()
                    if address != mb.address.lower():
                        raise ItemError(
                            "ErrorAccessDenied",
                            "impersonation covers the impersonated mailbox only",
                        )
                if which is None:
                    raise ItemError("ErrorFolderNotFound")
                return mb.folders[which]
            if kind == "FolderId":
                _require(ref, "Id")
                folder = mb.folders.get(ref.get("Id"))
                if folder is None:
                    raise ItemError("ErrorFolderNotFound")
                return folder
            raise Fault("ErrorSchemaValidation", f"{kind} is not a folder id")
        except ItemError as err:
            if fault:
                raise Fault(err.code, err.message) from None
            raise

    def _item_ref(self, mb: FakeMailbox, ref: Any) -> FakeItem | _Occurrence:
        if _local(ref) != "ItemId":
            raise Fault("ErrorSchemaValidation", f"{_local(ref)} is not supported by the fake")
        _require(ref, "Id")
        item_id = ref.get("Id")
        try:
            decoded = base64.b64decode(item_id, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise ItemError("ErrorInvalidIdMalformed") from None
        if decoded.startswith("OCC|"):
            _, master_id, index = decoded.split("|")
            master = mb.items.get(master_id)
            if master is None or not 0 <= int(index) < master.series_count:
                raise ItemError("ErrorItemNotFound")
            return _Occurrence(master, int(index))
        item = mb.items.get(item_id)
        if item is None:
            raise ItemError("ErrorItemNotFound")
        return item

    def _remove(self, mb: FakeMailbox, item_id: str, kind: str) -> None:
        item = mb.items.pop(item_id)
        if kind != "HardDelete":
            # Moving an item gives it a new ItemId; it keeps its content (and tags).
            item.id, item.folder = self._new_id("I"), mb.deleted_items
            item.version = next(self._clock)
            mb.items[item.id] = item

    def _calendar_view(
        self, mb: FakeMailbox, folder: _Folder, view: Any
    ) -> list[FakeItem | _Occurrence]:
        _require(view, "StartDate")
        _require(view, "EndDate")
        start, end = _instant(view.get("StartDate")), _instant(view.get("EndDate"))
        if end < start:
            raise Fault("ErrorInvalidRequest", "CalendarView EndDate is earlier than StartDate")
        limit = int(view.get("MaxEntriesReturned") or 1_000_000)
        entries: list[FakeItem | _Occurrence] = []
        for item in mb.in_folder(folder.id):
            if item.series_count:
                entries += [
                    occ for occ in (_Occurrence(item, i) for i in range(item.series_count))
                    if occ.start < end and occ.end > start
                ]  # fmt: skip
            elif item.start < end and item.end > start:
                entries.append(item)
        entries.sort(key=lambda e: e.start)
        return entries[:limit]

    def _state(self, mb: FakeMailbox, folder: _Folder, token: str) -> dict[str, int]:
        try:
            payload, _, mac = token.rpartition(".")
            want = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
            if not hmac.compare_digest(want, mac):
                raise ValueError("signature")
            data = json.loads(base64.urlsafe_b64decode(payload))
            if data["m"] != mb.address.lower() or data["f"] != folder.id:
                raise ValueError("another folder's state")
            return dict(mb.states[data["n"]])
        except (ValueError, KeyError, TypeError):
            raise Fault("ErrorInvalidSyncStateData") from None

    def _new_state(self, mb: FakeMailbox, folder: _Folder, known: dict[str, int]) -> str:
        n = next(self._clock)
        mb.states[n] = known
        payload = base64.urlsafe_b64encode(
            json.dumps({"m": mb.address.lower(), "f": folder.id, "n": n}).encode()
        ).decode()
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{mac}"

    def _check_span(self, item: FakeItem) -> None:
        if item.end < item.start:
            raise ItemError("ErrorCalendarEndDateIsEarlierThanStartDate")

    def _write_all(self, item: FakeItem, element: Any, *, creating: bool) -> None:
        last = -1
        for child in _elements(element):
            name = _local(child)
            rank = _RANK.get(name)
            if rank is None:
                raise Fault(
                    "ErrorSchemaValidation", f"The element '{name}' is not expected in CalendarItem"
                )
            if rank < last or (rank == last and name != "ExtendedProperty"):
                raise Fault(
                    "ErrorSchemaValidation", f"The element '{name}' is out of order in CalendarItem"
                )
            last = rank
            if name in _READ_ONLY:
                raise ItemError(
                    "ErrorInvalidPropertySet", f"Set action is invalid for property {name}"
                )
            self._set(item, name, child)
        if creating and not (item.start and item.end):
            raise ItemError("ErrorInvalidRequest", "Start and End are required")

    def _set(self, item: FakeItem, name: str, el: Any) -> None:
        text = el.text or ""
        if name == "Subject":
            item.subject = text
        elif name == "Body":
            _require(el, "BodyType")
            item.body, item.body_type = text, el.get("BodyType")
        elif name == "Sensitivity":
            if text not in _SENSITIVITY:
                raise Fault("ErrorSchemaValidation", f"Sensitivity {text!r}")
            item.sensitivity = text
        elif name == "Categories":
            item.categories = [s.text or "" for s in _elements(el)]
        elif name == "ReminderIsSet":
            item.reminder_set = _bool(text)
        elif name == "ReminderMinutesBeforeStart":
            item.reminder_minutes = int(text)
        elif name == "ExtendedProperty":
            uri = _only(el, "ExtendedFieldURI", T)
            item.extended[_prop_key(uri)] = _text(el, "Value") or ""
        elif name in ("Start", "End"):
            setattr(item, name.lower(), _instant(text))
        elif name == "IsAllDayEvent":
            item.all_day = _bool(text)
        elif name == "LegacyFreeBusyStatus":
            if text not in _FREE_BUSY:
                raise Fault("ErrorSchemaValidation", f"LegacyFreeBusyStatus {text!r}")
            item.free_busy = text
        elif name == "Location":
            item.location = text
        elif name in ("RequiredAttendees", "OptionalAttendees", "Resources"):
            item.attendees += len(list(_elements(el)))
        elif name in ("StartTimeZone", "MeetingTimeZone"):
            _require(el, "Id") if name == "StartTimeZone" else None
            item.start_tz = el.get("Id") or item.start_tz
            if name == "MeetingTimeZone":
                item.end_tz = item.start_tz
        elif name == "EndTimeZone":
            _require(el, "Id")
            item.end_tz = el.get("Id")
        elif name == "UID":
            item.uid = text
        # Other settable properties (Importance, Culture, ...) are accepted and not stored.

    def _apply_updates(self, item: FakeItem, updates: Any) -> None:
        for update in _elements(updates):
            kind = _local(update)
            if kind not in ("SetItemField", "AppendToItemField", "DeleteItemField"):
                raise Fault("ErrorSchemaValidation", f"{kind} is not an item change")
            parts = list(_elements(update))
            if not parts or _local(parts[0]) not in (
                "FieldURI",
                "IndexedFieldURI",
                "ExtendedFieldURI",
            ):
                raise Fault("ErrorSchemaValidation", f"{kind} needs a property path first")
            path = parts[0]
            if _local(path) == "ExtendedFieldURI":
                target = ("ExtendedProperty", _prop_key(path))
            else:
                _require(path, "FieldURI")
                element = _FIELD_URIS.get(path.get("FieldURI"))
                if element is None:
                    raise ItemError(
                        "ErrorInvalidPropertyRequest", f"unknown property {path.get('FieldURI')}"
                    )
                target = (element, None)
            if kind == "DeleteItemField":
                if len(parts) != 1:
                    raise Fault(
                        "ErrorSchemaValidation", "DeleteItemField takes a property path only"
                    )
                self._clear(item, *target)
                continue
            if len(parts) != 2 or _local(parts[1]) != "CalendarItem":
                raise Fault(
                    "ErrorSchemaValidation", f"{kind} needs a property path and a CalendarItem"
                )
            values = list(_elements(parts[1]))
            if len(values) != 1 or _local(values[0]) != target[0]:
                raise ItemError("ErrorIncorrectUpdatePropertyCount")
            if target[0] in _READ_ONLY:
                raise ItemError("ErrorInvalidPropertySet")
            if (
                target[1] is not None
                and _prop_key(_only(values[0], "ExtendedFieldURI", T)) != target[1]
            ):
                raise ItemError("ErrorIncorrectUpdatePropertyCount")
            self._set(item, target[0], values[0])

    def _clear(self, item: FakeItem, name: str, key: Any) -> None:
        if name == "ExtendedProperty":
            item.extended.pop(key, None)
        elif name == "Categories":
            item.categories = []
        elif name == "Location":
            item.location = ""
        elif name == "Body":
            item.body = ""
        elif name in ("ReminderMinutesBeforeStart",):
            item.reminder_minutes = 0
        elif name in ("Subject",):
            item.subject = ""
        elif name in ("StartTimeZone", "EndTimeZone", "MeetingTimeZone"):
            pass
        else:
            raise ItemError("ErrorInvalidPropertyDelete", f"{name} cannot be deleted")

    def _item_xml(self, mb: FakeMailbox, entry: FakeItem | _Occurrence, shape: _Shape) -> Any:
        if isinstance(entry, _Occurrence):
            item, kind = entry.master, "Occurrence"
            item_id, start, end = entry.id, entry.start, entry.end
        else:
            item, kind = entry, "RecurringMaster" if entry.series_count else "Single"
            item_id, start, end = entry.id, entry.start, entry.end
        el = etree.Element(f"{{{T}}}CalendarItem")
        etree.SubElement(el, f"{{{T}}}ItemId", Id=item_id, ChangeKey=item.change_key)
        want = shape.fields

        def add(name: str, text: str, **attrs: str) -> Any:
            sub = etree.SubElement(el, f"{{{T}}}{name}", **attrs)
            sub.text = text
            return sub

        if "ParentFolderId" in want:
            etree.SubElement(
                el, f"{{{T}}}ParentFolderId", Id=item.folder, ChangeKey=_b64(f"FCK|{item.folder}")
            )
        if "ItemClass" in want:
            add("ItemClass", "IPM.Appointment")
        if "Subject" in want:
            add("Subject", item.subject)
        if "Sensitivity" in want:
            add("Sensitivity", item.sensitivity)
        if "Body" in want:
            add("Body", item.body, BodyType=item.body_type)
        if "Categories" in want and item.categories:
            cats = etree.SubElement(el, f"{{{T}}}Categories")
            for c in item.categories:
                etree.SubElement(cats, f"{{{T}}}String").text = c
        if "DateTimeCreated" in want:
            add("DateTimeCreated", _fmt(item.created))
        if "ReminderIsSet" in want:
            add("ReminderIsSet", "true" if item.reminder_set else "false")
        if "ReminderMinutesBeforeStart" in want:
            add("ReminderMinutesBeforeStart", str(item.reminder_minutes))
        for key in shape.extended:
            if key in item.extended:
                prop = etree.SubElement(el, f"{{{T}}}ExtendedProperty")
                set_id, prop_name, prop_type = key
                etree.SubElement(
                    prop,
                    f"{{{T}}}ExtendedFieldURI",
                    PropertySetId=set_id,
                    PropertyName=prop_name,
                    PropertyType=prop_type,
                )
                etree.SubElement(prop, f"{{{T}}}Value").text = item.extended[key]
        if "LastModifiedTime" in want:
            add("LastModifiedTime", _fmt(item.modified))
        if "TextBody" in want:
            text = _strip_html(item.body) if item.body_type == "HTML" else item.body
            add("TextBody", text, BodyType="Text")
        if "UID" in want:
            add("UID", item.uid)
        if "Start" in want:
            add("Start", _fmt(start))
        if "End" in want:
            add("End", _fmt(end))
        if "IsAllDayEvent" in want:
            add("IsAllDayEvent", "true" if item.all_day else "false")
        if "LegacyFreeBusyStatus" in want:
            add("LegacyFreeBusyStatus", item.free_busy)
        if "Location" in want:
            add("Location", item.location)
        if "IsMeeting" in want:
            add("IsMeeting", "true" if item.attendees else "false")
        if "IsRecurring" in want:
            add("IsRecurring", "true" if kind == "Occurrence" else "false")
        if "CalendarItemType" in want:
            add("CalendarItemType", kind)
        if "StartTimeZone" in want:
            etree.SubElement(el, f"{{{T}}}StartTimeZone", Id=item.start_tz, Name=item.start_tz)
        if "EndTimeZone" in want:
            etree.SubElement(el, f"{{{T}}}EndTimeZone", Id=item.end_tz, Name=item.end_tz)
        return el

    def _new_id(self, prefix: str) -> str:
        # Opaque and long like a real EWS id, and base64 like one.
        return _b64(f"{prefix}|{next(self._ids)}|{secrets.token_hex(12)}")


class ItemErrorFault(Fault):
    """A request-wide refusal that EWS reports as a fault (a shape the operation cannot serve)."""


@dataclass(frozen=True)
class _Shape:
    fields: frozenset[str]
    extended: tuple[tuple[str, str, str], ...]


def _shape(element: Any) -> _Shape:
    base = _text(element, "BaseShape")
    if base not in ("IdOnly", "Default", "AllProperties"):
        raise Fault(
            "ErrorSchemaValidation",
            "ItemShape needs a BaseShape of IdOnly, Default or AllProperties",
        )
    fields: set[str] = set()
    extended: list[tuple[str, str, str]] = []
    if base != "IdOnly":
        fields |= {
            "Subject",
            "Start",
            "End",
            "Location",
            "LegacyFreeBusyStatus",
            "CalendarItemType",
        }
        if base == "AllProperties":
            fields |= set(_FIELD_URIS.values())
    extra = element.find(f"{{{T}}}AdditionalProperties")
    for path in _elements(extra) if extra is not None else ():
        if _local(path) == "ExtendedFieldURI":
            extended.append(_prop_key(path))
        elif _local(path) == "FieldURI":
            _require(path, "FieldURI")
            name = _FIELD_URIS.get(path.get("FieldURI"))
            if name is not None:
                fields.add(name)
            # other valid FieldURIs are served empty: the fake does not store them
        else:
            raise Fault("ErrorSchemaValidation", f"{_local(path)} is not a property path")
    return _Shape(frozenset(fields), tuple(extended))


def _prop_key(uri: Any) -> tuple[str, str, str]:
    _require(uri, "PropertyType")
    set_id = uri.get("PropertySetId") or uri.get("DistinguishedPropertySetId")
    name = uri.get("PropertyName") or uri.get("PropertyId")
    if uri.get("PropertyTag") is None and (set_id is None or name is None):
        raise Fault(
            "ErrorSchemaValidation", "ExtendedFieldURI needs a property set and a name or id"
        )
    return (str(set_id or "").lower(), str(name or uri.get("PropertyTag")), uri.get("PropertyType"))


def _restriction(element: Any) -> Any:
    if element is None:
        return lambda item: True
    (test,) = _elements(element) or [None]
    return _matcher(test)


def _matcher(test: Any) -> Any:
    kind = _local(test)
    if kind in ("Or", "And"):
        parts = [_matcher(t) for t in _elements(test)]
        return (
            (lambda i: any(p(i) for p in parts))
            if kind == "Or"
            else (lambda i: all(p(i) for p in parts))
        )
    if kind == "Not":
        (inner,) = _elements(test)
        m = _matcher(inner)
        return lambda i: not m(i)
    if kind == "Exists":
        path = _first(test)
        key = _prop_key(path)
        return lambda i: key in i.extended
    if kind == "IsEqualTo":
        path, value = list(_elements(test))
        if _local(value) != "FieldURIOrConstant":
            raise Fault("ErrorSchemaValidation", "IsEqualTo needs a FieldURIOrConstant")
        const = _first(value).get("Value")
        if _local(path) == "ExtendedFieldURI":
            key = _prop_key(path)
            return lambda i: i.extended.get(key) == const
        name = _FIELD_URIS.get(path.get("FieldURI", ""))
        if name == "Subject":
            return lambda i: i.subject == const
        raise Fault(
            "ErrorUnsupportedPathForQuery", f"the fake cannot restrict on {path.get('FieldURI')}"
        )
    raise Fault("ErrorUnsupportedQueryFilter", f"the fake does not evaluate {kind}")


# --------------------------------------------------------------------------- XML helpers


def _local(el: Any) -> str:
    return etree.QName(el).localname


def _elements(el: Any) -> list[Any]:
    return [c for c in el if isinstance(c.tag, str)]


def _first(el: Any) -> Any:
    children = _elements(el)
    if not children:
        raise Fault("ErrorSchemaValidation", f"{_local(el)} is empty")
    return children[0]


def _single(el: Any) -> Any:
    children = _elements(el)
    if len(children) != 1:
        raise Fault("ErrorSchemaValidation", f"{_local(el)} needs exactly one child")
    return children[0]


def _only(el: Any, name: str, ns: str = T) -> Any:
    found = el.find(f"{{{ns}}}{name}")
    if found is None:
        raise Fault("ErrorSchemaValidation", f"{_local(el)} requires {name}")
    return found


def _text(el: Any, name: str) -> str | None:
    found = el.find(f"{{{T}}}{name}")
    return None if found is None else (found.text or "")


def _require(el: Any, attribute: str) -> None:
    if el.get(attribute) is None:
        raise Fault(
            "ErrorSchemaValidation",
            f"The required attribute '{attribute}' is missing on {_local(el)}",
        )


def _expect(op: Any, order: list[str], ns: str = M) -> None:
    """The operation's children are from ``order``, in that order, each at most once."""
    last = -1
    for child in _elements(op):
        name = _local(child)
        if etree.QName(child).namespace != ns or name not in order:
            raise Fault(
                "ErrorSchemaValidation", f"The element '{name}' is not expected in {_local(op)}"
            )
        rank = order.index(name)
        if rank <= last:
            raise Fault(
                "ErrorSchemaValidation", f"The element '{name}' is out of order in {_local(op)}"
            )
        last = rank


def _message(operation: str) -> Any:
    msg = etree.Element(f"{{{M}}}{operation}ResponseMessage", ResponseClass="Success")
    etree.SubElement(msg, f"{{{M}}}ResponseCode").text = "NoError"
    return msg


def _error_message(operation: str, err: ItemError) -> Any:
    msg = etree.Element(f"{{{M}}}{operation}ResponseMessage", ResponseClass="Error")
    etree.SubElement(msg, f"{{{M}}}MessageText").text = err.message
    etree.SubElement(msg, f"{{{M}}}ResponseCode").text = err.code
    etree.SubElement(msg, f"{{{M}}}DescriptiveLinkKey").text = "0"
    return msg


def _folder_xml(folder: _Folder) -> Any:
    tag = "CalendarFolder" if folder.cls == "IPF.Appointment" else "Folder"
    el = etree.Element(f"{{{T}}}{tag}")
    etree.SubElement(el, f"{{{T}}}FolderId", Id=folder.id, ChangeKey=_b64(f"FCK|{folder.id}"))
    if folder.parent:
        etree.SubElement(
            el, f"{{{T}}}ParentFolderId", Id=folder.parent, ChangeKey=_b64(f"FCK|{folder.parent}")
        )
    etree.SubElement(el, f"{{{T}}}FolderClass").text = folder.cls
    etree.SubElement(el, f"{{{T}}}DisplayName").text = folder.name
    return el


def _envelope(response: Any) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    header = etree.SubElement(env, f"{{{SOAP}}}Header")
    etree.SubElement(
        header, f"{{{T}}}ServerVersionInfo", nsmap={"h": T},
        MajorVersion="15", MinorVersion="1", MajorBuildNumber="2507", MinorBuildNumber="6",
        Version="V2_23",
    )  # fmt: skip
    etree.SubElement(env, f"{{{SOAP}}}Body").append(response)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def _fault_xml(fault: Fault) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    el = etree.SubElement(body, f"{{{SOAP}}}Fault")
    code = etree.SubElement(el, "faultcode", nsmap={"a": T})
    code.text = f"a:{fault.code}"
    etree.SubElement(el, "faultstring").text = fault.message
    detail = etree.SubElement(el, "detail")
    etree.SubElement(detail, f"{{{E}}}ResponseCode", nsmap={"e": E}).text = fault.code
    etree.SubElement(detail, f"{{{E}}}Message", nsmap={"e": E}).text = fault.message
    if fault.back_off_ms is not None:
        xml = etree.SubElement(detail, f"{{{T}}}MessageXml", nsmap={"t": T})
        etree.SubElement(xml, f"{{{T}}}Value", Name="BackOffMilliseconds").text = str(
            fault.back_off_ms
        )
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def _instant(text: str) -> datetime:
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Fault("ErrorSchemaValidation", f"{raw!r} is not an xs:dateTime") from None
    if value.tzinfo is None:
        # EWS reads a time without offset in the request's TimeZoneContext, UTC without one.
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _fmt(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bool(text: str) -> bool:
    if text not in ("true", "false", "1", "0"):
        raise Fault("ErrorSchemaValidation", f"{text!r} is not an xs:boolean")
    return text in ("true", "1")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _zone(windows_id: str) -> ZoneInfo:
    return ZoneInfo(WINDOWS_ZONES.get(windows_id, "UTC"))


def _strip_html(text: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"</p>|<br\s*/?>", "\n", text))).strip()


class OwnerBackdoor:
    """Edits "by the agent" in Outlook, in the shape the conformance suite expects."""

    def __init__(self, fake: EwsFake, tz: str = "W. Europe Standard Time") -> None:
        self.fake = fake
        self.tz = tz

    async def create_external(self, cal: Any, data: Any) -> str:
        return self.fake.owner_create(
            cal.mailbox, data.subject, data.start, data.end, folder=cal.calendar, tz=self.tz,
            body=data.body, location=data.location,
            sensitivity="Private" if data.private else "Normal",
            categories=tuple(data.categories), reminder_minutes=data.reminder_minutes,
        )  # fmt: skip

    async def edit(self, cal: Any, remote_id: str, data: Any) -> None:
        self.fake.owner_edit(
            cal.mailbox, remote_id, tz=self.tz, subject=data.subject, start=data.start,
            end=data.end, body=data.body, location=data.location,
            sensitivity="Private" if data.private else "Normal",
        )  # fmt: skip

    async def delete(self, cal: Any, remote_id: str) -> None:
        self.fake.owner_delete(cal.mailbox, remote_id)

    async def expire_cursor(self, cal: Any) -> None:
        self.fake.expire_sync_states(cal.mailbox)

    async def create_unreadable(self, cal: Any, start: datetime) -> str:
        item_id = self.fake.owner_create(
            cal.mailbox, "Damaged", start, start + timedelta(hours=1), folder=cal.calendar
        )
        self.fake.mailbox(cal.mailbox).items[item_id].corrupt = True
        return item_id

    async def request_count(self) -> int:
        return self.fake.requests


def walk(fake: EwsFake) -> Iterator[tuple[str, FakeItem]]:
    """Every item of every mailbox, with its mailbox address."""
    for mb in fake.mailboxes.values():
        for item in mb.items.values():
            yield mb.address, item
