"""The retry policy: capped exponential back-off with full jitter, honouring retry_after."""

from __future__ import annotations

import random

import pytest

from hub.backoff import RetriesExhausted, RetryPolicy, retry
from hub.spec import AuthError, TransientError


class Flaky:
    """Fails with the given errors, then answers "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_computed_waits_stay_under_the_growing_cap() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0)
    rng = random.Random(1)
    for retry_no, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        waits = [policy.delay(retry_no, None, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # jitter spreads over the whole range


async def test_transient_errors_are_retried_and_retry_after_is_a_floor() -> None:
    call = Flaky(TransientError("429", retry_after=3.0), TransientError("503"))
    sleeps = Sleeps()
    assert await retry(call, policy=RetryPolicy(), sleep=sleeps) == "ok"
    assert call.calls == 3
    assert sleeps[0] >= 3.0 and 0 <= sleeps[1] <= 1.0


async def test_attempts_are_bounded() -> None:
    call = Flaky(*[TransientError("503") for _ in range(10)])
    sleeps = Sleeps()
    with pytest.raises(RetriesExhausted, match="gave up after 3 attempts"):
        await retry(call, policy=RetryPolicy(attempts=3), sleep=sleeps)
    assert call.calls == 3 and len(sleeps) == 2


async def test_a_too_long_retry_after_gives_up_at_once() -> None:
    call = Flaky(TransientError("429", retry_after=3600))
    sleeps = Sleeps()
    with pytest.raises(RetriesExhausted, match="3600"):
        await retry(call, policy=RetryPolicy(max_retry_after=300), sleep=sleeps)
    assert sleeps == []


async def test_other_errors_are_not_retried() -> None:
    call = Flaky(AuthError("401"))
    with pytest.raises(AuthError):
        await retry(call, policy=RetryPolicy(), sleep=Sleeps())
    assert call.calls == 1
