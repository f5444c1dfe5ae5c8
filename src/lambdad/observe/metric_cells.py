"""What lambdad records about one function version, alias and account in one minute.

A ``Cell`` is one minute of one ``CellKey``: the account, the region, the function, the
qualifier the caller named (None: unqualified) and the version that ran. Counts and
distributions are kept only at that finest level and summed into every coarser dimension set
when read (``Metrics.query``); gauges (concurrency) cannot be summed that way and are kept per
series instead (``Metrics`` ``gauges``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lambdad.observe.distribution import Distribution

#: (account, region, function, qualifier named or None, executed version)
CellKey = tuple[str, str, str, str | None, str]
#: Dimensions as CloudWatch names them, sorted by name: (("FunctionName", "f"), ...).
Dims = tuple[tuple[str, str], ...]

_COUNTS = (
    "invocations",
    "errors",
    "throttles",
    "provisioned_invocations",
    "spillover",
    "async_received",
    "async_dropped",
    "dead_letter_errors",
    "destination_failures",
    "recursive_dropped",
)

_DISTRIBUTIONS = ("duration", "async_age", "iterator_age")


class Cell:
    __slots__ = (*_COUNTS, "async_age", "duration", "iterator_age")

    def __init__(self) -> None:
        self.invocations = 0
        self.errors = 0
        self.throttles = 0
        self.provisioned_invocations = 0
        self.spillover = 0
        self.async_received = 0
        self.async_dropped = 0
        self.dead_letter_errors = 0
        self.destination_failures = 0
        self.recursive_dropped = 0
        self.duration: Distribution | None = None
        self.async_age: Distribution | None = None
        #: Stream mappings' invocations: ms from the newest record's arrival to the invoke.
        self.iterator_age: Distribution | None = None

    def merge(self, other: Cell) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _DISTRIBUTIONS:
            theirs = getattr(other, name)
            if theirs is not None:
                mine = getattr(self, name)
                if mine is None:
                    mine = Distribution()
                    setattr(self, name, mine)
                mine.merge(theirs)

    def to_json(self) -> list[Any]:
        counts: list[Any] = [getattr(self, name) for name in _COUNTS]
        return [
            *counts,
            self.duration.to_json() if self.duration else None,
            self.async_age.to_json() if self.async_age else None,
            self.iterator_age.to_json() if self.iterator_age else None,
        ]

    @classmethod
    def from_json(cls, row: list[Any]) -> Cell:
        cell = cls()
        for name, value in zip(_COUNTS, row, strict=False):
            setattr(cell, name, int(value))
        duration, age = row[len(_COUNTS)], row[len(_COUNTS) + 1]
        cell.duration = Distribution.from_json(duration) if duration else None
        cell.async_age = Distribution.from_json(age) if age else None
        # rows written before IteratorAge was kept end with the async age
        stream_age = row[len(_COUNTS) + 2] if len(row) > len(_COUNTS) + 2 else None
        cell.iterator_age = Distribution.from_json(stream_age) if stream_age else None
        return cell


#: Lambda's metrics read from cells: name -> (how they are read, the cell's attribute, unit).
#: "count": n samples of 1; "errors": one sample per invocation, 1 for an error and 0
#: otherwise (Average: the error rate); "throttles": a count, and 0 in a minute with
#: invocations and no throttle (as AWS shows); "values": the cell's distribution.
CELL_METRICS: dict[str, tuple[str, str, str]] = {
    "Invocations": ("count", "invocations", "Count"),
    "Errors": ("errors", "errors", "Count"),
    "Throttles": ("throttles", "throttles", "Count"),
    "Duration": ("values", "duration", "Milliseconds"),
    "ProvisionedConcurrencyInvocations": ("count", "provisioned_invocations", "Count"),
    "ProvisionedConcurrencySpilloverInvocations": ("count", "spillover", "Count"),
    "AsyncEventsReceived": ("count", "async_received", "Count"),
    "AsyncEventAge": ("values", "async_age", "Milliseconds"),
    "AsyncEventsDropped": ("count", "async_dropped", "Count"),
    "DeadLetterErrors": ("count", "dead_letter_errors", "Count"),
    "DestinationDeliveryFailures": ("count", "destination_failures", "Count"),
    "RecursiveInvocationsDropped": ("count", "recursive_dropped", "Count"),
    "IteratorAge": ("values", "iterator_age", "Milliseconds"),
}


def series_of(metric: str, cells: Iterable[Cell]) -> Distribution | None:
    """``metric`` over ``cells`` together (None: no sample): counts are summed first and made
    into samples once; distributions are merged."""
    kind, attribute, _ = CELL_METRICS[metric]
    if kind == "values":
        merged: Distribution | None = None
        for cell in cells:
            found = getattr(cell, attribute)
            if found is not None:
                if merged is None:
                    merged = Distribution()
                merged.merge(found)
        return merged
    total = invocations = 0
    for cell in cells:
        total += getattr(cell, attribute)
        invocations += cell.invocations
    made = Distribution()
    if kind == "errors":
        if not invocations:
            return None
        if total:
            made.add(1.0, total)
        if invocations > total:
            made.add(0.0, invocations - total)
    elif total:
        made.add(1.0, total)
    elif kind == "throttles" and invocations:
        made.add(0.0)
    else:
        return None
    return made


def present(cell: Cell) -> list[str]:
    """The metrics a cell has a sample of (what ListMetrics lists)."""
    found = []
    for metric, (kind, attribute, _) in CELL_METRICS.items():
        value = getattr(cell, attribute)
        if value or (kind in ("errors", "throttles") and cell.invocations):
            found.append(metric)
    return found


#: Gauges, kept per series: name -> unit.
GAUGE_METRICS = {
    "ConcurrentExecutions": "Count",
    "UnreservedConcurrentExecutions": "Count",
    "ClaimedAccountConcurrency": "Count",
    "ProvisionedConcurrentExecutions": "Count",
    "ProvisionedConcurrencyUtilization": "None",
}


def resource_of(key: CellKey) -> str:
    """The ``Resource`` dimension: the function, or ``function:qualifier``."""
    return key[2] if key[3] is None else f"{key[2]}:{key[3]}"


def _executed_version(key: CellKey) -> bool:
    """Whether the cell's invocations count under ``ExecutedVersion`` (named by an alias)."""
    qualifier = key[3]
    return qualifier is not None and qualifier != key[4] and not qualifier.isdigit()


def cell_filter(dims: Dims) -> Callable[[CellKey], bool] | None:
    """Which cells (of one account and region) count towards the series ``dims``: the same
    answer as ``dims in dims_of(key)``, decided once per query. None: no cell does."""
    found = dict(dims)
    names = sorted(found)
    if not names:
        return lambda key: True
    name = found.get("FunctionName")
    if name is None:
        return None
    if names == ["FunctionName"]:
        return lambda key: key[2] == name
    resource = found.get("Resource")
    if names == ["FunctionName", "Resource"]:
        return lambda key: key[2] == name and resource_of(key) == resource
    version = found.get("ExecutedVersion")
    if names == ["ExecutedVersion", "FunctionName", "Resource"]:
        return lambda key: (
            key[2] == name
            and key[4] == version
            and resource_of(key) == resource
            and _executed_version(key)
        )
    return None


def dims_of(key: CellKey) -> list[Dims]:
    """Every dimension set a cell counts towards: the account (none), the function, the
    resource, and for an alias the version it ran (``ExecutedVersion``)."""
    name = key[2]
    resource = resource_of(key)
    found: list[Dims] = [(), (("FunctionName", name),)]
    found.append((("FunctionName", name), ("Resource", resource)))
    if _executed_version(key):
        found.append((("ExecutedVersion", key[4]), ("FunctionName", name), ("Resource", resource)))
    return found
