"""Arbitrary JSON sent to every write route: a 4xx (or a success), never a 500.

The routes' own tests cover each documented error; this one throws shapes nobody thought of
(nested arrays, huge numbers, nulls, wrong types, odd strings, dates at the edges) at them.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .admin_support import Api, FakeControl, running_api

ROUTES = [
    ("POST", "/agents"),
    ("PATCH", "/agents/alice"),
    ("PUT", "/requests/R1/planned"),
    ("POST", "/requests/R1/actions"),
    ("POST", "/requests/R1/appointments"),
    ("POST", "/approvals/nope"),
    ("POST", "/agents/alice/sync"),
    ("PATCH", "/appointments/{appointment}"),
]
KEYS = [
    "id", "name", "email", "account", "calendar", "create_appointments", "import_external",
    "colour", "agents", "agent", "start", "end", "estimate_minutes", "subject", "note",
    "private", "done_at", "time_taken_minutes", "add_to_calendar", "approve", "allow_empty",
    "location", "customer", "rotate_feed_token",
]  # fmt: skip
ODD_TEXT = st.sampled_from(
    [
        "", " ", "alice", "bob", "o365", "2026-05-04", "2026-05-04T09:00:00Z",
        "2026-05-04T09:00:00", "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+14:00",
        "2026-02-30", "never", "ask", "agent", "#3a87ad", "{x.__class__}", "\x00", "é" * 300,
        "-1", "1e309", "NaN",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    ODD_TEXT,
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
BODIES = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6),
    VALUES,
)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Api, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_api(Path(tmp) / "hub.db", control=FakeControl()) as running:
            booked = await running.call(
                "POST",
                "/requests/R0/appointments",
                {
                    "subject": "Visit",
                    "start": "2026-05-04T09:00:00Z",
                    "end": "2026-05-04T10:00:00Z",
                    "agents": ["alice"],
                },
            )
            assert booked.status == 201, booked.text
            yield running, booked.json["appointments"][0]["id"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(route=st.sampled_from(ROUTES), body=BODIES)
async def test_no_body_makes_a_500(api: tuple[Api, str], route: tuple[str, str], body: Any) -> None:
    client, appointment_id = api
    method, path = route
    path = path.format(appointment=appointment_id)
    reply = await client.call(method, path, body)
    assert reply.status < 500, (method, path, body, reply.status, reply.text)
    if reply.status >= 400:
        assert set(reply.json) <= {"error", "field"} and reply.json["error"]
