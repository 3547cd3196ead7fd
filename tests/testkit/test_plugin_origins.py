"""Plugins as installed distributions: a built-in provider's name cannot be taken, a clash
between two third-party plugins is a config error naming both, and ``calhub providers`` shows
each plugin's distribution and version. The distributions are real ``.dist-info`` folders on
``sys.path``, found by importlib.metadata exactly as pip-installed ones are."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import ConfigError, load_config
from hub.plugins import load_plugins
from plugins.caldav.provider import CalDAVProvider

PLUGIN = """
from hub import hookimpl
from hub.testing.memory import MemoryProvider


class {cls}(MemoryProvider):
    name = {provider!r}
    title = "from {dist}"


@hookimpl
def calhub_register_providers(register):
    register.add({cls})
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site-packages folder put first on sys.path (its plugins load before the built-ins)."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("calhub_test_"):
            del sys.modules[name]


def install(site: Path, dist: str, version: str, plugin: str, provider: str) -> None:
    """A distribution ``dist`` whose entry point ``plugin`` registers provider ``provider``."""
    module = f"calhub_test_{plugin}"
    cls = f"Provider{plugin.title().replace('_', '')}"
    source = PLUGIN.format(cls=cls, provider=provider, dist=dist)
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[calhub.providers]\n{plugin} = {module}\n", encoding="utf-8"
    )


def test_a_third_party_plugin_cannot_take_a_built_in_name(site: Path) -> None:
    install(site, "calhub-impostor", "6.6.6", "impostor", "caldav")
    loaded = load_plugins(env={})
    assert loaded.registry.get("caldav") is CalDAVProvider  # the built-in keeps working
    assert loaded.registry.source("caldav").distribution == "calhub"
    (error,) = [e for e in loaded.errors if e.plugin == "impostor"]
    assert "'caldav' is a built-in provider and cannot be replaced" in error.reason


def test_two_third_party_plugins_with_one_name_are_a_config_error_naming_both(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(site, "calhub-files", "1.2", "files", "jsondir")
    install(site, "calhub-jsondir", "0.3.1", "jsondir", "jsondir")
    loaded = load_plugins(env={})
    assert loaded.registry.get("jsondir") is None  # neither wins by install order
    path = tmp_path / "calhub.toml"
    path.write_text('[accounts.shared]\nprovider = "jsondir"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, loaded.registry, env={})
    (problem,) = caught.value.problems
    assert problem.startswith("accounts.shared.provider: provider 'jsondir' is registered by ")
    assert "plugin files from calhub-files 1.2" in problem
    assert "plugin jsondir from calhub-jsondir 0.3.1" in problem
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "provider 'jsondir' is registered by plugin " in out and "neither is used" in out


def test_providers_shows_each_plugins_distribution_and_version(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(site, "calhub-shared-folder", "2.0.1", "shared_folder", "shared-folder")
    assert main(["providers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (line,) = [line for line in lines if line.startswith("shared-folder ")]
    assert "[plugin shared_folder] from calhub-shared-folder 2.0.1" in line
    (caldav,) = [line for line in lines if line.startswith("caldav ")]
    assert "[plugin caldav] from calhub " in caldav
