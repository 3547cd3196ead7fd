"""Rendering: the subject and body templates, and the external event of a hub appointment.

Templates are a tiny language of our own: ``{field}`` substitutes one of :data:`FIELDS`,
``{{`` and ``}}`` are literal braces, and nothing else is special. Where a caller allows it
(the e-mail subject), a time field may carry a strftime format: ``{start:%a %d %b %H:%M}``;
only the directives of :data:`TIME_DIRECTIVES` are accepted. User templates never go
through :meth:`str.format`, so ``{x.__class__}``, ``{0}`` or ``{note!r:>10}`` are template
errors (reported by :func:`check_template` at config load), not a way into Python objects.

:func:`render_event` never raises for a missing value: an absent request, agent e-mail or note
renders as an empty string.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.model import Agent, Appointment, Kind, Request
from hub.spec import EventData, ShowAs, as_utc

if TYPE_CHECKING:  # hub.config imports this module to check templates at load
    from hub.config import HubSettings

FIELDS: Mapping[str, str] = {
    "request_id": "the request's id (empty for an appointment without a request)",
    "request_subject": "the request's subject (a manual appointment's own subject when set)",
    "subject": "the appointment's own subject, else the request's subject",
    "customer": "the request's customer",
    "note": "the appointment's note",
    "agent_name": "the agent's name",
    "agent_email": "the agent's e-mail address",
    "agent_id": "the agent's id",
    "kind": "what the appointment is: Planned work, Logged action, Appointment, External",
    "start": "start in the hub's time zone, e.g. 2026-05-04 09:00 (all-day: 2026-05-04)",
    "end": "end in the hub's time zone (all-day: the last day, inclusive)",
    "date": "the start date, e.g. 2026-05-04",
    "duration_minutes": "the length in minutes",
}

KIND_LABELS: Mapping[Kind, str] = {
    Kind.PLANNED: "Planned work",
    Kind.ACTION: "Logged action",
    Kind.MANUAL: "Appointment",
    Kind.EXTERNAL: "External",
}

CATEGORY = "calhub"
_TIME_FIELDS = frozenset({"start", "end", "date", "duration_minutes"})
_SHOW_AS: frozenset[str] = frozenset({"busy", "free", "tentative", "oof"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An empty "[#]" left by a template like "[#{request_id}] ..." when there is no request.
_EMPTY_ID_PREFIX = re.compile(r"\[#\]\s*")


# strftime directives a formatted time field may use (locale-free or the C locale's names).
TIME_DIRECTIVES = frozenset("aAbBdeHIjmMpSuVwyYzZGg%")
_TIME_ONLY_DIRECTIVE = re.compile(r"[\s,:.-]*%[HIMSpzZ]")
FORMATTABLE = frozenset({"start", "end", "date"})
ALL_DAY_SUFFIX = " (all day)"


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    spec: str = ""  # a strftime format, where the template allows one


_Piece = str | _Field


# A bounded memo of a pure function: a sync pass renders thousands of events with the same
# two templates, and parsing them again each time was half the cost of rendering.
@functools.lru_cache(maxsize=64)
def _parse(
    template: str, fields: frozenset[str] | None = None, formats: bool = False
) -> tuple[tuple[_Piece, ...], tuple[str, ...]]:
    """Split a template into literal text and fields, collecting every problem.

    A malformed part is kept as literal text, so rendering an unchecked template still
    produces something readable instead of failing.
    """
    pieces: list[_Piece] = []
    problems: list[str] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch in "{}" and template.startswith(ch * 2, i):
            literal.append(ch)
            i += 2
            continue
        if ch == "}":
            problems.append(f"unbalanced '}}' at position {i + 1} (write '}}}}' for a brace)")
            literal.append(ch)
            i += 1
            continue
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        close = template.find("}", i + 1)
        nested = template.find("{", i + 1)
        if close < 0 or 0 <= nested < close:
            problems.append(f"unbalanced '{{' at position {i + 1} (write '{{{{' for a brace)")
            literal.append(ch)
            i += 1
            continue
        inner = template[i + 1 : close]
        name, spec = inner, None
        if formats and ":" in inner and inner.partition(":")[0] in FORMATTABLE:
            name, _, spec = inner.partition(":")
        problem = _field_problem(name, fields)
        if problem is None and spec is not None:
            problem = _spec_problem(name, spec)
        if problem:
            problems.append(problem)
            literal.append(template[i : close + 1])
        else:
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(_Field(name, spec or ""))
        i = close + 1
    if literal:
        pieces.append("".join(literal))
    return tuple(pieces), tuple(problems)


def _spec_problem(name: str, spec: str) -> str | None:
    directives = re.findall(r"%(.?)", spec.replace("%%", ""))
    bad = sorted({d for d in directives if d not in TIME_DIRECTIVES})
    if not directives or bad:
        allowed = " ".join(f"%{d}" for d in sorted(TIME_DIRECTIVES - {"%"}))
        what = f"unsupported directive {', '.join('%' + d for d in bad)}" if bad else "no %"
        return f"'{{{name}:{spec}}}': {what} in the time format; allowed: {allowed}"
    return None


def _field_problem(inner: str, fields: frozenset[str] | None = None) -> str | None:
    names = FIELDS.keys() if fields is None else fields
    known = ", ".join(n for n in (*FIELDS, *sorted(names - FIELDS.keys())) if n in names)
    if not inner:
        return "empty field '{}': name a field"
    name = _IDENTIFIER.match(inner)
    if name is None or name.end() != len(inner):
        if name is not None and inner[name.end()] in ".[!:":
            plain = name.group()
            hint = f"write '{{{plain}}}'" if plain in FIELDS else f"known fields: {known}"
            return (
                f"'{{{inner}}}': attribute, index, conversion and format syntax are not "
                f"supported; {hint}"
            )
        return f"'{{{inner}}}' is not a field name; known fields: {known}"
    if inner not in names:
        return f"unknown field '{inner}'; known fields: {known}"
    return None


def check_template(
    template: str, fields: frozenset[str] | None = None, *, formats: bool = False
) -> list[str]:
    """The problems of ``template`` (unknown field, unbalanced brace, unsupported syntax).

    ``fields`` replaces :data:`FIELDS` as the known names; ``formats`` allows a strftime
    format on the time fields (``{start:%H:%M}``)."""
    return list(_parse(template, fields, formats)[1])


@functools.lru_cache(maxsize=64)  # pure, and asked once per rendered event (see _parse)
def template_fields(template: str) -> frozenset[str]:
    """The fields ``template`` uses."""
    return frozenset(p.name for p in _parse(template)[0] if isinstance(p, _Field))


def _formatted(value: datetime | date, spec: str) -> str:
    if isinstance(value, datetime):
        return value.strftime(spec)
    # An all-day entry has no time of day: show its date, never a made-up 00:00.
    day_only = _TIME_ONLY_DIRECTIVE.sub("", spec).strip()
    return (value.strftime(day_only) if day_only else value.isoformat()) + ALL_DAY_SUFFIX


def render_template(
    template: str,
    values: Mapping[str, str],
    times: Mapping[str, datetime | date] | None = None,
    *,
    fields: frozenset[str] | None = None,
    formats: bool = False,
) -> str:
    """Substitute ``values`` into ``template``; a field without a value renders empty.

    A formatted time field (``formats``) takes its value from ``times`` (see
    :func:`local_times`); ``fields`` as for :func:`check_template`."""
    pieces, _ = _parse(template, fields, formats)
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif piece.spec and times is not None and piece.name in times:
            out.append(_formatted(times[piece.name], piece.spec))
        else:
            out.append(values.get(piece.name, ""))
    return "".join(out)


def local_times(
    start: datetime | date, end: datetime | date, settings: HubSettings
) -> dict[str, datetime | date]:
    """``start``, ``end`` (all-day: the last day, inclusive) and ``date`` in the hub's zone,
    for formatted time fields."""
    zone = hub_zone(settings)
    if isinstance(start, datetime) and isinstance(end, datetime):
        first = _local(start, zone)
        return {"start": first, "end": _local(end, zone), "date": first}
    last = end - timedelta(days=1) if end > start else end  # type: ignore[operator]
    return {"start": start, "end": last, "date": start}


def hub_zone(settings: HubSettings) -> tzinfo | None:
    """The zone times are shown in: ``hub.timezone``, else the machine's local zone (None)."""
    if not settings.timezone:
        return None
    try:
        return ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # refused at config load; a hand-built settings object falls back


def _local(value: datetime, zone: tzinfo | None) -> datetime:
    return as_utc(value).astimezone(zone)


def _readable(value: datetime | date, zone: tzinfo | None) -> str:
    if isinstance(value, datetime):
        return _local(value, zone).strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def _minutes(start: datetime | date, end: datetime | date) -> int:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max(0, int((as_utc(end) - as_utc(start)).total_seconds() // 60))
    if not isinstance(start, datetime) and not isinstance(end, datetime):
        return max(0, (end - start).days * 24 * 60)
    return 0


def _time_values(
    start: datetime | date, end: datetime | date, zone: tzinfo | None
) -> dict[str, str]:
    if isinstance(start, datetime):
        day = _local(start, zone).date().isoformat()
        last = _readable(end, zone)
    else:
        day = start.isoformat()
        # An all-day end is exclusive; people read "until" as the last day.
        last = (end - timedelta(days=1)).isoformat() if end > start else end.isoformat()
    return {
        "start": _readable(start, zone),
        "end": last,
        "date": day,
        "duration_minutes": str(_minutes(start, end)),
    }


def template_values(
    appt: Appointment,
    agent: Agent,
    request: Request | None,
    settings: HubSettings,
    fields: Collection[str] = FIELDS.keys(),
) -> dict[str, str]:
    """The value of the template ``fields`` (all of them by default) for one appointment;
    the result may hold more fields than asked for."""
    own_subject = appt.subject if appt.kind is Kind.MANUAL else ""
    request_subject = own_subject or (request.subject if request else "") or appt.subject
    values = {
        "request_id": appt.request_id or (request.id if request else "") or "",
        "request_subject": request_subject,
        "subject": appt.subject or request_subject,
        "customer": request.customer if request else "",
        "note": appt.note,
        "agent_name": agent.name,
        "agent_email": agent.email,
        "agent_id": agent.id,
        "kind": KIND_LABELS.get(appt.kind, str(appt.kind)),
    }
    # Local times cost a zone conversion and formatting: only when a template shows them.
    if not _TIME_FIELDS.isdisjoint(fields):
        values.update(_time_values(appt.start, appt.end, hub_zone(settings)))
    return values


def _show_as(value: str) -> ShowAs:
    return value if value in _SHOW_AS else "busy"  # type: ignore[return-value]


def _subject(appt: Appointment, settings: HubSettings, values: Mapping[str, str]) -> str:
    if appt.subject_override is not None:
        return appt.subject_override
    subject = render_template(settings.subject_template, values)
    if not values["request_id"]:
        subject = _EMPTY_ID_PREFIX.sub("", subject)
    # A calendar entry without a title is unreadable; name at least what it is.
    return subject.strip() or values["kind"]


def render_subject(
    appt: Appointment, agent: Agent, request: Request | None, settings: HubSettings
) -> str:
    """``render_event(...).subject`` alone, without rendering the body (lists show it)."""
    if appt.kind is Kind.EXTERNAL:
        return appt.subject
    fields = template_fields(settings.subject_template) if appt.subject_override is None else ()
    return _subject(appt, settings, template_values(appt, agent, request, settings, fields))


def render_event(
    appt: Appointment, agent: Agent, request: Request | None, settings: HubSettings
) -> EventData:
    """The external event of a hub appointment, as providers write it.

    An external (imported) appointment renders its stored content as is. A subject or body
    edited remotely on a manual appointment (``subject_override``/``body_override``) renders
    verbatim; otherwise the templates of ``settings`` apply.
    """
    if appt.kind is Kind.EXTERNAL:
        return EventData(
            subject=appt.subject,
            start=appt.start,
            end=appt.end,
            body=appt.note,
            location=appt.location,
            private=appt.private,
            show_as=_show_as(appt.show_as),
        )
    templates = [
        template
        for template, override in (
            (settings.subject_template, appt.subject_override),
            (settings.body_template, appt.body_override),
        )
        if override is None
    ]
    used = frozenset().union(*(template_fields(t) for t in templates))
    values = template_values(appt, agent, request, settings, used)
    subject = _subject(appt, settings, values)
    if appt.body_override is not None:
        body = appt.body_override
    else:
        body = render_template(settings.body_template, values).strip()
    return EventData(
        subject=subject,
        start=appt.start,
        end=appt.end,
        body=body,
        location=appt.location,
        private=appt.private,
        show_as=_show_as(appt.show_as),
        reminder_minutes=settings.reminder_minutes,
        categories=(CATEGORY, values["kind"]),
        colour=agent.colour,
    )
