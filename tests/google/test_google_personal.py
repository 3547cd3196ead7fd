"""Personal Google accounts from the command line: `calhub authorize` runs the installed-app
flow (loopback redirect, PKCE) against the fake, the refresh token lands in the database only,
`calhub sync` uses it, and a revoked one marks only that agent, naming the command to rerun."""

from __future__ import annotations

import sqlite3
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hub import cli
from hub.cli import main
from tests.fakes.google import GoogleFake
from tests.google.conftest import USERS

SECRET_ENV = "CALHUB_TEST_GOOGLE_SECRET"


@pytest.fixture
def client(fake: GoogleFake, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    client_id, secret = fake.add_desktop_client()
    monkeypatch.setenv(SECRET_ENV, secret)
    return client_id, secret


@pytest.fixture
def browser(fake: GoogleFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Plays the administrator's browser: opens the URL `calhub authorize` prints (the fake's
    consent page, which redirects to calhub's loopback listener)."""
    seen: list[str] = []
    threads: list[threading.Thread] = []
    context = ssl.create_default_context(cafile=str(fake.ca.ca_file))

    def visit(url: str) -> None:
        with urllib.request.urlopen(url, context=context, timeout=30) as page:
            seen.append(page.read().decode())

    def announce(text: str) -> None:
        print(text)
        url = text.splitlines()[-1]
        if url.startswith("https://"):
            thread = threading.Thread(target=visit, args=(url,), daemon=True)
            threads.append(thread)
            thread.start()

    monkeypatch.setattr(cli, "_announce", announce)
    yield seen
    for thread in threads:
        thread.join(timeout=30)


def write_config(tmp_path: Path, fake: GoogleFake, client_id: str) -> Path:
    path = tmp_path / "calhub.toml"
    path.write_text(
        f"""
[hub]
database = "{tmp_path / "hub.db"}"

[accounts.personal]
provider = "google"
client_id = "{client_id}"
client_secret_env = "{SECRET_ENV}"
base_url = "{fake.url}"
token_url = "{fake.token_url}"
auth_url = "{fake.auth_url}"
ca_file = "{fake.ca.ca_file}"

[[agents]]
id = "alice"
name = "Alice"
email = "{USERS[0]}"
account = "personal"

[[agents]]
id = "bob"
name = "Bob"
email = "{USERS[1]}"
account = "personal"
"""
    )
    return path


async def run(*argv: str) -> int:
    return await anyio.to_thread.run_sync(main, list(argv))


def rows_mentioning(db: Path, secret: str) -> list[str]:
    """Every SQL line of the database dump, but the agent_secrets table's, holding ``secret``."""
    with sqlite3.connect(db) as conn:
        return [line for line in conn.iterdump() if secret in line and "agent_secrets" not in line]


async def test_authorize_then_sync_then_a_revoked_token_needs_attention(
    tmp_path: Path,
    fake: GoogleFake,
    client: tuple[str, str],
    browser: list[str],
    capsys: pytest.CaptureFixture,
) -> None:
    config = str(write_config(tmp_path, fake, client[0]))
    db = tmp_path / "hub.db"

    assert await run("authorize", "personal", "--agent", "alice", "--config", config) == 0
    (token,) = list(fake.refresh_tokens)  # the one Google handed out
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT agent_id, account, secret FROM agent_secrets").fetchall()
    assert stored == [("alice", "personal", token)]
    assert "received" in browser[0]
    assert fake.token_requests[-1]["code_verifier"]  # PKCE

    assert await run("sync", "--config", config) == 1  # bob has not consented yet
    out, err = capsys.readouterr()
    assert "alice: ok" in out
    assert "calhub authorize personal --agent bob" in err

    await cli_sync_after_revoke(config, fake, capsys)
    for text in (out, err, await anyio.Path(config).read_text()):
        assert token not in text
    assert rows_mentioning(db, token) == []
    assert rows_mentioning(db, client[1]) == []


async def cli_sync_after_revoke(config: str, fake: GoogleFake, capsys: pytest.CaptureFixture):
    assert await run("authorize", "personal", "--agent", "bob", "--config", config) == 0
    fake.revoke_refresh_tokens(USERS[0])
    assert await run("sync", "--config", config) == 1
    out, err = capsys.readouterr()
    assert "alice: authentication refused" in err
    assert "invalid_grant" in err and "calhub authorize personal --agent alice" in err
    assert "bob: ok" in out and "bob" not in err  # only the revoked agent needs attention
    assert await run("authorize", "personal", "--agent", "alice", "--config", config) == 0
    assert await run("sync", "--agent", "alice", "--config", config) == 0
    capsys.readouterr()


async def test_check_before_consent_names_the_command(
    tmp_path: Path, fake: GoogleFake, client: tuple[str, str], capsys: pytest.CaptureFixture
) -> None:
    config = str(write_config(tmp_path, fake, client[0]))
    # the database exists (agents known), nobody has consented
    assert await run("sync", "--agent", "alice", "--config", config) == 1
    capsys.readouterr()
    assert await run("check", "personal", "--config", config) == 1
    out = capsys.readouterr().out
    assert "FAIL  alice <alice@acme.example>: token acquired" in out
    assert "calhub authorize personal --agent alice" in out


async def test_a_refused_consent_stores_nothing(
    tmp_path: Path,
    fake: GoogleFake,
    client: tuple[str, str],
    browser: list[str],
    capsys: pytest.CaptureFixture,
) -> None:
    fake.consent_denied = True
    config = str(write_config(tmp_path, fake, client[0]))
    assert await run("authorize", "personal", "--agent", "alice", "--config", config) == 1
    assert "consent refused (access_denied)" in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        assert conn.execute("SELECT count(*) FROM agent_secrets").fetchone() == (0,)


async def test_authorize_on_a_service_account_is_refused(
    tmp_path: Path, fake: GoogleFake, key_file: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "sa.toml"
    path.write_text(
        f"""
[hub]
database = "{tmp_path / "hub.db"}"

[accounts.gws]
provider = "google"
service_account_file = "{key_file}"
base_url = "{fake.url}"
ca_file = "{fake.ca.ca_file}"

[[agents]]
id = "alice"
name = "Alice"
email = "{USERS[0]}"
account = "gws"
"""
    )
    assert await run("authorize", "gws", "--agent", "alice", "--config", str(path)) == 1
    assert "need no consent" in capsys.readouterr().err
    assert await run("check", "gws", "--write", "--config", str(path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok    alice <alice@acme.example>: token (impersonation) acquired")
    assert sum(line.startswith("ok") for line in out) == 4
    assert fake.events(USERS[0]) == []
