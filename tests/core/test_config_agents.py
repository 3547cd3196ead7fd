"""Agents between the config file, the database and the API: an agent gone from the file is
retired at the next start, and no two agents may sync one remote calendar."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import AdminSettings, Config, ConfigError, load_config
from hub.metrics import Metrics
from hub.model import Agent, Appointment, Approval, Kind, PushState
from hub.service import upsert_config_agents
from hub.spec import AccountConfig, ProviderRegistry
from hub.store.sqlite import SqliteStore
from tests.core.admin_support import Api, running_api
from tests.core.test_cli import memory_config
from tests.core.test_config import _Declared

SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


class PerMailbox(_Declared):
    name = "permailbox"
    title = "Each mailbox has its own default calendar (Graph, EWS)"


class AccountWide(_Declared):
    name = "accountwide"
    title = "One default calendar per account (CalDAV)"
    calendar_per_mailbox = False


@pytest.fixture
def registry() -> ProviderRegistry:
    reg = ProviderRegistry()
    reg.add(PerMailbox)
    reg.add(AccountWide)
    return reg


def _config(tmp_path: Path, agents: list[dict[str, str]]) -> Path:
    text = (
        '[accounts.o365]\nprovider = "permailbox"\n'
        '[accounts.dav]\nprovider = "accountwide"\n'
        '[accounts.other]\nprovider = "permailbox"\n'
    )
    for agent in agents:
        text += "[[agents]]\n" + "".join(f'{k} = "{v}"\n' for k, v in agent.items())
    path = tmp_path / "calhub.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- shared calendars


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        (
            {"account": "o365", "email": "a@x.com"},
            {"account": "o365", "email": " A@X.com"},
            "the default calendar of 'a@x.com'",
        ),
        (
            {"account": "o365", "email": "a@x.com", "calendar": "AAMk=="},
            {"account": "o365", "email": "b@x.com", "calendar": " AAMk== "},
            "calendar 'AAMk=='",
        ),
        (
            {"account": "dav", "calendar": "cals/team/"},
            {"account": "dav", "calendar": "cals/team"},
            "calendar 'cals/team'",
        ),
        (
            {"account": "dav", "email": "a@x.com"},
            {"account": "dav", "email": "b@x.com"},
            "the account's default calendar",
        ),
    ],
)
def test_two_agents_on_one_remote_calendar_are_refused_at_load(
    tmp_path: Path, registry: ProviderRegistry, first: dict, second: dict, shared: str
) -> None:
    path = _config(
        tmp_path,
        [{"id": "alice", **first}, {"id": "carol", "account": "other"}, {"id": "bob", **second}],
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry, {})
    assert info.value.problems == [
        f"agents[2].calendar: agents 'alice' and 'bob' would both sync {shared} of account "
        f"'{first['account']}'; give one of them its own calendar (or mailbox)"
    ]


@pytest.mark.parametrize(
    "second",
    [
        {"account": "other", "email": "a@x.com"},  # same mailbox, another account
        {"account": "o365", "email": "b@x.com"},
        {"account": "o365", "email": "a@x.com", "calendar": "AAMk=="},  # another of its calendars
        {"email": "a@x.com"},  # no account: the hub calendar only
    ],
)
def test_distinct_remote_calendars_load(
    tmp_path: Path, registry: ProviderRegistry, second: dict
) -> None:
    alice = {"id": "alice", "account": "o365", "email": "a@x.com"}
    path = _config(tmp_path, [alice, {"id": "bob", **second}])
    assert len(load_config(path, registry, {}).agents) == 2


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        assert (
            await api.call("PATCH", "/agents/alice", {"email": "alice@example.com"})
        ).status == 200
        yield api


async def test_the_api_refuses_a_second_agent_on_one_calendar(api: Api) -> None:
    before = api.table_counts()
    made = await api.call(
        "POST", "/agents", {"id": "dave", "account": "o365", "email": "Alice@example.com"}
    )
    assert made.status == 409, made.text
    assert made.json == {
        "error": "agents 'alice' and 'dave' would both sync the default calendar of "
        "'alice@example.com' of account 'o365'; give one of them its own calendar (or mailbox)",
        "field": "calendar",
    }
    moved = await api.call(
        "PATCH", "/agents/bob", {"account": "o365", "email": "alice@example.com"}
    )
    assert moved.status == 409 and "'alice' and 'bob'" in moved.json["error"], moved.text
    assert api.table_counts() == before
    # Another calendar of the same mailbox is another calendar.
    other = {"id": "dave", "account": "o365", "email": "alice@example.com", "calendar": "AAMk"}
    assert (await api.call("POST", "/agents", other)).status == 201


async def test_a_config_agent_on_an_api_agents_calendar_is_refused_at_start(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "hub.db")
    async with store:
        async with store.transaction("api") as tx:
            await tx.put_agent(Agent(id="api-made", name="A", account="o365", email="a@x.com"))
        config = Config(
            accounts={"o365": AccountConfig("o365", "permailbox", {})},
            agents=(Agent(id="cfg", name="C", account="o365", email="A@x.com", source="config"),),
        )
        with pytest.raises(ConfigError) as info:
            await upsert_config_agents(store, config)
        (problem,) = info.value.problems
        assert problem.startswith("agents[0].calendar: agents 'api-made' and 'cfg' would both")
        assert await store.get_agent("cfg") is None


# --------------------------------------------------------------------------- retiring


async def _give_bob_history(db: Path) -> None:
    """bob: an entry not pushed yet, a cancelled one waiting for its remote delete, and one
    held for approval."""
    store = SqliteStore(db)
    async with store, store.transaction("api") as tx:
        for appt_id, state in (("keep", PushState.SYNC), ("held", PushState.PENDING)):
            await tx.put_appointment(
                Appointment(
                    id=appt_id,
                    agent_id="bob",
                    kind=Kind.MANUAL,
                    start=SOON,
                    end=SOON + timedelta(hours=1),
                    subject=f"Visit {appt_id}",
                    push_state=state,
                )
            )
        await tx.add_approval(
            Approval(id="ap1", appointment_id="held", agent_id="bob", created_at=SOON)
        )
        await tx.put_appointment(
            Appointment(
                id="gone",
                agent_id="bob",
                kind=Kind.MANUAL,
                start=SOON,
                end=SOON + timedelta(hours=2),
                subject="Cancelled",
            )
        )
        await tx.delete_appointment("gone")


async def _check_retired(db: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from hub.admin import build_app

    store = SqliteStore(db)
    async with store:
        bob = await store.get_agent("bob")
        assert bob is not None and (bob.source, bob.account) == ("retired", None)
        kept = await store.list_appointments(agent_id="bob", include_deleted=True)
        assert sorted(a.id for a in kept) == ["held", "keep"]  # history kept, tombstone gone
        assert await store.list_approvals(pending_only=True) == []
        # Deletable through the API now, like any agent the file does not define.
        app = build_app(store, Config(admin=AdminSettings()), Metrics(), None)
        async with TestClient(TestServer(app)) as client:
            assert (await client.delete("/agents/bob")).status == 204


def test_an_agent_gone_from_the_file_is_retired_at_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["sync", "--config", str(memory_config(tmp_path, agents="alice bob"))]) == 0
    asyncio.run(_give_bob_history(tmp_path / "hub.db"))
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="hub.service"):
        status = main(["sync", "--config", str(memory_config(tmp_path, agents="alice"))])
    assert status == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""
    (line,) = [r.getMessage() for r in caplog.records if "retired" in r.getMessage()]
    assert line.endswith(": bob") and "removed from the config file" in line
    state = tmp_path / "state.json"
    assert not state.exists() or "Visit keep" not in state.read_text()  # its push cancelled

    asyncio.run(_check_retired(tmp_path / "hub.db"))
    # A second start has nothing left to retire.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hub.service"):
        assert main(["sync", "--config", str(memory_config(tmp_path, agents="alice"))]) == 0
    assert not [r for r in caplog.records if "retired" in r.getMessage()]
