"""Reading back what the SMTP server received: by recipient, the text, the .ics."""

from __future__ import annotations

from email.message import EmailMessage

from icalendar import Calendar

from tests.fakes.smtp import SmtpServer


def to(server: SmtpServer, address: str) -> list[EmailMessage]:
    return [r.message for r in server.received if address in r.rcpt_tos]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def ics_of(message: EmailMessage) -> Calendar:
    parts = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, "one calendar attachment"
    assert parts[0].get_param("method") == "PUBLISH"
    content = parts[0].get_content()
    return Calendar.from_ical(content if isinstance(content, str) else content.decode())


def everything_readable(message: EmailMessage) -> str:
    """Headers and every decoded part: what a leak check must search."""
    chunks = [f"{k}: {v}" for k, v in message.items()]
    for part in message.walk():
        if part.is_multipart():
            continue
        content = part.get_content()
        chunks.append(content if isinstance(content, str) else content.decode())
    return "\n".join(chunks)
