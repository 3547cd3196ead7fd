"""One thread for every Outlook object-model call: COM's single-threaded apartment.

Outlook's objects belong to the apartment (thread) that made them, so the Outlook agent runs
every call in this one thread, in order, instead of anyio's pool of worker threads (any of
which could get the next call). The event loop hands work over with :meth:`ComThread.run`
and awaits a future: it never blocks on Outlook, and keeps answering heartbeats while
Outlook is busy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], concurrent.futures.Future[Any]]


class ComThread:
    """A dedicated thread running submitted callables one at a time.

    ``enter``/``leave`` run first and last in that thread (``CoInitialize`` and
    ``CoUninitialize`` from :func:`plugins.mapi.outlook.com_apartment`).
    """

    def __init__(self, enter: Callable[[], None], leave: Callable[[], None]) -> None:
        self._enter = enter
        self._leave = leave
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="outlook-com", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the COM thread and await its result (or exception)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fn, args, future))
        return await asyncio.wrap_future(future)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued calls, leave the apartment, end the thread."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)

    def _serve(self) -> None:
        self._enter()
        try:
            while (job := self._jobs.get()) is not None:
                fn, args, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the awaiting coroutine
                    future.set_exception(exc)
        finally:
            self._leave()
