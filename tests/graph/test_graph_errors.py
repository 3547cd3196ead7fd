"""Every Graph failure maps to one hub error, the same inside and outside $batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from hub.spec import (
    AuthError,
    CursorInvalid,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    TransientError,
)
from plugins.graph365.errors import error_for, error_for_exception, retry_after


def body(code: str) -> dict:
    return {"error": {"code": code, "message": "m"}}


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (410, "", CursorInvalid),
        (400, "syncStateNotFound", CursorInvalid),
        (400, "resyncRequired", CursorInvalid),
        (412, "ErrorIrresolvableConflict", PreconditionFailed),
        (409, "ErrorIrresolvableConflict", PreconditionFailed),
        (429, "ApplicationThrottled", TransientError),
        (503, "ServiceUnavailable", TransientError),
        (504, "GatewayTimeout", TransientError),
        (424, "FailedDependency", TransientError),
        (401, "InvalidAuthenticationToken", AuthError),
        (403, "ErrorAccessDenied", AuthError),
        (404, "ErrorInvalidUser", AuthError),
        (404, "ErrorItemNotFound", NotFoundError),
        (400, "ErrorInvalidRequest", PermanentError),
    ],
)
def test_status_and_code_map_to_one_hub_error(
    status: int, code: str, expected: type[ProviderError]
) -> None:
    err = error_for(status, {}, body(code), mailbox="a@x", item="h1")
    assert type(err) is expected
    assert err.item == "h1"
    assert str(status) in err.message


def test_mailbox_errors_name_the_mailbox_account_errors_do_not() -> None:
    denied = error_for(403, {}, body("ErrorAccessDenied"), mailbox="a@x")
    revoked = error_for(401, {}, body("InvalidAuthenticationToken"), mailbox="a@x")
    assert isinstance(denied, AuthError) and denied.mailbox == "a@x"
    assert isinstance(revoked, AuthError) and revoked.mailbox is None


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= (retry_after({"retry-after": format_datetime(later, usegmt=True)}) or 0) <= 31
    assert retry_after({}) is None
    err = error_for(429, {"Retry-After": "12"}, body("ApplicationThrottled"))
    assert isinstance(err, TransientError) and err.retry_after == 12.0


def test_entra_id_error_shape_is_read() -> None:
    err = error_for(401, {}, {"error": "invalid_client", "error_description": "AADSTS7000215: x"})
    assert isinstance(err, AuthError) and "AADSTS7000215" in err.message


def test_library_exceptions_become_hub_errors() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    assert isinstance(error_for_exception(httpx.ConnectError("refused"), what="w"), TransientError)
    assert isinstance(
        error_for_exception(ClientAuthenticationError("bad secret"), what="w"), AuthError
    )
    assert isinstance(error_for_exception(RuntimeError("odd"), what="w"), PermanentError)
