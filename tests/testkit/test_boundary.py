"""The plugin boundary: the contract is checked when a class registers, and every provider call
goes through one wrapper (hub/boundary.py) that forwards the capability flags, names the
provider in any foreign exception and reports one status vocabulary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from hub import spec
from hub.boundary import GuardedProvider, guard
from hub.config import Config, HubSettings
from hub.metrics import Metrics
from hub.model import Agent, Appointment, Kind
from hub.plugins import PLUGINS_ENV, load_plugins
from hub.scheduler import Scheduler
from hub.spec import (
    CAPABILITIES,
    CalendarRef,
    CallStatus,
    CheckItem,
    EventData,
    FetchResult,
    NotFoundError,
    Provider,
    ProviderError,
    ProviderRegistry,
    PushItem,
    PushOutcome,
    TransientError,
    Window,
    account_config,
    hookimpl,
)
from hub.store.sqlite import SqliteStore
from hub.testing.memory import MemoryProvider, MemoryServer
from tests.sync.helpers import NOW, Clock, at

# --------------------------------------------------------------------------- the contract


class NoFetch(MemoryProvider):
    """Everything but fetch: the base class's placeholder would fail at the first sync."""

    name: ClassVar[str] = "no-fetch"
    fetch = Provider.fetch  # type: ignore[assignment]


class SyncGet(MemoryProvider):
    """``get`` written as a plain ``def``: the engine would await a RemoteEvent."""

    name: ClassVar[str] = "sync-get"

    def get(self, cal: CalendarRef, remote_id: str) -> Any:  # type: ignore[override]
        return None


class ZeroBatch(MemoryProvider):
    """A batch size the engine could never send."""

    name: ClassVar[str] = "zero-batch"
    max_batch: ClassVar[int] = 0


class DictOptions(MemoryProvider):
    """Options written as a dict instead of Option records."""

    name: ClassVar[str] = "dict-options"
    options: ClassVar[Any] = ({"key": "url"},)


class ReadOnlyImport(Provider):
    """A read-only provider needs no push or delete."""

    name: ClassVar[str] = "import-only"
    read_only: ClassVar[bool] = True

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        return FetchResult(full=True)

    async def get(self, cal: CalendarRef, remote_id: str) -> Any:
        raise NotFoundError(remote_id)

    async def find(self, cal: CalendarRef, hub_ids: Sequence[str]) -> dict[str, Any]:
        return {}

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        return []


def one_plugin(cls: type) -> ModuleType:
    module = ModuleType(f"plugin_{cls.__name__.lower()}")

    def calhub_register_providers(register: ProviderRegistry) -> None:
        register.add(cls)

    module.calhub_register_providers = hookimpl(calhub_register_providers)  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (NoFetch, "NoFetch does not implement fetch() (required by hub.Provider)"),
        (SyncGet, "SyncGet.get must be 'async def'"),
        (ZeroBatch, "ZeroBatch.max_batch must be an integer >= 1, got 0"),
        (DictOptions, "DictOptions.options holds {'key': 'url'}, not an Option"),
    ],
)
def test_an_incomplete_provider_class_is_refused_when_it_registers(
    cls: type, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ProviderRegistry().add(cls)
    loaded = load_plugins(env={PLUGINS_ENV: "memory"}, extra=[one_plugin(cls)])
    assert loaded.registry.names() == ["memory"]
    (error,) = loaded.errors
    assert message in error.reason
    # The log has the traceback, for the plugin's author.
    (record,) = [r for r in caplog.records if "not loaded" in r.getMessage()]
    assert record.exc_info is not None


def test_a_read_only_provider_needs_no_write_methods() -> None:
    registry = ProviderRegistry()
    registry.add(ReadOnlyImport)
    assert registry.get("import-only") is ReadOnlyImport


# --------------------------------------------------------------------------- the wrapper


class Recorder:
    """A CallLog keeping what the wrapper reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, CallStatus]] = []

    def provider_call(self, account: str, operation: str, status: CallStatus, seconds: float):
        self.calls.append((account, operation, status))


class Clumsy(MemoryProvider):
    """A plugin that lets library exceptions out."""

    name: ClassVar[str] = "clumsy"
    read_only: ClassVar[bool] = True
    fault: ClassVar[BaseException] = FileNotFoundError(2, "No such file", "/srv/cal/alice.json")

    async def fetch(self, cal: CalendarRef, window: Window, cursor: str | None) -> FetchResult:
        raise self.fault

    async def push(self, cal: CalendarRef, items: Sequence[PushItem]) -> list[PushOutcome]:
        return [KeyError("uid") for _ in items]  # type: ignore[misc]

    async def check(self, cals: Sequence[CalendarRef], write: bool = False) -> list[CheckItem]:
        raise RuntimeError("licence expired")


def clumsy(**options: Any) -> Clumsy:
    return Clumsy(account_config(Clumsy, "files", {"server": MemoryServer(), **options}))


def test_every_capability_flag_is_read_through_from_the_provider_object() -> None:
    # The memory provider sets max_batch per account, on the object: a copy of the class
    # attribute would be wrong.
    inner = clumsy(max_batch=3)
    guarded = guard(inner)
    assert guarded.max_batch == 3 != Clumsy.max_batch
    assert guarded.read_only is True
    for flag in CAPABILITIES:
        assert getattr(guarded, flag) == getattr(inner, flag), flag
    assert guarded.name == "clumsy"
    assert guard(guarded) is guarded


async def test_a_foreign_exception_becomes_a_provider_error_naming_the_provider() -> None:
    calls = Recorder()
    guarded = GuardedProvider(clumsy(), calls=calls)
    cal = CalendarRef("alice", "alice@example.com")
    window = Window(at(-1), at(9))
    with pytest.raises(ProviderError) as caught:
        await guarded.fetch(cal, window, None)
    assert (
        str(caught.value)
        == "clumsy: FileNotFoundError: [Errno 2] No such file: '/srv/cal/alice.json'"
    )
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    (outcome,) = await guarded.push(cal, [PushItem("a1", EventData("Visit", at(1), at(1, 11)))])
    assert isinstance(outcome, ProviderError) and outcome.item == "a1"
    assert str(outcome) == "clumsy: KeyError: 'uid'"
    (item,) = await guarded.check([cal])
    assert (item.ok, item.detail) == (False, "clumsy: RuntimeError: licence expired")
    assert [c[1:] for c in calls.calls] == [
        ("fetch", CallStatus.ERROR),
        ("push", CallStatus.OK),
        ("check", CallStatus.ERROR),
    ]


async def test_a_timeout_of_a_plugin_is_transient() -> None:
    guarded = guard(clumsy())
    Clumsy.fault = TimeoutError("read timed out")
    try:
        with pytest.raises(TransientError, match="clumsy: TimeoutError: read timed out"):
            await guarded.fetch(CalendarRef("a", "a@example.com"), Window(at(-1), at(9)), None)
    finally:
        Clumsy.fault = FileNotFoundError(2, "No such file", "/srv/cal/alice.json")


async def test_a_plugins_exception_fails_the_pass_with_its_message(tmp_path: Path) -> None:
    clock = Clock(NOW)
    store = SqliteStore(tmp_path / "hub.db", clock=clock)
    await store.open()
    try:
        async with store.transaction("api") as tx:
            await tx.put_agent(Agent("alice", "Alice", "alice@example.com", "files"))
            await tx.put_appointment(
                Appointment(
                    id="v1",
                    agent_id="alice",
                    kind=Kind.MANUAL,
                    start=at(1),
                    end=at(1, 11),
                    subject="Visit",
                )
            )
        registry = ProviderRegistry()
        registry.add(Clumsy)
        account = account_config(Clumsy, "files", {"server": MemoryServer()})
        config = Config(hub=HubSettings(), accounts={"files": account})
        metrics = Metrics()
        async with Scheduler(store, config, registry, metrics, background=False) as s:
            (result,) = (await s.run_once()).values()
    finally:
        await store.close()
    assert result.result == "failed"
    assert (
        result.error == "clumsy: FileNotFoundError: [Errno 2] No such file: '/srv/cal/alice.json'"
    )
    text = metrics.render().decode()
    assert 'calhub_provider_calls_total{account="files",operation="fetch",status="error"} 1.0' in (
        text
    )


@pytest.mark.parametrize(
    ("label", "status"),
    [
        ("200", CallStatus.OK),
        ("429", CallStatus.THROTTLED),
        ("503", CallStatus.TRANSIENT),
        ("412", CallStatus.PRECONDITION),
        ("TransientError", CallStatus.TRANSIENT),
        ("ok", CallStatus.OK),
        ("tls", CallStatus.ERROR),
    ],
)
def test_request_labels_share_one_vocabulary(label: str, status: CallStatus) -> None:
    metrics = Metrics()
    metrics.request("acc", "fetch", label, 0.1)
    text = metrics.render().decode()
    assert f'operation="fetch",status="{status}"}} 1.0' in text


def test_call_status_of_each_error_class() -> None:
    assert CallStatus.of(None) is CallStatus.OK
    assert CallStatus.of(spec.CursorInvalid("x")) is CallStatus.CURSOR_INVALID
    assert CallStatus.of(spec.TransientError("x", retry_after=2)) is CallStatus.THROTTLED
    assert CallStatus.of(spec.TransientError("x")) is CallStatus.TRANSIENT
    assert CallStatus.of(spec.AuthError("x")) is CallStatus.AUTH
    assert CallStatus.of(spec.NotFoundError("x")) is CallStatus.NOT_FOUND
    assert CallStatus.of(spec.PreconditionFailed("x")) is CallStatus.PRECONDITION
    assert CallStatus.of(spec.PermanentError("x")) is CallStatus.PERMANENT
    assert CallStatus.of(ValueError("x")) is CallStatus.ERROR
