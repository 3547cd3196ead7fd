"""The CalDAV provider's cursor: what the next incremental fetch needs to know.

The engine stores it as an opaque string. It holds the mode (``sync``: an RFC 6578 sync-token;
``etag``: the etag of every resource, for servers without sync-collection), the collection it
belongs to, the collection's ``CS:getctag`` when the server has one (unchanged, the next fetch
stops after that one cheap request), the window it covered (events that enter the window as
days pass are looked up with a time-range query), and the occurrence keys of each expanded
recurring series, so that an occurrence that vanished from a changed or deleted series is
reported as deleted.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from hub.spec import CursorInvalid, Window

_PREFIX = "caldav1:"

Mode = Literal["sync", "etag"]


@dataclass(slots=True)
class Cursor:
    """Decoded cursor. ``etags`` maps resource path -> etag (etag mode only); ``series`` maps
    a series' resource path -> occurrence keys seen inside the window."""

    mode: Mode
    collection: str
    window: Window
    token: str | None = None
    ctag: str | None = None
    etags: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[str]] = field(default_factory=dict)

    def encode(self) -> str:
        payload = {
            "m": self.mode,
            "c": self.collection,
            "w": [self.window.start.isoformat(), self.window.end.isoformat()],
            "t": self.token,
            "g": self.ctag,
            "e": self.etags,
            "s": self.series,
        }
        blob = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)
        return _PREFIX + base64.urlsafe_b64encode(blob).decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises :class:`CursorInvalid` for anything this version did not write."""
        if not text.startswith(_PREFIX):
            raise CursorInvalid("not a CalDAV cursor")
        try:
            payload = json.loads(zlib.decompress(base64.urlsafe_b64decode(text[len(_PREFIX) :])))
            start, end = (datetime.fromisoformat(v) for v in payload["w"])
            mode = payload["m"]
            if mode not in ("sync", "etag"):
                raise ValueError(mode)
            return cls(
                mode=mode,
                collection=str(payload["c"]),
                window=Window(start, end),
                token=payload.get("t"),
                ctag=payload.get("g"),
                etags=dict(payload.get("e") or {}),
                series={k: list(v) for k, v in (payload.get("s") or {}).items()},
            )
        except (ValueError, KeyError, TypeError, zlib.error, binascii.Error):
            raise CursorInvalid("CalDAV cursor cannot be read") from None
