"""The SMTP client: one aiosmtplib connection as ``[email]`` says (STARTTLS, implicit TLS, or
none on loopback), authenticated, and the mapping of its failures to :class:`MailError`.

Failures are *temporary* (retry later with back-off) or *permanent* (the server refused this
message for good: give up and record it). A 4xx reply, a connection, TLS or timeout failure,
and a refused login are temporary: the last two concern every message, not this one, and clear
up once the relay or the credentials are fixed. A 5xx reply to MAIL, RCPT or DATA is permanent.
The password is handed to aiosmtplib only; no message here contains it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosmtplib
import anyio

from hub.mail.settings import EmailSettings, Security
from hub.spec import ca_bundle_context


class MailError(Exception):
    """A failure to send, meant for the outbox's ``last_error`` and the operator."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary


async def tls_context(email: EmailSettings) -> ssl.SSLContext | None:
    """The TLS context of the connection (``ca_file``: that bundle only), None for
    ``security = "none"``. Reads files: in a worker thread."""
    if email.security is Security.NONE:
        return None
    if email.ca_file:
        try:
            return await anyio.to_thread.run_sync(ca_bundle_context, email.ca_file)
        except ValueError as exc:
            raise MailError(f"email.ca_file: {exc}", temporary=True) from None
    return await anyio.to_thread.run_sync(ssl.create_default_context)


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {' '.join(str(exc.message).split())}"


def classify(exc: BaseException, stage: str) -> MailError:
    """The :class:`MailError` of an aiosmtplib (or socket) failure during ``stage``."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.recipient}: {_reply(r)}" for r in exc.recipients)
        return MailError(f"recipient refused: {text}", temporary=any(c < 500 for c in codes))
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return MailError(f"authentication refused: {_reply(exc)}", temporary=True)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
        return MailError(f"{stage}: {exc}", temporary=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        temporary = exc.code < 500 or stage in ("connect", "tls", "login")
        return MailError(f"{stage}: server replied {_reply(exc)}", temporary=temporary)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return MailError(f"{stage}: TLS failed: {exc}", temporary=True)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return MailError(f"{stage}: {reason}", temporary=True)
    raise exc


@asynccontextmanager
async def connection(
    email: EmailSettings, context: ssl.SSLContext | None
) -> AsyncIterator[aiosmtplib.SMTP]:
    """A connected, TLS-protected (as configured) and logged-in client; QUIT at the end.
    Raises :class:`MailError` when any of that fails."""
    client = aiosmtplib.SMTP(
        hostname=email.host,
        port=email.port,
        use_tls=email.security is Security.TLS,
        start_tls=False,  # STARTTLS below, explicitly: never silently without it
        tls_context=context,
        timeout=email.timeout,
    )
    stage = "connect"
    try:
        await client.connect()
        if email.security is Security.STARTTLS:
            stage = "tls"
            await client.starttls(tls_context=context)
        if email.username:
            stage = "login"
            await client.login(email.username, email.password or "")
    except Exception as exc:
        _drop(client)
        raise classify(exc, stage) from None
    try:
        yield client
    finally:
        if client.is_connected:
            try:
                with anyio.fail_after(email.timeout):
                    await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                _drop(client)


def _drop(client: aiosmtplib.SMTP) -> None:
    """Close the connection at once. A plain close() of a TLS connection starts a TLS shutdown
    that a short-lived loop (``calhub check email``) may end before it finishes, leaving the
    socket open for the garbage collector; after a failure there is nothing left to say."""
    transport = client.transport
    if transport is not None:
        transport.abort()
    client.close()


def describe_tls(client: aiosmtplib.SMTP) -> str:
    """``TLSv1.3`` or ``no TLS``: what the connection negotiated."""
    transport = client.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object.version() if ssl_object is not None else "no TLS"


__all__ = ["MailError", "classify", "connection", "describe_tls", "tls_context"]
