"""What is the PostgreSQL store's own: its migrations, its refusals, its configuration, and
the change notifications that reach the other workers (the Store behaviour itself is tested
on both stores by tests/core/test_store*.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
import trustme

from hub.config import ConfigError, load_config
from hub.model import Agent, Appointment, Kind
from hub.spec import ProviderRegistry
from hub.store import StoreError, hub_store
from hub.store.pg_schema import CLUSTER_MIGRATIONS, statements, versions
from hub.store.postgres import PgStore
from hub.store.schema import CURRENT_VERSION, MIGRATIONS, Migration
from tests import pgserver
from tests.core.test_store import at


def pg(url: str) -> PgStore:
    return PgStore(url, password=pgserver.PASSWORD)


def test_every_shared_migration_has_a_postgresql_spelling() -> None:
    for step in MIGRATIONS:
        assert statements(step), step.version
    trigger = Migration(
        99, "a trigger", ("CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END",)
    )
    with pytest.raises(StoreError, match=r"99 .a trigger. has a trigger without a PostgreSQL"):
        statements(trigger)


async def test_a_new_database_gets_every_version_once(pg_url: str) -> None:
    async def open_one() -> None:
        async with pg(pg_url) as store:
            assert await store.schema_version() == CURRENT_VERSION

    await asyncio.gather(open_one(), open_one(), open_one())  # three workers starting at once
    async with await psycopg.AsyncConnection.connect(pg_url, password=pgserver.PASSWORD) as c:
        assert await versions(c) == {
            "hub": CURRENT_VERSION,
            "cluster": CLUSTER_MIGRATIONS[-1].version,
        }


async def test_another_program_s_database_and_a_newer_one_are_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url, password=pgserver.PASSWORD, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(StoreError, match="not a calhub database"):
        await pg(pg_url).open()
    with psycopg.connect(pg_url, password=pgserver.PASSWORD, autocommit=True) as conn:
        conn.execute("DROP TABLE invoices")
    async with pg(pg_url):
        pass
    with psycopg.connect(pg_url, password=pgserver.PASSWORD, autocommit=True) as conn:
        conn.execute("UPDATE calhub_schema SET version = version + 1 WHERE part = 'hub'")
    with pytest.raises(StoreError, match="is newer than this calhub supports"):
        await pg(pg_url).open()


async def test_a_wrong_password_is_a_clear_error_without_the_password(pg_url: str) -> None:
    with pytest.raises(StoreError, match=r"cannot connect to the database: .*password") as info:
        await PgStore(pg_url, password="wrong-guess").open()
    assert "wrong-guess" not in str(info.value)


def test_config_takes_the_password_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text(
        '[hub]\ndatabase = "postgresql://calhub@db.example.com/calhub"\n'
        'database_password_env = "PGPASS_CALHUB"\ndatabase_ca_file = "/etc/ca.pem"\n'
        'lease_time = "10s"\n'
    )
    config = load_config(path, ProviderRegistry(), env={"PGPASS_CALHUB": "s3cret"})
    assert config.hub.database_password == "s3cret"
    assert config.hub.database_ca_file == "/etc/ca.pem"
    assert config.hub.lease_time.total_seconds() == 10
    store = hub_store(config.hub)
    assert isinstance(store, PgStore) and "s3cret" not in repr(store)
    with pytest.raises(ConfigError, match="PGPASS_CALHUB is not set"):
        load_config(path, ProviderRegistry(), env={})
    path.write_text('[hub]\ndatabase = "postgresql://calhub:s3cret@db.example.com/calhub"\n')
    with pytest.raises(ConfigError, match=r"hub\.database: no password in the URL"):
        load_config(path, ProviderRegistry(), env={})


async def test_another_worker_hears_of_each_commit(pg_url: str) -> None:
    async with pg(pg_url) as one, pg(pg_url) as two:
        heard: list[tuple[str, frozenset[str]]] = []
        appointments: list[frozenset[str]] = []
        got = asyncio.Event()

        def on_change(origin: str, ids: frozenset[str]) -> None:
            heard.append((origin, ids))
            got.set()

        two.add_listener(on_change)
        two.add_appointment_listener(appointments.append)
        mine: list[frozenset[str]] = []
        one.add_listener(lambda origin, ids: mine.append(ids))
        with pytest.raises(RuntimeError):
            async with one.transaction("api") as tx:
                await tx.put_agent(Agent(id="gone", name="Rolled back"))
                raise RuntimeError
        async with one.transaction("api") as tx:
            await tx.put_agent(Agent(id="alice", name="Alice"))
            await tx.put_appointment(
                Appointment(id="a1", agent_id="alice", kind=Kind.MANUAL, start=at(9), end=at(10))
            )
        await asyncio.wait_for(got.wait(), 10)
        assert heard == [("api", frozenset({"alice"}))]  # the rollback sent nothing
        assert appointments == [frozenset({"a1"})]
        assert mine == [frozenset({"alice"})]  # once: its own notification is not repeated


async def test_connections_the_server_cut_are_replaced(pg_url: str) -> None:
    async with pg(pg_url) as store:
        async with store.transaction("api") as tx:
            await tx.put_agent(Agent(id="alice", name="Alice", account="mem"))
        with psycopg.connect(pg_url, password=pgserver.PASSWORD, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE 'calhub %' AND pid <> pg_backend_pid()"
            ).fetchall()
        assert len(cut) == 4  # writer, reader, listener, leases
        # The first use of each connection finds it broken (and says so); the next works.
        with pytest.raises(StoreError):
            await store.get_agent("alice")
        assert await store.get_agent("alice") is not None
        with pytest.raises(StoreError):
            async with store.transaction("api") as tx:
                await tx.put_agent(Agent(id="bob", name="Bob"))
        async with store.transaction("api") as tx:
            await tx.put_agent(Agent(id="bob", name="Bob"))
        with pytest.raises(StoreError):
            await store.lease_round(30)
        assert (await store.lease_round(30)).held.keys() == {"alice"}


async def test_database_ca_file_makes_a_verified_tls_connection(
    pg_server: pgserver.Server, pg_url: str, tmp_path: Path
) -> None:
    async with PgStore(pg_url, password=pgserver.PASSWORD, ca_file=str(pg_server.ca_file)) as s:
        rows = await s._rows("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert rows[0][0] is True
    # A server whose certificate that CA did not sign is refused.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(StoreError, match="cannot connect to the database"):
        await PgStore(pg_url, password=pgserver.PASSWORD, ca_file=str(other)).open()
