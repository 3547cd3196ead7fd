"""exchange_ews beyond the conformance suite: TLS trust, named calendars, what Outlook writes
(Windows time zones, all-day items, HTML bodies), mailbox errors, the version probe, and the
event loop staying free while EWS holds a call open."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from hub.spec import (
    AuthError,
    CalendarRef,
    EventData,
    PushItem,
    TransientError,
    Window,
    account_config,
)
from plugins.exchange_ews import EwsProvider
from tests.core.admin_support import running_api
from tests.ews.conftest import account_for
from tests.ews.helpers import MAILBOXES
from tests.fakes.ews import EwsFake

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60))


async def test_an_untrusted_certificate_names_the_ca_problem(
    fake: EwsFake, cal: CalendarRef
) -> None:
    async with EwsProvider(account_for(fake, ca_file=None)) as untrusting:
        with pytest.raises(AuthError) as caught:
            await untrusting.fetch(cal, WINDOW, None)
    assert "not trusted" in caught.value.message and "ca_file" in caught.value.message
    assert caught.value.mailbox is None  # the whole account needs attention, not one agent


# urllib3 warns on every unverified request; the administrator asked for exactly that.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_verify_tls_off_connects_without_the_ca(fake: EwsFake, cal: CalendarRef) -> None:
    async with EwsProvider(account_for(fake, ca_file=None, verify_tls=False)) as lax:
        assert (await lax.fetch(cal, WINDOW, None)).full


async def test_a_named_calendar_is_a_folder_under_the_default_one(
    provider: EwsProvider, fake: EwsFake
) -> None:
    visits = CalendarRef("alice", MAILBOXES[0], "Field visits")
    data = EventData("Printer", NOW + timedelta(hours=2), NOW + timedelta(hours=3))
    created = await provider.push_one(visits, PushItem("hub-visit", data))
    assert [i.id for i in fake.items(MAILBOXES[0], "Field visits")] == [created.remote_id]
    assert fake.items(MAILBOXES[0]) == []
    listed = await provider.fetch(visits, WINDOW, None)
    assert [e.hub_id for e in listed.changed] == ["hub-visit"]
    missing = CalendarRef("alice", MAILBOXES[0], "No such folder")
    with pytest.raises(Exception, match="ErrorFolderNotFound"):
        await provider.fetch(missing, WINDOW, None)


async def test_outlook_items_read_in_their_windows_time_zone(
    provider: EwsProvider, fake: EwsFake, cal: CalendarRef
) -> None:
    day = (NOW + timedelta(days=3)).date()
    berlin = datetime(day.year, day.month, day.day, 9, tzinfo=UTC) - timedelta(hours=1)
    timed = fake.owner_create(
        MAILBOXES[0], "Call", berlin, berlin + timedelta(hours=1), tz="W. Europe Standard Time"
    )
    all_day = fake.owner_create(
        MAILBOXES[0], "Offsite", day, day + timedelta(days=1), tz="Eastern Standard Time"
    )
    html = fake.owner_create(
        MAILBOXES[0], "Notes", NOW + timedelta(hours=1), NOW + timedelta(hours=2),
        body="bring &amp; return the <b>badge</b>", html=True,
    )  # fmt: skip
    got = {e.remote_id: e for e in (await provider.fetch(cal, WINDOW, None)).changed}
    assert got[timed].data.start == berlin and got[timed].data.timezone == "Europe/Berlin"
    # Midnight in New York is 05:00Z: read in the item's own zone, the dates stay the dates.
    assert (got[all_day].data.start, got[all_day].data.end) == (day, day + timedelta(days=1))
    assert type(got[all_day].data.start) is date
    assert got[html].data.body == "bring & return the badge"


async def test_an_all_day_item_is_written_midnight_to_midnight(
    provider: EwsProvider, fake: EwsFake, cal: CalendarRef
) -> None:
    day = (NOW + timedelta(days=5)).date()
    data = EventData("Training", day, day + timedelta(days=2))
    await provider.push_one(cal, PushItem("hub-training", data))
    (item,) = fake.items(MAILBOXES[0])
    assert item.all_day
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert (item.start, item.end) == (midnight, midnight + timedelta(days=2))


async def test_an_unknown_mailbox_needs_attention_for_that_agent(provider: EwsProvider) -> None:
    ghost = CalendarRef("ghost", "ghost@contoso.example")
    with pytest.raises(AuthError) as caught:
        await provider.fetch(ghost, WINDOW, None)
    assert "ErrorNonExistentMailbox" in caught.value.message
    assert caught.value.mailbox == "ghost@contoso.example"


async def test_without_a_pinned_version_the_probe_runs_once(
    fake: EwsFake, cal: CalendarRef
) -> None:
    async with EwsProvider(account_for(fake, version="")) as guessing:
        first = await guessing.fetch(cal, WINDOW, None)
        await guessing.fetch(cal, WINDOW, first.cursor)
        await guessing.fetch(cal, WINDOW, first.cursor)
    assert fake.ops[("", "ConvertId")] == 1


def test_bad_options_are_refused_when_the_config_loads(fake: EwsFake) -> None:
    options = {**fake.account_options(), "auth": "kerberos", "version": "Exchange2003"}
    options |= {"max_threads": 64, "url": "mail.contoso.com"}
    with pytest.raises(ValueError) as caught:
        account_config(EwsProvider, "onprem", options)
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "accounts.onprem.url", "accounts.onprem.auth", "accounts.onprem.version",
        "accounts.onprem.max_threads",
    ]  # fmt: skip
    assert "'kerberos' is not one of ntlm, basic" in lines[1]
    assert account_config(EwsProvider, "onprem", fake.account_options()).options["auth"] == "ntlm"


async def test_the_admin_api_answers_while_an_ews_call_is_held_open(
    tmp_path: Path, fake: EwsFake, cal: CalendarRef
) -> None:
    # A short timeout: if EWS ran on the event loop, the fake (on the same loop) could not
    # even receive the request, and the fetch would fail instead of being held.
    async with EwsProvider(account_for(fake, timeout=5)) as provider:
        await provider.fetch(cal, WINDOW, None)  # connect, resolve the folder
        fake.hold("SyncFolderItems")
        results = []
        async with running_api(tmp_path / "admin.db") as api, anyio.create_task_group() as tg:

            async def fetch() -> None:
                results.append(await provider.fetch(cal, WINDOW, None))

            tg.start_soon(fetch)
            with anyio.fail_after(4):
                await fake.held.wait()
            health = await api.call("GET", "/health", token=None)
            agents = await api.call("GET", "/agents")
            assert (health.status, agents.status) == (200, 200)
            assert not results  # the EWS call is still open
            fake.release()
    assert results and results[0].full


async def test_a_full_listing_is_one_sync_one_calendar_view_and_chunked_get_items(
    provider: EwsProvider, fake: EwsFake, cal: CalendarRef
) -> None:
    for h in range(60):
        fake.owner_create(
            MAILBOXES[0], f"E{h}", NOW + timedelta(hours=h), NOW + timedelta(hours=h, minutes=30)
        )
    listed = await provider.fetch(cal, WINDOW, None)
    assert len(listed.changed) == 60
    ops = {op: n for (mb, op), n in fake.ops.items() if mb == MAILBOXES[0]}
    # GetFolder once per agent (then cached); GetItem in chunks of 50.
    assert ops == {"GetFolder": 1, "SyncFolderItems": 1, "FindItem": 1, "GetItem": 2}


async def test_telemetry_hears_each_call_with_the_hubs_outcome_vocabulary(
    fake: EwsFake, cal: CalendarRef
) -> None:
    heard: list[tuple[str, str, str]] = []

    class Recorder:
        def request(self, account: str, operation: str, status: str, seconds: float) -> None:
            heard.append((account, operation, str(status)))

    async with EwsProvider(account_for(fake), Recorder()) as provider:
        first = await provider.fetch(cal, WINDOW, None)
        fake.busy(MAILBOXES[0], 1, back_off_ms=1000)
        with pytest.raises(TransientError):
            await provider.fetch(cal, WINDOW, first.cursor)
    assert ("onprem", "sync", "ok") in heard and ("onprem", "find", "ok") in heard
    assert heard[-1] == ("onprem", "sync", "throttled")


async def test_no_more_ews_calls_at_once_than_max_threads(fake: EwsFake) -> None:
    # EWS throttles concurrent connections per service account (EWSMaxConcurrency). The
    # account's CapacityLimiter keeps calhub's worker threads under max_threads (the session
    # pool alone would also cap the connections, but with every other thread parked in it).
    fake.latency = 0.05
    cals = [CalendarRef(f"a{n}", f"agent{n}@contoso.example") for n in range(6)]
    for c in cals:
        fake.add_mailbox(c.mailbox)
    inside, peak, lock = 0, 0, threading.Lock()
    async with EwsProvider(account_for(fake, max_threads=2)) as provider:
        sync = provider.adapter.sync

        def counted(*args: Any) -> Any:
            nonlocal inside, peak
            with lock:
                inside += 1
                peak = max(peak, inside)
            try:
                return sync(*args)
            finally:
                with lock:
                    inside -= 1

        provider.adapter.sync = counted  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            for c in cals:
                tg.start_soon(provider.fetch, c, WINDOW, None)
    assert peak == 2
    assert fake.peak_in_flight == 2
