"""What the e-mails say: appointment copies (text, HTML, ``.ics``), alerts, and the MIME
message built from an outbox row.

A copy shows the request, customer, time in the hub's time zone, location and note. A private
appointment shows only "Data unavailable" and its time, in the subject, both bodies and the
attachment alike. The attachment is an iCalendar object with ``METHOD:PUBLISH`` and the same
VEVENT as the agent's feed (:func:`hub.ics.appointment_event`: stable UID, ``SEQUENCE`` = the
appointment's version, never an attendee), so a calendar client offers to add or update it and
never sends a reply; a cancellation is the same event with ``STATUS:CANCELLED``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from icalendar import Calendar

from hub.config import HubSettings
from hub.ics import PRODID, appointment_event
from hub.mail.settings import COPY_FIELDS, EmailSettings
from hub.model import Agent, Appointment, Request
from hub.render import hub_zone, local_times, render_event, render_template, template_values
from hub.spec import PRIVATE_SUBJECT, as_utc
from hub.store.outbox import OutboxMessage

CHANGE_LABELS = {
    "created": "New appointment",
    "moved": "Moved",
    "resized": "Resized",
    "updated": "Updated",
    "reassigned": "Reassigned",
    "cancelled": "Cancelled",
}
ICS_FILENAME = "appointment.ics"
_PRIVATE_KEEP = frozenset({"start", "end", "date", "duration_minutes", "change", "kind"})


@dataclass(frozen=True, slots=True)
class Draft:
    """The rendered parts of one e-mail."""

    subject: str
    text: str
    html: str
    ics: str = ""


def _when(appt: Appointment, settings: HubSettings) -> str:
    """``Tue 05 May 2026 10:00-11:00 (Europe/Paris)``, or the all-day form."""
    times = local_times(appt.start, appt.end, settings)
    start, end = times["start"], times["end"]
    if isinstance(start, datetime) and isinstance(end, datetime):
        zone = settings.timezone or start.tzname() or "local time"
        first = start.strftime("%a %d %b %Y %H:%M")
        last = end.strftime("%H:%M" if end.date() == start.date() else "%a %d %b %Y %H:%M")
        return f"{first}-{last} ({zone})"
    first = start.strftime("%a %d %b %Y")
    if end != start:
        return f"{first} - {end.strftime('%a %d %b %Y')} (all day)"
    return f"{first} (all day)"


def _copy_subject(
    change: str, values: dict[str, str], appt: Appointment, hub: HubSettings, email: EmailSettings
) -> str:
    subject = render_template(
        email.subject_template,
        values,
        local_times(appt.start, appt.end, hub),
        fields=COPY_FIELDS,
        formats=True,
    )
    # "[#] " left by a template when there is no request id.
    subject = " ".join(subject.replace("[#]", "").split())
    return subject or CHANGE_LABELS.get(change, change)


def copy_ics(appt: Appointment, agent: Agent, request: Request | None, hub: HubSettings) -> str:
    """The ``.ics`` attachment of a copy (a tombstone gives a cancelled event)."""
    now = datetime.now(UTC).replace(microsecond=0)
    event = appointment_event(appt, render_event(appt, agent, request, hub), now)
    if appt.deleted:
        event.pop("STATUS", None)
        event.add("status", "CANCELLED")
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    cal.add_component(event)
    return cal.to_ical().decode("utf-8")


def compose_copy(
    change: str,
    appt: Appointment,
    agent: Agent,
    request: Request | None,
    hub: HubSettings,
    email: EmailSettings,
    remark: str = "",
) -> Draft:
    """The copy of one change of ``appt`` (as it is after the change); ``remark`` is one
    more line, such as who the entry was reassigned to."""
    label = CHANGE_LABELS.get(change, change.capitalize())
    values = {**template_values(appt, agent, request, hub), "change": label}
    when = _when(appt, hub)
    rows: list[tuple[str, str]]
    if appt.private:
        values = {k: (v if k in _PRIVATE_KEEP else "") for k, v in values.items()}
        values["request_subject"] = values["subject"] = PRIVATE_SUBJECT
        rows = [("What", PRIVATE_SUBJECT), ("When", when)]
        remark = ""
    else:
        title = values["subject"] or values["kind"]
        about = request.subject if request is not None and request.subject else ""
        request_line = f"#{values['request_id']} {about or values['request_subject']}".strip()
        rows = [
            ("What", title),
            ("Request", request_line if values["request_id"] else ""),
            ("Customer", values["customer"]),
            ("When", when),
            ("Where", appt.location),
            ("Agent", agent.name),
            ("Note", appt.note),
        ]
        rows = [(k, v) for k, v in rows if v]
    subject = _copy_subject(change, values, appt, hub, email)
    footer = (
        "This entry was removed from the calendar."
        if appt.deleted
        else "The attached calendar file adds or updates this entry in your calendar."
    )
    lines = [f"{label}", ""]
    lines += [f"{k + ':':<10}{v}".rstrip() for k, v in rows if "\n" not in v]
    for key, value in rows:
        if "\n" in value:
            lines += [f"{key}:", *(f"  {line}" for line in value.splitlines())]
    if remark:
        lines += ["", remark]
    lines += ["", footer, "-- calhub"]
    cells = "".join(
        f"<tr><th align='left' valign='top'>{html.escape(k)}</th>"
        f"<td>{html.escape(v).replace(chr(10), '<br>')}</td></tr>"
        for k, v in rows
    )
    body = (
        "<!DOCTYPE html><html><body>"
        f"<h2>{html.escape(label)}</h2><table cellpadding='4'>{cells}</table>"
        + (f"<p>{html.escape(remark)}</p>" if remark else "")
        + f"<p><small>{html.escape(footer)} &mdash; calhub</small></p></body></html>"
    )
    return Draft(subject, "\n".join(lines) + "\n", body, copy_ics(appt, agent, request, hub))


def compose_alert(
    who: str, needs_attention: bool, reason: str, advice: list[str], hub: HubSettings
) -> Draft:
    """An alert that ``who`` (``agent alice`` or ``account o365``) turned to needing
    attention, or recovered."""
    now = datetime.now(UTC).astimezone(hub_zone(hub)).strftime("%a %d %b %Y %H:%M %Z").strip()
    if needs_attention:
        subject = f"calhub: {who} needs attention"
        lines = [f"Calendar sync of {who} stopped at {now}.", "", f"Reason: {reason}", ""]
        lines += ["What to do:", *(f"- {a}" for a in advice)]
        lines += ["", "Another message follows when it works again."]
    else:
        subject = f"calhub: {who} works again"
        lines = [f"Calendar sync of {who} works again since {now}."]
        if reason:
            lines += ["", f"It had stopped with: {reason}"]
    lines += ["", "-- calhub"]
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
    return Draft(subject, "\n".join(lines) + "\n", f"<html><body>{paragraphs}</body></html>")


def compose_test(email: EmailSettings) -> Draft:
    """The message of ``calhub check email --send``."""
    text = (
        f"This is a test message from calhub, sent through {email.host}:{email.port} "
        f"({email.security}).\nAppointment copies and alerts will come from this address.\n"
    )
    return Draft("calhub: test message", text, f"<html><body><p>{html.escape(text)}</p>")


def mime_message(message: OutboxMessage, email: EmailSettings, now: datetime) -> EmailMessage:
    """The MIME message of an outbox row: text and HTML alternatives, the ``.ics`` attached
    (``text/calendar; method=PUBLISH``), and the row's own Message-ID so that a copy sent
    twice (see :mod:`hub.mail.sender`) is recognisably the same message."""
    mime = EmailMessage()
    mime["From"] = email.sender
    mime["To"] = message.recipient
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(as_utc(now))
    mime["Message-ID"] = message.message_id
    mime["Auto-Submitted"] = "auto-generated"  # no out-of-office replies to a robot
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    if message.ics:
        mime.add_attachment(
            message.ics.encode("utf-8"),
            maintype="text",
            subtype="calendar",
            filename=ICS_FILENAME,
            params={"method": "PUBLISH", "charset": "utf-8"},
        )
    return mime


def span_minutes(start: datetime | date, end: datetime | date) -> timedelta:
    """The length of a span (dates: whole days)."""
    return as_utc(end) - as_utc(start)


__all__ = [
    "CHANGE_LABELS",
    "Draft",
    "compose_alert",
    "compose_copy",
    "compose_test",
    "copy_ics",
    "mime_message",
    "span_minutes",
]
