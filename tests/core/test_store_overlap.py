"""The overlap filter against a plain model: random timed, zero-length and all-day entries in
several time zones, random windows."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.model import Agent, Appointment, Kind
from hub.store.sqlite import SqliteStore

BASE = datetime(2026, 5, 1, tzinfo=UTC)
ZONES = [timezone(timedelta(hours=h)) for h in (-8, 0, 2, 5, 13)]


@st.composite
def entries(draw: st.DrawFn) -> tuple[datetime | date, datetime | date]:
    if draw(st.booleans()):
        day = BASE.date() + timedelta(days=draw(st.integers(-1, 3)))
        return day, day + timedelta(days=draw(st.integers(1, 2)))
    # A coarse grid (hours) so that entries often start or end exactly at a window edge.
    start = BASE + timedelta(hours=draw(st.integers(-24, 72)))
    length = timedelta(hours=draw(st.integers(0, 6)))
    zone = draw(st.sampled_from(ZONES))
    return start.astimezone(zone), (start + length).astimezone(zone)


windows = st.tuples(st.integers(-24, 72), st.integers(1, 30)).map(
    lambda w: (BASE + timedelta(hours=w[0]), BASE + timedelta(hours=w[0] + w[1]))
)


def instant(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time(), UTC)


def overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
    if start == end:  # a point in time: inside when lo <= it < hi
        return lo <= start < hi
    return start < hi and end > lo


@pytest.fixture
async def store(make_store: Callable[..., SqliteStore]) -> AsyncIterator[SqliteStore]:
    async with make_store() as opened:
        yield opened


@pytest.fixture
def agent_ids() -> Iterator[str]:
    # One store serves every example (opening one costs more than the example itself); each
    # example gets an agent of its own.
    return (f"agent{n}" for n in itertools.count())


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(spans=st.lists(entries(), max_size=12), window=windows)
async def test_overlap_filter_matches_the_model(
    store: SqliteStore,
    agent_ids: Iterator[str],
    spans: list[tuple[datetime | date, datetime | date]],
    window: tuple[datetime, datetime],
) -> None:
    agent = next(agent_ids)
    appts = [
        Appointment(f"{agent}-e{n:02d}", agent, Kind.MANUAL, start, end)
        for n, (start, end) in enumerate(spans)
    ]
    async with store.transaction("api") as tx:
        await tx.put_agent(Agent(id=agent, name=agent))
        await tx.put_appointments(appts)
    lo, hi = window
    found = await store.list_appointments(agent_id=agent, start=lo, end=hi)
    everything = await store.list_appointments(agent_id=agent)

    expected = sorted(
        (a for a in appts if overlaps(instant(a.start), instant(a.end), lo, hi)),
        key=lambda a: (instant(a.start), a.id),
    )
    assert [a.id for a in found] == [a.id for a in expected]
    assert [a.id for a in everything] == [
        a.id for a in sorted(appts, key=lambda a: (instant(a.start), a.id))
    ]
