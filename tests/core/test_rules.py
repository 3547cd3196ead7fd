"""Appointment rules A, B, C, edits, policies and approvals (hub/rules.py) on a real SqliteStore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from hub.config import HubSettings
from hub.model import Agent, Appointment, Kind, Policy, PushState, SyncStatus
from hub.rules import (
    Action,
    Booking,
    Change,
    Invalid,
    NotFound,
    Plan,
    Rules,
    StateConflict,
)
from hub.store.sqlite import SqliteStore
from tests.core.admin_support import add_external

T9 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    async with store.transaction("config") as tx:
        # Alice syncs to an account (her tombstones wait for sync); Bob and Carol do not.
        await tx.put_agent(Agent(id="alice", name="Alice", feed_token="fa", account="o365"))
        await tx.put_agent(Agent(id="bob", name="Bob", feed_token="fb"))
        await tx.put_agent(
            Agent(id="carol", name="Carol", feed_token="fc", create_appointments=Policy.ASK)
        )
    yield store
    await store.close()


def rules_for(store: SqliteStore, **settings: object) -> Rules:
    return Rules(store, HubSettings(**settings))  # type: ignore[arg-type]


@pytest.fixture
def rules(store: SqliteStore) -> Rules:
    return rules_for(store, default_estimate=timedelta(minutes=90))


async def planned(store: SqliteStore, request_id: str = "42") -> dict[str, Appointment]:
    appts = await store.list_appointments(request_id=request_id, kind=Kind.PLANNED)
    assert len({a.agent_id for a in appts}) == len(appts), "two planned entries for one agent"
    return {a.agent_id: a for a in appts}


# --------------------------------------------------------------------------- A


async def test_plan_makes_one_entry_per_agent_with_the_default_estimate(
    rules: Rules, store: SqliteStore
) -> None:
    made = await rules.plan("42", Plan(agents=("alice", "bob"), start=T9, subject="Printer"))
    assert [a.agent_id for a in made] == ["alice", "bob"]
    for appt in made:
        assert appt.kind is Kind.PLANNED
        assert (appt.start, appt.end) == (T9, T9 + timedelta(minutes=90))
        assert appt.push_state is PushState.SYNC
        assert appt.origin == "rule"
    request = await store.get_request("42")
    assert request is not None
    assert (request.subject, request.planned_agents) == ("Printer", ("alice", "bob"))


async def test_replanning_moves_the_same_appointment(rules: Rules, store: SqliteStore) -> None:
    (first,) = await rules.plan("42", Plan(agents=("alice",), start=T9))
    later = T9 + timedelta(days=1)
    (moved,) = await rules.plan("42", Plan(agents=("alice",), start=later, estimate_minutes=30))
    assert moved.id == first.id
    assert (moved.start, moved.end) == (later, later + timedelta(minutes=30))
    assert moved.version == first.version + 1
    assert list(await planned(store)) == ["alice"]


async def test_replanning_unchanged_writes_nothing(rules: Rules, store: SqliteStore) -> None:
    (first,) = await rules.plan("42", Plan(agents=("alice",), start=T9))
    (again,) = await rules.plan("42", Plan(agents=("alice",), start=T9))
    assert again.version == first.version


async def test_dropping_an_agent_cancels_theirs_only(rules: Rules, store: SqliteStore) -> None:
    await rules.plan("42", Plan(agents=("alice", "bob"), start=T9))
    before = await planned(store)
    await rules.plan("42", Plan(agents=("bob",), start=T9))
    after = await planned(store)
    assert list(after) == ["bob"]
    assert after["bob"].id == before["bob"].id
    tomb = await store.get_appointment(before["alice"].id, include_deleted=True)
    assert tomb is not None and tomb.deleted


async def test_readding_a_dropped_agent_makes_a_fresh_entry(
    rules: Rules, store: SqliteStore
) -> None:
    (first,) = await rules.plan("42", Plan(agents=("alice",), start=T9))
    await rules.plan("42", Plan(agents=(), start=T9))
    (again,) = await rules.plan("42", Plan(agents=("alice",), start=T9))
    assert again.id != first.id and not again.deleted


async def test_clearing_the_plan_cancels_every_entry(rules: Rules, store: SqliteStore) -> None:
    made = await rules.plan("42", Plan(agents=("alice", "bob"), start=T9))
    cancelled = await rules.clear_plan("42")
    assert sorted(a.id for a in cancelled) == sorted(a.id for a in made)
    assert all(a.deleted for a in cancelled)
    assert await planned(store) == {}
    request = await store.get_request("42")
    assert request is not None and request.planned_start is None
    assert request.planned_agents == ()


async def test_clearing_an_unknown_request_is_not_found(rules: Rules) -> None:
    with pytest.raises(NotFound) as info:
        await rules.clear_plan("nope")
    assert info.value.field == "request_id"


async def test_all_day_plan_spans_the_days_the_estimate_covers(rules: Rules) -> None:
    day = date(2026, 5, 4)
    (one,) = await rules.plan("1", Plan(agents=("alice",), start=day, estimate_minutes=240))
    assert (one.start, one.end, one.all_day) == (day, day + timedelta(days=1), True)
    (three,) = await rules.plan("2", Plan(agents=("alice",), start=day, estimate_minutes=2881))
    assert three.end == day + timedelta(days=3)


async def test_plan_with_an_unknown_agent_writes_nothing(rules: Rules, store: SqliteStore) -> None:
    with pytest.raises(Invalid) as info:
        await rules.plan("42", Plan(agents=("alice", "mallory"), start=T9))
    assert info.value.field == "agents"
    assert "mallory" in info.value.message
    assert await store.get_request("42") is None
    assert await store.list_appointments() == []


async def test_concurrent_replans_never_make_a_second_entry(
    rules: Rules, store: SqliteStore
) -> None:
    starts = [T9 + timedelta(hours=h) for h in range(6)]
    await asyncio.gather(*(rules.plan("42", Plan(agents=("alice",), start=s)) for s in starts))
    assert list(await planned(store)) == ["alice"]


# --------------------------------------------------------------------------- B


async def test_action_makes_an_appointment_when_enabled_and_asked(
    rules: Rules, store: SqliteStore
) -> None:
    outcome = await rules.log_action(
        "7", Action(agent="bob", done_at=T9, time_taken_minutes=45, add_to_calendar=True)
    )
    appt = outcome.appointment
    assert appt is not None and outcome.reason is None
    assert (appt.kind, appt.start, appt.end) == (Kind.ACTION, T9, T9 + timedelta(minutes=45))
    assert appt.action_id == outcome.action_id
    audit = await store.list_audit(entity_id="7")
    assert any(e.action == "action" and e.detail["agent"] == "bob" for e in audit)


async def test_action_without_asking_makes_no_appointment(rules: Rules, store: SqliteStore) -> None:
    outcome = await rules.log_action("7", Action(agent="bob", done_at=T9, time_taken_minutes=5))
    assert outcome.appointment is None
    assert outcome.reason is not None and "add_to_calendar" in outcome.reason
    assert await store.list_appointments() == []
    assert await store.get_request("7") is not None  # first mention still creates it


async def test_action_appointments_disabled(store: SqliteStore) -> None:
    rules = rules_for(store, action_appointments=False)
    outcome = await rules.log_action(
        "7", Action(agent="bob", done_at=T9, time_taken_minutes=5, add_to_calendar=True)
    )
    assert outcome.appointment is None
    assert outcome.reason is not None and "action_appointments" in outcome.reason
    assert await store.list_appointments() == []


async def test_action_by_unknown_agent_is_refused(rules: Rules, store: SqliteStore) -> None:
    with pytest.raises(Invalid) as info:
        await rules.log_action("7", Action(agent="zed", done_at=T9, time_taken_minutes=5))
    assert info.value.field == "agent"
    assert await store.get_request("7") is None


# --------------------------------------------------------------------------- C


async def test_booking_for_several_agents_is_one_entry_each_in_one_group(
    rules: Rules, store: SqliteStore
) -> None:
    booking = Booking(
        subject="On-site visit",
        start=T9,
        end=T9 + timedelta(hours=2),
        agents=("alice", "bob"),
        note="Bring cables",
        private=True,
        location="Room 4",
    )
    made = await rules.book("42", booking)
    assert sorted(a.agent_id for a in made) == ["alice", "bob"]
    assert len({a.group_id for a in made}) == 1 and made[0].group_id
    for appt in made:
        assert (appt.kind, appt.subject, appt.private) == (Kind.MANUAL, "On-site visit", True)
        assert appt.origin == "api"
    assert len(await store.list_appointments(group_id=made[0].group_id)) == 2


@pytest.mark.parametrize(
    ("start", "end", "agents", "field"),
    [
        (T9, T9, ("alice",), "end"),
        (T9, T9 - timedelta(minutes=1), ("alice",), "end"),
        (date(2026, 5, 4), T9, ("alice",), "end"),
        (T9, T9 + timedelta(hours=1), ("alice", "alice"), "agents"),
        (T9, T9 + timedelta(hours=1), (), "agents"),
        (T9, T9 + timedelta(hours=1), ("alice", "ghost"), "agents"),
    ],
)
async def test_bad_bookings_are_refused_and_write_nothing(
    rules: Rules,
    store: SqliteStore,
    start: date | datetime,
    end: date | datetime,
    agents: tuple[str, ...],
    field: str,
) -> None:
    with pytest.raises(Invalid) as info:
        await rules.book("42", Booking(subject="x", start=start, end=end, agents=agents))
    assert info.value.field == field
    assert await store.list_appointments() == []
    assert await store.get_request("42") is None


# --------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    ("hub", "agent", "state"),
    [
        (Policy.NEVER, "alice", PushState.LOCAL),
        (Policy.ALWAYS, "alice", PushState.SYNC),
        (Policy.ASK, "alice", PushState.PENDING),
        (Policy.AGENT, "carol", PushState.PENDING),  # carol's own value: ask
        (Policy.AGENT, "alice", PushState.SYNC),  # no own value: always
        (Policy.NEVER, "carol", PushState.LOCAL),  # the agent's value only counts under agent
    ],
)
async def test_policy_sets_the_push_state(
    store: SqliteStore, hub: Policy, agent: str, state: PushState
) -> None:
    rules = rules_for(store, create_appointments=hub)
    made = await rules.book(
        "1", Booking(subject="s", start=T9, end=T9 + timedelta(hours=1), agents=(agent,))
    )
    assert made[0].push_state is state
    approvals = await store.list_approvals()
    assert [a.appointment_id for a in approvals] == (
        [made[0].id] if state is PushState.PENDING else []
    )


async def test_policy_applies_to_plans_and_actions_too(store: SqliteStore) -> None:
    rules = rules_for(store, create_appointments=Policy.ASK)
    (plan,) = await rules.plan("1", Plan(agents=("bob",), start=T9))
    action = await rules.log_action(
        "1", Action(agent="bob", done_at=T9, time_taken_minutes=5, add_to_calendar=True)
    )
    assert plan.push_state is PushState.PENDING
    assert action.appointment is not None
    assert action.appointment.push_state is PushState.PENDING
    assert len(await store.list_approvals()) == 2


async def test_approve_syncs_and_wakes_the_agents_sync(store: SqliteStore) -> None:
    rules = rules_for(store, create_appointments=Policy.ASK)
    (appt,) = await rules.plan("1", Plan(agents=("bob",), start=T9))
    woken: list[tuple[str, frozenset[str]]] = []
    store.add_listener(lambda origin, agents: woken.append((origin, agents)))
    (approval,) = await store.list_approvals()
    decided, stored = await rules.decide(approval.id, True)
    assert decided.approved is True and decided.decided_at is not None
    assert stored.id == appt.id and stored.push_state is PushState.SYNC
    assert woken == [("approval", frozenset({"bob"}))]
    assert await store.list_approvals() == []


async def test_reject_keeps_the_entry_in_the_hub_calendar_only(store: SqliteStore) -> None:
    rules = rules_for(store, create_appointments=Policy.ASK)
    (appt,) = await rules.plan("1", Plan(agents=("bob",), start=T9))
    (approval,) = await store.list_approvals()
    _, stored = await rules.decide(approval.id, False)
    assert stored.push_state is PushState.REJECTED
    assert [a.id for a in await store.list_appointments(agent_id="bob")] == [appt.id]
    # Re-planning moves it but does not bring it back to the queue or to sync.
    (moved,) = await rules.plan("1", Plan(agents=("bob",), start=T9 + timedelta(hours=1)))
    assert moved.push_state is PushState.REJECTED
    assert await store.list_approvals() == []


async def test_deciding_twice_or_unknown(store: SqliteStore) -> None:
    rules = rules_for(store, create_appointments=Policy.ASK)
    await rules.plan("1", Plan(agents=("bob",), start=T9))
    (approval,) = await store.list_approvals()
    await rules.decide(approval.id, True)
    with pytest.raises(StateConflict):
        await rules.decide(approval.id, False)
    stored = await store.get_appointment(approval.appointment_id)
    assert stored is not None and stored.push_state is PushState.SYNC
    with pytest.raises(NotFound):
        await rules.decide("nope", True)


async def test_cancelling_a_pending_entry_withdraws_its_approval(store: SqliteStore) -> None:
    rules = rules_for(store, create_appointments=Policy.ASK)
    (appt,) = await rules.plan("1", Plan(agents=("bob",), start=T9))
    (approval,) = await store.list_approvals()
    await rules.cancel(appt.id)
    assert await store.list_approvals() == []
    # Never meant to sync, so purged at once, its approval with it.
    with pytest.raises(NotFound):
        await rules.decide(approval.id, True)


# --------------------------------------------------------------------------- edits


async def manual(rules: Rules, **kw: object) -> Appointment:
    fields: dict[str, object] = {
        "subject": "Visit",
        "start": T9,
        "end": T9 + timedelta(hours=1),
        "agents": ("alice",),
    }
    fields.update(kw)
    (appt,) = await rules.book("42", Booking(**fields))  # type: ignore[arg-type]
    return appt


async def test_moving_keeps_the_duration_and_resizing_keeps_the_start(rules: Rules) -> None:
    appt = await manual(rules)
    later = T9 + timedelta(days=2)
    moved = await rules.change(appt.id, Change(start=later))
    assert (moved.start, moved.end) == (later, later + timedelta(hours=1))
    resized = await rules.change(appt.id, Change(end=later + timedelta(hours=3)))
    assert (resized.start, resized.end) == (later, later + timedelta(hours=3))
    assert resized.version == appt.version + 2


async def test_edit_refusals(rules: Rules, store: SqliteStore) -> None:
    appt = await manual(rules)
    with pytest.raises(Invalid) as info:
        await rules.change(appt.id, Change(end=T9 - timedelta(hours=1)))
    assert info.value.field == "end"
    with pytest.raises(Invalid):
        await rules.change(appt.id, Change(start=date(2026, 5, 4)))  # all-day needs an end
    with pytest.raises(NotFound):
        await rules.change("nope", Change(note="x"))
    unchanged = await store.get_appointment(appt.id)
    assert unchanged is not None and unchanged.version == appt.version


async def test_setting_subject_or_note_replaces_the_remote_edit(
    rules: Rules, store: SqliteStore
) -> None:
    appt = await manual(rules)
    async with store.transaction("sync:o365") as tx:
        await tx.put_appointment(
            appt.evolve(subject_override="Edited in Outlook", body_override="b")
        )
    edited = await rules.change(appt.id, Change(subject="Visit, 2nd"))
    assert (edited.subject, edited.subject_override) == ("Visit, 2nd", None)
    assert edited.body_override == "b"
    edited = await rules.change(appt.id, Change(note="n"))
    assert (edited.note, edited.body_override) == ("n", None)


async def test_external_appointments_are_read_only(rules: Rules, store: SqliteStore) -> None:
    await add_external(store, T9)
    with pytest.raises(StateConflict):
        await rules.change("ext1", Change(start=T9 + timedelta(hours=1)))
    with pytest.raises(StateConflict):
        await rules.cancel("ext1")
    stored = await store.get_appointment("ext1")
    assert stored is not None and stored.start == T9 and not stored.deleted


async def test_cancel_leaves_a_tombstone(rules: Rules, store: SqliteStore) -> None:
    appt = await manual(rules)
    tomb = await rules.cancel(appt.id)
    assert tomb.deleted and tomb.version == appt.version + 1
    assert await store.get_appointment(appt.id) is None
    with pytest.raises(NotFound):
        await rules.cancel(appt.id)


# --------------------------------------------------------------------------- tombstones


async def test_cancel_without_an_account_purges_at_once(rules: Rules, store: SqliteStore) -> None:
    (appt,) = await rules.book("42", Booking("Visit", T9, T9 + timedelta(hours=1), ("bob",)))
    tomb = await rules.cancel(appt.id)
    assert tomb.deleted and tomb.id == appt.id  # the API still answers with the tombstone
    assert await store.get_appointment(appt.id, include_deleted=True) is None


@pytest.mark.parametrize("policy", [Policy.NEVER, Policy.ASK])
async def test_cancel_of_an_entry_never_meant_to_sync_purges_at_once(
    store: SqliteStore, policy: Policy
) -> None:
    rules = rules_for(store, create_appointments=policy)
    (appt,) = await rules.plan("42", Plan(agents=("alice",), start=T9))
    assert appt.push_state is not PushState.SYNC
    await rules.cancel(appt.id)
    assert await store.get_appointment(appt.id, include_deleted=True) is None


async def test_cancel_of_a_rejected_entry_purges_at_once(store: SqliteStore) -> None:
    rules = rules_for(store, create_appointments=Policy.ASK)
    (appt,) = await rules.plan("42", Plan(agents=("alice",), start=T9))
    (approval,) = await store.list_approvals()
    await rules.decide(approval.id, False)
    await rules.cancel(appt.id)
    assert await store.get_appointment(appt.id, include_deleted=True) is None


async def test_tombstone_kept_while_sync_has_to_act(rules: Rules, store: SqliteStore) -> None:
    # push_state "sync" with an account: kept even without a status row (sync looks it up).
    (unlinked,) = await rules.plan("1", Plan(agents=("alice",), start=T9))
    await rules.clear_plan("1")
    kept = await store.get_appointment(unlinked.id, include_deleted=True)
    assert kept is not None and kept.deleted
    # Not meant to sync, but a status row says something may be remote: kept as well.
    local = rules_for(store, create_appointments=Policy.NEVER)
    (linked,) = await local.plan("2", Plan(agents=("alice",), start=T9))
    async with store.transaction("sync:o365") as tx:
        await tx.put_status(SyncStatus("alice", linked.id, "o365", "r1", "v1", "h", "h"))
    await local.clear_plan("2")
    kept = await store.get_appointment(linked.id, include_deleted=True)
    assert kept is not None and kept.deleted


async def test_clearing_a_plan_purges_only_what_sync_need_not_carry_out(
    rules: Rules, store: SqliteStore
) -> None:
    made = await rules.plan("42", Plan(agents=("alice", "bob"), start=T9))
    cancelled = await rules.clear_plan("42")
    assert sorted(a.id for a in cancelled) == sorted(a.id for a in made)
    left = await store.list_appointments(request_id="42", include_deleted=True)
    assert [a.agent_id for a in left] == ["alice"]
