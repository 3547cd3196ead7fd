"""What every Graph request carries and what comes back, free of any optional import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Immutable ids survive a move between folders; UTC on the wire keeps comparisons exact.
PREFER = 'IdType="ImmutableId", outlook.timezone="UTC"'


@dataclass(frozen=True, slots=True)
class Response:
    """A Graph response (or $batch item): status, headers, decoded JSON body (None if empty)."""

    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return self.status < 400
