"""Applying one sync pass's plan: hub writes, remote deletes and pushes, with their status rows.

:class:`PlanApplier` carries out a :class:`hub.plan.Plan` (see :mod:`hub.sync` for the
guarantees: per-item isolation, ``creating`` rows committed before a create is sent,
preconditions on every update and delete, stale marks on a refusal, retries of transient
per-item outcomes). It keeps the agent's hub change counter in step with its own writes, so
the pass can tell whether anyone else wrote meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from hub.model import Agent, SyncStatus
from hub.plan import HubAction, Plan, PushAction, RemoteDeleteAction
from hub.reconcile import CREATING, STALE, event_span
from hub.spec import (
    AuthError,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    PushItem,
    PushResult,
    TransientError,
)
from hub.store.base import StoreUnavailable, Tx
from hub.sync_scope import PassScope, Tally, chunks

if TYPE_CHECKING:
    from hub.sync import AgentSync

log = logging.getLogger("hub.sync")

HUB_CHUNK = 200  # hub-side actions per transaction


class PlanApplier(PassScope):
    """Writes one pass's plan; ``statuses`` are the pair rows the plan was made from."""

    def __init__(self, engine: AgentSync, agent: Agent, tally: Tally, now: datetime) -> None:
        super().__init__(engine, agent, tally, now)
        self.statuses: dict[str, SyncStatus] = {}
        # The agent's hub_seq as far as this pass accounts for it (its own writes included);
        # None once a change by someone else may have slipped in.
        self.seq: int | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction of the engine that keeps :attr:`seq` in step with its own
        writes: the counter is read as the transaction starts and as it ends, and when it
        started where this pass left it, nobody else wrote in between."""
        async with self.store.transaction(self.engine.origin) as tx:
            before = await tx.get_hub_seq(self.agent.id)
            after = tx.hub_seq_at_end(self.agent.id)  # read with the commit: no round trip
            yield tx
        self.seq = after() if self.seq is not None and before == self.seq else None

    async def apply(self, plan: Plan) -> None:
        await self._apply_hub(plan.hub)
        for action in plan.remote_deletes:
            await self._delete(action)
        batch = max(1, self.provider.max_batch)
        for chunk in chunks(plan.pushes, batch):
            await self._push(list(chunk))

    async def _apply_hub(self, actions: Sequence[HubAction]) -> None:
        for chunk in chunks(actions, HUB_CHUNK):
            try:
                async with self.transaction() as tx:
                    planned = (a.appointment_id for a in chunk if a.planned_version is not None)
                    versions = await self._versions(tx, planned)
                    written = [a for a in chunk if await self._write_hub(tx, a, versions)]
            except StoreUnavailable:
                raise  # no write can start: stop the pass instead of skipping every item
            except Exception:
                if len(chunk) == 1:
                    await self._hub_failed(chunk[0])
                    continue
                # Find the bad one: each action on its own, so the rest still commits.
                for action in chunk:
                    try:
                        async with self.transaction() as tx:
                            done = await self._write_hub(tx, action, {})
                    except Exception:
                        await self._hub_failed(action)
                    else:
                        if done:
                            self._count(action.label, action.conflict is not None)
                continue
            for action in written:
                self._count(action.label, action.conflict is not None)

    async def _hub_failed(self, action: HubAction) -> None:
        """Skip a hub write that failed (called while its exception is handled), and mark the
        pair stale: the cursor moves past the change the write was to take (a remote move, a
        new import), and no delta reports that change again, so the next pass reads the event
        itself instead of forgetting the change."""
        log.exception("sync: hub write %s of %s failed", action.label, action.appointment_id)
        self.tally.skip(action.appointment_id, f"hub write failed ({action.label})")
        status = self.statuses.get(action.appointment_id)
        if status is not None and status.remote_id is not None and status.state != CREATING:
            mark = self.stale(action.appointment_id, status.remote_id)
        elif action.status is not None and action.status.external:
            # A first import: the re-read imports it then (no hashes: nothing is synced yet).
            mark = replace(
                action.status, state=STALE, hub_hash=None, remote_hash=None, updated_at=self.now
            )
        else:
            return
        try:
            async with self.transaction() as tx:
                await tx.put_status(mark)
        except Exception:
            log.exception("sync: marking %s for a re-read failed", action.appointment_id)

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
                await tx.put_status(self.stale(appt_id, status.remote_id))
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

    def stale(self, appointment_id: str, remote_id: str | None) -> SyncStatus:
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
            await self.calls(
                lambda: self.provider.delete(self.cal, action.remote_id, action.version),
            )
        except NotFoundError:
            pass  # already gone: the delete is done
        except PreconditionFailed as exc:
            self.tally.counts["replan"] += 1
            log.info("sync: delete of %s refused (%s); re-planned", action.remote_id, exc)
            if action.appointment_id is not None and action.appointment_id in self.statuses:
                async with self.transaction() as tx:
                    await tx.put_status(self.stale(action.appointment_id, action.remote_id))
            return
        except PermanentError as exc:
            self.tally.skip(action.appointment_id or action.remote_id, exc.message)
            return
        async with self.transaction() as tx:
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
            async with self.transaction() as tx:
                await tx.put_statuses([self._creating(a) for a in creates])
                # A create's conflict is recorded with the decision: after a crash the next
                # pass links the event and would have no reason to record it again.
                for action in creates:
                    if action.conflict is not None:
                        await tx.add_conflict(action.conflict)
        pending = actions
        retry_no = 0
        while pending:
            outcomes = await self.calls(
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
                stale.append(self.stale(action.appointment_id, action.remote_id))
            else:
                self.tally.skip(action.appointment_id, outcome.message)
                if action.is_create:
                    dropped.append(action.appointment_id)
        if done or stale or dropped:
            async with self.transaction() as tx:
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
