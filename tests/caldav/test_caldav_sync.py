"""End to end: the real sync engine (AgentSync) and SqliteStore against a real Radicale.

The agent's phone is played by direct HTTP requests to Radicale (:class:`Phone`); the hub side
by writes to the store. Each test has its own calendar collection and hub database.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

from hub.config import HubSettings
from hub.model import Agent, Appointment, Kind, PassResult, RemoteDelete
from hub.spec import PRIVATE_SUBJECT, CalendarRef, EventData
from hub.store.sqlite import SqliteStore
from plugins.caldav.provider import CalDAVProvider
from tests.caldav.conftest import account, cal_for
from tests.caldav.proxy import DavProxy, Fault
from tests.caldav.servers import DavServer, Phone, make_calendar, phone_ical
from tests.engine_support import book, hour, run_pass

ACCOUNT = "dav"


@dataclass
class Hub:
    """One agent (alice) of a hub database, synced with her Radicale calendar."""

    store: SqliteStore
    provider: CalDAVProvider
    agent: Agent
    phone: Phone
    db_path: Path
    settings: HubSettings = field(default_factory=HubSettings)
    sleeps: list[float] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def agent_calendar(self) -> CalendarRef:
        return cal_for(self.phone.collection_url)

    def path(self, name: str) -> str:
        """The remote id (decoded path) of a resource of alice's calendar."""
        return cal_for(self.phone.collection_url).calendar + name

    async def sync(self, **settings: Any) -> PassResult:
        result = await run_pass(
            self.store,
            self.provider,
            ACCOUNT,
            self.settings,
            self.agent,
            self.sleeps,
            **settings,
        )
        assert result.result == "ok", result.error
        return result

    async def add(self, start: datetime, subject: str = "Visit", **extra: Any) -> Appointment:
        return await book(self.store, next(self._ids), "alice", start, subject, **extra)

    async def appointments(self) -> dict[str, Appointment]:
        return {a.id: a for a in await self.store.list_appointments(agent_id="alice")}

    async def server_events(self) -> dict[str, icalendar.Event]:
        """The server's resources as the phone sees them, by resource name."""
        status, body, _ = await self.phone.send(
            "PROPFIND", self.phone.collection_url, b"", Depth="1"
        )
        assert status == 207
        names = [
            part.split("<", 1)[0].rsplit("/", 1)[1]
            for part in body.decode().split("href>")[1::2]
            if part.split("<", 1)[0].endswith(".ics")
        ]
        events = {}
        for name in names:
            status, raw, _ = await self.phone.send("GET", self.phone.collection_url + name)
            events[name] = icalendar.Calendar.from_ical(raw).walk("VEVENT")[0]
        return events


async def make_hub(tmp_path: Path, server_url: str, phone: Phone, **options: Any) -> Hub:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    provider = CalDAVProvider(account(server_url, **options))
    await provider.open()
    agent = Agent(
        id="alice", name="Alice", email="alice@example.com", account=ACCOUNT,
        calendar=cal_for(phone.collection_url).calendar,
    )  # fmt: skip
    async with store.transaction("api") as tx:
        agent = await tx.put_agent(agent)
    return Hub(store, provider, agent, phone, tmp_path / "hub.db")


@pytest.fixture
async def hub(tmp_path: Path, radicale_proxy: DavProxy, phone: Phone) -> AsyncIterator[Hub]:
    h = await make_hub(tmp_path, radicale_proxy.url, phone)
    yield h
    await h.provider.close()
    await h.store.close()


async def test_hub_appointments_appear_on_the_server(hub: Hub) -> None:
    one = await hub.add(hour(1), "Replace toner")
    two = await hub.add(hour(2), "Install laptop", note="bring the dock", private=True)

    result = await hub.sync()

    assert result.counts.get("create") == 2
    events = await hub.server_events()
    by_hub = {str(e["X-CALHUB-ID"]): e for e in events.values()}
    assert set(by_hub) == {one.id, two.id}
    assert str(by_hub[one.id]["SUMMARY"]) == "[#R1] Replace toner"  # the subject template
    assert by_hub[one.id].decoded("DTSTART") == hour(1)
    assert str(by_hub[two.id]["CLASS"]) == "PRIVATE"
    assert "ATTENDEE" not in by_hub[two.id] and "ORGANIZER" not in by_hub[two.id]


async def test_an_edit_on_the_phone_moves_the_hub_appointment(hub: Hub) -> None:
    appt = await hub.add(hour(1), "Replace toner")
    await hub.sync()
    (status,) = await hub.store.list_status("alice", ACCOUNT)
    assert status.remote_id is not None

    await hub.phone.edit(
        hub.agent_calendar(), status.remote_id,
        EventData("Replace toner", hour(3, 14), hour(3, 15)),
    )  # fmt: skip
    await hub.sync()

    moved = (await hub.appointments())[appt.id]
    assert (moved.start, moved.end) == (hour(3, 14), hour(3, 15))
    # and the pass after that has nothing left to do
    assert (await hub.sync()).counts == {}


async def test_a_delete_on_the_phone_deletes_the_hub_appointment(hub: Hub) -> None:
    appt = await hub.add(hour(1))
    await hub.sync()
    (status,) = await hub.store.list_status("alice", ACCOUNT)
    assert status.remote_id is not None

    await hub.phone.delete(hub.agent_calendar(), status.remote_id)
    await hub.sync()

    assert appt.id not in await hub.appointments()


async def test_a_delete_in_the_hub_deletes_the_event_on_the_server(hub: Hub) -> None:
    keep = await hub.add(hour(1), "Keep")
    gone = await hub.add(hour(2), "Cancelled")
    await hub.sync()
    async with hub.store.transaction("api") as tx:
        await tx.delete_appointment(gone.id)

    await hub.sync()

    remaining = {str(e["X-CALHUB-ID"]) for e in (await hub.server_events()).values()}
    assert remaining == {keep.id}


async def test_a_private_external_event_is_busy_time_and_its_content_is_not_stored(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Oncology appointment Zq7x"
    await hub.phone.create_external(
        hub.agent_calendar(),
        EventData(secret, hour(2), hour(3), body="room 12 Kp3v", location="St Elsewhere W9r",
                  private=True),
    )  # fmt: skip
    await hub.phone.create_external(hub.agent_calendar(), EventData("Team lunch", hour(4), hour(5)))

    await hub.sync(import_external=True)

    imported = sorted(
        (a for a in (await hub.appointments()).values() if a.kind is Kind.EXTERNAL),
        key=lambda a: a.start,
    )
    assert [a.subject for a in imported] == [PRIVATE_SUBJECT, "Team lunch"]
    assert (imported[0].note, imported[0].location) == ("", "")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(word in logged for word in ("Zq7x", "Kp3v", "W9r", "Oncology"))
    await hub.store.close()  # flush everything the store wrote
    for path in hub.db_path.parent.glob("hub.db*"):
        blob = path.read_bytes()
        for word in (b"Zq7x", b"Kp3v", b"W9r", b"Oncology"):
            assert word not in blob, f"{word!r} leaked into {path.name}"
    await hub.store.open()


async def test_a_recurring_external_event_shows_its_occurrences(hub: Hub) -> None:
    start = hour(1, 8)
    series = icalendar.Calendar.from_ical(phone_ical(EventData("Standup", start, start), "s1"))
    event = series.walk("VEVENT")[0]
    event["DTEND"] = icalendar.vDDDTypes(start + timedelta(minutes=15))
    event.add("RRULE", {"FREQ": "DAILY", "COUNT": 5})
    event.add("EXDATE", start + timedelta(days=2))
    moved = icalendar.Event()
    for key in ("UID", "DTSTAMP", "SUMMARY"):
        moved[key] = event[key]
    moved.add("RECURRENCE-ID", start + timedelta(days=1))
    moved.add("DTSTART", start + timedelta(days=1, hours=3))
    moved.add("DTEND", start + timedelta(days=1, hours=3, minutes=15))
    series.add_component(moved)
    await hub.phone.put("standup.ics", series.to_ical())

    await hub.sync(import_external=True)

    starts = sorted(a.start for a in (await hub.appointments()).values())
    assert starts == [
        start,
        start + timedelta(days=1, hours=3),  # the override
        start + timedelta(days=3),  # day 2 is an EXDATE
        start + timedelta(days=4),
    ]

    # Cancelling the series on the phone removes every occurrence from the hub.
    await hub.phone.delete(hub.agent_calendar(), hub.path("standup.ics"))
    await hub.sync(import_external=True)
    assert await hub.appointments() == {}


async def test_a_rejected_sync_token_means_a_full_resync_without_duplicates(hub: Hub) -> None:
    await hub.add(hour(1), "One")
    await hub.add(hour(2), "Two")
    await hub.phone.create_external(hub.agent_calendar(), EventData("Dentist", hour(3), hour(4)))
    await hub.sync(import_external=True)
    before_hub = await hub.appointments()
    before_server = await hub.server_events()

    await hub.phone.expire_cursor(hub.agent_calendar())
    result = await hub.sync(import_external=True)

    assert result.counts.get("full_fetch") == 1  # the token was refused, the window listed
    assert not {"create", "delete", "import"} & set(result.counts), result.counts
    state = await hub.store.get_calendar_state("alice")
    assert state is not None and any("cursor refused" in n for n in state.notices)
    assert (await hub.appointments()).keys() == before_hub.keys()
    assert (await hub.server_events()).keys() == before_server.keys()
    assert (await hub.sync(import_external=True)).counts == {}


async def test_without_sync_collection_an_etag_listing_is_used_and_reported_once(
    hub: Hub, radicale_proxy: DavProxy
) -> None:
    radicale_proxy.no_sync_collection = True
    appt = await hub.add(hour(1), "Replace toner")

    await hub.sync()
    state = await hub.store.get_calendar_state("alice")
    assert state is not None
    assert [n for n in state.notices if "sync-collection" in n], state.notices

    (status,) = await hub.store.list_status("alice", ACCOUNT)
    assert status.remote_id is not None
    await hub.phone.edit(
        hub.agent_calendar(), status.remote_id, EventData("x", hour(5, 9), hour(5, 10))
    )
    await hub.sync()
    assert (await hub.appointments())[appt.id].start == hour(5, 9)
    state = await hub.store.get_calendar_state("alice")
    assert state is not None and not [n for n in state.notices if "sync-collection" in n]

    costs = []
    for _ in range(2):
        before = radicale_proxy.requests
        assert (await hub.sync()).counts == {}
        costs.append(radicale_proxy.requests - before)
    # ctag + PROPFIND depth 1 (which confirms the ctag after the phone's edit), then the ctag
    assert costs == [2, 1]
    assert radicale_proxy.by_method["REPORT"] >= 1  # it did try, and was refused


async def test_a_busy_server_is_retried_after_its_retry_after(
    hub: Hub, radicale_proxy: DavProxy
) -> None:
    appt = await hub.add(hour(1))
    radicale_proxy.faults.append(Fault(503, headers={"Retry-After": "2"}))

    await hub.sync()

    assert 2.0 in hub.sleeps  # the engine waited what the server asked for
    events = await hub.server_events()
    assert [str(e["X-CALHUB-ID"]) for e in events.values()] == [appt.id]


@pytest.fixture
async def xhub(tmp_path: Path, xandikos_server: DavServer) -> AsyncIterator[Hub]:
    """A hub whose agent calendar is a fresh Xandikos collection."""
    collection = await make_calendar(xandikos_server, "alice")
    h = await make_hub(tmp_path, xandikos_server.url, Phone(xandikos_server, "alice", collection))
    yield h
    await h.provider.close()
    await h.store.close()


async def test_the_same_round_trip_against_xandikos(xhub: Hub) -> None:
    appt = await xhub.add(hour(1), "Replace toner")
    await xhub.sync()
    (status,) = await xhub.store.list_status("alice", ACCOUNT)
    assert status.remote_id is not None
    await xhub.phone.edit(xhub.agent_calendar(), status.remote_id, EventData("x", hour(2), hour(3)))
    await xhub.sync()
    assert (await xhub.appointments())[appt.id].start == hour(2)
    await xhub.phone.delete(xhub.agent_calendar(), status.remote_id)
    await xhub.sync()
    assert appt.id not in await xhub.appointments()


async def test_xandikos_a_phone_delete_of_what_the_hub_just_wrote_is_seen(xhub: Hub) -> None:
    # Xandikos's sync-token and ctag name the content (a git tree): deleting the event the
    # hub created brings back the very token of the hub's cursor, and the REPORT from it is
    # empty. The provider looks again at what it wrote.
    await xhub.sync()
    appt = await xhub.add(hour(1), "Replace toner")
    await xhub.sync()
    (status,) = await xhub.store.list_status("alice", ACCOUNT)
    assert status.remote_id is not None
    await xhub.phone.delete(xhub.agent_calendar(), status.remote_id)
    await xhub.sync()
    assert appt.id not in await xhub.appointments()


@pytest.mark.parametrize(
    ("phone_edit_at", "winner"), [(timedelta(minutes=1), "remote"), (timedelta(minutes=-10), "hub")]
)
async def test_both_sides_edited_the_newest_edit_wins_and_the_conflict_is_recorded(
    hub: Hub, phone_edit_at: timedelta, winner: str
) -> None:
    appt = await hub.add(hour(1), "Replace toner")
    await hub.sync()
    (status,) = await hub.store.list_status("alice", ACCOUNT)
    assert status.remote_id is not None
    current = (await hub.appointments())[appt.id]
    async with hub.store.transaction("api") as tx:
        await tx.put_appointment(current.evolve(start=hour(4), end=hour(5)))
    # The agent moves it on the phone, a minute after the hub's edit or (a phone that was
    # offline) ten minutes before it: LAST-MODIFIED says which edit is the newest.
    moved = icalendar.Calendar.from_ical(
        phone_ical(EventData("x", hour(6), hour(7)), f"{appt.id}@calhub", appt.id)
    )
    vevent = moved.walk("VEVENT")[0]
    vevent["LAST-MODIFIED"] = icalendar.vDDDTypes(datetime.now(UTC) + phone_edit_at)
    await hub.phone.put(status.remote_id.rsplit("/", 1)[1], moved.to_ical())

    await hub.sync()

    expected = hour(6) if winner == "remote" else hour(4)
    assert (await hub.appointments())[appt.id].start == expected
    (conflict,) = await hub.store.list_conflicts(agent_id="alice")
    assert (conflict.appointment_id, conflict.winner) == (appt.id, winner)
    event = next(iter((await hub.server_events()).values()))
    assert event.decoded("DTSTART") == expected


async def test_with_remote_delete_restore_a_phone_delete_is_undone(hub: Hub) -> None:
    appt = await hub.add(hour(1), "Keep me")
    await hub.sync()
    (status,) = await hub.store.list_status("alice", ACCOUNT)
    assert status.remote_id is not None

    await hub.phone.delete(hub.agent_calendar(), status.remote_id)
    await hub.sync(remote_delete=RemoteDelete.RESTORE)

    assert appt.id in await hub.appointments()
    events = await hub.server_events()
    assert [str(e["X-CALHUB-ID"]) for e in events.values()] == [appt.id]
    assert [status.remote_id.rsplit("/", 1)[1]] == list(events)  # the same resource name
