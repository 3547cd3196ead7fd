"""What the admin endpoint writes to the log: no feed token in an access line or an error,
and a client's fault (a malformed request, a hang-up mid-body) as at most one warning line,
never an ERROR with a traceback, never counted as a 500."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from hub.admin import build_app
from hub.admin.httplog import ProtocolLog, server_options
from hub.config import AdminSettings, Config
from hub.metrics import Metrics
from hub.redact import REDACTED, RedactSecrets, redact
from hub.service import configure_logging
from hub.store.sqlite import SqliteStore
from tests.core.admin_support import TOKEN, Api, running_api

MALFORMED = [
    b"GET /agents HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /agents HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /agents?token=feed-alice HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path / "hub.db") as api:
        yield api


async def _send(host: str, port: int, raw: bytes, *, hang_up: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    await writer.drain()
    answer = b""
    if hang_up:
        await asyncio.sleep(0.05)  # the handler is reading the body now
    else:
        answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


def _half_body(path: str = "/agents") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"id": "da'
    ).encode()


def _statuses(metrics: Metrics) -> set[str]:
    return {
        sample.labels["status"]
        for family in metrics.http.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /agents/a/calendar.ics?token=abc123 HTTP/1.1",
         f"GET /agents/a/calendar.ics?token={REDACTED} HTTP/1.1"),
        ("https://h/x?a=1&access_token=eyJ.x&b=2", f"https://h/x?a=1&access_token={REDACTED}&b=2"),
        ("redirect ?code=xyz&state=1", f"redirect ?code={REDACTED}&state=1"),
        ("https://h/?client_secret=s3&sig=AbC%3D", f"https://h/?client_secret={REDACTED}&sig={REDACTED}"),
        ("GET /x?$skiptoken=Q1 done", f"GET /x?$skiptoken={REDACTED} done"),
        ("'https://h/p?Token=abc'", f"'https://h/p?Token={REDACTED}'"),
        ("?token=", "?token="),
        ("no url, key=value in prose", "no url, key=value in prose"),
        ("GET /appointments?agent=alice&from=2026-05-04",) * 2,
    ],
)  # fmt: skip
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


async def test_the_access_log_carries_no_feed_token(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        reply = await api.call("GET", "/agents/alice/calendar.ics?token=feed-alice", token=None)
        assert reply.status == 200
        await api.call("GET", "/agents/alice/calendar.ics?token=wrong-guess", token=None)
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 2
    assert all(f"calendar.ics?token={REDACTED}" in line for line in lines), lines
    assert "feed-alice" not in caplog.text and "wrong-guess" not in caplog.text


def test_every_line_of_the_service_log_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler `calhub serve` logs through redacts messages and tracebacks alike."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh process
    stream = io.StringIO()
    configure_logging(logging.INFO, stream)
    (handler,) = root.handlers
    assert any(isinstance(f, RedactSecrets) for f in handler.filters)
    log = logging.getLogger("hub.test")
    log.warning("fetch of %s failed", "https://dav.example/cal?token=s3cret&x=1")
    try:
        raise RuntimeError("GET https://idp.example/cb?code=oauth-code failed")
    except RuntimeError:
        log.exception("provider error")
    out = stream.getvalue()
    assert "s3cret" not in out and "oauth-code" not in out, out
    assert f"?token={REDACTED}&x=1" in out and f"?code={REDACTED}" in out
    root.removeHandler(handler)


# --------------------------------------------------------------------------- client faults


async def test_malformed_requests_are_one_warning_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    server = api.client.server
    with caplog.at_level(logging.DEBUG):
        for raw in MALFORMED * 3:
            answer = await _send(server.host, server.port, raw)
            assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    faults = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelno for r in faults if r.levelno > logging.DEBUG] == [logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "feed-alice" not in caplog.text
    assert "500" not in _statuses(api.metrics)


async def test_a_client_hanging_up_mid_body_is_no_500(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    server = api.client.server
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            await _send(server.host, server.port, _half_body(), hang_up=True)
        await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert _statuses(api.metrics) == {"499"}
    assert await api.store.get_agent("dave") is None


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, int, Metrics, SqliteStore]]:
    """The admin app as `calhub serve` runs it (aiohttp's defaults: handlers not cancelled
    when the client hangs up), on a free port."""
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    metrics = Metrics()
    config = Config(admin=AdminSettings(token=TOKEN))
    runner = web.AppRunner(build_app(store, config, metrics, None), **server_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield host, port, metrics, store
    finally:
        await runner.cleanup()
        await store.close()


async def test_a_hang_up_in_the_service_is_one_warning_line(
    served: tuple[str, int, Metrics, SqliteStore], caplog: pytest.LogCaptureFixture
) -> None:
    host, port, metrics, _ = served
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            await _send(host, port, _half_body(), hang_up=True)
        await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) <= 1
    assert "500" not in _statuses(metrics)


def test_client_fault_lines_are_rate_limited_and_count_what_they_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = ProtocolLog(logging.getLogger("hub.test.protocol"), interval=60, clock=lambda: now[0])
    fault = BadHttpMessage("Invalid header")
    with caplog.at_level(logging.DEBUG, logger="hub.test.protocol"):
        for _ in range(5):
            log.exception("Error handling request from %s", "10.0.0.1", exc_info=fault)
        now[0] = 61.0
        log.exception("Error handling request from %s", "10.0.0.1", exc_info=fault)
        log.exception("Unhandled exception", exc_info=RuntimeError("a real bug"))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines[0][0] == lines[1][0] == logging.WARNING
    assert "(4 more since the last such line)" in lines[1][1]
    assert lines[2] == (logging.ERROR, "Unhandled exception")  # a bug is still an error
    assert len(lines) == 3


async def test_a_stored_error_is_served_redacted(api: Api) -> None:
    from hub.model import CalendarState

    error = "PROPFIND https://dav.example/cal/?token=s3cret: 503"
    async with api.store.transaction("sync:o365") as tx:
        await tx.put_calendar_state(CalendarState("alice", "o365", last_error=error))
    status = await api.call("GET", "/agents/alice/status")
    assert status.status == 200, status.text
    assert status.json["calendar"]["last_error"] == (
        f"PROPFIND https://dav.example/cal/?token={REDACTED}: 503"
    )
