"""``calhub serve`` as a real process: start, answer, refuse what is unsafe, stop on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

TOKEN = "test-admin-token"


def _start(config: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--config", str(config)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALHUB_")}
    env.update(extra)
    return env


def _get(
    url: str, token: str | None = None, *, post: bool = False
) -> tuple[int, dict[str, object] | str]:
    request = urllib.request.Request(url, data=b"{}" if post else None)
    if post:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read().decode(), error.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    config = tmp_path / "calhub.toml"
    config.write_text(
        f"""
[hub]
database = "{tmp_path / "hub.db"}"

[admin]
listen = "127.0.0.1:0"
token_env = "TEST_CALHUB_TOKEN"

[accounts.mem]
provider = "memory"
state_file = "{tmp_path / "state.json"}"

[[agents]]
id = "alice"
name = "Alice Smith"
email = "alice@example.com"
account = "mem"
""",
        encoding="utf-8",
    )
    process = _start(config, _env(TEST_CALHUB_TOKEN=TOKEN), tmp_path)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the site listens
        match = re.fullmatch(r"calhub listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, f"unexpected first line {line!r}; stderr: {process.stderr.read()}"  # type: ignore[union-attr]
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_and_stops_cleanly(
    server: tuple[subprocess.Popen[str], str], stop_signal: signal.Signals
) -> None:
    process, base = server
    assert _get(f"{base}/health") == (200, {"status": "ok"})
    status, _ = _get(f"{base}/agents")
    assert status == 401
    status, agents = _get(f"{base}/agents", TOKEN)
    assert status == 200
    assert isinstance(agents, list)
    assert [(a["id"], a["source"]) for a in agents] == [("alice", "config")]
    # The [[agents]] of the config were stored with a feed token made for them.
    status, alice = _get(f"{base}/agents/alice", TOKEN)
    assert status == 200
    assert isinstance(alice, dict)
    assert alice["name"] == "Alice Smith"
    assert alice["feed_token"]
    status, feed = _get(f"{base}/agents/alice/calendar.ics?token={alice['feed_token']}")
    assert status == 200
    assert isinstance(feed, str)
    assert feed.startswith("BEGIN:VCALENDAR")
    # The scheduler runs inside the service: a pass on demand reaches the memory account.
    status, result = _get(f"{base}/agents/alice/sync", TOKEN, post=True)
    assert status == 200, result
    assert isinstance(result, dict)
    assert result["result"] == "ok"

    process.send_signal(stop_signal)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in err


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    config = tmp_path / "calhub.toml"
    config.write_text(
        f'[hub]\ndatabase = "{tmp_path / "hub.db"}"\n[admin]\nlisten = "0.0.0.0:0"\n',
        encoding="utf-8",
    )
    process = _start(config, _env(), tmp_path)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("admin.listen: ")]
    assert len(lines) == 1
    assert "not a loopback address" in lines[0]
    assert not (tmp_path / "hub.db").exists()  # refused before touching anything


async def test_config_agents_never_reset_what_the_api_set(tmp_path: Path) -> None:
    from hub.config import load_config
    from hub.model import Agent
    from hub.service import upsert_config_agents
    from hub.spec import ProviderRegistry
    from hub.store import open_store

    path = tmp_path / "calhub.toml"
    path.write_text(
        '[[agents]]\nid = "bob"\nname = "Bob Builder"\n\n[[agents]]\nid = "carol"\n',
        encoding="utf-8",
    )
    config = load_config(path, ProviderRegistry(), {})
    async with open_store(str(tmp_path / "hub.db")) as store:
        async with store.transaction("api") as tx:
            await tx.put_agent(
                Agent(
                    id="bob",
                    name="Bob",
                    email="bob@example.com",
                    colour="#112233",
                    feed_token="kept-token",
                )
            )
        changed = await upsert_config_agents(store, config)
        assert sorted(a.id for a in changed) == ["bob", "carol"]
        bob = await store.get_agent("bob")
        carol = await store.get_agent("carol")
        assert bob is not None and carol is not None
        assert (bob.name, bob.email, bob.colour, bob.feed_token, bob.source) == (
            "Bob Builder",
            "bob@example.com",
            "#112233",
            "kept-token",
            "config",
        )
        assert (carol.name, carol.source) == ("carol", "config")
        assert len(carol.feed_token) >= 24
        # A second start changes nothing, so it writes nothing.
        assert await upsert_config_agents(store, config) == []
        assert (await store.get_agent("carol")).feed_token == carol.feed_token  # type: ignore[union-attr]


def test_serve_reports_a_port_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from hub.cli import main

    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "calhub.toml"
        config.write_text(
            f'[hub]\ndatabase = "hub.db"\n[admin]\nlisten = "127.0.0.1:{port}"\n',
            encoding="utf-8",
        )
        assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"admin.listen: cannot listen on 127.0.0.1:{port}: ")
