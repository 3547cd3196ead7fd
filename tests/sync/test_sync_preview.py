"""The status route's pending counts are a dry run of the real reconcile: what it predicts is
what the next pass then does, and it neither calls the provider nor writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.sync_preview import Pending, pending

from .helpers import Bench, at, make_bench


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await make_bench(tmp_path)
    yield b
    await b.store.close()


async def predicted(bench: Bench) -> Pending:
    return await pending(bench.store, bench.settings, bench.agent, bench.clock())


async def test_the_preview_predicts_the_next_pass(bench: Bench) -> None:
    kept = await bench.add(at(1))
    edited = await bench.add(at(2))
    cancelled = await bench.add(at(3))
    assert await predicted(bench) == Pending(creates=3)
    assert (await bench.sync()).counts == {"create": 3}

    await bench.add(at(4))
    await bench.edit(edited.id, subject_override="Moved to the second floor")
    await bench.cancel(cancelled.id)
    requests, changes = bench.server.requests, await bench.total_changes()
    assert await predicted(bench) == Pending(creates=1, updates=1, deletes=1)
    # A dry run: no request to the provider, no write to the hub.
    assert (bench.server.requests, await bench.total_changes()) == (requests, changes)

    result = await bench.sync()
    assert result.counts == {"create": 1, "update": 1, "remote-delete": 1}
    assert await predicted(bench) == Pending()
    assert [e.hub_id for e in bench.remote()] == [kept.id, edited.id, "a4"]
