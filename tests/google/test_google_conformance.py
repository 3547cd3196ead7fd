"""google against the provider conformance suite, through aiogoogle and the strict fake."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hub.spec import CalendarRef
from hub.testing.conformance import DEFAULT_FIELDS, ProviderConformance
from plugins.google import GoogleProvider
from tests.fakes.google import GoogleFake, OwnerBackdoor


class TestGoogleConformance(ProviderConformance):
    round_trip_fields: ClassVar[tuple[str, ...]] = (
        *DEFAULT_FIELDS,
        "reminder_minutes",
        "categories",
        "colour",
    )

    @pytest.fixture
    def provider(self, provider: GoogleProvider) -> GoogleProvider:
        return provider

    @pytest.fixture
    def cal(self, cal: CalendarRef) -> CalendarRef:
        return cal

    @pytest.fixture
    def backdoor(self, fake: GoogleFake) -> OwnerBackdoor:
        return OwnerBackdoor(fake)
