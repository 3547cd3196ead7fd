"""``GET /calendar/events``: a server-sent events stream of the ids of changed appointments.

The store calls :meth:`ChangeFeed.publish` after every commit that wrote appointments —
through the API, the rules, an approval or a sync pass bringing an Outlook move back — and
each open stream sends the ids, batched over :data:`BATCH_DELAY`, as one ``changed`` event
whose data is a JSON array. The page then reads just those entries
(``/calendar/entries?ids=``): nothing polls the range. A stream that falls behind (its
queue is full) is sent ``reload`` instead of the ids it lost. A comment line every
:data:`KEEPALIVE` seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

from aiohttp import web

routes = web.RouteTableDef()

BATCH_DELAY = 0.15  # seconds: one drag is one commit, but a sync pass makes several
KEEPALIVE = 15.0
QUEUE_SIZE = 1000
_CLOSE = frozenset({"\0close"})  # sentinel: the application is shutting down


class ChangeFeed:
    """Fans the store's changed-appointment notifications out to the open streams."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[frozenset[str]]] = set()
        self._overflowed: set[asyncio.Queue[frozenset[str]]] = set()

    def publish(self, appointment_ids: frozenset[str]) -> None:
        for queue in self._queues:
            try:
                queue.put_nowait(appointment_ids)
            except asyncio.QueueFull:
                self._overflowed.add(queue)

    def close(self) -> None:
        for queue in self._queues:
            while not queue.empty():  # nobody will send these any more
                queue.get_nowait()
            queue.put_nowait(_CLOSE)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[frozenset[str]]]:
        queue: asyncio.Queue[frozenset[str]] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            self._overflowed.discard(queue)

    async def next_batch(self, queue: asyncio.Queue[frozenset[str]]) -> list[str] | None:
        """The ids of the next batch of changes (waits for the first); None when changes
        were lost and the page must reload. Raises :class:`EOFError` at shutdown."""
        first = await queue.get()
        await asyncio.sleep(BATCH_DELAY)
        ids = set(first)
        while not queue.empty():
            ids |= queue.get_nowait()
        if ids >= _CLOSE:
            raise EOFError
        if queue in self._overflowed:
            self._overflowed.discard(queue)
            return None
        return sorted(ids)


CHANGES = web.AppKey("calhub_changes", ChangeFeed)


@routes.get("/calendar/events", name="calendar-events")
async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass events on at once
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 1000\n: connected\n\n")
    feed = request.app[CHANGES]
    with feed.subscribe() as queue, contextlib.suppress(ConnectionResetError, EOFError):
        while True:
            try:
                # Queue.get gives nothing up when cancelled by the timeout.
                await asyncio.wait_for(_peek(queue), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            batch = await feed.next_batch(queue)
            if batch is None:
                await response.write(b"event: reload\ndata: {}\n\n")
            else:
                await response.write(f"event: changed\ndata: {json.dumps(batch)}\n\n".encode())
    return response


async def _peek(queue: asyncio.Queue[frozenset[str]]) -> None:
    """Wait until ``queue`` has an item, leaving it there."""
    item = await queue.get()
    # Put back (at the end: next_batch merges everything queued, so order does not matter);
    # put_nowait cannot fail, this very call freed the slot.
    queue.put_nowait(item)


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end the open streams so that shutdown does not wait for them."""
    app[CHANGES].close()


__all__ = ["CHANGES", "ChangeFeed", "close_streams", "routes"]
