"""The EWS fake is as strict as EWS: raw SOAP 1.1 requests it must refuse (or answer) the way
Microsoft's reference says, independent of what exchangelib happens to send."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiohttp
import pytest
from lxml import etree

from tests.ews.helpers import MAILBOXES
from tests.fakes.ews import SOAP, EwsFake, M, T

HEADER = f"""<s:Header>
  <t:RequestServerVersion Version="Exchange2016"/>
  <t:ExchangeImpersonation><t:ConnectingSID>
    <t:PrimarySmtpAddress>{MAILBOXES[0]}</t:PrimarySmtpAddress>
  </t:ConnectingSID></t:ExchangeImpersonation>
</s:Header>"""


async def post(fake: EwsFake, body: str, header: str = HEADER, **kw: str) -> tuple[int, Any]:
    envelope = (
        f'<s:Envelope xmlns:s="{SOAP}" xmlns:t="{T}" xmlns:m="{M}">{header}'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )
    token = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8", **kw}
    ctx = ssl.create_default_context(cafile=str(fake.ca.ca_file))
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url, data=envelope.encode(), headers=headers, ssl=ctx) as reply,
    ):
        raw = await reply.read()
        return reply.status, etree.fromstring(raw) if reply.content_type == "text/xml" else None


def code(doc: Any) -> str:
    return "".join(doc.xpath("//*[local-name()='ResponseCode']/text()"))


CREATE = """<m:CreateItem SendMeetingInvitations="SendToNone"><m:Items><t:CalendarItem>{}
</t:CalendarItem></m:Items></m:CreateItem>"""
SPAN = "<t:Start>2030-01-01T10:00:00Z</t:Start><t:End>2030-01-01T11:00:00Z</t:End>"


async def test_a_calendar_item_in_schema_order_is_created(fake: EwsFake) -> None:
    status, doc = await post(fake, CREATE.format(f"<t:Subject>ok</t:Subject>{SPAN}"))
    assert (status, code(doc)) == (200, "NoError")
    assert [i.subject for i in fake.items(MAILBOXES[0])] == ["ok"]


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        # Start before Subject: the types schema's sequence is violated.
        (CREATE.format(f"{SPAN}<t:Subject>late</t:Subject>"), 500, "ErrorSchemaValidation"),
        # A property the server computes.
        (CREATE.format(f"<t:DateTimeCreated>2030-01-01T00:00:00Z</t:DateTimeCreated>{SPAN}"),
         200, "ErrorInvalidPropertySet"),
        (CREATE.replace(' SendMeetingInvitations="SendToNone"', "").format(SPAN),
         500, "ErrorSendMeetingInvitationsRequired"),
        (CREATE.format("<t:Start>2030-01-01T10:00:00Z</t:Start><t:End>2030-01-01T09:00:00Z</t:End>"),
         200, "ErrorCalendarEndDateIsEarlierThanStartDate"),
        ('<m:GetItem><m:ItemIds><t:ItemId Id="bm9wZQ=="/></m:ItemIds></m:GetItem>',
         500, "ErrorSchemaValidation"),  # no ItemShape
        ("<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
         '<m:SyncFolderId><t:DistinguishedFolderId Id="calendar"/></m:SyncFolderId>'
         "<m:SyncState>forged</m:SyncState><m:MaxChangesReturned>10</m:MaxChangesReturned>"
         "</m:SyncFolderItems>", 500, "ErrorInvalidSyncStateData"),
        ("<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
         '<m:SyncFolderId><t:DistinguishedFolderId Id="calendar"/></m:SyncFolderId>'
         "<m:MaxChangesReturned>513</m:MaxChangesReturned></m:SyncFolderItems>",
         500, "ErrorSchemaValidation"),
    ],
)  # fmt: skip
async def test_what_ews_refuses_is_refused(
    fake: EwsFake, body: str, status: int, expected: str
) -> None:
    got_status, doc = await post(fake, body)
    assert (got_status, code(doc)) == (status, expected)
    assert fake.items(MAILBOXES[0]) == []


async def test_the_soap_headers_are_checked(fake: EwsFake) -> None:
    probe = CREATE.format(SPAN)
    no_version = HEADER.replace('<t:RequestServerVersion Version="Exchange2016"/>', "")
    assert code((await post(fake, probe, no_version))[1]) == "ErrorSchemaValidation"
    newer = HEADER.replace("Exchange2016", "V2018_01_08")
    assert code((await post(fake, probe, newer))[1]) == "ErrorInvalidServerVersion"
    stranger = HEADER.replace(MAILBOXES[0], "nobody@contoso.example")
    assert code((await post(fake, probe, stranger))[1]) == "ErrorNonExistentMailbox"
    fake.deny_impersonation(MAILBOXES[0])
    assert code((await post(fake, probe))[1]) == "ErrorImpersonateUserDenied"


async def test_soap_1_2_and_bad_credentials_are_refused(fake: EwsFake) -> None:
    status, _ = await post(fake, CREATE.format(SPAN), **{"Content-Type": "application/soap+xml"})
    assert status == 415
    status, _ = await post(fake, CREATE.format(SPAN), Authorization="Basic eDp5")
    assert status == 401
    assert fake.items(MAILBOXES[0]) == []


async def test_server_busy_is_a_fault_carrying_back_off_milliseconds(fake: EwsFake) -> None:
    fake.busy(MAILBOXES[0], 1, back_off_ms=29_000)
    status, doc = await post(fake, CREATE.format(SPAN))
    assert (status, code(doc)) == (500, "ErrorServerBusy")
    (value,) = doc.xpath("//*[local-name()='Value'][@Name='BackOffMilliseconds']/text()")
    assert value == "29000"


async def test_update_checks_the_change_key_per_conflict_resolution(fake: EwsFake) -> None:
    item_id = fake.owner_create(MAILBOXES[0], "Original", *_span())
    stale = fake.mailbox(MAILBOXES[0]).items[item_id].change_key
    fake.owner_edit(MAILBOXES[0], item_id, subject="Edited in Outlook")

    def update(mode: str) -> str:
        return (
            f'<m:UpdateItem ConflictResolution="{mode}" '
            'SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>'
            f'<t:ItemId Id="{item_id}" ChangeKey="{stale}"/><t:Updates><t:SetItemField>'
            '<t:FieldURI FieldURI="item:Subject"/><t:CalendarItem><t:Subject>Hub</t:Subject>'
            "</t:CalendarItem></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges>"
            "</m:UpdateItem>"
        )

    assert code((await post(fake, update("NeverOverwrite")))[1]) == "ErrorIrresolvableConflict"
    assert fake.mailbox(MAILBOXES[0]).items[item_id].subject == "Edited in Outlook"
    assert code((await post(fake, update("AlwaysOverwrite")))[1]) == "NoError"
    assert fake.mailbox(MAILBOXES[0]).items[item_id].subject == "Hub"


def _span() -> tuple[Any, Any]:
    from datetime import UTC, datetime

    return datetime(2030, 1, 1, 10, tzinfo=UTC), datetime(2030, 1, 1, 11, tzinfo=UTC)
