"""mapi against the provider conformance suite, end to end: the hub's provider -> the relay's
WebSocket -> a real ``calhub outlook-agent`` process -> the fake Outlook object model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
import pytest_asyncio

from hub.spec import CalendarRef
from hub.testing.conformance import DEFAULT_FIELDS, ProviderConformance
from plugins.mapi import MapiProvider
from tests.fakes.outlook import OutlookBackdoor
from tests.mapi.support import RunningHub, running_hub

# One hub and one agent process for the module (starting a process per test would cost more
# than the tests themselves): tests/mapi/conftest.py runs the tests in the module's loop.


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path_factory.mktemp("mapi")) as running:
        token = await running.issue_token("alice")
        await running.connected(running.start_agent("alice", token))
        yield running


class TestMapiConformance(ProviderConformance):
    # Outlook has no per-item colour (categories carry colours); everything else round-trips.
    round_trip_fields: ClassVar[tuple[str, ...]] = (
        *DEFAULT_FIELDS,
        "show_as",
        "reminder_minutes",
        "categories",
    )

    @pytest.fixture
    def provider(self, hub: RunningHub) -> MapiProvider:
        hub.backdoor.file.reset()  # every test starts with an empty calendar
        return hub.provider()

    @pytest.fixture
    def cal(self, hub: RunningHub) -> CalendarRef:
        return hub.cal("alice")

    @pytest.fixture
    def backdoor(self, hub: RunningHub) -> OutlookBackdoor:
        return hub.backdoor
