"""The quiet path and the change pass: a pass over an unchanged calendar after a clean pass
reads no hub rows and writes nothing; a change on either side since (a hub edit, a request,
a remote edit) makes the next pass read only what changed, by key; a change of what every
event is rendered with (settings, the agent) or an unfinished pass makes it reconcile the
whole calendar. Each carries the change out."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hub.model import PassResult, Request
from hub.spec import PermanentError, PreconditionFailed, TransientError
from hub.store.sqlite import SqliteStore
from hub.sync import CLEAN_SEQ, SETTINGS_HASH
from hub.testing.memory import MemoryServer

from .helpers import ACCOUNT, Bench, at, make_bench

Hook = Callable[[], Awaitable[None]]


class CountingStore:
    """The bench's store as the engine sees it, counting the engine's calls by name; a hook
    may run right after a read (a write by someone else in the middle of a pass)."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.after_read: dict[str, Hook] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr
        hook = self.after_read.pop(name, None)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if hook is None:
                return attr(*args, **kwargs)

            async def then_hook() -> Any:
                found = await attr(*args, **kwargs)
                await hook()
                return found

            return then_hook()

        return counted

    @property
    def reads(self) -> int:
        """Reads of hub rows (the counter and the calendar state aside)."""
        return sum(self.calls[name] for name in (*WHOLE_READS, *KEYED_READS))

    @property
    def whole_reads(self) -> int:
        return sum(self.calls[name] for name in WHOLE_READS)


WHOLE_READS = ("list_appointments", "list_status")  # the whole calendar, by range
KEYED_READS = ("changed_since", "get_statuses", "get_appointments", "has_status")


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await make_bench(tmp_path, body_template="{note} ({agent_name})")
    yield b
    await b.store.close()


async def counted_pass(bench: Bench, **settings: Any) -> tuple[PassResult, CountingStore]:
    store = CountingStore(bench.store)
    engine = bench.engine(**settings)
    engine.store = store  # type: ignore[assignment]
    result = await engine.run(bench.agent)
    assert result.result == "ok", result.error
    return result, store


async def settled(bench: Bench) -> str:
    """Two appointments pushed and a clean pass recorded; returns the first one's id."""
    first = await bench.add(at(1), note="Bring a toner")
    await bench.add(at(2))
    assert (await bench.sync()).counts.get("create") == 2
    await bench.sync()
    state = await bench.store.get_calendar_state("alice")
    assert state is not None and CLEAN_SEQ in state.stats and SETTINGS_HASH in state.stats
    return first.id


async def assert_full(bench: Bench, **settings: Any) -> PassResult:
    """The next pass reads the whole calendar and reconciles; once the echo of its own
    pushes came back (the pass after it), the calendar is quiet again."""
    result, store = await counted_pass(bench, **settings)
    assert result.hub_read == "calendar"
    assert store.calls["list_appointments"] >= 1 and store.calls["list_status"] >= 1
    await settle(bench, **settings)
    return result


async def assert_changes(bench: Bench, **settings: Any) -> PassResult:
    """The next pass reads only what changed, by key (never a range of the calendar), and
    reconciles it; then the calendar is quiet again."""
    result, store = await counted_pass(bench, **settings)
    assert result.hub_read == "changes"
    assert store.calls["changed_since"] == 1 and store.whole_reads == 0
    await settle(bench, **settings)
    return result


async def settle(bench: Bench, **settings: Any) -> None:
    await counted_pass(bench, **settings)
    last, after = await counted_pass(bench, **settings)
    assert after.reads == 0, "a settled calendar should go back to the quiet path"
    assert last.hub_read == "none"


async def test_no_change_pass_after_a_clean_pass_reads_and_writes_nothing(bench: Bench) -> None:
    await settled(bench)
    audits, changes = await bench.audit_count(), await bench.total_changes()

    result, store = await counted_pass(bench)

    assert result.requests == 1
    assert result.counts == {}
    assert store.reads == 0
    assert store.calls["get_appointment"] == store.calls["get_request"] == 0
    assert store.calls["transaction"] == 0
    assert await bench.total_changes() == changes
    assert await bench.audit_count() == audits


async def test_a_new_cursor_alone_is_stored_without_reading_the_hub(bench: Bench) -> None:
    await settled(bench)
    before = await bench.store.get_calendar_state("alice")
    assert before is not None
    # A touched event that is then touched back reports nothing new, but the server hands
    # out a new sync token: simulated by a delta that moved on with no items.
    real_fetch = bench.provider.fetch

    async def moved_on(*args: Any) -> Any:
        found = await real_fetch(*args)
        return replace(found, cursor=f"{found.cursor}+next")

    bench.provider.fetch = moved_on  # type: ignore[method-assign]

    _, store = await counted_pass(bench)

    assert store.reads == 0
    after = await bench.store.get_calendar_state("alice")
    assert after is not None and after.cursor == f"{before.cursor}+next"
    assert after.stats == before.stats


async def test_hub_edit_through_the_store_is_pushed(bench: Bench) -> None:
    appt_id = await settled(bench)
    await bench.edit(appt_id, start=at(3), end=at(3, 11))

    result = await assert_changes(bench)

    assert result.counts.get("update") == 1
    assert bench.remote_of(appt_id).data.start == at(3)


async def test_request_subject_change_is_pushed(bench: Bench) -> None:
    appt_id = await settled(bench)
    async with bench.store.transaction("api") as tx:
        await tx.put_request(Request(id="R1", subject="Scanner jammed", customer="ACME"))

    await assert_changes(bench)

    assert bench.remote_of(appt_id).data.subject == "[#R1] Scanner jammed"


async def test_agent_record_change_is_pushed(bench: Bench) -> None:
    appt_id = await settled(bench)
    await bench.set_agent(name="Alice Jones")

    await assert_full(bench)

    assert bench.remote_of(appt_id).data.body == "Bring a toner (Alice Jones)"


async def test_template_change_in_settings_is_pushed(bench: Bench) -> None:
    appt_id = await settled(bench)
    template = "{customer}: {request_subject}"

    await assert_full(bench, subject_template=template)

    assert bench.remote_of(appt_id).data.subject == "ACME: Printer 1"


async def test_remote_change_flows_back_and_the_engine_s_own_write_keeps_it_quiet(
    bench: Bench,
) -> None:
    appt_id = await settled(bench)
    bench.server.move(bench.cal, bench.remote_of(appt_id).remote_id, at(4), at(4, 11))

    result, store = await counted_pass(bench)

    assert result.hub_read == "changes" and store.reads >= 1 and store.whole_reads == 0
    assert result.counts.get("flow-back") == 1, result.counts
    moved = await bench.get(appt_id)
    assert moved is not None and moved.start == at(4)
    # The engine counted its own write: the very next pass is quiet.
    _, after = await counted_pass(bench)
    assert after.reads == 0


async def test_hub_write_during_a_pass_makes_the_next_pass_full(bench: Bench) -> None:
    appt_id = await settled(bench)
    other = (await bench.hub())[1].id
    bench.server.move(bench.cal, bench.remote_of(appt_id).remote_id, at(4), at(4, 11))
    store = CountingStore(bench.store)

    async def edit_behind_the_engine() -> None:
        await bench.edit(other, note="Call first")

    # Committed after the engine read the hub (a change pass reads by key), before its own
    # write of the moved event.
    store.after_read["get_appointments"] = edit_behind_the_engine
    engine = bench.engine()
    engine.store = store  # type: ignore[assignment]
    assert (await engine.run(bench.agent)).result == "ok"
    assert bench.remote_of(other).data.body == "(Alice Smith)"

    await assert_full(bench)

    assert bench.remote_of(other).data.body == "Call first (Alice Smith)"


Fault = Callable[[MemoryServer, str], None]
UNFINISHED: dict[str, tuple[Fault, str]] = {
    "skipped item": (
        lambda server, hub_id: server.fail_item(hub_id, PermanentError("400 Bad Request")),
        "ok",
    ),
    "failed pass": (
        lambda server, _: server.fail_next(10, TransientError("503"), operation="push"),
        "failed",
    ),
    # A refused precondition with nothing changed remotely: the next delta is empty, and
    # only the stale row left behind says the pair must be looked at again.
    "stale row": (
        lambda server, hub_id: server.fail_item(hub_id, PreconditionFailed("412")),
        "ok",
    ),
}


@pytest.mark.parametrize("case", list(UNFINISHED))
async def test_a_pass_that_left_work_makes_the_next_pass_full(bench: Bench, case: str) -> None:
    fault, outcome = UNFINISHED[case]
    appt_id = await settled(bench)
    await bench.edit(appt_id, note="Bring two toners")
    fault(bench.server, appt_id)
    unfinished = await bench.sync()
    assert unfinished.result == outcome
    assert outcome != "ok" or unfinished.skipped_items or unfinished.counts.get("replan")
    assert bench.remote_of(appt_id).data.body == "Bring a toner (Alice Smith)"
    bench.server.clear_faults()

    await assert_full(bench)

    assert bench.remote_of(appt_id).data.body == "Bring two toners (Alice Smith)"
    assert {s.state for s in await bench.store.list_status("alice", ACCOUNT)} == {"synced"}
