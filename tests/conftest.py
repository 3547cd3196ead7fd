"""Shared test configuration: keep tests off the network and out of the user's environment.

Hypothesis runs derandomized and without an example database by default, so CI sees the same
examples on every run; ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples locally
(keep a failure as an explicit ``@example`` or a replay test).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _no_admin_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A token exported in the developer's shell must not change what the tests see.
    monkeypatch.delenv("CALHUB_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("CALHUB_PLUGINS", raising=False)
