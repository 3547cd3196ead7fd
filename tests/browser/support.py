"""Support for the browser tests: a real ``calhub serve`` process, Debian's Chromium driven by
Playwright, and a small bearer-token client of the server's API.

Chromium comes from the system (``/usr/bin/chromium``, which ``.ci/run`` installs); Playwright's
own browser download is never used. Without it the browser tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-token"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass
class Server:
    """A running ``calhub serve``: its base URL and a bearer-token client of its API."""

    url: str
    db: Path
    process: subprocess.Popen[str]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), dict(error.headers)
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode()
        return Reply(status, parsed, got)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        reply = self.call(method, path, body)
        assert reply.status < 300, (method, path, reply.status, reply.body)
        return reply.body

    def login_cookie(self) -> str:
        """A new browser session's cookie value, as the login form would get it."""
        reply = self.call(
            "POST", "/calendar/login", {"token": TOKEN}, token=None, headers={"Origin": self.url}
        )
        assert reply.status == 200, reply.body
        match = re.search(r"calhub_session=([^;]+)", reply.headers["Set-Cookie"])
        assert match
        return match.group(1)


def write_config(directory: Path, body: str) -> Path:
    config = directory / "calhub.toml"
    config.write_text(
        f'[hub]\ndatabase = "{directory / "hub.db"}"\ncreate_appointments = "agent"\n\n'
        '[admin]\nlisten = "127.0.0.1:0"\ntoken_env = "TEST_CALHUB_TOKEN"\n\n' + body,
        encoding="utf-8",
    )
    return config


@contextmanager
def serve(directory: Path, config: Path) -> Iterator[Server]:
    """``calhub serve`` on a free port until the block ends (then SIGTERM, as an operator)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALHUB_")}
    env["TEST_CALHUB_TOKEN"] = TOKEN
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--config", str(config)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the site listens
        match = re.fullmatch(r"calhub listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, f"unexpected first line {line!r}; stderr: {process.stderr.read()}"  # type: ignore[union-attr]
        yield Server(match.group(1), directory / "hub.db", process)
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=30)
