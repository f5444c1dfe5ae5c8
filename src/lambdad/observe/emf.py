"""CloudWatch embedded metric format: metrics a function prints as JSON log lines.

A line is EMF when it is a JSON object whose ``_aws`` member holds ``Timestamp`` (epoch ms)
and ``CloudWatchMetrics``: directives, each a ``Namespace``, ``Dimensions`` (a list of
dimension sets, each a list of member names) and ``Metrics`` (``Name``, optional ``Unit`` and
``StorageResolution``). The values are the object's top-level members of those names: a
number, an array of numbers (at most 100), or ``{"Values": [...], "Counts": [...]}``.
Dimension values are the top-level string members the sets name. This is what Powertools'
``Metrics`` and the ``aws-embedded-metrics`` libraries print.

``looks_like`` is the cheap test the log path runs on every line; ``parse`` runs later, off
the invoke path. A malformed line yields no metric (as CloudWatch Logs keeps the line and
extracts nothing).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

#: CloudWatch's limits: values per metric, dimensions per set, metrics per directive.
MAX_VALUES = 100
MAX_DIMENSIONS = 30
MAX_METRICS = 100
#: A line longer than this is not parsed (CloudWatch Logs' event limit: 256 KB).
MAX_LINE = 256 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    unit: str
    timestamp_ms: int
    #: (value, how many times it was seen)
    values: tuple[tuple[float, float], ...]


def looks_like(line: str) -> bool:
    """Whether ``line`` may be EMF: a JSON object naming ``_aws`` (no parsing)."""
    return '"_aws"' in line and line.lstrip()[:1] == "{"


def parse(line: str) -> list[Point]:
    """The metrics an EMF line carries; [] when it is not valid EMF."""
    if len(line) > MAX_LINE:
        return []
    try:
        document = json.loads(line)
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    meta = document.get("_aws")
    if not isinstance(meta, dict):
        return []
    timestamp = meta.get("Timestamp")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(timestamp, int | float) or not _is_number(timestamp):
        return []
    if not isinstance(directives, list):
        return []
    points: list[Point] = []
    for directive in directives:
        if isinstance(directive, dict):
            points.extend(_directive(document, directive, int(timestamp)))
    return points


def _directive(document: dict[str, Any], directive: dict[str, Any], at: int) -> list[Point]:
    namespace = directive.get("Namespace")
    dimension_sets = directive.get("Dimensions", [[]])
    metrics = directive.get("Metrics")
    if not isinstance(namespace, str) or not 0 < len(namespace) <= 255:
        return []
    if namespace.startswith("AWS/") or not isinstance(metrics, list):
        return []
    if not isinstance(dimension_sets, list) or len(metrics) > MAX_METRICS:
        return []
    sets = [_dimensions(document, names) for names in dimension_sets]
    if any(found is None for found in sets):
        return []
    points: list[Point] = []
    for metric in metrics:
        if not isinstance(metric, dict) or not isinstance(metric.get("Name"), str):
            continue
        name = metric["Name"]
        unit = metric.get("Unit", "None")
        values = _values(document.get(name))
        if not values or not isinstance(unit, str):
            continue
        for dims in sets:
            assert dims is not None
            points.append(Point(namespace, name, dims, unit, at, values))
    return points


def _dimensions(document: dict[str, Any], names: Any) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(names, list) or len(names) > MAX_DIMENSIONS:
        return None
    found: dict[str, str] = {}
    for name in names:
        value = document.get(name) if isinstance(name, str) else None
        if not isinstance(value, str):
            return None
        found[name] = value
    return tuple(sorted(found.items()))


def _values(raw: Any) -> tuple[tuple[float, float], ...]:
    if _is_number(raw):
        return ((float(raw), 1.0),)
    if isinstance(raw, list) and 0 < len(raw) <= MAX_VALUES and all(map(_is_number, raw)):
        return tuple((float(v), 1.0) for v in raw)
    if isinstance(raw, dict):
        values, counts = raw.get("Values"), raw.get("Counts")
        if (
            isinstance(values, list)
            and isinstance(counts, list)
            and 0 < len(values) == len(counts) <= MAX_VALUES
            and all(map(_is_number, values))
            and all(_is_number(c) and c > 0 for c in counts)
        ):
            return tuple((float(v), float(c)) for v, c in zip(values, counts, strict=True))
    return ()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
