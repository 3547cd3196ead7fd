"""Routes /outbox: e-mail copies and alerts waiting or failed, and their retry.

``GET /outbox`` lists pending, sending and failed messages, oldest first (``?state=`` a
comma-separated list of pending, sending, sent, failed; ``?limit=``). ``POST
/outbox/{id}/retry`` makes a failed or waiting message due now (409 for one sent or being
sent). Bodies and attachments are not served: subject, recipient and state say what it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from hub.admin.context import hub_of
from hub.admin.errors import ApiError, invalid
from hub.admin.validation import limit, query
from hub.mail.sender import retry_message
from hub.store.outbox import FAILED, PENDING, SENDING, STATES, OutboxMessage

routes = web.RouteTableDef()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_json(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "kind": message.kind,
        "recipient": message.recipient,
        "subject": message.subject,
        "state": message.state,
        "attempts": message.attempts,
        "last_error": message.last_error or None,
        "not_before": _iso(message.not_before),
        "created_at": _iso(message.created_at),
        "updated_at": _iso(message.updated_at),
        "sent_at": _iso(message.sent_at),
        "appointment_id": message.appointment_id,
        "agent_id": message.agent_id,
        "message_id": message.message_id,
        "attachment": bool(message.ics),
    }


def _states(value: str | None) -> tuple[str, ...]:
    if value is None:
        return (PENDING, SENDING, FAILED)
    states = tuple(s.strip() for s in value.split(",") if s.strip())
    bad = [s for s in states if s not in STATES]
    if bad or not states:
        raise invalid("state", f"expected a comma-separated list of {', '.join(STATES)}")
    return states


def _message_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(404, f"no message {raw!r}", field="id")
    return int(raw)


@routes.get("/outbox", name="outbox")
async def list_outbox(request: web.Request) -> web.Response:
    hub = hub_of(request)
    params = query(request, ("state", "limit"))
    most = limit(params["limit"], "limit") if "limit" in params else 100
    found = await hub.store.list_messages(states=_states(params.get("state")), limit=most)
    return web.json_response([message_json(m) for m in found])


@routes.post("/outbox/{id}/retry", name="outbox-retry")
async def retry(request: web.Request) -> web.Response:
    hub = hub_of(request)
    message_id = _message_id(request)
    message, refusal = await retry_message(hub.store, message_id, datetime.now(UTC))
    if message is None:
        raise ApiError(404, f"no message {message_id}", field="id")
    if refusal:
        raise ApiError(409, f"message {message_id} is {refusal}; nothing to retry", field="id")
    if hub.mail is not None:
        hub.mail.sender.wake()
    return web.json_response(message_json(message))


__all__ = ["message_json", "routes"]
