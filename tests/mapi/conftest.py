"""The mapi end-to-end tests share one hub (and agent process) per module, so they run in
the module's event loop."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The conformance suite marks its tests for a function-scoped loop, and a base class's
    # marks are inherited: a mark on the test itself is the closest one and wins.
    for item in items:
        function = getattr(item, "function", None)
        if item.path.parent == HERE and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.asyncio(loop_scope="module"), append=False)
