"""Transport and error mapping against Radicale behind the proxy: TLS with a private CA,
bearer tokens, Basic auth refusals, and faults (5xx, 429 with Retry-After, bad data)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from hub.spec import (
    AuthError,
    CalendarRef,
    EventData,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    PushItem,
    TransientError,
    Window,
)
from plugins.caldav.provider import CalDAVProvider
from tests.caldav.conftest import account, basic, cal_for
from tests.caldav.proxy import DavProxy, Fault
from tests.caldav.servers import DavServer, Phone, make_calendar, phone_ical

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60))


def event(subject: str = "Visit") -> EventData:
    return EventData(subject, NOW + timedelta(days=1), NOW + timedelta(days=1, hours=1))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_proxy(radicale_server: DavServer, ca: trustme.CA) -> AsyncIterator[DavProxy]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    proxy = DavProxy(radicale_server.url)
    await proxy.start(ssl_context=context)
    yield proxy
    await proxy.stop()


async def test_tls_with_the_servers_ca_in_ca_file(
    tls_proxy: DavProxy, ca: trustme.CA, radicale_collection: str, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    assert tls_proxy.url.startswith("https://")
    async with CalDAVProvider(account(tls_proxy.url, ca_file=str(ca_file))) as provider:
        cal = cal_for(radicale_collection)
        created = await provider.push_one(cal, PushItem("tls-1", event()))
        listed = await provider.fetch(cal, WINDOW, None)
        assert [e.remote_id for e in listed.changed] == [created.remote_id]


async def test_tls_without_the_ca_is_refused_with_a_hint(
    tls_proxy: DavProxy, radicale_collection: str
) -> None:
    async with CalDAVProvider(account(tls_proxy.url)) as provider:
        with pytest.raises(AuthError, match="ca_file"):
            await provider.fetch(cal_for(radicale_collection), WINDOW, None)


async def test_a_bearer_token_is_sent_and_a_wrong_one_refused(
    radicale_server: DavServer, radicale_collection: str
) -> None:
    proxy = DavProxy(radicale_server.url, upstream_auth=basic("alice"), bearer="tok-123")
    await proxy.start()
    try:
        good = account(proxy.url, username=None, password=None, token="tok-123")
        assert "password" not in good.options
        async with CalDAVProvider(good) as provider:
            # discovery too: current-user-principal -> calendar-home-set -> the calendar
            found = await provider.discovery.principal()
            assert found.endswith("/alice/")
            cal = cal_for(radicale_collection)
            await provider.push_one(cal, PushItem("bearer-1", event()))
            assert len((await provider.fetch(cal, WINDOW, None)).changed) == 1
        bad = account(proxy.url, username=None, password=None, token="stolen")
        async with CalDAVProvider(bad) as provider:
            with pytest.raises(AuthError, match="401"):
                await provider.fetch(cal_for(radicale_collection), WINDOW, None)
    finally:
        await proxy.stop()


async def test_a_wrong_password_is_an_auth_error(
    radicale_proxy: DavProxy, radicale_collection: str
) -> None:
    async with CalDAVProvider(account(radicale_proxy.url, password="nope")) as provider:
        with pytest.raises(AuthError):
            await provider.fetch(cal_for(radicale_collection), WINDOW, None)


async def test_another_users_calendar_is_an_auth_error(
    radicale_proxy: DavProxy, radicale_server: DavServer
) -> None:
    bobs = await make_calendar(radicale_server, "bob")
    async with CalDAVProvider(account(radicale_proxy.url)) as provider:
        with pytest.raises(AuthError, match="403"):
            await provider.fetch(cal_for(bobs), WINDOW, None)


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        (Fault(503, headers={"Retry-After": "7"}), 7.0),
        (Fault(429, headers={"Retry-After": "120"}), 120.0),
        (Fault(500), None),
        (Fault(502), None),
    ],
)
async def test_server_faults_are_transient_with_retry_after(
    dav: CalDAVProvider,
    radicale_proxy: DavProxy,
    radicale_collection: str,
    fault: Fault,
    retry_after: float | None,
) -> None:
    radicale_proxy.faults.append(fault)
    with pytest.raises(TransientError) as caught:
        await dav.fetch(cal_for(radicale_collection), WINDOW, None)
    assert caught.value.retry_after == retry_after
    # the fault was one response: the next call goes through
    assert (await dav.fetch(cal_for(radicale_collection), WINDOW, None)).full


async def test_put_outcomes_are_per_item_errors(
    dav: CalDAVProvider, radicale_proxy: DavProxy, radicale_collection: str
) -> None:
    cal = cal_for(radicale_collection)
    radicale_proxy.faults.append(Fault(400, method="PUT"))
    (outcome,) = await dav.push(cal, [PushItem("bad-1", event())])
    assert isinstance(outcome, PermanentError) and outcome.item == "bad-1"
    radicale_proxy.faults.append(Fault(503, method="PUT", headers={"Retry-After": "3"}))
    (outcome,) = await dav.push(cal, [PushItem("busy-1", event())])
    assert isinstance(outcome, TransientError) and outcome.retry_after == 3.0
    radicale_proxy.faults.append(Fault(401, method="PUT"))
    with pytest.raises(AuthError):  # the whole account, not one item
        await dav.push(cal, [PushItem("auth-1", event())])


async def test_a_create_that_meets_a_strangers_resource_is_a_precondition_failure(
    dav: CalDAVProvider, phone: Phone, radicale_collection: str
) -> None:
    await phone.put("taken.ics", phone_ical(event("Someone else's"), "stranger"))
    (outcome,) = await dav.push(cal_for(radicale_collection), [PushItem("taken", event())])
    assert isinstance(outcome, PreconditionFailed), outcome


async def test_a_missing_calendar_is_not_found(dav: CalDAVProvider) -> None:
    cal = CalendarRef("alice", "alice@example.com", "/alice/no-such-calendar/")
    with pytest.raises(NotFoundError):
        await dav.fetch(cal, WINDOW, None)
