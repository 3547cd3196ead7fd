"""``calhub serve`` with [email]: a booking made through the HTTP API reaches the agent and
the coordinator, sent by the background sender, and the service stops cleanly."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp

from hub.plugins import load_plugins
from hub.service import serve
from tests.fakes.smtp import SmtpServer
from tests.mail.conftest import AGENTS, config_for
from tests.mail.helpers import ics_of, to


async def wait_for(condition: object, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 (another thread)
            await asyncio.sleep(0.02)


async def test_serve_sends_copies_of_api_changes(tmp_path: Path, starttls: SmtpServer) -> None:
    config = config_for(
        tmp_path,
        starttls,
        agents='[admin]\nlisten = "127.0.0.1:0"\n' + AGENTS,  # port 0: any free one
    )
    assert config.email is not None
    config = replace(config, email=replace(config.email, debounce=timedelta(0)))
    urls: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(config, load_plugins({}).registry, announce=urls.append, stop=stop)
    )
    try:
        await wait_for(lambda: urls)
        base = urls[0].split()[-1]
        async with aiohttp.ClientSession() as session:
            booked = await session.post(
                f"{base}/requests/77/appointments",
                json={
                    "subject": "Swap the router",
                    "start": "2026-05-05T08:00:00Z",
                    "end": "2026-05-05T09:00:00Z",
                    "agents": ["alice", "carol"],
                },
            )
            assert booked.status == 201, await booked.text()
            await wait_for(lambda: len(starttls.received) == 2)
            # The server has them; the sender records each just after the server's reply.
            outbox: list[dict[str, object]] = []
            async with asyncio.timeout(10):
                while len(outbox) < 2:
                    outbox = await (await session.get(f"{base}/outbox?state=sent")).json()
        assert sorted(m["recipient"] for m in outbox) == ["alice@example.com", "coord@example.com"]
        (copy,) = to(starttls, "alice@example.com")
        assert copy["Subject"].startswith("New appointment: [#77] Swap the router")
        assert ics_of(copy)["METHOD"] == "PUBLISH"
    finally:
        stop.set()
        assert await task == 0
