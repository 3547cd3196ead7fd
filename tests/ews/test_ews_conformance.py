"""exchange_ews against the provider conformance suite, through exchangelib and the EWS fake."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hub.spec import CalendarRef
from hub.testing.conformance import DEFAULT_FIELDS, ProviderConformance
from plugins.exchange_ews import EwsProvider
from tests.fakes.ews import EwsFake, OwnerBackdoor


class TestEwsConformance(ProviderConformance):
    round_trip_fields: ClassVar[tuple[str, ...]] = (
        *DEFAULT_FIELDS,
        "show_as",
        "reminder_minutes",
        "categories",
        "colour",
    )

    @pytest.fixture
    def provider(self, provider: EwsProvider) -> EwsProvider:
        return provider

    @pytest.fixture
    def cal(self, cal: CalendarRef) -> CalendarRef:
        return cal

    @pytest.fixture
    def backdoor(self, fake: EwsFake) -> OwnerBackdoor:
        return OwnerBackdoor(fake)
