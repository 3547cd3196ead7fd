"""Real ``calhub serve`` workers on one PostgreSQL database, for the multi-worker tests.

Every worker gets the same configuration: the test's database schema, a short lease, and one
``memory`` account whose calendars live in a ``shared`` state file (the calendar service all
workers talk to, as they would all talk to Microsoft 365). Output goes to files, read back by
the tests (a pipe nobody reads would block a chatty worker).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests import pgserver

TOKEN = "test-admin-token"
T = TypeVar("T")


def write_config(
    tmp: Path, url: str, agents: list[str], *, latency_ms: int = 0, lease: str = "2s"
) -> Path:
    agent_tables = "".join(
        f'\n[[agents]]\nid = "{a}"\nname = "{a}"\nemail = "{a}@example.com"\naccount = "mem"\n'
        for a in agents
    )
    config = tmp / "calhub.toml"
    config.write_text(
        f"""
[hub]
database = "{url}"
database_password_env = "{pgserver.PASSWORD_ENV}"
lease_time = "{lease}"

[admin]
listen = "127.0.0.1:0"
token_env = "TEST_CALHUB_TOKEN"

[accounts.mem]
provider = "memory"
state_file = "{tmp / "calendars.json"}"
shared = true
latency_ms = {latency_ms}
{agent_tables}""",
        encoding="utf-8",
    )
    return config


@dataclass
class Worker:
    """One ``calhub serve`` process."""

    name: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    base: str = ""

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def api(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {TOKEN}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def holder(self, agent_id: str) -> str | None:
        status, body = self.api("GET", f"/agents/{agent_id}/status")
        assert status == 200, body
        return body["worker"]

    def passes(self) -> float:
        """The sync passes this worker's /metrics counts (its own)."""
        request = urllib.request.Request(self.base + "/metrics")
        request.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(request, timeout=15) as response:
            text = response.read().decode()
        found = re.findall(r"^calhub_sync_passes_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
        return sum(float(v) for v in found)


def start(tmp: Path, config: Path, name: str) -> Worker:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALHUB_")}
    env.update(TEST_CALHUB_TOKEN=TOKEN, **{pgserver.PASSWORD_ENV: pgserver.PASSWORD})
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--config", str(config)],
            cwd=tmp,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    worker = Worker(name, process, out, err)
    line = eventually(lambda: _listening(worker), what=f"{name} to listen")
    worker.base = line
    return worker


def _listening(worker: Worker) -> str | None:
    if worker.process.poll() is not None:
        raise AssertionError(f"{worker.name} exited: {worker.log()}")
    match = re.search(r"calhub listening on (http://127\.0\.0\.1:\d+)", worker.out.read_text())
    return match.group(1) if match else None


def eventually(check: Callable[[], T | None], *, what: str, limit: float = 60.0) -> T:
    """Poll ``check`` until it returns something other than None/False (a generous limit: a
    loaded CI machine is slow, and no test asserts on how long it took)."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stop(worker: Worker) -> None:
    if worker.process.poll() is None:
        worker.process.kill()
    worker.process.wait(timeout=30)


def remote_events(tmp: Path, agent_id: str) -> list[dict[str, Any]]:
    """The events of ``agent_id``'s calendar at the shared calendar service."""
    path = tmp / "calendars.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    for cal in data["calendars"]:
        if cal["mailbox"] == f"{agent_id}@example.com":
            return list(cal["events"])
    return []


def subjects(tmp: Path, agent_id: str) -> list[str]:
    return sorted(e["data"]["subject"] for e in remote_events(tmp, agent_id))
