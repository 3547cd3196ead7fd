"""Plugin manager: loads provider plugins, built-in and third-party, from one entry-point group.

Built-ins (``plugins.caldav``, ``plugins.graph365``, ``hub.testing.memory``) are declared in
pyproject.toml under ``calhub.providers`` exactly as a third-party distribution would declare
its own, so they load the same way (a plugin of the ``calhub`` distribution is *built in*: its
provider names cannot be taken by another plugin, and its hook runs first).
``CALHUB_PLUGINS`` (comma-separated entry-point names) limits which plugins load; unset or
empty loads all of them. A failure is logged with its traceback and kept in
:attr:`Plugins.errors`, and the other plugins still load.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pluggy

from hub import spec

log = logging.getLogger(__name__)

PLUGINS_ENV = "CALHUB_PLUGINS"


@dataclass(frozen=True, slots=True)
class PluginLoadError:
    """A plugin that failed to import or register, with the reason (shown by `calhub providers`)."""

    plugin: str
    reason: str


@dataclass(slots=True)
class Plugins:
    """The loaded plugins: the provider registry plus what failed to load."""

    registry: spec.ProviderRegistry
    manager: pluggy.PluginManager
    errors: list[PluginLoadError]


def _origin(ep: importlib.metadata.EntryPoint) -> spec.PluginOrigin:
    dist = ep.dist
    if dist is None:
        return spec.PluginOrigin(ep.name)
    name = dist.metadata["Name"] or dist.name
    return spec.PluginOrigin(
        ep.name, name, dist.version, builtin=name.lower() == spec.PROJECT.lower()
    )


def _selected(env: Mapping[str, str]) -> set[str] | None:
    raw = env.get(PLUGINS_ENV, "").strip()
    if not raw:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_plugins(
    env: Mapping[str, str] | None = None,
    extra: Iterable[object] = (),
) -> Plugins:
    """Load every plugin of the ``calhub.providers`` group (limited by ``CALHUB_PLUGINS``),
    plus ``extra`` plugin objects (tests), and collect their provider classes."""
    env = os.environ if env is None else env
    pm = pluggy.PluginManager(spec.PROJECT)
    pm.add_hookspecs(spec)
    wanted = _selected(env)
    errors: list[PluginLoadError] = []
    seen: set[str] = set()
    origins: dict[str, spec.PluginOrigin] = {}
    for ep in importlib.metadata.entry_points(group=spec.ENTRY_POINT_GROUP):
        seen.add(ep.name)
        if wanted is not None and ep.name not in wanted:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the hub
            _refuse(errors, ep.name, f"{type(exc).__name__}: {exc}", traceback=True)
            continue
        origins[ep.name] = _origin(ep)
        _register(pm, module, ep.name, errors)
    for name in sorted((wanted or set()) - seen):
        installed = ", ".join(sorted(seen)) or "none"
        _refuse(errors, name, f"{PLUGINS_ENV} names no installed plugin (installed: {installed})")
    for i, plugin in enumerate(extra):
        _register(pm, plugin, getattr(plugin, "__name__", f"extra{i}"), errors)
    _drop_pending(pm, errors)
    registry = _collect(pm, origins, errors)
    return Plugins(registry=registry, manager=pm, errors=errors)


def _collect(
    pm: pluggy.PluginManager,
    origins: Mapping[str, spec.PluginOrigin],
    errors: list[PluginLoadError],
) -> spec.ProviderRegistry:
    """Run every plugin's registration hook, built-ins first: a built-in's names are taken
    before any other plugin can claim them, whatever order the install lists them in."""
    registry = spec.ProviderRegistry()
    impls = pm.hook.calhub_register_providers.get_hookimpls()
    origin = {impl.plugin_name: origins.get(impl.plugin_name) for impl in impls}
    for impl in sorted(impls, key=lambda i: not (origin[i.plugin_name] or _NONE).builtin):
        registry.current = origin[impl.plugin_name] or spec.PluginOrigin(impl.plugin_name)
        try:
            impl.function(register=registry)
        except Exception as exc:
            _refuse(errors, impl.plugin_name, f"{type(exc).__name__}: {exc}", traceback=True)
    registry.current = _NONE
    for name, clashing in registry.clashes().items():
        who = " and ".join(o.describe() for o in clashing)
        log.warning("provider %r is registered by %s: neither is used", name, who)
    return registry


_NONE = spec.PluginOrigin("?")


def _refuse(
    errors: list[PluginLoadError], name: str, reason: str, *, traceback: bool = False
) -> None:
    # The traceback tells the plugin's author where it broke; the reason is what the
    # administrator sees in `calhub providers`.
    log.warning("plugin %s not loaded: %s", name, reason, exc_info=traceback)
    errors.append(PluginLoadError(name, reason))


def _register(
    pm: pluggy.PluginManager, plugin: object, name: str, errors: list[PluginLoadError]
) -> None:
    """Register one plugin; a hookimpl whose arguments the spec does not have is refused."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        _refuse(errors, name, f"invalid hook implementation: {exc}")


def _drop_pending(pm: pluggy.PluginManager, errors: list[PluginLoadError]) -> None:
    """``check_pending`` catches a misspelt hook; the plugin that has one is unloaded and
    reported (one third-party typo must not stop every other provider)."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or repr(exc.plugin)
            pm.unregister(exc.plugin)
            _refuse(errors, name, f"unknown hook: {exc}")
