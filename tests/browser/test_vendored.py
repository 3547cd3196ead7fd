"""The vendored EventCalendar is the pinned release, with its licence, and ships in the wheel."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "hub" / "admin" / "static" / "vendor" / "event-calendar"


def test_vendored_files_match_the_pinned_checksums() -> None:
    notes = (VENDOR / "VERSION.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"\| `([^`]+)` \| `([0-9a-f]{64})` \|", notes))
    assert set(listed) == {"event-calendar.min.js", "event-calendar.min.css"}
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    version = re.search(r"\*\*version (\d+\.\d+\.\d+)\*\*", notes)
    assert version is not None
    banner = (VENDOR / "event-calendar.min.js").read_text(encoding="utf-8")[:200]
    assert f"EventCalendar v{version.group(1)}" in banner
    assert "MIT License" in (VENDOR / "LICENSE").read_text(encoding="utf-8")


def test_the_page_files_are_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["hub.admin"]
    package = ROOT / "hub" / "admin"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    for needed in ("calendar.html", "calendar.js", "calendar.css"):
        assert package / "static" / needed in shipped
    assert {p.name for p in shipped if p.parent == VENDOR} == {
        "event-calendar.min.js",
        "event-calendar.min.css",
        "LICENSE",
        "VERSION.md",
    }
