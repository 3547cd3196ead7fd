"""Fixtures of the e-mail tests: a test CA, real aiosmtpd servers on loopback, and a hub
(store, rules, copy hook, sender) whose clock the test moves by hand."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.config import Config, load_config
from hub.mail.alerts import AttentionAlerts
from hub.mail.copies import CopyPlanner
from hub.mail.sender import Backoff, OutboxSender
from hub.model import Agent
from hub.plugins import load_plugins
from hub.rules import Rules
from hub.store.sqlite import SqliteStore
from tests.fakes.smtp import PASSWORD, USERNAME, SmtpServer
from tests.fakes.tls import TestCA
from tests.sync.helpers import Clock

NOW = datetime(2026, 5, 4, 7, 0, tzinfo=UTC)  # Monday 09:00 in Paris
PASSWORD_ENV = "CALHUB_TEST_SMTP_PASSWORD"


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("smtp-ca"))


@pytest.fixture
async def starttls(ca: TestCA) -> AsyncIterator[SmtpServer]:
    server = SmtpServer(ca, "starttls")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def implicit_tls(ca: TestCA) -> AsyncIterator[SmtpServer]:
    server = SmtpServer(ca, "tls")
    await server.start()
    yield server
    await server.stop()


def write_config(
    directory: Path,
    server: SmtpServer,
    *,
    email_extra: str = "",
    agents: str = "",
) -> Path:
    security = {"starttls": "starttls", "tls": "tls", "none": "none"}[server.mode]
    auth = f'username = "{USERNAME}"\npassword_env = "{PASSWORD_ENV}"' if server.auth else ""
    ca_file = f'ca_file = "{server.ca.ca_file}"' if server.mode != "none" else ""
    path = directory / "calhub.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            [hub]
            database = "{directory / "hub.db"}"
            timezone = "Europe/Paris"

            [email]
            smtp = "127.0.0.1:{server.port}"
            security = "{security}"
            from = "Helpdesk calendar <calhub@example.com>"
            debounce = "30s"
            """
        )
        + f"{auth}\n{ca_file}\n{email_extra}\n{agents}",
        encoding="utf-8",
    )
    return path


AGENTS = """
[[agents]]
id = "alice"
name = "Alice Smith"
email = "alice@example.com"
email_copies = true
copy_to = ["coord@example.com"]

[[agents]]
id = "bob"
name = "Bob Jones"
email = "bob@example.com"
email_copies = true

[[agents]]
id = "carol"
name = "Carol Quiet"
email = "carol@example.com"
"""


def config_for(directory: Path, server: SmtpServer, **kwargs: str) -> Config:
    path = write_config(directory, server, **kwargs)
    return load_config(path, load_plugins({}).registry, {PASSWORD_ENV: PASSWORD})


@dataclass
class MailHub:
    """A store with the copy hook installed, rules, the alerts and a sender on one clock."""

    store: SqliteStore
    config: Config
    rules: Rules
    planner: CopyPlanner
    alerts: AttentionAlerts
    sender: OutboxSender
    clock: Clock
    server: SmtpServer

    async def deliver(self) -> int:
        """Move past the debounce and send what is due."""
        assert self.config.email is not None
        self.clock.advance(seconds=self.config.email.debounce.total_seconds() + 1)
        return await self.sender.send_due()


BACKOFF = Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=40), jitter=0.0)


async def open_hub(
    directory: Path, server: SmtpServer, *, agents: str = AGENTS, email_extra: str = ""
) -> MailHub:
    config = config_for(directory, server, agents=agents, email_extra=email_extra)
    assert config.email is not None
    clock = Clock(NOW)
    store = SqliteStore(config.hub.database)
    await store.open()
    async with store.transaction("config") as tx:
        for agent in config.agents:
            await tx.put_agent(Agent(id=agent.id, name=agent.name, email=agent.email))
    sender = OutboxSender(store, config.email, clock=clock, backoff=BACKOFF)
    planner = CopyPlanner(config.email, config.hub, clock=clock)
    store.add_commit_hook(planner)
    alerts = AttentionAlerts(store, config.email, config.hub, clock=clock)
    return MailHub(store, config, Rules(store, config.hub), planner, alerts, sender, clock, server)


@pytest.fixture
async def hub(tmp_path: Path, starttls: SmtpServer) -> AsyncIterator[MailHub]:
    opened = await open_hub(tmp_path, starttls)
    yield opened
    await opened.store.close()


@pytest.fixture
def no_smtp_password_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    yield
