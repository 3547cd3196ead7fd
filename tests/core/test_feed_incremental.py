"""A changed feed is rendered from the version before plus the events changed since: after
random edits, its text is byte for byte the whole feed rendered from the store (both backends).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.admin import build_app
from hub.config import AdminSettings, Config, HubSettings
from hub.ics import build_feed, feed_start
from hub.metrics import Metrics
from hub.model import Agent, Appointment, Kind, Request
from hub.render import render_event
from hub.store.sqlite import SqliteStore

STAMP = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
SETTINGS = HubSettings(subject_template="{subject} for {agent_name}: {request_subject}")
ALICE = Agent(id="alice", name="Alice Smith", feed_token="feed-alice")
# Around the default window's start (30 days back), so that moves take entries in and out.
SPAN = range(-40, 40)


def _appt(n: int, rng: random.Random) -> Appointment:
    start = TODAY + timedelta(days=rng.choice(SPAN), hours=rng.randrange(24))
    return Appointment(
        id=f"a{n:03d}", agent_id="alice", kind=Kind.MANUAL, start=start,
        end=start + timedelta(minutes=rng.choice((0, 30, 90))), subject=f"Visit {n}",
        request_id=f"r{n % 3}" if n % 2 else None,
    )  # fmt: skip


async def _reference(store: SqliteStore, start: datetime | None, end: datetime | None) -> bytes:
    """The whole feed rendered from what the store holds now (what the feed route rendered
    before it kept events), every event stamped STAMP."""
    agent = await store.get_agent("alice")
    assert agent is not None
    appts = await store.list_appointments(agent_id="alice", start=start, end=end)
    requests = await store.get_requests(a.request_id for a in appts if a.request_id)
    entries = [
        (a, render_event(a, agent, requests.get(a.request_id or ""), SETTINGS)) for a in appts
    ]
    return build_feed(agent, entries, now=STAMP)


async def _edit(store: SqliteStore, client: TestClient, rng: random.Random, made: int) -> int:
    """One random change through the API or the store; returns how many entries exist."""
    live = await store.list_appointments(agent_id="alice")
    roll = rng.random()
    if roll < 0.35 and live:
        later = TODAY + timedelta(days=rng.choice(SPAN), hours=rng.randrange(24))
        end = later + timedelta(minutes=45)
        body = {"start": later.isoformat(), "end": end.isoformat(), "subject": f"m{made}"}
        reply = await client.patch(f"/appointments/{rng.choice(live).id}", json=body)
        assert reply.status == 200, await reply.text()
    elif roll < 0.5 and live:
        assert (await client.delete(f"/appointments/{rng.choice(live).id}")).status == 200
    elif roll < 0.6 and live:
        async with store.transaction("api") as tx:
            await tx.purge_appointment(rng.choice(live).id)
    elif roll < 0.75:
        async with store.transaction("api") as tx:
            rid = f"r{rng.randrange(3)}"
            await tx.put_request(Request(id=rid, subject=f"ticket {rng.random():.6f}"))
    else:
        async with store.transaction("api") as tx:
            await tx.put_appointment(_appt(made, rng))
        made += 1
    return made


@pytest.mark.parametrize("window", ["", "?from={a}&to={b}"])
async def test_incremental_feed_is_the_whole_feed(
    make_store: Callable[..., SqliteStore], monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    import hub.admin.feed as feed_route

    # One DTSTAMP for every rendering: kept and new events then compare byte for byte.
    monkeypatch.setattr(feed_route, "feed_stamp", lambda now=None: STAMP)
    whole: list[bool] = []  # per rendering: whether it rendered every event
    real = feed_route._rendered

    async def counting(*args: object) -> object:
        whole.append(args[3] is feed_route.EMPTY)
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_route, "_rendered", counting)
    rng = random.Random(11)
    store = make_store()
    await store.open()
    try:
        async with store.transaction("api") as tx:
            await tx.put_agent(ALICE)
            for n in range(3):
                await tx.put_request(Request(id=f"r{n}", subject=f"ticket {n}"))
            await tx.put_appointments([_appt(n, rng) for n in range(40)])
        config = Config(hub=SETTINGS, admin=AdminSettings(token=None), accounts={})
        span = (TODAY - timedelta(days=20), TODAY + timedelta(days=10))
        path = "/agents/alice/calendar.ics" + window.format(
            a=span[0].date().isoformat(), b=span[1].date().isoformat()
        )
        start, end = span if window else (feed_start(datetime.now(UTC), SETTINGS.days_past), None)
        made = 40
        async with TestClient(TestServer(build_app(store, config, Metrics(), None))) as client:
            for step in range(30):
                for _ in range(rng.randrange(1, 4)):
                    made = await _edit(store, client, rng, made)
                reply = await client.get(path)
                assert reply.status == 200
                got = await reply.read()
                assert got == await _reference(store, start, end), f"after step {step}"
        # The first rendering was of every event, the others of the changed ones only.
        assert whole == [True] + [False] * 29
    finally:
        await store.close()
