"""`calhub check` on a graph365 account from a real config file, against the fake."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hub.cli import main
from tests.fakes.graph import GraphFake
from tests.graph.conftest import MAILBOXES


def write_config(tmp_path: Path, fake: GraphFake) -> Path:
    path = tmp_path / "calhub.toml"
    path.write_text(
        f"""
[hub]
database = "{tmp_path / "hub.db"}"

[accounts.o365]
provider = "graph365"
tenant_id = "{fake.tenant}"
client_id = "{fake.client_id}"
client_secret_env = "CALHUB_TEST_O365_SECRET"
authority = "{fake.authority}"
base_url = "{fake.base_url}"
ca_file = "{fake.ca.ca_file}"

[[agents]]
id = "alice"
name = "Alice"
email = "{MAILBOXES[0]}"
account = "o365"

[[agents]]
id = "bob"
name = "Bob"
email = "{MAILBOXES[1]}"
account = "o365"
"""
    )
    return path


async def test_check_write_from_the_command_line(
    tmp_path: Path, fake: GraphFake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CALHUB_TEST_O365_SECRET", fake.client_secret)
    config = write_config(tmp_path, fake)
    argv = ["check", "o365", "--write", "--config", str(config)]
    status = await anyio.to_thread.run_sync(main, argv)
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert out[0].startswith("ok    token acquired")
    assert sum(line.startswith("ok") for line in out) == 9  # token + 4 steps per agent
    assert not (tmp_path / "hub.db").exists()
    assert all(fake.events(m) == [] for m in MAILBOXES)


async def test_check_names_the_refused_secret(
    tmp_path: Path, fake: GraphFake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CALHUB_TEST_O365_SECRET", "wrong")
    status = await anyio.to_thread.run_sync(
        main, ["check", "o365", "--config", str(write_config(tmp_path, fake))]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL  token acquired" in out and "AADSTS7000215" in out
