"""The ``calhub`` command line (hub/cli.py): commands, output and exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub import __version__
from hub.cli import main


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedded default writes calhub.db into the working directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALHUB_CONFIG", raising=False)


def memory_config(tmp_path: Path, *, agents: str = "alice") -> Path:
    text = f"""
[hub]
database = "{tmp_path / "hub.db"}"

[accounts.mem]
provider = "memory"
state_file = "{tmp_path / "state.json"}"
"""
    for agent in agents.split():
        text += f"""
[[agents]]
id = "{agent}"
email = "{agent}@example.com"
account = "mem"
"""
    path = tmp_path / "calhub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def book_one(db_path: Path) -> None:
    """Store one appointment "appt-1" for alice (who must exist), for a pass to push."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from hub.model import Appointment, Kind
    from hub.store import open_store

    async def book() -> None:
        soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        store = open_store(str(db_path))
        async with store, store.transaction("api") as tx:
            await tx.put_appointment(
                Appointment(
                    id="appt-1",
                    agent_id="alice",
                    kind=Kind.MANUAL,
                    start=soon,
                    end=soon + timedelta(hours=1),
                    subject="Replace the projector",
                )
            )

    asyncio.run(book())


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "sync", "providers", "check"):
        assert command in out
    assert "CALHUB_CONFIG" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"calhub {__version__}"


def test_bad_usage_is_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_providers_lists_the_memory_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (memory,) = [line for line in lines if line.startswith("memory ")]
    assert "In-memory calendars" in memory
    assert "[plugin memory]" in memory
    assert "delta=yes" in memory
    options = lines[lines.index(memory) + 1 : lines.index(memory) + 4]
    assert options == [
        "    state_file (string): JSON file holding the calendars between processes",
        "    latency_ms (number): simulated latency of each request",
        "    max_batch (integer, default 20): items per push request",
    ]


def test_providers_reports_a_plugin_that_failed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub import cli
    from hub.plugins import PluginLoadError, load_plugins

    def broken(env: object = None) -> object:
        plugins = load_plugins({"CALHUB_PLUGINS": "memory"})
        plugins.errors.append(PluginLoadError("acme", "ImportError: no module named acme_sdk"))
        return plugins

    monkeypatch.setattr(cli, "load_plugins", broken)
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "plugin acme failed to load: ImportError: no module named acme_sdk" in out


def test_bad_config_prints_key_lines_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[hub]\nconflict = "mine"\n[[agents]]\nid = "a"\naccount = "o356"\n', encoding="utf-8"
    )
    assert main(["sync", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "hub.conflict: 'mine' is not one of 'newest', 'hub', 'remote'",
        "agents[0].account: no account named 'o356' (accounts: none configured)",
    ]
    assert captured.out == ""


def test_config_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.toml"
    path.write_text("[hub]\nbogus = 1\n", encoding="utf-8")
    monkeypatch.setenv("CALHUB_CONFIG", str(path))
    assert main(["sync"]) == 2
    assert capsys.readouterr().err.startswith("hub.bogus: unknown key")


def test_real_process_shows_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[hub\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "hub", "check", "x", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith(f"{path}: ")]
    assert line.startswith(f"{path}: invalid TOML: ")
    assert "line 1" in line


def test_sync_without_accounts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sync"]) == 0
    assert "no accounts configured" in capsys.readouterr().out
    assert not (tmp_path / "calhub.db").exists()  # nothing to do: no database made


def test_sync_unknown_agent_is_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = memory_config(tmp_path)
    assert main(["sync", "--config", str(path), "--agent", "zed"]) == 2
    assert capsys.readouterr().err.strip() == "--agent: no agent named zed (agents: alice)"


def test_sync_pushes_to_a_memory_account_across_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = memory_config(tmp_path, agents="alice bob")
    assert main(["sync", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["alice: ok", "bob: ok"]

    book_one(tmp_path / "hub.db")
    assert main(["sync", "--config", str(path), "--agent", "alice"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alice: ok")
    # The state file is the memory server as a second process would see it.
    state = (tmp_path / "state.json").read_text(encoding="utf-8")
    assert "Replace the projector" in state
    assert json.loads(state)  # valid JSON, not a partial write


def test_sync_failure_is_status_1_with_one_line_per_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = memory_config(tmp_path)
    (tmp_path / "state.json").write_text("{not json", encoding="utf-8")
    assert main(["sync", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("alice: ")]
    assert "state_file" in line


def test_check_a_memory_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = memory_config(tmp_path)
    assert main(["check", "mem", "--write", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok    connect")
    assert any(line.startswith("ok    read alice@example.com") for line in lines)
    assert any(line.startswith("ok    write alice@example.com") for line in lines)
    assert not (tmp_path / "hub.db").exists()  # a connection test makes no database


def test_check_failure_is_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = memory_config(tmp_path)
    (tmp_path / "state.json").write_text("{not json", encoding="utf-8")
    assert main(["check", "mem", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  connect: ")
    assert "state_file" in out


def test_check_unknown_account_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = memory_config(tmp_path)
    assert main(["check", "o365", "--config", str(path)]) == 2
    assert capsys.readouterr().err.strip() == "check: no account named 'o365' (accounts: mem)"


@pytest.mark.parametrize("command", ["sync", "serve"])
def test_unusable_database_is_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = memory_config(tmp_path)
    (tmp_path / "hub.db").write_text("a text file, not a database", encoding="utf-8")
    assert main([command, "--config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"hub.database: {tmp_path / 'hub.db'}: cannot open the database: file is not a database"
    ]


def test_sync_prunes_history_past_its_retention(tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from hub.store.sqlite import SqliteStore

    long_ago = datetime.now(UTC) - timedelta(days=400)  # past the default 365d

    async def entity_ids(clock: datetime | None = None) -> set[str]:
        store = SqliteStore(tmp_path / "hub.db", clock=(lambda: clock) if clock else None)
        async with store:
            if clock is not None:
                async with store.transaction("api") as tx:
                    await tx.audit("request", "ancient", "note")
            return {e.entity_id for e in await store.list_audit(limit=1000)}

    assert "ancient" in asyncio.run(entity_ids(long_ago))
    assert main(["sync", "--config", str(memory_config(tmp_path))]) == 0
    assert "ancient" not in asyncio.run(entity_ids())
