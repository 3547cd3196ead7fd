"""Every dotted ``hub.….Class`` name the README and the guides write in backticks exists: a
newcomer copies them into an import line. (Lower-case dotted names are config keys, such as
``hub.database``.)"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOTTED = re.compile(r"`(hub(?:\.[a-z_]\w*)*\.[A-Z][a-z]\w*(?:\.\w+)?)")


def _names() -> list[tuple[str, str]]:
    found = {(path.name, name) for path in DOCS for name in DOTTED.findall(path.read_text("utf-8"))}
    return sorted(found)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(target, attr):
                return False
            target = getattr(target, attr)
        return True
    return False


@pytest.mark.parametrize(("doc", "dotted"), _names())
def test_a_documented_name_can_be_imported(doc: str, dotted: str) -> None:
    assert _resolves(dotted), f"{doc} names {dotted}, which does not exist"
