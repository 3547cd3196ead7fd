"""$batch: relative urls (the msgraph-core gap), lanes, per-item outcomes, the fake's rules."""

from __future__ import annotations

import pytest

from hub.spec import (
    CalendarRef,
    NotFoundError,
    PreconditionFailed,
    PushItem,
    PushResult,
    TransientError,
)
from plugins.graph365 import GraphProvider
from plugins.graph365.batch import LANES, BatchRequest, batch_body, relative_url
from plugins.graph365.wire import PREFER
from tests.fakes.graph import GraphFake
from tests.graph.helpers import visit


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://g.example/v1.0/users/a@x/events", "/users/a@x/events"),
        ("https://g.example/v1.0/users/a/events?$top=1", "/users/a/events?$top=1"),
        ("users/a/calendar", "/users/a/calendar"),
        ("/users/a/calendar", "/users/a/calendar"),
    ],
)  # fmt: skip
def test_batch_urls_are_relative_without_the_version(url: str, expected: str) -> None:
    assert relative_url("https://g.example/v1.0", url) == expected


def test_batch_urls_behind_a_proxy_at_the_root() -> None:
    assert relative_url("https://proxy.example", "https://proxy.example/users/a") == "/users/a"


def test_batch_body_items_carry_prefer_content_type_and_lanes() -> None:
    reqs = [
        BatchRequest("POST", "https://g.example/v1.0/users/a/events", {"n": i}) for i in range(9)
    ]
    body = batch_body("https://g.example/v1.0", reqs)["requests"]
    assert [r["id"] for r in body] == [str(i) for i in range(1, 10)]
    assert all(r["headers"]["Prefer"] == PREFER for r in body)
    assert all(r["headers"]["Content-Type"] == "application/json" for r in body)
    assert [r.get("dependsOn") for r in body] == [None] * LANES + [
        ["1"],
        ["2"],
        ["3"],
        ["4"],
        ["5"],
    ]
    with pytest.raises(ValueError, match=r"1\.\.20"):
        batch_body("https://g.example/v1.0", reqs * 3)


async def post_batch(
    provider: GraphProvider, cal: CalendarRef, requests: list[dict]
) -> tuple[int, dict]:
    reply = await provider.http.send(
        "POST", provider.http.url("$batch"), mailbox=cal.mailbox, operation="test",
        body={"requests": requests},
    )  # fmt: skip
    return reply.status, reply.body


async def test_fake_refuses_what_graph_refuses_in_a_batch(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef
) -> None:
    path = f"/users/{cal.mailbox}/calendar"
    get = {"method": "GET", "headers": {"Prefer": PREFER}}
    # What msgraph-core's BatchRequestItem sends: the absolute URL.
    status, body = await post_batch(
        provider, cal, [{**get, "id": "1", "url": fake.base_url + path}]
    )
    assert status == 400 and "relative" in body["error"]["message"]
    # A version-prefixed relative URL: the item fails like on Graph.
    status, body = await post_batch(provider, cal, [{**get, "id": "1", "url": "/v1.0" + path}])
    assert status == 200
    (item,) = body["responses"]
    assert item["status"] == 400 and "segment 'v1.0'" in item["body"]["error"]["message"]
    status, _ = await post_batch(
        provider, cal, [{**get, "id": str(i), "url": path} for i in range(21)]
    )
    assert status == 400
    status, _ = await post_batch(provider, cal, [{**get, "id": "1", "url": path}] * 2)
    assert status == 400
    status, body = await post_batch(provider, cal, [{**get, "id": "1", "url": path}])
    assert status == 200 and body["responses"][0]["status"] == 200


async def test_each_item_of_a_batch_gets_its_own_outcome(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef
) -> None:
    first = await provider.push_one(cal, PushItem("h0", visit(0)))
    moved = await provider.push_one(cal, PushItem("h0", visit(1), first.remote_id, first.version))
    assert moved.version != first.version
    outcomes = await provider.push(
        cal,
        [
            PushItem("h1", visit(2)),
            PushItem("h0", visit(3), first.remote_id, first.version),  # stale etag
            PushItem("h9", visit(4), "AAMkmissing", 'W/"x"'),
        ],
    )
    assert isinstance(outcomes[0], PushResult) and outcomes[0].hub_id == "h1"
    assert isinstance(outcomes[1], PreconditionFailed) and outcomes[1].item == "h0"
    assert isinstance(outcomes[2], NotFoundError)


async def test_a_throttled_item_is_transient_and_its_lane_still_runs(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef
) -> None:
    fake.throttle(cal.mailbox, 1, retry_after=9)
    before = fake.requests["batch"]
    outcomes = await provider.push(cal, [PushItem(f"h{i}", visit(i)) for i in range(6)])
    assert isinstance(outcomes[0], TransientError) and outcomes[0].retry_after == 9
    assert all(isinstance(o, PushResult) for o in outcomes[1:])
    # Item 5 waited on item 1 (same lane), got 424 and was sent again at once.
    assert fake.requests["batch"] - before == 2
    assert len(fake.events(cal.mailbox)) == 5


async def test_a_full_batch_stays_within_four_concurrent_requests_per_mailbox(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef
) -> None:
    outcomes = await provider.push(cal, [PushItem(f"h{i}", visit(i)) for i in range(20)])
    assert all(isinstance(o, PushResult) for o in outcomes)
    assert fake.peak_in_flight[cal.mailbox] == 4
    assert fake.requests["batch"] == 1


async def test_when_a_later_chunk_fails_the_earlier_results_still_come_back(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugins.graph365.provider as module

    real = module.run_batch
    calls = 0

    async def second_call_throttled(*args: object, **kwargs: object) -> list:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise TransientError("throttled", retry_after=3)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "run_batch", second_call_throttled)
    outcomes = await provider.push(cal, [PushItem(f"h{i}", visit(i)) for i in range(25)])
    assert all(isinstance(o, PushResult) for o in outcomes[:20])
    assert all(isinstance(o, TransientError) and o.retry_after == 3 for o in outcomes[20:])
    assert len(fake.events(cal.mailbox)) == 20
