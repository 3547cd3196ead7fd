"""The one place that maps CalDAV/HTTP outcomes to the hub's error classes.

Every request in this plugin goes through :func:`error_for`, so a status means the same thing
whichever operation met it. Messages name the operation and the resource, never event content
(a private event's summary must not reach a log or an error).
"""

from __future__ import annotations

from collections.abc import Mapping

from hub.spec import (
    AuthError,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    TransientError,
)
from hub.spec import retry_after_seconds as retry_after

# Statuses that say "try again later" rather than "this request is wrong" (423 Locked: a
# concurrent write holds the resource; Xandikos answers it to overlapping PUTs).
_TRANSIENT = {408, 423, 425, 429, 500, 502, 503, 504}


def error_for(
    status: int,
    headers: Mapping[str, str],
    *,
    operation: str,
    resource: str,
    item: str | None = None,
) -> ProviderError | None:
    """The hub error for an HTTP ``status`` of ``operation`` on ``resource``; None for 2xx/3xx.

    ``item`` is the remote or hub id the error is about (for per-item push outcomes).
    """
    if status < 400:
        return None
    what = f"{operation} {resource}: HTTP {status}"
    if status == 401:
        return AuthError(f"{what} (credentials refused)", item=item)
    if status == 403:
        return AuthError(f"{what} (access denied)", item=item)
    if status in (404, 410):
        return NotFoundError(f"{what} (not found)", item=item)
    if status == 412:
        return PreconditionFailed(f"{what} (changed on the server since it was read)", item=item)
    if status == 507:
        return PermanentError(f"{what} (insufficient storage on the server)", item=item)
    if status in _TRANSIENT:
        return TransientError(what, retry_after=retry_after(headers), item=item)
    if status >= 500:
        return TransientError(what, item=item)
    return PermanentError(f"{what} (refused by the server)", item=item)


def raise_for(
    status: int,
    headers: Mapping[str, str],
    *,
    operation: str,
    resource: str,
    item: str | None = None,
) -> None:
    """Raise :func:`error_for`'s error, if any."""
    error = error_for(status, headers, operation=operation, resource=resource, item=item)
    if error is not None:
        raise error
