"""A real SMTP server for the e-mail tests: aiosmtpd on 127.0.0.1 with STARTTLS or implicit
TLS (certificates from the test CA) and AUTH, recording what it accepted.

Knobs: ``refuse[address] = "550 ..."`` answers RCPT for that address with the reply given
(``450 ...`` for a temporary refusal); ``on_data`` is called with each accepted message (in the
server's thread) before its ``250``. :meth:`SmtpServer.stop` and :meth:`start` take the
server down and up on the same port.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import anyio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes.tls import TestCA

USERNAME = "calhub@example.com"
PASSWORD = "s3cret-smtp-pass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Handler:
    """The aiosmtpd handler: records messages, refuses what the test asks it to."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    on_data: Callable[[Received], None] | None = None
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        got = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        if self.on_data is not None:
            self.on_data(got)
        with self.lock:
            self.received.append(got)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on a loopback port: ``mode`` is ``starttls``, ``tls`` or ``none``."""

    def __init__(self, ca: TestCA, mode: str, *, auth: bool = True) -> None:
        self.ca = ca
        self.mode = mode
        self.auth = auth
        self.port = free_port()
        self.handler = Handler()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == USERNAME
            and auth_data.password.decode() == PASSWORD
        )
        if ok:
            self.handler.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def _controller_for(self) -> Controller:
        kwargs: dict[str, Any] = {}
        if self.auth:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        if self.mode == "starttls":
            kwargs.update(tls_context=self.ca.server_context(), require_starttls=True)
        elif self.mode == "tls":
            # aiosmtpd only counts STARTTLS as TLS for auth_require_tls, so over implicit TLS
            # it would not offer AUTH at all; the connection is TLS from the first byte. AUTH
            # is then offered, not required (aiosmtpd warns about requiring it without TLS).
            kwargs.update(
                ssl_context=self.ca.server_context(), auth_require_tls=False, auth_required=False
            )
        else:
            kwargs.update(auth_require_tls=False)
        return Controller(
            self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=5, **kwargs
        )

    def start_blocking(self) -> None:
        """Start serving (waits until the server answers): for tests without a loop."""
        self._controller = self._controller_for()
        self._controller.start()

    def stop_blocking(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.start_blocking)

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self.stop_blocking)


__all__ = ["PASSWORD", "USERNAME", "Handler", "Received", "SmtpServer", "free_port"]
