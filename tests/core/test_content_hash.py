"""The content hash of an event: its value is stored in every status row (``hub_hash``,
``remote_hash``), so it must never change for the same content, or every pair would look
changed after an upgrade. Pinned for known events, and equal to its definition (SHA-256 of
the sorted-key JSON of :meth:`EventData.canonical`) for any content."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from hub.spec import EventData

PARIS = timezone(timedelta(hours=2))

PINNED = [
    (
        EventData(
            "Visit 1",
            datetime(2026, 5, 4, 9, 0, tzinfo=UTC),
            datetime(2026, 5, 4, 9, 45, tzinfo=UTC),
            body="Replace the toner",
            reminder_minutes=15,
            categories=("calhub", "Appointment"),
            colour="#3A87AD",
        ),
        "315cf53d7bdb8a26601fdcae8096067f",
    ),
    (
        EventData("Holiday", date(2026, 8, 1), date(2026, 8, 15), show_as="oof"),
        "132a488aa9ef2f25434a8a460f335edf",
    ),
    (
        EventData(
            '  "Réunion" \\ café\t ',
            datetime(2026, 5, 4, 11, 30, 15, 123456, tzinfo=PARIS),
            datetime(2026, 5, 4, 12, 30),  # naive: UTC
            body="line 1\r\nline 2 ✓\x01\n",
            location=" Salle 2 ",
            private=True,
            show_as="tentative",
            categories=("b", "a", "ü"),
            timezone="Europe/Paris",
        ),
        "022151adcbf3bafde995361dc5655a17",
    ),
    (  # strftime writes a year below 1000 unpadded: "999-01-01T00:00:00Z"
        EventData("Ancient", datetime(999, 1, 1, tzinfo=UTC), datetime(999, 1, 1, 1, tzinfo=UTC)),
        "5c11b4dcadc84fa1c493efc5548badcc",
    ),
]


def test_known_events_keep_their_hash() -> None:
    assert [data.content_hash() for data, _ in PINNED] == [digest for _, digest in PINNED]


def _definition(data: EventData) -> str:
    blob = json.dumps(data.canonical(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_instants = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 30),
    timezones=st.sampled_from([None, PARIS, timezone(timedelta(hours=-5))]),
)


@given(
    subject=_text,
    times=st.tuples(_instants, _instants) | st.tuples(st.dates(), st.dates()),
    body=_text,
    location=_text,
    private=st.booleans(),
    show_as=st.sampled_from(["busy", "free", "tentative", "oof"]),
    reminder=st.none() | st.integers(-(2**40), 2**40),
    categories=st.lists(_text, max_size=3).map(tuple),
    colour=st.none() | _text,
)
def test_hash_is_its_definition_for_any_content(
    subject: str,
    times: tuple[datetime | date, datetime | date],
    body: str,
    location: str,
    private: bool,
    show_as: str,
    reminder: int | None,
    categories: tuple[str, ...],
    colour: str | None,
) -> None:
    data = EventData(
        subject, times[0], times[1], body=body, location=location, private=private,
        show_as=show_as, reminder_minutes=reminder, categories=categories,  # type: ignore[arg-type]
        colour=colour,
    )  # fmt: skip
    assert data.content_hash() == _definition(data)
