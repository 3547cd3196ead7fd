"""Shared test configuration: keep tests off the network and out of the user's environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_admin_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A token exported in the developer's shell must not change what the tests see.
    monkeypatch.delenv("CALHUB_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("CALHUB_PLUGINS", raising=False)
