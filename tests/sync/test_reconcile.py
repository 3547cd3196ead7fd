"""Pure reconcile: one table row per rule of DESIGN.md "Sync semantics" (no store, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.model import (
    Agent,
    Appointment,
    ConflictPolicy,
    Kind,
    PushState,
    RemoteDelete,
    SyncStatus,
)
from hub.reconcile import (
    Plan,
    ReconcileInput,
    external_id,
    reconcile,
    sanitize_external,
)
from hub.spec import PRIVATE_SUBJECT, EventData, FetchResult, RemoteEvent, SkippedEvent
from hub.window import sync_window

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
WINDOW = sync_window(NOW, 7, 60)
AGENT = Agent("alice", "Alice", "alice@example.com", "mem")
T1 = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)
T2 = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)
FAR = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


def render(appt: Appointment) -> EventData:
    """A small stand-in for hub.render: A/B subjects are generated, C subjects are booked."""
    if appt.kind is Kind.EXTERNAL:
        return EventData(appt.subject, appt.start, appt.end, body=appt.note)
    subject = appt.subject_override or (
        appt.subject if appt.kind is Kind.MANUAL else f"[#{appt.request_id}] planned"
    )
    body = appt.body_override if appt.body_override is not None else appt.note
    return EventData(subject, appt.start, appt.end, body=body)


def appt(
    appt_id: str = "a1",
    kind: Kind = Kind.PLANNED,
    start: datetime = T1,
    **extra: Any,
) -> Appointment:
    return Appointment(
        id=appt_id,
        agent_id="alice",
        kind=kind,
        start=start,
        end=start + timedelta(hours=1),
        subject="Visit" if kind is Kind.MANUAL else "",
        request_id="R1",
        updated_at=NOW - timedelta(hours=1),
        **extra,
    )


def synced(a: Appointment, remote_id: str = "r1", version: str = "v1", **extra: Any) -> SyncStatus:
    """The status row of a pair last synced with the hub's current rendering."""
    data = render(a)
    return SyncStatus(
        agent_id="alice",
        appointment_id=a.id,
        account="mem",
        remote_id=remote_id,
        remote_version=version,
        hub_hash=data.content_hash(),
        remote_hash=data.content_hash(),
        start=T1,
        end=T1 + timedelta(hours=1),
        **extra,
    )


def remote_of(
    a: Appointment, remote_id: str = "r1", version: str = "v2", **changes: Any
) -> RemoteEvent:
    return RemoteEvent(remote_id, version, replace(render(a), **changes), hub_id=a.id)


def external(remote_id: str = "x1", start: datetime = T1, **extra: Any) -> RemoteEvent:
    data = EventData("Dentist", start, start + timedelta(hours=1), **extra)
    return RemoteEvent(remote_id, "v1", data)


@dataclass
class Case:
    """One reconcile: hub appointments, status rows, what fetch returned, settings."""

    appts: list[Appointment] = field(default_factory=list)
    statuses: list[SyncStatus] = field(default_factory=list)
    fetch: FetchResult = field(default_factory=FetchResult)
    settings: dict[str, Any] = field(default_factory=dict)

    def input(self) -> ReconcileInput:
        return ReconcileInput(
            agent=AGENT,
            account="mem",
            window=WINDOW,
            now=NOW,
            appointments={a.id: a for a in self.appts},
            statuses=self.statuses,
            fetch=self.fetch,
            render=render,
            **self.settings,
        )

    def plan(self) -> Plan:
        return reconcile(self.input())


A = appt()
C = appt("c1", Kind.MANUAL)


def test_unchanged_calendar_plans_nothing() -> None:
    plan = Case([A], [synced(A)]).plan()
    assert plan.empty and not plan.needs_lookup and plan.skipped == []


def test_version_bump_alone_only_refreshes_the_status() -> None:
    plan = Case([A], [synced(A)], FetchResult([remote_of(A, version="v9")])).plan()
    assert plan.labels() == ["status"]
    assert plan.hub[0].status is not None and plan.hub[0].status.remote_version == "v9"
    assert plan.hub[0].put is None


def test_new_hub_appointment_in_the_window_is_created() -> None:
    plan = Case([A]).plan()
    assert plan.labels() == ["create"]
    assert plan.pushes[0].remote_id is None and plan.pushes[0].data == render(A)


@pytest.mark.parametrize("push_state", [PushState.LOCAL, PushState.PENDING, PushState.REJECTED])
def test_appointments_not_meant_for_the_calendar_are_not_pushed(push_state: PushState) -> None:
    assert Case([replace(A, push_state=push_state)]).plan().empty


def test_appointment_outside_the_window_is_not_created() -> None:
    assert Case([appt(start=FAR)]).plan().empty


def test_hub_change_is_pushed_with_the_last_version_as_precondition() -> None:
    moved = replace(A, start=T2, end=T2 + timedelta(hours=1))
    plan = Case([moved], [synced(A)]).plan()
    assert plan.labels() == ["update"]
    push = plan.pushes[0]
    assert (push.remote_id, push.version, push.data.start) == ("r1", "v1", T2)


def test_remote_move_flows_back_into_the_hub() -> None:
    event = remote_of(A, start=T2, end=T2 + timedelta(hours=2))
    plan = Case([A], [synced(A)], FetchResult([event])).plan()
    assert plan.labels() == ["flow-back"]
    put = plan.hub[0].put
    assert put is not None and (put.start, put.end) == (T2, T2 + timedelta(hours=2))
    assert plan.pushes == []


def test_remote_subject_of_a_planned_appointment_is_pushed_back_with_its_times() -> None:
    event = remote_of(A, subject="mine now", start=T2, end=T2 + timedelta(hours=1))
    plan = Case([A], [synced(A)], FetchResult([event])).plan()
    (push,) = plan.pushes
    assert push.label == "flow-back" and push.version == "v2"
    assert (push.data.subject, push.data.start) == ("[#R1] planned", T2)
    assert push.hub_put is not None and push.hub_put.start == T2
    assert push.audit is not None and push.audit[1]["fields"] == ["subject"]


def test_remote_subject_and_body_of_a_manual_appointment_become_overrides() -> None:
    event = remote_of(C, subject="Visit 2", body="call first")
    plan = Case([C], [synced(C)], FetchResult([event])).plan()
    assert plan.labels() == ["flow-back"] and plan.pushes == []
    put = plan.hub[0].put
    assert put is not None
    assert (put.subject_override, put.body_override) == ("Visit 2", "call first")


def test_remote_delete_follows_by_default_and_restores_on_request() -> None:
    fetch = FetchResult(deleted=["r1"])
    assert Case([A], [synced(A)], fetch).plan().labels() == ["hub-delete"]
    restore = Case([A], [synced(A)], fetch, {"remote_delete": RemoteDelete.RESTORE}).plan()
    assert restore.labels() == ["restore"] and restore.pushes[0].remote_id is None
    assert restore.pushes[0].replaces == "r1"  # a restore is not a retry of the first create


def test_hub_delete_deletes_remotely_with_the_version() -> None:
    plan = Case([replace(A, deleted=True)], [synced(A)]).plan()
    (delete,) = plan.remote_deletes
    assert (delete.label, delete.remote_id, delete.version, delete.purge) == (
        "remote-delete",
        "r1",
        "v1",
        True,
    )


def test_hub_edit_beats_remote_delete_and_is_recorded() -> None:
    moved = replace(A, start=T2, end=T2 + timedelta(hours=1))
    plan = Case([moved], [synced(A)], FetchResult(deleted=["r1"])).plan()
    assert plan.labels() == ["restore"]
    (conflict,) = plan.conflicts()
    assert conflict.winner == "edit-beats-delete" and conflict.remote == {"deleted": True}


def test_remote_edit_beats_hub_delete_and_is_recorded() -> None:
    event = remote_of(A, start=T2, end=T2 + timedelta(hours=1))
    plan = Case([replace(A, deleted=True)], [synced(A)], FetchResult([event])).plan()
    assert plan.labels() == ["undelete"]
    put = plan.hub[0].put
    assert put is not None and not put.deleted and put.start == T2
    assert plan.conflicts()[0].winner == "edit-beats-delete"


def test_both_deleted_forgets_the_pair() -> None:
    plan = Case([replace(A, deleted=True)], [synced(A)], FetchResult(deleted=["r1"])).plan()
    assert plan.labels() == ["forget"] and plan.hub[0].purge


@pytest.mark.parametrize(
    ("policy", "hub_updated", "modified", "winner", "label"),
    [
        (ConflictPolicy.HUB, NOW, None, "hub", "conflict-hub"),
        (ConflictPolicy.REMOTE, NOW, None, "remote", "conflict-remote"),
        (
            ConflictPolicy.NEWEST,
            NOW - timedelta(minutes=1),
            NOW - timedelta(minutes=5),
            "hub",
            "conflict-hub",
        ),
        (
            ConflictPolicy.NEWEST,
            NOW - timedelta(minutes=9),
            NOW - timedelta(minutes=5),
            "remote",
            "conflict-remote",
        ),
        # No remote change time: it is dated at the fetch (now), so the remote side wins.
        (ConflictPolicy.NEWEST, NOW - timedelta(minutes=1), None, "remote", "conflict-remote"),
        # A tie goes to the remote side.
        (
            ConflictPolicy.NEWEST,
            NOW - timedelta(minutes=5),
            NOW - timedelta(minutes=5),
            "remote",
            "conflict-remote",
        ),
    ],
)
def test_both_changed_the_policy_picks_and_both_sides_are_recorded(
    policy: ConflictPolicy,
    hub_updated: datetime,
    modified: datetime | None,
    winner: str,
    label: str,
) -> None:
    hub = replace(C, note="hub note", updated_at=hub_updated)
    event = replace(remote_of(C, subject="remote subject"), modified=modified)
    plan = Case([hub], [synced(C)], FetchResult([event]), {"conflict": policy}).plan()
    assert plan.labels() == [label]
    (conflict,) = plan.conflicts()
    assert (conflict.winner, conflict.policy) == (winner, policy.value)
    assert conflict.hub["body"] == "hub note" and conflict.remote["subject"] == "remote subject"


def test_both_changed_to_the_same_content_is_no_conflict() -> None:
    moved = replace(A, start=T2, end=T2 + timedelta(hours=1))
    event = remote_of(moved)
    plan = Case([moved], [synced(A)], FetchResult([event])).plan()
    assert plan.labels() == ["status"] and plan.conflicts() == []


def test_externals_are_imported_only_when_import_is_on() -> None:
    fetch = FetchResult([external()])
    assert Case(fetch=fetch).plan().empty
    plan = Case(fetch=fetch, settings={"import_external": True}).plan()
    assert plan.labels() == ["import"]
    put = plan.hub[0].put
    assert (
        put is not None
        and put.kind is Kind.EXTERNAL
        and put.id == external_id("alice", "mem", "x1")
    )
    assert plan.hub[0].status is not None and plan.hub[0].status.external


def test_private_external_keeps_nothing_but_busy_time() -> None:
    secret = external(private=True, body="diagnosis", location="clinic", show_as="oof")
    plan = Case(fetch=FetchResult([secret]), settings={"import_external": True}).plan()
    put, status = plan.hub[0].put, plan.hub[0].status
    assert put is not None and status is not None
    assert (put.subject, put.note, put.location, put.show_as) == (PRIVATE_SUBJECT, "", "", "oof")
    clean = sanitize_external(secret.data)
    assert status.remote_hash == clean.content_hash() != secret.data.content_hash()


def test_import_off_removes_imported_externals() -> None:
    ext_id = external_id("alice", "mem", "x1")
    imported = Appointment(ext_id, "alice", Kind.EXTERNAL, T1, T1 + timedelta(hours=1))
    status = SyncStatus("alice", ext_id, "mem", "x1", "v1", "h", "h", external=True)
    plan = Case([imported], [status]).plan()
    assert plan.labels() == ["unimport"] and plan.hub[0].delete


def test_external_is_never_deleted_remotely() -> None:
    ext_id = external_id("alice", "mem", "x1")
    tomb = Appointment(ext_id, "alice", Kind.EXTERNAL, T1, T1 + timedelta(hours=1), deleted=True)
    status = SyncStatus("alice", ext_id, "mem", "x1", "v1", "h", "h", external=True)
    plan = Case([tomb], [status], settings={"import_external": True}).plan()
    assert plan.remote_deletes == []


def test_left_window_is_looked_up_and_never_deleted() -> None:
    case = Case([A], [synced(A)], FetchResult(left_window=["r1"]))
    assert case.plan().get == ["r1"]
    gone = reconcile(replace(case.input(), looked_up={"r1": None}, found={}))
    assert gone.empty  # not found after leaving the window: still not a delete
    moved = remote_of(A, start=FAR, end=FAR + timedelta(hours=1))
    follow = reconcile(replace(case.input(), looked_up={"r1": moved}, found={}))
    assert follow.labels() == ["flow-back"]


def test_missing_from_a_full_listing_is_verified_before_deleting() -> None:
    other = appt("a2", start=T2)
    case = Case(
        [A, other],
        [synced(A), synced(other, "r2")],
        FetchResult([remote_of(other, "r2", "v1")], full=True),
    )
    assert case.plan().get == ["r1"] and case.plan().empty
    deleted = reconcile(replace(case.input(), looked_up={"r1": None}, found={}))
    assert deleted.labels() == ["hub-delete"]


def test_full_listing_suddenly_empty_stops_unless_allowed() -> None:
    case = Case([A], [synced(A)], FetchResult(full=True))
    plan = case.plan()
    assert plan.stop and "empty" in plan.stop and plan.empty and not plan.get
    allowed = replace(case.input(), allow_empty=True)
    assert reconcile(allowed).used_empty_override
    assert reconcile(allowed).get == ["r1"]


def test_incremental_fetch_with_nothing_is_not_an_empty_calendar() -> None:
    assert Case([A], [synced(A)], FetchResult(full=False)).plan().stop is None


def test_crashed_create_is_found_and_linked() -> None:
    creating = replace(synced(A), remote_id=None, remote_version=None, state="creating")
    case = Case([A], [creating])
    assert case.plan().find == ["a1"]
    found = remote_of(A, "r7", "v1")
    plan = reconcile(replace(case.input(), found={"a1": found}, looked_up={}))
    assert plan.labels() == ["link"] and plan.pushes == []
    status = plan.hub[0].status
    assert status is not None and (status.remote_id, status.state) == ("r7", "synced")


def test_crashed_create_that_never_happened_is_created_again() -> None:
    creating = replace(synced(A), remote_id=None, remote_version=None, state="creating")
    plan = reconcile(replace(Case([A], [creating]).input(), found={}, looked_up={}))
    assert sorted(plan.labels()) == ["create", "forget"]


def test_tombstone_without_status_is_looked_up_before_it_is_purged() -> None:
    # Its status row was lost: only a lookup by hub id tells "never pushed" from "pushed".
    gone = A.evolve(deleted=True, version=2)
    case = Case([gone], [])
    assert case.plan().find == ["a1"]
    found = remote_of(A, "r7", "v3")
    plan = reconcile(replace(case.input(), found={"a1": found}, looked_up={}))
    assert [(d.label, d.remote_id, d.purge) for d in plan.remote_deletes] == [
        ("remote-delete", "r7", True)
    ]
    never_pushed = reconcile(replace(case.input(), found={}, looked_up={}))
    assert never_pushed.labels() == ["purge"] and never_pushed.remote_deletes == []


def test_tombstone_whose_event_found_by_hub_id_was_edited_is_undeleted() -> None:
    # No status row and a delta without hub ids (Graph): only find() shows the edit, and an
    # edit beats the hub's delete there too.
    gone = A.evolve(deleted=True, version=2)
    edited = remote_of(A, "r7", "v3", start=T2, end=T2 + timedelta(hours=1))
    plan = reconcile(replace(Case([gone], []).input(), found={"a1": edited}, looked_up={}))
    assert plan.labels() == ["undelete"] and plan.remote_deletes == []
    (put,) = [a.put for a in plan.hub if a.put is not None]
    assert not put.deleted and put.start == T2
    assert plan.conflicts()[0].winner == "edit-beats-delete"


def test_local_tombstone_is_purged_without_a_lookup() -> None:
    gone = A.evolve(deleted=True, push_state=PushState.LOCAL)
    plan = Case([gone], []).plan()
    assert plan.find == [] and plan.labels() == ["purge"]


def test_tagged_event_without_status_is_linked_not_imported() -> None:
    plan = Case([A], [], FetchResult([remote_of(A)]), {"import_external": True}).plan()
    assert plan.labels() == ["link"] and plan.pushes == []


def test_tagged_event_of_a_purged_appointment_is_deleted() -> None:
    plan = Case([], [], FetchResult([remote_of(A)])).plan()
    # With the version seen: an edit made since is not deleted unseen (precondition).
    assert [(d.label, d.remote_id, d.version) for d in plan.remote_deletes] == [
        ("orphan", "r1", "v2")
    ]


def test_second_event_with_the_same_hub_id_is_a_duplicate() -> None:
    fetch = FetchResult([remote_of(A, "r1", "v1"), remote_of(A, "r2", "v5")])
    plan = Case([A], [synced(A)], fetch).plan()
    assert [(d.label, d.remote_id, d.version) for d in plan.remote_deletes] == [
        ("duplicate", "r2", "v5")
    ]


def test_stale_pair_is_reread_before_deciding() -> None:
    plan = Case([A], [synced(A, state="stale")]).plan()
    assert plan.get == ["r1"]


def test_unreadable_remote_event_is_skipped_with_its_reason() -> None:
    fetch = FetchResult([external("x2")], skipped=[SkippedEvent("x9", "no DTSTART")])
    plan = Case(fetch=fetch, settings={"import_external": True}).plan()
    assert [str(s) for s in plan.skipped] == ["x9: no DTSTART"]
    assert plan.labels() == ["import"]


def test_unrenderable_appointment_is_skipped_and_the_rest_planned() -> None:
    def fragile(a: Appointment) -> EventData:
        if a.id == "bad":
            raise ValueError("template exploded")
        return render(a)

    inp = replace(Case([A, appt("bad", start=T2)]).input(), render=fragile)
    plan = reconcile(inp)
    assert plan.labels() == ["create"]
    assert [s.item for s in plan.skipped] == ["bad"]


def test_read_only_provider_is_never_written() -> None:
    moved = replace(A, start=T2, end=T2 + timedelta(hours=1))
    plan = Case([moved, appt("a2")], [synced(A)], settings={"read_only": True}).plan()
    assert plan.pushes == [] and plan.remote_deletes == []


def test_without_status_a_remote_edit_still_beats_a_hub_delete() -> None:
    tomb = replace(A, deleted=True)
    untouched = Case([tomb], [], FetchResult([remote_of(A)], full=True)).plan()
    assert [d.label for d in untouched.remote_deletes] == ["remote-delete"]
    edited = remote_of(A, start=T2, end=T2 + timedelta(hours=1))
    plan = Case([tomb], [], FetchResult([edited], full=True)).plan()
    assert plan.labels() == ["undelete"] and plan.remote_deletes == []
    assert plan.conflicts()[0].winner == "edit-beats-delete"


def test_lost_status_table_records_every_recreate_as_a_conflict() -> None:
    plan = Case([A], [], FetchResult(full=True), {"status_lost": True}).plan()
    assert plan.labels() == ["create"]
    (conflict,) = plan.conflicts()
    assert conflict.appointment_id == "a1" and conflict.remote == {"missing": True}
    assert Case([A], [], FetchResult(full=True)).plan().conflicts() == []


def test_import_without_status_absent_from_a_full_listing_is_removed() -> None:
    ext_id = external_id("alice", "mem", "x1")
    imported = Appointment(ext_id, "alice", Kind.EXTERNAL, T1, T1 + timedelta(hours=1))
    on = {"import_external": True}
    assert Case([imported], [], FetchResult(full=True), on).plan().labels() == ["hub-delete"]
    assert Case([imported], [], FetchResult(full=False), on).plan().empty


def test_a_full_listing_never_removes_an_import_outside_the_window() -> None:
    # Loaded although outside the window (the engine loads what status rows and tags name),
    # with no status row: the full listing cannot have it, and that is no delete.
    ext_id = external_id("alice", "mem", "x1")
    past = WINDOW.start - timedelta(days=3)
    imported = Appointment(ext_id, "alice", Kind.EXTERNAL, past, past + timedelta(hours=1))
    on = {"import_external": True}
    assert Case([imported], [], FetchResult(full=True), on).plan().empty
