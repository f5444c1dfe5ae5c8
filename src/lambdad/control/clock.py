"""The schedulers' clock: real time, or a test clock that starts at a given instant and runs
faster (``LAMBDAD_SCHEDULER_CLOCK``), so schedules can be watched firing in seconds."""

from __future__ import annotations

import asyncio
import time


class SchedulerClock:
    """``now()`` in epoch seconds: ``start`` when the clock was made (or at the real time
    ``origin``, when given), advancing ``speed`` times faster than real time (``start`` None: the
    real clock)."""

    def __init__(
        self, start: float | None = None, speed: float = 1.0, origin: float | None = None
    ) -> None:
        self._origin = time.time() if origin is None or start is None else origin
        self._start = self._origin if start is None else start
        self.speed = speed

    @property
    def began(self) -> float:
        """What the clock read at its origin: when this lambdad started (the real clock, or a
        test clock of its own), or the shared start of a cluster's test clock."""
        return self._start

    def now(self) -> float:
        return self._start + (time.time() - self._origin) * self.speed

    def real_delay(self, until: float) -> float:
        """Real seconds until the clock reads ``until`` (0 when it already has)."""
        return max(0.0, (until - self.now()) / self.speed)

    async def sleep_until(self, until: float) -> None:
        delay = self.real_delay(until)
        if delay > 0:
            await asyncio.sleep(delay)
