"""The relay's payloads: the contract's records as JSON, checked field by field both ways.

The hub decodes every answer of the Outlook agent with these functions before it trusts any
of it, and the agent decodes the hub's requests the same way. A decoder raises
:class:`WireError` naming the first field that is wrong; it never returns half a record.

Times are ISO 8601: timed events in UTC with ``Z``, all-day events as dates. Errors travel as
``{"kind": ..., "message": ..., "retry_after": n?}`` and come back as the same error class.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, get_args

from hub.spec import (
    AuthError,
    CalendarRef,
    CursorInvalid,
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

MAX_TEXT = 1_000_000  # characters in one text field: an Outlook body can be long, not endless
SHOW_AS: tuple[str, ...] = get_args(ShowAs)

_ERROR_KINDS: dict[str, type[ProviderError]] = {
    "transient": TransientError,
    "auth": AuthError,
    "not-found": NotFoundError,
    "precondition": PreconditionFailed,
    "permanent": PermanentError,
    "cursor": CursorInvalid,
}


class WireError(ValueError):
    """A payload that does not have the shape the protocol says."""


# --------------------------------------------------------------------------- primitives


def _field(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise WireError(f"{where}: expected an object")
    if key not in obj:
        raise WireError(f"{where}.{key}: missing")
    return obj[key]


def text_field(obj: Any, key: str, where: str, *, optional: bool = False) -> str | None:
    value = obj.get(key) if optional and isinstance(obj, dict) else _field(obj, key, where)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"{where}.{key}: expected a string of at most {MAX_TEXT} characters")
    return value


def bool_field(obj: Any, key: str, where: str) -> bool:
    value = _field(obj, key, where)
    if not isinstance(value, bool):
        raise WireError(f"{where}.{key}: expected true or false")
    return value


def _list(obj: Any, key: str, where: str) -> list[Any]:
    value = _field(obj, key, where)
    if not isinstance(value, list):
        raise WireError(f"{where}.{key}: expected a list")
    return value


def encode_time(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def decode_time(raw: Any, where: str) -> datetime | date:
    if not isinstance(raw, str):
        raise WireError(f"{where}: expected an ISO date or date-time string")
    try:
        if "T" not in raw:
            return date.fromisoformat(raw)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise WireError(f"{where}: {raw[:40]!r} is not an ISO date or date-time") from None
    if value.tzinfo is None:
        raise WireError(f"{where}: {raw[:40]!r} has no UTC offset")
    return as_utc(value)


# --------------------------------------------------------------------------- records


def encode_cal(cal: CalendarRef) -> dict[str, Any]:
    return {"agent": cal.agent_id, "mailbox": cal.mailbox, "calendar": cal.calendar}


def decode_cal(raw: Any, where: str = "cal") -> CalendarRef:
    return CalendarRef(
        agent_id=text_field(raw, "agent", where) or "",
        mailbox=text_field(raw, "mailbox", where) or "",
        calendar=text_field(raw, "calendar", where) or "",
    )


def encode_window(window: Window) -> dict[str, str]:
    return {"start": encode_time(window.start), "end": encode_time(window.end)}


def decode_window(raw: Any, where: str = "window") -> Window:
    start, end = (
        decode_time(_field(raw, "start", where), f"{where}.start"),
        decode_time(_field(raw, "end", where), f"{where}.end"),
    )
    if not isinstance(start, datetime) or not isinstance(end, datetime) or end <= start:
        raise WireError(f"{where}: expected two date-times, end after start")
    return Window(start, end)


def encode_event(data: EventData) -> dict[str, Any]:
    return {
        "subject": data.subject,
        "start": encode_time(data.start),
        "end": encode_time(data.end),
        "body": data.body,
        "location": data.location,
        "private": data.private,
        "show_as": data.show_as,
        "reminder_minutes": data.reminder_minutes,
        "categories": list(data.categories),
        "colour": data.colour,
        "timezone": data.timezone,
    }


def decode_event(raw: Any, where: str = "data") -> EventData:
    start = decode_time(_field(raw, "start", where), f"{where}.start")
    end = decode_time(_field(raw, "end", where), f"{where}.end")
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise WireError(f"{where}: start and end must both be dates or both date-times")
    show_as = _field(raw, "show_as", where)
    if show_as not in SHOW_AS:
        raise WireError(f"{where}.show_as: expected one of {', '.join(SHOW_AS)}")
    reminder = _field(raw, "reminder_minutes", where)
    if reminder is not None and (
        isinstance(reminder, bool) or not isinstance(reminder, int) or reminder < 0
    ):
        raise WireError(f"{where}.reminder_minutes: expected null or a whole number >= 0")
    categories = _list(raw, "categories", where)
    if not all(isinstance(c, str) and len(c) <= 255 for c in categories):
        raise WireError(f"{where}.categories: expected a list of short strings")
    return EventData(
        subject=text_field(raw, "subject", where) or "",
        start=start,
        end=end,
        body=text_field(raw, "body", where) or "",
        location=text_field(raw, "location", where) or "",
        private=bool_field(raw, "private", where),
        show_as=show_as,
        reminder_minutes=reminder,
        categories=tuple(categories),
        colour=text_field(raw, "colour", where, optional=True),
        timezone=text_field(raw, "timezone", where, optional=True),
    )


def encode_remote(event: RemoteEvent) -> dict[str, Any]:
    return {
        "remote_id": event.remote_id,
        "version": event.version,
        "data": encode_event(event.data),
        "hub_id": event.hub_id,
        "series_id": event.series_id,
        "modified": None if event.modified is None else encode_time(event.modified),
    }


def decode_remote(raw: Any, where: str = "event") -> RemoteEvent:
    remote_id = text_field(raw, "remote_id", where)
    version = text_field(raw, "version", where)
    if not remote_id or not version:
        raise WireError(f"{where}: remote_id and version must not be empty")
    modified_raw = raw.get("modified")
    modified = None
    if modified_raw is not None:
        modified = decode_time(modified_raw, f"{where}.modified")
        if not isinstance(modified, datetime):
            raise WireError(f"{where}.modified: expected a date-time")
    return RemoteEvent(
        remote_id=remote_id,
        version=version,
        data=decode_event(_field(raw, "data", where), f"{where}.data"),
        hub_id=text_field(raw, "hub_id", where, optional=True),
        series_id=text_field(raw, "series_id", where, optional=True),
        modified=modified,
    )


def encode_fetch(result: FetchResult) -> dict[str, Any]:
    return {
        "changed": [encode_remote(e) for e in result.changed],
        "skipped": [{"remote_id": s.remote_id, "reason": s.reason} for s in result.skipped],
        "full": result.full,
    }


def decode_fetch(raw: Any) -> FetchResult:
    """A full listing: the agent has no delta cursor, so nothing is ever reported deleted
    here; the engine verifies an absent event with ``get`` before deleting anything."""
    if not bool_field(raw, "full", "result"):
        raise WireError("result.full: the Outlook agent only answers full listings")
    changed = [
        decode_remote(e, f"result.changed[{i}]")
        for i, e in enumerate(_list(raw, "changed", "result"))
    ]
    skipped = [
        SkippedEvent(
            text_field(s, "remote_id", f"result.skipped[{i}]") or "",
            text_field(s, "reason", f"result.skipped[{i}]") or "",
        )
        for i, s in enumerate(_list(raw, "skipped", "result"))
    ]
    return FetchResult(changed=changed, skipped=skipped, full=True)


def encode_item(item: PushItem) -> dict[str, Any]:
    return {
        "hub_id": item.hub_id,
        "data": encode_event(item.data),
        "remote_id": item.remote_id,
        "version": item.version,
        "replaces": item.replaces,
    }


def decode_item(raw: Any, where: str) -> PushItem:
    hub_id = text_field(raw, "hub_id", where)
    if not hub_id:
        raise WireError(f"{where}.hub_id: must not be empty")
    return PushItem(
        hub_id=hub_id,
        data=decode_event(_field(raw, "data", where), f"{where}.data"),
        remote_id=text_field(raw, "remote_id", where, optional=True),
        version=text_field(raw, "version", where, optional=True),
        replaces=text_field(raw, "replaces", where, optional=True),
    )


def encode_outcome(outcome: PushOutcome) -> dict[str, Any]:
    if isinstance(outcome, ProviderError):
        return {"error": encode_error(outcome)}
    ok: dict[str, Any] = {
        "hub_id": outcome.hub_id,
        "remote_id": outcome.remote_id,
        "version": outcome.version,
    }
    if outcome.data is not None:
        ok["data"] = encode_event(outcome.data)
    return {"ok": ok}


def decode_outcomes(raw: Any, items: list[PushItem]) -> list[PushOutcome]:
    outcomes = _list(raw, "outcomes", "result")
    if len(outcomes) != len(items):
        raise WireError(f"result.outcomes: {len(outcomes)} outcomes for {len(items)} items")
    decoded: list[PushOutcome] = []
    for i, (item, entry) in enumerate(zip(items, outcomes, strict=True)):
        where = f"result.outcomes[{i}]"
        if isinstance(entry, dict) and set(entry) == {"error"}:
            decoded.append(decode_error(entry["error"], f"{where}.error"))
            continue
        ok = _field(entry, "ok", where)
        hub_id = text_field(ok, "hub_id", f"{where}.ok")
        remote_id, version = (
            text_field(ok, "remote_id", f"{where}.ok"),
            text_field(ok, "version", f"{where}.ok"),
        )
        if hub_id != item.hub_id:
            raise WireError(f"{where}.ok.hub_id: {hub_id!r} answers item {item.hub_id!r}")
        if not remote_id or not version:
            raise WireError(f"{where}.ok: remote_id and version must not be empty")
        data = ok.get("data")
        stored = None if data is None else decode_event(data, f"{where}.ok.data")
        decoded.append(PushResult(hub_id=hub_id, remote_id=remote_id, version=version, data=stored))
    return decoded


def encode_error(error: ProviderError) -> dict[str, Any]:
    kind = next(
        (k for k, cls in _ERROR_KINDS.items() if type(error) is cls),
        next((k for k, cls in _ERROR_KINDS.items() if isinstance(error, cls)), "permanent"),
    )
    encoded: dict[str, Any] = {"kind": kind, "message": error.message}
    if isinstance(error, TransientError) and error.retry_after is not None:
        encoded["retry_after"] = error.retry_after
    return encoded


def decode_error(raw: Any, where: str = "error") -> ProviderError:
    kind = text_field(raw, "kind", where)
    message = text_field(raw, "message", where) or ""
    cls = _ERROR_KINDS.get(kind or "")
    if cls is None:
        raise WireError(f"{where}.kind: unknown error kind {kind!r}")
    if cls is TransientError:
        retry = raw.get("retry_after")
        if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int | float)):
            raise WireError(f"{where}.retry_after: expected a number")
        return TransientError(message, retry_after=None if retry is None else max(0.0, retry))
    return cls(message)
