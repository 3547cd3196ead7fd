"""Graph event JSON <-> EventData: exact round trips, Windows zones, what Outlook writes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from hub.spec import EventData
from plugins.graph365.mapping import (
    HUB_ID_PROPERTY,
    MappingError,
    event_body,
    hub_id_filter,
    remote_event,
    transaction_id,
)
from plugins.graph365.timezones import to_iana

START = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
END = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def as_read(written: dict, **extra: object) -> dict:
    """What Graph returns for a written body (UTC preferred), with an id and an etag."""
    read = {k: v for k, v in written.items() if k not in ("transactionId",)}
    read.update({"id": "AAMk1", "@odata.etag": 'W/"ck1"'}, **extra)
    return read


@pytest.mark.parametrize(
    "data",
    [
        EventData(
            "Visit",
            START,
            END,
            body="Toner\nthen test",
            location="3.14",
            private=True,
            reminder_minutes=15,
            categories=("calhub", "Planned"),
            colour="#3A87AD",
        ),
        EventData("Training", date(2026, 11, 25), date(2026, 11, 27), show_as="oof"),
        EventData("Quiet", START, END, show_as="free", reminder_minutes=None),
    ],
)
def test_what_is_written_reads_back_with_the_same_hash(data: EventData) -> None:
    body = event_body(data, "hub-1")
    assert "attendees" not in body
    assert body["start"]["timeZone"] == "UTC"
    back = remote_event(as_read(body))
    assert back.data.content_hash() == data.content_hash()


def test_create_carries_transaction_id_and_hub_property_update_does_not() -> None:
    data = EventData("Visit", START, END)
    create, update = event_body(data, "hub-7"), event_body(data)
    assert create["transactionId"] == transaction_id("hub-7") == transaction_id("hub-7")
    assert transaction_id("hub-8") != transaction_id("hub-7")
    assert create["singleValueExtendedProperties"] == [{"id": HUB_ID_PROPERTY, "value": "hub-7"}]
    assert "transactionId" not in update and "singleValueExtendedProperties" not in update


def test_windows_time_zone_is_understood_when_reading() -> None:
    obj = {
        "id": "x", "changeKey": "ck", "subject": "Call", "isAllDay": False,
        "start": {"dateTime": "2026-07-01T09:00:00.0000000", "timeZone": "Pacific Standard Time"},
        "end": {"dateTime": "2026-07-01T09:30:00.0000000", "timeZone": "Pacific Standard Time"},
        "originalStartTimeZone": "W. Europe Standard Time", "seriesMasterId": "AAMkseries",
    }  # fmt: skip
    event = remote_event(obj)
    assert event.series_id == "AAMkseries"  # an occurrence of a recurring meeting
    assert event.data.start == datetime(2026, 7, 1, 16, 0, tzinfo=UTC)  # PDT is UTC-7
    assert event.data.timezone == "Europe/Berlin"
    assert event.version == "ck"


def test_time_zone_table_and_fallback() -> None:
    assert to_iana("Eastern Standard Time") == "America/New_York"
    assert to_iana("Europe/Paris") == "Europe/Paris"  # already IANA
    assert to_iana("Mars Standard Time") is None
    assert to_iana("") is None


def test_unknown_zone_is_a_mapping_error_naming_the_field() -> None:
    obj = {
        "id": "x",
        "changeKey": "ck",
        "start": {"dateTime": "2026-07-01T09:00:00", "timeZone": "Mars Standard Time"},
        "end": {"dateTime": "2026-07-01T10:00:00"},
    }
    with pytest.raises(MappingError, match="start: unknown time zone 'Mars Standard Time'"):
        remote_event(obj)


def test_outlook_html_body_and_confidential_sensitivity() -> None:
    obj = as_read(
        event_body(EventData("Visit", START, END)),
        body={"contentType": "html", "content": "<html><body><p>Bring &amp; test</p>"
              "<div>line two<br>three</div></body></html>"},
        sensitivity="confidential", showAs="workingElsewhere",
    )  # fmt: skip
    data = remote_event(obj).data
    assert data.body == "Bring & test\nline two\nthree"
    assert data.private is True
    assert data.show_as == "busy"


def test_hub_id_filter_is_the_documented_any_query_with_escaped_quotes() -> None:
    assert hub_id_filter("o'brien") == (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{HUB_ID_PROPERTY}'"
        " and ep/value eq 'o''brien')"
    )


def test_an_event_without_id_is_refused() -> None:
    with pytest.raises(MappingError, match="without an id"):
        remote_event({"changeKey": "ck"})
