"""The command line under bad input and a failing database: one line each, never a
traceback, and the documented exit status."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import MAX_WINDOW_DAYS
from hub.testing.memory import MemoryProvider
from tests.core.test_cli import book_one, memory_config


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALHUB_CONFIG", raising=False)


def _err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    ("hub", "expected"),
    [
        ("days_past = 1000000", f"hub.days_past: must be at most {MAX_WINDOW_DAYS}, got 1000000"),
        ("days_future = 99999999999", "hub.days_future: must be at most 3650, got 99999999999"),
        ("sync_interval = 999999999999999999999", "hub.sync_interval: duration"),
        ('sync_interval = "30d"', "hub.sync_interval: must be at most 7d, got '30d'"),
        ('default_estimate = "99999999999999999d"', "hub.default_estimate: duration"),
        ('default_estimate = "32d"', "hub.default_estimate: must be at most 31d, got '32d'"),
        ("reminder_minutes = 99999999", "hub.reminder_minutes: must be at most 40320"),
        ("max_concurrent_syncs = 100000", "hub.max_concurrent_syncs: must be at most 1000"),
        ('audit_retention = "99999999d"', "hub.audit_retention: must be at most 100 years"),
        ("conflict_retention = 99999999999999", "hub.conflict_retention: duration"),
    ],
)
def test_out_of_range_keys_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hub: str, expected: str
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text(f"[hub]\n{hub}\n", encoding="utf-8")
    assert main(["sync", "--config", str(path)]) == 2
    (line,) = _err_lines(capsys)
    assert line.startswith(expected), line


def test_deeply_nested_toml_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n", encoding="utf-8")
    assert main(["sync", "--config", str(path)]) == 2
    (line,) = _err_lines(capsys)
    assert line == f"{path}: invalid TOML: arrays or inline tables nested too deeply"


def test_an_agent_name_with_a_line_break_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text('[[agents]]\nid = "alice"\nname = "Alice\\nSmith"\n', encoding="utf-8")
    assert main(["sync", "--config", str(path)]) == 2
    assert _err_lines(capsys) == [
        "agents[0].name: must be one line without control characters, got 'Alice\\nSmith'"
    ]


def test_unknown_agent_without_accounts_is_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text(f'[hub]\ndatabase = "{tmp_path / "hub.db"}"\n[[agents]]\nid = "alice"\n')
    assert main(["sync", "--config", str(path), "--agent", "nope"]) == 2
    assert _err_lines(capsys) == ["--agent: no agent named nope (agents: alice)"]
    assert not (tmp_path / "hub.db").exists()  # a typo makes no database
    # A known agent without accounts has nothing to sync: still status 0.
    assert main(["sync", "--config", str(path), "--agent", "alice"]) == 0


@pytest.fixture
def locker(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection to the hub's database, to hold its write lock."""
    db = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
    yield db
    db.close()


def _lock_after_push(locker: sqlite3.Connection):  # type: ignore[no-untyped-def]
    push = MemoryProvider.push

    async def patched(self: MemoryProvider, cal, items):  # type: ignore[no-untyped-def]
        outcomes = await push(self, cal, items)
        locker.execute("BEGIN IMMEDIATE")  # another process takes the write lock
        return outcomes

    return "push", patched


def _lock_after_a_remote_move(locker: sqlite3.Connection):  # type: ignore[no-untyped-def]
    fetch = MemoryProvider.fetch

    async def patched(self: MemoryProvider, cal, window, cursor):  # type: ignore[no-untyped-def]
        for event in self.server.events(cal):  # the agent moves it: a hub write to apply
            hour = timedelta(hours=1)
            moved = replace(event.data, start=event.data.start + hour, end=event.data.end + hour)
            self.server.edit(cal, event.remote_id, moved)
        result = await fetch(self, cal, window, cursor)
        locker.execute("BEGIN IMMEDIATE")
        return result

    return "fetch", patched


@pytest.mark.parametrize("lock", [_lock_after_push, _lock_after_a_remote_move])
def test_a_database_locked_mid_pass_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    locker: sqlite3.Connection,
    lock,  # type: ignore[no-untyped-def]
) -> None:
    path = memory_config(tmp_path)
    assert main(["sync", "--config", str(path)]) == 0  # stores the agent
    book_one(tmp_path / "hub.db")
    if lock is _lock_after_a_remote_move:
        assert main(["sync", "--config", str(path)]) == 0  # pushed: now a remote copy
    capsys.readouterr()
    monkeypatch.setattr("hub.store.sqlite.BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(MemoryProvider, *lock(locker))
    with caplog.at_level(logging.WARNING):
        status = main(["sync", "--config", str(path)])
    assert status == 1
    err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith("alice: database: "), err
    assert "database is locked" in err[0]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize(
    "url",
    ["ftp://cal.example.com/", "cal.example.com", "https://cal.example.com/?x=1", "https://u:p@h/"],
)
def test_a_bad_public_url_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text(f'[admin]\npublic_url = "{url}"\n', encoding="utf-8")
    assert main(["sync", "--config", str(path)]) == 2
    (line,) = _err_lines(capsys)
    assert line.startswith("admin.public_url: "), line


def test_a_failed_pass_line_carries_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.spec import PermanentError

    async def failing_fetch(self, cal, window, cursor):  # type: ignore[no-untyped-def]
        raise PermanentError("GET https://cal.example/x?access_token=s3cret: 400")

    monkeypatch.setattr(MemoryProvider, "fetch", failing_fetch)
    assert main(["sync", "--config", str(memory_config(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert "access_token=[redacted]" in err


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ('debounce = "99999999d"', "email.debounce: must be at most 1d"),
        ("debounce = 999999999999999999999", "email.debounce: duration"),
        ("timeout = 1e308", "email.timeout: expected seconds above 0 and at most 3600"),
        ("timeout = nan", "email.timeout: expected seconds above 0 and at most 3600"),
        ("timeout = inf", "email.timeout: expected seconds above 0 and at most 3600"),
    ],
)
def test_out_of_range_email_keys_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, expected: str
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text(
        f'[email]\nsmtp = "smtp.example.com:587"\nfrom = "calhub@example.com"\n{key}\n',
        encoding="utf-8",
    )
    assert main(["sync", "--config", str(path)]) == 2
    (line,) = _err_lines(capsys)
    assert line.startswith(expected), line
