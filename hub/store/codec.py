"""Row <-> record conversion for the SQLite store: one place that knows the column encodings.

Encodings (a second backend may choose its own; these are SQLite's):

- aware datetimes are ISO 8601 UTC text, ``2026-05-01T10:00:00Z`` (microseconds only when
  present); naive datetimes are refused, since their instant is unknown;
- all-day dates are ``YYYY-MM-DD``;
- appointments also carry ``start_utc``/``end_utc``, a fixed-width UTC instant
  (``2026-05-01T00:00:00.000000Z`` for a date) so that text order is time order for timed and
  all-day entries alike, which the overlap filter and the ordering rely on;
- booleans are 0/1, enums their value, lists and dicts JSON.

``*_row`` functions return dicts keyed by column name (named SQL parameters); ``*_from_row``
take a :class:`sqlite3.Row`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime, time
from enum import Enum, StrEnum
from typing import Any, Protocol, overload

from hub.model import (
    Agent,
    Appointment,
    Approval,
    AuditEntry,
    CalendarState,
    Conflict,
    Kind,
    Policy,
    PushState,
    Request,
    SyncStatus,
)


class Row(Protocol):
    """A stored row by column name: a :class:`sqlite3.Row`, or a dict about to be written."""

    def __getitem__(self, key: str, /) -> Any: ...


AGENT_COLUMNS = (
    "id",
    "name",
    "email",
    "account",
    "calendar",
    "create_appointments",
    "import_external",
    "colour",
    "feed_token",
    "source",
    "created_at",
    "updated_at",
)
REQUEST_COLUMNS = (
    "id",
    "subject",
    "customer",
    "planned_start",
    "estimate_minutes",
    "planned_agents",
    "updated_at",
)
# The fields whose change is a change of the appointment (version bump, audit, sync).
APPOINTMENT_CONTENT = (
    "start",
    "end",
    "subject",
    "note",
    "location",
    "private",
    "show_as",
    "kind",
    "request_id",
    "group_id",
    "action_id",
    "push_state",
    "subject_override",
    "body_override",
    "deleted",
)
APPOINTMENT_COLUMNS = (
    "id",
    "agent_id",
    *APPOINTMENT_CONTENT,
    "all_day",
    "start_utc",
    "end_utc",
    "version",
    "created_at",
    "updated_at",
    "deleted_at",
    "origin",
)
APPROVAL_COLUMNS = (
    "id",
    "appointment_id",
    "agent_id",
    "created_at",
    "decided_at",
    "approved",
    "decided_by",
)
CONFLICT_COLUMNS = (
    "id",
    "agent_id",
    "appointment_id",
    "account",
    "policy",
    "winner",
    "hub",
    "remote",
    "detail",
    "created_at",
)
STATUS_KEY = ("agent_id", "account", "appointment_id")
STATUS_COLUMNS = (
    *STATUS_KEY,
    "remote_id",
    "remote_version",
    "hub_hash",
    "remote_hash",
    "state",
    "external",
    "series_id",
    "start",
    "end",
    "updated_at",
)
CALENDAR_STATE_COLUMNS = (
    "agent_id",
    "account",
    "calendar",
    "cursor",
    "cursor_at",
    "last_pass_at",
    "last_result",
    "last_error",
    "needs_attention",
    "allow_empty_once",
    "notices",
    "stats",
)


# times -----------------------------------------------------------------------------------
def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: datetime must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


@overload
def encode_time(value: datetime | date, what: str = ...) -> str: ...
@overload
def encode_time(value: None, what: str = ...) -> None: ...
def encode_time(value: datetime | date | None, what: str = "time") -> str | None:
    """An aware datetime as ISO UTC text with ``Z``; a date as ``YYYY-MM-DD``."""
    if value is None:
        return None
    quick = _utc_text(value)
    if quick is not None:
        return quick
    if isinstance(value, datetime):
        text = _utc(value, what).replace(tzinfo=None).isoformat()
        return text + "Z"
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{what}: expected a datetime or a date, got {type(value).__name__}")


def _utc_text(value: object) -> str | None:
    """:func:`encode_time` of an aware datetime in UTC, the usual case, without a conversion
    (or an error message made in advance); None for anything else."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value.isoformat()[:-6] + "Z"  # its "+00:00" becomes "Z"
    return None


@overload
def decode_time(text: str) -> datetime | date: ...
@overload
def decode_time(text: None) -> None: ...
def decode_time(text: str | None) -> datetime | date | None:
    """The inverse of :func:`encode_time`."""
    if text is None:
        return None
    if len(text) == 10:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text)


@overload
def decode_datetime(text: str) -> datetime: ...
@overload
def decode_datetime(text: None) -> None: ...
def decode_datetime(text: str | None) -> datetime | None:
    """An instant; a date (which :func:`encode_time` also writes) counts as midnight UTC."""
    value = decode_time(text)
    if value is None or isinstance(value, datetime):
        return value
    return datetime.combine(value, time(), UTC)


def instant_key(value: datetime | date, what: str = "time") -> str:
    """Fixed-width UTC text whose order is time order; a date counts as its midnight UTC."""
    if isinstance(value, datetime):
        instant = _utc(value, what)
    elif isinstance(value, date):
        instant = datetime.combine(value, time(), UTC)
    else:
        raise TypeError(f"{what}: expected a datetime or a date, got {type(value).__name__}")
    return instant.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# JSON ------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    # Snapshots and audit details come from the engine and the API; they may hold times,
    # enums, sets or records, which must not make a whole transaction fail.
    if isinstance(value, datetime | date):
        return encode_time(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def from_json(text: str | None, empty: Any) -> Any:
    return empty if text is None else json.loads(text)


def _enum(kind: type[StrEnum], value: Any, what: str) -> str:
    try:
        return kind(value).value
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ValueError(f"{what}: {value!r} is not one of {allowed}") from None


def _bool(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def _opt_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


# agents ----------------------------------------------------------------------------------
def agent_row(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "email": agent.email,
        "account": agent.account,
        "calendar": agent.calendar,
        "create_appointments": (
            None
            if agent.create_appointments is None
            else _enum(Policy, agent.create_appointments, f"agent {agent.id}: create_appointments")
        ),
        "import_external": _bool(agent.import_external),
        "colour": agent.colour,
        "feed_token": agent.feed_token,
        "source": agent.source,
        "created_at": encode_time(agent.created_at, f"agent {agent.id}: created_at"),
        "updated_at": encode_time(agent.updated_at, f"agent {agent.id}: updated_at"),
    }


def agent_from_row(row: Row) -> Agent:
    policy = row["create_appointments"]
    return Agent(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        account=row["account"],
        calendar=row["calendar"],
        create_appointments=None if policy is None else Policy(policy),
        import_external=_opt_bool(row["import_external"]),
        colour=row["colour"],
        feed_token=row["feed_token"],
        source=row["source"],
        created_at=decode_datetime(row["created_at"]),
        updated_at=decode_datetime(row["updated_at"]),
    )


# requests --------------------------------------------------------------------------------
def request_row(request: Request) -> dict[str, Any]:
    return {
        "id": request.id,
        "subject": request.subject,
        "customer": request.customer,
        "planned_start": encode_time(request.planned_start, f"request {request.id}: planned"),
        "estimate_minutes": request.estimate_minutes,
        "planned_agents": to_json(list(request.planned_agents)),
        "updated_at": encode_time(request.updated_at, f"request {request.id}: updated_at"),
    }


def request_from_row(row: Row) -> Request:
    return Request(
        id=row["id"],
        subject=row["subject"],
        customer=row["customer"],
        planned_start=decode_time(row["planned_start"]),
        estimate_minutes=row["estimate_minutes"],
        planned_agents=tuple(from_json(row["planned_agents"], [])),
        updated_at=decode_datetime(row["updated_at"]),
    )


# appointments ----------------------------------------------------------------------------
def appointment_row(appt: Appointment) -> dict[str, Any]:
    what = f"appointment {appt.id}"
    if isinstance(appt.start, datetime) != isinstance(appt.end, datetime):
        raise ValueError(f"{what}: start and end must both be datetimes or both dates")
    start_key = instant_key(appt.start, f"{what}: start")
    end_key = instant_key(appt.end, f"{what}: end")
    if end_key < start_key:
        raise ValueError(f"{what}: end is before start")
    return {
        "id": appt.id,
        "agent_id": appt.agent_id,
        "start": encode_time(appt.start, f"{what}: start"),
        "end": encode_time(appt.end, f"{what}: end"),
        "subject": appt.subject,
        "note": appt.note,
        "location": appt.location,
        "private": int(appt.private),
        "show_as": appt.show_as,
        "kind": _enum(Kind, appt.kind, f"{what}: kind"),
        "request_id": appt.request_id,
        "group_id": appt.group_id,
        "action_id": appt.action_id,
        "push_state": _enum(PushState, appt.push_state, f"{what}: push_state"),
        "subject_override": appt.subject_override,
        "body_override": appt.body_override,
        "deleted": int(appt.deleted),
        "all_day": int(appt.all_day),
        "start_utc": start_key,
        "end_utc": end_key,
        "version": appt.version,
        "created_at": encode_time(appt.created_at, f"{what}: created_at"),
        "updated_at": encode_time(appt.updated_at, f"{what}: updated_at"),
        "deleted_at": encode_time(appt.deleted_at, f"{what}: deleted_at"),
        "origin": appt.origin,
    }


# Enum members by value: a lookup, where calling the enum costs ten times as much for every
# row read (an unknown value still goes to the enum, which names it in its error).
_KINDS: Mapping[Any, Kind] = {k.value: k for k in Kind}
_PUSH_STATES: Mapping[Any, PushState] = {p.value: p for p in PushState}


def appointment_from_row(row: Row) -> Appointment:
    return Appointment(
        id=row["id"],
        agent_id=row["agent_id"],
        kind=_KINDS.get(row["kind"]) or Kind(row["kind"]),
        start=decode_time(row["start"]),
        end=decode_time(row["end"]),
        subject=row["subject"],
        note=row["note"],
        location=row["location"],
        private=bool(row["private"]),
        show_as=row["show_as"],
        request_id=row["request_id"],
        group_id=row["group_id"],
        action_id=row["action_id"],
        push_state=_PUSH_STATES.get(row["push_state"]) or PushState(row["push_state"]),
        subject_override=row["subject_override"],
        body_override=row["body_override"],
        version=row["version"],
        created_at=decode_datetime(row["created_at"]),
        updated_at=decode_datetime(row["updated_at"]),
        deleted=bool(row["deleted"]),
        deleted_at=decode_datetime(row["deleted_at"]),
        origin=row["origin"],
    )


def changed_content(old: Row, new: Mapping[str, Any]) -> list[str]:
    """The content fields that differ between a stored row and a candidate row."""
    return [name for name in APPOINTMENT_CONTENT if old[name] != new[name]]


# approvals and conflicts -----------------------------------------------------------------
def approval_row(approval: Approval) -> dict[str, Any]:
    what = f"approval {approval.id}"
    return {
        "id": approval.id,
        "appointment_id": approval.appointment_id,
        "agent_id": approval.agent_id,
        "created_at": encode_time(approval.created_at, f"{what}: created_at"),
        "decided_at": encode_time(approval.decided_at, f"{what}: decided_at"),
        "approved": _bool(approval.approved),
        "decided_by": approval.decided_by,
    }


def approval_from_row(row: Row) -> Approval:
    return Approval(
        id=row["id"],
        appointment_id=row["appointment_id"],
        agent_id=row["agent_id"],
        created_at=decode_datetime(row["created_at"]),
        decided_at=decode_datetime(row["decided_at"]),
        approved=_opt_bool(row["approved"]),
        decided_by=row["decided_by"],
    )


def conflict_row(conflict: Conflict) -> dict[str, Any]:
    return {
        "id": conflict.id,
        "agent_id": conflict.agent_id,
        "appointment_id": conflict.appointment_id,
        "account": conflict.account,
        "policy": conflict.policy,
        "winner": conflict.winner,
        "hub": to_json(conflict.hub),
        "remote": to_json(conflict.remote),
        "detail": conflict.detail,
        "created_at": encode_time(conflict.created_at, f"conflict {conflict.id}: created_at"),
    }


def conflict_from_row(row: Row) -> Conflict:
    return Conflict(
        id=row["id"],
        agent_id=row["agent_id"],
        appointment_id=row["appointment_id"],
        account=row["account"],
        policy=row["policy"],
        winner=row["winner"],
        hub=from_json(row["hub"], {}),
        remote=from_json(row["remote"], {}),
        detail=row["detail"],
        created_at=decode_datetime(row["created_at"]),
    )


# sync ------------------------------------------------------------------------------------
def status_row(status: SyncStatus) -> dict[str, Any]:
    # Written for every pair a pass touches: the message names the row only when needed.
    times = (status.start, status.end, status.updated_at)
    quick = [_utc_text(t) for t in times]
    if all(q is not None or t is None for q, t in zip(quick, times, strict=True)):
        start, end, updated_at = quick
    else:
        what = f"sync status {status.agent_id}/{status.appointment_id}@{status.account}"
        start = encode_time(status.start, f"{what}: start")
        end = encode_time(status.end, f"{what}: end")
        updated_at = encode_time(status.updated_at, f"{what}: updated_at")
    return {
        "agent_id": status.agent_id,
        "account": status.account,
        "appointment_id": status.appointment_id,
        "remote_id": status.remote_id,
        "remote_version": status.remote_version,
        "hub_hash": status.hub_hash,
        "remote_hash": status.remote_hash,
        "state": status.state,
        "external": int(status.external),
        "series_id": status.series_id,
        "start": start,
        "end": end,
        "updated_at": updated_at,
    }


def status_from_row(row: Row) -> SyncStatus:
    return SyncStatus(
        agent_id=row["agent_id"],
        appointment_id=row["appointment_id"],
        account=row["account"],
        remote_id=row["remote_id"],
        remote_version=row["remote_version"],
        hub_hash=row["hub_hash"],
        remote_hash=row["remote_hash"],
        state=row["state"],
        external=bool(row["external"]),
        series_id=row["series_id"],
        start=decode_datetime(row["start"]),
        end=decode_datetime(row["end"]),
        updated_at=decode_datetime(row["updated_at"]),
    )


def calendar_state_row(state: CalendarState) -> dict[str, Any]:
    what = f"calendar state {state.agent_id}"
    return {
        "agent_id": state.agent_id,
        "account": state.account,
        "calendar": state.calendar,
        "cursor": state.cursor,
        "cursor_at": encode_time(state.cursor_at, f"{what}: cursor_at"),
        "last_pass_at": encode_time(state.last_pass_at, f"{what}: last_pass_at"),
        "last_result": state.last_result,
        "last_error": state.last_error,
        "needs_attention": int(state.needs_attention),
        "allow_empty_once": int(state.allow_empty_once),
        "notices": to_json(list(state.notices)),
        "stats": to_json(dict(state.stats)),
    }


def calendar_state_from_row(row: Row) -> CalendarState:
    return CalendarState(
        agent_id=row["agent_id"],
        account=row["account"],
        calendar=row["calendar"],
        cursor=row["cursor"],
        cursor_at=decode_datetime(row["cursor_at"]),
        last_pass_at=decode_datetime(row["last_pass_at"]),
        last_result=row["last_result"],
        last_error=row["last_error"],
        needs_attention=bool(row["needs_attention"]),
        allow_empty_once=bool(row["allow_empty_once"]),
        notices=from_json(row["notices"], []),
        stats=from_json(row["stats"], {}),
    )


# audit -----------------------------------------------------------------------------------
def audit_from_row(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=decode_datetime(row["at"]),
        origin=row["origin"],
        entity=row["entity"],
        entity_id=row["entity_id"],
        action=row["action"],
        detail=from_json(row["detail"], {}),
    )


def same_row(old: Row, new: Mapping[str, Any], *, ignore: tuple[str, ...] = ()) -> bool:
    """Whether a stored row already holds every column of ``new`` (bar ``ignore``)."""
    return all(old[name] == value for name, value in new.items() if name not in ignore)
