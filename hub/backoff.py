"""Retry policy for transient provider errors: capped exponential back-off with full jitter.

A :class:`hub.spec.TransientError` (timeout, 5xx, 429/ServerBusy) is retried a bounded number of
times. The wait before retry ``n`` is a random value in ``[0, min(cap, base * 2**n)]`` (full
jitter, so that many agents throttled together do not retry in lockstep), but never shorter than
the server's ``retry_after``. A server asking for a longer wait than ``max_retry_after`` ends the
attempts at once: the pass fails and the scheduler tries again at its next interval.

The sleep function and the random source are injected so that tests do not wait.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from hub.spec import TransientError

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a transient error."""

    attempts: int = 5  # calls in total, the first one included
    base: float = 0.5  # seconds: the cap of the first jittered wait
    cap: float = 30.0  # seconds: no computed wait exceeds this
    max_retry_after: float = 300.0  # a longer Retry-After gives up instead of waiting

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        jittered = rng.uniform(0.0, min(self.cap, self.base * 2**retry))
        if retry_after is not None and retry_after > 0:
            return max(jittered, float(retry_after))
        return jittered


class RetriesExhausted(TransientError):
    """The last transient error, after the policy's attempts ran out (or the wait was too long)."""


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    sleep: Sleep = anyio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[TransientError, float], None] | None = None,
) -> T:
    """Await ``call()``, retrying it on :class:`TransientError` as ``policy`` says.

    Raises :class:`RetriesExhausted` (a TransientError) carrying the last error's message when
    the attempts run out; every other exception propagates at once.
    """
    rng = rng or random.Random()
    retry_no = 0
    while True:
        try:
            return await call()
        except RetriesExhausted:
            raise
        except TransientError as exc:
            if retry_no + 1 >= policy.attempts:
                raise RetriesExhausted(
                    f"{exc.message} (gave up after {policy.attempts} attempts)",
                    retry_after=exc.retry_after,
                    item=exc.item,
                ) from exc
            if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
                raise RetriesExhausted(
                    f"{exc.message} (server asked to wait {exc.retry_after:g} s)",
                    retry_after=exc.retry_after,
                    item=exc.item,
                ) from exc
            wait = policy.delay(retry_no, exc.retry_after, rng)
            if on_retry is not None:
                on_retry(exc, wait)
            await sleep(wait)
            retry_no += 1
