"""The object-model adapter (plugins.mapi.outlook) against the fake Outlook, in process: the
parts of Outlook's object model the conformance suite does not reach."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.spec import (
    AuthError,
    CalendarRef,
    EventData,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    PushItem,
    PushResult,
    TransientError,
    Window,
)
from plugins.mapi import outlook
from plugins.mapi.outlook import OutlookSession, dasl_window, provider_error
from tests.fakes.outlook import STATE_ENV, Application, OutlookBackdoor, com_error, outlook_error

CAL = CalendarRef("alice", "alice@example.com")
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60))


@pytest.fixture
def backdoor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OutlookBackdoor:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "outlook.json"))
    door = OutlookBackdoor(tmp_path / "outlook.json")
    door.file.reset()
    return door


@pytest.fixture
def session(backdoor: OutlookBackdoor) -> Iterator[OutlookSession]:
    opened = OutlookSession(Application, None)
    opened.open()
    yield opened
    opened.close()


def event(start: datetime, subject: str = "Printer", **kw: object) -> EventData:
    return EventData(subject, start, start + timedelta(hours=1), **kw)  # type: ignore[arg-type]


def create(session: OutlookSession, hub_id: str, data: EventData) -> PushResult:
    (outcome,) = session.push("", [PushItem(hub_id, data)])
    assert isinstance(outcome, PushResult), outcome
    return outcome


def test_times_are_written_and_read_in_utc_not_local(
    session: OutlookSession, backdoor: OutlookBackdoor
) -> None:
    created = create(session, "hub-1", event(NOW + timedelta(days=1)))
    row = backdoor.item(created.remote_id)
    # The fake's user lives in Berlin: Start would be an hour or two off.
    assert datetime.fromisoformat(row["start_utc"]) == (NOW + timedelta(days=1)).replace(
        tzinfo=None
    )
    assert session.get("", created.remote_id).data.start == NOW + timedelta(days=1)


def test_the_window_filter_is_dasl_in_utc_minutes() -> None:
    text = dasl_window(Window(datetime(2026, 5, 1, 8, 0, 30, tzinfo=UTC), NOW))
    assert text.startswith('@SQL="urn:schemas:calendar:dtstart" < ')
    assert "'2026-05-01 08:00'" in text  # seconds dropped: Outlook reads minutes only


def test_recurring_series_come_as_occurrences(
    session: OutlookSession, backdoor: OutlookBackdoor
) -> None:
    master = backdoor.create_series(event(NOW + timedelta(days=1), "Stand-up"), count=3)
    listed = session.fetch("", WINDOW)
    assert len(listed.changed) == 3
    assert {e.series_id for e in listed.changed} == {master}
    assert len({e.remote_id for e in listed.changed}) == 3
    assert all(e.hub_id is None for e in listed.changed)
    second = listed.changed[1]
    assert second.data.start == NOW + timedelta(days=2)
    assert session.get("", second.remote_id).data.start == NOW + timedelta(days=2)
    item = PushItem("hub-x", event(NOW), second.remote_id, second.version)
    (outcome,) = session.push("", [item])
    assert isinstance(outcome, PermanentError)


def test_an_edit_in_outlook_between_fetch_and_write_is_a_failed_precondition(
    session: OutlookSession, backdoor: OutlookBackdoor
) -> None:
    created = create(session, "hub-2", event(NOW))
    fetched = session.get("", created.remote_id)
    backdoor_edit = event(NOW + timedelta(hours=2), "Moved in Outlook")
    asyncio.run(backdoor.edit(CAL, created.remote_id, backdoor_edit))
    item = PushItem("hub-2", event(NOW, "Hub edit"), created.remote_id, fetched.version)
    (outcome,) = session.push("", [item])
    assert isinstance(outcome, PreconditionFailed)
    with pytest.raises(PreconditionFailed):
        session.delete("", created.remote_id, fetched.version)
    assert session.get("", created.remote_id).data.subject == "Moved in Outlook"


def test_a_store_without_change_keys_versions_by_modification_time(
    session: OutlookSession, backdoor: OutlookBackdoor
) -> None:
    backdoor.knobs(pst=True)
    created = create(session, "hub-pst", event(NOW))
    assert created.version.startswith("lm:")
    assert session.get("", created.remote_id).version == created.version


def test_busy_outlook_is_transient_with_a_retry_time(
    session: OutlookSession, backdoor: OutlookBackdoor
) -> None:
    backdoor.knobs(busy=1)
    with pytest.raises(TransientError, match="Outlook is busy") as caught:
        session.fetch("", WINDOW)
    assert caught.value.retry_after
    assert session.fetch("", WINDOW).full  # the next call goes through


def test_an_item_that_vanishes_before_its_save_is_not_found(
    session: OutlookSession, backdoor: OutlookBackdoor
) -> None:
    created = create(session, "hub-3", event(NOW))
    backdoor.knobs(vanish=[created.remote_id])
    item = PushItem("hub-3", event(NOW, "Edit"), created.remote_id, created.version)
    (outcome,) = session.push("", [item])
    assert isinstance(outcome, NotFoundError), outcome


def test_a_deleted_item_in_deleted_items_is_not_found(session: OutlookSession) -> None:
    created = create(session, "hub-4", event(NOW))
    session.delete("", created.remote_id, created.version)
    with pytest.raises(NotFoundError):
        session.get("", created.remote_id)
    assert session.find("", ["hub-4"]) == {}


def test_a_lost_session_is_an_auth_error(
    session: OutlookSession, backdoor: OutlookBackdoor
) -> None:
    backdoor.knobs(session_lost=True)
    with pytest.raises(AuthError, match="MAPI session"):
        session.fetch("", WINDOW)


def test_appointments_stay_appointments(session: OutlookSession, backdoor: OutlookBackdoor) -> None:
    data = event(
        NOW,
        "Visit",
        private=True,
        show_as="oof",
        reminder_minutes=30,
        categories=("Helpdesk", "Red"),
    )
    created = create(session, "hub-5", data)
    row = backdoor.item(created.remote_id)
    assert (row["meeting_status"], row["sensitivity"], row["busy"]) == (0, 2, 3)
    assert row["categories"] == "Helpdesk, Red"
    assert (row["reminder_set"], row["reminder_minutes"]) == (True, 30)
    assert backdoor.read("sent") == 0 and backdoor.read("recipients_added") == 0
    got = session.get("", created.remote_id).data
    assert (got.private, got.show_as, got.reminder_minutes) == (True, "oof", 30)


def test_only_the_default_calendar_is_served(session: OutlookSession) -> None:
    with pytest.raises(NotFoundError, match="default calendar"):
        session.fetch("Team", WINDOW)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (com_error(outlook.RPC_E_CALL_REJECTED, "Call was rejected by callee."), TransientError),
        (outlook_error(outlook.MAPI_E_NOT_FOUND, "not found"), NotFoundError),
        (outlook_error(outlook.MAPI_E_OBJECT_CHANGED, "changed"), PreconditionFailed),
        (outlook_error(outlook.MAPI_E_END_OF_SESSION, "ended"), AuthError),
        (
            com_error(outlook.RPC_S_SERVER_UNAVAILABLE, "The RPC server is unavailable."),
            TransientError,
        ),
        (outlook_error(outlook.DISP_E_EXCEPTION, "Cannot parse condition."), PermanentError),
        (ValueError("a bug"), PermanentError),
    ],
)
def test_com_errors_map_to_the_contract(error: Exception, expected: type) -> None:
    mapped = provider_error(error, "testing")
    assert type(mapped) is expected
    assert "testing" in mapped.message
