"""App-only auth for real against the fake's token endpoint, and where tokens may go."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trustme

from hub.spec import AuthError, CalendarRef, CursorInvalid, PermanentError
from plugins.graph365 import GraphProvider
from tests.fakes.graph import GraphFake
from tests.fakes.tls import TestCA
from tests.graph.conftest import MAILBOXES, account_for
from tests.graph.helpers import WINDOW, owner_creates

MAILBOX = MAILBOXES[0]


async def test_the_secret_credential_gets_its_token_over_tls_and_every_call_carries_it(
    provider: GraphProvider, fake: GraphFake, cal: CalendarRef
) -> None:
    await provider.fetch(cal, WINDOW, None)
    await provider.find(cal, ["h1"])
    assert fake.requests["token"] == 1  # cached between calls
    assert fake.auth_headers_seen and all(h.startswith("Bearer ") for h in fake.auth_headers_seen)


async def test_a_certificate_credential_signs_its_assertion(
    ca: TestCA, tmp_path: Path, cal: CalendarRef
) -> None:
    app = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "calhub-app", key_type=trustme.KeyType.RSA
    )
    pem = tmp_path / "app.pem"
    app.private_key_and_cert_chain_pem.write_to_path(str(pem))
    async with GraphFake(ca, certificate_pem=app.cert_chain_pems[0].bytes()) as fake:
        fake.add_mailbox(cal.mailbox)
        account = account_for(fake, client_secret=None, certificate_file=str(pem))
        async with GraphProvider(account) as prov:
            result = await prov.fetch(cal, WINDOW, None)
    assert result.full and result.cursor


async def test_a_wrong_secret_is_an_auth_error_naming_entra_ids_reason(
    fake: GraphFake, cal: CalendarRef
) -> None:
    async with GraphProvider(account_for(fake, client_secret="nope")) as prov:
        with pytest.raises(AuthError, match="AADSTS7000215"):
            await prov.fetch(cal, WINDOW, None)


async def test_a_token_for_another_audience_is_refused(fake: GraphFake, cal: CalendarRef) -> None:
    account = account_for(fake, scope="https://management.azure.com/.default")
    async with GraphProvider(account) as prov:
        with pytest.raises(AuthError, match="Invalid audience"):
            await prov.fetch(cal, WINDOW, None)


@pytest.fixture
async def elsewhere(ca: TestCA) -> AsyncIterator[GraphFake]:
    """Another server, as a tampered link would name it."""
    async with GraphFake(ca) as other:
        yield other


async def test_a_next_link_to_another_host_is_not_followed(
    provider: GraphProvider, fake: GraphFake, elsewhere: GraphFake, cal: CalendarRef
) -> None:
    owner_creates(fake, cal.mailbox, 60)  # more than one page (page_size 50)
    fake.link_base = f"https://localhost:{elsewhere.port}"
    with pytest.raises(PermanentError, match="nextLink points off base_url"):
        await provider.fetch(cal, WINDOW, None)
    assert sum(elsewhere.requests.values()) == 0 and elsewhere.auth_headers_seen == []


async def test_same_host_other_port_is_another_origin(
    provider: GraphProvider, fake: GraphFake
) -> None:
    # kiota's allowed-hosts check compares host names only; calhub compares origins.
    http = provider.http
    assert http.check_link(f"{fake.base_url}/users/a/calendar")
    assert not http.check_link(f"https://127.0.0.1:{fake.port + 1}/v1.0/users/a/calendar")
    assert not http.check_link(f"http://127.0.0.1:{fake.port}/v1.0/users/a/calendar")
    assert not http.check_link(f"{fake.url}/beta/users/a/calendar")


async def test_a_cursor_for_another_endpoint_means_a_full_resync(
    provider: GraphProvider, cal: CalendarRef
) -> None:
    with pytest.raises(CursorInvalid):
        await provider.fetch(
            cal, WINDOW, "https://graph.example/v1.0/users/a/calendarView/delta?$deltatoken=x"
        )


async def test_missing_options_are_named(fake: GraphFake) -> None:
    with pytest.raises(PermanentError, match="tenant_id is required"):
        await GraphProvider(account_for(fake, tenant_id="")).open()
    with pytest.raises(PermanentError, match="no credential"):
        await GraphProvider(account_for(fake, client_secret=None)).open()
    with pytest.raises(PermanentError, match=r"ca_file '/nonexistent\.pem' cannot be used"):
        await GraphProvider(account_for(fake, ca_file="/nonexistent.pem")).open()
    with pytest.raises(PermanentError, match="credentials refused"):
        await GraphProvider(
            account_for(fake, client_secret=None, certificate_file="/no.pem")
        ).open()


@pytest.mark.parametrize(
    ("authorization", "message"),
    [(None, "Access token is empty."), ("Bearer forged", "IDX14100: JWT is not well formed.")],
)
async def test_the_fake_refuses_a_missing_or_forged_token(
    fake: GraphFake, ca: TestCA, authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(verify=ca.client_context()) as client:
        reply = await client.get(f"{fake.base_url}/users/{MAILBOX}/calendar", headers=headers)
    assert reply.status_code == 401
    error = reply.json()["error"]
    assert (error["code"], error["message"]) == ("InvalidAuthenticationToken", message)
