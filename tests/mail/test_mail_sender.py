"""The outbox sender against a real SMTP server: implicit TLS, a server down then up, 4xx
retried with capped back-off, 5xx recorded, a crash mid-send, and the /outbox routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.admin import build_app
from hub.mail.sender import OutboxSender
from hub.metrics import Metrics
from hub.rules import Booking
from hub.store.base import Tx
from hub.store.outbox import FAILED, PENDING, SENDING, SENT
from tests.fakes.smtp import USERNAME, Received, SmtpServer
from tests.fakes.tls import TestCA
from tests.mail.conftest import BACKOFF, MailHub, open_hub
from tests.mail.helpers import to

START = datetime(2026, 5, 5, 8, 0, tzinfo=UTC)
BOOKING = Booking(
    subject="Replace printer", start=START, end=START + timedelta(hours=1), agents=("alice",)
)


@pytest.fixture
async def tls_hub(tmp_path: Path, implicit_tls: SmtpServer) -> AsyncIterator[MailHub]:
    opened = await open_hub(tmp_path, implicit_tls)
    yield opened
    await opened.store.close()


async def test_implicit_tls_with_auth_delivers(tls_hub: MailHub) -> None:
    await tls_hub.rules.book("1", BOOKING)
    assert await tls_hub.deliver() == 2
    assert len(to(tls_hub.server, "alice@example.com")) == 1
    assert tls_hub.server.handler.logins == [USERNAME]  # one connection for the batch
    sent = await tls_hub.store.list_messages(states=(SENT,))
    assert {m.attempts for m in sent} == {1} and all(m.sent_at for m in sent)


async def test_a_loopback_relay_without_tls_or_auth(tmp_path: Path, ca: TestCA) -> None:
    relay = SmtpServer(ca, "none", auth=False)
    await relay.start()
    opened = await open_hub(tmp_path, relay)
    try:
        await opened.rules.book("1", BOOKING)
        assert await opened.deliver() == 2
    finally:
        await opened.store.close()
        await relay.stop()


async def test_server_down_then_up_delivers_each_message_once(hub: MailHub) -> None:
    await hub.server.stop()
    await hub.rules.book("1", BOOKING)
    assert await hub.deliver() == 0
    waiting = await hub.store.list_messages()
    assert {(m.state, m.attempts) for m in waiting} == {(PENDING, 1)}
    assert all("connect" in m.last_error for m in waiting)
    # Capped exponential back-off: 10 s, 20 s, 40 s, then 40 s again.
    waits = []
    for _ in range(4):
        (first, *_) = await hub.store.list_messages()
        waits.append((first.not_before - hub.clock()).total_seconds())
        hub.clock.now = first.not_before
        assert await hub.sender.send_due() == 0
    assert waits == [10, 20, 40, 40]
    await hub.server.start()
    hub.clock.advance(seconds=5)
    assert await hub.sender.send_due() == 0  # not due yet: the back-off holds
    hub.clock.advance(seconds=40)
    assert await hub.sender.send_due() == 2
    hub.clock.advance(hours=1)
    assert await hub.sender.send_due() == 0
    assert [len(to(hub.server, a)) for a in ("alice@example.com", "coord@example.com")] == [1, 1]
    assert await hub.store.list_messages() == []


async def test_a_temporary_refusal_is_retried(hub: MailHub) -> None:
    hub.server.handler.refuse["coord@example.com"] = "451 4.3.0 Mailbox busy, try later"
    await hub.rules.book("1", BOOKING)
    assert await hub.deliver() == 1  # alice's copy goes; the coordinator's waits
    (waiting,) = await hub.store.list_messages()
    assert waiting.state == PENDING and "451" in waiting.last_error
    del hub.server.handler.refuse["coord@example.com"]
    hub.clock.advance(seconds=11)
    assert await hub.sender.send_due() == 1
    assert len(to(hub.server, "coord@example.com")) == 1


async def test_a_permanent_rejection_is_recorded_and_not_retried(hub: MailHub) -> None:
    hub.server.handler.refuse["coord@example.com"] = "550 5.1.1 No such user here"
    await hub.rules.book("1", BOOKING)
    assert await hub.deliver() == 1
    (failed,) = await hub.store.list_messages()
    assert failed.state == FAILED and failed.recipient == "coord@example.com"
    assert "550 5.1.1 No such user here" in failed.last_error
    hub.clock.advance(days=3)
    assert await hub.sender.send_due() == 0
    assert to(hub.server, "coord@example.com") == []


class Crash(BaseException):
    """The process dies (not an Exception: nothing in calhub catches it)."""


async def test_a_crash_between_the_servers_ok_and_the_outbox_update(
    hub: MailHub,
) -> None:
    """The documented window: the message is sent again after the restart, with the same
    Message-ID, and never a third time."""
    accepted: list[Received] = []
    hub.server.handler.on_data = accepted.append

    async def die_when_recording(tx: Tx) -> None:
        if tx.origin == "mail" and accepted:
            raise Crash

    hub.store.add_commit_hook(die_when_recording)
    await hub.rules.book("1", replace(BOOKING, agents=("bob",)))  # one recipient
    with pytest.raises(Crash):
        await hub.deliver()
    (stuck,) = await hub.store.list_messages()
    assert stuck.state == SENDING  # the server said 250, the outbox never heard
    hub.server.handler.on_data = None
    accepted.clear()

    restarted = OutboxSender(hub.store, hub.sender.email, clock=hub.clock, backoff=BACKOFF)
    assert await restarted.recover() == 1
    assert await restarted.send_due() == 1
    assert await restarted.send_due() == 0
    copies = to(hub.server, "bob@example.com")
    assert len(copies) == 2
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"] == stuck.message_id
    assert (await hub.store.get_message(stuck.id)).state == SENT  # type: ignore[union-attr]


async def test_a_crash_before_the_server_accepted_delivers_once(hub: MailHub) -> None:
    await hub.rules.book("1", replace(BOOKING, agents=("bob",)))
    (message,) = await hub.store.list_messages()
    async with hub.store.transaction("mail") as tx:  # claimed, then the process died
        await tx.put_message(message.evolve(state=SENDING))
    restarted = OutboxSender(hub.store, hub.sender.email, clock=hub.clock, backoff=BACKOFF)
    await restarted.recover()
    assert await restarted.send_due() == 1
    assert len(to(hub.server, "bob@example.com")) == 1


async def test_outbox_routes_list_and_retry(hub: MailHub) -> None:
    hub.server.handler.refuse["coord@example.com"] = "550 5.1.1 No such user here"
    await hub.rules.book("1", BOOKING)
    await hub.deliver()
    token = "admin-token"
    config = replace(hub.config, admin=replace(hub.config.admin, token=token))
    app = build_app(hub.store, config, Metrics(), None)
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/outbox")).status == 401
        listed = await (await client.get("/outbox", headers=auth)).json()
        assert [(m["recipient"], m["state"]) for m in listed] == [("coord@example.com", FAILED)]
        assert "550" in listed[0]["last_error"] and listed[0]["attachment"] is True
        sent = await (await client.get("/outbox?state=sent", headers=auth)).json()
        assert [m["recipient"] for m in sent] == ["alice@example.com"]
        bad = await client.get("/outbox?state=lost", headers=auth)
        assert bad.status == 422 and (await bad.json())["field"] == "state"

        del hub.server.handler.refuse["coord@example.com"]
        retried = await client.post(f"/outbox/{listed[0]['id']}/retry", headers=auth)
        assert retried.status == 200
        assert (await retried.json())["state"] == PENDING
        again = await client.post(f"/outbox/{sent[0]['id']}/retry", headers=auth)
        assert again.status == 409
        assert (await client.post("/outbox/999/retry", headers=auth)).status == 404
        assert (await client.post("/outbox/x/retry", headers=auth)).status == 404
    hub.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert await hub.sender.send_due() == 1
    assert len(to(hub.server, "coord@example.com")) == 1


async def test_a_message_due_on_a_whole_second_is_due_within_that_second(hub: MailHub) -> None:
    await hub.rules.book("1", BOOKING)  # not_before: NOW + 30 s, a whole second
    hub.clock.advance(seconds=30.5)
    assert await hub.sender.send_due() == 2


async def test_sent_messages_are_forgotten_after_their_retention(hub: MailHub) -> None:
    await hub.rules.book("1", BOOKING)
    hub.server.handler.refuse["coord@example.com"] = "550 5.1.1 No such user here"
    await hub.deliver()
    hub.clock.advance(days=29)
    assert await hub.sender.prune() == 0
    hub.clock.advance(days=2)
    assert await hub.sender.prune() == 1
    remaining = await hub.store.list_messages(states=(SENT, FAILED))
    assert [m.state for m in remaining] == [FAILED]  # a failure stays until retried
