"""AgentSync against the memory provider and a real SqliteStore: pushes, flow-back, imports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from hub.model import Kind, PushState
from hub.spec import PRIVATE_SUBJECT, EventData

from .helpers import Bench, at, make_bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await make_bench(tmp_path)
    yield b
    await b.store.close()


async def test_first_sync_pushes_hub_appointments_with_their_hub_id(bench: Bench) -> None:
    a1 = await bench.add(at(1))
    a2 = await bench.add(at(2), kind=Kind.MANUAL, subject="Visit")
    await bench.add(at(3), push_state=PushState.LOCAL)

    result = await bench.sync()

    assert result.result == "ok", result.error
    assert result.counts.get("create") == 2
    remote = {e.hub_id: e for e in bench.remote()}
    assert set(remote) == {a1.id, a2.id}
    assert remote[a1.id].data.subject == "[#R1] Printer 1"
    assert remote[a1.id].data.start == at(1)
    statuses = await bench.store.list_status("alice", "mem")
    assert {s.appointment_id: s.remote_id for s in statuses} == {
        a1.id: remote[a1.id].remote_id,
        a2.id: remote[a2.id].remote_id,
    }
    assert all(s.state == "synced" for s in statuses)


async def test_no_change_pass_is_one_request_and_writes_nothing(bench: Bench) -> None:
    await bench.add(at(1))
    await bench.add(at(2))
    assert (await bench.sync()).result == "ok"
    await bench.sync()  # settles the calendar state once
    audits, changes = await bench.audit_count(), await bench.total_changes()

    result = await bench.sync()

    assert result.result == "ok"
    assert result.requests == 1
    assert result.counts == {}
    assert await bench.audit_count() == audits
    assert await bench.total_changes() == changes


async def test_etag_bump_without_content_change_is_not_a_change(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    event = bench.remote_of(appt.id)
    bench.server.touch(bench.cal, event.remote_id)
    version = bench.remote_of(appt.id).version

    result = await bench.sync()

    assert result.counts == {"status": 1}  # only the new version is remembered
    (status,) = await bench.store.list_status("alice", "mem")
    assert status.remote_version == version
    stored = await bench.get(appt.id)
    assert stored is not None and stored.version == appt.version


async def test_moved_event_flows_back(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    event = bench.remote_of(appt.id)
    bench.server.move(bench.cal, event.remote_id, at(1, 14), at(1, 16))

    result = await bench.sync()

    assert result.counts.get("flow-back") == 1
    stored = await bench.get(appt.id)
    assert stored is not None
    assert (stored.start, stored.end) == (at(1, 14), at(1, 16))
    # Nothing was pushed back: the remote already holds what the hub renders.
    assert (
        bench.remote_of(appt.id).version
        == bench.server.get_event(bench.cal, event.remote_id).version
    )  # type: ignore[union-attr]
    assert (await bench.sync()).counts == {}


async def test_manual_subject_and_body_flow_back_as_overrides(bench: Bench) -> None:
    appt = await bench.add(at(1), kind=Kind.MANUAL, subject="Visit", note="bring cable")
    await bench.sync()
    event = bench.remote_of(appt.id)
    bench.server.edit(
        bench.cal, event.remote_id, replace(event.data, subject="Visit (moved)", body="no cable")
    )

    result = await bench.sync()

    assert result.counts.get("flow-back") == 1
    stored = await bench.get(appt.id)
    assert stored is not None
    assert stored.subject_override == "Visit (moved)"
    assert stored.body_override == "no cable"
    assert bench.remote_of(appt.id).data.subject == "Visit (moved)"
    assert (await bench.sync()).counts == {}


async def test_planned_subject_edit_is_not_taken_but_times_are(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    event = bench.remote_of(appt.id)
    bench.server.edit(
        bench.cal,
        event.remote_id,
        replace(event.data, subject="my own title", start=at(2), end=at(2, 12)),
    )

    result = await bench.sync()

    assert result.counts.get("flow-back") == 1
    stored = await bench.get(appt.id)
    assert stored is not None and stored.subject_override is None
    assert (stored.start, stored.end) == (at(2), at(2, 12))
    pushed = bench.remote_of(appt.id).data
    assert pushed.subject == "[#R1] Printer 1"
    assert (pushed.start, pushed.end) == (at(2), at(2, 12))
    audit = await bench.store.list_audit(entity_id=appt.id)
    assert any(
        e.action == "remote-edit-not-taken" and "subject" in e.detail["fields"] for e in audit
    )
    assert (await bench.sync()).counts == {}


async def test_hub_edit_is_pushed_with_the_version_as_precondition(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    await bench.edit(appt.id, start=at(3), end=at(3, 11))

    result = await bench.sync()

    assert result.counts.get("update") == 1
    assert bench.remote_of(appt.id).data.start == at(3)


async def test_import_on_brings_externals_in_and_private_ones_as_busy_time(bench: Bench) -> None:
    await bench.set_agent(import_external=True)
    bench.external("Dentist", at(1, 8))
    bench.external("Therapy SECRETWORD", at(2, 8), private=True, body="SECRETBODY", location="X")

    result = await bench.sync()

    assert result.counts.get("import") == 2
    hub = {a.subject: a for a in await bench.hub()}
    assert set(hub) == {"Dentist", PRIVATE_SUBJECT}
    private = hub[PRIVATE_SUBJECT]
    assert (private.kind, private.note, private.location) == (Kind.EXTERNAL, "", "")
    assert private.show_as == "busy" and private.private
    # Nothing of the private event reached the database file, hashes and audit included.
    await bench.store.close()
    for path in bench.path.parent.glob("hub.db*"):
        raw = path.read_bytes()
        assert b"SECRETWORD" not in raw and b"SECRETBODY" not in raw
    await bench.store.open()
    # Imported events are never pushed back.
    assert len(bench.remote()) == 2


async def test_import_off_removes_imported_externals(bench: Bench) -> None:
    await bench.set_agent(import_external=True)
    bench.external("Dentist", at(1, 8))
    await bench.sync()
    assert len(await bench.hub()) == 1

    await bench.set_agent(import_external=False)
    result = await bench.sync()

    assert result.counts.get("unimport") == 1
    assert await bench.hub() == []
    assert len(bench.remote()) == 1  # the agent's own event stays where it is
    assert await bench.store.list_status("alice", "mem") == []


async def test_import_off_by_default_ignores_externals(bench: Bench) -> None:
    bench.external("Dentist", at(1, 8))
    result = await bench.sync()
    assert result.result == "ok"
    assert await bench.hub() == []


async def test_external_edit_and_delete_follow_into_the_hub(bench: Bench) -> None:
    await bench.set_agent(import_external=True)
    rid = bench.external("Dentist", at(1, 8))
    await bench.sync()
    bench.server.edit(bench.cal, rid, EventData("Dentist (new)", at(1, 9), at(1, 10)))
    await bench.sync()
    (appt,) = await bench.hub()
    assert (appt.subject, appt.start) == ("Dentist (new)", at(1, 9))

    bench.server.delete(bench.cal, rid)
    result = await bench.sync()

    assert result.counts.get("hub-delete") == 1
    assert await bench.hub(include_deleted=True) == []


async def test_external_event_is_not_imported_twice_after_the_status_table_is_lost(
    bench: Bench,
) -> None:
    await bench.set_agent(import_external=True)
    bench.external("Dentist", at(1, 8))
    await bench.sync()
    async with bench.store.transaction("test") as tx:
        for s in await bench.store.list_status("alice", "mem"):
            await tx.delete_status(s.agent_id, s.appointment_id, s.account)

    result = await bench.sync()

    assert result.result == "ok"
    assert len(await bench.hub()) == 1
    assert len(await bench.store.list_status("alice", "mem")) == 1


async def test_new_mailbox_is_synced_afresh_and_nothing_is_deleted(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync(import_external=True)
    bench.external("Dentist", at(2))
    await bench.sync(import_external=True)
    assert {a.kind for a in await bench.hub()} == {Kind.PLANNED, Kind.EXTERNAL}
    old_cal = bench.cal

    await bench.set_agent(email="alice@new.example")
    result = await bench.sync(import_external=True)

    assert result.result == "ok", result.error
    # The delta cursor of the old mailbox was not used, and its absence there is no delete:
    # the appointment is pushed to the new mailbox, the old mailbox's import is dropped.
    assert [e.hub_id for e in bench.remote()] == [appt.id]
    assert [a.id for a in await bench.hub()] == [appt.id]
    assert [e.hub_id for e in bench.server.events(old_cal) if e.hub_id] == [appt.id]
    (status,) = await bench.store.list_status("alice", "mem")
    assert status.remote_id == bench.remote_of(appt.id).remote_id
    assert (await bench.sync(import_external=True)).counts == {}


async def test_new_calendar_of_the_same_mailbox_is_synced_afresh(bench: Bench) -> None:
    appt = await bench.add(at(1))
    await bench.sync()
    await bench.set_agent(calendar="helpdesk")

    result = await bench.sync()

    assert result.result == "ok", result.error
    assert result.counts.get("create") == 1
    assert [e.hub_id for e in bench.remote()] == [appt.id]
    assert await bench.get(appt.id) is not None
