"""Conditional answers and a bounded cache for the iCalendar feeds.

Calendar apps poll a feed every few minutes, and almost every poll finds nothing new. The
feed's version is the agent's change counter (``hub_seq``, raised by the store's triggers on
every change to the agent, its appointments, their approvals, requests and sync status), the
window served and the settings that shape the rendering. :func:`feed_etag` turns these into
an entity tag, so an unchanged feed is answered 304 from one counter read, with nothing
listed or rendered; :class:`FeedCache` keeps each rendered feed until its counter moves, so a
changed feed is rendered once however many subscribers fetch it (one rendering of a feed at
a time: the others wait for it, see :meth:`FeedCache.fresh`), and then only the events the
store reports changed since the version before are rendered again
(:mod:`hub.admin.feed_events`).

The tag is weak (``W/``): two renderings of one version differ in their ``DTSTAMP`` only.
It is the same for every caller of the feed (bearer or feed token): what a feed shows does
not depend on who asks, and the caller is authorised before any tag is compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from hub import __version__
from hub.admin.feed_events import FeedEvents
from hub.config import HubSettings
from hub.model import Agent

# Bounds of the cache: the feeds of the most recently fetched agents and windows.
MAX_FEEDS = 256
MAX_BYTES = 128 * 1024 * 1024  # ten agents of 10,000 events: about 95 MB


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
    # The agent it was rendered for and each event's text: the next version of the feed
    # renders only the events changed since ``seq``, unless the agent changed too.
    agent: Agent | None = None
    events: FeedEvents | None = None

    @property
    def size(self) -> int:
        """Bytes held: the body and the events' texts."""
        return len(self.body) + (self.events.size if self.events is not None else 0)


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
        self._rendering: dict[FeedKey, asyncio.Future[None]] = {}

    def get(self, key: FeedKey, seq: int) -> CachedFeed | None:
        """The cached feed ``key`` if it is still version ``seq``."""
        found = self._feeds.get(key)
        if found is None or found.seq != seq:
            return None
        self._feeds.move_to_end(key)
        return found

    async def fresh(
        self, key: FeedKey, seq: int, render: Callable[[], Awaitable[CachedFeed]]
    ) -> CachedFeed:
        """Version ``seq`` of ``key`` or a newer one: cached, else made by ``render`` (and
        cached). One rendering of a feed at a time: a request that finds one in flight waits
        for it rather than rendering the same thousands of events again beside it, and its
        rendering then starts from that newer version."""
        while True:
            found = self._feeds.get(key)
            if found is not None and found.seq >= seq:
                self._feeds.move_to_end(key)
                return found
            pending = self._rendering.get(key)
            if pending is None:
                break
            await asyncio.shield(pending)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rendering[key] = done
        try:
            feed = await render()
            self.put(key, feed)
            return feed
        finally:
            del self._rendering[key]
            with contextlib.suppress(asyncio.InvalidStateError):
                done.set_result(None)

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
