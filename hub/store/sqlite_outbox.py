"""The outbox of the SQLite store (:mod:`hub.store.outbox`): reads for the store and the
transaction, writes for the transaction. Mixed into :mod:`hub.store.sqlite`'s classes, which
provide ``_rows``/``_one`` (reads) and ``_run``/``_now`` (writes)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from hub.store import codec
from hub.store.outbox import PENDING, AttentionMark, OutboxMessage

MESSAGE_COLUMNS = (
    "kind",
    "recipient",
    "subject",
    "text",
    "html",
    "ics",
    "message_id",
    "appointment_id",
    "agent_id",
    "state",
    "attempts",
    "last_error",
    "not_before",
    "created_at",
    "updated_at",
    "sent_at",
)
_INSERT = "INSERT INTO outbox ({}) VALUES ({})".format(
    ", ".join(MESSAGE_COLUMNS), ", ".join(f":{c}" for c in MESSAGE_COLUMNS)
)
_UPDATE = "UPDATE outbox SET {} WHERE id = :id".format(
    ", ".join(f"{c} = :{c}" for c in MESSAGE_COLUMNS)
)
_ATTENTION_UPSERT = (
    "INSERT INTO attention_marks (subject, needs_attention, reason, changed_at)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET"
    " needs_attention = excluded.needs_attention, reason = excluded.reason,"
    " changed_at = excluded.changed_at"
)


def message_row(message: OutboxMessage) -> dict[str, Any]:
    row = {c: getattr(message, c) for c in MESSAGE_COLUMNS}
    for column in ("created_at", "updated_at", "sent_at"):
        row[column] = codec.encode_time(row[column], f"outbox {column}")
    # Fixed width, so that text order is time order for the "due now" comparison.
    row["not_before"] = codec.instant_key(message.not_before, "outbox not_before")
    row["id"] = message.id
    return row


def message_from_row(row: Mapping[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        id=int(row["id"]),
        kind=row["kind"],
        recipient=row["recipient"],
        subject=row["subject"],
        text=row["text"],
        html=row["html"],
        ics=row["ics"],
        message_id=row["message_id"],
        appointment_id=row["appointment_id"],
        agent_id=row["agent_id"],
        state=row["state"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        not_before=codec.decode_datetime(row["not_before"]),
        created_at=codec.decode_datetime(row["created_at"]),
        updated_at=codec.decode_datetime(row["updated_at"]),
        sent_at=codec.decode_datetime(row["sent_at"]),
    )


def _mark_from_row(row: Mapping[str, Any]) -> AttentionMark:
    return AttentionMark(
        subject=row["subject"],
        needs_attention=bool(row["needs_attention"]),
        reason=row["reason"],
        changed_at=codec.decode_datetime(row["changed_at"]),
    )


class OutboxQueries:
    """Reads of the outbox, through the host class's ``_rows`` (the store's reader
    connection, or the transaction's writer)."""

    async def get_message(self, message_id: int) -> OutboxMessage | None:
        rows = await self._rows("SELECT * FROM outbox WHERE id = ?", (message_id,))
        return message_from_row(rows[0]) if rows else None

    async def list_messages(
        self, *, states: Collection[str] = (PENDING, "sending", "failed"), limit: int = 100
    ) -> list[OutboxMessage]:
        wanted = sorted(set(states))
        marks = ",".join("?" * len(wanted))
        rows = await self._rows(
            f"SELECT * FROM outbox WHERE state IN ({marks}) ORDER BY id LIMIT ?",
            [*wanted, max(0, limit)],
        )
        return [message_from_row(r) for r in rows]

    async def due_messages(self, now: datetime, limit: int = 50) -> list[OutboxMessage]:
        rows = await self._rows(
            "SELECT * FROM outbox WHERE state = ? AND not_before <= ?"
            " ORDER BY not_before, id LIMIT ?",
            (PENDING, codec.instant_key(now, "now"), max(0, limit)),
        )
        return [message_from_row(r) for r in rows]

    async def next_due(self) -> datetime | None:
        rows = await self._rows("SELECT MIN(not_before) FROM outbox WHERE state = ?", (PENDING,))
        return codec.decode_datetime(rows[0][0]) if rows and rows[0][0] else None

    async def list_attention(self) -> list[AttentionMark]:
        rows = await self._rows("SELECT * FROM attention_marks ORDER BY subject")
        return [_mark_from_row(r) for r in rows]

    async def pending_message_for(
        self, appointment_id: str, recipient: str
    ) -> OutboxMessage | None:
        rows = await self._rows(
            "SELECT * FROM outbox WHERE appointment_id = ? AND recipient = ? AND state = ?"
            " ORDER BY id DESC LIMIT 1",
            (appointment_id, recipient, PENDING),
        )
        return message_from_row(rows[0]) if rows else None

    async def get_attention(self, subject: str) -> AttentionMark | None:
        rows = await self._rows("SELECT * FROM attention_marks WHERE subject = ?", (subject,))
        return _mark_from_row(rows[0]) if rows else None


class OutboxTxWrites:
    """Writes of the outbox inside one SQLite transaction, through the host class's ``_run``
    and ``_now``."""

    async def add_message(self, message: OutboxMessage) -> OutboxMessage:
        row = message_row(message)
        now = self._now()
        row["created_at"] = row["created_at"] or now
        row["updated_at"] = now
        cursor = await self._run(_INSERT, row)
        row["id"] = cursor.lastrowid
        return message_from_row(row)

    async def put_message(self, message: OutboxMessage) -> OutboxMessage:
        row = message_row(message)
        row["updated_at"] = self._now()
        cursor = await self._run(_UPDATE, row)
        if cursor.rowcount == 0:
            raise KeyError(message.id)
        return message_from_row(row)

    async def delete_message(self, message_id: int) -> None:
        await self._run("DELETE FROM outbox WHERE id = ?", (message_id,))

    async def delete_sent_messages(self, before: datetime) -> int:
        cursor = await self._run(
            "DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?",
            (codec.encode_time(before, "before"),),
        )
        return int(cursor.rowcount)

    async def put_attention(self, mark: AttentionMark) -> None:
        changed = codec.encode_time(mark.changed_at, "changed_at") if mark.changed_at else None
        await self._run(
            _ATTENTION_UPSERT,
            (mark.subject, int(mark.needs_attention), mark.reason, changed or self._now()),
        )


__all__ = ["OutboxQueries", "OutboxTxWrites", "message_from_row", "message_row"]
