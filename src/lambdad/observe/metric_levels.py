"""Levels (ConcurrentExecutions and the like) second by second, so a cluster can sum them.

On one node a level's gauge is sampled when it rises (``Metrics.started``), and its Maximum is
the most that ran at once. Several nodes' samples cannot be summed: their peaks may lie at
different instants. So on a shared store each node also keeps, for every second of the
minute, the highest level it held in that second (``Minute.peaks``): a level set at one
second is held, second after second, until it changes, and the seconds in between are filled
in when it does (or at the next flush, for a level still held). The cluster's level at a
second is then the sum of every node's for that second (``summed_peak``), exact to the
second: two nodes each running one invocation within the same second, one after the other,
count 2 for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from lambdad.observe.metric_minutes import Minute, SeriesKey

MINUTE = 60
#: The most seconds filled in at once (a level held longer, with no change and no flush,
#: is filled in for its last hour only).
_FILL_MOST = 3600


class Levels:
    """The levels one node holds now, and their per-second peaks written into its minutes.

    ``minute_of(minute_no)`` is the node's minute of that number (made if missing, and marked
    to be written again)."""

    def __init__(self, minute_of: Callable[[int], Minute]) -> None:
        self._minute_of = minute_of
        #: series -> (the second it was last set or filled to, its level since).
        self._held: dict[SeriesKey, tuple[int, float]] = {}

    def set(self, key: SeriesKey, level: float, base: float | None = None) -> None:
        """``key``'s level is ``level`` from now on; ``base``: the part of it every node
        counts alike (kept per minute, the largest; not summed over nodes)."""
        now = int(time.time())
        held = self._held.get(key)
        if held is not None and held[1] > 0:
            self._fill(key, held[0], now, held[1])
        self._raise(key, now, level)
        if base is not None:
            minute = self._minute_of(now // MINUTE)
            if base > minute.bases.get(key, 0.0):
                minute.bases[key] = base
        if level > 0:
            self._held[key] = (now, level)
        else:
            self._held.pop(key, None)

    def fill(self) -> None:
        """Carry every level held up to this second (before a flush)."""
        now = int(time.time())
        for key, (since, level) in list(self._held.items()):
            self._fill(key, since, now, level)
            self._held[key] = (now, level)

    def _fill(self, key: SeriesKey, since: int, until: int, level: float) -> None:
        for second in range(max(since, until - _FILL_MOST), until + 1):
            self._raise(key, second, level)

    def _raise(self, key: SeriesKey, second: int, level: float) -> None:
        minute = self._minute_of(second // MINUTE)
        seconds = minute.peaks.get(key)
        if seconds is None:
            seconds = minute.peaks[key] = {}
        at = second % MINUTE
        if seconds.get(at, -1.0) < level:
            seconds[at] = level


def summed_peak(minutes: Sequence[Minute], series: SeriesKey) -> float:
    """The highest level of ``series`` at one second, summed over ``minutes`` (one minute as
    several nodes kept it), plus the largest of their common ``base``."""
    seconds: dict[int, float] = {}
    base = 0.0
    for minute in minutes:
        for second, level in minute.peaks.get(series, {}).items():
            seconds[second] = seconds.get(second, 0.0) + level
        base = max(base, minute.bases.get(series, 0.0))
    return max(seconds.values(), default=0.0) + base
