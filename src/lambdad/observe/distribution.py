"""A metric's values in one period: count, sum, min, max and a compact log-bucket histogram.

The histogram is a DDSketch-style sketch: a positive value ``v`` falls in bucket
``ceil(log(v) / log(GAMMA))``, so every bucket spans values within a factor ``GAMMA`` of each
other and a percentile read from it is within ``(GAMMA - 1) / 2`` (1 %) of a value of the
sample. Zero and negative values share one bucket (``ZERO``). Sketches of different minutes,
versions or functions merge by adding their buckets, so percentiles over any period and any
dimension set are computed from the merged buckets, never averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Bucket width: each bucket's upper bound is ``GAMMA`` times its lower one.
GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
_INV_LOG_GAMMA = 1.0 / _LOG_GAMMA
#: The bucket of values <= 0.
ZERO = -(2**31)


def bucket_of(value: float) -> int:
    """The bucket ``value`` falls in."""
    if value <= 0.0:
        return ZERO
    return math.ceil(math.log(value) * _INV_LOG_GAMMA)


def bucket_value(bucket: int) -> float:
    """The value a bucket stands for: the middle of its range (relative error <= 1 %)."""
    if bucket == ZERO:
        return 0.0
    return 2.0 * GAMMA**bucket / (GAMMA + 1.0)


def bucket_upper(bucket: int) -> float:
    """The largest value that falls in ``bucket``."""
    return 0.0 if bucket == ZERO else GAMMA**bucket


class Distribution:
    """Values seen in one period. ``add`` costs a logarithm and a dict update."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.count = 0.0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.buckets: dict[int, float] = {}

    def add(self, value: float, times: float = 1.0) -> None:
        self.count += times
        self.total += value * times
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        bucket = ZERO if value <= 0.0 else math.ceil(math.log(value) * _INV_LOG_GAMMA)
        buckets = self.buckets
        buckets[bucket] = buckets.get(bucket, 0.0) + times

    def merge(self, other: Distribution) -> None:
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        buckets = self.buckets
        for bucket, n in other.buckets.items():
            buckets[bucket] = buckets.get(bucket, 0.0) + n

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100): the value of the bucket holding that rank, kept
        within the sample's minimum and maximum (so p0 and p100 are exact)."""
        if not self.count:
            return math.nan
        if p <= 0:
            return self.minimum
        if p >= 100:
            return self.maximum
        rank = p / 100.0 * self.count
        seen = 0.0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return min(self.maximum, max(self.minimum, bucket_value(bucket)))
        return self.maximum

    def cumulative(self, bounds: Sequence[float]) -> list[float]:
        """For each of the ascending ``bounds``, how many values are at most it (whole
        buckets: a bucket that straddles a bound counts when its middle is within it)."""
        counts: list[float] = []
        ordered = sorted(self.buckets.items())
        seen = 0.0
        index = 0
        for bound in bounds:
            while index < len(ordered) and bucket_value(ordered[index][0]) <= bound:
                seen += ordered[index][1]
                index += 1
            counts.append(seen)
        return counts

    def to_json(self) -> list[Any]:
        return [self.count, self.total, self.minimum, self.maximum, list(self.buckets.items())]

    @classmethod
    def from_json(cls, row: list[Any]) -> Distribution:
        made = cls()
        made.count, made.total, made.minimum, made.maximum = (float(x) for x in row[:4])
        made.buckets = {int(b): float(n) for b, n in row[4]}
        return made
