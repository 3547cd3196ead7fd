"""Admin API: authentication, error shapes, /health, /metrics, sync, status, conflicts."""

from __future__ import annotations

import hmac
import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.admin import listen_is_safe
from hub.config import AdminSettings, Config, HubSettings
from hub.model import Appointment, CalendarState, Conflict, Kind, SyncStatus
from hub.render import render_event
from hub.store.base import ConstraintError, StoreError
from tests.core.admin_support import TOKEN, Api, FakeControl, running_api


@pytest.fixture
async def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def api(tmp_path: Path, control: FakeControl) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db", control=control) as api:
        yield api


# --------------------------------------------------------------------------- auth


async def test_health_needs_no_token(api: Api) -> None:
    reply = await api.call("GET", "/health", token=None)
    assert (reply.status, reply.json) == (200, {"status": "ok"})


@pytest.mark.parametrize("path", ["/agents", "/metrics", "/conflicts", "/approvals", "/nowhere"])
async def test_every_other_route_needs_the_token(api: Api, path: str) -> None:
    missing = await api.call("GET", path, token=None)
    assert missing.status == 401 and "error" in missing.json
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await api.call("GET", path, token=TOKEN + "x")
    assert wrong.status == 401
    basic = await api.call("GET", path, token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status == 401


async def test_token_is_compared_in_constant_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert (await api.call("GET", "/agents", token="guess")).status == 401
    assert (await api.call("GET", "/agents")).status == 200
    assert seen == [(b"guess", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


async def test_without_a_token_the_api_is_open(tmp_path: Path) -> None:
    async with running_api(tmp_path / "hub.db", token=None) as api:
        assert (await api.call("GET", "/agents")).status == 200


def test_listen_is_safe() -> None:
    def config(listen: str, token: str | None) -> Config:
        return Config(admin=AdminSettings(listen=listen, token=token))

    assert listen_is_safe(config("127.0.0.1:8765", None)) is None
    assert listen_is_safe(config("[::1]:8765", None)) is None
    assert listen_is_safe(config("localhost:8765", None)) is None
    assert listen_is_safe(config("0.0.0.0:8765", "t")) is None
    problem = listen_is_safe(config("0.0.0.0:8765", None))
    assert problem is not None and "admin.listen" in problem and "CALHUB_ADMIN_TOKEN" in problem
    assert listen_is_safe(config("calhub.example.com:80", None)) is not None


# --------------------------------------------------------------------------- error shapes


async def test_malformed_json_and_non_objects_are_400(api: Api) -> None:
    for raw in ("{not json", '["a list"]', "42", "\xff"):
        reply = await api.call("POST", "/agents", raw=raw.encode("latin-1"))
        assert reply.status == 400 and "error" in reply.json, raw


async def test_oversize_body_is_a_json_413(api: Api) -> None:
    before = api.table_counts()
    big = b'{"id": "big", "name": "' + b"x" * (1024 * 1024) + b'"}'
    reply = await api.call("POST", "/agents", raw=io.BytesIO(big))
    assert reply.status == 413 and "too large" in reply.json["error"]
    assert api.table_counts() == before


async def test_unknown_route_and_method_are_json(api: Api) -> None:
    missing = await api.call("GET", "/nowhere")
    assert missing.status == 404 and "nowhere" in missing.json["error"]
    wrong = await api.call("PUT", "/agents")
    assert wrong.status == 405 and "error" in wrong.json
    assert "POST" in wrong.headers["Allow"]


async def test_unexpected_failure_is_a_json_500_and_logged(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.store, "list_agents", broken)
    with caplog.at_level(logging.ERROR, logger="hub.admin"):
        reply = await api.call("GET", "/agents")
    assert reply.status == 500
    assert "secret internals" not in reply.text and "Traceback" not in reply.text
    assert any("secret internals" in (r.exc_text or "") for r in caplog.records)


async def test_store_errors_map_to_409_and_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def constraint(*args: object) -> None:
        raise ConstraintError("feed token is already used by another agent")

    async def locked(*args: object) -> None:
        raise StoreError("hub.db: cannot start a write transaction: database is locked")

    monkeypatch.setattr(api.store, "get_agent", constraint)
    reply = await api.call("GET", "/agents/alice")
    assert reply.status == 409 and "feed token" in reply.json["error"]
    monkeypatch.setattr(api.store, "get_agent", locked)
    reply = await api.call("GET", "/agents/alice")
    assert reply.status == 503 and "locked" not in reply.text


# --------------------------------------------------------------------------- metrics


async def test_metrics_count_admin_requests_by_route_template(api: Api) -> None:
    await api.call("GET", "/agents/alice")
    await api.call("GET", "/agents/nobody")
    reply = await api.call("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert 'calhub_admin_requests_total{method="GET",route="/agents/{id}",status="200"} 1.0' in (
        reply.text
    )
    assert 'route="/agents/{id}",status="404"} 1.0' in reply.text
    assert "nobody" not in reply.text  # raw paths would make unbounded label sets


# --------------------------------------------------------------------------- sync and status


async def test_sync_now(api: Api, control: FakeControl) -> None:
    reply = await api.call("POST", "/agents/alice/sync", {"allow_empty": True})
    assert reply.status == 200, reply.text
    assert (reply.json["agent"], reply.json["result"], reply.json["ok"]) == ("alice", "ok", True)
    assert reply.json["counts"] == {"pushed": 2}
    no_body = await api.call("POST", "/agents/alice/sync")
    assert no_body.status == 200
    assert control.synced == [("alice", True), ("alice", False)]


async def test_sync_refusals(api: Api, control: FakeControl, tmp_path: Path) -> None:
    no_account = await api.call("POST", "/agents/bob/sync")
    assert (no_account.status, no_account.json["field"]) == (409, "account")
    assert (await api.call("POST", "/agents/ghost/sync")).status == 404
    bad = await api.call("POST", "/agents/alice/sync", {"allow_empty": "please"})
    assert (bad.status, bad.json["field"]) == (422, "allow_empty")
    assert control.synced == []
    async with running_api(tmp_path / "bare.db", control=None) as bare:
        assert (await bare.call("POST", "/agents/alice/sync")).status == 409


async def test_status(api: Api, control: FakeControl) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with api.store.transaction("sync:o365") as tx:
        await tx.put_calendar_state(
            CalendarState(
                agent_id="alice",
                account="o365",
                cursor="c1",
                cursor_at=now - timedelta(minutes=10),
                last_pass_at=now,
                last_result="needs-attention",
                last_error="auth refused",
                needs_attention=True,
                notices=["no sync-collection"],
            )
        )
    control.trigger("alice")
    reply = await api.call("GET", "/agents/alice/status")
    assert reply.status == 200, reply.text
    cal = reply.json["calendar"]
    assert (cal["last_result"], cal["last_error"], cal["needs_attention"]) == (
        "needs-attention",
        "auth refused",
        True,
    )
    assert 600 <= cal["cursor_age_seconds"] < 3600
    assert cal["notices"] == ["no sync-collection"]
    assert reply.json["scheduler"]["queued"] is True
    assert (await api.call("GET", "/agents/ghost/status")).status == 404


async def test_status_counts_pending_pushes(api: Api) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    made = []
    async with api.store.transaction("api") as tx:
        for n in range(4):
            made.append(
                await tx.put_appointment(
                    Appointment(
                        id=f"a{n}",
                        agent_id="alice",
                        kind=Kind.MANUAL,
                        start=soon,
                        end=soon + timedelta(hours=1),
                        subject=f"s{n}",
                    )
                )
            )
    agent = await api.store.get_agent("alice")
    assert agent is not None
    settings = HubSettings()
    in_sync = render_event(made[1], agent, None, settings).content_hash()
    async with api.store.transaction("sync:o365") as tx:
        # a0: never pushed; a1: pushed as it is; a2: edited since; a3: cancelled since.
        await tx.put_status(SyncStatus("alice", "a1", "o365", "r1", "v", in_sync, in_sync))
        await tx.put_status(SyncStatus("alice", "a2", "o365", "r2", "v", "old", "old"))
        await tx.put_status(SyncStatus("alice", "a3", "o365", "r3", "v", "h", "h"))
        await tx.delete_appointment("a3")
    reply = await api.call("GET", "/agents/alice/status")
    assert reply.json["pending"] == {"creates": 1, "updates": 1, "deletes": 1}


# --------------------------------------------------------------------------- conflicts


async def test_conflicts_newest_first_with_filters(api: Api) -> None:
    async with api.store.transaction("api") as tx:
        for n, agent in enumerate(["alice", "bob", "alice"]):
            appt = await tx.put_appointment(
                Appointment(
                    id=f"c{n}",
                    agent_id=agent,
                    kind=Kind.MANUAL,
                    start=datetime(2026, 5, 4, 9, tzinfo=UTC),
                    end=datetime(2026, 5, 4, 10, tzinfo=UTC),
                )
            )
            await tx.add_conflict(
                Conflict(
                    id=f"k{n}",
                    agent_id=agent,
                    appointment_id=appt.id,
                    account="o365",
                    policy="newest",
                    winner="remote",
                    hub={"start": "09:00"},
                    remote={"start": "10:00"},
                )
            )
    listed = await api.call("GET", "/conflicts")
    assert [c["id"] for c in listed.json] == ["k2", "k1", "k0"]
    assert listed.json[0]["hub"] == {"start": "09:00"}
    alice = await api.call("GET", "/conflicts?agent=alice&limit=1")
    assert [c["id"] for c in alice.json] == ["k2"]
    for query, field in [("?limit=0", "limit"), ("?limit=ten", "limit"), ("?agent=x", "agent")]:
        reply = await api.call("GET", "/conflicts" + query)
        assert (reply.status, reply.json["field"]) == (422, field)
