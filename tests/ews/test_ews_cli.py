"""`calhub check` on an exchange_ews account from a real config file, against the fake."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hub.cli import main
from tests.ews.helpers import MAILBOXES
from tests.fakes.ews import EwsFake


def write_config(tmp_path: Path, fake: EwsFake) -> Path:
    path = tmp_path / "calhub.toml"
    username = fake.username.replace("\\", "\\\\")
    path.write_text(
        f"""
[hub]
database = "{tmp_path / "hub.db"}"

[accounts.onprem]
provider = "exchange_ews"
url = "{fake.url}"
username = "{username}"
password_env = "CALHUB_TEST_EWS_PASSWORD"
auth = "ntlm"
ca_file = "{fake.ca.ca_file}"
version = "Exchange2016"

[[agents]]
id = "alice"
name = "Alice"
email = "{MAILBOXES[0]}"
account = "onprem"

[[agents]]
id = "bob"
name = "Bob"
email = "{MAILBOXES[1]}"
account = "onprem"
"""
    )
    return path


async def test_check_write_from_the_command_line(
    tmp_path: Path, fake: EwsFake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CALHUB_TEST_EWS_PASSWORD", fake.password)
    argv = ["check", "onprem", "--write", "--config", str(write_config(tmp_path, fake))]
    status = await anyio.to_thread.run_sync(main, argv)
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert out[0].startswith("ok    EWS at ")
    assert sum(line.startswith("ok") for line in out) == 9  # endpoint + 4 steps per agent
    assert not (tmp_path / "hub.db").exists()
    assert all(fake.items(m) == [] for m in MAILBOXES)  # the probes are gone
    assert fake.invitations == 0


async def test_check_names_the_refused_password_and_the_denied_mailbox(
    tmp_path: Path, fake: EwsFake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config = str(write_config(tmp_path, fake))
    monkeypatch.setenv("CALHUB_TEST_EWS_PASSWORD", "wrong")
    assert await anyio.to_thread.run_sync(main, ["check", "onprem", "--config", config]) == 1
    assert "FAIL  EWS at" in capsys.readouterr().out
    monkeypatch.setenv("CALHUB_TEST_EWS_PASSWORD", fake.password)
    fake.deny_impersonation(MAILBOXES[1])
    assert await anyio.to_thread.run_sync(main, ["check", "onprem", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "ok    EWS at" in out
    assert "FAIL  bob" in out and "ErrorImpersonateUserDenied" in out
