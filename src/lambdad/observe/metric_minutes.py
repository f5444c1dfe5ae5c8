"""One minute of metrics in memory, and as the documents it is kept as in the store.

A ``Minute`` holds every account's cells (Lambda's counts and durations, ``metric_cells``),
gauges and custom (EMF) series of one minute. ``documents`` splits it into one JSON-ready
document per account and region; ``restore`` reads one back.
"""

from __future__ import annotations

from typing import Any

from lambdad.observe.distribution import Distribution
from lambdad.observe.metric_cells import Cell, CellKey, Dims

#: (account, region, namespace, metric, dims) of a gauge or custom series.
SeriesKey = tuple[str, str, str, str, Dims]
#: (account, region, minute, document): one row of the store.
Row = tuple[str, str, int, dict[str, Any]]


class Minute:
    """Everything recorded in one minute, all accounts together."""

    __slots__ = ("bases", "cells", "custom", "gauges", "merged", "peaks", "units")

    def __init__(self) -> None:
        self.cells: dict[CellKey, Cell] = {}
        self.gauges: dict[SeriesKey, Distribution] = {}
        self.custom: dict[SeriesKey, Distribution] = {}
        #: custom series -> its unit (the last one given).
        self.units: dict[SeriesKey, str] = {}
        #: (account, region, metric, dims) -> Lambda's metric merged over the minute's cells,
        #: kept once the minute is over (``Metrics.query``).
        self.merged: dict[tuple[str, str, str, Dims], Distribution | None] = {}
        #: Levels summed over nodes (a cluster, ``metrics.SUMMED_LEVELS``): series -> second
        #: of the minute -> the highest level this node had in it.
        self.peaks: dict[SeriesKey, dict[int, float]] = {}
        #: ... and the part of a level every node counts alike (the reservations claimed).
        self.bases: dict[SeriesKey, float] = {}


def accounts_of(minute: Minute) -> set[tuple[str, str]]:
    """The (account, region) pairs with something recorded in ``minute``."""
    seen: set[tuple[str, str]] = {(k[0], k[1]) for k in minute.cells}
    seen.update((k[0], k[1]) for k in minute.gauges)
    seen.update((k[0], k[1]) for k in minute.custom)
    return seen


def documents(minute_no: int, minute: Minute) -> list[Row]:
    """``minute`` as one document per account and region."""
    docs: dict[tuple[str, str], dict[str, Any]] = {}

    def doc(account: str, region: str) -> dict[str, Any]:
        return docs.setdefault((account, region), {"cells": [], "gauges": [], "custom": []})

    for key, cell in minute.cells.items():
        doc(key[0], key[1])["cells"].append([key[2], key[3], key[4], cell.to_json()])
    for gauge, dist in minute.gauges.items():
        doc(gauge[0], gauge[1])["gauges"].append(
            [gauge[2], gauge[3], [list(d) for d in gauge[4]], dist.to_json()]
        )
    for series, dist in minute.custom.items():
        unit = minute.units.get(series, "None")
        doc(series[0], series[1])["custom"].append(
            [series[2], series[3], [list(d) for d in series[4]], unit, dist.to_json()]
        )
    for series, seconds in minute.peaks.items():
        doc(series[0], series[1]).setdefault("peaks", []).append(
            [
                series[2],
                series[3],
                [list(d) for d in series[4]],
                sorted(seconds.items()),
                minute.bases.get(series, 0.0),
            ]
        )
    return [(a, r, minute_no, d) for (a, r), d in docs.items()]


def restore(account: str, region: str, minute: Minute, document: dict[str, Any]) -> None:
    """Add one stored document (``documents``) of ``account`` and ``region`` to ``minute``;
    KeyError, TypeError, ValueError or IndexError when it is not one."""
    for name, qualifier, version, row in document.get("cells", []):
        minute.cells[(account, region, name, qualifier, version)] = Cell.from_json(row)
    for namespace, metric, dims, row in document.get("gauges", []):
        gauge: SeriesKey = (account, region, namespace, metric, tuple((n, v) for n, v in dims))
        minute.gauges[gauge] = Distribution.from_json(row)
    for namespace, metric, dims, unit, row in document.get("custom", []):
        custom: SeriesKey = (account, region, namespace, metric, tuple((n, v) for n, v in dims))
        minute.custom[custom] = Distribution.from_json(row)
        minute.units[custom] = str(unit)
    for namespace, metric, dims, seconds, base in document.get("peaks", []):
        level: SeriesKey = (account, region, namespace, metric, tuple((n, v) for n, v in dims))
        minute.peaks[level] = {int(s): float(n) for s, n in seconds}
        if base:
            minute.bases[level] = float(base)
