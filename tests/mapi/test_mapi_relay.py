"""The relay end to end: tokens, connections lost and regained, hostile agents, the status,
and a sync pass of the real engine through a real ``calhub outlook-agent`` that dies mid-push."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from hub.config import HubSettings
from hub.spec import AttentionNeeded, EventData, TransientError, Window
from tests.engine_support import book, hour, run_pass
from tests.mapi.support import ADMIN_TOKEN, RunningHub, eventually, running_hub

MAX_MESSAGE = 64 * 1024


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path_factory.mktemp("relay"), max_message=MAX_MESSAGE) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def alice(hub: RunningHub) -> AsyncIterator[str]:
    """A connected agent process for alice, with an empty calendar; its token."""
    hub.backdoor.file.reset()
    token = await hub.issue_token("alice")
    await hub.connected(hub.start_agent("alice", token))
    yield token
    for process in hub.agents:
        process.kill()
    await hub.disconnected("alice")


def window() -> Window:
    return Window(hour(-7, 0), hour(60, 0))


async def test_no_agent_connected_is_transient_and_names_the_agent(hub: RunningHub) -> None:
    with pytest.raises(TransientError, match="Outlook agent for bob is not connected"):
        await hub.provider().fetch(hub.cal("bob"), window(), None)


async def test_offline_past_the_threshold_needs_attention(hub: RunningHub) -> None:
    provider = hub.provider(offline_attention="0s")
    try:
        with pytest.raises(AttentionNeeded, match=r"bob.*offline for more than 0:00:00"):
            await provider.fetch(hub.cal("bob"), window(), None)
    finally:
        hub.provider(offline_attention="30m")


async def test_status_shows_the_connection_and_attention_when_offline_too_long(
    hub: RunningHub, alice: str
) -> None:
    hub.provider(offline_attention="30m")  # attach registers the account with the relays
    status, body = await hub.request("GET", "/agents/alice/status")
    assert status == 200
    assert body["outlook"]["connected"] is True and body["outlook"]["needs_attention"] is False
    _, bob = await hub.request("GET", "/agents/bob/status")
    assert bob["outlook"]["connected"] is False
    assert bob["outlook"]["needs_attention"] is False  # offline, but not for 30 minutes yet
    hub.provider(offline_attention="0s")
    _, bob = await hub.request("GET", "/agents/bob/status")
    assert bob["outlook"] == {
        **bob["outlook"],
        "connected": False,
        "needs_attention": True,
        "connected_since": None,
    }
    assert "offline" in bob["outlook"]["reason"]
    hub.provider(offline_attention="30m")


async def test_last_seen_is_kept_after_the_agent_goes(hub: RunningHub, alice: str) -> None:
    for process in hub.agents:
        process.kill()
    await hub.disconnected("alice")
    _, body = await hub.request("GET", "/agents/alice/status")
    assert body["outlook"]["connected"] is False
    assert body["outlook"]["last_seen"] is not None


async def test_the_agent_reconnects_after_the_hub_drops_it(hub: RunningHub, alice: str) -> None:
    await hub.relays.drop("alice", "testing a reconnect")
    (process,) = [p for p in hub.agents if p.proc.poll() is None]
    await hub.connected(process)
    fetched = await hub.provider().fetch(hub.cal("alice"), window(), None)
    assert fetched.full and fetched.changed == []
    assert "reconnecting" in process.log()


async def test_a_new_token_revokes_the_old_one_and_drops_its_connection(
    hub: RunningHub, alice: str
) -> None:
    (process,) = [p for p in hub.agents if p.proc.poll() is None]
    new = await hub.issue_token("alice")
    # The old connection is dropped; re-dialling with the old token is refused for good.
    assert await process.exited() == 2
    assert "refused the Outlook-agent token for 'alice'" in process.log()
    assert not hub.relays.connected("alice")
    status, _ = await hub.request("GET", "/agents/alice/outlook", token=alice)
    assert status == 401
    # The token opens that agent's relay and nothing else.
    for method, path in (
        ("GET", "/agents"),
        ("GET", "/agents/alice/status"),
        ("POST", "/agents/alice/outlook-token"),
    ):
        status, _ = await hub.request(method, path, token=new)
        assert status == 401, path
    status, _ = await hub.request("GET", "/agents/bob/outlook", token=new)
    assert status == 401
    status, _ = await hub.request("GET", "/agents/alice/outlook", token=ADMIN_TOKEN)
    assert status == 401
    await hub.connected(hub.start_agent("alice", new))


async def test_a_hostile_agent_is_refused_and_the_hub_carries_on(
    hub: RunningHub, alice: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    token = await hub.issue_token("bob")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{hub.url}/agents/bob/outlook", headers={"Authorization": f"Bearer {token}"}
        ) as ws,
    ):
        await hub.wait_connected("bob")
        call = asyncio.create_task(hub.provider().get(hub.cal("bob"), "ENTRY-1"))
        request = json.loads((await ws.receive()).data)
        assert request["method"] == "get" and request["params"]["remote_id"] == "ENTRY-1"
        rid = request["id"]
        for junk in (
            "not json",
            "[1, 2]",
            json.dumps({"id": rid + 100, "result": {}}),  # answers no pending request
            json.dumps({"id": str(rid), "result": {}}),
            json.dumps({"id": rid, "result": {}, "error": {"kind": "x", "message": "y"}}),
        ):
            await ws.send_str(junk)
        # Malformed content for the right id: refused, and the call fails transiently.
        await ws.send_str(json.dumps({"id": rid, "result": {"remote_id": "ENTRY-1"}}))
        with pytest.raises(TransientError, match="Outlook agent for bob sent a malformed answer"):
            await call
        # An oversized message closes the connection (1009); nothing else is affected.
        await ws.send_str("x" * (MAX_MESSAGE + 1))
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await hub.disconnected("bob")
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) >= 6, refused
    assert any("answers no pending request" in line for line in refused)
    status, body = await hub.request("GET", "/health", token=None)
    assert (status, body) == (200, {"status": "ok"})
    fetched = await hub.provider().fetch(hub.cal("alice"), window(), None)
    assert fetched.full


async def test_agent_dies_mid_push_and_the_retry_makes_no_duplicate(
    hub: RunningHub, alice: str, caplog: pytest.LogCaptureFixture
) -> None:
    agent = await hub.store.get_agent("alice")
    assert agent is not None
    provider = hub.provider()
    await book(hub.store, 1, "alice", hour(2), "Printer on floor 3")
    hub.backdoor.knobs(exit_after_save=True)  # Outlook saves, then the agent process dies
    waits: list[float] = []
    settings = HubSettings()
    first = await run_pass(hub.store, provider, "outlook", settings, agent, waits)
    assert first.result == "failed"
    assert "Outlook agent for alice" in (first.error or "")
    assert len(hub.backdoor.items()) == 1  # the save happened before the process died
    await hub.disconnected("alice")
    token = await hub.issue_token("alice")
    await hub.connected(hub.start_agent("alice", token))
    second = await run_pass(hub.store, provider, "outlook", settings, agent, waits)
    assert second.result == "ok", second.error
    (item,) = hub.backdoor.items()
    hub_ids = {v for k, v in item["props"].items() if k.endswith("/calhub-hub-id")}
    assert hub_ids == {"appt-1"}
    (status,) = await hub.store.list_status("alice", "outlook")
    assert status.remote_id == item["entry_id"]
    third = await run_pass(hub.store, provider, "outlook", settings, agent, waits)
    assert third.result == "ok" and len(hub.backdoor.items()) == 1
    assert hub.backdoor.read("sent") == 0 and hub.backdoor.read("recipients_added") == 0
    assert item["meeting_status"] == 0


async def test_ctrl_c_stops_the_agent_cleanly(hub: RunningHub, alice: str) -> None:
    (process,) = [p for p in hub.agents if p.proc.poll() is None]
    process.interrupt()
    assert await process.exited() == 0
    assert "stopped" in process.log() and "Traceback" not in process.log()
    await hub.disconnected("alice")


@pytest.mark.parametrize(
    ("knobs", "args", "message"),
    [
        ({"installed": False}, (), "Outlook is not installed"),
        ({}, ("--profile", "Nope"), "Outlook has no profile named 'Nope'"),
        ({"running_profile": "Helpdesk"}, ("--profile", "Outlook"), "running with profile"),
    ],
)
async def test_no_outlook_or_unknown_profile_is_a_clear_message(
    hub: RunningHub, knobs: dict[str, object], args: tuple[str, ...], message: str
) -> None:
    hub.backdoor.file.reset(**knobs)
    process = hub.start_agent("alice", "some-token", *args)
    assert await process.exited() == 2
    assert message in process.log() and "Traceback" not in process.log()
    hub.backdoor.file.reset()


async def test_the_window_reaches_the_agent_in_utc_minutes(hub: RunningHub, alice: str) -> None:
    start = hour(1)
    await hub.backdoor.create_external(
        hub.cal(), EventData("Dentist", start, start + timedelta(hours=1))
    )
    fetched = await hub.provider().fetch(hub.cal(), window(), None)
    (event,) = fetched.changed
    assert event.hub_id is None and event.data.start == start


async def test_a_pass_over_an_unchanged_calendar_writes_nothing(hub: RunningHub) -> None:
    # Outlook keeps no per-event colour: the engine must compare the next fetch with what
    # Outlook holds, or every pass would push every appointment again.
    hub.backdoor.file.reset()
    await hub.connected(hub.start_agent("bob", await hub.issue_token("bob")))
    agent = await hub.store.get_agent("bob")
    assert agent is not None
    async with hub.store.transaction("api") as tx:
        agent = await tx.put_agent(replace(agent, colour="#3a87ad"))
    provider = hub.provider()
    await book(hub.store, 2, "bob", hour(3), "Server room")
    waits: list[float] = []
    first = await run_pass(hub.store, provider, "outlook", HubSettings(), agent, waits)
    assert first.result == "ok" and first.counts.get("create") == 1, first
    before = hub.relays.calls
    second = await run_pass(hub.store, provider, "outlook", HubSettings(), agent, waits)
    assert second.result == "ok", second.error
    assert not {"create", "update"} & set(second.counts), second.counts
    assert hub.relays.calls - before == 1  # one fetch


async def test_an_unanswered_call_times_out_and_its_late_answer_is_refused(
    hub: RunningHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    token = await hub.issue_token("bob")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{hub.url}/agents/bob/outlook", headers={"Authorization": f"Bearer {token}"}
        ) as ws,
    ):
        await hub.wait_connected("bob")
        call = asyncio.create_task(hub.provider(call_timeout=0.2).get(hub.cal("bob"), "E-2"))
        request = json.loads((await ws.receive()).data)
        with pytest.raises(TransientError, match=r"did not answer get within 0\.2 s"):
            await call
        event = {"remote_id": "E-2", "version": "v", "data": {}}
        await ws.send_str(json.dumps({"id": request["id"], "result": event}))
        await eventually(
            lambda: any("answers no pending request" in r.getMessage() for r in caplog.records),
            "the late answer to be refused",
        )
        await hub.drop_and_wait("bob")


async def test_nothing_is_deleted_while_outlook_is_offline(hub: RunningHub) -> None:
    hub.backdoor.file.reset()
    process = await hub.connected(hub.start_agent("bob", await hub.issue_token("bob")))
    agent = await hub.store.get_agent("bob")
    assert agent is not None
    await hub.backdoor.create_external(hub.cal("bob"), EventData("Dentist", hour(4), hour(5)))
    await book(hub.store, 3, "bob", hour(6), "Switch upgrade")
    provider = hub.provider()
    waits: list[float] = []
    settings = HubSettings(import_external=True)
    synced = await run_pass(hub.store, provider, "outlook", settings, agent, waits)
    assert synced.result == "ok", synced.error
    before = await hub.store.list_appointments(agent_id="bob")
    statuses = await hub.store.list_status("bob", "outlook")
    assert len(before) >= 2 and statuses
    process.kill()
    await hub.disconnected("bob")
    offline = await run_pass(hub.store, provider, "outlook", settings, agent, waits)
    assert offline.result == "failed"
    assert "Outlook agent for bob is not connected" in (offline.error or "")
    assert await hub.store.list_appointments(agent_id="bob") == before
    assert await hub.store.list_status("bob", "outlook") == statuses


async def test_the_token_comes_from_a_file_too(hub: RunningHub, tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    process = hub.start_agent("alice", None, "--token-file", str(empty))
    assert await process.exited() == 2
    assert "is empty" in process.log()
    good = tmp_path / "good"
    good.write_text(await hub.issue_token("alice") + "\n")
    process = await hub.connected(hub.start_agent("alice", None, "--token-file", str(good)))
    process.kill()
    await hub.disconnected("alice")
