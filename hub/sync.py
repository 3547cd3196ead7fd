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
  pass stores the new cursor (if any) and skips reading the hub and reconciling.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio

from hub.backoff import RetryPolicy, Sleep, retry
from hub.boundary import guard
from hub.config import HubSettings
from hub.metrics import Metrics
from hub.model import Agent, Appointment, CalendarState, PassResult, Request, SyncStatus
from hub.plan import HubAction, Plan, PushAction, RemoteDeleteAction
from hub.reconcile import (
    CREATING,
    STALE,
    ReconcileInput,
    event_span,
    reconcile,
    wanted_appointment_ids,
)
from hub.render import render_event
from hub.spec import (
    AttentionNeeded,
    AuthError,
    CalendarRef,
    CursorInvalid,
    EventData,
    FetchResult,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    Provider,
    ProviderError,
    PushItem,
    PushResult,
    RemoteEvent,
    TransientError,
    Window,
)
from hub.store.base import Store, StoreUnavailable, Tx
from hub.window import sync_window

log = logging.getLogger(__name__)

T = TypeVar("T")

HUB_CHUNK = 200  # hub-side actions per transaction
FIND_CHUNK = 50  # hub ids per provider.find call
MAX_NOTICES = 50  # skipped items kept in the calendar state
IMPORT_FLAG = "import_external"  # stats key: the import setting the stored cursor was taken with
PAIRS = "pairs"  # stats key: 1 when the status table had rows after the last pass
WINDOW_DAY = "window_day"  # stats key: the first day of the window the cursor was taken with
MAILBOX = "mailbox"  # stats key: a digest of the mailbox address the cursor was taken for
CLEAN_SEQ = "clean_hub_seq"  # stats key: the agent's hub_seq after the last clean pass
SETTINGS_HASH = "settings_hash"  # stats key: fingerprint of what that pass rendered with


@dataclass(slots=True)
class _Tally:
    """What one pass did: counts by action label, skipped items, provider calls."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    requests: int = 0

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append(f"{item}: {reason}")
        self.counts["skipped"] += 1
        log.warning("sync skipped %s: %s", item, reason)


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


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


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
        tally = _Tally()
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

    def _finish_state(self, state: CalendarState, result: PassResult, tally: _Tally) -> None:
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

    async def call(self, tally: _Tally, call: Callable[[], Awaitable[T]]) -> T:
        """One provider call with the retry policy; every attempt counts as a request."""

        async def attempt() -> T:
            tally.requests += 1
            return await call()

        return await retry(attempt, policy=self.retry_policy, sleep=self.sleep, rng=self.rng)


class _Pass:
    """The state of one running pass of one agent."""

    def __init__(
        self,
        engine: AgentSync,
        agent: Agent,
        state: CalendarState,
        tally: _Tally,
        allow_empty: bool,
        now: datetime,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.provider = engine.provider
        self.account = engine.account
        self.settings = engine.settings
        self.agent = agent
        self.state = state
        self.tally = tally
        self.allow_empty = allow_empty
        self.now = now
        self.cal = CalendarRef(agent.id, agent.email, agent.calendar)
        self.window: Window = sync_window(now, self.settings.days_past, self.settings.days_future)
        self.statuses: dict[str, SyncStatus] = {}
        self.requests: dict[str, Request | None] = {}  # read once per pass, for rendering
        # The agent's hub_seq as far as this pass accounts for it (its own writes included);
        # None once a change by someone else may have slipped in.
        self.seq: int | None = None
        self.clean_seq: int | None = None  # set when the pass ends clean
        self.import_on = (
            agent.import_external
            if agent.import_external is not None
            else self.settings.import_external
        )

    async def run(self, result: PassResult) -> None:
        # Read before anything of the hub: a change committed after this read moves the
        # counter past the value this pass records.
        self.seq = await self.store.get_hub_seq(self.agent.id)
        fetch: FetchResult | None = None
        if self._quiet_possible():
            fetch = await self._fetch(self.state.cursor)
            if _quiet(fetch):
                self._take_cursor(fetch)
                self.clean_seq = self.seq
                return
        if self._target_changed():
            await self._forget_old_target()
        statuses = await self.store.list_status(self.agent.id, self.account)
        self.statuses = {s.appointment_id: s for s in statuses}
        usable = self._cursor_usable(statuses)
        if fetch is None or (not usable and not fetch.full):
            fetch = await self._fetch(self.state.cursor if usable else None)
        appts = await self._load(statuses, fetch, ())
        inp = ReconcileInput(
            agent=self.agent,
            account=self.account,
            window=self.window,
            now=self.now,
            appointments=appts,
            statuses=statuses,
            fetch=fetch,
            render=await self._renderer(appts.values()),
            import_external=self.import_on,
            conflict=self.settings.conflict,
            remote_delete=self.settings.remote_delete,
            allow_empty=self.allow_empty or self.state.allow_empty_once,
            read_only=self.provider.read_only,
            status_lost=not statuses and bool(self.state.stats.get(PAIRS)),
        )
        plan = reconcile(inp)
        if plan.needs_lookup and not plan.stop:
            looked_up = await self._get(plan.get)
            found = await self._find(plan.find)
            extra = [e for e in (*looked_up.values(), *found.values()) if e is not None]
            appts = await self._load(statuses, fetch, extra, appts)
            inp = replace(
                inp,
                appointments=appts,
                render=await self._renderer(appts.values()),
                looked_up=looked_up,
                found=found,
            )
            plan = reconcile(inp)
        for skip in plan.skipped:
            self.tally.skip(skip.item, skip.reason)
        if plan.stop:
            result.result, result.error = "stopped", plan.stop
            # Drop the cursor: a delta from it would report the deletes the stop refused.
            self.state.cursor = None
            return
        await self._apply(plan)
        if not plan.empty:
            statuses = await self.store.list_status(self.agent.id, self.account)
        self._advance(fetch, plan, statuses)
        if self._clean(statuses):
            self.clean_seq = self.seq

    def _quiet_possible(self) -> bool:
        """Whether the hub side is exactly what the last clean pass left (see the module
        docstring): then only the provider can have something new."""
        stats = self.state.stats
        return (
            self.seq is not None
            and stats.get(CLEAN_SEQ) == self.seq
            and stats.get(SETTINGS_HASH) == self.engine.fingerprint(self.agent)
            and self.state.last_result == "ok"
            and not (self.allow_empty or self.state.allow_empty_once)
            and self._cursor_trusted()
        )

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
        async with self._transaction() as tx:
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

    def _advance(self, fetch: FetchResult, plan: Plan, statuses: Sequence[SyncStatus]) -> None:
        state = self.state
        self._take_cursor(fetch)
        state.account = self.account
        state.calendar = self.agent.calendar
        state.stats[IMPORT_FLAG] = int(self.import_on)
        state.stats[WINDOW_DAY] = self.window.start.toordinal()
        state.stats[MAILBOX] = _mailbox_key(self.agent.email)
        if plan.used_empty_override:
            state.allow_empty_once = False
        state.stats[PAIRS] = int(bool(statuses))

    # ------------------------------------------------------------------ reading

    async def _fetch(self, cursor: str | None) -> FetchResult:
        try:
            return await self.engine.call(
                self.tally, lambda: self.provider.fetch(self.cal, self.window, cursor)
            )
        except CursorInvalid as exc:
            if cursor is None:
                raise
            self.tally.notices.append(f"cursor refused ({exc.message}); listed the whole window")
            self.tally.counts["full_fetch"] += 1
            return await self.engine.call(
                self.tally, lambda: self.provider.fetch(self.cal, self.window, None)
            )

    async def _load(
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

    async def _renderer(self, appts: Iterable[Appointment]) -> Callable[[Appointment], EventData]:
        # Kept on the pass: the re-plan after a lookup reads only the requests it adds.
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

    async def _get(self, remote_ids: Sequence[str]) -> dict[str, RemoteEvent | None]:
        found: dict[str, RemoteEvent | None] = {}
        for rid in remote_ids:
            try:
                found[rid] = await self.engine.call(
                    self.tally, lambda rid=rid: self.provider.get(self.cal, rid)
                )
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

    async def _find(self, hub_ids: Sequence[str]) -> dict[str, RemoteEvent]:
        found: dict[str, RemoteEvent] = {}
        for chunk in _chunks(hub_ids, FIND_CHUNK):
            try:
                found.update(
                    await self.engine.call(
                        self.tally, lambda chunk=chunk: self.provider.find(self.cal, list(chunk))
                    )
                )
            except NotImplementedError:
                # The contract's idempotent create still links a repeated create.
                self.tally.notices.append("the provider cannot look events up by hub id (find)")
                break
        return found

    # ------------------------------------------------------------------ applying

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        """A write transaction of the engine that keeps :attr:`seq` in step with its own
        writes: the counter is read as the transaction starts and as it ends, and when it
        started where this pass left it, nobody else wrote in between."""
        async with self.store.transaction(self.engine.origin) as tx:
            before = await tx.get_hub_seq(self.agent.id)
            yield tx
            after = await tx.get_hub_seq(self.agent.id)
        self.seq = after if self.seq is not None and before == self.seq else None

    async def _apply(self, plan: Plan) -> None:
        await self._apply_hub(plan.hub)
        for action in plan.remote_deletes:
            await self._delete(action)
        batch = max(1, self.provider.max_batch)
        for chunk in _chunks(plan.pushes, batch):
            await self._push(list(chunk))

    async def _apply_hub(self, actions: Sequence[HubAction]) -> None:
        for chunk in _chunks(actions, HUB_CHUNK):
            try:
                async with self._transaction() as tx:
                    planned = (a.appointment_id for a in chunk if a.planned_version is not None)
                    versions = await self._versions(tx, planned)
                    written = [a for a in chunk if await self._write_hub(tx, a, versions)]
            except StoreUnavailable:
                raise  # no write can start: stop the pass instead of skipping every item
            except Exception:
                if len(chunk) == 1:
                    self._hub_failed(chunk[0])
                    continue
                # Find the bad one: each action on its own, so the rest still commits.
                for action in chunk:
                    try:
                        async with self._transaction() as tx:
                            done = await self._write_hub(tx, action, {})
                    except Exception:
                        self._hub_failed(action)
                    else:
                        if done:
                            self._count(action.label, action.conflict is not None)
                continue
            for action in written:
                self._count(action.label, action.conflict is not None)

    def _hub_failed(self, action: HubAction) -> None:
        log.exception("sync: hub write %s of %s failed", action.label, action.appointment_id)
        self.tally.skip(action.appointment_id, f"hub write failed ({action.label})")

    @staticmethod
    async def _versions(tx: Tx, appt_ids: Iterable[str]) -> dict[str, int | None]:
        """The current version of each appointment (None: none), read with one query for a
        whole batch of writes instead of one per write."""
        ids = set(appt_ids)
        found = await tx.get_appointments(ids, include_deleted=True) if ids else {}
        return {i: found[i].version if i in found else None for i in ids}

    async def _moved_on(
        self, tx: Tx, appt_id: str, planned: int | None, versions: dict[str, int | None]
    ) -> bool:
        """Whether the appointment changed (API, rules) since the plan was made.

        ``versions`` holds versions read earlier in this transaction; the id is taken out of
        it, as the caller writes the appointment next (a later check reads it again)."""
        known = appt_id in versions
        current = versions.pop(appt_id, None)
        if planned is None:
            return False
        if not known:
            appt = await tx.get_appointment(appt_id, include_deleted=True)
            current = None if appt is None else appt.version
        return current is not None and current != planned

    async def _write_hub(self, tx: Tx, action: HubAction, versions: dict[str, int | None]) -> bool:
        """Write one hub action; False when it was left for the next pass (hub changed)."""
        appt_id = action.appointment_id
        if await self._moved_on(tx, appt_id, action.planned_version, versions):
            # Writing now would undo a change made during this pass. The change triggers
            # another pass; the stale mark makes it re-read the remote side the cursor has
            # already moved past.
            self.tally.counts["replan"] += 1
            status = self.statuses.get(appt_id)
            if status is not None and status.remote_id is not None:
                await tx.put_status(self._stale(appt_id, status.remote_id))
            return False
        if action.conflict is not None:
            await tx.add_conflict(action.conflict)
        if action.delete:
            await tx.delete_appointment(appt_id)
            await tx.purge_appointment(appt_id)
        elif action.purge:
            await tx.purge_appointment(appt_id)
        if action.put is not None:
            await tx.put_appointment(action.put)
        if action.status is not None:
            await tx.put_status(replace(action.status, updated_at=self.now))
        elif action.drop_status:
            await tx.delete_status(self.agent.id, appt_id, self.account)
        if action.audit is not None:
            await tx.audit("appointment", appt_id, action.audit[0], **action.audit[1])
        return True

    def _count(self, label: str, conflict: bool) -> None:
        self.tally.counts[label] += 1
        if conflict:
            self.tally.counts["conflicts"] += 1

    def _stale(self, appointment_id: str, remote_id: str | None) -> SyncStatus:
        """The pair's status row marked stale: the next pass re-reads the event first."""
        current = self.statuses.get(appointment_id)
        if current is not None and current.state != CREATING:
            return replace(current, state=STALE, updated_at=self.now)
        return SyncStatus(
            agent_id=self.agent.id,
            appointment_id=appointment_id,
            account=self.account,
            remote_id=remote_id,
            remote_version=None,
            hub_hash=None,
            remote_hash=None,
            state=STALE,
            updated_at=self.now,
        )

    async def _delete(self, action: RemoteDeleteAction) -> None:
        try:
            await self.engine.call(
                self.tally,
                lambda: self.provider.delete(self.cal, action.remote_id, action.version),
            )
        except NotFoundError:
            pass  # already gone: the delete is done
        except PreconditionFailed as exc:
            self.tally.counts["replan"] += 1
            log.info("sync: delete of %s refused (%s); re-planned", action.remote_id, exc)
            if action.appointment_id is not None and action.appointment_id in self.statuses:
                async with self._transaction() as tx:
                    await tx.put_status(self._stale(action.appointment_id, action.remote_id))
            return
        except PermanentError as exc:
            self.tally.skip(action.appointment_id or action.remote_id, exc.message)
            return
        async with self._transaction() as tx:
            if action.conflict is not None:
                await tx.add_conflict(action.conflict)
            appt_id = action.appointment_id
            if appt_id is not None and action.purge:
                await tx.purge_appointment(appt_id)
            elif appt_id is not None and action.drop_status:
                await tx.delete_status(self.agent.id, appt_id, self.account)
            if appt_id is None:
                await tx.audit(
                    "remote-event", action.remote_id, f"deleted-{action.label}", agent=self.agent.id
                )
        self._count(action.label, action.conflict is not None)

    async def _push(self, actions: list[PushAction]) -> None:
        creates = [a for a in actions if a.is_create]
        if creates:
            # Committed before the remote call: a crash after the create leaves this row,
            # and the next pass looks the event up by hub id instead of creating it again.
            async with self._transaction() as tx:
                await tx.put_statuses([self._creating(a) for a in creates])
                # A create's conflict is recorded with the decision: after a crash the next
                # pass links the event and would have no reason to record it again.
                for action in creates:
                    if action.conflict is not None:
                        await tx.add_conflict(action.conflict)
        pending = actions
        retry_no = 0
        while pending:
            outcomes = await self.engine.call(
                self.tally,
                lambda pending=pending: self.provider.push(
                    self.cal, [self._item(a) for a in pending]
                ),
            )
            again, last = await self._settle(pending, outcomes)
            if not again:
                return
            assert last is not None
            policy = self.engine.retry_policy
            retry_no += 1
            if retry_no >= policy.attempts:
                raise TransientError(f"{last.message} (gave up after {policy.attempts} attempts)")
            if last.retry_after is not None and last.retry_after > policy.max_retry_after:
                # As for a whole call (hub.backoff.retry): a wait that long ends the pass.
                raise TransientError(
                    f"{last.message} (server asked to wait {last.retry_after:g} s)",
                    retry_after=last.retry_after,
                )
            wait = policy.delay(retry_no - 1, last.retry_after, self.engine.rng)
            await self.engine.sleep(wait)
            pending = again

    def _creating(self, action: PushAction) -> SyncStatus:
        start, end = event_span(action.data)
        digest = action.hub_hash
        return SyncStatus(
            agent_id=self.agent.id,
            appointment_id=action.appointment_id,
            account=self.account,
            remote_id=None,
            remote_version=None,
            hub_hash=digest,
            remote_hash=digest,
            state=CREATING,
            start=start,
            end=end,
            updated_at=self.now,
        )

    @staticmethod
    def _item(action: PushAction) -> PushItem:
        return PushItem(
            action.appointment_id,
            action.data,
            action.remote_id,
            action.version,
            replaces=action.replaces,
        )

    async def _settle(
        self, actions: Sequence[PushAction], outcomes: Sequence[PushResult | ProviderError]
    ) -> tuple[list[PushAction], TransientError | None]:
        """Commit what the provider accepted; return the items to retry (transient) and the
        transient error asking for the longest wait."""
        again: list[PushAction] = []
        last: TransientError | None = None
        fatal: ProviderError | None = None
        done: list[tuple[PushAction, PushResult]] = []
        stale: list[SyncStatus] = []
        dropped: list[str] = []
        for action, outcome in zip(actions, outcomes, strict=True):
            if isinstance(outcome, PushResult):
                done.append((action, outcome))
            elif isinstance(outcome, TransientError):
                again.append(action)
                # All of them are sent again together: wait as long as the longest asked.
                if last is None or (outcome.retry_after or 0) > (last.retry_after or 0):
                    last = outcome
            elif isinstance(outcome, AuthError):
                fatal = outcome
                if action.is_create:
                    dropped.append(action.appointment_id)
            elif isinstance(outcome, (PreconditionFailed, NotFoundError)) and not action.is_create:
                self.tally.counts["replan"] += 1
                stale.append(self._stale(action.appointment_id, action.remote_id))
            else:
                self.tally.skip(action.appointment_id, outcome.message)
                if action.is_create:
                    dropped.append(action.appointment_id)
        if done or stale or dropped:
            async with self._transaction() as tx:
                puts = (a.appointment_id for a, _ in done if a.hub_put is not None)
                versions = await self._versions(tx, puts)
                for action, res in done:
                    await self._write_pushed(tx, action, res, versions)
                if stale:
                    await tx.put_statuses(stale)
                for appt_id in dropped:
                    await tx.delete_status(self.agent.id, appt_id, self.account)
        for action, _ in done:
            self._count(action.label, action.conflict is not None)
        if fatal is not None:
            raise fatal
        return again, last

    async def _write_pushed(
        self, tx: Tx, action: PushAction, res: PushResult, versions: dict[str, int | None]
    ) -> None:
        remote = res.data or action.data
        # Most providers store exactly what was sent: skip hashing the same content twice.
        remote_hash = action.hub_hash if remote == action.data else remote.content_hash()
        start, end = event_span(remote)
        if action.conflict is not None and not action.is_create:
            await tx.add_conflict(action.conflict)
        status = SyncStatus(
            agent_id=self.agent.id,
            appointment_id=action.appointment_id,
            account=self.account,
            remote_id=res.remote_id,
            remote_version=res.version,
            hub_hash=action.hub_hash,
            remote_hash=remote_hash,
            start=start,
            end=end,
            updated_at=self.now,
        )
        put = action.hub_put
        if put is not None and await self._moved_on(
            tx, action.appointment_id, put.version, versions
        ):
            # The hub changed while the remote side was being written: neither side is the
            # last-synced base any more, so the next pass re-reads the event and treats the
            # pair as changed on both sides (the conflict policy decides, and it is recorded).
            self.tally.counts["replan"] += 1
            status = replace(status, hub_hash=None, remote_hash=None, state=STALE)
        elif put is not None:
            await tx.put_appointment(put)
        await tx.put_status(status)
        if action.audit is not None:
            await tx.audit("appointment", action.appointment_id, action.audit[0], **action.audit[1])


__all__ = ["AgentSync"]


def _mailbox_key(address: str) -> int:
    """A small stable digest of a mailbox address (calendar state stats hold integers)."""
    return int.from_bytes(hashlib.sha256(address.strip().lower().encode()).digest()[:6], "big")
