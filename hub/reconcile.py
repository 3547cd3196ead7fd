"""Two-way reconcile of one agent calendar: state in, plan out. Pure: no I/O, no clock.

The engine (:mod:`hub.sync`) gathers the inputs — the hub's appointments, the status table of
last-synced pairs, what the provider's fetch returned — and applies the :class:`Plan` this
module returns. Everything DESIGN.md "Sync semantics" promises is decided here:

- a side changed only when its *content hash* changed (servers bump versions for nothing);
- hub-owned events: start/end always flow back, subject and body only for manual (C)
  appointments; for A/B the rendered content is pushed again and the refusal audited;
- external events are imported only when import is on, private ones as "Data unavailable"
  busy time whose content is never stored or hashed; import off removes them from the hub;
- deletes both ways, ``remote_delete = "restore"`` re-creates; an edit beats a delete;
- both sides changed: the ``conflict`` policy picks a winner and a :class:`Conflict` records
  both sides;
- leaving the window never deletes; a full listing's missing items are verified first;
- no duplicates: crashed creates (status ``creating``) are found by hub id and linked, tagged
  events without a status row are linked, duplicates and orphans of purged appointments are
  deleted;
- a full listing that suddenly comes back empty stops the pass (unless overridden).

Some decisions need facts only the provider has (does this missing event still exist? did the
crashed create happen?). Then the plan holds only ``get``/``find`` requests; the engine asks the
provider and calls :func:`reconcile` again with the answers in ``looked_up``/``found``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from hub.model import (
    Agent,
    Appointment,
    Conflict,
    ConflictPolicy,
    Kind,
    PairState,
    PushState,
    RemoteDelete,
    SyncStatus,
)
from hub.plan import ActionLabel as L
from hub.plan import HubAction, Plan, PushAction, RemoteDeleteAction, Skip
from hub.spec import PRIVATE_SUBJECT, EventData, FetchResult, RemoteEvent, Window, as_utc

Render = Callable[[Appointment], EventData]

# The pair states, by their old names (the engine and the tests import these).
SYNCED = PairState.SYNCED
CREATING = PairState.CREATING
# The remote version is not known any more (a write was refused with 412/404): fetch the event
# with provider.get before deciding anything about it.
STALE = PairState.STALE


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class ReconcileInput:
    """Everything one reconcile of one agent calendar looks at.

    ``appointments`` holds the agent's appointments overlapping the window (tombstones
    included) plus every appointment named by a relevant status row or a fetched hub tag
    (see :func:`wanted_appointment_ids`). ``render`` builds the external event of a hub
    appointment (:func:`hub.render.render_event` bound to the agent, its requests and the
    settings). ``looked_up`` maps remote ids to what ``provider.get`` returned (None: not
    found); ``found`` maps hub ids to what ``provider.find`` returned. Both are None until the
    engine asked.
    """

    agent: Agent
    account: str
    window: Window
    now: datetime
    appointments: Mapping[str, Appointment]
    statuses: Sequence[SyncStatus]
    fetch: FetchResult
    render: Render
    import_external: bool = False
    conflict: ConflictPolicy = ConflictPolicy.NEWEST
    remote_delete: RemoteDelete = RemoteDelete.FOLLOW
    allow_empty: bool = False
    read_only: bool = False
    status_lost: bool = False  # the status table was lost since the last pass
    looked_up: Mapping[str, RemoteEvent | None] | None = None
    found: Mapping[str, RemoteEvent] | None = None


# --------------------------------------------------------------------------- helpers


def external_id(agent_id: str, account: str, remote_id: str) -> str:
    """The hub id of an imported external event: derived from where it lives, so that an
    import repeated after a lost status table finds the same appointment."""
    digest = hashlib.sha256(f"{agent_id}\x00{account}\x00{remote_id}".encode()).hexdigest()
    return f"ext-{digest[:24]}"


def sanitize_external(data: EventData) -> EventData:
    """What the hub keeps of an external event: a private one is busy time and nothing else."""
    if not data.private:
        return data
    return EventData(
        subject=PRIVATE_SUBJECT,
        start=data.start,
        end=data.end,
        private=True,
        show_as=data.show_as,
        timezone=data.timezone,
    )


def _norm(value: datetime | date) -> datetime | date:
    return as_utc(value) if isinstance(value, datetime) else value


def event_span(data: EventData) -> tuple[datetime, datetime]:
    """An event's start and end in UTC, as status rows keep them."""
    return as_utc(data.start), as_utc(data.end)


def status_in_window(status: SyncStatus, window: Window) -> bool:
    """Whether the pair's last known span overlaps the window."""
    if status.start is None or status.end is None:
        return True  # unknown span: treat as in the window, the safe side for the empty stop
    return window.overlaps(status.start, status.end)


def _relevant(status: SyncStatus, inp: ReconcileInput, touched: set[str]) -> bool:
    """Pairs wholly outside the window are left alone unless something about them moved."""
    return (
        status.state != SYNCED
        or status_in_window(status, inp.window)
        or (status.remote_id is not None and status.remote_id in touched)
        or status.appointment_id in inp.appointments
    )


def touched_remote_ids(fetch: FetchResult) -> set[str]:
    """The remote ids a fetch reported anything about (changed, deleted, left, unreadable)."""
    return (
        {e.remote_id for e in fetch.changed}
        | set(fetch.deleted)
        | set(fetch.left_window)
        | {s.remote_id for s in fetch.skipped}
    )


def wanted_appointment_ids(
    statuses: Iterable[SyncStatus],
    fetch: FetchResult,
    window: Window,
    extra_remote: Iterable[RemoteEvent] = (),
) -> set[str]:
    """Appointment ids the engine must load besides the window's: those of status rows that
    matter this pass and those named by fetched hub tags."""
    touched = touched_remote_ids(fetch)
    ids = {
        s.appointment_id
        for s in statuses
        if s.state != SYNCED
        or status_in_window(s, window)
        or (s.remote_id is not None and s.remote_id in touched)
    }
    ids.update(e.hub_id for e in (*fetch.changed, *extra_remote) if e.hub_id)
    return ids


def _snapshot(data: EventData, appt: Appointment | None = None) -> dict[str, Any]:
    snap = data.canonical()
    if appt is not None:
        snap["version"] = appt.version
        snap["updated_at"] = appt.updated_at.isoformat() if appt.updated_at else None
        snap["deleted"] = appt.deleted
    return snap


# --------------------------------------------------------------------------- reconcile


@dataclass(frozen=True, slots=True)
class _Pair:
    """The facts of one hub-owned pair, computed once, that its handlers decide on.

    ``status`` is None for a pair linked without a last-synced base; ``data`` is the hub
    appointment's rendering, None when the hub side is not alive (deleted, no longer synced,
    or gone); the hashes are of ``data`` and of the remote event's content.
    """

    status: SyncStatus | None
    appt: Appointment | None
    event: RemoteEvent | None
    appt_id: str
    remote_id: str | None
    version: str | None  # the remote version to send as precondition
    data: EventData | None
    hub_hash: str | None
    remote_hash: str | None
    gone: bool  # the remote event was deleted
    dirty: bool  # the status row must be rewritten even when nothing changed
    label: L | None  # the label the caller wants instead of the default

    @property
    def tombstone(self) -> bool:
        return self.appt is not None and self.appt.deleted

    @property
    def hub_changed(self) -> bool:
        """The hub side changed since the last sync (always, without a base)."""
        return self.data is not None and (
            self.status is None or self.hub_hash != self.status.hub_hash
        )

    @property
    def version_moved(self) -> bool:
        """The server bumped the version (content aside) since the last sync."""
        return (
            self.event is not None
            and self.status is not None
            and self.event.version != self.status.remote_version
        )

    @property
    def remote_changed(self) -> bool:
        """The remote side changed since the last sync (always, without a base)."""
        return self.event is not None and (
            self.status is None or self.remote_hash != self.status.remote_hash
        )


def reconcile(inp: ReconcileInput) -> Plan:
    """The plan for one pass of one agent calendar (see the module docstring)."""
    return _Reconciler(inp).run()


class _Reconciler:
    """One reconcile run; holds the indexes built from the input."""

    def __init__(self, inp: ReconcileInput) -> None:
        self.inp = inp
        self.plan = Plan()
        fetch = inp.fetch
        self.remote: dict[str, RemoteEvent] = {}
        for event in fetch.changed:
            self.remote.setdefault(event.remote_id, event)
        self.gone: set[str] = set(fetch.deleted)
        self.left: set[str] = set(fetch.left_window)
        self.bad: set[str] = {s.remote_id for s in fetch.skipped}
        self.touched = touched_remote_ids(fetch)
        self.statuses = [s for s in inp.statuses if _relevant(s, inp, self.touched)]
        self.by_remote: dict[str, SyncStatus] = {
            s.remote_id: s for s in inp.statuses if s.remote_id and s.state != CREATING
        }
        self.by_appt: dict[str, SyncStatus] = {s.appointment_id: s for s in inp.statuses}
        self.handled_remote: set[str] = set()
        self.handled_appt: set[str] = set()

    # -------------------------------------------------------------- phases

    def run(self) -> Plan:
        plan = self.plan
        plan.skipped.extend(Skip(s.remote_id, s.reason) for s in self.inp.fetch.skipped)
        if self._empty_stop():
            return plan
        self._request_lookups()
        if plan.needs_lookup:
            return plan
        self._merge_lookups()
        for status in self.statuses:
            self._pair(status)
        for event in list(self.remote.values()):
            if event.remote_id not in self.handled_remote:
                self._unmatched(event)
        for appt in self.inp.appointments.values():
            if appt.id not in self.handled_appt and appt.agent_id == self.inp.agent.id:
                self._unsynced(appt)
        return plan

    def _empty_stop(self) -> bool:
        inp = self.inp
        fetch = inp.fetch
        if not fetch.full or fetch.changed or fetch.skipped:
            return False
        known = [s for s in inp.statuses if s.remote_id and status_in_window(s, inp.window)]
        if not known:
            return False
        if inp.allow_empty:
            self.plan.used_empty_override = True
            return False
        self.plan.stop = (
            f"the remote calendar came back empty while {len(known)} synced event(s) are "
            "expected in the window; nothing was deleted. If the calendar really was emptied, "
            'sync once with {"allow_empty": true}'
        )
        return True

    def _request_lookups(self) -> None:
        inp = self.inp
        if inp.found is None:
            find = {s.appointment_id for s in inp.statuses if s.state == CREATING}
            find.update(self._unlinked_tombstones())
            self.plan.find = sorted(find)
        if inp.looked_up is not None:
            return
        need: list[str] = []
        for status in self.statuses:
            rid = status.remote_id
            if status.state == CREATING or rid is None or rid in self.remote or rid in self.gone:
                continue
            if rid in self.bad or (status.external and not inp.import_external):
                continue  # unreadable, or an import about to be removed anyway
            # Follow a drag out of the window, re-read a stale version, and never trust an
            # absence from a full listing: it may be a delete or a move out of the window.
            if rid in self.left or status.state == STALE or inp.fetch.full:
                need.append(rid)
        self.plan.get = sorted(set(need))

    def _unlinked_tombstones(self) -> set[str]:
        """Deleted appointments that were meant to be pushed but have no status row.

        Either they never reached the remote side, or their status row was lost (a lost status
        table, or a pass that failed before it re-linked everything). Only a lookup by hub id
        tells which: purging on a guess would leave the remote event orphaned forever.
        """
        inp = self.inp
        if inp.read_only:
            return set()
        tagged = {e.hub_id for e in self.remote.values() if e.hub_id}
        return {
            a.id
            for a in inp.appointments.values()
            if a.deleted
            and a.push_state is PushState.SYNC
            and a.agent_id == inp.agent.id
            and a.id not in self.by_appt
            and a.id not in tagged
        }

    def _merge_lookups(self) -> None:
        for rid, event in (self.inp.looked_up or {}).items():
            if event is not None:
                self.remote[rid] = event
            elif rid not in self.left:
                # A left_window id that is not found stays as it is: leaving never deletes.
                self.gone.add(rid)
        self.found = dict(self.inp.found or {})

    # -------------------------------------------------------------- pairs

    def _pair(self, status: SyncStatus) -> None:
        appt = self.inp.appointments.get(status.appointment_id)
        self.handled_appt.add(status.appointment_id)
        if status.state == CREATING:
            event = self.found.get(status.appointment_id)
            if event is None:
                # The crashed create never reached the server: drop the row; the appointment
                # is created again below when it still should be.
                self.handled_appt.discard(status.appointment_id)
                del self.by_appt[status.appointment_id]
                self.plan.hub.append(HubAction(L.FORGET, status.appointment_id, drop_status=True))
                return
            self.remote.setdefault(event.remote_id, event)
            event = self.remote[event.remote_id]
            # The event was created from the data whose hash the creating row holds.
            status = replace(
                status,
                remote_id=event.remote_id,
                remote_version=event.version,
                remote_hash=status.hub_hash,
                state=SYNCED,
            )
            self.by_appt[status.appointment_id] = status
            self.handled_remote.add(event.remote_id)
            self._owned(status, appt, event, gone=False, dirty=True, label=L.LINK)
            return
        rid = status.remote_id
        event = self.remote.get(rid) if rid else None
        if rid:
            self.handled_remote.add(rid)
        gone = rid is not None and rid in self.gone
        if status.external:
            self._external(status, appt, event, gone)
        else:
            self._owned(status, appt, event, gone=gone, dirty=status.state != SYNCED)

    def _owned(
        self,
        status: SyncStatus | None,
        appt: Appointment | None,
        event: RemoteEvent | None,
        *,
        gone: bool,
        dirty: bool = False,
        label: L | None = None,
    ) -> None:
        """Decide one hub-owned pair. ``status`` None: linked without a last-synced base."""
        pair = self._facts(status, appt, event, gone=gone, dirty=dirty, label=label)
        if pair is None:
            return  # the hub side cannot be rendered: skipped (see _render)
        if pair.gone:
            self._remote_gone(pair)
        elif pair.remote_id is None:
            return  # nothing remote to compare with yet
        elif pair.data is None:
            self._hub_side_gone(pair)
        else:
            self._both_alive(pair)

    def _facts(
        self,
        status: SyncStatus | None,
        appt: Appointment | None,
        event: RemoteEvent | None,
        *,
        gone: bool,
        dirty: bool,
        label: L | None,
    ) -> _Pair | None:
        """The pair's facts, each computed once (None: its hub side cannot be rendered)."""
        data: EventData | None = None
        if appt is not None and not appt.deleted and appt.push_state is PushState.SYNC:
            data = self._render(appt)
            if data is None:
                return None
        return _Pair(
            status=status,
            appt=appt,
            event=event,
            appt_id=status.appointment_id if status else (appt.id if appt else ""),
            remote_id=event.remote_id if event else (status.remote_id if status else None),
            version=event.version if event else (status.remote_version if status else None),
            data=data,
            hub_hash=data.content_hash() if data else None,
            remote_hash=event.data.content_hash() if event else None,
            gone=gone,
            dirty=dirty,
            label=label,
        )

    def _remote_gone(self, pair: _Pair) -> None:
        """The remote event was deleted: follow, restore, or (hub side gone too) forget."""
        appt, data = pair.appt, pair.data
        if appt is None or data is None:
            self.plan.hub.append(
                HubAction(
                    L.FORGET, pair.appt_id, purge=pair.tombstone, drop_status=not pair.tombstone
                )
            )
        elif pair.hub_changed and pair.status is not None:
            detail = "edited in the hub, deleted remotely"
            conflict = self._conflict(appt, data, None, "edit-beats-delete", detail)
            self._create(appt, data, L.RESTORE, conflict=conflict, replaces=pair.remote_id)
        elif self.inp.remote_delete is RemoteDelete.RESTORE:
            self._create(appt, data, L.RESTORE, replaces=pair.remote_id)
        else:
            self.plan.hub.append(
                HubAction(L.HUB_DELETE, pair.appt_id, delete=True, expect_version=appt.version)
            )

    def _hub_side_gone(self, pair: _Pair) -> None:
        """The appointment was deleted (or no longer syncs, or is gone): delete the remote
        event, unless the remote side was edited since, which beats a hub delete."""
        status, appt, event = pair.status, pair.appt, pair.event
        edited = pair.remote_changed if status is not None else self._edited_since(appt, event)
        if appt is not None and appt.deleted and event is not None and edited:
            detail = "deleted in the hub, edited remotely: the remote edit is kept"
            data = self._render(appt) or event.data
            conflict = self._conflict(appt, data, event, "edit-beats-delete", detail)
            revived = appt.evolve(deleted=False, deleted_at=None)
            self._flow_back(revived, event, L.UNDELETE, conflict=conflict, force_put=True)
            return
        if self.inp.read_only:
            return
        conflict = None
        if pair.remote_changed and status is not None and appt is None:
            conflict = self._orphan_conflict(pair)
        assert pair.remote_id is not None
        self.plan.remote_deletes.append(
            RemoteDeleteAction(
                L.REMOTE_DELETE,
                pair.remote_id,
                pair.version,
                appointment_id=pair.appt_id if status is not None else None,
                purge=pair.tombstone,
                drop_status=status is not None and not pair.tombstone,
                conflict=conflict,
            )
        )

    def _orphan_conflict(self, pair: _Pair) -> Conflict:
        """A remote edit of an appointment the hub no longer has: it is deleted, and said."""
        inp, event = self.inp, pair.event
        return Conflict(
            id=self._conflict_id(pair.appt_id, event),
            agent_id=inp.agent.id,
            appointment_id=pair.appt_id,
            account=inp.account,
            policy=inp.conflict.value,
            winner="hub",
            remote=_snapshot(event.data) if event else {},
            detail="the hub appointment no longer exists; the remote edit was deleted",
            created_at=inp.now,
        )

    def _both_alive(self, pair: _Pair) -> None:
        """Both sides exist: whichever changed since the last sync wins; both changed is a
        conflict for the policy; nothing changed refreshes the status row when needed."""
        appt, event, status = pair.appt, pair.event, pair.status
        assert appt is not None and pair.data is not None and pair.remote_id is not None
        if not (pair.hub_changed or pair.remote_changed):
            if status is not None and (pair.dirty or pair.version_moved):
                self._refresh_status(pair)
        elif event is not None and pair.hub_hash == pair.remote_hash:
            self._refresh_status(pair)  # both changed to the same content
        elif not pair.remote_changed:
            self._push_update(appt, pair.data, pair.remote_id, pair.version, label=L.UPDATE)
        elif not pair.hub_changed:
            assert event is not None
            self._flow_back(appt, event, pair.label or L.FLOW_BACK)
        else:
            self._both_changed(pair)

    def _refresh_status(self, pair: _Pair) -> None:
        assert pair.appt is not None
        self._status_action(
            pair.label or L.STATUS,
            pair.status,
            pair.appt.id,
            pair.event,
            pair.version,
            pair.hub_hash,
            pair.remote_hash,
        )

    def _both_changed(self, pair: _Pair) -> None:
        appt, data, event = pair.appt, pair.data, pair.event
        assert appt is not None and data is not None and event is not None
        assert pair.remote_id is not None
        if self._winner(appt, event) == "hub":
            conflict = self._conflict(appt, data, event, "hub", "both sides changed")
            self._push_update(
                appt, data, pair.remote_id, event.version, L.CONFLICT_HUB, conflict=conflict
            )
        else:
            conflict = self._conflict(appt, data, event, "remote", "both sides changed")
            self._flow_back(appt, event, L.CONFLICT_REMOTE, conflict=conflict)

    def _winner(self, appt: Appointment, event: RemoteEvent) -> str:
        policy = self.inp.conflict
        if policy is ConflictPolicy.HUB:
            return "hub"
        if policy is ConflictPolicy.REMOTE:
            return "remote"
        # newest: the remote change time when the provider reports one, else the fetch time
        # (the edit happened at the latest then). Ties go to the remote side.
        remote_at = as_utc(event.modified) if event.modified else as_utc(self.inp.now)
        hub_at = as_utc(appt.updated_at) if appt.updated_at else None
        return "hub" if hub_at is not None and hub_at > remote_at else "remote"

    def _flow_back(
        self,
        appt: Appointment,
        event: RemoteEvent,
        label: L,
        *,
        conflict: Conflict | None = None,
        force_put: bool = False,
    ) -> None:
        """Take what may flow back from ``event`` into ``appt``; push the rest back."""
        remote = event.data
        changes: dict[str, Any] = {"start": _norm(remote.start), "end": _norm(remote.end)}
        if appt.kind is Kind.MANUAL:
            current = self._render(appt)
            if current is not None:
                canon, rcanon = current.canonical(), remote.canonical()
                if canon["subject"] != rcanon["subject"]:
                    changes["subject_override"] = remote.subject
                if canon["body"] != rcanon["body"]:
                    changes["body_override"] = remote.body
        updated = appt.evolve(**changes)
        data = self._render(updated)
        if data is None:
            return
        put = updated if (force_put or updated != appt) else None
        digest, remote_digest = data.content_hash(), remote.content_hash()
        if digest == remote_digest:
            status = self._status(
                appt.id, event.remote_id, event.version, remote, digest, remote_digest
            )
            self.plan.hub.append(
                HubAction(label, appt.id, put=put, status=status, conflict=conflict)
            )
            return
        # Generated content (A/B subject and body, the hub's own fields) is not taken from
        # the remote side: push the hub's rendering back, keeping the remote's times.
        rcanon = remote.canonical()
        rejected = sorted(k for k, v in data.canonical().items() if v != rcanon[k])
        self._push_update(
            appt,
            data,
            event.remote_id,
            event.version,
            label,
            hub_put=put,
            conflict=conflict,
            audit=("remote-edit-not-taken", {"fields": rejected, "remote_id": event.remote_id}),
        )

    def _external(
        self,
        status: SyncStatus,
        appt: Appointment | None,
        event: RemoteEvent | None,
        gone: bool,
    ) -> None:
        appt_id = status.appointment_id
        if not self.inp.import_external:
            self.plan.hub.append(
                HubAction(L.UNIMPORT, appt_id, delete=appt is not None, drop_status=appt is None)
            )
            return
        if gone:
            self.plan.hub.append(
                HubAction(L.HUB_DELETE, appt_id, delete=appt is not None, drop_status=appt is None)
            )
            return
        if event is None:
            return
        data = sanitize_external(event.data)
        digest = data.content_hash()
        if digest != status.remote_hash or appt is None or appt.deleted:
            self._import(event, appt_id, appt, L.PULL)
        elif event.version != status.remote_version or status.state != SYNCED:
            self.plan.hub.append(
                HubAction(L.STATUS, appt_id, status=self._ext_status(appt_id, event, data))
            )

    # -------------------------------------------------------------- unmatched

    def _unmatched(self, event: RemoteEvent) -> None:
        """A fetched event no status row knows by its remote id."""
        self.handled_remote.add(event.remote_id)
        inp = self.inp
        if event.hub_id is None:
            self._unmatched_external(event)
            return
        appt = inp.appointments.get(event.hub_id)
        if appt is not None and (appt.agent_id != inp.agent.id or appt.kind is Kind.EXTERNAL):
            self.plan.skipped.append(
                Skip(event.remote_id, f"tagged with hub id {event.hub_id} of another calendar")
            )
            return
        status = self.by_appt.get(event.hub_id)
        if status is not None and status.remote_id not in (None, event.remote_id):
            if status.state != CREATING and not inp.read_only:
                # Another remote event already carries this hub id: this one is a duplicate.
                self.plan.remote_deletes.append(
                    RemoteDeleteAction(L.DUPLICATE, event.remote_id, event.version)
                )
            return
        if appt is None:
            if not inp.read_only:
                self.plan.remote_deletes.append(
                    RemoteDeleteAction(L.ORPHAN, event.remote_id, event.version)
                )
            return
        if appt.id in self.handled_appt:
            return
        self.handled_appt.add(appt.id)
        if appt.deleted and self._edited_since(appt, event):
            # No status row to tell what changed: a remote event that differs from what the
            # hub last had is an edit, and an edit beats the hub's delete.
            self._owned(None, appt, event, gone=False, dirty=True)
            return
        if appt.deleted or appt.push_state is not PushState.SYNC:
            if not inp.read_only:
                self.plan.remote_deletes.append(
                    RemoteDeleteAction(
                        L.REMOTE_DELETE,
                        event.remote_id,
                        event.version,
                        appointment_id=appt.id,
                        purge=appt.deleted,
                    )
                )
            return
        self._owned(None, appt, event, gone=False, dirty=True, label=L.LINK)

    def _edited_since(self, appt: Appointment | None, event: RemoteEvent | None) -> bool:
        """Without a status row: does the remote event differ from the hub's rendering?"""
        if appt is None or event is None:
            return False
        data = self._render(appt)
        return data is not None and data.content_hash() != event.data.content_hash()

    def _unmatched_external(self, event: RemoteEvent) -> None:
        inp = self.inp
        if not inp.import_external:
            return
        data = sanitize_external(event.data)
        if not inp.window.overlaps(data.start, data.end):
            return
        appt_id = external_id(inp.agent.id, inp.account, event.remote_id)
        self.handled_appt.add(appt_id)
        self._import(event, appt_id, inp.appointments.get(appt_id), L.IMPORT)

    def _import(self, event: RemoteEvent, appt_id: str, appt: Appointment | None, label: L) -> None:
        data = sanitize_external(event.data)
        fields: dict[str, Any] = {
            "start": _norm(data.start),
            "end": _norm(data.end),
            "subject": data.subject,
            "note": data.body,
            "location": data.location,
            "private": data.private,
            "show_as": data.show_as,
            "deleted": False,
            "deleted_at": None,
        }
        if appt is None:
            put = Appointment(
                id=appt_id,
                agent_id=self.inp.agent.id,
                kind=Kind.EXTERNAL,
                push_state=PushState.EXTERNAL,
                **fields,
            )
        else:
            put = appt.evolve(**fields)
        self.plan.hub.append(
            HubAction(label, appt_id, put=put, status=self._ext_status(appt_id, event, data))
        )

    def _unsynced(self, appt: Appointment) -> None:
        """A hub appointment with no status row and no remote event found for it."""
        inp = self.inp
        if appt.deleted:
            event = self.found.get(appt.id)
            if event is not None and event.remote_id not in self.handled_remote:
                self.handled_remote.add(event.remote_id)
                if self._edited_since(appt, event):
                    # An edit beats the hub's delete, as for any unlinked tagged event.
                    self._owned(None, appt, event, gone=False, dirty=True)
                else:
                    self.plan.remote_deletes.append(
                        RemoteDeleteAction(
                            L.REMOTE_DELETE,
                            event.remote_id,
                            event.version,
                            appointment_id=appt.id,
                            purge=True,
                        )
                    )
                return
            self.plan.hub.append(HubAction(L.PURGE, appt.id, purge=True))
            return
        if appt.kind is Kind.EXTERNAL:
            if not inp.import_external:
                self.plan.hub.append(HubAction(L.UNIMPORT, appt.id, delete=True))
            elif inp.fetch.full and inp.window.overlaps(appt.start, appt.end):
                # A full listing would have matched it by its derived id: the agent's event
                # is gone (or moved out of the window, where the hub does not need a copy).
                self.plan.hub.append(HubAction(L.HUB_DELETE, appt.id, delete=True))
            return
        if appt.push_state is not PushState.SYNC or inp.read_only:
            return
        if not inp.window.overlaps(appt.start, appt.end):
            return
        data = self._render(appt)
        if data is None:
            return
        conflict = None
        if inp.status_lost:
            # With the sync records gone, "never pushed" and "deleted by the agent" look the
            # same: re-create (nothing is lost) and say so.
            conflict = Conflict(
                id=self._conflict_id(appt.id, None),
                agent_id=inp.agent.id,
                appointment_id=appt.id,
                account=inp.account,
                policy=inp.remote_delete.value,
                winner="hub",
                hub=_snapshot(data, appt),
                remote={"missing": True},
                detail="sync records were lost and the event was missing remotely: created "
                "again (it may have been deleted in the agent's calendar)",
                created_at=inp.now,
            )
        self._create(appt, data, L.CREATE, conflict=conflict)

    # -------------------------------------------------------------- builders

    def _render(self, appt: Appointment) -> EventData | None:
        try:
            return self.inp.render(appt)
        except Exception as exc:  # one bad appointment must not stop the calendar
            self.plan.skipped.append(Skip(appt.id, f"cannot render: {exc}"))
            return None

    def _create(
        self,
        appt: Appointment,
        data: EventData,
        label: L,
        *,
        conflict: Conflict | None = None,
        replaces: str | None = None,
    ) -> None:
        if self.inp.read_only:
            self.plan.skipped.append(Skip(appt.id, "the provider is read-only"))
            return
        self.plan.pushes.append(
            PushAction(label, appt.id, data, conflict=conflict, replaces=replaces)
        )

    def _push_update(
        self,
        appt: Appointment,
        data: EventData,
        remote_id: str,
        version: str | None,
        label: L,
        **extra: Any,
    ) -> None:
        if self.inp.read_only:
            self.plan.skipped.append(Skip(appt.id, "the provider is read-only"))
            return
        self.plan.pushes.append(
            PushAction(label, appt.id, data, remote_id=remote_id, version=version, **extra)
        )

    def _status(
        self,
        appt_id: str,
        remote_id: str,
        version: str | None,
        remote_data: EventData,
        hub_hash: str | None,
        remote_hash: str | None,
    ) -> SyncStatus:
        """The synced row of a pair; the caller passes the content hashes it already has."""
        start, end = event_span(remote_data)
        return SyncStatus(
            agent_id=self.inp.agent.id,
            appointment_id=appt_id,
            account=self.inp.account,
            remote_id=remote_id,
            remote_version=version,
            hub_hash=hub_hash,
            remote_hash=remote_hash,
            start=start,
            end=end,
        )

    def _status_action(
        self,
        label: L,
        status: SyncStatus | None,
        appt_id: str,
        event: RemoteEvent | None,
        version: str | None,
        hub_hash: str | None,
        remote_hash: str | None,
    ) -> None:
        if event is None:
            if status is None or status.remote_id is None:
                return
            new = replace(status, state=SYNCED, remote_version=version)
        else:
            new = self._status(
                appt_id, event.remote_id, event.version, event.data, hub_hash, remote_hash
            )
        self.plan.hub.append(HubAction(label, appt_id, status=new))

    def _ext_status(self, appt_id: str, event: RemoteEvent, data: EventData) -> SyncStatus:
        start, end = event_span(data)
        digest = data.content_hash()  # an import's hub copy is the remote content
        return SyncStatus(
            agent_id=self.inp.agent.id,
            appointment_id=appt_id,
            account=self.inp.account,
            remote_id=event.remote_id,
            remote_version=event.version,
            hub_hash=digest,
            remote_hash=digest,
            external=True,
            series_id=event.series_id,
            start=start,
            end=end,
        )

    def _conflict_id(self, appt_id: str, event: RemoteEvent | None) -> str:
        appt = self.inp.appointments.get(appt_id)
        key = "\x00".join(
            (
                self.inp.agent.id,
                self.inp.account,
                appt_id,
                str(appt.version) if appt else "-",
                event.version if event else "-",
                self.inp.now.isoformat(),
            )
        )
        return "cf-" + hashlib.sha256(key.encode()).hexdigest()[:20]

    def _conflict(
        self,
        appt: Appointment,
        data: EventData,
        event: RemoteEvent | None,
        winner: str,
        detail: str,
    ) -> Conflict:
        inp = self.inp
        return Conflict(
            id=self._conflict_id(appt.id, event),
            agent_id=inp.agent.id,
            appointment_id=appt.id,
            account=inp.account,
            policy=inp.conflict.value,
            winner=winner,
            hub=_snapshot(data, appt),
            remote=_snapshot(event.data) if event is not None else {"deleted": True},
            detail=detail,
            created_at=inp.now,
        )


__all__ = [
    "CREATING",
    "STALE",
    "SYNCED",
    "HubAction",
    "Plan",
    "PushAction",
    "ReconcileInput",
    "RemoteDeleteAction",
    "Skip",
    "event_span",
    "external_id",
    "reconcile",
    "sanitize_external",
    "status_in_window",
    "touched_remote_ids",
    "wanted_appointment_ids",
]
