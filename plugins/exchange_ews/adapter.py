"""The only module that touches exchangelib: blocking EWS calls for one account.

Every method here blocks (exchangelib speaks through requests) and is meant to run in a worker
thread; :class:`plugins.exchange_ews.provider.EwsProvider` calls it through anyio with the
account's CapacityLimiter. Nothing exchangelib-typed leaves this module: items come back as
:class:`records.EwsItem`, versions as :class:`records.ItemRef`, failures as
:class:`records.EwsFault` (raised for a whole call, returned in a list for one item of a batch).

Choices made against exchangelib's defaults, each for a reason:

- ``FailFast`` retry policy: exchangelib's FaultTolerance sleeps inside the worker thread on
  ErrorServerBusy; with fail-fast the fault (and its BackOffMilliseconds) reaches the engine,
  which backs off once, without holding a thread.
- A ``version`` pinned from the config skips exchangelib's version probe (ConvertId requests);
  without one, the probe runs once per account, not per pass, because the protocol is kept.
- One Protocol per account (its session pool: ``max_threads`` connections, one per worker
  thread, since an NTLM-authenticated connection belongs to one credential) and one Account
  and calendar folder per mailbox, cached: a quiet pass costs one SyncFolderItems.
- exchangelib caches protocols process-wide by (endpoint, credentials); the credentials here
  compare by identity, so two calhub accounts never share (or close) each other's protocol,
  and the account's TLS trust (``ca_file``) applies to its own sessions only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests
from exchangelib import (
    BASIC,
    IMPERSONATION,
    NTLM,
    Account,
    Body,
    Build,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    FailFast,
    HTMLBody,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar, FolderCollection, Root
from exchangelib.folders.collections import SyncCompleted
from exchangelib.items import (
    ALL_OCCURRENCES,
    ID_ONLY,
    MOVE_TO_DELETED_ITEMS,
    NEVER_OVERWRITE,
    SAVE_ONLY,
    SEND_TO_NONE,
    SHALLOW,
)
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.protocol import Protocol
from exchangelib.services import CreateItem, DeleteItem, GetItem, UpdateItem

from plugins.exchange_ews.records import EwsFault, EwsItem, ItemFields, ItemRef, SyncChanges

# A fixed property-set GUID of calhub (the same one graph365 uses, so a mailbox moved between
# Exchange Server and Exchange Online keeps its tags): "String {guid} Name calhubId".
PROPERTY_SET = "2c1e7f0a-5b7d-4c55-9a0e-6f2b8c1d3e4a"
HUB_ID_NAME = "calhubId"
HUB_ID_FIELD = "calhub_id"
MAX_SYNC_CHANGES = 512  # SyncFolderItems' documented maximum per call

# records.EWS_VERSIONS with the build and RequestServerVersion exchangelib needs for each.
VERSIONS: dict[str, tuple[Build, str]] = {
    "Exchange2013": (Build(15, 0), "Exchange2013"),
    "Exchange2013_SP1": (Build(15, 0, 847), "Exchange2013_SP1"),
    "Exchange2016": (Build(15, 1), "Exchange2016"),
    "Exchange2019": (Build(15, 2), "Exchange2016"),
}
AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC}

_UTC = EWSTimeZone("UTC")
_ITEM_FIELDS = (
    "id",
    "changekey",
    "subject",
    "start",
    "end",
    "is_all_day",
    "body",
    "text_body",
    "location",
    "sensitivity",
    "legacy_free_busy_status",
    "reminder_is_set",
    "reminder_minutes_before_start",
    "categories",
    HUB_ID_FIELD,
    "_start_timezone",
    "_end_timezone",
    "type",
    "uid",
    "last_modified_time",
    "parent_folder_id",
)
_WRITE_FIELDS = (
    "subject",
    "start",
    "end",
    "is_all_day",
    "body",
    "location",
    "sensitivity",
    "legacy_free_busy_status",
    "reminder_is_set",
    "categories",
)


class HubIdProperty(ExtendedProperty):
    """The hub id of a hub-owned item: a String named property in calhub's property set."""

    property_set_id = PROPERTY_SET
    property_name = HUB_ID_NAME
    property_type = "String"


def _register_hub_id() -> None:
    # exchangelib keeps extended properties in a class-level registry; registering twice
    # raises, so this is done once, on import, and tolerated when already done.
    with contextlib.suppress(ValueError):
        CalendarItem.register(HUB_ID_FIELD, HubIdProperty)


_register_hub_id()


class _Credentials(Credentials):
    """Credentials compared by identity: exchangelib's protocol cache key (see module doc)."""

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class _CreateItem(CreateItem):
    """CreateItem returning every per-item ResponseCode as a value (see :func:`_catching`)."""

    ERRORS_TO_CATCH_IN_RESPONSE = ews_errors.ResponseMessageError


class _UpdateItem(UpdateItem):
    """UpdateItem returning every per-item ResponseCode as a value."""

    ERRORS_TO_CATCH_IN_RESPONSE = ews_errors.ResponseMessageError


class _GetItem(GetItem):
    """GetItem returning every per-item ResponseCode as a value."""

    ERRORS_TO_CATCH_IN_RESPONSE = ews_errors.ResponseMessageError


class _DeleteItem(DeleteItem):
    """DeleteItem returning every per-item ResponseCode as a value."""

    ERRORS_TO_CATCH_IN_RESPONSE = ews_errors.ResponseMessageError


class _TrustAdapter(requests.adapters.HTTPAdapter):
    """An HTTP adapter that verifies with the account's trust whatever requests was handed.

    requests lets REQUESTS_CA_BUNDLE (set system-wide on many hosts) override a session's
    ``verify`` (psf/requests#3829), which would silently drop ``ca_file``.
    """

    def __init__(self, verify: bool | str, **kwargs: Any) -> None:
        self._verify = verify
        super().__init__(**kwargs)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["verify"] = self._verify
        return super().send(request, *args, **kwargs)


class _Protocol(Protocol):
    """exchangelib's Protocol with this account's TLS trust and timeout on every session."""

    tls_verify: bool | str = True

    def create_session(self) -> Any:
        session = super().create_session()
        # The same pool shape as exchangelib's own adapter: one connection per session.
        session.mount(
            self.service_endpoint,
            _TrustAdapter(
                self.tls_verify,
                pool_block=True,
                pool_connections=self.CONNECTIONS_PER_SESSION,
                pool_maxsize=self.CONNECTIONS_PER_SESSION,
                max_retries=0,
            ),
        )
        return session


@dataclass(frozen=True, slots=True)
class Settings:
    """What the adapter needs from an ``[accounts.NAME]`` section, validated by the provider."""

    url: str
    username: str
    password: str
    auth: str = "ntlm"
    ca_file: str | None = None
    verify_tls: bool = True
    version: str = ""
    max_threads: int = 8
    timeout: float = 60.0


class EwsAdapter:
    """Blocking EWS for one account: its protocol, and one Account and folder per mailbox."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        version = None
        if settings.version:
            build, api = VERSIONS[settings.version]
            version = Version(build=build, api_version=api)
        self._config = Configuration(
            credentials=_Credentials(settings.username, settings.password),
            service_endpoint=settings.url,
            auth_type=AUTH_TYPES[settings.auth],
            version=version,
            retry_policy=FailFast(),
            max_connections=settings.max_threads,
        )
        self._protocol = _Protocol(config=self._config)
        self._protocol.tls_verify = (settings.ca_file or True) if settings.verify_tls else False
        self._protocol.TIMEOUT = settings.timeout
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._folders: dict[tuple[str, str], Any] = {}

    def close(self) -> None:
        """Close the session pool and drop the protocol from exchangelib's cache."""
        self._protocol.close()
        with contextlib.suppress(KeyError):  # closed twice, or exchangelib dropped it
            del Protocol[self._config]

    # ------------------------------------------------------------------ mailboxes

    def account(self, mailbox: str) -> Account:
        """The impersonated mailbox (cached): building it costs no request."""
        key = mailbox.lower()
        with self._lock:
            account = self._accounts.get(key)
            if account is None:
                account = _call(
                    lambda: Account(
                        primary_smtp_address=mailbox,
                        config=self._config,
                        access_type=IMPERSONATION,
                        autodiscover=False,
                        default_timezone=_UTC,
                        locale="en_US",
                    )
                )
                self._accounts[key] = account
            return account

    def folder(self, mailbox: str, calendar: str = "") -> Any:
        """The agent's calendar folder: the default one (one GetFolder), or the folder named
        ``calendar`` directly under it (one FindFolder more). Cached per mailbox."""
        key = (mailbox.lower(), calendar)
        with self._lock:
            cached = self._folders.get(key)
        if cached is not None:
            return cached
        account = self.account(mailbox)

        def resolve() -> Any:
            # A Root built offline: account.root would cost a GetFolder of its own.
            default = Calendar.get_distinguished(
                root=Root(
                    account=account,
                    _distinguished_id=DistinguishedFolderId(
                        id=Root.DISTINGUISHED_FOLDER_ID,
                        mailbox=Mailbox(email_address=mailbox),
                    ),
                )
            )
            if not calendar:
                return default
            children = FolderCollection(account=account, folders=[default]).find_folders(
                depth=SHALLOW
            )
            for child in children:
                if isinstance(child, Exception):
                    raise child
                if (child.name or "").lower() == calendar.lower():
                    return child
            raise EwsFault(
                "ErrorFolderNotFound", f"no folder named {calendar!r} under the calendar"
            )

        found = _call(resolve)
        with self._lock:
            self._folders[key] = found
        return found

    # ------------------------------------------------------------------ reads

    def sync(self, mailbox: str, calendar: str, state: str | None) -> SyncChanges:
        """Every change since ``state`` (None: since the beginning), paging 512 at a time."""
        folder = self.folder(mailbox, calendar)

        def run() -> SyncChanges:
            changed: list[ItemRef] = []
            deleted: list[str] = []
            # FolderCollection, not folder.sync_items: the folder object is shared, and its
            # item_sync_state would stand in for a None state (a full sync must start empty).
            pages = FolderCollection(account=folder.account, folders=[folder]).sync_items(
                sync_state=state or None,
                only_fields=["id", "changekey"],
                max_changes_returned=MAX_SYNC_CHANGES,
            )
            try:
                for change_type, item in pages:
                    if change_type in ("create", "update"):
                        changed.append(ItemRef(item.id, item.changekey))
                    elif change_type == "delete":
                        deleted.append(item.id)
                    # read_flag_change: not a calendar change
            except SyncCompleted as done:
                return SyncChanges(changed, deleted, done.sync_state)
            raise EwsFault("ErrorInternalServerError", "SyncFolderItems ended without a state")

        return _call(run)

    def calendar_view(
        self, mailbox: str, calendar: str, start: datetime, end: datetime
    ) -> list[tuple[ItemRef, str]]:
        """FindItem with a CalendarView: every single item and expanded occurrence overlapping
        [start, end), with its CalendarItemType. Only properties FindItem returns itself are
        asked for: a "complex" one (UID, Body) makes exchangelib GetItem every item again."""
        folder = self.folder(mailbox, calendar)

        def run() -> list[tuple[ItemRef, str]]:
            view = folder.view(start=_ews_datetime(start), end=_ews_datetime(end))
            found = []
            for item in view.only("id", "changekey", "type"):
                if isinstance(item, Exception):
                    raise item
                found.append((ItemRef(item.id, item.changekey), item.type or "Single"))
            return found

        return _call(run)

    def get_items(
        self, mailbox: str, calendar: str, ids: Sequence[str], chunk: int
    ) -> list[EwsItem | EwsFault]:
        """GetItem of ``ids`` in chunks of ``chunk``; one result per id, in order."""
        account = self.account(mailbox)
        folder = self.folder(mailbox, calendar)

        def run() -> list[EwsItem | EwsFault]:
            results = _GetItem(account=account, chunk_size=chunk).call(
                items=[(item_id, None) for item_id in ids],
                # The paths are validated against the calendar folder: exchangelib's own
                # fetch() would build a generic folder from account.root (a GetFolder more).
                additional_fields={
                    path
                    for path in folder.normalize_fields(fields=list(_ITEM_FIELDS))
                    if not path.field.is_attribute
                },
                shape=ID_ONLY,
            )
            return [_item_or_fault(result) for result in results]

        return _call(run)

    def find_hub_ids(self, mailbox: str, calendar: str, hub_ids: Sequence[str]) -> list[ItemRef]:
        """FindItem with a restriction on the hub-id property: the items carrying one of them."""
        folder = self.folder(mailbox, calendar)

        def run() -> list[ItemRef]:
            query = folder.filter(**{f"{HUB_ID_FIELD}__in": list(hub_ids)})
            found = []
            # Ids only: the tag itself comes with the GetItem that follows (exchangelib would
            # GetItem for it, the extended property being a "complex" field).
            for item in query.only("id", "changekey"):
                if isinstance(item, Exception):
                    raise item
                found.append(ItemRef(item.id, item.changekey))
            return found

        return _call(run)

    # ------------------------------------------------------------------ writes

    def create(
        self, mailbox: str, calendar: str, items: Sequence[tuple[str, ItemFields]], chunk: int
    ) -> list[ItemRef | EwsFault]:
        """CreateItem (SendMeetingInvitations=SendToNone) of (hub id, fields), in chunks."""
        account = self.account(mailbox)
        folder = self.folder(mailbox, calendar)
        built = [
            _build(lambda f=fields, h=hub_id: _new_item(account, folder, f, h))
            for hub_id, fields in items
        ]

        def run(ready: list[Any]) -> list[Any]:
            return list(
                _CreateItem(account=account, chunk_size=chunk).call(
                    items=ready,
                    folder=folder,
                    message_disposition=SAVE_ONLY,
                    send_meeting_invitations=SEND_TO_NONE,
                )
            )

        return _merge(built, run, lambda r: ItemRef(r.id, r.changekey))

    def update(
        self, mailbox: str, items: Sequence[tuple[ItemRef, ItemFields]], chunk: int
    ) -> list[ItemRef | EwsFault]:
        """UpdateItem with each item's ChangeKey and ConflictResolution=NeverOverwrite."""
        account = self.account(mailbox)
        built = [
            _build(lambda r=ref, f=fields: _existing_item(account, r, f)) for ref, fields in items
        ]

        def run(ready: list[Any]) -> list[Any]:
            return list(
                _UpdateItem(account=account, chunk_size=chunk).call(
                    items=ready,
                    conflict_resolution=NEVER_OVERWRITE,
                    message_disposition=SAVE_ONLY,
                    send_meeting_invitations_or_cancellations=SEND_TO_NONE,
                    suppress_read_receipts=True,
                )
            )

        return _merge(built, run, lambda r: ItemRef(r[0], r[1]))

    def delete(self, mailbox: str, item_id: str) -> None:
        """DeleteItem (to Deleted Items, SendMeetingCancellations=SendToNone)."""
        account = self.account(mailbox)

        def run() -> None:
            (result,) = _DeleteItem(account=account).call(
                items=[(item_id, None)],
                delete_type=MOVE_TO_DELETED_ITEMS,
                send_meeting_cancellations=SEND_TO_NONE,
                affected_task_occurrences=ALL_OCCURRENCES,
                suppress_read_receipts=True,
            )
            if isinstance(result, Exception):
                raise result

        _call(run)


# --------------------------------------------------------------------------- items


def _ews_datetime(value: datetime) -> EWSDateTime:
    return EWSDateTime.from_datetime(value.astimezone(UTC)).astimezone(_UTC)


def _ews_value(value: datetime | date) -> EWSDateTime | EWSDate:
    if isinstance(value, datetime):
        return _ews_datetime(value)
    return EWSDate(value.year, value.month, value.day)


def _content(fields: ItemFields) -> dict[str, Any]:
    end = fields.end
    if not isinstance(end, datetime):
        # exchangelib takes an all-day item's end date as inclusive and sends the midnight
        # after it; the hub's end date is exclusive (already that midnight).
        end -= timedelta(days=1)
    return {
        "subject": fields.subject,
        "start": _ews_value(fields.start),
        "end": _ews_value(end),
        "is_all_day": fields.all_day,
        "body": Body(fields.body),
        "location": fields.location or None,
        "sensitivity": fields.sensitivity,
        "legacy_free_busy_status": fields.free_busy,
        "reminder_is_set": fields.reminder_minutes is not None,
        "categories": list(fields.categories) or None,
    }


def _new_item(account: Account, folder: Any, fields: ItemFields, hub_id: str) -> Any:
    item = CalendarItem(account=account, folder=folder, **_content(fields))
    item.reminder_minutes_before_start = fields.reminder_minutes or 0
    setattr(item, HUB_ID_FIELD, hub_id)
    item.clean(version=account.version)
    return item


def _existing_item(account: Account, ref: ItemRef, fields: ItemFields) -> Any:
    item = CalendarItem(
        account=account, id=ref.item_id, changekey=ref.change_key, **_content(fields)
    )
    names = list(_WRITE_FIELDS)
    if fields.reminder_minutes is not None:
        item.reminder_minutes_before_start = fields.reminder_minutes
        names.append("reminder_minutes_before_start")
    item.clean(version=account.version)
    return item, names


def _item_or_fault(result: Any) -> EwsItem | EwsFault:
    if isinstance(result, BaseException):
        return fault_of(result)
    try:
        return _read(result)
    except (AttributeError, TypeError, ValueError) as exc:
        return EwsFault("Unreadable", f"item {getattr(result, 'id', '?')}: {exc}")


def _read(item: Any) -> EwsItem:
    zone = _iana(item._start_timezone)
    start, end = item.start, item.end
    if item.is_all_day:
        # exchangelib has already read the dates in the item's own zones, with an inclusive
        # end (the day before the end midnight EWS sent): the hub's end is exclusive.
        start, end = _date(start), _date(end) + timedelta(days=1)
    else:
        start, end = _utc(start), _utc(end)
    body = item.body
    is_html = isinstance(body, HTMLBody)
    text = str(item.text_body or "") if is_html else str(body or "")
    return EwsItem(
        ref=ItemRef(item.id, item.changekey),
        subject=item.subject or "",
        start=start,
        end=end,
        body=text,
        body_is_html=is_html,
        location=item.location or "",
        sensitivity=item.sensitivity or "Normal",
        free_busy=item.legacy_free_busy_status or "Busy",
        reminder_minutes=item.reminder_minutes_before_start if item.reminder_is_set else None,
        categories=tuple(item.categories or ()),
        hub_id=getattr(item, HUB_ID_FIELD, None) or None,
        timezone=zone,
        kind=item.type or "Single",
        uid=item.uid,
        modified=_utc(item.last_modified_time) if item.last_modified_time else None,
        folder_id=item.parent_folder_id.id if item.parent_folder_id else None,
    )


def _iana(tz: Any) -> str | None:
    if tz is None:
        return None
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)
    return str(key) if key else None


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return datetime.fromtimestamp(value.timestamp(), UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _date(value: Any) -> date:
    return date(value.year, value.month, value.day)


# --------------------------------------------------------------------------- batches


def _build(make: Any) -> Any:
    """An exchangelib item ready to send, or the fault that keeps it from being sent."""
    try:
        return make()
    except (ValueError, TypeError, ews_errors.EWSError) as exc:
        return EwsFault("InvalidItem", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _merge(built: list[Any], send: Any, ref: Any) -> list[ItemRef | EwsFault]:
    """Send the buildable items in one bulk call and put every outcome back in its place."""
    ready = [b for b in built if not isinstance(b, EwsFault)]
    replies: Iterable[Any] = _call(lambda: send(ready)) if ready else []
    answers = iter(replies)
    outcomes: list[ItemRef | EwsFault] = []
    for b in built:
        if isinstance(b, EwsFault):
            outcomes.append(b)
            continue
        reply = next(answers, None)
        if reply is None:
            outcomes.append(EwsFault("ErrorInternalServerError", "no response for this item"))
        elif isinstance(reply, BaseException):
            outcomes.append(fault_of(reply))
        else:
            outcomes.append(ref(reply))
    return outcomes


# --------------------------------------------------------------------------- failures


def _call(fn: Any) -> Any:
    """Run ``fn``; any exchangelib or requests failure comes out as an :class:`EwsFault`."""
    try:
        return fn()
    except EwsFault:
        raise
    except Exception as exc:
        raise fault_of(exc) from exc


def fault_of(exc: BaseException) -> EwsFault:
    """The plain :class:`EwsFault` for an exchangelib or requests exception."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, EwsFault):
        return exc
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return EwsFault(
            "TLS",
            "the server's TLS certificate is not trusted by calhub (certificate verify "
            "failed): set ca_file to the PEM of the CA that issued it (an internal CA)",
        )
    if isinstance(exc, ews_errors.ErrorServerBusy):
        return EwsFault("ErrorServerBusy", text, back_off=exc.back_off)
    if isinstance(exc, ews_errors.UnauthorizedError):
        return EwsFault("Unauthorized", f"credentials refused (HTTP 401): {text}")
    if isinstance(exc, ews_errors.ErrorInternalServerTransientError):
        return EwsFault("HTTP503", text)
    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | TimeoutError):
        return EwsFault("Connection", f"{type(exc).__name__}: {text}")
    if isinstance(exc, ews_errors.ResponseMessageError):
        return EwsFault(type(exc).__name__, text)
    if isinstance(exc, ews_errors.TransportError):
        return EwsFault("Connection", text)
    return EwsFault(type(exc).__name__, text)
