"""The one place where Graph and Entra ID failures become :mod:`hub.spec` errors.

Both a top-level HTTP response and a ``$batch`` item's response go through
:func:`error_for`, so a 412 means the same thing whether or not it came in a batch. Library
exceptions (azure-identity, httpx) go through :func:`error_for_exception`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.spec import (
    AuthError,
    CursorInvalid,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    TransientError,
)
from hub.spec import retry_after_seconds as retry_after

_CURSOR_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
_PRECONDITION_CODES = {"errorirresolvableconflict", "preconditionfailed"}
_MAILBOX_CODES = {
    "errorinvaliduser",
    "mailboxnotenabledforrestapi",
    "mailboxnotsupportedforrestapi",
}
_TRANSIENT_STATUS = {408, 423, 424, 429, 500, 502, 503, 504}


def error_for(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    mailbox: str | None = None,
    item: str | None = None,
) -> ProviderError:
    """The hub error for one failed Graph response (``status`` >= 400)."""
    code, message = _code_and_message(body)
    text = f"Graph {status} {code}: {message}".strip().rstrip(":")
    lowered = code.lower()
    if status == 410 or lowered in _CURSOR_CODES:
        return CursorInvalid(text, item=item)
    if status == 412 or lowered in _PRECONDITION_CODES:
        return PreconditionFailed(text, item=item)
    if status in _TRANSIENT_STATUS:
        return TransientError(text, retry_after=retry_after(headers), item=item)
    if status == 401:
        return AuthError(text, item=item)
    if status == 403:
        # Access to one mailbox refused (application access policy, consent): the others sync.
        return AuthError(text, mailbox=mailbox, item=item)
    if status == 404 and lowered in _MAILBOX_CODES:
        return AuthError(text, mailbox=mailbox, item=item)
    if status == 404:
        return NotFoundError(text, item=item)
    if status >= 500:
        return TransientError(text, item=item)
    return PermanentError(text, item=item)


def error_for_exception(exc: BaseException, *, what: str) -> ProviderError:
    """The hub error for a library exception raised while doing ``what``."""
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    # Imported lazily: the plugin must load without the optional extra installed.
    try:
        from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    except ImportError:  # pragma: no cover - the extra is present whenever this runs
        ClientAuthenticationError = ServiceRequestError = ()  # type: ignore[assignment,misc]
    import httpx

    if isinstance(exc, ClientAuthenticationError):
        return AuthError(f"{what}: token refused by Entra ID: {_first_line(exc)}")
    if isinstance(exc, ServiceRequestError | httpx.TransportError | TimeoutError | OSError):
        return TransientError(f"{what}: {name}: {_first_line(exc)}")
    return PermanentError(f"{what}: {name}: {_first_line(exc)}")


def _code_and_message(body: Any) -> tuple[str, str]:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("code") or ""), str(err.get("message") or "")
        if isinstance(err, str):  # Entra ID's token endpoint shape
            return err, str(body.get("error_description") or "").split("\r\n")[0]
    return "", ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
