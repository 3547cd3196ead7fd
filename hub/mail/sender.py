"""The background sender: takes due outbox messages, sends them over one SMTP connection per
batch, and records what happened.

Per batch: the due messages are claimed (state ``sending``, committed), the connection is
opened, each message is sent, and its outcome committed at once: ``sent``; back to ``pending``
with a capped exponential back-off after a temporary failure (4xx, connection, TLS, login);
``failed`` after a permanent one (5xx) or after ``max_attempts`` temporary ones (about two days
with the default back-off).

Duplicates. A message is sent at least once, and at most once outside one window: between the
server's final ``250`` to DATA and the commit that records ``sent``. A process that dies in
that window (power cut, kill -9) leaves the message ``sending``; at the next start it is sent
again, with the same ``Message-ID`` (made once for the row), so the second copy is recognisably
the same message (many mail systems drop it, every client threads it as one). A stop through
SIGINT/SIGTERM lets the batch in flight finish first, so it does not open that window.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio

from hub.mail.compose import mime_message
from hub.mail.settings import EmailSettings
from hub.mail.smtp import MailError, classify, connection, tls_context
from hub.store.base import Store
from hub.store.outbox import FAILED, PENDING, SENDING, SENT, OutboxMessage

log = logging.getLogger(__name__)

ORIGIN = "mail"
SENT_RETENTION = timedelta(days=30)  # sent messages are kept this long for GET /outbox
PRUNE_EVERY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits after temporary failures: ``base * 2**(attempts - 1)`` capped at ``cap``, with up
    to ``jitter`` of it added at random; given up after ``max_attempts``."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=30)
    jitter: float = 0.1
    max_attempts: int = 100

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        wait = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return wait * (1 + rng.uniform(0, self.jitter))


class OutboxSender:
    """Sends the outbox of ``store`` through ``email``'s server (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        email: EmailSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        batch: int = 50,
        poll: float = 5.0,
    ) -> None:
        self.store = store
        self.email = email
        self.clock = clock or (lambda: datetime.now(UTC))
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.batch = batch
        self.poll = poll
        self._context: ssl.SSLContext | None = None
        self._context_ready = False
        self._wake = anyio.Event()
        self._closing = False

    # ------------------------------------------------------------------ the loop

    def wake(self) -> None:
        """Look at the outbox now (a message was written or retried)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in flight, then leave :meth:`run`."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Send until :meth:`stop`: recover messages left ``sending``, then each due batch."""
        await self.recover()
        pruned_at: datetime | None = None
        while not self._closing:
            try:
                if pruned_at is None or self.clock() - pruned_at >= PRUNE_EVERY:
                    pruned_at = self.clock()
                    await self.prune()
                await self.send_due()
            except Exception:  # a database hiccup must not end the sender for good
                log.exception("sending the outbox failed; retrying")
            wait = self.poll
            next_due = await self._next_due()
            if next_due is not None:
                wait = min(wait, max(0.0, (next_due - self.clock()).total_seconds()))
            with anyio.move_on_after(max(wait, 0.05)):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _next_due(self) -> datetime | None:
        try:
            return await self.store.next_due()
        except Exception:
            log.exception("reading the outbox failed")
            return None

    async def prune(self) -> int:
        """Forget the messages sent more than :data:`SENT_RETENTION` ago."""
        async with self.store.transaction(ORIGIN) as tx:
            gone = await tx.delete_sent_messages(self.clock() - SENT_RETENTION)
        if gone:
            log.info("outbox: forgot %d message(s) sent over %s ago", gone, SENT_RETENTION)
        return gone

    async def recover(self) -> int:
        """Messages left ``sending`` by a process that stopped mid-send become pending again
        (sent again, same Message-ID: the documented window). Returns how many."""
        stuck = await self.store.list_messages(states=(SENDING,), limit=10_000)
        if stuck:
            async with self.store.transaction(ORIGIN) as tx:
                for message in stuck:
                    await tx.put_message(message.evolve(state=PENDING, not_before=self.clock()))
            log.warning("%d e-mail(s) in flight when calhub stopped: sending again", len(stuck))
        return len(stuck)

    # ------------------------------------------------------------------ one batch

    async def send_due(self) -> int:
        """Send every message due now, in batches; returns how many were sent."""
        sent = 0
        while True:
            claimed = await self._claim()
            if not claimed:
                return sent
            sent += await self._send_batch(claimed)
            if self._closing:
                return sent

    async def _claim(self) -> list[OutboxMessage]:
        due = await self.store.due_messages(self.clock(), self.batch)
        if not due:
            return []
        claimed = []
        async with self.store.transaction(ORIGIN) as tx:
            for message in due:
                current = await tx.get_message(message.id)
                # A change may have folded into it, or an admin retried it, since the read.
                if current is not None and current.state == PENDING:
                    claimed.append(await tx.put_message(current.evolve(state=SENDING)))
        return claimed

    async def _send_batch(self, claimed: list[OutboxMessage]) -> int:
        sent = 0
        remaining = list(claimed)
        try:
            context = await self._tls()
            async with connection(self.email, context) as client:
                while remaining:
                    message = remaining[0]
                    try:
                        # Shielded: a stop must not cut a message between DATA and the
                        # commit that records it (the duplicate window).
                        with anyio.CancelScope(shield=True):
                            await client.send_message(
                                mime_message(message, self.email, self.clock()),
                                sender=self.email.sender_address,
                                recipients=[message.recipient],
                            )
                            await self._record(message, SENT, "")
                        sent += 1
                    except MailError:
                        raise
                    except Exception as exc:
                        error = classify(exc, "send")
                        await self._failed(message, error)
                        if error.temporary and not client.is_connected:
                            remaining.pop(0)
                            raise MailError(error.message, temporary=True) from None
                    remaining.pop(0)
        except MailError as exc:
            # The connection failed: every message not yet tried waits for the next attempt.
            for message in remaining:
                await self._failed(message, exc)
        return sent

    async def _tls(self) -> ssl.SSLContext | None:
        if not self._context_ready:
            self._context = await tls_context(self.email)
            self._context_ready = True
        return self._context

    async def _failed(self, message: OutboxMessage, error: MailError) -> None:
        attempts = message.attempts + 1
        if error.temporary and attempts < self.backoff.max_attempts:
            wait = self.backoff.delay(attempts, self.rng)
            log.warning(
                "e-mail %d to %s: %s (attempt %d; next in %.0f s)",
                message.id,
                message.recipient,
                error.message,
                attempts,
                wait.total_seconds(),
            )
            await self._record(message, PENDING, error.message, attempts, self.clock() + wait)
            return
        reason = error.message
        if error.temporary:
            reason = f"gave up after {attempts} attempts: {error.message}"
        log.error("e-mail %d to %s failed: %s", message.id, message.recipient, reason)
        await self._record(message, FAILED, reason, attempts)

    async def _record(
        self,
        message: OutboxMessage,
        state: str,
        error: str,
        attempts: int | None = None,
        not_before: datetime | None = None,
    ) -> None:
        changes: dict[str, object] = {"state": state, "last_error": error}
        if attempts is not None:
            changes["attempts"] = attempts
        if not_before is not None:
            changes["not_before"] = not_before
        if state == SENT:
            changes["sent_at"] = self.clock()
            changes["attempts"] = message.attempts + 1
        async with self.store.transaction(ORIGIN) as tx:
            await tx.put_message(message.evolve(**changes))


async def retry_message(
    store: Store, message_id: int, now: datetime
) -> tuple[OutboxMessage | None, str]:
    """Make a failed (or waiting) message due now: ``POST /outbox/{id}/retry``. Returns the
    message and "", or the message (None: unknown) and why not (``missing``, ``sent``,
    ``sending``)."""
    async with store.transaction(ORIGIN) as tx:
        message = await tx.get_message(message_id)
        if message is None:
            return None, "missing"
        if message.state in (SENT, SENDING):
            return message, message.state
        # A fresh count of attempts: the admin fixed what made it fail.
        stored = await tx.put_message(message.evolve(state=PENDING, not_before=now, attempts=0))
    return stored, ""


__all__ = ["ORIGIN", "Backoff", "OutboxSender", "retry_message"]
