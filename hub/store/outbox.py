"""The outbox: e-mails (appointment copies, alerts) waiting to be sent, and attention marks.

A message is written in the same transaction as the change that caused it, then sent by
:class:`hub.mail.sender.OutboxSender`. States of a message:

``pending``
    waiting for ``not_before`` (the debounce, or the back-off after a temporary failure);
    a later change of the same appointment for the same recipient folds into it;
``sending``
    claimed by the sender (committed before SMTP starts); a row found in this state at
    start-up was in flight when the process stopped and is sent again, with the same
    ``Message-ID``;
``sent``
    the server accepted it; ``failed``: the server refused it for good (5xx) or the sender
    gave up; ``POST /outbox/{id}/retry`` makes a failed message pending again.

An *attention mark* records the "needs attention" state last alerted for one subject
(``agent:ID`` or ``account:NAME``), so that an alert goes out once per change of state, also
across restarts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
STATES = (PENDING, SENDING, SENT, FAILED)


@dataclass(slots=True)
class OutboxMessage:
    """One e-mail to one recipient; ``id`` is 0 until stored."""

    kind: str  # created | moved | resized | updated | reassigned | cancelled | attention | ...
    recipient: str
    subject: str
    text: str
    html: str
    not_before: datetime
    message_id: str  # the Message-ID header, made once when the row is written
    ics: str = ""  # the .ics attachment (empty for alerts)
    appointment_id: str | None = None
    agent_id: str | None = None
    state: str = PENDING
    attempts: int = 0
    last_error: str = ""
    id: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    sent_at: datetime | None = None

    def evolve(self, **changes: Any) -> OutboxMessage:
        return replace(self, **changes)


@dataclass(slots=True)
class AttentionMark:
    """The attention state last alerted for ``subject`` (``agent:ID`` or ``account:NAME``)."""

    subject: str
    needs_attention: bool
    reason: str = ""
    changed_at: datetime | None = None


class OutboxWrites(ABC):
    """Outbox writes of a transaction (:class:`hub.store.base.Tx` includes them)."""

    @abstractmethod
    async def add_message(self, message: OutboxMessage) -> OutboxMessage:
        """Insert a message; returns it with its ``id`` and timestamps."""

    @abstractmethod
    async def put_message(self, message: OutboxMessage) -> OutboxMessage:
        """Replace the stored message of ``message.id`` (KeyError when unknown)."""

    @abstractmethod
    async def delete_message(self, message_id: int) -> None:
        """Forget a message that was never sent (a creation cancelled within the debounce)."""

    @abstractmethod
    async def get_message(self, message_id: int) -> OutboxMessage | None: ...

    @abstractmethod
    async def delete_sent_messages(self, before: datetime) -> int:
        """Forget messages sent before ``before`` (retention); returns how many went."""

    @abstractmethod
    async def pending_message_for(
        self, appointment_id: str, recipient: str
    ) -> OutboxMessage | None:
        """The ``pending`` message about this appointment to this recipient, if any."""

    @abstractmethod
    async def get_attention(self, subject: str) -> AttentionMark | None: ...

    @abstractmethod
    async def put_attention(self, mark: AttentionMark) -> None: ...

    @abstractmethod
    async def list_attention(self) -> list[AttentionMark]: ...


class OutboxReads(ABC):
    """Outbox reads of a store (:class:`hub.store.base.Store` includes them)."""

    @abstractmethod
    async def get_message(self, message_id: int) -> OutboxMessage | None: ...

    @abstractmethod
    async def list_messages(
        self, *, states: Collection[str] = (PENDING, SENDING, FAILED), limit: int = 100
    ) -> list[OutboxMessage]:
        """Messages in ``states``, oldest first."""

    @abstractmethod
    async def due_messages(self, now: datetime, limit: int = 50) -> list[OutboxMessage]:
        """``pending`` messages whose ``not_before`` has come, the earliest first."""

    @abstractmethod
    async def next_due(self) -> datetime | None:
        """The earliest ``not_before`` of the pending messages (None: nothing pending)."""

    @abstractmethod
    async def list_attention(self) -> list[AttentionMark]: ...


__all__ = [
    "FAILED",
    "PENDING",
    "SENDING",
    "SENT",
    "STATES",
    "AttentionMark",
    "OutboxMessage",
    "OutboxReads",
    "OutboxWrites",
]
