"""exchange_ews's pure parts: EWS values <-> EventData, and ResponseCodes -> hub errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.spec import (
    AuthError,
    CursorInvalid,
    EventData,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    TransientError,
)
from plugins.exchange_ews.errors import error_for
from plugins.exchange_ews.mapping import fields_for, remote_event
from plugins.exchange_ews.records import EwsFault, EwsItem, ItemRef

START = datetime(2030, 5, 6, 9, tzinfo=UTC)


def item(**kw: object) -> EwsItem:
    base: dict[str, object] = dict(
        ref=ItemRef("id", "ck"), subject="s", start=START, end=START + timedelta(hours=1),
        body="", body_is_html=False, location="", sensitivity="Normal", free_busy="Busy",
        reminder_minutes=None, categories=(), hub_id=None, timezone=None, kind="Single",
        uid="u", modified=None, folder_id="f",
    )  # fmt: skip
    return EwsItem(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sensitivity", "private"),
    [("Normal", False), ("Personal", False), ("Private", True), ("Confidential", True)],
)
def test_sensitivity_reads_as_private(sensitivity: str, private: bool) -> None:
    assert remote_event(item(sensitivity=sensitivity)).data.private is private


@pytest.mark.parametrize(
    ("free_busy", "show_as"),
    [("Free", "free"), ("Tentative", "tentative"), ("OOF", "oof"), ("WorkingElsewhere", "busy")],
)
def test_free_busy_reads_as_show_as(free_busy: str, show_as: str) -> None:
    assert remote_event(item(free_busy=free_busy)).data.show_as == show_as


def test_what_is_written_reads_back_with_the_same_content_hash() -> None:
    data = EventData(
        "Visit", START, START + timedelta(hours=1), body="b", location="3.14", private=True,
        show_as="tentative", reminder_minutes=10, categories=("Helpdesk",), colour="#3A87AD",
    )  # fmt: skip
    f = fields_for(data)
    assert (f.sensitivity, f.free_busy) == ("Private", "Tentative")
    assert f.categories == ("Helpdesk", "calhub colour #3a87ad")
    back = item(
        subject=f.subject, body=f.body, location=f.location, sensitivity=f.sensitivity,
        free_busy=f.free_busy, reminder_minutes=f.reminder_minutes, categories=f.categories,
    )  # fmt: skip
    assert remote_event(back).data.content_hash() == data.content_hash()


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("ErrorServerBusy", TransientError),
        ("HTTP503", TransientError),
        ("Connection", TransientError),
        ("ErrorImpersonateUserDenied", AuthError),
        ("ErrorNonExistentMailbox", AuthError),
        ("Unauthorized", AuthError),
        ("TLS", AuthError),
        ("ErrorItemNotFound", NotFoundError),
        ("ErrorIrresolvableConflict", PreconditionFailed),
        ("ErrorInvalidSyncStateData", CursorInvalid),
        ("ErrorCalendarEndDateIsEarlierThanStartDate", PermanentError),
    ],
)
def test_response_codes_become_hub_errors(code: str, cls: type) -> None:
    error = error_for(EwsFault(code, "text", back_off=2.5), mailbox="a@b", item="x")
    assert type(error) is cls and code in error.message and error.item == "x"


def test_back_off_becomes_retry_after_and_mailbox_errors_name_the_mailbox() -> None:
    busy = error_for(EwsFault("ErrorServerBusy", "", back_off=29.0))
    assert isinstance(busy, TransientError) and busy.retry_after == 29.0
    denied = error_for(EwsFault("ErrorImpersonateUserDenied", ""), mailbox="a@b")
    assert isinstance(denied, AuthError) and denied.mailbox == "a@b"
    refused = error_for(EwsFault("Unauthorized", ""), mailbox="a@b")
    assert isinstance(refused, AuthError) and refused.mailbox is None
