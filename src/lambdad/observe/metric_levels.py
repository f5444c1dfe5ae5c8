"""Levels (ConcurrentExecutions and the like) second by second, so a cluster can sum them.

On one node a level's gauge is sampled when it rises (``Metrics.started``), and its Maximum is
the most that ran at once. Several nodes' samples cannot be summed: their peaks may lie at
different instants. So on a shared store each node also keeps, for every second of the
minute, the highest level it held in that second (``Minute.peaks``), and the cluster's level
at a second is the sum of every node's for that second (``summed_peak``).

The invoke path only notes how high each level rose (``Levels.risen``: a dictionary lookup
per level as an invocation starts); ``tick``, a few times a second off that path, writes the
highest level seen since the last tick, or held now, into each second since the last tick.
So a peak is placed within one tick of when it happened (``Metrics``' tick, 0.2 s): two nodes
each running an invocation within the same tick, one after the other, count 2 for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from lambdad.observe.metric_cells import Dims
from lambdad.observe.metric_minutes import Minute, SeriesKey

MINUTE = 60
LAMBDA = "AWS/Lambda"
#: Levels summed over nodes second by second (``Minute.peaks``): what each node runs or holds
#: adds up to the cluster's. ``ProvisionedConcurrencyUtilization`` (a ratio) is not one.
SUMMED_LEVELS = frozenset(
    {
        "ConcurrentExecutions",
        "UnreservedConcurrentExecutions",
        "ClaimedAccountConcurrency",
        "ProvisionedConcurrentExecutions",
    }
)
#: The most seconds one tick fills (a tick late by more fills its last hour only).
_FILL_MOST = 3600


class Levels:
    """One node's levels, written into its minutes second by second.

    ``minute_of(minute_no)`` is the node's minute of that number (made if missing, and marked
    to be written again)."""

    def __init__(self, minute_of: Callable[[int], Minute]) -> None:
        self._minute_of = minute_of
        #: The highest level of each series since the last tick (the invoke path raises it).
        self.risen: dict[SeriesKey, float] = {}
        #: The second of the last tick (None: none yet).
        self._last: int | None = None

    def tick(self, held: Mapping[SeriesKey, float]) -> None:
        """Write, into each second since the last tick, each series' highest level since
        then: what ``risen`` saw, or what is ``held`` now (the levels not at 0)."""
        now = int(time.time())
        first = now if self._last is None else max(self._last, now - _FILL_MOST)
        self._last = now
        risen, self.risen = self.risen, {}
        for key in risen.keys() | held.keys():
            top = max(risen.get(key, 0.0), held.get(key, 0.0))
            if top > 0:
                for second in range(first, now + 1):
                    self._raise(key, second, top)

    def _raise(self, key: SeriesKey, second: int, level: float) -> None:
        minute = self._minute_of(second // MINUTE)
        seconds = minute.peaks.get(key)
        if seconds is None:
            seconds = minute.peaks[key] = {}
        at = second % MINUTE
        if seconds.get(at, -1.0) < level:
            seconds[at] = level


def running_levels(running: Mapping[tuple[str, ...], int]) -> dict[SeriesKey, float]:
    """The levels held now, from ``Metrics``' running counts: per (account, region), per
    (..., function), per (..., function, resource) ConcurrentExecutions, and per (...,
    function, resource, "p") the provisioned environments busy
    (ProvisionedConcurrentExecutions of the resource, and summed, of the function)."""
    held: dict[SeriesKey, float] = {}
    concurrent, provisioned = "ConcurrentExecutions", "ProvisionedConcurrentExecutions"
    for count_key, n in running.items():
        account, region = count_key[0], count_key[1]
        if len(count_key) == 2:
            held[(account, region, LAMBDA, concurrent, ())] = n
            continue
        fn: Dims = (("FunctionName", count_key[2]),)
        if len(count_key) == 3:
            held[(account, region, LAMBDA, concurrent, fn)] = n
            continue
        res: Dims = (*fn, ("Resource", count_key[3]))
        if len(count_key) == 4:
            held[(account, region, LAMBDA, concurrent, res)] = n
        else:
            held[(account, region, LAMBDA, provisioned, res)] = n
            whole = (account, region, LAMBDA, provisioned, fn)
            held[whole] = held.get(whole, 0) + n
    return held


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
