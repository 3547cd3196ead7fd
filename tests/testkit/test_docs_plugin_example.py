"""The guide's minimal provider (examples/minimal_provider.py) is complete: it registers
through the hook, passes the conformance suite, and is shown verbatim in docs/plugins.md."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hub import account_config
from hub.plugins import PLUGINS_ENV, load_plugins
from hub.spec import CalendarRef, EventData, NotFoundError, Provider, Window
from hub.testing.conformance import ProviderConformance

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "minimal_provider.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calhub_minimal_provider_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


class JsonDirBackdoor:
    """The agent editing files in the calendar folder behind the provider's back."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider

    async def create_external(self, cal: CalendarRef, data: EventData) -> str:
        remote_id = f"ext-{uuid.uuid4().hex}"
        path = self.provider.folder(cal) / f"{remote_id}.json"
        path.write_text(example.event_to_json(None, data), encoding="utf-8")
        return remote_id

    async def edit(self, cal: CalendarRef, remote_id: str, data: EventData) -> None:
        path = self.provider.folder(cal) / f"{remote_id}.json"
        hub_id, _ = example.event_from_json(path.read_text(encoding="utf-8"))
        path.write_text(example.event_to_json(hub_id, data), encoding="utf-8")

    async def delete(self, cal: CalendarRef, remote_id: str) -> None:
        (self.provider.folder(cal) / f"{remote_id}.json").unlink()

    async def expire_cursor(self, cal: CalendarRef) -> None:
        raise NotImplementedError("jsondir keeps no cursor")

    async def create_unreadable(self, cal: CalendarRef, start: datetime) -> str:
        (self.provider.folder(cal) / "garbled.json").write_text("{not json", encoding="utf-8")
        return "garbled"


@pytest.fixture
async def jsondir(tmp_path: Path) -> AsyncIterator[Provider]:
    account = account_config(example.JsonDirProvider, "files", {"path": str(tmp_path)})
    async with example.JsonDirProvider(account) as provider:
        yield provider


@pytest.fixture
def agent_cal(jsondir: Any) -> Iterator[CalendarRef]:
    ref = CalendarRef("alice", "alice@example.com")
    jsondir.folder(ref).mkdir(parents=True)
    yield ref


class TestMinimalProvider(ProviderConformance):
    @pytest.fixture
    def provider(self, jsondir: Provider) -> Provider:
        return jsondir

    @pytest.fixture
    def cal(self, agent_cal: CalendarRef) -> CalendarRef:
        return agent_cal

    @pytest.fixture
    def backdoor(self, jsondir: Provider) -> JsonDirBackdoor:
        return JsonDirBackdoor(jsondir)


def test_the_guide_shows_the_example_verbatim() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    source = EXAMPLE.read_text(encoding="utf-8")
    assert f"```python\n{source}```\n" in docs


def test_the_example_registers_through_the_hook() -> None:
    loaded = load_plugins(env={PLUGINS_ENV: "none-of-the-installed"}, extra=[example])
    assert loaded.registry.names() == ["jsondir"]
    assert loaded.registry.get("jsondir") is example.JsonDirProvider


async def test_an_unreadable_file_is_skipped_not_fatal(
    jsondir: Any, agent_cal: CalendarRef
) -> None:
    backdoor = JsonDirBackdoor(jsondir)
    now = datetime.now(UTC).replace(microsecond=0)
    good = await backdoor.create_external(agent_cal, EventData("Ok", now, now + timedelta(1)))
    (jsondir.folder(agent_cal) / "garbage.json").write_text("{not json", encoding="utf-8")
    result = await jsondir.fetch(agent_cal, Window(now - timedelta(1), now + timedelta(9)), None)
    assert [e.remote_id for e in result.changed] == [good]
    assert [s.remote_id for s in result.skipped] == ["garbage"]


@pytest.mark.parametrize("remote_id", ["../../etc/passwd", "a/b", ""])
async def test_remote_ids_cannot_leave_the_folder(
    jsondir: Any, agent_cal: CalendarRef, remote_id: str
) -> None:
    with pytest.raises(NotFoundError):
        await jsondir.get(agent_cal, remote_id)


async def test_check_reports_a_missing_calendar(jsondir: Any, agent_cal: CalendarRef) -> None:
    missing = CalendarRef("bob", "bob@example.com")
    checks = await jsondir.check([agent_cal, missing], write=True)
    assert [(c.what, c.ok) for c in checks] == [
        ("root folder", True),
        ("read alice@example.com", True),
        ("write alice@example.com", True),
        ("access bob@example.com", False),
    ]
    assert list(jsondir.folder(agent_cal).iterdir()) == []  # the probe was removed
