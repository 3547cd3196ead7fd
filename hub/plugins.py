"""Plugin manager: loads provider plugins, built-in and third-party, from one entry-point group.

Built-ins (``plugins.caldav``, ``plugins.graph365``, ``hub.testing.memory``) are declared in
pyproject.toml under ``calhub.providers`` exactly as a third-party distribution would declare
its own, so they load the same way. ``CALHUB_PLUGINS`` (comma-separated entry-point names)
limits which plugins load; unset or empty loads all of them.
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
    for ep in importlib.metadata.entry_points(group=spec.ENTRY_POINT_GROUP):
        if wanted is not None and ep.name not in wanted:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the hub
            log.warning("plugin %s failed to load: %s", ep.name, exc)
            errors.append(PluginLoadError(ep.name, f"{type(exc).__name__}: {exc}"))
            continue
        pm.register(module, name=ep.name)
    for i, plugin in enumerate(extra):
        pm.register(plugin, name=getattr(plugin, "__name__", f"extra{i}"))
    pm.check_pending()
    registry = spec.ProviderRegistry()
    for impl in pm.hook.calhub_register_providers.get_hookimpls():
        registry.current_plugin = impl.plugin_name
        try:
            impl.function(register=registry)
        except Exception as exc:
            log.warning("plugin %s failed to register: %s", impl.plugin_name, exc)
            errors.append(PluginLoadError(impl.plugin_name, f"{type(exc).__name__}: {exc}"))
    registry.current_plugin = "?"
    return Plugins(registry=registry, manager=pm, errors=errors)
