"""The command line against Radicale: `calhub sync` and `calhub check` as a cron job runs them,
each a separate process with the password in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import icalendar

from hub.model import Agent, Appointment, Kind, Request
from hub.store.sqlite import SqliteStore
from tests.caldav.servers import USERS, DavServer, Phone


def write_config(tmp: Path, url: str, calendar: str) -> Path:
    config = tmp / "calhub.toml"
    config.write_text(
        f'[hub]\ndatabase = "{tmp / "hub.db"}"\n\n'
        f'[accounts.dav]\nprovider = "caldav"\nurl = "{url}"\nusername = "alice"\n'
        'password_env = "CALHUB_TEST_DAV_PASSWORD"\n\n'
        f'[[agents]]\nid = "alice"\nname = "Alice"\naccount = "dav"\ncalendar = "{calendar}"\n'
    )
    return config


def calhub(config: Path, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALHUB_TEST_DAV_PASSWORD": password, "CALHUB_PLUGINS": "caldav"}
    return subprocess.run(
        [sys.executable, "-m", "hub", *args, "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


async def add_appointment(db: Path, start: datetime) -> str:
    async with SqliteStore(db) as store, store.transaction("api") as tx:
        await tx.put_agent(Agent(id="alice", name="Alice", account="dav"))
        await tx.put_request(Request(id="R7", subject="Printer jam"))
        appt = Appointment(
            id="appt-cli", agent_id="alice", kind=Kind.PLANNED, start=start,
            end=start + timedelta(hours=1), request_id="R7",
        )  # fmt: skip
        await tx.put_appointment(appt)
    return appt.id


async def test_calhub_sync_pushes_and_a_refused_password_fails_naming_the_agent(
    tmp_path: Path, radicale_server: DavServer, radicale_collection: str
) -> None:
    config = write_config(tmp_path, radicale_server.url, urlsplit(radicale_collection).path)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    appt_id = await add_appointment(tmp_path / "hub.db", start)

    done = calhub(config, USERS["alice"], "sync")
    assert done.returncode == 0, done.stderr

    phone = Phone(radicale_server, "alice", radicale_collection)
    status, raw, _ = await phone.send("GET", radicale_collection + f"{appt_id}.ics")
    assert status == 200
    event = icalendar.Calendar.from_ical(raw).walk("VEVENT")[0]
    assert str(event["X-CALHUB-ID"]) == appt_id
    assert str(event["SUMMARY"]) == "[#R7] Printer jam"
    assert event.decoded("DTSTART") == start

    refused = calhub(config, "wrong", "sync")
    assert refused.returncode == 1
    assert refused.stderr.startswith("alice: ")
    assert "401" in refused.stderr and "Traceback" not in refused.stderr

    checked = calhub(config, USERS["alice"], "check", "dav", "--write")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "write alice" in checked.stdout
