"""The one status-to-error mapping, Retry-After parsing, and the cursor codec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.plugins import load_plugins
from hub.spec import (
    AccountConfig,
    AuthError,
    CursorInvalid,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    TransientError,
    Window,
)
from plugins.caldav.cursor import Cursor
from plugins.caldav.errors import error_for, retry_after
from plugins.caldav.provider import CalDAVProvider


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None), (207, None), (401, AuthError), (403, AuthError), (404, NotFoundError),
        (410, NotFoundError), (412, PreconditionFailed), (400, PermanentError),
        (415, PermanentError), (507, PermanentError), (429, TransientError),
        (500, TransientError), (501, TransientError), (503, TransientError),
        (504, TransientError),
    ],
)  # fmt: skip
def test_status_mapping(status: int, kind: type | None) -> None:
    error = error_for(status, {}, operation="PUT", resource="/c/x.ics", item="h1")
    if kind is None:
        assert error is None
    else:
        assert type(error) is kind
        assert error is not None and error.item == "h1" and "/c/x.ics" in str(error)


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert retry_after({"Retry-After": "30"}) == 30.0
    assert retry_after({"Retry-After": "Mon, 23 Nov 2026 12:01:30 GMT"}, now) == 90.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    error = error_for(503, {"Retry-After": "12"}, operation="GET", resource="/c/")
    assert isinstance(error, TransientError) and error.retry_after == 12.0


def test_cursor_round_trip() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    cursor = Cursor(
        "etag", "https://dav.example.com/alice/cal/", Window(start, start + timedelta(days=60)),
        ctag="3145", etags={"/alice/cal/a.ics": '"1"'},
        series={"/alice/cal/s.ics": ["20261101T090000Z"]},
    )  # fmt: skip
    assert Cursor.decode(cursor.encode()) == cursor
    assert cursor.encode() == Cursor.decode(cursor.encode()).encode()  # unchanged stays equal


@pytest.mark.parametrize("text", ["", "graph-delta-link", "caldav1:!!!", "caldav1:eJwDAAAAAAE="])
def test_a_foreign_or_damaged_cursor_is_invalid(text: str) -> None:
    with pytest.raises(CursorInvalid):
        Cursor.decode(text)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"url": "dav.example.com"}, "accounts.dav.url"),
        ({"url": "https://dav.example.com/", "timezone": "Mars/Olympus"}, "accounts.dav.timezone"),
        ({"url": "https://dav.example.com/", "ca_file": "/no/such/ca.pem"}, "accounts.dav.ca_file"),
    ],
)
def test_unusable_options_are_refused_naming_the_key(options: dict[str, str], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        CalDAVProvider(AccountConfig("dav", "caldav", options))


def test_the_plugin_registers_through_the_entry_point() -> None:
    plugins = load_plugins(env={"CALHUB_PLUGINS": "caldav"})
    assert plugins.errors == []
    assert plugins.registry.get("caldav") is CalDAVProvider
    keys = {o.key for o in CalDAVProvider.options}
    assert {"url", "username", "password", "token", "ca_file", "verify_tls"} <= keys
    assert {o.key for o in CalDAVProvider.options if o.secret} == {"password", "token"}
