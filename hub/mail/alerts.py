"""Alerts to ``[email] alerts_to`` when an agent's or an account's sync turns to "needs
attention", and when it recovers.

It watches every finished pass (a :data:`hub.scheduler.PassObserver`): a ``needs-attention``
result turns its subject on, an ``ok`` result turns it off, anything else (a transient failure,
a safety stop, a skipped pass) changes nothing. Whatever the provider's reason (credentials
refused, mailbox or calendar gone, an Outlook agent offline too long), the generic attention
state is what counts. The subject is the account when the whole account was refused
(``PassResult.scope == "account"``: one alert for all its agents, however many fail in the
same outage), else the agent.

The state last alerted is kept per subject in the store (:class:`hub.store.outbox.AttentionMark`)
and changed in the same transaction as the alert is written to the outbox: one alert per change
of state, also across restarts; a crash before that transaction only means the next pass with
the same result writes it. An account's alert is on from the first of its agents refused
account-wide until none of them is any more, so agents passing and failing by turns during an
outage never make it flap.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hub.config import HubSettings
from hub.mail.compose import compose_alert
from hub.mail.copies import new_message_id
from hub.mail.settings import EmailSettings
from hub.model import PassResult
from hub.store.base import Store, Tx
from hub.store.outbox import AttentionMark, OutboxMessage

ORIGIN = "alerts"


def _advice(result: PassResult, account_wide: bool) -> list[str]:
    account = result.account or "ACCOUNT"
    advice = [f"Run `calhub check {account}` to see what works and what is refused."]
    error = (result.error or "").lower()
    if "auth" in error or "credential" in error or "token" in error:
        advice.append(
            f"Renew the credentials of [accounts.{account}] (secret, password or app consent);"
            f" an account with per-agent consent: `calhub authorize {account} --agent "
            f"{result.agent_id}`."
        )
    if "not found" in error or "gone" in error:
        advice.append(
            f"Check agent {result.agent_id}'s email and calendar keys: the mailbox or "
            "calendar may have been removed or renamed."
        )
    if "offline" in error or "outlook" in error:
        advice.append(f"Start `calhub outlook-agent` in {result.agent_id}'s Windows session again.")
    if not account_wide:
        advice.append(f"GET /agents/{result.agent_id}/status shows the last error.")
    advice.append("Sync resumes on its own once the cause is fixed.")
    return advice


class AttentionAlerts:
    """Writes alerts for the pass results it observes (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        email: EmailSettings,
        hub: HubSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.email = email
        self.hub = hub
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_enqueue = on_enqueue

    async def __call__(self, result: PassResult) -> None:
        await self.observe(result)

    async def observe(self, result: PassResult) -> None:
        if not self.email.alerts_to:
            return
        if result.result == "needs-attention":
            on = True
        elif result.result == "ok":
            on = False
        else:
            return
        own = self._own_subject(result, on)
        # Most passes change nothing: read first, write only on a change of state.
        if not await self._flips(self.store, own, on):
            return
        wrote = False
        async with self.store.transaction(ORIGIN) as tx:
            for subject in await self._flips(tx, own, on):
                mark = await tx.get_attention(subject)
                await tx.put_attention(
                    AttentionMark(subject, on, result.error or "", changed_at=self.clock())
                )
                if subject.startswith("agent:"):
                    await self._alert(tx, subject, result, on, mark.reason if mark else "")
                    wrote = True
                elif result.account:
                    wrote = await self._account(tx, result, on) or wrote
        if wrote and self.on_enqueue is not None:
            self.on_enqueue()

    @staticmethod
    def _own_subject(result: PassResult, on: bool) -> list[str]:
        """The marks of this agent a result may flip: its own trouble, and its share of an
        account-wide one (``covered:ACCOUNT:AGENT``, alerted once for the account)."""
        agent = f"agent:{result.agent_id}"
        covered = f"covered:{result.account}:{result.agent_id}" if result.account else None
        if on:
            return [covered] if result.scope == "account" and covered else [agent]
        return [s for s in (agent, covered) if s]  # a pass that worked clears both

    @staticmethod
    async def _flips(reader: Store | Tx, subjects: list[str], on: bool) -> list[str]:
        changed = []
        for subject in subjects:
            mark = await reader.get_attention(subject)
            if (mark is not None and mark.needs_attention) != on:
                changed.append(subject)
        return changed

    async def _account(self, tx: Tx, result: PassResult, on: bool) -> bool:
        """The account's alert after one of its agents' share changed: on with the first
        agent refused account-wide, off once none of its agents is refused so any more."""
        subject = f"account:{result.account}"
        mark = await tx.get_attention(subject)
        alerted = mark is not None and mark.needs_attention
        if on == alerted:
            return False
        if not on and await self._still_refused(tx, result.account or ""):
            return False
        await tx.put_attention(
            AttentionMark(subject, on, result.error or "", changed_at=self.clock())
        )
        await self._alert(tx, subject, result, on, mark.reason if mark else "")
        return True

    @staticmethod
    async def _still_refused(tx: Tx, account: str) -> bool:
        prefix = f"covered:{account}:"
        for mark in await tx.list_attention():
            if mark.needs_attention and mark.subject.startswith(prefix):
                agent = await tx.get_agent(mark.subject.removeprefix(prefix))
                # An agent deleted or moved to another account must not hold it forever.
                if agent is not None and agent.account == account:
                    return True
        return False

    async def _alert(self, tx: Tx, subject: str, result: PassResult, on: bool, was: str) -> None:
        kind, _, name = subject.partition(":")
        who = f"{kind} {name}"
        reason = (result.error or "") if on else was
        draft = compose_alert(who, on, reason, _advice(result, kind == "account"), self.hub)
        now = self.clock()
        for recipient in self.email.alerts_to:
            await tx.add_message(
                OutboxMessage(
                    kind="attention" if on else "recovered",
                    recipient=recipient,
                    subject=draft.subject,
                    text=draft.text,
                    html=draft.html,
                    not_before=now,
                    message_id=new_message_id(self.email.domain),
                    agent_id=result.agent_id if kind == "agent" else None,
                    created_at=now,
                )
            )


__all__ = ["ORIGIN", "AttentionAlerts"]
