"""Fault injection: a Hypothesis state machine driving the real sync engine and store.

In the manner of vdirsyncer's tests/unit/sync/test_sync.py (and Dropbox's randomized sync
testing), :class:`SyncMachine` runs the real :class:`hub.sync.AgentSync` over a real
:class:`hub.store.sqlite.SqliteStore` and the memory provider, for three agents sharing one
account. Its rules interleave at random:

* hub-side work through the store: appointments created (planned and manual), moved,
  re-noted, cancelled;
* the agents' own work at the server: external events created (some private), any event
  moved, renamed or deleted, an unreadable event appearing;
* faults: transient errors and 429 with Retry-After, an auth failure of one mailbox, a 412
  from an edit racing the engine's write, cursor expiry, a crash between the remote write
  and the status commit (:class:`~hub.testing.memory.SimulatedCrash`, then the database is
  closed and reopened), a lost status table;
* sync passes of one agent, or of all agents concurrently through the real
  :class:`hub.scheduler.Scheduler` (its concurrency limits included).

When the faults stop, every agent is synced to quiescence and the invariants must hold:
both sides converge (the same hub-owned events with the same content), nothing the user did
not delete is gone, an edit that raced a delete is kept or recorded as a conflict, no hub id
has two remote events, deletes stay deleted, the status table matches what exists, and a
further pass over unchanged calendars costs one request per agent and writes nothing.

Where the engine cannot know better, the checks say so: after a lost status table, or a
create whose answer a crash lost, a delete made before the engine saw it may be undone (the
appointment comes back; it is never lost). Both are the limits of any status-table sync.

Profiles: the default is deterministic for CI (``derandomize=True``, 50 examples of up to 30
steps, a few seconds, no example database written into the repository). ``CALHUB_FUZZ=long``
selects a longer random run for local use (500 examples of up to 60 steps, a few minutes)::

    CALHUB_FUZZ=long pytest tests/sync/test_fault_injection.py --hypothesis-show-statistics

A failure found there is worth keeping as a replay at the end of this file.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from hub.backoff import RetryPolicy
from hub.config import Config, HubSettings
from hub.metrics import Metrics
from hub.model import (
    Agent,
    Appointment,
    ConflictPolicy,
    Kind,
    PassResult,
    PushState,
    RemoteDelete,
    Request,
    SyncStatus,
)
from hub.render import render_event
from hub.scheduler import Scheduler
from hub.spec import (
    PRIVATE_SUBJECT,
    AccountConfig,
    CalendarRef,
    EventData,
    ProviderRegistry,
    TransientError,
)
from hub.store.postgres import PgStore
from hub.store.sqlite import SqliteStore
from hub.sync import CHANGES_LIMIT, CLEAN_SEQ, AgentSync
from hub.testing.memory import MemoryProvider, MemoryServer, SimulatedCrash, StoredEvent
from hub.window import sync_window
from tests import pgserver

T = TypeVar("T")

ACCOUNT = "mem"
AGENTS = ("ann", "bob", "cat")
START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
QUIESCENCE_ROUNDS = 8
RETRY = RetryPolicy(attempts=4, base=0.5, cap=4.0)

settings.register_profile(
    "calhub-ci",
    max_examples=50,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "calhub-long",
    max_examples=500,
    stateful_step_count=60,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PG_EXAMPLES = 12
PROFILE = "calhub-long" if os.environ.get("CALHUB_FUZZ") == "long" else "calhub-ci"

agent_ids = st.sampled_from(AGENTS)
picks = st.integers(min_value=0, max_value=10_000)  # which existing event, modulo the count
days = st.integers(min_value=0, max_value=20)
hours = st.integers(min_value=7, max_value=18)
shifts = st.sampled_from([-3, -2, -1, 1, 2, 3])
words = st.sampled_from(["Printer", "VPN", "Onboarding", "Laptop", "Réseau ☎", "会議"])


@dataclass
class Clock:
    """The shared clock of store and server: each step of the machine is one minute."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Ledger:
    """What the users did, to judge the end state against (the model of intentions)."""

    created: dict[str, str] = field(default_factory=dict)  # hub appointment id -> agent
    manual: set[str] = field(default_factory=set)  # kind C: subject and body flow back
    hub_deleted: set[str] = field(default_factory=set)
    remote_deleted: set[str] = field(default_factory=set)  # hub ids the agent deleted remotely
    starts: dict[str, set[datetime]] = field(default_factory=dict)  # every start ever set
    # An edit made on one side while the other side's delete was not carried out yet: it
    # must survive, or the engine must record the conflict (unless that side deleted too).
    # It counts only when it leaves content other than what the engine last synced (a
    # move there and back again is no edit): ``synced`` holds the edited side's content
    # hash from the status row when the delete happened, ``edited`` the hash after the edit.
    agent_edits_of_hub_deleted: set[str] = field(default_factory=set)
    hub_edits_of_remote_deleted: set[str] = field(default_factory=set)
    synced: dict[str, str | None] = field(default_factory=dict)
    edited: dict[str, str] = field(default_factory=dict)
    # Appointments whose pair was forgotten (lost status table, or a create whose answer a
    # crash lost) before the engine saw the change: without the last-synced state, "deleted
    # on one side" and "never synced" look the same (vdirsyncer has the same limit), so a
    # delete may be undone rather than kept. Cleared once sync settled again.
    amnesia: set[str] = field(default_factory=set)

    def start_set(self, appt_id: str, start: Any) -> None:
        self.starts.setdefault(appt_id, set()).add(start)

    def raced(self) -> set[str]:
        """Appointments whose edit really raced the other side's delete."""
        candidates = self.agent_edits_of_hub_deleted | self.hub_edits_of_remote_deleted
        return {
            a
            for a in candidates
            if self.synced.get(a) is not None and self.edited.get(a) != self.synced[a]
        }

    def settled(self, alive: set[str]) -> None:
        """Sync converged and was checked: that state is the new baseline."""
        self.amnesia.clear()
        self.agent_edits_of_hub_deleted.clear()
        self.hub_edits_of_remote_deleted.clear()
        self.synced.clear()
        self.edited.clear()
        # A delete that was undone (restored, or kept by a conflict) is history now.
        self.hub_deleted -= alive
        self.remote_deleted -= alive


def note(text: str) -> None:
    """A notable event for ``--hypothesis-show-statistics`` (ignored in plain replays)."""
    if currently_in_test_context():
        event(text)


def cal_of(agent_id: str) -> CalendarRef:
    return CalendarRef(agent_id, f"{agent_id}@example.com")


class SyncMachine(RuleBasedStateMachine):
    """Random hub edits, agent edits, faults and passes; invariants at quiescence."""

    appointments = Bundle("appointments")

    # Set for the PostgreSQL run (see test_sync_faults): each machine gets a schema of its own.
    pg_server: pgserver.Server | None = None

    def __init__(self) -> None:
        super().__init__()
        self.pg_url = self.pg_server.fresh_url() if self.pg_server is not None else None
        self._exit = ExitStack()
        self.tmp = Path(self._exit.enter_context(tempfile.TemporaryDirectory()))
        self.portal: BlockingPortal = self._exit.enter_context(start_blocking_portal("asyncio"))
        self._exit.callback(self._shutdown)  # runs before the portal's loop stops
        self.clock = Clock()
        self.server = MemoryServer(clock=self.clock)
        self.provider = MemoryProvider(AccountConfig(ACCOUNT, "memory", {"server": self.server}))
        self.store: SqliteStore | None = None
        self.settings = HubSettings()
        self.ledger = Ledger()
        self.sleeps: list[float] = []
        self.rng = random.Random(0)
        self.serial = 0

    # ------------------------------------------------------------------ plumbing

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(fn, *args)

    def tick(self) -> None:
        self.clock.now += timedelta(minutes=1)

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    async def _open_store(self) -> None:
        if self.pg_url is not None:
            self.store = PgStore(self.pg_url, password=pgserver.PASSWORD, clock=self.clock)
        else:
            self.store = SqliteStore(self.tmp / "hub.db", clock=self.clock)
        await self.store.open()

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)  # recorded, never waited

    def engine(self) -> AgentSync:
        assert self.store is not None
        return AgentSync(
            self.store,
            self.provider,
            ACCOUNT,
            self.settings,
            clock=self.clock,
            sleep=self._sleep,
            retry_policy=RETRY,
            rng=self.rng,
            changes_limit=self.changes_limit,
        )

    async def _pass(self, agent_id: str, allow_empty: bool = False) -> PassResult:
        assert self.store is not None
        agent = await self.store.get_agent(agent_id)
        assert agent is not None
        return await self.engine().run(agent, allow_empty=allow_empty)

    def teardown(self) -> None:
        try:
            # The final check runs only when the steps passed: on a failure, Hypothesis
            # needs that failure (to shrink it), not a second one from here.
            if self.store is not None and sys.exc_info()[0] is None:
                self.quiesce_and_check()
        finally:
            self._exit.close()

    def _shutdown(self) -> None:
        if self.store is not None:
            self.run(self.store.close)
        self.run(self.provider.close)

    def remote_events(self, agent_id: str) -> list[StoredEvent]:
        return self.server.events(cal_of(agent_id))

    def pick_remote(self, pick: int) -> tuple[str, StoredEvent] | None:
        """One readable remote event of any agent (picking among all of them, rather than
        in one agent's calendar that may be empty, keeps the agents' rules effective)."""
        events = [
            (agent_id, e)
            for agent_id in AGENTS
            for e in self.remote_events(agent_id)
            if not e.bad_reason
        ]
        return events[pick % len(events)] if events else None

    # ------------------------------------------------------------------ setup

    @initialize(
        conflict=st.sampled_from(list(ConflictPolicy)),
        remote_delete=st.sampled_from(list(RemoteDelete)),
        import_external=st.booleans(),
        # The default, one (most change passes fall back to the whole calendar), or none.
        changes_limit=st.sampled_from([CHANGES_LIMIT, 1, 0]),
    )
    def setup(
        self,
        conflict: ConflictPolicy,
        remote_delete: RemoteDelete,
        import_external: bool,
        changes_limit: int = CHANGES_LIMIT,
    ) -> None:
        self.changes_limit = changes_limit
        self.settings = HubSettings(
            conflict=conflict, remote_delete=remote_delete, import_external=import_external
        )

        async def go() -> None:
            await self.provider.open()
            await self._open_store()
            assert self.store is not None
            async with self.store.transaction("api") as tx:
                for i, agent_id in enumerate(AGENTS):
                    # bob overrides the hub's import setting: both values are always in play
                    override = (not import_external) if i == 1 else None
                    await tx.put_agent(
                        Agent(
                            agent_id,
                            agent_id.title(),
                            f"{agent_id}@example.com",
                            account=ACCOUNT,
                            import_external=override,
                        )
                    )

        self.run(go)

    # ------------------------------------------------------------------ hub side

    @rule(
        target=appointments,
        agent_id=agent_ids,
        day=days,
        hour=hours,
        manual=st.booleans(),
        private=st.booleans(),
        word=words,
    )
    def hub_create(
        self, agent_id: str, day: int, hour: int, manual: bool, private: bool, word: str
    ) -> str:
        self.tick()
        appt_id = self.next_id("a")
        start = START.replace(hour=hour) + timedelta(days=day)
        request = Request(id=self.next_id("R"), subject=f"{word} issue", customer="ACME")
        appt = Appointment(
            id=appt_id,
            agent_id=agent_id,
            kind=Kind.MANUAL if manual else Kind.PLANNED,
            start=start,
            end=start + timedelta(hours=1),
            subject=f"Visit: {word}" if manual else "",
            request_id=request.id,
            push_state=PushState.SYNC,
            private=private,
        )

        async def go() -> None:
            assert self.store is not None
            async with self.store.transaction("api") as tx:
                await tx.put_request(request)
                await tx.put_appointment(appt)

        self.run(go)
        self.ledger.created[appt_id] = agent_id
        if manual:
            self.ledger.manual.add(appt_id)
        self.ledger.start_set(appt_id, start)
        return appt_id

    def _hub_edit(self, appt_id: str, change: Callable[[Appointment], Appointment]) -> None:
        self.tick()

        async def go() -> tuple[Appointment, str] | None:
            assert self.store is not None
            current = await self.store.get_appointment(appt_id)
            if current is None:
                return None  # deleted meanwhile, on either side
            async with self.store.transaction("api") as tx:
                stored = await tx.put_appointment(change(current))
            return stored, await self._render_hash(stored)

        done = self.run(go)
        if done is not None:
            stored, rendered = done
            self.ledger.start_set(appt_id, stored.start)
            gone = all(e.hub_id != appt_id for e in self.remote_events(stored.agent_id))
            if appt_id in self.ledger.remote_deleted and gone:
                self.ledger.hub_edits_of_remote_deleted.add(appt_id)
                self.ledger.edited[appt_id] = rendered

    async def _render_hash(self, appt: Appointment) -> str:
        assert self.store is not None
        agent = await self.store.get_agent(appt.agent_id)
        assert agent is not None
        request = await self.store.get_request(appt.request_id) if appt.request_id else None
        return render_event(appt, agent, request, self.settings).content_hash()

    async def _synced_row(self, agent_id: str, appt_id: str) -> SyncStatus | None:
        assert self.store is not None
        rows = await self.store.list_status(agent_id, ACCOUNT)
        return next((r for r in rows if r.appointment_id == appt_id), None)

    def hub_move(self, appt_id: str, shift: int) -> None:
        delta = timedelta(hours=shift)
        self._hub_edit(appt_id, lambda a: a.evolve(start=a.start + delta, end=a.end + delta))

    def hub_renote(self, appt_id: str, word: str) -> None:
        self._hub_edit(appt_id, lambda a: a.evolve(note=f"Bring the {word} cable"))

    @rule(appt_id=appointments)
    def hub_delete(self, appt_id: str) -> None:
        self.tick()

        async def go() -> tuple[bool, SyncStatus | None]:
            assert self.store is not None
            row = await self._synced_row(self.ledger.created[appt_id], appt_id)
            async with self.store.transaction("api") as tx:
                if await tx.get_appointment(appt_id) is None:
                    return False, None
                await tx.delete_appointment(appt_id)
                return True, row

        deleted, row = self.run(go)
        if deleted:
            note("hub delete")
            self.ledger.hub_deleted.add(appt_id)
            self.ledger.hub_edits_of_remote_deleted.discard(appt_id)
            self.ledger.synced[appt_id] = row.remote_hash if row else None

    # ------------------------------------------------------------------ the agents' side

    @rule(agent_id=agent_ids, day=days, hour=hours, private=st.booleans(), word=words)
    def agent_create(self, agent_id: str, day: int, hour: int, private: bool, word: str) -> None:
        self.tick()
        start = START.replace(hour=hour) + timedelta(days=day)
        data = EventData(
            f"{word} (personal)",
            start,
            start + timedelta(minutes=30),
            body="my own notes",
            private=private,
        )
        self.server.create_external(cal_of(agent_id), data)

    def _agent_move(self, agent_id: str, event: StoredEvent, shift: int) -> None:
        if self.server.get_event(cal_of(agent_id), event.remote_id) is None:
            return  # a race whose target is gone by the time it fires
        delta = timedelta(hours=shift)
        start, end = event.data.start + delta, event.data.end + delta  # type: ignore[operator]
        self.server.move(cal_of(agent_id), event.remote_id, start, end)
        self._agent_edited(agent_id, event)
        if event.hub_id:
            self.ledger.start_set(event.hub_id, start)

    def _agent_edited(self, agent_id: str, event: StoredEvent) -> None:
        if event.hub_id in self.ledger.hub_deleted:
            self.ledger.agent_edits_of_hub_deleted.add(event.hub_id)
            now = self.server.get_event(cal_of(agent_id), event.remote_id)
            assert now is not None
            self.ledger.edited[event.hub_id] = now.data.content_hash()

    def agent_move(self, pick: int, shift: int) -> None:
        self.tick()
        picked = self.pick_remote(pick)
        if picked is not None:
            self._agent_move(*picked, shift)

    def agent_rename(self, pick: int, word: str) -> None:
        self.tick()
        picked = self.pick_remote(pick)
        if picked is not None:
            agent_id, event = picked
            data = replace(event.data, subject=f"{word} (edited on the phone)")
            self.server.edit(cal_of(agent_id), event.remote_id, data)
            if event.hub_id in self.ledger.manual:  # A/B subjects do not flow back anyway
                self._agent_edited(agent_id, event)

    @rule(pick=picks)
    def agent_delete(self, pick: int) -> None:
        self.tick()
        picked = self.pick_remote(pick)
        if picked is not None:
            agent_id, event = picked
            self.server.delete(cal_of(agent_id), event.remote_id)
            note("agent delete of a hub-owned event" if event.hub_id else "agent delete")
            if event.hub_id:
                self._remote_deleted(agent_id, event.hub_id)

    def _remote_deleted(self, agent_id: str, appt_id: str) -> None:
        async def go() -> tuple[SyncStatus | None, str | None]:
            assert self.store is not None
            row = await self._synced_row(agent_id, appt_id)
            appt = await self.store.get_appointment(appt_id)
            return row, (await self._render_hash(appt) if appt is not None else None)

        row, rendered = self.run(go)
        self.ledger.remote_deleted.add(appt_id)
        self.ledger.agent_edits_of_hub_deleted.discard(appt_id)
        self.ledger.synced[appt_id] = row.hub_hash if row else None
        if rendered is not None and row is not None and rendered != row.hub_hash:
            # the hub changed it since the last pass: that edit races this delete too
            self.ledger.hub_edits_of_remote_deleted.add(appt_id)
            self.ledger.edited[appt_id] = rendered

    def agent_breaks_an_event(self, agent_id: str, day: int) -> None:
        self.tick()
        start = START + timedelta(days=day)
        data = EventData("garbled", start, start + timedelta(hours=1))
        self.server.add_bad_event(cal_of(agent_id), "VEVENT without DTSTART", data)

    # ------------------------------------------------------------------ faults

    def fault_transient(self, n: int, operation: str | None, retry_after: float | None) -> None:
        error = TransientError("503 Service Unavailable", retry_after=retry_after)
        self.server.fail_next(n, error, operation=operation)

    def fault_throttle(self, n: int, retry_after: float) -> None:
        self.server.throttle(n, retry_after=retry_after)

    def fault_revoke_auth(self, agent_id: str) -> None:
        self.server.revoke_auth(cal_of(agent_id).mailbox)

    def restore_auth(self) -> None:
        self.server.restore_auth()

    def fault_racing_edit(self, pick: int, shift: int, hub_deletes: bool) -> None:
        """The hub changes (or deletes) an appointment, and the agent drags its event just
        before the engine's write of it arrives: the write must fail its precondition."""
        picked = self.pick_remote(pick)
        if picked is None or picked[1].hub_id is None:
            return
        agent_id, event = picked
        hub_id = event.hub_id
        self.server.race(
            lambda: self._agent_move(agent_id, event, shift), remote_id=event.remote_id
        )
        if hub_deletes:
            self.hub_delete(hub_id)
        else:
            self.hub_move(hub_id, -shift)

    def fault_expire_cursors(self) -> None:
        self.server.expire_cursors()

    @rule(writes=st.integers(min_value=1, max_value=3), agent_id=agent_ids, day=days)
    def fault_crash_mid_pass(self, writes: int, agent_id: str, day: int) -> None:
        """``calhub sync`` dies after the server did a write, before its status commit.
        New work arrives first, so that the pass has at least one write to die after."""
        self.hub_create(agent_id, day, 10, manual=True, private=False, word="Laptop")
        self.server.crash_after_write(writes)

        async def go() -> tuple[bool, set[str]]:
            try:
                for agent_id in AGENTS:
                    await self._pass(agent_id)
                crashed = False
            except SimulatedCrash:
                crashed = True
            assert self.store is not None
            await self.store.close()  # the process is gone: only the database file remains
            await self._open_store()
            unconfirmed = {
                row.appointment_id
                for agent_id in AGENTS
                for row in await self.store.list_status(agent_id, ACCOUNT)
                if row.state == "creating"
            }
            return crashed, unconfirmed

        try:
            crashed, unconfirmed = self.run(go)
        finally:
            self.server.crash_after_write(0)
        if crashed:
            note("crash between a remote write and its status commit")
        # A create whose answer was lost: if the agent deletes the event before the next pass
        # finds it, "created then deleted" and "never created" look the same, and the engine
        # rightly creates it (again) rather than lose the appointment.
        self.ledger.amnesia |= unconfirmed

    @rule(agent_id=agent_ids)
    def fault_lose_status_table(self, agent_id: str) -> None:
        async def go() -> int:
            assert self.store is not None
            rows = await self.store.list_status(agent_id, ACCOUNT)
            async with self.store.transaction("test") as tx:
                for row in rows:
                    await tx.delete_status(agent_id, row.appointment_id, ACCOUNT)
            return len(rows)

        if self.run(go):
            note("status table lost")
            self.ledger.amnesia |= {a for a, who in self.ledger.created.items() if who == agent_id}

    # ------------------------------------------------------------------ the rules
    # Few rules, each choosing among several actions: Hypothesis picks rules uniformly, so
    # this keeps sync passes frequent among the edits and faults.

    @rule(
        appt_id=appointments,
        action=st.sampled_from(["move", "renote"]),
        shift=shifts,
        word=words,
    )
    def hub_change(self, appt_id: str, action: str, shift: int, word: str) -> None:
        if action == "move":
            self.hub_move(appt_id, shift)
        else:
            self.hub_renote(appt_id, word)

    @rule(
        agent_id=agent_ids,
        action=st.sampled_from(["move", "rename", "break"]),
        pick=picks,
        shift=shifts,
        word=words,
        day=days,
    )
    def agent_change(
        self, agent_id: str, action: str, pick: int, shift: int, word: str, day: int
    ) -> None:
        if action == "move":
            self.agent_move(pick, shift)
        elif action == "rename":
            self.agent_rename(pick, word)
        else:
            self.agent_breaks_an_event(agent_id, day)

    @rule(
        kind=st.sampled_from(["race", "transient", "throttle", "auth", "restore-auth", "expire"]),
        agent_id=agent_ids,
        n=st.integers(min_value=1, max_value=4),
        operation=st.sampled_from([None, "fetch", "push", "delete", "get", "find"]),
        retry_after=st.sampled_from([None, 0.5, 2.0, 5.0]),
        pick=picks,
        shift=shifts,
    )
    def fault(
        self,
        kind: str,
        agent_id: str,
        n: int,
        operation: str | None,
        retry_after: float | None,
        pick: int,
        shift: int,
    ) -> None:
        if kind == "transient":
            self.fault_transient(n, operation, retry_after)
        elif kind == "throttle":
            self.fault_throttle(n, retry_after or 1.0)
        elif kind == "auth":
            self.fault_revoke_auth(agent_id)
        elif kind == "restore-auth":
            self.restore_auth()
        elif kind == "race":
            self.fault_racing_edit(pick, shift, hub_deletes=n % 2 == 0)
        else:
            self.fault_expire_cursors()

    # ------------------------------------------------------------------ passes

    @rule(agent_id=agent_ids)
    def sync_one(self, agent_id: str) -> None:
        self.tick()
        self._note(self.run(self._pass, agent_id))

    @rule()
    def sync_all_concurrently(self) -> None:
        self.tick()

        async def go() -> list[PassResult]:
            # The real scheduler: its own provider over the same server, its concurrency
            # limits, one pass per agent at once.
            assert self.store is not None
            registry = ProviderRegistry()
            registry.add(MemoryProvider)
            accounts = {ACCOUNT: AccountConfig(ACCOUNT, "memory", {"server": self.server})}
            config = Config(hub=self.settings, accounts=accounts)
            async with Scheduler(
                self.store, config, registry, Metrics(), background=False, clock=self.clock,
                sleep=self._sleep, retry_policy=RETRY, rng=self.rng,
            ) as scheduler:  # fmt: skip
                return list((await scheduler.run_once(list(AGENTS))).values())

        for result in self.run(go):
            self._note(result)

    @staticmethod
    def _note(result: PassResult) -> None:
        assert result.result in ("ok", "failed", "needs-attention", "stopped"), result
        note(f"pass: {result.result}")
        for key in ("replan", "conflicts", "full_fetch", "restore", "link"):
            if result.counts.get(key):
                note(f"pass counted {key}")

    # ------------------------------------------------------------------ the end state

    @rule()
    def quiesce_and_check(self) -> None:
        """Faults stop; sync runs until nothing changes; then every invariant must hold."""
        self.server.clear_faults()
        self.run(self._quiesce)
        self.run(self._check_invariants)
        self.run(self._check_no_change_pass)
        self.run(self._check_whole_calendar_finds_nothing)
        self.ledger.settled(self.run(self._alive))

    async def _alive(self) -> set[str]:
        assert self.store is not None
        return {a.id for a in await self.store.list_appointments()}

    async def _audit_count(self) -> int:
        assert self.store is not None
        return len(await self.store.list_audit(limit=1_000_000))

    async def _quiesce(self) -> None:
        for _ in range(QUIESCENCE_ROUNDS):
            self.tick()
            before = await self._footprint()
            for agent_id in AGENTS:
                result = await self._pass(agent_id)
                if result.result == "stopped":
                    # The remote calendar came back empty: the admin confirms it is meant.
                    result = await self._pass(agent_id, allow_empty=True)
                assert result.result == "ok", result
            if await self._footprint() == before:
                return
        pytest.fail(f"sync did not quiesce in {QUIESCENCE_ROUNDS} rounds")

    async def _footprint(self) -> tuple[Any, ...]:
        """What a pass may write: audit entries, remote writes, status rows, calendar
        states (the time of the last pass aside)."""
        assert self.store is not None
        ops = self.server.requests_by_operation
        states = [replace(s, last_pass_at=None) for s in await self.store.list_calendar_states()]
        statuses = [await self.store.list_status(a, ACCOUNT) for a in AGENTS]
        return (await self._audit_count(), ops["push"] + ops["delete"], states, statuses)

    async def _check_invariants(self) -> None:
        assert self.store is not None
        for agent_id in AGENTS:
            agent = await self.store.get_agent(agent_id)
            assert agent is not None
            await self._check_agent(agent)

    async def _check_agent(self, agent: Agent) -> None:
        assert self.store is not None
        window = sync_window(self.clock(), self.settings.days_past, self.settings.days_future)
        remote = [e for e in self.remote_events(agent.id) if not e.bad_reason]
        owned = [e for e in remote if e.hub_id is not None]

        # no duplicates: one remote event per hub id
        dupes = [h for h, n in Counter(e.hub_id for e in owned).items() if n > 1]
        assert not dupes, f"{agent.id}: hub ids with several remote events: {dupes}"
        remote_by_hub = {e.hub_id: e for e in owned}

        appts = await self.store.list_appointments(agent_id=agent.id)
        hub_owned = {a.id: a for a in appts if a.kind is not Kind.EXTERNAL}
        externals = [a for a in appts if a.kind is Kind.EXTERNAL]

        # convergence: the same hub-owned events, with the same content
        assert set(hub_owned) == set(remote_by_hub), (
            f"{agent.id}: hub-only {sorted(set(hub_owned) - set(remote_by_hub))}, "
            f"remote-only {sorted(set(remote_by_hub) - set(hub_owned))}"
        )
        for appt_id, appt in hub_owned.items():
            request = await self.store.get_request(appt.request_id) if appt.request_id else None
            want = render_event(appt, agent, request, self.settings)
            got = remote_by_hub[appt_id].data
            assert got.content_hash() == want.content_hash(), (appt_id, got, want)
            assert appt.start in self.ledger.starts[appt_id], f"{appt_id}: invented start"

        conflicts = {
            c.appointment_id
            for c in await self.store.list_conflicts(agent_id=agent.id, limit=100_000)
        }
        mine = {a for a, who in self.ledger.created.items() if who == agent.id}
        raced = self.ledger.raced()
        for appt_id in mine:
            deleted_here = appt_id in self.ledger.hub_deleted
            deleted_there = appt_id in self.ledger.remote_deleted
            alive = appt_id in hub_owned
            if not deleted_here and not deleted_there:
                assert alive, f"{agent.id}: {appt_id} was lost (nobody deleted it)"
            if appt_id in self.ledger.amnesia:
                continue
            if deleted_here and alive:
                assert appt_id in conflicts, f"{appt_id} deleted in the hub came back silently"
            if appt_id in raced and not alive:
                assert appt_id in conflicts, f"{appt_id}: an edit racing a delete was lost"
            if deleted_there and alive and not deleted_here:
                restored = self.settings.remote_delete is RemoteDelete.RESTORE
                assert restored or appt_id in conflicts, (
                    f"{appt_id} deleted by the agent is still there without a conflict"
                )

        # externals: imported exactly when import is on, private ones without content
        imports = (
            agent.import_external
            if agent.import_external is not None
            else self.settings.import_external
        )
        outside = [e for e in remote if e.hub_id is None]
        in_window = [e for e in outside if window.overlaps(e.data.start, e.data.end)]
        if not imports:
            assert externals == [], f"{agent.id}: externals imported with import off"
        else:
            want_subjects = sorted(
                PRIVATE_SUBJECT if e.data.private else e.data.subject for e in in_window
            )
            assert sorted(a.subject for a in externals) == want_subjects
            for appt in externals:
                if appt.private:
                    assert appt.subject == PRIVATE_SUBJECT and appt.note == ""

        # the status table matches what exists
        statuses = await self.store.list_status(agent.id, ACCOUNT)
        remote_ids = {e.remote_id: e for e in remote}
        by_appt = {s.appointment_id: s for s in statuses}
        for status in statuses:
            assert status.state == "synced", status
            event = remote_ids.get(status.remote_id or "")
            assert event is not None, f"status row for a missing event: {status}"
            assert event.hub_id == (None if status.external else status.appointment_id)
            assert await self.store.get_appointment(status.appointment_id) is not None, status
        for hub_id, event in remote_by_hub.items():
            assert by_appt[hub_id].remote_id == event.remote_id
            assert by_appt[hub_id].remote_version == event.version

    async def _check_no_change_pass(self) -> None:
        assert self.store is not None
        audits = await self._audit_count()
        statuses = {a: await self.store.list_status(a, ACCOUNT) for a in AGENTS}
        states = await self.store.list_calendar_states()
        self.server.reset_counters()
        for agent_id in AGENTS:
            result = await self._pass(agent_id)
            assert result.result == "ok", result
            assert result.requests == 1, result
            assert {k: v for k, v in result.counts.items() if k != "skipped"} == {}, result
        assert self.server.requests == len(AGENTS)
        assert await self._audit_count() == audits
        assert {a: await self.store.list_status(a, ACCOUNT) for a in AGENTS} == statuses
        assert await self.store.list_calendar_states() == states

    async def _check_whole_calendar_finds_nothing(self) -> None:
        """Change passes read only what was stamped since the last clean pass: a pass over
        the whole calendar must find nothing they left undone."""
        assert self.store is not None
        for agent_id in AGENTS:
            state = await self.store.get_calendar_state(agent_id)
            assert state is not None and CLEAN_SEQ in state.stats, state
            async with self.store.transaction("test") as tx:
                stats = {k: v for k, v in state.stats.items() if k != CLEAN_SEQ}
                await tx.put_calendar_state(replace(state, stats=stats))
            result = await self._pass(agent_id)
            assert result.result == "ok" and result.hub_read == "calendar", result
            assert {k: v for k, v in result.counts.items() if k != "skipped"} == {}, result


@pytest.mark.parametrize("backend", pgserver.BACKENDS)
def test_sync_faults(backend: str, request: pytest.FixtureRequest) -> None:
    """The machine on each store: the same steps, faults and invariants."""
    machine: type[SyncMachine] = SyncMachine
    profile = settings.get_profile(PROFILE)
    if backend == "postgresql":
        server = request.getfixturevalue("pg_server")
        machine = type("PgSyncMachine", (SyncMachine,), {"pg_server": server})
        # Each statement is a round trip to a server: fewer examples keep the suite's time
        # (CALHUB_FUZZ=long runs the long profile on both stores).
        if PROFILE == "calhub-ci":
            profile = settings(profile, max_examples=PG_EXAMPLES)
    run_state_machine_as_test(machine, settings=profile)


# --------------------------------------------------------------------------- replays
# Shrunk failures of the machine, replayed step by step (deterministic, no Hypothesis).


def test_replay_failed_full_pass_after_lost_status_leaves_no_orphan() -> None:
    """A shrunk failure: the tombstone of a deleted appointment whose status row was lost
    is looked up by hub id before it is purged, so its remote event is deleted too."""
    state = SyncMachine()
    try:
        state.setup(ConflictPolicy.NEWEST, RemoteDelete.FOLLOW, import_external=False)
        gone = state.hub_create("ann", day=8, hour=11, manual=True, private=False, word="VPN")
        state.hub_create("ann", day=16, hour=9, manual=False, private=False, word="VPN")
        state.sync_one("ann")  # pushes both
        state.sync_one("ann")  # reads its own writes back: the cursor is now past them
        state.hub_delete(gone)
        state.fault_lose_status_table("ann")
        state.fault_transient(4, "delete", None)
        state.sync_one("ann")  # full listing: links one pair, the remote delete fails
    finally:
        state.teardown()  # quiesce, then the invariants: the deleted event must be gone
