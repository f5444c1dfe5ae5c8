"""What a metrics query is answered with, and CloudWatch's rules for asking one."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from lambdad.observe.distribution import Distribution
from lambdad.observe.metric_cells import Dims

MINUTE = 60
#: Statistics CloudWatch names; anything else must be a percentile ``pNN`` / ``pNN.NN``.
STATISTICS = ("SampleCount", "Sum", "Minimum", "Maximum", "Average")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,10})?|100)$")


class BadQuery(ValueError):
    """A query CloudWatch would refuse (the message says why, in CloudWatch's words)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Datapoint:
    #: The start of the period (epoch seconds).
    timestamp: int
    unit: str
    #: Statistic or percentile name -> value.
    values: dict[str, float]


@dataclasses.dataclass(frozen=True, slots=True)
class MetricId:
    namespace: str
    name: str
    dimensions: Dims


def has_dimension(dims: Dims, name: str, value: str | None) -> bool:
    """Whether ``dims`` names ``name`` (with ``value``, unless None: any value)."""
    return any(n == name and (value is None or v == value) for n, v in dims)


def check_query(start: float, end: float, period: int, statistics: Sequence[str]) -> None:
    """BadQuery for what CloudWatch refuses: a period that is not a positive multiple of
    60, an end not after the start, no or an unknown statistic."""
    if period <= 0 or period % MINUTE:
        raise BadQuery("The parameter Period must be a multiple of 60.")
    if end <= start:
        raise BadQuery("The parameter StartTime must be less than the parameter EndTime.")
    if not statistics:
        raise BadQuery(
            "At least one of the parameters Statistics and ExtendedStatistics must be specified."
        )
    for name in statistics:
        if name not in STATISTICS and not _PERCENTILE.match(name):
            raise BadQuery(f"The value {name} for parameter Statistics is not valid.")


def statistics_of(dist: Distribution, statistics: Sequence[str]) -> dict[str, float]:
    """The asked statistics and percentiles of one period's values."""
    values: dict[str, float] = {}
    for name in statistics:
        if name == "SampleCount":
            values[name] = dist.count
        elif name == "Sum":
            values[name] = dist.total
        elif name == "Minimum":
            values[name] = dist.minimum
        elif name == "Maximum":
            values[name] = dist.maximum
        elif name == "Average":
            values[name] = dist.total / dist.count
        else:
            values[name] = dist.percentile(float(name[1:]))
    return values
