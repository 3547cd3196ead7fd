"""The provider conformance suite: one pytest class every provider's tests subclass.

Modelled on vdirsyncer's ``StorageTests``: the suite states what the provider contract in
:mod:`hub.spec` promises, and each provider proves it against its fake or a real server::

    from hub.testing.conformance import ProviderConformance

    class TestMyProvider(ProviderConformance):
        @pytest_asyncio.fixture
        async def provider(self, my_server):      # an opened Provider
            async with MyProvider(account_config(MyProvider, "t", {...})) as p:
                yield p

        @pytest.fixture
        def cal(self, my_server):                 # the CalendarRef of an empty calendar
            return CalendarRef("agent", "agent@example.com")

        @pytest.fixture
        def backdoor(self, my_server):            # edits "by the agent", at the server
            return MyBackdoor(my_server)

The backdoor is any object with ``async create_external(cal, data) -> remote_id``,
``async edit(cal, remote_id, data)``, ``async delete(cal, remote_id)``,
``async expire_cursor(cal)`` and ``async create_unreadable(cal, start) -> remote_id`` (an
event at ``start`` the provider cannot parse, to check that it is skipped, not fatal);
optionally ``async request_count() -> int`` (requests the server has answered so far) to
check request budgets. A method may raise ``NotImplementedError``: the tests that need it
skip. The ``missing_cal`` fixture (a calendar that does not exist; by default ``cal`` with
``calendar="calhub-conformance-missing"``) may be overridden where calendar addresses look
different.

The suite's tests carry the ``asyncio`` mark themselves, so it runs under pytest-asyncio's
strict mode as well as its auto mode; in strict mode write your async fixtures with
``@pytest_asyncio.fixture``.

Capabilities become skips: ``read_only`` skips every write test, ``supports_delta=False`` the
incremental ones, ``max_batch < 2`` the batch test. Class attributes tune what a provider
can honestly promise (override them in the subclass, with a comment saying why):

``listing_has_hub_ids``      fetch returns the hub tag (False for Graph delta: the engine then
                             uses its status table and ``find``; ``get`` and ``find`` must
                             still return it).
``round_trip_fields``        the EventData fields that must come back as written.
``no_change_fetch_requests`` requests an incremental fetch of an unchanged calendar may cost.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import anyio
import pytest

from hub.spec import (
    CalendarRef,
    CheckItem,
    CursorInvalid,
    EventData,
    FetchResult,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    Provider,
    PushItem,
    PushResult,
    RemoteEvent,
    TransientError,
    Window,
    as_utc,
)

__all__ = ["ProviderConformance", "assert_same_content"]

DEFAULT_FIELDS = ("subject", "start", "end", "body", "location", "private")


def _norm(name: str, value: Any) -> Any:
    if name in ("start", "end"):
        if isinstance(value, datetime):
            return ("datetime", as_utc(value))
        return ("date", value)
    if isinstance(value, str):
        return value.strip().replace("\r\n", "\n")
    return value


def assert_same_content(got: EventData, want: EventData, fields: Sequence[str]) -> None:
    """``got`` equals ``want`` on ``fields``: times as instants (a New York 09:00 equals
    13:00Z), dates as dates, text stripped with newlines normalised."""
    diff = {
        name: (getattr(got, name), getattr(want, name))
        for name in fields
        if _norm(name, getattr(got, name)) != _norm(name, getattr(want, name))
    }
    assert not diff, f"fields that did not round-trip (got, want): {diff}"


def _by_id(result: FetchResult) -> dict[str, RemoteEvent]:
    return {event.remote_id: event for event in result.changed}


class ProviderConformance:
    """The contract every provider must pass. Subclasses supply the ``provider``, ``cal`` and
    ``backdoor`` fixtures (see the module docstring)."""

    # Every test is a coroutine: marked here so that the suite does not depend on
    # pytest-asyncio's auto mode (in strict mode unmarked ones would not even run).
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    listing_has_hub_ids: ClassVar[bool] = True
    round_trip_fields: ClassVar[tuple[str, ...]] = DEFAULT_FIELDS
    no_change_fetch_requests: ClassVar[int] = 1

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def provider(self) -> Provider:
        raise NotImplementedError("subclass ProviderConformance and supply a provider fixture")

    @pytest.fixture
    def cal(self) -> CalendarRef:
        raise NotImplementedError("subclass ProviderConformance and supply a cal fixture")

    @pytest.fixture
    def backdoor(self) -> Any:
        raise NotImplementedError("subclass ProviderConformance and supply a backdoor fixture")

    @pytest.fixture
    def missing_cal(self, cal: CalendarRef) -> CalendarRef:
        """A calendar that does not exist at the account (same mailbox as ``cal``)."""
        return replace(cal, calendar="calhub-conformance-missing")

    @pytest.fixture
    def now(self) -> datetime:
        """A whole hour, so that every provider can store the times exactly."""
        return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    @pytest.fixture
    def window(self, now: datetime) -> Window:
        return Window(now - timedelta(days=7), now + timedelta(days=60))

    @pytest.fixture
    def writable(self, provider: Provider) -> Provider:
        if provider.read_only:
            pytest.skip(f"{provider.name} is read-only")
        return provider

    @pytest.fixture
    def delta(self, provider: Provider) -> Provider:
        if not provider.supports_delta:
            pytest.skip(f"{provider.name} has no delta cursor")
        return provider

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def event(start: datetime, subject: str = "Printer on floor 3", **kw: Any) -> EventData:
        """A one-hour timed event starting at ``start``."""
        return EventData(subject=subject, start=start, end=start + timedelta(hours=1), **kw)

    @staticmethod
    async def create(
        provider: Provider, cal: CalendarRef, hub_id: str, data: EventData
    ) -> PushResult:
        result = await provider.push_one(cal, PushItem(hub_id, data))
        assert result.hub_id == hub_id
        assert result.remote_id and result.version
        return result

    @staticmethod
    async def agent(backdoor: Any, method: str, *args: Any) -> Any:
        """Call a backdoor method; skip the test when the backdoor cannot do it."""
        fn = getattr(backdoor, method, None)
        if fn is None:
            pytest.skip(f"the backdoor has no {method}")
        try:
            value = fn(*args)
            return await value if inspect.isawaitable(value) else value
        except NotImplementedError:
            pytest.skip(f"the backdoor cannot {method}")

    @staticmethod
    async def request_count(backdoor: Any) -> int | None:
        fn = getattr(backdoor, "request_count", None)
        if fn is None:
            return None
        try:
            return await fn()
        except NotImplementedError:
            return None

    def assert_content(self, got: EventData, want: EventData) -> None:
        assert_same_content(got, want, self.round_trip_fields)

    # ------------------------------------------------------------------ create, get, fetch

    async def test_create_then_get_and_fetch_with_hub_tag(
        self, writable: Provider, cal: CalendarRef, window: Window, now: datetime
    ) -> None:
        data = self.event(now + timedelta(days=1), body="Replace the toner\nthen test")
        created = await self.create(writable, cal, "hub-create-1", data)
        got = await writable.get(cal, created.remote_id)
        assert got.hub_id == "hub-create-1"
        assert got.remote_id == created.remote_id
        self.assert_content(got.data, data)
        listed = await writable.fetch(cal, window, None)
        assert listed.full
        (fetched,) = listed.changed
        assert fetched.remote_id == created.remote_id
        if self.listing_has_hub_ids:
            assert fetched.hub_id == "hub-create-1"
        self.assert_content(fetched.data, data)

    async def test_push_version_is_the_version_fetch_reports(
        self, writable: Provider, cal: CalendarRef, window: Window, now: datetime
    ) -> None:
        created = await self.create(writable, cal, "hub-version", self.event(now))
        assert (await writable.get(cal, created.remote_id)).version == created.version
        (fetched,) = (await writable.fetch(cal, window, None)).changed
        assert fetched.version == created.version
        updated = await writable.push_one(
            cal,
            PushItem("hub-version", self.event(now, "Moved"), created.remote_id, created.version),
        )
        (fetched,) = (await writable.fetch(cal, window, None)).changed
        assert fetched.version == updated.version != created.version

    async def test_create_is_idempotent_per_hub_id(
        self, writable: Provider, cal: CalendarRef, window: Window, now: datetime
    ) -> None:
        data = self.event(now + timedelta(days=2))
        first = await self.create(writable, cal, "hub-twice", data)
        again = await self.create(writable, cal, "hub-twice", data)
        assert again.remote_id == first.remote_id
        listed = await writable.fetch(cal, window, None)
        assert [e.remote_id for e in listed.changed] == [first.remote_id]
        assert list(await writable.find(cal, ["hub-twice"])) == ["hub-twice"]

    async def test_find_by_hub_ids(
        self, writable: Provider, cal: CalendarRef, backdoor: Any, now: datetime
    ) -> None:
        one = await self.create(writable, cal, "hub-find-1", self.event(now))
        two = await self.create(writable, cal, "hub-find-2", self.event(now + timedelta(hours=2)))
        await self.agent(backdoor, "create_external", cal, self.event(now, "Dentist"))
        found = await writable.find(cal, ["hub-find-1", "hub-find-2", "hub-find-missing"])
        assert set(found) == {"hub-find-1", "hub-find-2"}
        assert found["hub-find-1"].remote_id == one.remote_id
        assert found["hub-find-2"].remote_id == two.remote_id
        assert found["hub-find-2"].hub_id == "hub-find-2"
        assert await writable.find(cal, ["hub-find-missing"]) == {}

    async def test_external_events_have_no_hub_id(
        self, provider: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        data = self.event(now + timedelta(days=3), "Dentist", body="bring the form")
        remote_id = await self.agent(backdoor, "create_external", cal, data)
        (fetched,) = (await provider.fetch(cal, window, None)).changed
        assert fetched.remote_id == remote_id
        assert fetched.hub_id is None
        self.assert_content(fetched.data, data)
        assert (await provider.get(cal, remote_id)).hub_id is None

    # ------------------------------------------------------------------ update, delete

    async def test_update_with_the_right_version(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        created = await self.create(writable, cal, "hub-update", self.event(now))
        moved = self.event(now + timedelta(hours=3), "Printer, second visit", location="3.14")
        item = PushItem("hub-update", moved, created.remote_id, created.version)
        updated = await writable.push_one(cal, item)
        assert updated.remote_id == created.remote_id
        assert updated.version != created.version
        got = await writable.get(cal, created.remote_id)
        assert got.hub_id == "hub-update"
        self.assert_content(got.data, moved)

    async def test_update_with_a_stale_version_fails(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        created = await self.create(writable, cal, "hub-stale", self.event(now))
        first = self.event(now, "First edit")
        await writable.push_one(
            cal, PushItem("hub-stale", first, created.remote_id, created.version)
        )
        stale = PushItem(
            "hub-stale", self.event(now, "Lost edit"), created.remote_id, created.version
        )
        (outcome,) = await writable.push(cal, [stale])
        assert isinstance(outcome, PreconditionFailed), outcome
        self.assert_content((await writable.get(cal, created.remote_id)).data, first)

    async def test_update_of_a_deleted_event_fails(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        created = await self.create(writable, cal, "hub-gone", self.event(now))
        await writable.delete(cal, created.remote_id, created.version)
        item = PushItem("hub-gone", self.event(now, "Edit"), created.remote_id, created.version)
        (outcome,) = await writable.push(cal, [item])
        # CalDAV answers If-Match on a missing resource with 412, Graph with 404: both say
        # "not what you think it is", and the engine re-plans either way.
        assert isinstance(outcome, NotFoundError | PreconditionFailed), outcome

    async def test_delete(
        self, writable: Provider, cal: CalendarRef, window: Window, now: datetime
    ) -> None:
        keep = await self.create(writable, cal, "hub-keep", self.event(now))
        gone = await self.create(writable, cal, "hub-delete", self.event(now))
        await writable.delete(cal, gone.remote_id, gone.version)
        with pytest.raises(NotFoundError):
            await writable.get(cal, gone.remote_id)
        listed = await writable.fetch(cal, window, None)
        assert [e.remote_id for e in listed.changed] == [keep.remote_id]
        assert await writable.find(cal, ["hub-delete"]) == {}

    async def test_delete_with_a_stale_version_fails(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        created = await self.create(writable, cal, "hub-del-stale", self.event(now))
        await writable.push_one(
            cal,
            PushItem(
                "hub-del-stale", self.event(now, "Edited"), created.remote_id, created.version
            ),
        )
        with pytest.raises(PreconditionFailed):
            await writable.delete(cal, created.remote_id, created.version)
        assert (await writable.get(cal, created.remote_id)).hub_id == "hub-del-stale"

    async def test_delete_of_a_missing_event_is_not_found(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        created = await self.create(writable, cal, "hub-twice-deleted", self.event(now))
        await writable.delete(cal, created.remote_id, created.version)
        with pytest.raises(NotFoundError):
            await writable.delete(cal, created.remote_id, None)

    # ------------------------------------------------------------------ batches

    async def test_a_bad_item_is_a_per_item_outcome(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        # An end before its start is refused by every calendar service; a provider whose
        # server would accept it must refuse it itself.
        bad = EventData("Backwards", now, now - timedelta(hours=1))
        (outcome,) = await writable.push(cal, [PushItem("hub-bad", bad)])
        assert isinstance(outcome, PermanentError), outcome
        assert await writable.find(cal, ["hub-bad"]) == {}

    async def test_batch_of_max_batch_items_with_one_bad(
        self, writable: Provider, cal: CalendarRef, window: Window, now: datetime
    ) -> None:
        size = writable.max_batch
        if size < 2:
            pytest.skip(f"{writable.name} pushes one item per request")
        items = [
            PushItem(f"hub-batch-{i}", self.event(now + timedelta(hours=i), f"Batch {i}"))
            for i in range(size)
        ]
        bad_at = size // 2
        items[bad_at] = replace(items[bad_at], data=EventData("Bad", now, now - timedelta(hours=1)))
        outcomes = await writable.push(cal, items)
        assert len(outcomes) == size
        for i, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
            if i == bad_at:
                assert isinstance(outcome, PermanentError), outcome
            else:
                assert isinstance(outcome, PushResult), outcome
                assert outcome.hub_id == item.hub_id
        listed = await writable.fetch(cal, window, None)
        assert len(listed.changed) == size - 1
        found = await writable.find(cal, [item.hub_id for item in items])
        assert set(found) == {item.hub_id for item in items} - {f"hub-batch-{bad_at}"}

    # ------------------------------------------------------------------ the window

    async def test_full_fetch_lists_exactly_the_window(
        self, writable: Provider, cal: CalendarRef, window: Window
    ) -> None:
        inside = [
            await self.create(
                writable, cal, f"hub-in-{i}", self.event(window.start + timedelta(days=1 + 10 * i))
            )
            for i in range(3)
        ]
        await self.create(writable, cal, "hub-before", self.event(window.start - timedelta(days=2)))
        await self.create(writable, cal, "hub-after", self.event(window.end + timedelta(days=1)))
        listed = await writable.fetch(cal, window, None)
        assert listed.full
        assert set(_by_id(listed)) == {c.remote_id for c in inside}
        assert not listed.deleted
        if writable.supports_delta:
            assert listed.cursor

    async def test_window_edges(self, writable: Provider, cal: CalendarRef, window: Window) -> None:
        hour = timedelta(hours=1)
        ends_at_start = EventData("Ends at window start", window.start - hour, window.start)
        starts_at_end = EventData("Starts at window end", window.end, window.end + hour)
        spanning = EventData("Spans the window", window.start - hour, window.end + hour)
        await self.create(writable, cal, "hub-edge-end", ends_at_start)
        await self.create(writable, cal, "hub-edge-start", starts_at_end)
        span = await self.create(writable, cal, "hub-edge-span", spanning)
        listed = await writable.fetch(cal, window, None)
        assert list(_by_id(listed)) == [span.remote_id]

    # ------------------------------------------------------------------ content

    async def test_all_day_event_round_trip(
        self, writable: Provider, cal: CalendarRef, window: Window, now: datetime
    ) -> None:
        day = (now + timedelta(days=5)).date()
        data = EventData("Training day", day, day + timedelta(days=2))
        created = await self.create(writable, cal, "hub-all-day", data)
        got = await writable.get(cal, created.remote_id)
        assert type(got.data.start) is date and type(got.data.end) is date
        assert (got.data.start, got.data.end) == (day, day + timedelta(days=2))
        (fetched,) = (await writable.fetch(cal, window, None)).changed
        assert (fetched.data.start, fetched.data.end) == (day, day + timedelta(days=2))

    async def test_time_zone_event_keeps_its_instant(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        new_york = ZoneInfo("America/New_York")
        day = (now + timedelta(days=4)).date()
        start = datetime(day.year, day.month, day.day, 9, 0, tzinfo=new_york)
        data = EventData(
            "Call with NY office", start, start + timedelta(minutes=30), timezone="America/New_York"
        )
        created = await self.create(writable, cal, "hub-tz", data)
        got = await writable.get(cal, created.remote_id)
        assert isinstance(got.data.start, datetime) and got.data.start.tzinfo is not None
        assert as_utc(got.data.start) == start.astimezone(UTC)
        assert as_utc(got.data.end) == (start + timedelta(minutes=30)).astimezone(UTC)

    async def test_unicode_round_trip(
        self, writable: Provider, cal: CalendarRef, window: Window, now: datetime
    ) -> None:
        data = self.event(
            now + timedelta(days=1),
            "Réunion 会議 🖨️ naïve façade",
            body='Zürich → 東京\nÅsa, Ñandú, 😀 and a "quoted" ; comma, line',
            location="Bâtiment Ä, 3ᵉ étage",
        )
        created = await self.create(writable, cal, "hub-unicode-ü", data)
        self.assert_content((await writable.get(cal, created.remote_id)).data, data)
        (fetched,) = (await writable.fetch(cal, window, None)).changed
        self.assert_content(fetched.data, data)
        assert list(await writable.find(cal, ["hub-unicode-ü"])) == ["hub-unicode-ü"]

    @pytest.mark.parametrize("private", [True, False])
    async def test_private_flag_round_trip(
        self, writable: Provider, cal: CalendarRef, now: datetime, private: bool
    ) -> None:
        data = self.event(now, "Doctor", private=private)
        created = await self.create(writable, cal, f"hub-private-{private}", data)
        assert (await writable.get(cal, created.remote_id)).data.private is private

    async def test_private_external_event_reads_back_private(
        self, provider: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        data = self.event(now, "Therapy", private=True)
        remote_id = await self.agent(backdoor, "create_external", cal, data)
        (fetched,) = (await provider.fetch(cal, window, None)).changed
        assert fetched.remote_id == remote_id
        assert fetched.data.private is True
        assert fetched.hub_id is None

    # ------------------------------------------------------------------ incremental fetch

    async def test_incremental_fetch_returns_just_the_agents_changes(
        self, delta: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        ours = None
        if not delta.read_only:
            ours = await self.create(delta, cal, "hub-delta", self.event(now))
        first = await delta.fetch(cal, window, None)
        assert first.full and first.cursor

        external = self.event(now + timedelta(days=1), "Dentist")
        ext_id = await self.agent(backdoor, "create_external", cal, external)
        created = await delta.fetch(cal, window, first.cursor)
        assert not created.full
        assert list(_by_id(created)) == [ext_id]
        assert created.changed[0].hub_id is None
        self.assert_content(created.changed[0].data, external)
        assert not created.deleted

        edited = self.event(now + timedelta(days=1, hours=2), "Dentist (moved)")
        await self.agent(backdoor, "edit", cal, ext_id, edited)
        changed = await delta.fetch(cal, window, created.cursor)
        assert list(_by_id(changed)) == [ext_id]
        self.assert_content(changed.changed[0].data, edited)

        if ours is not None:
            moved = self.event(now + timedelta(hours=5))
            await self.agent(backdoor, "edit", cal, ours.remote_id, moved)
            dragged = await delta.fetch(cal, window, changed.cursor)
            assert list(_by_id(dragged)) == [ours.remote_id]
            if self.listing_has_hub_ids:
                assert dragged.changed[0].hub_id == "hub-delta"
            self.assert_content(dragged.changed[0].data, moved)
            changed = dragged

        await self.agent(backdoor, "delete", cal, ext_id)
        deleted = await delta.fetch(cal, window, changed.cursor)
        assert deleted.deleted == [ext_id]
        assert not deleted.changed

    async def test_incremental_fetch_of_nothing_is_empty_and_cheap(
        self, delta: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        await self.agent(backdoor, "create_external", cal, self.event(now))
        first = await delta.fetch(cal, window, None)
        before = await self.request_count(backdoor)
        again = await delta.fetch(cal, window, first.cursor)
        after = await self.request_count(backdoor)
        assert not again.full
        assert again.changed == [] and again.deleted == [] and again.left_window == []
        assert again.cursor
        if before is not None and after is not None:
            assert after - before <= self.no_change_fetch_requests

    async def test_incremental_fetch_of_an_event_moved_out_of_the_window(
        self, delta: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        ext_id = await self.agent(backdoor, "create_external", cal, self.event(now))
        first = await delta.fetch(cal, window, None)
        await self.agent(backdoor, "edit", cal, ext_id, self.event(window.end + timedelta(days=3)))
        moved = await delta.fetch(cal, window, first.cursor)
        assert ext_id not in _by_id(moved)
        # Graph reports it as @removed, CalDAV as changed-but-outside: either way the engine
        # must learn that it is gone from the window, and it verifies deletes with get().
        assert ext_id in moved.left_window or ext_id in moved.deleted

    async def test_expired_cursor_then_full_fetch(
        self, delta: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        ext_id = await self.agent(backdoor, "create_external", cal, self.event(now))
        first = await delta.fetch(cal, window, None)
        await self.agent(backdoor, "expire_cursor", cal)
        with pytest.raises(CursorInvalid):
            await delta.fetch(cal, window, first.cursor)
        again = await delta.fetch(cal, window, None)
        assert again.full
        assert list(_by_id(again)) == [ext_id]
        assert again.cursor

    # ------------------------------------------------------------------ what the engine relies on

    async def test_a_missing_calendar_is_not_found_not_empty(
        self, provider: Provider, missing_cal: CalendarRef, window: Window
    ) -> None:
        # An empty answer would read as "the agent deleted everything": the engine stops a
        # pass that suddenly sees nothing, but a missing calendar must say so.
        with pytest.raises(NotFoundError):
            await provider.fetch(missing_cal, window, None)

    async def test_check_reports_a_missing_calendar_instead_of_raising(
        self, provider: Provider, cal: CalendarRef, missing_cal: CalendarRef
    ) -> None:
        items = await provider.check([cal, missing_cal])
        assert items and all(isinstance(item, CheckItem) for item in items), items
        assert any(not item.ok for item in items), f"the missing calendar passed: {items}"
        assert any(item.ok for item in items), f"nothing passed for the real calendar: {items}"

    async def test_an_unreadable_event_is_skipped_not_fatal(
        self, provider: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        good = await self.agent(backdoor, "create_external", cal, self.event(now, "Dentist"))
        bad = await self.agent(backdoor, "create_unreadable", cal, now + timedelta(hours=2))
        listed = await provider.fetch(cal, window, None)
        assert list(_by_id(listed)) == [good]
        assert [s.remote_id for s in listed.skipped] == [bad]

    async def test_concurrent_updates_of_one_event_lose_nothing(
        self, writable: Provider, cal: CalendarRef, now: datetime
    ) -> None:
        # Two passes (or a pass and the agent's phone) writing from the same version: one
        # wins, the others get PreconditionFailed (or TransientError, e.g. 423 Locked: the
        # retry then meets the new version); none is silently overwritten.
        created = await self.create(writable, cal, "hub-race", self.event(now))
        edits = [self.event(now, f"Edit {i}") for i in range(3)]
        outcomes: dict[int, Any] = {}

        async def update(i: int) -> None:
            item = PushItem("hub-race", edits[i], created.remote_id, created.version)
            (outcomes[i],) = await writable.push(cal, [item])

        async with anyio.create_task_group() as tg:
            for i in range(len(edits)):
                tg.start_soon(update, i)
        won = [i for i, outcome in outcomes.items() if isinstance(outcome, PushResult)]
        assert len(won) == 1, f"updates from one version that succeeded: {outcomes}"
        for i, outcome in outcomes.items():
            if i not in won:
                assert isinstance(outcome, PreconditionFailed | TransientError), outcome
        self.assert_content((await writable.get(cal, created.remote_id)).data, edits[won[0]])

    async def test_a_restore_creates_the_event_again(
        self, writable: Provider, cal: CalendarRef, backdoor: Any, window: Window, now: datetime
    ) -> None:
        # remote_delete = "restore": the create carries the deleted event's id in
        # ``replaces``; a create keyed by the hub id alone would answer with the deleted one.
        data = self.event(now + timedelta(days=1), "Restored visit")
        first = await self.create(writable, cal, "hub-restore", data)
        await self.agent(backdoor, "delete", cal, first.remote_id)
        item = PushItem("hub-restore", data, replaces=first.remote_id)
        restored = await writable.push_one(cal, item)
        got = await writable.get(cal, restored.remote_id)
        assert got.hub_id == "hub-restore"
        self.assert_content(got.data, data)
        listed = await writable.fetch(cal, window, None)
        assert [e.remote_id for e in listed.changed] == [restored.remote_id]
        again = await writable.push_one(cal, item)  # still idempotent
        assert again.remote_id == restored.remote_id
        assert list(await writable.find(cal, ["hub-restore"])) == ["hub-restore"]
