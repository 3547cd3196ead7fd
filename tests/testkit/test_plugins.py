"""Plugin loading (hub/plugins.py) and the hook contract (hub/spec.py), in datasette's
manner: every hookspec has a test here (``test_hook_<name>``) and a section in
docs/plugins.md, and the guide documents every method, flag and error class."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from hub import spec
from hub.plugins import PLUGINS_ENV, load_plugins
from hub.spec import Provider, ProviderRegistry, hookimpl
from hub.testing.memory import MemoryProvider

DOCS = Path(__file__).parents[2] / "docs" / "plugins.md"


class EchoProvider(MemoryProvider):
    """A provider that exists only to be registered (complete: the memory provider's
    methods, since the registry checks the contract)."""

    name: ClassVar[str] = "echo"


class FakeMemory(MemoryProvider):
    """Claims the name of a built-in provider."""

    name: ClassVar[str] = "memory"


def plugin(name: str, impl: Any, hook: str = "calhub_register_providers") -> ModuleType:
    """A plugin module with ``impl`` (a function taking ``register``) as its hook ``hook``."""
    module = ModuleType(name)
    setattr(module, hook, hookimpl(impl))
    return module


def hookspecs() -> list[str]:
    return sorted(
        name
        for name, fn in inspect.getmembers(spec, inspect.isfunction)
        if hasattr(fn, f"{spec.PROJECT}_spec")
    )


@pytest.fixture
def extra_entry_points(monkeypatch: pytest.MonkeyPatch) -> list[importlib.metadata.EntryPoint]:
    """Entry points added to the installed ones of the calhub.providers group."""
    added: list[importlib.metadata.EntryPoint] = []
    real = importlib.metadata.entry_points

    def entry_points(**kw: Any) -> Any:
        found = list(real(**kw))
        if kw.get("group") == spec.ENTRY_POINT_GROUP:
            found += added
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return added


def test_builtins_load_through_the_entry_point_group() -> None:
    installed = {ep.name for ep in importlib.metadata.entry_points(group=spec.ENTRY_POINT_GROUP)}
    assert {"memory", "caldav", "graph365"} <= installed
    loaded = load_plugins(env={})
    failed = {error.plugin for error in loaded.errors}
    for name in installed:  # nothing silently lost: each one loaded or reported
        assert loaded.manager.get_plugin(name) is not None or name in failed, name
    assert loaded.registry.get("memory") is MemoryProvider
    assert loaded.registry.origin("memory") == "memory"


def test_calhub_plugins_limits_what_loads() -> None:
    loaded = load_plugins(env={PLUGINS_ENV: " memory , "})
    assert loaded.registry.names() == ["memory"]
    assert loaded.manager.get_plugin("caldav") is None
    assert loaded.errors == []
    nothing = load_plugins(env={PLUGINS_ENV: "no-such-plugin"})
    assert nothing.registry.names() == []
    (error,) = nothing.errors  # a typo in the variable is said, not silently ignored
    assert error.plugin == "no-such-plugin" and "memory" in error.reason


def test_calhub_plugins_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PLUGINS_ENV, "memory")
    assert load_plugins().registry.names() == ["memory"]


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(
    extra_entry_points: list[importlib.metadata.EntryPoint],
) -> None:
    extra_entry_points.append(
        importlib.metadata.EntryPoint("broken", "calhub_no_such_module", spec.ENTRY_POINT_GROUP)
    )
    loaded = load_plugins(env={PLUGINS_ENV: "memory,broken"})
    assert loaded.registry.names() == ["memory"]
    (error,) = loaded.errors
    assert error.plugin == "broken"
    assert "ModuleNotFoundError" in error.reason and "calhub_no_such_module" in error.reason


def test_a_plugin_whose_hook_raises_is_reported_not_fatal() -> None:
    def explode(register: ProviderRegistry) -> None:
        raise RuntimeError("licence server unreachable")

    loaded = load_plugins(env={PLUGINS_ENV: "memory"}, extra=[plugin("fragile", explode)])
    assert loaded.registry.names() == ["memory"]
    (error,) = loaded.errors
    assert error.plugin == "fragile"
    assert error.reason == "RuntimeError: licence server unreachable"


def test_a_misspelt_hookimpl_is_caught_by_check_pending_and_reported() -> None:
    typo = plugin("typo", lambda register: register.add(EchoProvider), "calhub_register_provider")
    loaded = load_plugins(env={PLUGINS_ENV: "memory"}, extra=[typo])
    assert loaded.registry.names() == ["memory"]  # the others still load
    assert loaded.manager.get_plugin("typo") is None
    (error,) = loaded.errors
    assert error.plugin == "typo"
    assert "unknown hook" in error.reason and "calhub_register_provider" in error.reason


def test_a_hookimpl_with_a_wrong_argument_name_is_refused_and_reported() -> None:
    def impl(registry: ProviderRegistry) -> None:
        registry.add(EchoProvider)

    loaded = load_plugins(env={PLUGINS_ENV: "memory"}, extra=[plugin("wrong_args", impl)])
    assert loaded.registry.names() == ["memory"]
    (error,) = loaded.errors
    assert error.plugin == "wrong_args" and "registry" in error.reason


def test_duplicate_provider_names_are_refused() -> None:
    impostor = plugin("impostor", lambda register: register.add(FakeMemory))
    loaded = load_plugins(env={PLUGINS_ENV: "memory"}, extra=[impostor])
    assert loaded.registry.get("memory") is MemoryProvider  # the first one keeps it
    (error,) = loaded.errors
    assert error.plugin == "impostor"
    assert "provider 'memory' registered twice (memory and impostor)" in error.reason


@pytest.mark.parametrize(
    ("cls", "message"),
    [(object, "is not a Provider subclass"), (Provider, "has no name")],
)
def test_the_registry_refuses_what_is_not_a_named_provider(cls: type, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        ProviderRegistry().add(cls)


def test_hook_calhub_register_providers() -> None:
    seen: list[ProviderRegistry] = []

    def impl(register: ProviderRegistry) -> None:
        seen.append(register)
        register.add(EchoProvider)
        register.add(EchoProvider)  # registering the same class twice is harmless

    loaded = load_plugins(env={PLUGINS_ENV: "memory"}, extra=[plugin("echo_plugin", impl)])
    assert seen == [loaded.registry]
    assert loaded.registry.names() == ["echo", "memory"]
    assert loaded.registry.get("echo") is EchoProvider
    assert loaded.registry.origin("echo") == "echo_plugin"
    assert loaded.errors == []


def test_every_hookspec_has_a_test_and_a_docs_section() -> None:
    names = hookspecs()
    assert names == ["calhub_register_providers"]  # a new hook needs its test and its docs
    docs = DOCS.read_text(encoding="utf-8")
    for name in names:
        assert f"test_hook_{name}" in globals(), f"no test_hook_{name} in {__name__}"
        assert re.search(rf"^### {name}$", docs, re.M), f"docs/plugins.md lacks '### {name}'"


def test_the_guide_documents_every_method_flag_and_error() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for method in ("fetch", "push", "delete", "get", "find", "check"):
        assert re.search(rf"^### {method}\(", docs, re.M), method
        assert getattr(Provider, method).__doc__, method
    for flag in ("supports_delta", "max_batch", "client_ids", "read_only", "max_concurrency"):
        assert re.search(rf"^\| `{flag}` \|", docs, re.M), flag
    errors = [
        name
        for name, cls in inspect.getmembers(spec, inspect.isclass)
        if issubclass(cls, spec.ProviderError) and cls is not spec.ProviderError
    ]
    assert len(errors) == 7
    for name in errors:
        assert re.search(rf"^\| `{name}[`(]", docs, re.M), name
