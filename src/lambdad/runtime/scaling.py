"""How fast a function may add execution environments (Lambda's concurrency scaling rate).

AWS lets each function add at most 1,000 environments every 10 seconds, refilled continuously
and never banked beyond 1,000 (docs: "Lambda scaling behavior"). Each function gets a token
bucket of ``rate`` tokens refilled at ``rate`` per ``window`` seconds; a new environment takes
one, a warm one none. Without a token the invocation is throttled (429
``TooManyRequestsException``, Reason ``FunctionInvocationRateLimitExceeded``), which the
dispatcher treats like any throttle of an ``Event`` invocation: it waits and tries again.

This bucket is one process's. A cluster's nodes share one bucket per function in the
concurrency ledger instead (``runtime/shared_scaling.py``, docs/cluster.md), so two workers
together add no more environments per window than one would.
"""

from __future__ import annotations

import dataclasses
import time

from lambdad import errors
from lambdad.runtime.spec import Place

#: Lambda's scaling rate: environments per function per window.
DEFAULT_RATE = 1000
DEFAULT_WINDOW = 10.0
THROTTLED = "Rate Exceeded."
REASON = "FunctionInvocationRateLimitExceeded"


def throttled(wait: float) -> errors.TooManyRequestsException:
    """The throttle of a function out of scaling tokens for ``wait`` more seconds."""
    return errors.TooManyRequestsException(
        THROTTLED, reason=REASON, retry_after=max(1, round(wait + 0.5))
    )


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class ScaleRate:
    """Per-function token buckets; ``take`` is called before an environment is created."""

    def __init__(self, rate: int = DEFAULT_RATE, window: float = DEFAULT_WINDOW) -> None:
        if rate < 1 or window <= 0:
            raise ValueError("the scaling rate needs a positive rate and window")
        self.rate = rate
        self.window = window
        self._buckets: dict[tuple[Place, str], _Bucket] = {}

    async def start(self) -> None:
        """Nothing to start in one process (the shared rate has a keeper)."""

    async def close(self) -> None:
        """Nothing to give back in one process. Idempotent."""

    async def take(self, place: Place, function: str) -> None:
        """Spend one new environment of ``function``'s rate, or raise the throttle."""
        self.take_now(place, function)

    def take_now(self, place: Place, function: str) -> None:
        """``take`` in this process's own bucket."""
        now = time.monotonic()
        bucket = self._buckets.get((place, function))
        if bucket is None:
            bucket = self._buckets[(place, function)] = _Bucket(float(self.rate), now)
        refill = (now - bucket.at) * self.rate / self.window
        bucket.tokens = min(float(self.rate), bucket.tokens + refill)
        bucket.at = now
        if bucket.tokens < 1.0:
            raise throttled((1.0 - bucket.tokens) * self.window / self.rate)
        bucket.tokens -= 1.0

    def forget(self, place: Place, function: str) -> None:
        self._buckets.pop((place, function), None)
