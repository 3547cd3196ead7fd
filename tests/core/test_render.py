"""Templates and the external event of a hub appointment (hub/render.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from hub.config import HubSettings
from hub.model import Agent, Appointment, Kind, Request
from hub.render import FIELDS, check_template, render_event, render_template, template_values

SETTINGS = HubSettings(timezone="Europe/Paris")
ALICE = Agent(id="alice", name="Alice Smith", email="alice@example.com", colour="#3a87ad")
REQ = Request(id="1042", subject="Printer on fire", customer="ACME")


def appt(kind: Kind = Kind.PLANNED, **kw: object) -> Appointment:
    fields: dict[str, object] = {
        "id": "a1",
        "agent_id": "alice",
        "kind": kind,
        "start": datetime(2026, 5, 4, 7, 0, tzinfo=UTC),
        "end": datetime(2026, 5, 4, 8, 30, tzinfo=UTC),
        "request_id": "1042",
        "note": "Bring a fire extinguisher",
    }
    fields.update(kw)
    return Appointment(**fields)  # type: ignore[arg-type]


def test_every_field_has_a_value() -> None:
    values = template_values(appt(), ALICE, REQ, SETTINGS)
    assert set(values) == set(FIELDS)
    assert values == {
        "request_id": "1042",
        "request_subject": "Printer on fire",
        "subject": "Printer on fire",
        "customer": "ACME",
        "note": "Bring a fire extinguisher",
        "agent_name": "Alice Smith",
        "agent_email": "alice@example.com",
        "agent_id": "alice",
        "kind": "Planned work",
        "start": "2026-05-04 09:00",  # Paris is UTC+2 in May
        "end": "2026-05-04 10:30",
        "date": "2026-05-04",
        "duration_minutes": "90",
    }


def test_all_day_values_show_the_last_day_inclusive() -> None:
    a = appt(start=date(2026, 5, 4), end=date(2026, 5, 6))
    values = template_values(a, ALICE, REQ, SETTINGS)
    assert (values["start"], values["end"], values["date"]) == (
        "2026-05-04",
        "2026-05-05",
        "2026-05-04",
    )
    assert values["duration_minutes"] == str(2 * 24 * 60)


def test_default_templates() -> None:
    event = render_event(appt(), ALICE, REQ, SETTINGS)
    assert event.subject == "[#1042] Printer on fire"
    assert event.body == "Bring a fire extinguisher"
    assert event.categories == ("calhub", "Planned work")
    assert event.colour == "#3a87ad"
    assert event.reminder_minutes == 15
    assert event.start == datetime(2026, 5, 4, 7, 0, tzinfo=UTC)


def test_custom_templates_and_literal_braces() -> None:
    settings = HubSettings(
        subject_template="{{{customer}}} {kind} for {agent_name} ({duration_minutes} min)",
        body_template="{agent_email}: {note} }}{{",
        reminder_minutes=None,
    )
    event = render_event(appt(Kind.ACTION), ALICE, REQ, settings)
    assert event.subject == "{ACME} Logged action for Alice Smith (90 min)"
    assert event.body == "alice@example.com: Bring a fire extinguisher }{"
    assert event.reminder_minutes is None


def test_appointment_fields_are_carried() -> None:
    a = appt(Kind.MANUAL, location="Room 4", private=True, show_as="tentative", subject="Visit")
    event = render_event(a, ALICE, REQ, SETTINGS)
    assert (event.location, event.private, event.show_as) == ("Room 4", True, "tentative")
    assert event.categories == ("calhub", "Appointment")


def test_unknown_show_as_becomes_busy() -> None:
    event = render_event(appt(show_as="maybe"), ALICE, REQ, SETTINGS)
    assert event.show_as == "busy"


def test_manual_subject_replaces_request_subject() -> None:
    a = appt(Kind.MANUAL, subject="On-site visit")
    assert render_event(a, ALICE, REQ, SETTINGS).subject == "[#1042] On-site visit"
    settings = HubSettings(subject_template="{subject} / {request_subject}")
    assert render_event(a, ALICE, REQ, settings).subject == "On-site visit / On-site visit"


def test_no_request_strips_the_empty_id_prefix() -> None:
    a = appt(Kind.MANUAL, subject="Team training", request_id=None)
    event = render_event(a, ALICE, None, SETTINGS)
    assert event.subject == "Team training"


def test_missing_values_render_empty_and_never_raise() -> None:
    bare_agent = Agent(id="bob", name="")
    a = appt(Kind.PLANNED, request_id=None, note="")
    settings = HubSettings(subject_template="[#{request_id}] {customer}{agent_email}")
    event = render_event(a, bare_agent, None, settings)
    # Nothing to show at all: the kind names the entry rather than an empty title.
    assert event.subject == "Planned work"
    assert event.body == ""
    assert event.colour is None


def test_overrides_render_verbatim() -> None:
    a = appt(
        Kind.MANUAL,
        subject="Visit",
        subject_override="Moved: {not a field} [#]",
        body_override="  agent wrote this {note}  ",
    )
    event = render_event(a, ALICE, REQ, SETTINGS)
    assert event.subject == "Moved: {not a field} [#]"
    assert event.body == "  agent wrote this {note}  "


def test_external_renders_stored_content_as_is() -> None:
    a = appt(
        Kind.EXTERNAL,
        subject="Dentist",
        note="private stuff",
        location="Town",
        request_id=None,
        show_as="oof",
    )
    event = render_event(a, ALICE, None, SETTINGS)
    assert (event.subject, event.body, event.location, event.show_as) == (
        "Dentist",
        "private stuff",
        "Town",
        "oof",
    )
    assert event.categories == ()
    assert event.colour is None


def test_values_are_not_templates_themselves() -> None:
    # A note containing braces must come out literally, not be expanded again.
    event = render_event(appt(note="{agent_id} {{x}}"), ALICE, REQ, SETTINGS)
    assert event.body == "{agent_id} {{x}}"


def test_valid_templates_have_no_problems() -> None:
    assert check_template("[#{request_id}] {request_subject}") == []
    assert check_template("{{literal}} and }} {{") == []
    assert check_template("".join("{" + name + "}" for name in FIELDS)) == []


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{x.__class__}", "attribute, index, conversion and format syntax"),
        ("{note.__class__.__mro__}", "are not supported; write '{note}'"),
        ("{note[0]}", "attribute, index"),
        ("{note!r}", "attribute, index"),
        ("{note:>10}", "attribute, index"),
        ("{0}", "'{0}' is not a field name"),
        ("{}", "empty field"),
        ("{bogus}", "unknown field 'bogus'; known fields: request_id"),
        ("{note", "unbalanced '{' at position 1"),
        ("a } b", "unbalanced '}' at position 3"),
        ("{a{note}", "unbalanced '{' at position 1"),
    ],
)
def test_bad_templates_are_reported(template: str, expected: str) -> None:
    problems = check_template(template)
    assert len(problems) == 1
    assert expected in problems[0]


def test_every_problem_is_reported() -> None:
    assert len(check_template("{a} {b.c} } {")) == 4


def test_bad_syntax_renders_literally_instead_of_reaching_python() -> None:
    values = {"note": "n"}
    assert render_template("{note.__class__} {0} {note}", values) == "{note.__class__} {0} n"


@pytest.mark.parametrize(
    "template",
    ["{subject}", "#{request_id} {request_subject}", "{start} {agent_name}", "  ", "{kind}"],
)
@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("override", [None, "edited remotely"])
@pytest.mark.parametrize("request_", [None, REQ])
def test_render_subject_is_render_events_subject(
    template: str, kind: Kind, override: str | None, request_: Request | None
) -> None:
    from hub.render import render_subject

    settings = HubSettings(timezone="Europe/Paris", subject_template=template)
    entry = appt(kind, subject_override=override, request_id=request_.id if request_ else None)
    for subject in ("", "Own subject"):
        entry.subject = subject
        expected = render_event(entry, ALICE, request_, settings).subject
        assert render_subject(entry, ALICE, request_, settings) == expected
