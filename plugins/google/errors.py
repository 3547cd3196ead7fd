"""The one place where Google Calendar and OAuth failures become :mod:`hub.spec` errors.

A top-level response and a batch part's response go through :func:`error_for`, so a 412 means
the same whether or not it came in a batch. Google's error body is
``{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}``; the reason
decides what a 403 is: ``rateLimitExceeded``/``userRateLimitExceeded`` are quota (transient,
retried with back-off), ``forbidden``/``insufficientPermissions`` refused access (that agent
needs attention). The token endpoint answers ``{"error": "invalid_grant", ...}`` instead.
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
    retry_after_seconds,
)

_QUOTA_REASONS = {
    "ratelimitexceeded",
    "userratelimitexceeded",
    "quotaexceeded",
    "backenderror",
}
# Seconds to wait on a quota answer without Retry-After (Google's guide: exponential
# back-off from about one second; the engine's capped back-off doubles from there).
QUOTA_BACKOFF_S = 1.0


def reason_of(body: Any) -> tuple[str, str]:
    """(reason, message) of a Google error body; empty strings when it has none."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        reasons = [
            str(e.get("reason") or "") for e in err.get("errors") or () if isinstance(e, dict)
        ]
        return (reasons[0] if reasons else ""), str(err.get("message") or "")
    if isinstance(err, str):  # the OAuth token endpoint's shape
        return err, str(body.get("error_description") or "")
    return "", ""


def error_for(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    mailbox: str | None = None,
    item: str | None = None,
) -> ProviderError:
    """The hub error for one failed Calendar API response (``status`` >= 400)."""
    reason, message = reason_of(body)
    text = f"Google {status} {reason}: {message}".strip().rstrip(":")
    lowered = reason.lower()
    if status == 410 and lowered in ("fullsyncrequired", "updatedmintoolongago"):
        return CursorInvalid(text, item=item)
    if status == 410:  # "Resource has been deleted"
        return NotFoundError(text, item=item)
    if status == 412:
        return PreconditionFailed(text, item=item)
    if status == 429 or (status == 403 and lowered in _QUOTA_REASONS):
        return TransientError(
            text, retry_after=retry_after_seconds(headers) or QUOTA_BACKOFF_S, item=item
        )
    if status in (401, 403):
        # One user's delegation or consent refused: that agent needs attention, not all.
        return AuthError(text, mailbox=mailbox, item=item)
    if status == 404:
        return NotFoundError(text, item=item)
    if status in (408, 500, 502, 503, 504) or status >= 500:
        return TransientError(text, retry_after=retry_after_seconds(headers), item=item)
    return PermanentError(text, item=item)
