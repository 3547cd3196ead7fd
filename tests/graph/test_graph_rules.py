"""Engine rules that only a real provider's behaviour exposes, against the strict Graph fake:
a throttled item inside $batch, and a delta link bound to the window it was taken with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hub.model import Kind
from hub.reconcile import external_id
from hub.spec import CalendarRef, PushItem, PushOutcome
from hub.sync import AgentSync
from plugins.graph365 import GraphProvider
from tests.engine_support import TEST_RETRY, hour
from tests.fakes.graph import GraphFake
from tests.graph.conftest import MAILBOXES, account_for
from tests.graph.helpers import ACCOUNT, Hub
from tests.sync.helpers import Clock


class ThrottledFirstItem(GraphProvider):
    """Graph answering 429 with Retry-After to the first item of the first $batch only (the
    fetch before it is not throttled)."""

    fake: GraphFake
    retry_after: float = 7.0

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        if self.fake.requests["batch"] == 0:
            self.fake.throttle(cal.mailbox, 1, retry_after=self.retry_after)
        return await super().push(cal, items)


async def test_a_throttled_item_in_a_batch_waits_its_retry_after_before_it_is_sent_again(
    hub: Hub, fake: GraphFake
) -> None:
    appts = [await hub.add(hour(d)) for d in (1, 2, 3)]
    waits: list[tuple[float, int]] = []  # (seconds, $batch requests sent before the wait)

    async def sleep(seconds: float) -> None:
        waits.append((seconds, fake.requests["batch"]))

    async with ThrottledFirstItem(account_for(fake)) as provider:
        provider.fake = fake
        engine = AgentSync(
            hub.store, provider, ACCOUNT, hub.settings, sleep=sleep, retry_policy=TEST_RETRY
        )
        result = await engine.run(hub.agents["alice"])

    assert result.result == "ok", result.error
    assert hub.remote_hub_ids() == sorted(a.id for a in appts)
    # One wait, after the first batch and before the second (which resent only that item),
    # at least as long as Graph asked, although the computed back-off is at most 0.5 s.
    assert waits == [(waits[0][0], 1)] and waits[0][0] >= 7
    assert fake.requests["batch"] == 2


async def test_the_first_pass_of_a_new_day_lists_the_whole_new_window(
    hub: Hub, fake: GraphFake
) -> None:
    # Graph's delta link keeps the startDateTime/endDateTime it was first asked with: a delta
    # from it never reports what a new day brought into the window.
    clock = Clock(datetime.now(UTC))
    settings = replace(hub.settings, import_external=True, days_future=60)
    engine = AgentSync(
        hub.store, hub.provider, ACCOUNT, settings, clock=clock, retry_policy=TEST_RETRY
    )
    alice = hub.agents["alice"]
    beyond = hour(61)  # the window ends at midnight after today + 60 days
    remote_id = fake.owner_create(MAILBOXES[0], "Conference", beyond, beyond + timedelta(hours=2))
    for _ in range(2):  # the second pass is a quiet delta from the stored link
        assert (await engine.run(alice)).result == "ok"
    assert [a for a in await hub.hub() if a.kind is Kind.EXTERNAL] == []

    clock.advance(days=1)
    result = await engine.run(alice)

    assert result.result == "ok", result.error
    assert result.counts == {"import": 1}
    imported = await hub.store.get_appointment(external_id("alice", ACCOUNT, remote_id))
    assert imported is not None and imported.subject == "Conference"
