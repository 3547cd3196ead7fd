"""Shared test configuration: keep tests off the network and out of the user's environment.

Hypothesis runs derandomized and without an example database by default, so CI sees the same
examples on every run; ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples locally
(keep a failure as an explicit ``@example`` or a replay test).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import settings

from hub.store.sqlite import SqliteStore
from tests import pgserver

settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _no_admin_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A token exported in the developer's shell must not change what the tests see.
    monkeypatch.delenv("CALHUB_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("CALHUB_PLUGINS", raising=False)


# --------------------------------------------------------------------------- both stores
# Store tests take ``make_store`` and run once per backend: the embedded SQLite file and a real
# PostgreSQL (Debian's server, one per test session, started by tests/pgserver.py).

BACKENDS = pgserver.BACKENDS


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.Server]:
    if pgserver.binaries() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = pgserver.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: pgserver.Server) -> str:
    """A PostgreSQL URL of an empty schema of this test's own."""
    return pg_server.fresh_url()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., SqliteStore]:
    """``make_store(clock=None)``: a new (unopened) store on this test's database; two calls
    give two stores on the same database."""
    where = str(tmp_path / "hub.db") if backend == "sqlite" else request.getfixturevalue("pg_url")

    def make(*, clock: Callable[[], datetime] | None = None) -> SqliteStore:
        if backend == "sqlite":
            return SqliteStore(where, clock=clock)
        from hub.store.postgres import PgStore

        return PgStore(where, password=pgserver.PASSWORD, clock=clock)

    return make
