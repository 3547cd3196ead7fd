"""Reassigning an entry to another agent (PATCH ``agent``): sync deletes it from the old
agent's calendar and creates it in the new agent's, once each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.model import Agent, Kind
from hub.rules import Change, Plan, Rules
from hub.spec import CalendarRef
from tests.sync.helpers import NOW, Bench, at, make_bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await make_bench(tmp_path)
    yield b
    await b.store.close()


async def test_reassigned_entry_leaves_the_old_calendar_and_reaches_the_new(
    bench: Bench,
) -> None:
    async with bench.store.transaction("api") as tx:
        bob = await tx.put_agent(
            Agent(id="bob", name="Bob Jones", email="bob@example.com", account="mem")
        )
    bob_cal = CalendarRef(bob.id, bob.email, bob.calendar)
    appt = await bench.add(at(1, 10), kind=Kind.MANUAL, subject="Visit")
    await bench.sync()
    assert [e.hub_id for e in bench.remote()] == [appt.id]

    rules = Rules(bench.store, bench.settings, clock=lambda: NOW)
    moved = await rules.change(appt.id, Change(agent="bob", start=at(1, 14)))
    assert (moved.agent_id, moved.start, moved.subject) == ("bob", at(1, 14), "Visit")
    assert moved.id != appt.id

    await bench.sync()  # alice: the delete is carried out
    assert bench.remote() == []
    await bench.engine().run(bob)  # bob: the copy is created
    (there,) = bench.server.events(bob_cal)
    assert (there.hub_id, there.data.start) == (moved.id, at(1, 14))
    # A second pass of each changes nothing: no duplicate, no resurrection.
    await bench.sync()
    await bench.engine().run(bob)
    assert bench.remote() == []
    assert [e.hub_id for e in bench.server.events(bob_cal)] == [moved.id]


async def test_reassigning_a_planned_entry_moves_the_plan(bench: Bench) -> None:
    async with bench.store.transaction("api") as tx:
        await tx.put_agent(Agent(id="bob", name="Bob Jones"))
    rules = Rules(bench.store, bench.settings, clock=lambda: NOW)
    (planned,) = await rules.plan("R9", Plan(agents=("alice",), start=at(2, 9)))
    moved = await rules.change(planned.id, Change(agent="bob"))
    request = await bench.store.get_request("R9")
    assert request is not None and request.planned_agents == ("bob",)
    # Re-planning the request (as the helpdesk does) keeps the entry with bob, moved.
    (again,) = await rules.plan("R9", Plan(agents=("bob",), start=at(2, 11)))
    assert (again.id, again.agent_id, again.start) == (moved.id, "bob", at(2, 11))
    assert await bench.store.list_appointments(agent_id="alice") == []
