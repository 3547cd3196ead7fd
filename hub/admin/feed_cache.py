"""Conditional answers and a bounded cache for the iCalendar feeds.

Calendar apps poll a feed every few minutes, and almost every poll finds nothing new. The
feed's version is the agent's change counter (``hub_seq``, raised by the store's triggers on
every change to the agent, its appointments, their approvals, requests and sync status), the
window served and the settings that shape the rendering. :func:`feed_etag` turns these into
an entity tag, so an unchanged feed is answered 304 from one counter read, with nothing
listed or rendered; :class:`FeedCache` keeps each rendered feed until its counter moves, so a
changed feed is rendered once however many subscribers fetch it, and then only the events
that differ from the version before are rendered again.

The tag is weak (``W/``): two renderings of one version differ in their ``DTSTAMP`` only.
It is the same for every caller of the feed (bearer or feed token): what a feed shows does
not depend on who asks, and the caller is authorised before any tag is compared.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from hub import __version__
from hub.config import HubSettings
from hub.model import Agent

# Bounds of the cache: the feeds of the most recently fetched agents and windows.
MAX_FEEDS = 256
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FeedKey:
    """Which feed: an agent and the window it serves (None: unbounded)."""

    agent_id: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class CachedFeed:
    """A rendered feed, valid while the agent's change counter is still ``seq``."""

    seq: int
    etag: str
    last_modified: datetime  # whole seconds, as Last-Modified carries it
    body: bytes
    # Whether no other version of this feed can carry the same Last-Modified: false when the
    # version before it was not known (evicted, or a restart), as it may have been rendered
    # in the same second. If-Modified-Since then needs a later time to answer 304.
    unique_time: bool = True
    # Each event's text by appointment id, with what it was rendered from (the agent, the
    # appointment, its request): the next version of the feed renders only what differs.
    agent: Agent | None = None
    events: Mapping[str, tuple[object, bytes]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes held: the body and, about as much again, the events' texts."""
        return 2 * len(self.body) if self.events else len(self.body)


def _rendering(settings: HubSettings) -> str:
    # Only what render_event reads: other settings (a password among them) stay out of tags.
    return repr(
        (
            __version__,
            settings.subject_template,
            settings.body_template,
            settings.timezone,
            settings.reminder_minutes,
        )
    )


def feed_etag(key: FeedKey, seq: int, settings: HubSettings) -> str:
    """The weak entity tag of version ``seq`` of the feed ``key`` under ``settings``: the same
    in every hub process, so several workers behind one address agree on it."""
    start = key.start.isoformat() if key.start is not None else ""
    end = key.end.isoformat() if key.end is not None else ""
    parts = "\x00".join((key.agent_id, str(seq), start, end, _rendering(settings)))
    return f'W/"{hashlib.sha256(parts.encode()).hexdigest()[:32]}"'


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


class FeedCache:
    """The most recently rendered feeds, at most ``max_feeds`` of them and ``max_bytes`` of
    bodies together, least recently used out first. One per admin application."""

    def __init__(self, max_feeds: int = MAX_FEEDS, max_bytes: int = MAX_BYTES) -> None:
        self.max_feeds = max_feeds
        self.max_bytes = max_bytes
        self._feeds: OrderedDict[FeedKey, CachedFeed] = OrderedDict()
        self._bytes = 0

    def get(self, key: FeedKey, seq: int) -> CachedFeed | None:
        """The cached feed ``key`` if it is still version ``seq``."""
        found = self._feeds.get(key)
        if found is None or found.seq != seq:
            return None
        self._feeds.move_to_end(key)
        return found

    def previous(self, key: FeedKey) -> CachedFeed | None:
        """The feed ``key`` as last rendered, whatever its version (its events' texts are
        reused for the next version)."""
        return self._feeds.get(key)

    def stamp(self, key: FeedKey, now: datetime) -> tuple[datetime, bool]:
        """The Last-Modified of a new version of ``key`` rendered at ``now``, and whether it
        is unique: no other version can carry it (the one cached before it is older than this
        second). Not unique, If-Modified-Since of that very second must get the feed again."""
        second = now.replace(microsecond=0)
        before = self._feeds.get(key)
        return second, before is not None and before.last_modified < second

    def put(self, key: FeedKey, feed: CachedFeed) -> None:
        if key in self._feeds:
            if self._feeds[key].seq >= feed.seq:
                return  # a slower rendering of an older version must not replace a newer one
            self._drop(key)
        if feed.size > self.max_bytes:
            return
        self._feeds[key] = feed
        self._bytes += feed.size
        while len(self._feeds) > self.max_feeds or self._bytes > self.max_bytes:
            self._drop(next(iter(self._feeds)))

    def __len__(self) -> int:
        return len(self._feeds)

    def _drop(self, key: FeedKey) -> None:
        self._bytes -= self._feeds.pop(key).size


__all__ = ["CachedFeed", "FeedCache", "FeedKey", "etag_matches", "feed_etag"]
