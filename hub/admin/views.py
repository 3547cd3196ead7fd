"""JSON shapes of the records the admin endpoint serves.

Times are ISO 8601 in UTC with ``Z``; all-day entries use dates (exclusive end).
:class:`AppointmentViews` renders appointments in bulk, reading each agent, request and sync
status table once per HTTP request rather than once per appointment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from hub.config import HubSettings
from hub.model import (
    Agent,
    Appointment,
    Approval,
    CalendarState,
    Conflict,
    PassResult,
    Policy,
    Request,
    SyncStatus,
)
from hub.redact import redact
from hub.render import render_event, render_subject
from hub.spec import EventData, as_utc
from hub.store.base import Store


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is UTC and value.year >= 1000:
            # What the store gives: the same text as strftime's, at a fifth of its cost (a
            # page of 500 entries formats 1,500 of them).
            return value.isoformat(timespec="seconds")[:19] + "Z"
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def agent_json(agent: Agent, policy: Policy) -> dict[str, Any]:
    """An agent without its feed token (lists); ``policy`` is the one that applies to it."""
    return {
        "id": agent.id,
        "name": agent.name,
        "email": agent.email,
        "account": agent.account,
        "calendar": agent.calendar,
        "create_appointments": agent.create_appointments,
        "effective_policy": policy,
        "import_external": agent.import_external,
        "colour": agent.colour,
        "source": agent.source,
        "created_at": iso(agent.created_at),
        "updated_at": iso(agent.updated_at),
    }


def request_json(request: Request) -> dict[str, Any]:
    return {
        "id": request.id,
        "subject": request.subject,
        "customer": request.customer,
        "planned_start": iso(request.planned_start),
        "estimate_minutes": request.estimate_minutes,
        "planned_agents": list(request.planned_agents),
        "updated_at": iso(request.updated_at),
    }


def status_json(status: SyncStatus) -> dict[str, Any]:
    return {
        "account": status.account,
        "remote_id": status.remote_id,
        "state": status.state,
        "external": status.external,
        "updated_at": iso(status.updated_at),
    }


def approval_json(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "appointment_id": approval.appointment_id,
        "agent": approval.agent_id,
        "created_at": iso(approval.created_at),
        "decided_at": iso(approval.decided_at),
        "approved": approval.approved,
        "decided_by": approval.decided_by,
    }


def conflict_json(conflict: Conflict) -> dict[str, Any]:
    return {
        "id": conflict.id,
        "agent": conflict.agent_id,
        "appointment_id": conflict.appointment_id,
        "account": conflict.account,
        "policy": conflict.policy,
        "winner": conflict.winner,
        "hub": conflict.hub,
        "remote": conflict.remote,
        "detail": conflict.detail,
        "created_at": iso(conflict.created_at),
    }


def pass_json(result: PassResult) -> dict[str, Any]:
    data = asdict(result)
    data["agent"] = data.pop("agent_id")
    data["started_at"] = iso(result.started_at)
    data["finished_at"] = iso(result.finished_at)
    data["ok"] = result.ok
    return data


def calendar_state_json(state: CalendarState, now: datetime) -> dict[str, Any]:
    cursor_age = None
    if state.cursor is not None and state.cursor_at is not None:
        cursor_age = round((now - as_utc(state.cursor_at)).total_seconds(), 1)
    return {
        "account": state.account,
        "calendar": state.calendar,
        "last_pass_at": iso(state.last_pass_at),
        "last_result": state.last_result,
        "last_error": redact(state.last_error) if state.last_error else state.last_error,
        "cursor_age_seconds": cursor_age,
        "needs_attention": state.needs_attention,
        "notices": list(state.notices),
        "stats": dict(state.stats),
    }


class EventRenderer:
    """Renders appointments into the events their agents' calendars show, reading each agent
    and request once however many appointments refer to it."""

    def __init__(self, store: Store, settings: HubSettings, known: Iterable[Agent] = ()) -> None:
        self.store = store
        self.settings = settings
        # Agents the caller has read already are not read again.
        self._agents: dict[str, Agent | None] = {agent.id: agent for agent in known}
        self._requests: dict[str, Request | None] = {}

    async def agent(self, agent_id: str) -> Agent | None:
        if agent_id not in self._agents:
            self._agents[agent_id] = await self.store.get_agent(agent_id)
        return self._agents[agent_id]

    async def preload(self, appts: Iterable[Appointment]) -> None:
        """Read the requests of ``appts`` in one query: rendering many appointments then
        reads none of them one by one."""
        wanted = {a.request_id for a in appts if a.request_id is not None} - set(self._requests)
        if wanted:
            found = await self.store.get_requests(wanted)
            self._requests.update({rid: found.get(rid) for rid in wanted})

    async def request(self, request_id: str | None) -> Request | None:
        if request_id is None:
            return None
        if request_id not in self._requests:
            self._requests[request_id] = await self.store.get_request(request_id)
        return self._requests[request_id]

    async def event(self, appt: Appointment) -> EventData | None:
        """The rendered event, or None when the appointment's agent is gone."""
        agent = await self.agent(appt.agent_id)
        if agent is None:
            return None
        return render_event(appt, agent, await self.request(appt.request_id), self.settings)


class AppointmentViews(EventRenderer):
    """Appointments as JSON, with their rendered subject and sync status."""

    def __init__(self, store: Store, settings: HubSettings) -> None:
        super().__init__(store, settings)
        self._status: dict[str, dict[str, SyncStatus]] = {}

    async def status(self, agent: Agent, appointment_id: str) -> SyncStatus | None:
        await self._load_status(agent)
        return self._status.get(agent.id, {}).get(appointment_id)

    async def _load_status(self, agent: Agent) -> None:
        if agent.account is not None and agent.id not in self._status:
            rows = await self.store.list_status(agent.id, agent.account)
            self._status[agent.id] = {row.appointment_id: row for row in rows}

    async def display_subject(self, appt: Appointment) -> str:
        event = await self.event(appt)
        return appt.subject if event is None else event.subject

    async def one(self, appt: Appointment) -> dict[str, Any]:
        return (await self.many([appt]))[0]

    async def many(self, appts: list[Appointment]) -> list[dict[str, Any]]:
        """The JSON of ``appts``: their agents, requests and statuses read first (a query
        each), then every entry built without a further await."""
        await self.preload(appts)
        for agent_id in {appt.agent_id for appt in appts}:
            agent = await self.agent(agent_id)
            if agent is not None:
                await self._load_status(agent)
        return [self._json(appt) for appt in appts]

    def _json(self, appt: Appointment) -> dict[str, Any]:
        agent = self._agents[appt.agent_id]
        subject, status = appt.subject, None
        if agent is not None:
            request = self._requests.get(appt.request_id) if appt.request_id else None
            subject = render_subject(appt, agent, request, self.settings)
            status = self._status.get(agent.id, {}).get(appt.id)
        return {
            "id": appt.id,
            "agent": appt.agent_id,
            "kind": appt.kind,
            "request_id": appt.request_id,
            "group_id": appt.group_id,
            "action_id": appt.action_id,
            "subject": appt.subject,
            "display_subject": subject,
            "note": appt.note,
            "location": appt.location,
            "start": iso(appt.start),
            "end": iso(appt.end),
            "all_day": appt.all_day,
            "private": appt.private,
            "show_as": appt.show_as,
            "push_state": appt.push_state,
            "read_only": appt.read_only,
            "version": appt.version,
            "updated_at": iso(appt.updated_at),
            "deleted": appt.deleted,
            "sync": None if status is None else status_json(status),
        }
