"""Real CalDAV servers for the tests: Radicale and Xandikos, each a subprocess on a free
loopback port with a temporary storage folder, plus an "agent's phone" that edits them directly.

Servers are started once per test session (starting one costs about a second); every test
gets its own fresh calendar collection, so tests never see each other's events.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import icalendar

from hub.spec import CalendarRef, EventData, as_utc

USERS = {"alice": "secret-a", "bob": "secret-b", "carol": "secret-c", "calhub": "secret-h"}

# The rights docs/caldav.md gives for a shared service account: every user owns their own
# collections, and "calhub" reads and writes the events of alice's and bob's helpdesk calendars.
RIGHTS = """\
[owner]
user: .+
collection: {user}(/.*)?
permissions: RrWw

[calhub]
user: calhub
collection: (alice|bob)/helpdesk
permissions: rw

[root]
user: .+
collection:
permissions: R
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text()[-2000:]}")


@dataclass
class DavServer:
    """A running server: its root URL, storage folder and how to log in."""

    name: str
    url: str
    storage: Path
    proc: subprocess.Popen[bytes]
    auth: bool  # whether it checks Basic credentials

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def radicale(tmp: Path) -> Iterator[DavServer]:
    """Radicale with htpasswd (plain) users :data:`USERS`, each owning /<user>/, and the
    service account rights of :data:`RIGHTS`."""
    users = tmp / "users"
    users.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    rights = tmp / "rights"
    rights.write_text(RIGHTS)
    port = free_port()
    cmd = [
        sys.executable, "-m", "radicale",
        "--server-hosts", f"127.0.0.1:{port}",
        "--storage-filesystem-folder", str(tmp / "storage"),
        "--auth-type", "htpasswd",
        "--auth-htpasswd-filename", str(users),
        "--auth-htpasswd-encryption", "plain",
        "--auth-delay", "0",
        "--rights-type", "from_file",
        "--rights-file", str(rights),
        "--logging-level", "warning",
    ]  # fmt: skip
    with _serve("radicale", cmd, tmp, port, auth=True) as server:
        yield server


@contextlib.contextmanager
def xandikos(tmp: Path) -> Iterator[DavServer]:
    """Xandikos (no authentication: it leaves that to a reverse proxy) with its defaults."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "xandikos", "serve", "--defaults",
        "-d", str(tmp / "storage"), "-l", "127.0.0.1", "-p", str(port),
        "--state-dir", str(tmp / "state"), "--no-detect-systemd",
    ]  # fmt: skip
    with _serve("xandikos", cmd, tmp, port, auth=False) as server:
        yield server


@contextlib.contextmanager
def _serve(name: str, cmd: list[str], tmp: Path, port: int, *, auth: bool) -> Iterator[DavServer]:
    """Run the server ``cmd`` (listening on ``port``, logging to ``<name>.log``) for the block."""
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(tmp))
    server = DavServer(name, f"http://127.0.0.1:{port}/", tmp / "storage", proc, auth)
    try:
        _wait_for_port(port, proc, log)
        yield server
    finally:
        server.stop()


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(tmp)  # keep both servers away from the developer's own config
    env["XDG_DATA_HOME"] = str(tmp / "xdg")
    return env


# --------------------------------------------------------------------------- the agent's phone


def phone_ical(data: EventData, uid: str, hub_id: str | None = None) -> bytes:
    """A VEVENT as a phone would write it (independent of the provider's own writer)."""
    cal = icalendar.Calendar()
    cal.add("VERSION", "2.0")
    cal.add("PRODID", "-//test phone//EN")
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", datetime.now(UTC))
    event.add("LAST-MODIFIED", datetime.now(UTC))
    if hub_id:
        event.add("X-CALHUB-ID", hub_id)
    if data.all_day:
        event.add("DTSTART", data.start)
        event.add("DTEND", data.end)
    else:
        event.add("DTSTART", as_utc(data.start))  # type: ignore[arg-type]
        event.add("DTEND", as_utc(data.end))  # type: ignore[arg-type]
    event.add("SUMMARY", data.subject)
    if data.body:
        event.add("DESCRIPTION", data.body)
    if data.location:
        event.add("LOCATION", data.location)
    if data.private:
        event.add("CLASS", "PRIVATE")
    cal.add_component(event)
    return cal.to_ical()


_XML = {"Content-Type": "application/xml"}
_RENAME = (
    b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>'
    b"<d:displayname>renamed</d:displayname></d:prop></d:set></d:propertyupdate>"
)


class Phone:
    """Edits "by the agent", straight at the server (the conformance suite's backdoor)."""

    def __init__(self, server: DavServer, user: str, collection_url: str) -> None:
        self.server = server
        self.collection_url = collection_url
        self._headers: dict[str, str] = {}
        if server.auth:
            self._headers["Authorization"] = aiohttp.encode_basic_auth(user, USERS[user])

    async def send(
        self, method: str, url: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, bytes, dict[str, str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, data=body, headers={**self._headers, **headers}) as resp,
        ):
            return resp.status, await resp.read(), dict(resp.headers)

    def url_of(self, remote_id: str) -> str:
        return urljoin(self.collection_url, remote_id.partition("#")[0])

    async def put(self, name: str, raw: bytes) -> str:
        url = urljoin(self.collection_url, name)
        status, body, _ = await self.send("PUT", url, raw, **{"Content-Type": "text/calendar"})
        assert status in (200, 201, 204), (status, body[:300])
        return "/" + url.split("/", 3)[3]

    async def create_external(self, cal: CalendarRef, data: EventData) -> str:
        uid = f"ext-{uuid.uuid4().hex}"
        return await self.put(f"{uid}.ics", phone_ical(data, uid))

    async def create_unreadable(self, cal: CalendarRef, start: datetime) -> str:
        """An event the server stores but calhub cannot read: it ends before it starts."""
        uid = f"bad-{uuid.uuid4().hex}"
        fmt = "%Y%m%dT%H%M%SZ"
        raw = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//phone//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:{start.strftime(fmt)}\r\nDTSTART:{start.strftime(fmt)}\r\n"
            f"DTEND:{(start - timedelta(minutes=30)).strftime(fmt)}\r\nSUMMARY:Backwards\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        return await self.put(f"{uid}.ics", raw.encode())

    async def edit(self, cal: CalendarRef, remote_id: str, data: EventData) -> None:
        status, raw, _ = await self.send("GET", self.url_of(remote_id))
        assert status == 200, status
        old = icalendar.Calendar.from_ical(raw).walk("VEVENT")[0]
        hub_id = old.get("X-CALHUB-ID")
        name = remote_id.rsplit("/", 1)[1]
        await self.put(name, phone_ical(data, str(old["UID"]), str(hub_id) if hub_id else None))

    async def delete(self, cal: CalendarRef, remote_id: str) -> None:
        status, _, _ = await self.send("DELETE", self.url_of(remote_id))
        assert status in (200, 204), status

    async def expire_cursor(self, cal: CalendarRef) -> None:
        if self.server.name != "radicale":
            # Xandikos's tokens are git commits: they never expire.
            raise NotImplementedError
        # Radicale keeps the state behind each sync-token it handed out in this cache; without
        # it every earlier token is refused with DAV:valid-sync-token. A token equal to the
        # current state needs no cache, so first move the state on (an event made and deleted
        # leaves a history entry) without changing what the calendar holds.
        now = datetime.now(UTC)
        temp = await self.put("expire.ics", phone_ical(EventData("x", now, now), "expire"))
        await self.delete(cal, temp)
        # The provider presents its token only when the collection's ctag moved (Radicale's
        # covers the events and the collection's properties): rename the calendar for that.
        status, body, _ = await self.send("PROPPATCH", self.collection_url, _RENAME, **_XML)
        assert status == 207, (status, body[:300])
        path = self.collection_url.split("/", 3)[3]
        cache = self.server.storage / "collection-root" / path / ".Radicale.cache" / "sync-token"
        shutil.rmtree(cache, ignore_errors=True)


async def make_calendar(server: DavServer, user: str, name: str | None = None) -> str:
    """MKCALENDAR a fresh collection for ``user``; returns its URL."""
    name = name or f"cal-{uuid.uuid4().hex[:12]}"
    if server.name == "radicale":
        url = urljoin(server.url, f"/{user}/{name}/")
    else:
        url = urljoin(server.url, f"/user/calendars/{name}/")
    phone = Phone(server, user, url)
    status, body, _ = await phone.send("MKCALENDAR", url)
    assert status == 201, (status, body[:300])
    return url
