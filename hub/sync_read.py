"""Reading one sync pass: the provider's fetch and lookups, and the hub's appointments.

Nothing here writes: :class:`PassReader` gathers what :func:`hub.reconcile.reconcile` decides
on, and :mod:`hub.sync_apply` carries the decision out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hub.config import HubSettings
from hub.model import Agent, Appointment, Request, SyncStatus
from hub.reconcile import touched_remote_ids, wanted_appointment_ids
from hub.render import render_event
from hub.spec import (
    CursorInvalid,
    EventData,
    FetchResult,
    NotFoundError,
    PermanentError,
    RemoteEvent,
    Window,
)
from hub.store.base import Store
from hub.sync_scope import PassScope, Tally, chunks

if TYPE_CHECKING:
    from hub.sync import AgentSync

FIND_CHUNK = 50  # hub ids per provider.find call


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The part of an agent's calendar a change pass reads: appointments by id, their status
    rows (ordered by appointment id), and every appointment id already asked for."""

    appointments: dict[str, Appointment]
    statuses: list[SyncStatus]
    asked: set[str]


class HubReader:
    """The hub side of a pass: the appointments a reconcile looks at and their renderer.

    Needs no provider, so the status route's preview (:mod:`hub.sync_preview`) reads exactly
    what a pass would."""

    def __init__(self, store: Store, agent: Agent, settings: HubSettings, window: Window) -> None:
        self.store = store
        self.agent = agent
        self.settings = settings
        self.window = window
        self.requests: dict[str, Request | None] = {}  # read once per pass, for rendering

    async def load(
        self,
        statuses: Sequence[SyncStatus],
        fetch: FetchResult,
        extra: Sequence[RemoteEvent],
        have: dict[str, Appointment] | None = None,
    ) -> dict[str, Appointment]:
        if have is None:
            listed = await self.store.list_appointments(
                agent_id=self.agent.id,
                start=self.window.start,
                end=self.window.end,
                include_deleted=True,
            )
            have = {a.id: a for a in listed}
        else:
            have = dict(have)
        missing = wanted_appointment_ids(statuses, fetch, self.window, extra) - set(have)
        if missing:
            found = await self.store.get_appointments(missing, include_deleted=True)
            have.update((appt_id, found[appt_id]) for appt_id in sorted(found))  # stable order
        return have

    async def load_changes(
        self,
        account: str,
        changed: Iterable[str],
        fetch: FetchResult,
        extra: Sequence[RemoteEvent] = (),
        have: ChangeSet | None = None,
    ) -> ChangeSet:
        """What a change pass reconciles: the appointments stamped since the last clean pass
        (``changed``) and those the fetched events name by hub id, the status rows of both
        and of the fetched remote ids, and every appointment those rows name. Each lookup is
        by key: the cost follows the change, not the calendar."""
        ids = set(changed) | {e.hub_id for e in (*fetch.changed, *extra) if e.hub_id}
        remote_ids = touched_remote_ids(fetch) | {e.remote_id for e in extra}
        appts = dict(have.appointments) if have else {}
        statuses = {s.appointment_id: s for s in have.statuses} if have else {}
        asked = set(statuses) | (have.asked if have else set())
        new_ids = ids - asked
        if new_ids or remote_ids:
            rows = await self.store.get_statuses(
                self.agent.id, account, appointment_ids=new_ids, remote_ids=remote_ids
            )
            for row in rows:
                statuses.setdefault(row.appointment_id, row)
        ids |= set(statuses)
        missing = ids - set(appts)
        if missing:
            found = await self.store.get_appointments(missing, include_deleted=True)
            appts.update((appt_id, found[appt_id]) for appt_id in sorted(found))
        ordered = [statuses[k] for k in sorted(statuses)]
        return ChangeSet(appts, ordered, asked | ids)

    async def renderer(self, appts: Iterable[Appointment]) -> Callable[[Appointment], EventData]:
        # Kept on the reader: the re-plan after a lookup reads only the requests it adds.
        requests = self.requests
        for appt in appts:
            rid = appt.request_id
            if rid is not None and rid not in requests:
                requests[rid] = await self.store.get_request(rid)
        agent, settings = self.agent, self.settings

        def render(appt: Appointment) -> EventData:
            request = requests.get(appt.request_id) if appt.request_id else None
            return render_event(appt, agent, request, settings)

        return render


class PassReader(PassScope):
    """What one pass reads from the provider: the fetch (falling back to a full listing when
    the cursor is refused) and the lookups the reconcile asks for."""

    def __init__(self, engine: AgentSync, agent: Agent, tally: Tally, now: datetime) -> None:
        super().__init__(engine, agent, tally, now)
        self.hub = HubReader(self.store, agent, self.settings, self.window)

    async def fetch(self, cursor: str | None) -> FetchResult:
        try:
            return await self.calls(lambda: self.provider.fetch(self.cal, self.window, cursor))
        except CursorInvalid as exc:
            if cursor is None:
                raise
            self.tally.notices.append(f"cursor refused ({exc.message}); listed the whole window")
            self.tally.counts["full_fetch"] += 1
            return await self.calls(lambda: self.provider.fetch(self.cal, self.window, None))

    async def get(self, remote_ids: Sequence[str]) -> dict[str, RemoteEvent | None]:
        found: dict[str, RemoteEvent | None] = {}
        for rid in remote_ids:
            try:
                found[rid] = await self.calls(lambda rid=rid: self.provider.get(self.cal, rid))
            except NotFoundError:
                found[rid] = None
            except PermanentError as exc:
                self.tally.skip(rid, exc.message)  # unreadable: left as it is this pass
            except NotImplementedError:
                # Without get nothing can be verified: leave these as they are (never a
                # delete on a guess).
                self.tally.notices.append("the provider cannot read single events (get)")
                break
        return found

    async def find(self, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        found: dict[str, RemoteEvent] = {}
        for chunk in chunks(hub_ids, FIND_CHUNK):
            try:
                found.update(
                    await self.calls(lambda chunk=chunk: self.provider.find(self.cal, list(chunk)))
                )
            except NotImplementedError:
                # The contract's idempotent create still links a repeated create.
                self.tally.notices.append("the provider cannot look events up by hub id (find)")
                break
        return found
