"""The one place where EWS failures (:class:`records.EwsFault`) become :mod:`hub.spec` errors.

A SOAP fault, a per-item ResponseCode inside a batch and a transport failure all arrive as an
``EwsFault`` with a code, so ErrorIrresolvableConflict means the same thing in a batch of 50
as alone. Codes are EWS ResponseCodes, plus the adapter's transport kinds (``Unauthorized``,
``TLS``, ``Connection``, ``HTTP503``).
"""

from __future__ import annotations

from hub.spec import (
    AuthError,
    CursorInvalid,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    TransientError,
)
from plugins.exchange_ews.records import EwsFault

_TRANSIENT = {
    "ErrorServerBusy",
    "ErrorInternalServerTransientError",
    "ErrorTimeoutExpired",
    "ErrorTooManyObjectsOpened",
    "ErrorMailboxStoreUnavailable",
    "ErrorMailboxMoveInProgress",
    "ErrorConnectionFailed",
    "ErrorExceededConnectionCount",
    "ErrorInternalServerError",
    "Connection",
    "HTTP503",
}
# Refused for one mailbox: the impersonation scope, a mailbox that does not exist. The other
# agents of the account keep syncing.
_MAILBOX = {
    "ErrorNonExistentMailbox",
    "ErrorImpersonateUserDenied",
    "ErrorImpersonationDenied",
    "ErrorAccessDenied",
    "ErrorMailboxConfiguration",
    "ErrorInvalidSmtpAddress",
}
_ACCOUNT = {"Unauthorized", "TLS", "ErrorInvalidLicense"}
_NOT_FOUND = {
    "ErrorItemNotFound",
    "ErrorFolderNotFound",
    "ErrorInvalidIdMalformed",
    "ErrorInvalidIdNotAnItemAttachmentId",
    "ErrorCalendarOccurrenceIsDeletedFromRecurrence",
}
_PRECONDITION = {"ErrorIrresolvableConflict", "ErrorChangeKeyRequiredForWriteOperations"}
_CURSOR = {"ErrorInvalidSyncStateData", "ErrorSyncFolderNotFound"}


def error_for(
    fault: EwsFault, *, mailbox: str | None = None, item: str | None = None
) -> ProviderError:
    """The hub error for one EWS failure."""
    text = f"EWS {fault}"
    code = fault.code
    if code in _TRANSIENT:
        return TransientError(text, retry_after=fault.back_off, item=item)
    if code in _MAILBOX:
        return AuthError(text, mailbox=mailbox, item=item)
    if code in _ACCOUNT:
        return AuthError(text, item=item)
    if code in _NOT_FOUND:
        return NotFoundError(text, item=item)
    if code in _PRECONDITION:
        return PreconditionFailed(text, item=item)
    if code in _CURSOR:
        return CursorInvalid(text, item=item)
    return PermanentError(text, item=item)
