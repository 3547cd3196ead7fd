"""JSON shapes of the admin endpoint: hub/admin/views.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from hub.admin.views import iso
from hub.spec import as_utc


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))])))
def test_iso_is_utc_with_z_to_the_second(value: datetime) -> None:
    # The fast path for the store's UTC times gives strftime's text, whatever the year.
    assert iso(value) == as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
