"""A running hub (admin endpoint with its relay registry, on a real SqliteStore) and real
``calhub outlook-agent`` processes dialling into it, serving the fake Outlook."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hub.admin import build_app
from hub.config import AdminSettings, Config
from hub.metrics import Metrics
from hub.model import Agent
from hub.relay import RelayHub
from hub.spec import AccountConfig, CalendarRef, HubServices
from hub.store.sqlite import SqliteStore
from plugins.mapi import MapiProvider
from tests.fakes.outlook import STATE_ENV, OutlookBackdoor

ADMIN_TOKEN = "admin-token-for-mapi-tests"
ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "outlook"
AGENTS = ("alice", "bob")
CONNECT_WAIT_S = 30.0  # a generous bound for a loaded 2-core machine; not a timing assertion
POLL_S = 0.05


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Wait until ``predicate()`` holds; fail naming ``what`` after CONNECT_WAIT_S."""
    for _ in range(int(CONNECT_WAIT_S / POLL_S)):
        if predicate():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"gave up waiting for {what}")


@dataclass
class AgentProcess:
    """One real ``calhub outlook-agent`` process and its log."""

    agent: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    async def exited(self) -> int:
        await eventually(lambda: self.proc.poll() is not None, f"the agent of {self.agent} to exit")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class RunningHub:
    """The admin endpoint on a TCP port, its store, its relays, and the fake's state file."""

    url: str
    store: SqliteStore
    relays: RelayHub
    state_path: Path
    workdir: Path
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def backdoor(self) -> OutlookBackdoor:
        return OutlookBackdoor(self.state_path)

    def provider(self, **options: Any) -> MapiProvider:
        provider = MapiProvider(AccountConfig(ACCOUNT, "mapi", {"call_timeout": 15.0, **options}))
        provider.attach(HubServices(relays=self.relays))
        return provider

    @staticmethod
    def cal(agent: str = "alice") -> CalendarRef:
        return CalendarRef(agent_id=agent, mailbox=f"{agent}@example.com")

    async def request(
        self, method: str, path: str, *, token: str | None = ADMIN_TOKEN, **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, headers=headers, **kw) as reply,
        ):
            body = await reply.json() if reply.content_type == "application/json" else None
            return reply.status, body

    async def issue_token(self, agent: str = "alice") -> str:
        status, body = await self.request("POST", f"/agents/{agent}/outlook-token")
        assert status == 201, body
        return body["token"]

    def start_agent(
        self,
        agent: str = "alice",
        token: str | None = None,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> AgentProcess:
        log_path = self.workdir / f"agent-{agent}-{len(self.agents)}.log"
        environ = {**os.environ, STATE_ENV: str(self.state_path), **(env or {})}
        if token is not None:
            environ["CALHUB_OUTLOOK_TOKEN"] = token
        command = [
            sys.executable, "-m", "hub", "outlook-agent", "--hub", self.url, "--agent", agent,
            "--object-model", "tests.fakes.outlook:Application", "--retry-cap", "0.5", *args,
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=log)
        started = AgentProcess(agent, proc, log_path)
        self.agents.append(started)
        return started

    async def connected(self, process: AgentProcess) -> AgentProcess:
        """Wait until the agent's connection is registered (or fail with its log)."""

        def up() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"the agent exited:\n{process.log()}")
            return self.relays.connected(process.agent)

        await eventually(up, f"the agent of {process.agent} to connect")
        return process

    async def wait_connected(self, agent: str) -> None:
        await eventually(lambda: self.relays.connected(agent), f"{agent} to connect")

    async def drop_and_wait(self, agent: str) -> None:
        await self.relays.drop(agent, "test over")
        await self.disconnected(agent)

    async def disconnected(self, agent: str) -> None:
        await eventually(lambda: not self.relays.connected(agent), f"{agent} to disconnect")


@contextlib.asynccontextmanager
async def running_hub(
    workdir: Path, *, max_message: int = 1024 * 1024
) -> AsyncIterator[RunningHub]:
    store = SqliteStore(workdir / "hub.db")
    await store.open()
    async with store.transaction("api") as tx:
        for agent in AGENTS:
            await tx.put_agent(
                Agent(id=agent, name=agent.title(), email=f"{agent}@example.com", account=ACCOUNT)
            )
    relays = RelayHub(max_message=max_message)
    config = Config(
        admin=AdminSettings(token=ADMIN_TOKEN),
        accounts={ACCOUNT: AccountConfig(ACCOUNT, "mapi", {})},
    )
    runner = web.AppRunner(build_app(store, config, Metrics(), None, relays=relays))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    hub = RunningHub(f"http://{host}:{port}", store, relays, workdir / "outlook.json", workdir)
    hub.backdoor.file.reset()
    try:
        yield hub
    finally:
        for process in hub.agents:
            process.kill()
        await runner.cleanup()
        await store.close()
