"""``calhub check email``: connect to the ``[email]`` server, negotiate TLS and log in, like
the account checks, sending nothing; with ``--send ADDRESS``, one test message too (directly,
not through the outbox: the point is to see the server's answer now)."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.mail.compose import compose_test, mime_message
from hub.mail.copies import new_message_id
from hub.mail.settings import EmailSettings, Security, address_problem
from hub.mail.smtp import MailError, classify, connection, describe_tls, tls_context
from hub.spec import CheckItem
from hub.store.outbox import OutboxMessage


async def check_email(email: EmailSettings, send_to: str | None = None) -> list[CheckItem]:
    """What works of the ``[email]`` connection, one item per step."""
    where = f"{email.host}:{email.port}"
    if send_to is not None and (problem := address_problem(send_to)):
        return [CheckItem("send", False, f"--send: {problem}")]
    items: list[CheckItem] = []
    try:
        context = await tls_context(email)
        async with connection(email, context) as client:
            items.append(CheckItem("connect", True, where))
            tls = describe_tls(client)
            if email.security is Security.NONE:
                items.append(CheckItem("tls", True, "none (loopback relay)"))
            else:
                items.append(CheckItem("tls", True, f"{email.security}, {tls}"))
            if email.username:
                items.append(CheckItem("login", True, email.username))
            else:
                items.append(CheckItem("login", True, "no username: the relay takes mail as is"))
            if send_to is not None:
                items.append(await _send(client, email, send_to.strip()))
    except MailError as exc:
        stage = "connect" if not items else ("tls" if len(items) == 1 else "send")
        if exc.message.startswith(("tls:", "authentication", "login:")):
            stage = "tls" if exc.message.startswith("tls:") else "login"
        items.append(CheckItem(stage, False, f"{where}: {exc.message}"))
    return items


async def _send(client: object, email: EmailSettings, to: str) -> CheckItem:
    draft = compose_test(email)
    now = datetime.now(UTC)
    message = OutboxMessage(
        kind="test",
        recipient=to,
        subject=draft.subject,
        text=draft.text,
        html=draft.html,
        not_before=now,
        message_id=new_message_id(email.domain),
    )
    try:
        await client.send_message(  # type: ignore[attr-defined]
            mime_message(message, email, now), sender=email.sender_address, recipients=[to]
        )
    except Exception as exc:
        return CheckItem("send", False, classify(exc, "send").message)
    return CheckItem("send", True, f"test message to {to} accepted ({message.message_id})")


__all__ = ["check_email"]
