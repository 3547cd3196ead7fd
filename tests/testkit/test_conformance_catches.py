"""The conformance suite catches what a broken plugin gets wrong: each of its newer tests is
run against a provider broken in exactly that way and must fail it, and against the memory
provider it was broken from and must pass. It also runs under pytest-asyncio's strict mode."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

from hub.spec import (
    CalendarRef,
    CheckItem,
    FetchResult,
    NotFoundError,
    PermanentError,
    PushItem,
    PushOutcome,
    PushResult,
    Window,
    account_config,
)
from hub.testing.conformance import ProviderConformance
from hub.testing.memory import MemoryBackdoor, MemoryProvider, MemoryServer


class MissingIsEmpty(MemoryProvider):
    """Reads a missing calendar as an empty one (the engine would see everything deleted)."""

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        try:
            return await super().fetch(cal, window, cursor)
        except NotFoundError:
            return FetchResult(full=True)


class LostUpdate(MemoryProvider):
    """Checks the version, then writes without it after an await: concurrent updates from
    one version all 'succeed' and all but the last are lost."""

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        outcomes: list[PushOutcome] = []
        for item in items:
            if item.remote_id is not None:
                current = await self.get(cal, item.remote_id)
                if item.version is not None and current.version != item.version:
                    outcomes += await super().push(cal, [item])  # the real 412
                    continue
                await anyio.lowlevel.checkpoint()  # the round trip between the check and the write
                item = replace(item, version=None)
            outcomes += await super().push(cal, [item])
        return outcomes


class CheckRaises(MemoryProvider):
    """Lets a failed step escape check() instead of reporting it."""

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        items = [CheckItem("connect", True)]
        for cal in cals:
            self.server.calendar(cal)  # NotFoundError escapes
            items.append(CheckItem(f"read {cal.mailbox}", True))
        return items


class OneBadFailsAll(MemoryProvider):
    """Raises for the whole listing when one event cannot be read."""

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        result = await super().fetch(cal, window, cursor)
        if result.skipped:
            raise PermanentError(f"cannot parse {result.skipped[0].remote_id}")
        return result


class RestoreReturnsDeleted(MemoryProvider):
    """Keys creates by hub id alone and remembers them forever (a transactionId without the
    replaced id): a restore answers with the event the agent deleted."""

    created: ClassVar[dict[str, PushResult]]

    async def open(self) -> None:
        await super().open()
        self.created = {}

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        outcomes: list[PushOutcome] = []
        for item in items:
            if item.remote_id is None and item.hub_id in self.created:
                outcomes.append(self.created[item.hub_id])
                continue
            (outcome,) = await super().push(cal, [item])
            if item.remote_id is None and isinstance(outcome, PushResult):
                self.created[item.hub_id] = outcome
            outcomes.append(outcome)
        return outcomes


CAUGHT = [
    ("test_a_missing_calendar_is_not_found_not_empty", MissingIsEmpty),
    ("test_concurrent_updates_of_one_event_lose_nothing", LostUpdate),
    ("test_check_reports_a_missing_calendar_instead_of_raising", CheckRaises),
    ("test_an_unreadable_event_is_skipped_not_fatal", OneBadFailsAll),
    ("test_a_restore_creates_the_event_again", RestoreReturnsDeleted),
]


async def run_suite_test(name: str, cls: type[MemoryProvider]) -> None:
    """One test of the suite with the fixtures the memory provider's conformance run has."""
    server = MemoryServer(auto_create=False)
    cal = CalendarRef("alice", "alice@example.com", "work")
    server.add_calendar(cal)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    async with cls(account_config(cls, "mem", {"server": server})) as provider:
        fixtures: dict[str, Any] = {
            "provider": provider,
            "writable": provider,
            "delta": provider,
            "cal": cal,
            "missing_cal": replace(cal, calendar="calhub-conformance-missing"),
            "backdoor": MemoryBackdoor(server),
            "now": now,
            "window": Window(now - timedelta(days=7), now + timedelta(days=60)),
        }
        test = getattr(ProviderConformance(), name)
        await test(**{p: fixtures[p] for p in inspect.signature(test).parameters})


@pytest.mark.parametrize(("name", "broken"), CAUGHT, ids=[c.__name__ for _, c in CAUGHT])
async def test_the_suite_fails_a_provider_broken_that_way(
    name: str, broken: type[MemoryProvider]
) -> None:
    await run_suite_test(name, MemoryProvider)  # the unbroken provider passes
    with pytest.raises((Exception, pytest.fail.Exception)):
        await run_suite_test(name, broken)


STRICT_SUITE = """
import pytest
import pytest_asyncio

from hub import CalendarRef, account_config
from hub.testing.conformance import ProviderConformance
from hub.testing.memory import MemoryBackdoor, MemoryProvider, MemoryServer


class TestInStrictMode(ProviderConformance):
    @pytest.fixture
    def server(self):
        return MemoryServer(auto_create=False)

    @pytest_asyncio.fixture
    async def provider(self, server):
        async with MemoryProvider(account_config(MemoryProvider, "mem", {"server": server})) as p:
            yield p

    @pytest.fixture
    def cal(self, server):
        ref = CalendarRef("alice", "alice@example.com", "work")
        server.add_calendar(ref)
        return ref

    @pytest.fixture
    def backdoor(self, server):
        return MemoryBackdoor(server)
"""


def test_the_suite_runs_without_pytest_asyncio_auto_mode(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n",
        encoding="utf-8",
    )
    (tmp_path / "test_strict.py").write_text(textwrap.dedent(STRICT_SUITE), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    tests = [n for n, _ in inspect.getmembers(ProviderConformance) if n.startswith("test_")]
    passed = int(summary.split(" passed")[0])
    # Every test ran (one is parametrized twice) and none was skipped as "not async-aware".
    assert passed == len(tests) + 1, summary
    assert "skipped" not in summary, run.stdout[-3000:]
