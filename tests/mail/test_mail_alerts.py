"""Alerts to alerts_to when sync needs attention and when it recovers, one per change of
state: through the scheduler and the memory provider's revoked credentials, delivered over
STARTTLS to a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from hub.mail.alerts import AttentionAlerts
from hub.metrics import Metrics
from hub.model import Agent, PassResult
from hub.scheduler import Scheduler
from hub.spec import AccountConfig, AttentionNeeded, AuthError, ProviderRegistry
from hub.testing.memory import MemoryProvider, MemoryServer
from tests.fakes.smtp import SmtpServer
from tests.mail.conftest import MailHub, open_hub
from tests.mail.helpers import text_of, to

ADMINS = ("admins@example.com", "oncall@example.com")


@pytest.fixture
async def world(
    tmp_path: Path, starttls: SmtpServer
) -> AsyncIterator[tuple[MailHub, MemoryServer]]:
    hub = await open_hub(
        tmp_path, starttls, email_extra=f"alerts_to = {list(ADMINS)!r}".replace("'", '"')
    )
    memory = MemoryServer()
    hub.config = replace(
        hub.config, accounts={"mem": AccountConfig("mem", "memory", {"server": memory})}
    )
    async with hub.store.transaction("config") as tx:
        for agent_id in ("alice", "bob", "carol"):
            await tx.put_agent(
                Agent(
                    id=agent_id,
                    name=agent_id.title(),
                    email=f"{agent_id}@example.com",
                    account="mem",
                )
            )
    yield hub, memory
    await hub.store.close()


async def passes(hub: MailHub) -> dict[str, PassResult]:
    registry = ProviderRegistry()
    registry.add(MemoryProvider)
    async with Scheduler(
        hub.store,
        hub.config,
        registry,
        Metrics(),
        background=False,
        clock=hub.clock,
        observers=[hub.alerts.observe],
    ) as scheduler:
        results = await scheduler.run_once()
    await hub.sender.send_due()
    return results


def alerts(hub: MailHub, address: str = ADMINS[0]) -> list[str]:
    return [m["Subject"] for m in to(hub.server, address)]


async def test_revoked_credentials_send_one_alert_for_the_account_and_one_on_recovery(
    world: tuple[MailHub, MemoryServer],
) -> None:
    hub, memory = world
    await passes(hub)
    assert alerts(hub) == []  # working from the start: nothing to say
    memory.revoke_auth()
    results = await passes(hub)
    assert {r.result for r in results.values()} == {"needs-attention"}
    await passes(hub)  # still refused: no second alert
    for address in ADMINS:
        assert alerts(hub, address) == ["calhub: account mem needs attention"]
    body = text_of(to(hub.server, ADMINS[0])[0])
    assert "401 Unauthorized: credentials revoked" in body
    assert "calhub check mem" in body and "calhub authorize mem" in body
    memory.restore_auth()
    await passes(hub)
    await passes(hub)
    for address in ADMINS:
        assert alerts(hub, address) == [
            "calhub: account mem needs attention",
            "calhub: account mem works again",
        ]
    assert len(hub.server.received) == 4  # two admins, two changes of state: no storm


async def test_one_refused_mailbox_alerts_for_that_agent_only(
    world: tuple[MailHub, MemoryServer],
) -> None:
    hub, memory = world
    memory.revoke_auth("bob@example.com")
    await passes(hub)
    await passes(hub)
    assert alerts(hub) == ["calhub: agent bob needs attention"]
    assert "GET /agents/bob/status" in text_of(to(hub.server, ADMINS[0])[0])
    memory.restore_auth("bob@example.com")
    await passes(hub)
    assert alerts(hub) == ["calhub: agent bob needs attention", "calhub: agent bob works again"]


async def test_the_state_alerted_survives_a_restart(world: tuple[MailHub, MemoryServer]) -> None:
    hub, memory = world
    memory.revoke_auth("bob@example.com")
    await passes(hub)
    hub.alerts = AttentionAlerts(hub.store, hub.sender.email, hub.config.hub, clock=hub.clock)
    await passes(hub)
    assert alerts(hub) == ["calhub: agent bob needs attention"]


async def test_any_attention_state_counts_and_other_failures_change_nothing(
    world: tuple[MailHub, MemoryServer],
) -> None:
    hub, _ = world
    offline = PassResult(
        "carol",
        "outlook",
        "needs-attention",
        error="Outlook agent offline for 2 hours",
        scope="agent",
    )
    await hub.alerts.observe(offline)
    await hub.alerts.observe(PassResult("carol", "outlook", "failed", error="timeout"))
    await hub.alerts.observe(PassResult("carol", "outlook", "stopped", error="empty"))
    await hub.alerts.observe(offline)
    await hub.sender.send_due()
    assert alerts(hub) == ["calhub: agent carol needs attention"]
    assert "calhub outlook-agent" in text_of(to(hub.server, ADMINS[0])[0])
    await hub.alerts.observe(PassResult("carol", "outlook", "ok"))
    await hub.sender.send_due()
    assert alerts(hub)[-1] == "calhub: agent carol works again"


async def test_a_provider_saying_attention_is_needed_alerts_for_that_agent(
    world: tuple[MailHub, MemoryServer],
) -> None:
    hub, memory = world
    offline = AttentionNeeded("the agent program has been offline for more than 8:00:00")
    memory.fail_next(10, offline, mailbox="carol@example.com")
    results = await passes(hub)
    assert results["carol"].result == "needs-attention" and results["carol"].scope == "agent"
    await passes(hub)
    assert alerts(hub) == ["calhub: agent carol needs attention"]
    assert "offline for more than 8:00:00" in text_of(to(hub.server, ADMINS[0])[0])


async def test_an_account_alert_does_not_flap_while_its_agents_pass_and_fail_by_turns(
    world: tuple[MailHub, MemoryServer],
) -> None:
    """One agent refused with an account-wide error (a per-agent token a provider reports
    without naming the mailbox) while the others pass: one alert, not one per pass."""
    hub, memory = world
    refused = AuthError("401 Unauthorized: token revoked")  # no mailbox: account-wide
    memory.fail_next(3, refused, mailbox="bob@example.com")
    for _ in range(3):
        await passes(hub)
    assert alerts(hub) == ["calhub: account mem needs attention"]
    await passes(hub)  # bob works again: nobody of the account is refused any more
    assert alerts(hub) == ["calhub: account mem needs attention", "calhub: account mem works again"]


async def test_an_account_works_again_once_none_of_its_agents_is_refused(
    world: tuple[MailHub, MemoryServer],
) -> None:
    hub, memory = world
    memory.revoke_auth()
    await passes(hub)
    memory.restore_auth()
    memory.fail_next(1, AuthError("401 Unauthorized: token revoked"), mailbox="bob@example.com")
    await passes(hub)  # alice and carol work again, bob is still refused
    assert alerts(hub) == ["calhub: account mem needs attention"]
    await passes(hub)
    assert alerts(hub) == ["calhub: account mem needs attention", "calhub: account mem works again"]
