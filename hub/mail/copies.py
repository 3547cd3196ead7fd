"""Appointment copies: the store commit hook that turns a transaction's appointment changes
into outbox messages, in that same transaction.

What a change is, for a recipient of the agent's copies (``email_copies``, ``copy_to``): an
appointment is *visible* while it is live, not an imported external event, and neither waiting
for approval nor rejected (``push_state`` local or sync). Becoming visible is ``created`` (an
approval included), ceasing to be is ``cancelled``; while visible, a new start with the same
length is ``moved``, a new length ``resized``, another content change ``updated``. An entry
cancelled for one agent and made for another in the same transaction, with the same kind,
request and booking, was ``reassigned``: both agents' recipients hear of it as such.

Debounce: a message waits ``[email] debounce`` before it is sent, and a later change of the
same appointment for the same recipient folds into it while it waits (the later content, one
message): created then moved is one "created", created then cancelled is nothing at all. The
wait restarts with each change, up to four debounces after the first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from hub.config import HubSettings
from hub.mail.compose import compose_copy
from hub.mail.settings import EmailSettings
from hub.model import Agent, Appointment, Kind, PushState
from hub.store.base import AppointmentChange, Tx
from hub.store.outbox import OutboxMessage

MAX_HOLD_DEBOUNCES = 4
_VISIBLE_STATES = frozenset({PushState.LOCAL, PushState.SYNC})
_CONTENT = ("subject", "note", "location", "private", "subject_override", "body_override")
_LIKE_CREATED = frozenset({"created", "reassigned"})


@dataclass(frozen=True, slots=True)
class CopyEvent:
    """One change to tell an agent's recipients about; ``appt`` is its state after it."""

    change: str
    appt: Appointment
    remark: str = ""


def visible(appt: Appointment | None) -> bool:
    """Whether recipients of copies see this appointment (see the module docstring)."""
    return (
        appt is not None
        and not appt.deleted
        and appt.kind is not Kind.EXTERNAL
        and appt.push_state in _VISIBLE_STATES
    )


def classify(change: AppointmentChange) -> CopyEvent | None:
    """The copy event of one appointment's change, or None when recipients see no change."""
    before, after = change.before, change.after
    was, now = visible(before), visible(after)
    if now and not was:
        assert after is not None
        return CopyEvent("created", after)
    if was and not now:
        assert before is not None
        gone = after if after is not None else before.evolve(version=before.version + 1)
        return CopyEvent("cancelled", gone.evolve(deleted=True))
    if not (was and now):
        return None
    assert before is not None and after is not None
    if (before.start, before.end) != (after.start, after.end):
        same_length = span(before) == span(after)
        return CopyEvent("moved" if same_length else "resized", after)
    if any(getattr(before, f) != getattr(after, f) for f in _CONTENT):
        return CopyEvent("updated", after)
    return None


def span(appt: Appointment) -> object:
    return appt.end - appt.start  # type: ignore[operator]


def _pair_key(appt: Appointment) -> tuple[object, ...]:
    return (appt.kind, appt.request_id, appt.group_id)


def pair_reassignments(events: list[CopyEvent], names: Callable[[str], str]) -> list[CopyEvent]:
    """Turn a cancellation for one agent and a creation for another of the same kind,
    request and booking into two ``reassigned`` events; ``names(agent_id)`` names agents."""
    created = [e for e in events if e.change == "created" and e.appt.kind is not Kind.ACTION]
    out: list[CopyEvent] = []
    paired: set[int] = set()
    for event in events:
        if event.change != "cancelled" or event.appt.kind is Kind.ACTION:
            continue
        for other in created:
            if (
                id(other) not in paired
                and other.appt.agent_id != event.appt.agent_id
                and _pair_key(other.appt) == _pair_key(event.appt)
            ):
                paired.update((id(event), id(other)))
                old, new = names(event.appt.agent_id), names(other.appt.agent_id)
                out.append(CopyEvent("reassigned", event.appt, f"Reassigned from {old} to {new}."))
                out.append(CopyEvent("reassigned", other.appt, f"Reassigned from {old} to {new}."))
                break
    return out + [e for e in events if id(e) not in paired]


def combine(earlier: str, later: str) -> str | None:
    """The kind of one message for two changes in a row (None: nothing to say at all)."""
    if later == "cancelled":
        return None if earlier in _LIKE_CREATED else "cancelled"
    if earlier in _LIKE_CREATED:
        return earlier
    if earlier == "cancelled":
        return "updated"  # restored before the cancellation went out
    for kind in ("moved", "resized"):
        if kind in (earlier, later):
            return kind
    return "updated"


def new_message_id(domain: str) -> str:
    """A Message-ID made once for one outbox row and kept in it."""
    return f"<calhub.{uuid.uuid4().hex}@{domain}>"


class CopyPlanner:
    """The commit hook (:meth:`hub.store.base.Store.add_commit_hook`) writing copies."""

    def __init__(
        self,
        email: EmailSettings,
        hub: HubSettings,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.email = email
        self.hub = hub
        self.clock = clock or (lambda: datetime.now(UTC))
        self.wrote = False  # set when a transaction wrote copies; see take_wrote()

    def take_wrote(self) -> bool:
        """Whether copies were written since the last call (a store listener, called after
        the commit, wakes the sender with it: before the commit it would find nothing)."""
        wrote, self.wrote = self.wrote, False
        return wrote

    async def __call__(self, tx: Tx) -> None:
        if not self.email.copies:
            return
        changes = tx.appointment_changes()
        if not changes:
            return
        events = [e for c in changes if (e := classify(c)) is not None]
        if not events:
            return
        agents: dict[str, Agent | None] = {}
        for event in events:
            if event.appt.agent_id not in agents:
                agents[event.appt.agent_id] = await tx.get_agent(event.appt.agent_id)

        def name(agent_id: str) -> str:
            agent = agents.get(agent_id)
            return agent.name if agent is not None else agent_id

        wrote = False
        for event in pair_reassignments(events, name):
            agent = agents.get(event.appt.agent_id)
            if agent is not None:
                for recipient in self.recipients(agent):
                    wrote = await self._enqueue(tx, event, agent, recipient) or wrote
        self.wrote = self.wrote or wrote

    def recipients(self, agent: Agent) -> Sequence[str]:
        targets = self.email.copies.get(agent.id)
        if targets is None:
            return ()
        found = list(targets.copy_to)
        if targets.to_agent and agent.email:
            found.insert(0, agent.email)
        return list(dict.fromkeys(found))

    async def _enqueue(self, tx: Tx, event: CopyEvent, agent: Agent, recipient: str) -> bool:
        appt = event.appt
        now = self.clock()
        waiting = await tx.pending_message_for(appt.id, recipient)
        change: str | None = event.change
        if waiting is not None:
            # A reassignment away from this agent is, for its recipients, a cancellation.
            later = "cancelled" if appt.deleted else event.change
            change = combine(waiting.kind, later)
            if change is None:
                await tx.delete_message(waiting.id)
                return False
            if change == "cancelled":
                change = event.change
        request = await tx.get_request(appt.request_id) if appt.request_id else None
        draft = compose_copy(change, appt, agent, request, self.hub, self.email, event.remark)
        not_before = now + self.email.debounce
        if waiting is not None:
            first = waiting.created_at or now
            not_before = min(not_before, first + self.email.debounce * MAX_HOLD_DEBOUNCES)
        content = {
            "kind": change,
            "subject": draft.subject,
            "text": draft.text,
            "html": draft.html,
            "ics": draft.ics,
            "not_before": not_before,
        }
        if waiting is not None:
            await tx.put_message(waiting.evolve(**content))
            return True
        await tx.add_message(
            OutboxMessage(
                **content,  # type: ignore[arg-type]
                recipient=recipient,
                message_id=new_message_id(self.email.domain),
                appointment_id=appt.id,
                agent_id=agent.id,
                created_at=now,
            )
        )
        return True


__all__ = ["CopyEvent", "CopyPlanner", "classify", "combine", "new_message_id", "visible"]
