"""How long an asynchronous event waits before it runs again, in one place (docs/async-delivery.md).

Modelled on Dramatiq's retries middleware: one object says how long attempt *n* waits, how many
attempts there are and how old an event may grow. ``Retries`` holds what the platform fixes
(Lambda's delays, the throttle backoff, all scaled by ``Settings.time_scale``); ``for_config``
joins it with a function's event invoke config (``AsyncPolicy``) into the ``RetryPolicy`` of one
event. ``Backoff`` is the dispatcher's own bounded exponential wait after a failing step of its
loop (a failing ``take``, ``ack`` or ``retry``).
"""

from __future__ import annotations

import dataclasses
import math

from lambdad.config import Settings
from lambdad.control.event_config import AsyncPolicy

#: Lambda's delays before the first and the second retry of a function error (unscaled).
RETRY_DELAYS = (60.0, 120.0)
#: The first delay of a throttled event (unscaled): doubled per throttle, at most 300 times it.
THROTTLE_DELAY = 1.0
THROTTLE_CAP = 300
#: The dispatcher's wait after a failing step of its own (unscaled): doubled, at most 30 s.
STEP_DELAY = 0.1
STEP_CAP = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry rules of one event: its function's config joined with the platform's delays.

    ``max_retries`` counts runs after the first (``MaximumRetryAttempts``); ``max_age`` is
    ``MaximumEventAgeInSeconds``; every duration is in (scaled) seconds.
    """

    max_retries: int
    max_age: float
    delays: tuple[float, ...]

    def retry_delay(self, attempt: int) -> float | None:
        """The wait after the failed run ``attempt`` (0 = the first run); None: no retry left."""
        if attempt >= self.max_retries:
            return None
        return self.delays[min(attempt, len(self.delays) - 1)]

    def expired(self, enqueued_at: float, now: float) -> bool:
        """Whether an event accepted at ``enqueued_at`` is older than its maximum age."""
        return now - enqueued_at > self.max_age


@dataclasses.dataclass(frozen=True, slots=True)
class Retries:
    """The platform's side of every event's ``RetryPolicy``, scaled by ``time_scale``."""

    time_scale: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Retries:
        return cls(time_scale=settings.time_scale)

    def for_config(self, config: AsyncPolicy) -> RetryPolicy:
        """The policy of an event sent to a qualifier whose event invoke config is ``config``.

        The maximum age is scaled as every platform delay is (docs/async-delivery.md).
        """
        return RetryPolicy(
            max_retries=config.max_retry_attempts,
            max_age=config.max_event_age * self.time_scale,
            delays=tuple(delay * self.time_scale for delay in RETRY_DELAYS),
        )

    def throttled_delay(self, throttles: int) -> float:
        """The wait after the ``throttles``-th throttle in a row (1-based), whatever the
        function's config: 1 s doubled each time, at most 5 minutes (scaled)."""
        first = THROTTLE_DELAY * self.time_scale
        return doubled(first, throttles - 1, first * THROTTLE_CAP)

    def step_backoff(self) -> Backoff:
        """A fresh backoff for the dispatcher's own failing steps."""
        return Backoff(STEP_DELAY * self.time_scale, STEP_CAP * self.time_scale)


class Backoff:
    """Bounded exponential waits: ``first``, doubled after each failure, at most ``cap``;
    ``reset`` after a success starts again from ``first``."""

    def __init__(self, first: float, cap: float) -> None:
        self._first = first
        self._cap = cap
        self._failures = 0

    def next_delay(self) -> float:
        """The wait after one more failure in a row."""
        delay = doubled(self._first, self._failures, self._cap)
        self._failures += 1
        return delay

    def reset(self) -> None:
        self._failures = 0


def doubled(first: float, times: int, cap: float) -> float:
    """``first`` doubled ``times`` times, at most ``cap`` (the exponent is bounded, so that a
    long run of failures cannot overflow a float)."""
    return min(math.ldexp(first, min(times, 64)), cap)
