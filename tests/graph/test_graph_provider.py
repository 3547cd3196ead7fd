"""graph365 behaviour beyond the contract suite: throttling, concurrency, delta, check, extra."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import pytest

from hub.plugins import load_plugins
from hub.spec import CalendarRef, PermanentError, PushItem, TransientError
from plugins.graph365 import GraphProvider
from tests.fakes.graph import GraphFake
from tests.graph.conftest import MAILBOXES, account_for
from tests.graph.helpers import NOW, WINDOW, owner_creates, visit


@pytest.mark.parametrize("status", [429, 503, 504])
async def test_throttling_is_one_request_then_the_engines_back_off(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef, status: int
) -> None:
    fake.throttle(cal.mailbox, 1, retry_after=5, status=status)
    with pytest.raises(TransientError) as caught:
        await provider.fetch(cal, WINDOW, None)
    assert caught.value.retry_after == 5
    assert fake.requests["delta"] == 1  # the SDK's RetryHandler did not retry behind our back
    assert (await provider.fetch(cal, WINDOW, None)).full


async def test_concurrent_calls_stay_within_four_per_mailbox(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef
) -> None:
    created = await provider.push(cal, [PushItem(f"h{i}", visit(i)) for i in range(3)])
    fake.latency = 0.05
    other = CalendarRef("bob", MAILBOXES[1])
    calls = [provider.get(cal, created[i % 3].remote_id) for i in range(10)]  # type: ignore[union-attr]
    calls += [provider.fetch(other, WINDOW, None) for _ in range(6)]
    results = await asyncio.gather(*calls)
    assert len(results) == 16  # none throttled for MailboxConcurrency
    # Without the limiter all 16 would be in flight at once and Graph would throttle.
    assert 1 <= fake.peak_in_flight[cal.mailbox] <= 4
    assert 1 <= fake.peak_in_flight[other.mailbox] <= 4


async def test_delta_pages_and_tells_deleted_from_left_window(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef
) -> None:
    ids = owner_creates(fake, cal.mailbox, 120)
    first = await provider.fetch(cal, WINDOW, None)
    assert len(first.changed) == 120 and fake.requests["delta"] == 3  # pages of 50
    assert first.changed[0].data.timezone == "Europe/Berlin"  # Outlook's Windows zone name
    fake.owner_edit(
        cal.mailbox, ids[0], start=NOW + timedelta(days=90), end=NOW + timedelta(days=90, hours=1)
    )
    fake.owner_delete(cal.mailbox, ids[1])
    fake.owner_edit(cal.mailbox, ids[2], subject="Renamed")
    again = await provider.fetch(cal, WINDOW, first.cursor)
    assert not again.full
    assert again.left_window == [ids[0]]
    assert again.deleted == [ids[1]]
    assert [(e.remote_id, e.data.subject) for e in again.changed] == [(ids[2], "Renamed")]


async def test_check_reports_each_step_and_leaves_no_probe(
    provider: GraphProvider, fake: GraphFake
) -> None:
    cals = [CalendarRef("alice", MAILBOXES[0]), CalendarRef("bob", MAILBOXES[1])]
    fake.deny_mailbox(MAILBOXES[1])
    items = await provider.check(cals, write=True)
    assert [(i.what, i.ok) for i in items] == [
        ("token acquired", True),
        (f"alice <{MAILBOXES[0]}>: mailbox reachable", True),
        (f"alice <{MAILBOXES[0]}>: calendar readable", True),
        (f"alice <{MAILBOXES[0]}>: probe event created", True),
        (f"alice <{MAILBOXES[0]}>: probe event deleted", True),
        (f"bob <{MAILBOXES[1]}>: mailbox reachable", False),
    ]
    assert "ErrorAccessDenied" in items[-1].detail
    assert fake.events(MAILBOXES[0]) == []
    assert fake.attendee_writes == 0


async def test_check_with_revoked_credentials_says_so_and_stops(fake: GraphFake) -> None:
    fake.revoke_credentials()
    async with GraphProvider(account_for(fake)) as prov:
        items = await prov.check([CalendarRef("alice", MAILBOXES[0])])
    assert [(i.what, i.ok) for i in items] == [("token acquired", False)]
    assert "AADSTS7000222" in items[0].detail


async def test_without_the_extra_open_says_what_to_install(
    fake: GraphFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.startswith("plugins.graph365.")]:
        if name.endswith((".auth", ".client")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)
    with pytest.raises(PermanentError, match=r"install calhub\[graph\]"):
        await GraphProvider(account_for(fake)).open()


def test_the_plugin_registers_through_the_entry_point() -> None:
    plugins = load_plugins(env={"CALHUB_PLUGINS": "graph365"})
    assert plugins.errors == []
    assert plugins.registry.get("graph365") is GraphProvider
    assert GraphProvider.max_batch == 20 and GraphProvider.supports_delta


async def test_the_fake_refuses_unknown_query_options(
    provider: GraphProvider, cal: CalendarRef
) -> None:
    url = provider.http.url(f"users/{cal.mailbox}/events", {"$bogus": "1"})
    reply = await provider.http.send("GET", url, mailbox=cal.mailbox, operation="test")
    assert reply.status == 400 and "$bogus" in reply.body["error"]["message"]
