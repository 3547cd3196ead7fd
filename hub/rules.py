"""Appointment rules: how a request's plan (A), a logged action (B) and a booking (C) become
entries in agents' hub calendars, and how those entries are edited, cancelled and approved.

Pure business logic over :class:`hub.store.Store`: no HTTP here. Input arrives already
type-checked (the admin endpoint parses JSON into the records below) and its self-contained
checks (spans, estimates) run before any transaction. Each operation then uses one write
transaction, and reads the state it depends on (agents, the request's existing entries, the
approval) through that transaction, before its first write: two concurrent re-plans cannot
both see "no entry yet" and make two, and a :class:`RuleError` naming the field at fault
rolls back a transaction that has written nothing.

Policy (``create_appointments``) decides each new appointment's ``push_state``:
``never`` → LOCAL, ``always`` → SYNC, ``ask`` → PENDING plus an :class:`~hub.model.Approval`.
With the hub value ``agent`` the agent's own value applies, and ``always`` when the agent has
none. An existing appointment keeps its push state when it is moved or re-planned: the policy
is a decision about whether an entry may leave the hub, taken once when it is made.

Origins recorded in the audit log: ``rule`` for A and B, ``api`` for C and edits,
``approval`` for approve/reject.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hub.config import HubSettings
from hub.model import Agent, Appointment, Approval, Kind, Policy, PushState, Request
from hub.spec import as_utc
from hub.store.base import Store, Tx

Moment = datetime | date

MAX_LENGTH = timedelta(days=31)  # longer is a typo, not an appointment (as the API's minutes)
HORIZON = timedelta(days=3653)  # ten years either side of today: far from datetime's limits

ORIGIN_RULE = "rule"
ORIGIN_API = "api"
ORIGIN_APPROVAL = "approval"


# --------------------------------------------------------------------------- errors


class RuleError(Exception):
    """A call the rules refuse; ``field`` names the input at fault when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(RuleError):
    """The request, appointment or approval addressed does not exist."""


class StateConflict(RuleError):
    """The call contradicts the current state (read-only appointment, decided approval)."""


class Invalid(RuleError):
    """The input is well-formed but not acceptable (unknown agent, end before start)."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Plan:
    """A: the request is planned at ``start`` for ``agents`` (a date plans an all-day entry)."""

    agents: tuple[str, ...]
    start: Moment
    estimate_minutes: int | None = None
    subject: str | None = None  # the request's subject, when the caller tells it
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """B: ``agent`` worked on the request from ``done_at`` for ``time_taken_minutes``."""

    agent: str
    done_at: datetime
    time_taken_minutes: int
    add_to_calendar: bool = False
    note: str = ""
    subject: str | None = None
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class Booking:
    """C: an appointment booked against the request, one entry per agent."""

    subject: str
    start: Moment
    end: Moment
    agents: tuple[str, ...]
    note: str = ""
    private: bool = False
    location: str = ""
    request_subject: str | None = None
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """An edit of one appointment; ``None`` leaves a field as it is."""

    start: Moment | None = None
    end: Moment | None = None
    subject: str | None = None
    note: str | None = None
    location: str | None = None
    private: bool | None = None
    agent: str | None = None  # reassign: the entry moves to this agent's calendar
    version: int | None = None  # precondition: refuse unless the entry still has this version


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What logging an action did: the appointment made, or why none was."""

    action_id: str
    appointment: Appointment | None
    reason: str | None = None


# --------------------------------------------------------------------------- the rules


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class Rules:
    """Applies A, B, C, edits and approvals to one store under the ``[hub]`` settings."""

    def __init__(
        self,
        store: Store,
        settings: HubSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    # policy ------------------------------------------------------------------------------

    def policy_for(self, agent: Agent) -> Policy:
        """The policy that applies to a new appointment in ``agent``'s calendar."""
        hub = self.settings.create_appointments
        if hub is not Policy.AGENT:
            return hub
        own = agent.create_appointments
        # An agent without a value of its own (or with the meaningless "agent") gets "always":
        # the hub delegated the choice, and the agent did not restrict it.
        return own if own is not None and own is not Policy.AGENT else Policy.ALWAYS

    async def _add_new(self, tx: Tx, appt: Appointment, agent: Agent) -> Appointment:
        """Store a new appointment with the push state its policy gives (and an approval)."""
        policy = self.policy_for(agent)
        state = {
            Policy.NEVER: PushState.LOCAL,
            Policy.ALWAYS: PushState.SYNC,
            Policy.ASK: PushState.PENDING,
        }[policy]
        stored = await tx.put_appointment(appt.evolve(push_state=state))
        if state is PushState.PENDING:
            await tx.add_approval(
                Approval(
                    id=_new_id(),
                    appointment_id=stored.id,
                    agent_id=agent.id,
                    created_at=self.clock(),
                )
            )
        return stored

    # lookups (inside the transaction, before its first write) ----------------------------

    @staticmethod
    async def _agents(tx: Tx, ids: Iterable[str], field: str) -> dict[str, Agent]:
        found: dict[str, Agent] = {}
        for agent_id in ids:
            agent = await tx.get_agent(agent_id)
            if agent is None:
                raise Invalid(f"no agent named {agent_id!r}", field=field)
            found[agent_id] = agent
        return found

    @staticmethod
    async def _editable(tx: Tx, appointment_id: str) -> Appointment:
        appt = await tx.get_appointment(appointment_id)
        if appt is None:
            raise NotFound(f"no appointment {appointment_id!r}", field="id")
        if appt.read_only:
            raise StateConflict(
                "appointment comes from the agent's own calendar and is read-only in the hub",
                field="id",
            )
        return appt

    @staticmethod
    async def _request(
        tx: Tx, request_id: str, subject: str | None, customer: str | None
    ) -> Request:
        """The request, created on first mention; subject/customer updated when given."""
        request = await tx.get_request(request_id) or Request(id=request_id)
        if subject is not None:
            request.subject = subject
        if customer is not None:
            request.customer = customer
        return request

    @staticmethod
    async def _withdraw_approvals(tx: Tx, appointment_ids: set[str]) -> None:
        """Close the pending approvals of cancelled appointments so /approvals drops them."""
        if not appointment_ids:
            return
        for approval in await tx.list_approvals(pending_only=True):
            if approval.appointment_id in appointment_ids:
                await tx.decide_approval(approval.id, False, "withdrawn: appointment cancelled")

    async def _cancel_all(self, tx: Tx, appts: Sequence[Appointment]) -> list[Appointment]:
        """Tombstone each appointment; purge at once those sync has nothing to carry out for.

        Returns the tombstones (purged or not), as the API answers with them.
        """
        gone = [t for a in appts if (t := await tx.delete_appointment(a.id)) is not None]
        await self._withdraw_approvals(
            tx, {a.id for a in appts if a.push_state is PushState.PENDING}
        )
        # agent id -> ids of its appointments with a status row (None: it has no account)
        linked: dict[str, set[str] | None] = {}
        for tomb in gone:
            if tomb.agent_id not in linked:
                linked[tomb.agent_id] = await _linked_ids(tx, tomb.agent_id)
            ids = linked[tomb.agent_id]
            if ids is None or (tomb.push_state is not PushState.SYNC and tomb.id not in ids):
                # No sync pass will ever look at it: a tombstone kept would stay forever.
                await tx.purge_appointment(tomb.id)
        return gone

    def _check_bounds(
        self, start: Moment, end: Moment, start_field: str = "start", end_field: str = "end"
    ) -> None:
        """Refuse a span longer than :data:`MAX_LENGTH` or outside :data:`HORIZON` of today
        (a year 4099 booking is a typo, and would overflow the window arithmetic)."""
        today = self.clock().date()
        earliest, latest = today - HORIZON, today + HORIZON
        for moment, field in ((start, start_field), (end, end_field)):
            day = as_utc(moment).date() if isinstance(moment, datetime) else moment
            if not earliest <= day <= latest:
                raise Invalid(
                    f"must lie within 10 years of today ({earliest} .. {latest})", field=field
                )
        if end - start > MAX_LENGTH:  # type: ignore[operator]
            raise Invalid("an appointment lasts at most 31 days", field=end_field)

    # A -----------------------------------------------------------------------------------

    def _plan_end(self, start: Moment, minutes: int) -> Moment:
        if isinstance(start, datetime):
            return start + timedelta(minutes=minutes)
        # All-day plan: as many whole days as the estimate covers, at least one.
        return start + timedelta(days=max(1, math.ceil(minutes / (24 * 60))))

    async def plan(self, request_id: str, plan: Plan) -> list[Appointment]:
        """Plan the request: one planned appointment per agent, moved when it exists already,
        cancelled for an agent no longer listed. Returns the plan's appointments."""
        minutes = plan.estimate_minutes
        if minutes is None:
            minutes = max(1, int(self.settings.default_estimate.total_seconds() // 60))
        if minutes <= 0:
            raise Invalid("must be a positive number of minutes", field="estimate_minutes")
        end = self._plan_end(plan.start, minutes)
        self._check_bounds(plan.start, end, "start", "estimate_minutes")
        result: list[Appointment] = []
        async with self.store.transaction(ORIGIN_RULE) as tx:
            agents = await self._agents(tx, dict.fromkeys(plan.agents), "agents")
            request = await self._request(tx, request_id, plan.subject, plan.customer)
            request.planned_start = plan.start
            request.estimate_minutes = plan.estimate_minutes
            request.planned_agents = tuple(agents)
            current: dict[str, Appointment] = {}
            stale: list[Appointment] = []
            for appt in await tx.list_appointments(request_id=request_id, kind=Kind.PLANNED):
                # A second planned entry for one agent should not exist; fold it if it does.
                if appt.agent_id in agents and appt.agent_id not in current:
                    current[appt.agent_id] = appt
                else:
                    stale.append(appt)

            await tx.put_request(request)
            for agent_id, agent in agents.items():
                existing = current.get(agent_id)
                if existing is not None:
                    result.append(
                        await tx.put_appointment(existing.evolve(start=plan.start, end=end))
                    )
                else:
                    fresh = Appointment(
                        id=_new_id(),
                        agent_id=agent_id,
                        kind=Kind.PLANNED,
                        start=plan.start,
                        end=end,
                        request_id=request_id,
                    )
                    result.append(await self._add_new(tx, fresh, agent))
            await self._cancel_all(tx, stale)
        return result

    async def clear_plan(self, request_id: str) -> list[Appointment]:
        """Clear the request's plan: its planned appointments are cancelled (see cancel)."""
        async with self.store.transaction(ORIGIN_RULE) as tx:
            request = await tx.get_request(request_id)
            if request is None:
                raise NotFound(f"no request {request_id!r}", field="request_id")
            planned = await tx.list_appointments(request_id=request_id, kind=Kind.PLANNED)
            request.planned_start = None
            request.estimate_minutes = None
            request.planned_agents = ()
            await tx.put_request(request)
            return await self._cancel_all(tx, planned)

    # B -----------------------------------------------------------------------------------

    async def log_action(self, request_id: str, action: Action) -> ActionOutcome:
        """Record an action; make its appointment when actions may and the caller asked."""
        if action.time_taken_minutes <= 0:
            raise Invalid("must be a positive number of minutes", field="time_taken_minutes")
        self._check_bounds(
            action.done_at,
            action.done_at + timedelta(minutes=action.time_taken_minutes),
            "done_at",
            "time_taken_minutes",
        )
        action_id = _new_id()
        reason: str | None = None
        if not self.settings.action_appointments:
            reason = "action appointments are disabled ([hub] action_appointments = false)"
        elif not action.add_to_calendar:
            reason = "add_to_calendar was not requested"
        async with self.store.transaction(ORIGIN_RULE) as tx:
            agent = (await self._agents(tx, [action.agent], "agent"))[action.agent]
            request = await self._request(tx, request_id, action.subject, action.customer)
            await tx.put_request(request)
            await tx.audit(
                "request",
                request_id,
                "action",
                action_id=action_id,
                agent=action.agent,
                done_at=action.done_at.isoformat(),
                time_taken_minutes=action.time_taken_minutes,
            )
            if reason is not None:
                return ActionOutcome(action_id, None, reason)
            appt = Appointment(
                id=_new_id(),
                agent_id=agent.id,
                kind=Kind.ACTION,
                start=action.done_at,
                end=action.done_at + timedelta(minutes=action.time_taken_minutes),
                note=action.note,
                request_id=request_id,
                action_id=action_id,
            )
            return ActionOutcome(action_id, await self._add_new(tx, appt, agent))

    # C -----------------------------------------------------------------------------------

    async def book(self, request_id: str, booking: Booking) -> list[Appointment]:
        """Book one appointment per agent, sharing a group id."""
        if not booking.agents:
            raise Invalid("name at least one agent", field="agents")
        if len(set(booking.agents)) != len(booking.agents):
            raise Invalid("an agent is named twice", field="agents")
        check_span(booking.start, booking.end)
        self._check_bounds(booking.start, booking.end)
        group_id = _new_id()  # also for one agent: agents may be added to a booking later
        async with self.store.transaction(ORIGIN_API) as tx:
            agents = await self._agents(tx, booking.agents, "agents")
            request = await self._request(tx, request_id, booking.request_subject, booking.customer)
            await tx.put_request(request)
            made = []
            for agent in agents.values():
                appt = Appointment(
                    id=_new_id(),
                    agent_id=agent.id,
                    kind=Kind.MANUAL,
                    start=booking.start,
                    end=booking.end,
                    subject=booking.subject,
                    note=booking.note,
                    location=booking.location,
                    private=booking.private,
                    request_id=request_id,
                    group_id=group_id,
                )
                made.append(await self._add_new(tx, appt, agent))
            return made

    # edits -------------------------------------------------------------------------------

    async def change(self, appointment_id: str, change: Change) -> Appointment:
        """Move, resize, re-word or reassign one appointment. Moving with a start only keeps
        the duration; a subject or note set here replaces one edited remotely.

        With ``change.version`` the edit is refused (:class:`StateConflict`) unless the entry
        still has that version: a page that shows an older state must not overwrite a newer
        one. With ``change.agent`` naming another agent the entry is reassigned: see
        :meth:`_reassign`; the answer is then the new agent's entry.
        """
        async with self.store.transaction(ORIGIN_API) as tx:
            appt = await self._editable(tx, appointment_id)
            if change.version is not None and change.version != appt.version:
                raise StateConflict(
                    f"the appointment was changed meanwhile (now version {appt.version}, "
                    f"the edit was made on version {change.version}); reload and retry",
                    field="version",
                )
            updated = self._changed(appt, change)
            if change.agent is not None and change.agent != appt.agent_id:
                return await self._reassign(tx, updated, change.agent)
            return await tx.put_appointment(updated)

    async def _reassign(self, tx: Tx, appt: Appointment, agent_id: str) -> Appointment:
        """Move ``appt`` to ``agent_id``'s calendar: the old entry is cancelled (sync deletes
        it from the old agent's calendar) and a copy with a new id is made for the new agent
        under the new agent's policy (sync creates it there). A planned entry (A) moves the
        request's plan from one agent to the other, so that re-planning keeps it there."""
        agent = (await self._agents(tx, [agent_id], "agent"))[agent_id]
        if appt.kind is Kind.ACTION:
            raise StateConflict(
                "an action's entry records who did the work; it cannot be reassigned",
                field="agent",
            )
        if appt.kind is Kind.PLANNED:
            clash = await tx.list_appointments(
                agent_id=agent_id, request_id=appt.request_id, kind=Kind.PLANNED
            )
        elif appt.group_id is not None:
            clash = await tx.list_appointments(agent_id=agent_id, group_id=appt.group_id)
        else:
            clash = []
        if clash:
            what = "plan" if appt.kind is Kind.PLANNED else "booking"
            raise StateConflict(
                f"agent {agent_id!r} already has an entry of this {what}", field="agent"
            )
        if appt.kind is Kind.PLANNED and appt.request_id is not None:
            request = await tx.get_request(appt.request_id)
            if request is not None:
                request.planned_agents = tuple(
                    agent_id if a == appt.agent_id else a for a in request.planned_agents
                )
                await tx.put_request(request)
        await self._cancel_all(tx, [appt])
        moved = appt.evolve(
            id=_new_id(),
            agent_id=agent_id,
            version=1,
            created_at=None,
            updated_at=None,
            deleted=False,
            deleted_at=None,
        )
        return await self._add_new(tx, moved, agent)

    def _changed(self, appt: Appointment, change: Change) -> Appointment:
        start = appt.start if change.start is None else change.start
        if change.end is not None:
            end = change.end
        elif change.start is not None:
            if isinstance(change.start, datetime) != isinstance(appt.start, datetime):
                raise Invalid(
                    "give end as well when switching between all-day and timed", field="end"
                )
            end = change.start + (appt.end - appt.start)  # type: ignore[operator]
        else:
            end = appt.end
        check_span(start, end)
        if change.start is not None or change.end is not None:
            # Only a move is judged: an entry that flowed in from a calendar stays editable.
            self._check_bounds(start, end)
        updated = appt.evolve(start=start, end=end)
        if change.subject is not None:
            updated = updated.evolve(subject=change.subject, subject_override=None)
        if change.note is not None:
            updated = updated.evolve(note=change.note, body_override=None)
        if change.location is not None:
            updated = updated.evolve(location=change.location)
        if change.private is not None:
            updated = updated.evolve(private=change.private)
        return updated

    async def cancel(self, appointment_id: str) -> Appointment:
        """Cancel one appointment: a tombstone sync carries out at the agent's calendar, or
        purged at once when there is nothing remote to delete. Returns the tombstone."""
        async with self.store.transaction(ORIGIN_API) as tx:
            appt = await self._editable(tx, appointment_id)
            (gone,) = await self._cancel_all(tx, [appt])
        return gone

    # approvals ---------------------------------------------------------------------------

    async def decide(
        self, approval_id: str, approve: bool, by: str = "api"
    ) -> tuple[Approval, Appointment]:
        """Approve (the entry syncs) or reject (it stays in the hub calendar only)."""
        state = PushState.SYNC if approve else PushState.REJECTED
        async with self.store.transaction(ORIGIN_APPROVAL) as tx:
            approval = await tx.get_approval(approval_id)
            if approval is None:
                raise NotFound(f"no approval {approval_id!r}", field="id")
            if approval.decided_at is not None:
                verdict = "approved" if approval.approved else "rejected"
                raise StateConflict(f"approval was already decided ({verdict})", field="approve")
            appt = await tx.get_appointment(approval.appointment_id)
            if appt is None:
                raise StateConflict("the appointment was cancelled", field="id")
            decided = await tx.decide_approval(approval_id, approve, by)
            stored = await tx.put_appointment(appt.evolve(push_state=state))
        return decided, stored


async def purge_tombstones(tx: Tx, agent_id: str) -> None:
    """Purge the agent's cancelled appointments: once it has no account, no sync pass will
    carry their deletes out, and kept they would stay forever."""
    for appt in await tx.list_appointments(agent_id=agent_id, include_deleted=True):
        if appt.deleted:
            await tx.purge_appointment(appt.id)


async def _linked_ids(tx: Tx, agent_id: str) -> set[str] | None:
    """Ids of the agent's appointments with a sync status row; None when it has no account.

    A tombstone of an appointment meant to sync (push_state "sync") is kept even without a
    row: its row may have been lost, and only sync's lookup by hub id can tell (see
    :meth:`hub.reconcile` ``_unlinked_tombstones``).
    """
    agent = await tx.get_agent(agent_id)
    if agent is None or agent.account is None:
        return None
    return {s.appointment_id for s in await tx.list_status(agent_id, agent.account)}


def check_span(start: Moment, end: Moment) -> None:
    """Refuse a span whose ends mix dates and times or whose end is not after its start."""
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise Invalid("start and end must both be dates (all-day) or both times", field="end")
    if end <= start:  # type: ignore[operator]
        raise Invalid("end must be after start", field="end")


__all__ = [
    "Action",
    "ActionOutcome",
    "Booking",
    "Change",
    "Invalid",
    "NotFound",
    "Plan",
    "RuleError",
    "Rules",
    "StateConflict",
    "check_span",
    "purge_tombstones",
]
