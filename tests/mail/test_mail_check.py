"""``calhub check email`` connects, negotiates TLS and logs in, sending nothing; with
``--send ADDRESS`` it sends one test message. Against a real aiosmtpd over STARTTLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import main
from tests.fakes.smtp import SmtpServer
from tests.fakes.tls import TestCA
from tests.mail.conftest import PASSWORD_ENV, write_config
from tests.mail.helpers import text_of


@pytest.fixture
def server(ca: TestCA) -> Iterator[SmtpServer]:
    started = SmtpServer(ca, "starttls")
    started.start_blocking()
    yield started
    started.stop_blocking()


@pytest.fixture
def config(tmp_path: Path, server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-smtp-pass")
    return write_config(tmp_path, server)


def test_check_connects_negotiates_tls_and_logs_in_sending_nothing(
    config: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "email", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "connect:"],
        ["ok", "tls:"],
        ["ok", "login:"],
    ]
    assert "starttls, TLSv1." in lines[1]
    assert server.handler.logins == ["calhub@example.com"]
    assert server.received == []


def test_check_send_sends_one_test_message(
    config: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "email", "--config", str(config), "--send", "me@example.com"]) == 0
    assert "ok    send: test message to me@example.com accepted" in capsys.readouterr().out
    (got,) = server.received
    assert got.rcpt_tos == ["me@example.com"]
    assert "This is a test message from calhub" in text_of(got.message)


def test_check_reports_a_refused_login(
    config: Path,
    server: SmtpServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    assert main(["check", "email", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  login:" in out and "authentication refused: 535" in out
    assert "wrong" not in out  # the password is never shown


def test_check_reports_a_server_that_is_down(
    config: Path, server: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.stop_blocking()
    assert main(["check", "email", "--config", str(config)]) == 1
    assert capsys.readouterr().out.startswith("FAIL  connect: 127.0.0.1:")


def test_check_email_without_the_section_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "calhub.toml"
    path.write_text(f'[hub]\ndatabase = "{tmp_path / "h.db"}"\n', encoding="utf-8")
    assert main(["check", "email", "--config", str(path)]) == 2
    assert "no [email] section" in capsys.readouterr().err
    assert main(["check", "nope", "--send", "a@example.com", "--config", str(path)]) == 2


def test_sync_from_cron_sends_the_alert_of_an_account_that_fails(
    tmp_path: Path,
    server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-smtp-pass")
    broken = tmp_path / "state.json"
    broken.write_text("not json", encoding="utf-8")
    agents = f"""
[accounts.mem]
provider = "memory"
state_file = "{broken}"

[[agents]]
id = "alice"
email = "alice@example.com"
account = "mem"

[[agents]]
id = "bob"
email = "bob@example.com"
account = "mem"
"""
    config = write_config(
        tmp_path, server, email_extra='alerts_to = ["admins@example.com"]', agents=agents
    )
    assert main(["sync", "--config", str(config)]) == 1
    assert main(["sync", "--config", str(config)]) == 1
    (alert,) = server.received  # one for the account, not one per agent or per run
    assert alert.message["Subject"] == "calhub: account mem needs attention"
    assert "cannot open account" in text_of(alert.message)
    capsys.readouterr()
