"""Appointment copies, end to end against a real SMTP server (aiosmtpd, STARTTLS, AUTH):
one readable message per change with a working .ics, privacy, debounce, approvals, and the
outbox written in the change's own transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar

from hub.model import Appointment, Kind, Policy
from hub.rules import Booking, Change, Plan, Rules
from tests.fakes.smtp import USERNAME, SmtpServer
from tests.mail.conftest import MailHub
from tests.mail.helpers import everything_readable, html_of, ics_of, text_of, to

START = datetime(2026, 5, 5, 8, 0, tzinfo=UTC)  # Tue 10:00 in Paris
END = START + timedelta(hours=1)


def booking(**changes: object) -> Booking:
    base = Booking(
        subject="Replace printer",
        start=START,
        end=END,
        agents=("alice",),
        note="Bring the spare toner",
        location="Floor 3",
        request_subject="Printer broken",
        customer="ACME Corp",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def event_of(cal: Calendar) -> object:
    (event,) = cal.walk("VEVENT")
    return event


async def test_each_change_sends_one_copy_per_recipient_with_a_working_attachment(
    hub: MailHub,
) -> None:
    (appt,) = await hub.rules.book("42", booking())
    assert await hub.deliver() == 2  # alice and her coordinator
    await hub.rules.change(appt.id, Change(start=START + timedelta(hours=2)))
    await hub.deliver()
    await hub.rules.change(appt.id, Change(end=START + timedelta(hours=4)))
    await hub.deliver()
    await hub.rules.change(appt.id, Change(note="Toner is in the van"))
    await hub.deliver()
    await hub.rules.cancel(appt.id)
    await hub.deliver()

    for address in ("alice@example.com", "coord@example.com"):
        messages = to(hub.server, address)
        subjects = [m["Subject"] for m in messages]
        assert subjects == [
            "New appointment: [#42] Replace printer Tue 05 May 10:00",
            "Moved: [#42] Replace printer Tue 05 May 12:00",
            "Resized: [#42] Replace printer Tue 05 May 12:00",
            "Updated: [#42] Replace printer Tue 05 May 12:00",
            "Cancelled: [#42] Replace printer Tue 05 May 12:00",
        ]
        events = [event_of(ics_of(m)) for m in messages]
        assert {str(e["UID"]) for e in events} == {f"{appt.id}@calhub"}  # stable
        sequences = [int(e["SEQUENCE"]) for e in events]
        assert sequences == sorted(sequences) and len(set(sequences)) == 5  # increasing
        for message, event in zip(messages, events, strict=True):
            assert ics_of(message)["METHOD"] == "PUBLISH"
            assert "ATTENDEE" not in event and "ORGANIZER" not in event
            assert message["From"] == "Helpdesk calendar <calhub@example.com>"
            assert message["Auto-Submitted"] == "auto-generated"
        assert [str(e["STATUS"]) for e in events] == ["CONFIRMED"] * 4 + ["CANCELLED"]
        assert events[1].decoded("DTSTART") == START + timedelta(hours=2)
        assert events[2].decoded("DTEND") == START + timedelta(hours=4)
    first = to(hub.server, "alice@example.com")[0]
    body = text_of(first)
    for expected in (
        "#42 Printer broken",
        "ACME Corp",
        "Tue 05 May 2026 10:00-11:00 (Europe/Paris)",
        "Floor 3",
        "Bring the spare toner",
    ):
        assert expected in body and expected in html_of(first)
    assert hub.server.handler.logins and set(hub.server.handler.logins) == {USERNAME}
    # Nobody else heard of it: carol has no copies; the outbox holds only sent messages.
    assert {a for r in hub.server.received for a in r.rcpt_tos} == {
        "alice@example.com",
        "coord@example.com",
    }
    assert await hub.store.list_messages() == []


async def test_html_body_escapes_what_users_typed(hub: MailHub) -> None:
    await hub.rules.book("7", booking(subject="<b>bold</b>", note="a < b & c"))
    await hub.deliver()
    page = html_of(to(hub.server, "alice@example.com")[0])
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "a &lt; b &amp; c" in page


async def test_a_private_appointment_shows_only_data_unavailable_and_the_time(
    hub: MailHub,
) -> None:
    (appt,) = await hub.rules.book(
        "99",
        booking(
            subject="Secret merger talks",
            note="Confidential: bring NDA-7731",
            location="Board room",
            customer="MegaCorp",
            request_subject="Acquisition",
            private=True,
        ),
    )
    await hub.deliver()
    await hub.rules.change(appt.id, Change(start=START + timedelta(days=1)))
    await hub.deliver()
    messages = to(hub.server, "alice@example.com") + to(hub.server, "coord@example.com")
    assert len(messages) == 4
    for message in messages:
        seen = everything_readable(message)
        for secret in (
            "Secret",
            "merger",
            "Confidential",
            "NDA-7731",
            "Board room",
            "MegaCorp",
            "Acquisition",
            "#99",
        ):
            assert secret not in seen, (secret, message["Subject"])
        assert "Data unavailable" in message["Subject"]
        assert "Data unavailable" in text_of(message)
        event = event_of(ics_of(message))
        assert str(event["SUMMARY"]) == "Data unavailable" and str(event["CLASS"]) == "PRIVATE"
    assert "Tue 05 May 2026 10:00-11:00" in text_of(messages[0])
    assert "Wed 06 May 2026 10:00-11:00" in text_of(messages[1])


async def test_changes_within_the_debounce_collapse_into_one_message(hub: MailHub) -> None:
    (appt,) = await hub.rules.book("1", booking())
    hub.clock.advance(seconds=10)
    await hub.rules.change(appt.id, Change(start=START + timedelta(hours=1)))
    hub.clock.advance(seconds=10)
    await hub.rules.change(appt.id, Change(start=START + timedelta(hours=3)))
    hub.clock.advance(seconds=25)  # 45 s after the first change, 25 s after the last
    assert await hub.sender.send_due() == 0  # the wait restarted with each change
    assert await hub.deliver() == 2
    (only,) = to(hub.server, "alice@example.com")
    assert only["Subject"].startswith("New appointment:")  # created, then moved: created
    assert event_of(ics_of(only)).decoded("DTSTART") == START + timedelta(hours=3)

    # Moved then resized after the first copy went out: one "Moved" with the final span.
    await hub.rules.change(appt.id, Change(start=START))
    await hub.rules.change(appt.id, Change(end=START + timedelta(hours=2)))
    await hub.deliver()
    second = to(hub.server, "alice@example.com")[1:]
    assert [m["Subject"].split(":")[0] for m in second] == ["Moved"]
    assert event_of(ics_of(second[0])).decoded("DTEND") == START + timedelta(hours=2)

    # Made and cancelled before anything was sent: nothing at all.
    (other,) = await hub.rules.book("2", booking(subject="Never mind"))
    await hub.rules.cancel(other.id)
    assert await hub.deliver() == 0
    assert len(to(hub.server, "alice@example.com")) == 2


async def test_the_debounce_does_not_hold_a_message_forever(hub: MailHub) -> None:
    (appt,) = await hub.rules.book("1", booking())
    for minutes in range(1, 8):  # a change every 20 s for over two minutes
        hub.clock.advance(seconds=20)
        await hub.rules.change(appt.id, Change(start=START + timedelta(minutes=minutes)))
        await hub.sender.send_due()
    assert len(to(hub.server, "alice@example.com")) == 1  # sent at 4 x 30 s, not later


async def test_nothing_while_awaiting_approval_then_a_copy_once_approved(
    tmp_path: Path, starttls: SmtpServer
) -> None:
    from tests.mail.conftest import open_hub

    opened = await open_hub(tmp_path, starttls)
    try:
        rules = Rules(opened.store, replace(opened.config.hub, create_appointments=Policy.ASK))
        (held,) = await rules.book("5", booking())
        (refused,) = await rules.book("6", booking(subject="Refused visit"))
        await rules.change(held.id, Change(start=START + timedelta(hours=1)))
        assert await opened.deliver() == 0
        assert await opened.store.list_messages() == []
        approvals = {a.appointment_id: a for a in await opened.store.list_approvals()}
        await rules.decide(approvals[refused.id].id, False)
        assert await opened.deliver() == 0
        await rules.decide(approvals[held.id].id, True)
        assert await opened.deliver() == 2
        (message,) = to(starttls, "alice@example.com")
        assert message["Subject"] == "New appointment: [#5] Replace printer Tue 05 May 11:00"
    finally:
        await opened.store.close()


async def test_a_replanned_request_tells_both_agents_it_was_reassigned(hub: MailHub) -> None:
    (planned,) = await hub.rules.plan(
        "12", Plan(agents=("alice",), start=START, subject="Server room audit")
    )
    await hub.deliver()
    (moved,) = await hub.rules.plan(
        "12", Plan(agents=("bob",), start=START, subject="Server room audit")
    )
    await hub.deliver()
    old = to(hub.server, "alice@example.com")[1:] + to(hub.server, "coord@example.com")[1:]
    new = to(hub.server, "bob@example.com")
    assert len(old) == 2 and len(new) == 1
    for message in old + new:
        assert message["Subject"].startswith("Reassigned: [#12] Server room audit")
        assert "Reassigned from Alice Smith to Bob Jones." in text_of(message)
    for message in old:  # leaves alice's calendar
        event = event_of(ics_of(message))
        assert str(event["UID"]) == f"{planned.id}@calhub"
        assert str(event["STATUS"]) == "CANCELLED"
    event = event_of(ics_of(new[0]))  # lands in bob's
    assert str(event["UID"]) == f"{moved.id}@calhub" and str(event["STATUS"]) == "CONFIRMED"


async def test_reassigning_an_entry_in_one_transaction_is_a_reassignment(hub: MailHub) -> None:
    """What reassigning an appointment does at the rules level (the old entry cancelled, a
    copy for the new agent made, in one transaction), whichever call does it."""
    (appt,) = await hub.rules.book("3", booking(agents=("alice",)))
    await hub.deliver()
    async with hub.store.transaction("api") as tx:
        await tx.delete_appointment(appt.id)
        await tx.put_appointment(appt.evolve(id="moved-to-bob", agent_id="bob", version=1))
    await hub.deliver()
    (to_bob,) = to(hub.server, "bob@example.com")
    assert to_bob["Subject"].startswith("Reassigned:")
    assert "Reassigned from Alice Smith to Bob Jones." in text_of(to_bob)
    assert to(hub.server, "alice@example.com")[1]["Subject"].startswith("Reassigned:")


class Boom(Exception):
    pass


async def test_a_change_whose_transaction_fails_leaves_no_message(hub: MailHub) -> None:
    appt = Appointment(id="a1", agent_id="alice", kind=Kind.MANUAL, start=START, end=END)
    with pytest.raises(Boom):
        async with hub.store.transaction("api") as tx:
            await tx.put_appointment(appt)
            raise Boom
    assert await hub.store.list_messages(states=("pending", "sent")) == []

    # The other way round: when writing to the outbox fails, the change is not made either.
    async def failing_hook(tx: object) -> None:
        raise Boom

    hub.store.add_commit_hook(failing_hook)
    with pytest.raises(Boom):
        await hub.rules.book("8", booking())
    assert await hub.store.list_appointments() == []
    assert await hub.store.list_messages(states=("pending", "sent")) == []


async def test_the_message_is_in_the_outbox_when_the_change_commits(hub: MailHub) -> None:
    (appt,) = await hub.rules.book("9", booking())
    waiting = await hub.store.list_messages()
    assert {(m.recipient, m.kind, m.appointment_id, m.state) for m in waiting} == {
        ("alice@example.com", "created", appt.id, "pending"),
        ("coord@example.com", "created", appt.id, "pending"),
    }
    assert all(m.not_before == hub.clock() + timedelta(seconds=30) for m in waiting)


async def test_reassigning_through_the_rules_api_tells_both_sides(hub: MailHub) -> None:
    (appt,) = await hub.rules.book("4", booking())
    await hub.deliver()
    moved = await hub.rules.change(appt.id, Change(agent="bob"))
    await hub.deliver()
    (to_bob,) = to(hub.server, "bob@example.com")
    from_alice = to(hub.server, "alice@example.com")[1:] + to(hub.server, "coord@example.com")[1:]
    assert len(from_alice) == 2
    for message in [to_bob, *from_alice]:
        assert message["Subject"].startswith("Reassigned: [#4] Replace printer")
        assert "Reassigned from Alice Smith to Bob Jones." in text_of(message)
    assert str(event_of(ics_of(to_bob))["UID"]) == f"{moved.id}@calhub"
    for message in from_alice:
        event = event_of(ics_of(message))
        assert str(event["UID"]) == f"{appt.id}@calhub" and str(event["STATUS"]) == "CANCELLED"
