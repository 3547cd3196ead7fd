"""One sync pass of one agent calendar against one provider account.

:class:`AgentSync` fetches what changed since the stored cursor, loads the hub side, asks
:func:`hub.reconcile.reconcile` for a plan and carries it out:

- per-item isolation: an item the provider refuses (or that cannot be rendered, or whose hub
  write fails) is skipped with its reason and the rest of the calendar syncs;
- creates write a status row in state ``creating`` (committed) before the remote call, and
  the final row in the same transaction as the hub-side change after it returned, so a crash
  in between is found again by hub id instead of creating a duplicate;
- every update and delete carries its precondition; a 412 (or 404 on update) marks the pair
  ``stale`` and the next pass re-reads the event before deciding again;
- transient errors are retried with :mod:`hub.backoff`; when retries run out the pass ends
  ``failed``. An auth error ends it ``needs-attention``. The cursor is stored only after the
  plan was applied, so a pass that ended early is repeated from the same point;
- a pass with nothing to do writes nothing (the calendar state only when it changed);
- the quiet path: when the last pass was clean (nothing skipped or left for later), the
  agent's hub change counter (:meth:`hub.store.base.Store.get_hub_seq`) and the settings are
  what that pass saw, and the incremental fetch reports nothing, neither side changed: the
  pass stores the new cursor (if any) and skips reading the hub and reconciling;
- the change pass: after a clean pass with the same settings and cursor, a pass that finds
  something new reads only the appointments stamped since (``hub_changes``, see
  :meth:`hub.store.base.Store.changed_since`), the events the delta reported and the status
  rows of both, by key, and reconciles those: its cost follows the change, not the calendar.
  Anything else (a first pass, a full listing, changed settings, an unfinished last pass, more
  than ``changes_limit`` changes) reconciles the whole window.

A pass reads through :class:`hub.sync_read.PassReader` (nothing there writes), decides with
the pure :func:`hub.reconcile.reconcile`, and writes through
:class:`hub.sync_apply.PlanApplier`; this module keeps the order and the calendar state.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio

from hub.backoff import RetryPolicy, Sleep, retry
from hub.boundary import guard
from hub.config import HubSettings
from hub.metrics import Metrics
from hub.model import Agent, Appointment, CalendarState, PassResult, SyncStatus
from hub.plan import Plan
from hub.reconcile import (
    CREATING,
    STALE,
    ReconcileInput,
    reconcile,
    touched_remote_ids,
)
from hub.spec import (
    AttentionNeeded,
    AuthError,
    FetchResult,
    NotFoundError,
    Provider,
    ProviderError,
    RemoteEvent,
    TransientError,
)
from hub.store.base import Store
from hub.sync_apply import PlanApplier
from hub.sync_read import PassReader
from hub.sync_scope import PassScope, Tally

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_NOTICES = 50  # skipped items kept in the calendar state
IMPORT_FLAG = "import_external"  # stats key: the import setting the stored cursor was taken with
PAIRS = "pairs"  # stats key: 1 when the status table had rows after the last pass
WINDOW_DAY = "window_day"  # stats key: the first day of the window the cursor was taken with
MAILBOX = "mailbox"  # stats key: a digest of the mailbox address the cursor was taken for
CLEAN_SEQ = "clean_hub_seq"  # stats key: the agent's hub_seq after the last clean pass
SETTINGS_HASH = "settings_hash"  # stats key: fingerprint of what that pass rendered with
# Changed appointments beyond which a change pass reads the whole window instead: past this
# many, one range read costs less than the lookups by key.
CHANGES_LIMIT = 500


def _persisted(state: CalendarState | None) -> tuple[Any, ...] | None:
    """The fields whose change is worth a write (last_pass_at alone is not)."""
    if state is None:
        return None
    return (
        state.account,
        state.calendar,
        state.cursor,
        state.last_result,
        state.last_error,
        state.needs_attention,
        state.allow_empty_once,
        tuple(state.notices),
        tuple(sorted(state.stats.items())),
    )


def _quiet(fetch: FetchResult) -> bool:
    """Whether an incremental fetch reported no change at all (its cursor aside)."""
    return not (fetch.full or fetch.changed or fetch.deleted or fetch.left_window or fetch.skipped)


def settings_fingerprint(settings: HubSettings, agent: Agent, account: str, read_only: bool) -> int:
    """A digest of everything a pass renders and decides with besides the hub records: a
    change of the settings (templates, reminders, time zone, policies, window) or of the
    agent makes the next pass reconcile in full. 48 bits: exact in any JSON reader.

    Both records are flat dataclasses whose repr shows every field: as exact as
    :func:`dataclasses.asdict`, without the deep copy it makes twice in every pass."""
    text = repr((settings, agent, account, read_only))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big")


class AgentSync:
    """Runs sync passes of agent calendars at one provider account (one pass at a time per
    agent: the scheduler guarantees it)."""

    def __init__(
        self,
        store: Store,
        provider: Provider,
        account_name: str,
        settings: HubSettings,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Sleep | None = None,
        retry_policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        changes_limit: int = CHANGES_LIMIT,
    ) -> None:
        self.store = store
        # Every call goes through the boundary: flags, error translation, telemetry.
        self.provider = guard(provider, calls=metrics)
        self.account = account_name
        self.settings = settings
        self.metrics = metrics
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep: Sleep = sleep or anyio.sleep
        self.retry_policy = retry_policy or RetryPolicy()
        self.rng = rng or random.Random()
        # Changed appointments a change pass takes on; 0: every pass that is not quiet
        # reads the whole calendar.
        self.changes_limit = changes_limit
        self.origin = f"sync:{account_name}"

    # ------------------------------------------------------------------ the pass

    async def run(self, agent: Agent, *, allow_empty: bool = False) -> PassResult:
        """One pass of ``agent``'s calendar; never raises a provider error (see the result)."""
        started = self.clock()
        perf = time.perf_counter()
        result = PassResult(agent.id, self.account, "ok", started_at=started)
        stored = await self.store.get_calendar_state(agent.id)
        before = _persisted(stored)
        state = stored or CalendarState(agent_id=agent.id, account=self.account)
        state = replace(state, notices=list(state.notices), stats=dict(state.stats))
        tally = Tally()
        error_kind = ""
        one = _Pass(self, agent, state, tally, allow_empty, started)
        try:
            await one.run(result)
        except AuthError as exc:
            result.result, error_kind = "needs-attention", "auth"
            result.error = f"authentication refused: {exc.message}"
            result.scope = "account" if exc.mailbox is None else "agent"
        except NotFoundError as exc:
            result.result, error_kind = "needs-attention", "not-found"
            result.error = f"calendar not found: {exc.message}"
            result.scope = "agent"
        except AttentionNeeded as exc:
            result.result, error_kind = "needs-attention", "attention"
            result.error = exc.message
            result.scope = "agent"
        except TransientError as exc:
            result.result, error_kind = "failed", "transient"
            result.error = exc.message
        except ProviderError as exc:
            result.result, error_kind = "failed", type(exc).__name__
            result.error = exc.message
        result.counts = dict(tally.counts)
        result.skipped_items = tally.skipped
        result.requests = tally.requests
        result.finished_at = self.clock()
        self._finish_state(state, result, tally)
        self._mark_clean(state, agent, one.clean_seq if result.result == "ok" else None)
        if _persisted(state) != before:
            state.last_pass_at = result.finished_at
            async with self.store.transaction(self.origin) as tx:
                await tx.put_calendar_state(state)
        if self.metrics is not None:
            self.metrics.sync_pass(
                self.account, result.result, time.perf_counter() - perf, error_kind
            )
            self.metrics.sync_items(self.account, result.counts)
        return result

    def _finish_state(self, state: CalendarState, result: PassResult, tally: Tally) -> None:
        state.last_result = result.result
        state.last_error = result.error
        state.needs_attention = result.result == "needs-attention" or (
            state.needs_attention and result.result != "ok"
        )
        state.notices = (tally.notices + tally.skipped)[:MAX_NOTICES]

    def _mark_clean(self, state: CalendarState, agent: Agent, seq: int | None) -> None:
        """Record what a clean pass saw, so the next one may take the quiet path; forget it
        after any other pass."""
        if seq is None:
            state.stats.pop(CLEAN_SEQ, None)
            state.stats.pop(SETTINGS_HASH, None)
        else:
            state.stats[CLEAN_SEQ] = seq
            state.stats[SETTINGS_HASH] = self.fingerprint(agent)

    def fingerprint(self, agent: Agent) -> int:
        """What :func:`settings_fingerprint` makes of this engine's passes of ``agent``."""
        return settings_fingerprint(self.settings, agent, self.account, self.provider.read_only)

    # ------------------------------------------------------------------ provider calls

    async def call(self, tally: Tally, call: Callable[[], Awaitable[T]]) -> T:
        """One provider call with the retry policy; every attempt counts as a request."""

        async def attempt() -> T:
            tally.requests += 1
            return await call()

        return await retry(attempt, policy=self.retry_policy, sleep=self.sleep, rng=self.rng)


class _Pass(PassScope):
    """One running pass of one agent: decides when to take the quiet path, reconciles, and
    keeps the calendar state's cursor bookkeeping. Reading is :class:`PassReader`'s job and
    writing :class:`PlanApplier`'s."""

    def __init__(
        self,
        engine: AgentSync,
        agent: Agent,
        state: CalendarState,
        tally: Tally,
        allow_empty: bool,
        now: datetime,
    ) -> None:
        super().__init__(engine, agent, tally, now)
        self.read = PassReader(engine, agent, tally, now)
        self.write = PlanApplier(engine, agent, tally, now)
        self.state = state
        self.allow_empty = allow_empty
        self.clean_seq: int | None = None  # set when the pass ends clean
        self.import_on = (
            agent.import_external
            if agent.import_external is not None
            else self.settings.import_external
        )

    async def run(self, result: PassResult) -> None:
        # Read before anything of the hub: a change committed after this read moves the
        # counter past the value this pass records.
        self.write.seq = await self.store.get_hub_seq(self.agent.id)
        fetch: FetchResult | None = None
        since = self._clean_base()
        if since is not None:
            fetch = await self.read.fetch(self.state.cursor)
            if since == self.write.seq and _quiet(fetch):
                result.hub_read = "none"
                self._take_cursor(fetch)
                self.clean_seq = self.write.seq
                return
            limit = self.engine.changes_limit
            if (
                limit > 0
                and not fetch.full
                and (
                    await self.store.has_status(self.agent.id, self.account)
                    or not self.state.stats.get(PAIRS)
                )
            ):
                changed = await self.store.changed_since(self.agent.id, since, limit)
                if changed is not None:
                    result.hub_read = "changes"
                    await self._changes_pass(result, fetch, changed)
                    return
        result.hub_read = "calendar"
        await self._calendar_pass(result, fetch)

    async def _calendar_pass(self, result: PassResult, fetch: FetchResult | None) -> None:
        """Reconcile the whole window: every appointment and status row of the agent."""
        if self._target_changed():
            await self._forget_old_target()
        statuses = await self.store.list_status(self.agent.id, self.account)
        self.write.statuses = {s.appointment_id: s for s in statuses}
        usable = self._cursor_usable(statuses)
        if fetch is None or (not usable and not fetch.full):
            fetch = await self.read.fetch(self.state.cursor if usable else None)
        appts = await self.read.hub.load(statuses, fetch, ())
        inp = await self._input(appts, statuses, fetch)
        inp = replace(inp, status_lost=not statuses and bool(self.state.stats.get(PAIRS)))
        plan = reconcile(inp)
        if plan.needs_lookup and not plan.stop:
            looked_up, found, extra = await self._look_up(plan)
            appts = await self.read.hub.load(statuses, fetch, extra, appts)
            plan = reconcile(await self._input(appts, statuses, fetch, inp, looked_up, found))
        if not await self._apply(result, plan):
            return
        if not plan.empty:
            statuses = await self.store.list_status(self.agent.id, self.account)
        self._advance(fetch, plan, bool(statuses))
        if self._clean(statuses):
            self.clean_seq = self.write.seq

    async def _changes_pass(
        self, result: PassResult, fetch: FetchResult, changed: Sequence[str]
    ) -> None:
        """Reconcile only what changed on either side since the last clean pass: the
        appointments stamped since (see :meth:`hub.store.base.Store.changed_since`) and the
        events the delta reported. Every other pair was synced then and nothing touched it
        since, so the whole-window reconcile would decide nothing about it."""
        part = await self.read.hub.load_changes(self.account, changed, fetch)
        self.write.statuses = {s.appointment_id: s for s in part.statuses}
        inp = await self._input(part.appointments, part.statuses, fetch)
        plan = reconcile(inp)
        if plan.needs_lookup and not plan.stop:
            looked_up, found, extra = await self._look_up(plan)
            part = await self.read.hub.load_changes(self.account, changed, fetch, extra, part)
            self.write.statuses = {s.appointment_id: s for s in part.statuses}
            inp = await self._input(part.appointments, part.statuses, fetch, inp, looked_up, found)
            plan = reconcile(inp)
        if not await self._apply(result, plan):
            return
        statuses = part.statuses
        if not plan.empty:
            statuses = await self.store.get_statuses(
                self.agent.id,
                self.account,
                appointment_ids=part.asked | plan.appointment_ids(),
                remote_ids=touched_remote_ids(fetch),
            )
        pairs = bool(statuses) or await self.store.has_status(self.agent.id, self.account)
        self._advance(fetch, plan, pairs)
        if self._clean(statuses):
            self.clean_seq = self.write.seq

    async def _input(
        self,
        appts: dict[str, Appointment],
        statuses: Sequence[SyncStatus],
        fetch: FetchResult,
        first: ReconcileInput | None = None,
        looked_up: dict[str, RemoteEvent | None] | None = None,
        found: dict[str, RemoteEvent] | None = None,
    ) -> ReconcileInput:
        """The reconcile's input; a re-plan (``first`` given) adds the lookups' answers."""
        render = await self.read.hub.renderer(appts.values())
        if first is not None:
            return replace(
                first,
                appointments=appts,
                statuses=statuses,
                render=render,
                looked_up=looked_up,
                found=found,
            )
        return ReconcileInput(
            agent=self.agent,
            account=self.account,
            window=self.window,
            now=self.now,
            appointments=appts,
            statuses=statuses,
            fetch=fetch,
            render=render,
            import_external=self.import_on,
            conflict=self.settings.conflict,
            remote_delete=self.settings.remote_delete,
            allow_empty=self.allow_empty or self.state.allow_empty_once,
            read_only=self.provider.read_only,
        )

    async def _look_up(
        self, plan: Plan
    ) -> tuple[dict[str, RemoteEvent | None], dict[str, RemoteEvent], list[RemoteEvent]]:
        """Ask the provider what the plan needs to know; the events found, as a list too."""
        looked_up = await self.read.get(plan.get)
        found = await self.read.find(plan.find)
        extra = [e for e in (*looked_up.values(), *found.values()) if e is not None]
        return looked_up, found, extra

    async def _apply(self, result: PassResult, plan: Plan) -> bool:
        """Carry the plan out; False when it stopped instead."""
        for skip in plan.skipped:
            self.tally.skip(skip.item, skip.reason)
        if plan.stop:
            result.result, result.error = "stopped", plan.stop
            # Drop the cursor: a delta from it would report the deletes the stop refused.
            self.state.cursor = None
            return False
        await self.write.apply(plan)
        return True

    def _clean_base(self) -> int | None:
        """The hub_seq the last clean pass recorded, when this pass may build on it: the
        settings and the cursor are what that pass used (see the module docstring)."""
        stats = self.state.stats
        seq = stats.get(CLEAN_SEQ)
        if (
            self.write.seq is None
            or not isinstance(seq, int)
            or stats.get(SETTINGS_HASH) != self.engine.fingerprint(self.agent)
            or self.state.last_result != "ok"
            or self.allow_empty
            or self.state.allow_empty_once
            or not self._cursor_trusted()
        ):
            return None
        return seq

    def _clean(self, statuses: Sequence[SyncStatus]) -> bool:
        """Whether this pass left nothing for the next one to finish: no skipped item, no
        write left for a re-plan, no create in flight or pair to re-read."""
        return (
            not self.tally.skipped
            and not self.tally.counts["replan"]
            and not any(s.state in (CREATING, STALE) for s in statuses)
        )

    def _cursor_trusted(self) -> bool:
        """The checks of :meth:`_cursor_usable` that need no status rows."""
        state = self.state
        if state.cursor is None or state.account != self.account:
            return False
        if state.calendar != self.agent.calendar:
            return False
        if state.stats.get(MAILBOX) != _mailbox_key(self.agent.email):
            return False  # a delta link or sync token of the agent's previous mailbox
        if self.import_on and not state.stats.get(IMPORT_FLAG):
            return False  # externals that passed unseen while import was off: list them all
        # A new day moved the window: what entered it was never reported by a delta taken
        # over the old one (whether the provider notices or not).
        return state.stats.get(WINDOW_DAY) == self.window.start.toordinal()

    def _target_changed(self) -> bool:
        """The agent now points at another account, mailbox or calendar than the one the
        stored pairs describe (a first pass has nothing stored and changes nothing)."""
        state = self.state
        if state.last_pass_at is None and state.cursor is None:
            return False
        mailbox = state.stats.get(MAILBOX)
        return (
            state.account != self.account
            or state.calendar != self.agent.calendar
            or (mailbox is not None and mailbox != _mailbox_key(self.agent.email))
        )

    async def _forget_old_target(self) -> None:
        """Start the new calendar afresh: the old pairs name events of another calendar, so
        an absence there is no delete (hub-owned appointments are pushed to the new one,
        imports of the old one are removed by the full listing). The old calendar's events
        are left where they are: the hub may no longer reach it."""
        accounts = {self.account, self.state.account}
        async with self.write.transaction() as tx:
            for account in accounts:
                for status in await tx.list_status(self.agent.id, account):
                    await tx.delete_status(self.agent.id, status.appointment_id, account)
        self.state.cursor = None
        self.state.stats.pop(PAIRS, None)
        self.tally.notices.append(
            "the agent's calendar changed: synced it afresh (the previous calendar's events "
            "were left in place)"
        )

    def _cursor_usable(self, statuses: Sequence[SyncStatus]) -> bool:
        # The status table was lost (or wiped): a full listing lets tagged events be linked.
        return self._cursor_trusted() and (bool(statuses) or not self.state.stats.get(PAIRS))

    def _take_cursor(self, fetch: FetchResult) -> None:
        if fetch.cursor != self.state.cursor:
            self.state.cursor = fetch.cursor
            self.state.cursor_at = self.now
        self.tally.notices.extend(fetch.notices)

    def _advance(self, fetch: FetchResult, plan: Plan, pairs: bool) -> None:
        state = self.state
        self._take_cursor(fetch)
        state.account = self.account
        state.calendar = self.agent.calendar
        state.stats[IMPORT_FLAG] = int(self.import_on)
        state.stats[WINDOW_DAY] = self.window.start.toordinal()
        state.stats[MAILBOX] = _mailbox_key(self.agent.email)
        if plan.used_empty_override:
            state.allow_empty_once = False
        state.stats[PAIRS] = int(pairs)


__all__ = ["AgentSync"]


def _mailbox_key(address: str) -> int:
    """A small stable digest of a mailbox address (calendar state stats hold integers)."""
    return int.from_bytes(hashlib.sha256(address.strip().lower().encode()).digest()[:6], "big")
