"""Lambda's metrics and EMF custom metrics at one-minute resolution, as CloudWatch keeps them.

Recording (the ``invoked``, ``throttled``, ``started`` ... methods) is what the invoke path
calls: it only updates the current minute's objects in memory (no lock, no await, no store
write: the event loop is the only writer). Finished minutes stay in memory for
``retention`` seconds; ``flush`` writes the minutes that changed through a ``MetricsArchive``
(every ``flush_interval`` and at close), and ``open`` reads them back, so a restart loses at
most the seconds since the last flush.

Reading: ``query`` answers what GetMetricStatistics and GetMetricData ask (a metric, its exact
dimension set, a time range, a period, statistics and percentiles); ``list_metrics`` what
ListMetrics asks. See docs/metrics.md for what each metric means and what differs from AWS.

On a store shared by several nodes (``share_interval`` set: a cluster), the minutes that
changed are also written every ``share_interval`` seconds, so other nodes read them within
about that (``store/metric_rows.MetricPeers`` hands them to ``set_peer``), and the levels
(ConcurrentExecutions and the like) also keep each second's peak, so the cluster's level is
the sum of every node's at the same second rather than the highest one node saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any, Protocol

from lambdad.observe import emf
from lambdad.observe.distribution import Distribution
from lambdad.observe.metric_cells import (
    CELL_METRICS,
    GAUGE_METRICS,
    Cell,
    CellKey,
    Dims,
    cell_filter,
    dims_of,
    present,
    resource_of,
    series_of,
)
from lambdad.observe.metric_levels import SUMMED_LEVELS, Levels, running_levels, summed_peak
from lambdad.observe.metric_minutes import Minute, SeriesKey, accounts_of, documents, restore
from lambdad.observe.metric_queries import (
    MINUTE,
    Datapoint,
    MetricId,
    check_query,
    has_dimension,
    statistics_of,
)

log = logging.getLogger(__name__)

LAMBDA = "AWS/Lambda"
#: How long the EMF lines of a function wait before they are parsed (off the invoke path).
_EMF_TICK = 0.2
#: EMF lines kept waiting at most (more are dropped: a function printing metrics faster than
#: they are parsed cannot grow lambdad's memory).
_EMF_BACKLOG = 10_000


class Scoped(Protocol):
    """An account and region (``lambdad.control.arns.Scope`` is one)."""

    @property
    def account_id(self) -> str: ...

    @property
    def region(self) -> str: ...


class MetricsArchive(Protocol):
    """Where minutes are kept across restarts: one document per account, region and minute."""

    async def load(self) -> list[tuple[str, str, int, dict[str, Any]]]: ...

    async def save(self, rows: Sequence[tuple[str, str, int, dict[str, Any]]]) -> None: ...

    async def drop(self, keys: Sequence[tuple[str, str, int]]) -> None: ...


#: Cell keys whose ``_Handles`` are kept (past it the cache starts again).
_KEYS_KEPT = 4096


class _Handles:
    """The keys ``started`` and ``ended`` touch for one cell key, built once."""

    __slots__ = ("concurrency", "provisioned", "provisioned_gauges", "utilization")

    def __init__(self, key: CellKey) -> None:
        account, region, name = key[0], key[1], key[2]
        resource = resource_of(key)
        fn: Dims = (("FunctionName", name),)
        res: Dims = (("FunctionName", name), ("Resource", resource))
        concurrent = "ConcurrentExecutions"
        #: (running-count key, its ConcurrentExecutions series): function, resource, account.
        self.concurrency: tuple[tuple[tuple[str, ...], SeriesKey], ...] = (
            ((account, region, name), (account, region, LAMBDA, concurrent, fn)),
            ((account, region, name, resource), (account, region, LAMBDA, concurrent, res)),
            ((account, region), (account, region, LAMBDA, concurrent, ())),
        )
        self.provisioned = (account, region, name, resource, "p")
        prov = "ProvisionedConcurrentExecutions"
        self.provisioned_gauges: tuple[SeriesKey, ...] = (
            (account, region, LAMBDA, prov, res),
            (account, region, LAMBDA, prov, fn),
        )
        self.utilization: SeriesKey = (
            account, region, LAMBDA, "ProvisionedConcurrencyUtilization", res,
        )  # fmt: skip


class MetricsState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class Metrics:
    def __init__(
        self,
        archive: MetricsArchive | None = None,
        *,
        retention: float = 15 * 86400,
        flush_interval: float = 10.0,
        enabled: bool = True,
        share_interval: float | None = None,
    ) -> None:
        self._archive = archive
        self.retention = retention
        self._flush_interval = flush_interval
        #: On a shared store: seconds after which what changed is written (None: alone).
        self._share_interval = share_interval
        #: Whether anything was recorded since the last flush (``share_interval``'s writes
        #: happen only then).
        self._touched = False
        #: On a shared store, the levels' peaks per second (summed over nodes when read).
        self._levels = None if share_interval is None else Levels(self._minute_at)
        #: ... and the invocations running on the unreserved pool now, per account, region.
        self._pooled: dict[tuple[str, str], int] = {}
        #: ... and what every reservation claims (ClaimedAccountConcurrency's common part).
        self._claimed_base: dict[tuple[str, str], int] = {}
        self.enabled = enabled
        self._minutes: dict[int, Minute] = {}
        self._minute = -1
        self._now = Minute()
        #: Minutes to write at the next flush (the current one is always written).
        self._dirty: set[int] = set()
        #: Per-series totals since start of the finished minutes (Prometheus' counters).
        self.totals: dict[CellKey, Cell] = {}
        #: Invocations running: per (account, region, function), per resource, per account.
        self._running: dict[tuple[str, ...], int] = {}
        self._keys: dict[CellKey, _Handles] = {}
        self._pools: dict[tuple[str, str], tuple[SeriesKey, SeriesKey]] = {}
        #: (account, region, minute) rows past retention, deleted at the next flush.
        self._expired: list[tuple[str, str, int]] = []
        self._emf: deque[tuple[str, str, str, str]] = deque(maxlen=_EMF_BACKLOG)
        #: Other nodes' minutes (a cluster's shared store): minute -> (node, account, region)
        #: -> what that node recorded; merged into every read, never written.
        self._peers: dict[int, dict[tuple[str, str, str], Minute]] = {}
        self._task: asyncio.Task[None] | None = None
        self.state = MetricsState.NEW

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Read back the minutes kept (within retention) and start flushing."""
        if self.state is not MetricsState.NEW:
            raise RuntimeError(f"metrics are {self.state.value}")
        if self._archive is not None:
            self._restore(await self._archive.load())
        self._task = asyncio.create_task(self._tick_forever(), name="metrics")
        self.state = MetricsState.OPEN

    async def close(self) -> None:
        """Parse the EMF lines waiting, write what changed. Idempotent."""
        if self.state is MetricsState.CLOSED:
            return
        self.state = MetricsState.CLOSED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.parse_emf()
        with contextlib.suppress(Exception):
            await self.flush()

    async def _tick_forever(self) -> None:
        last_flush = time.monotonic()
        share = self._share_interval
        tick = _EMF_TICK if share is None else min(_EMF_TICK, share)
        while True:
            await asyncio.sleep(tick)
            try:
                self.parse_emf()
                self.sample_levels()
                since = time.monotonic() - last_flush
                if since >= self._flush_interval or (
                    share is not None and self._touched and since >= share
                ):
                    last_flush = time.monotonic()
                    await self.flush()
            except Exception:  # a failing store: keep recording, try again next time
                log.exception("writing metrics failed")

    # ------------------------------------------------------------ the minute

    def _current(self) -> Minute:
        """The current minute, to record in (marks the metrics changed)."""
        self._touched = True
        minute = int(time.time()) // MINUTE
        if minute != self._minute:
            self._roll(minute)
        return self._now

    def _rolled(self) -> Minute:
        """The current minute, to read."""
        minute = int(time.time()) // MINUTE
        if minute != self._minute:
            self._roll(minute)
        return self._now

    def _roll(self, minute: int) -> None:
        """A new minute: fold the last one into the totals, drop what is past retention."""
        finished = self._now
        if self._minute >= 0:
            self._dirty.add(self._minute)
            for key, cell in finished.cells.items():
                total = self.totals.get(key)
                if total is None:
                    total = self.totals[key] = Cell()
                total.merge(cell)
        self._minute = minute
        self._now = self._minutes.setdefault(minute, Minute())
        oldest = minute - int(self.retention // MINUTE)
        for m in [m for m in self._minutes if m < oldest]:
            gone = self._minutes.pop(m)
            if self._archive is not None:
                self._expired.extend((a, r, m) for a, r in accounts_of(gone))
        for m in [m for m in self._peers if m < oldest]:
            del self._peers[m]

    def _cell(self, key: CellKey) -> Cell:
        cells = self._current().cells
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell()
        return cell

    def _gauge(self, key: SeriesKey, value: float) -> None:
        """A gauge's sample: count, sum, minimum and maximum (no histogram: CloudWatch users
        read these with Maximum, and a bucket per sample would cost a logarithm)."""
        gauges = self._now.gauges
        found = gauges.get(key)
        if found is None:
            found = gauges[key] = Distribution()
        found.count += 1
        found.total += value
        if value > found.maximum:
            found.maximum = value
        if value < found.minimum:
            found.minimum = value

    # ------------------------------------------------------------ recording (the invoke path)

    def invoked(
        self, key: CellKey, duration_ms: float, error: bool, *, provisioned: bool = False
    ) -> None:
        """An invocation ran (it counts in Invocations, Errors and Duration)."""
        if not self.enabled:
            return
        cell = self._cell(key)
        cell.invocations += 1
        if error:
            cell.errors += 1
        if provisioned:
            cell.provisioned_invocations += 1
        duration = cell.duration
        if duration is None:
            duration = cell.duration = Distribution()
        duration.add(duration_ms)

    def spilled(self, key: CellKey) -> None:
        """An invocation ran on demand while every provisioned environment was busy."""
        if self.enabled:
            self._cell(key).spillover += 1

    def throttled(self, key: CellKey) -> None:
        if self.enabled:
            self._cell(key).throttles += 1

    def recursion_stopped(self, key: CellKey) -> None:
        if self.enabled:
            self._cell(key).recursive_dropped += 1

    def async_received(self, key: CellKey) -> None:
        if self.enabled:
            self._cell(key).async_received += 1

    def async_age(self, key: CellKey, age_ms: float) -> None:
        if not self.enabled:
            return
        cell = self._cell(key)
        if cell.async_age is None:
            cell.async_age = Distribution()
        cell.async_age.add(max(0.0, age_ms))

    def async_dropped(self, key: CellKey) -> None:
        if self.enabled:
            self._cell(key).async_dropped += 1

    def dead_letter_failed(self, key: CellKey) -> None:
        if self.enabled:
            self._cell(key).dead_letter_errors += 1

    def destination_failed(self, key: CellKey) -> None:
        if self.enabled:
            self._cell(key).destination_failures += 1

    def iterator_age(self, key: CellKey, age_ms: float) -> None:
        """A stream mapping invoked ``key`` with a batch whose newest record arrived
        ``age_ms`` before (IteratorAge)."""
        if self.enabled:
            cell = self._cell(key)
            if cell.iterator_age is None:
                cell.iterator_age = Distribution()
            cell.iterator_age.add(max(0.0, age_ms))

    def add_count(self, key: SeriesKey, n: int) -> None:
        """``n`` more of a count series kept per series (an event source mapping's event
        counts): ``n`` samples of 1 in the current minute, unit Count."""
        if not self.enabled or n <= 0:
            return
        minute = self._current()
        found = minute.custom.get(key)
        if found is None:
            found = minute.custom[key] = Distribution()
            minute.units[key] = "Count"
        found.add(1.0, n)

    def _handles(self, key: CellKey) -> _Handles:
        """The running-count and gauge keys of ``key``, made once (bounded)."""
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
            found = self._keys[key] = _Handles(key)
        return found

    def started(self, key: CellKey, *, provisioned: tuple[int, int] | None = None) -> None:
        """An invocation of ``key`` starts running (ConcurrentExecutions); ``provisioned``:
        (busy, allocated) of the version's provisioned environments, this one included."""
        if not self.enabled:
            return
        gauges = self._current().gauges
        h = self._handles(key)
        running = self._running
        risen = None if self._levels is None else self._levels.risen
        for count_key, gauge_key in h.concurrency:
            n = running[count_key] = running.get(count_key, 0) + 1
            found = gauges.get(gauge_key)
            if found is None:
                found = gauges[gauge_key] = Distribution()
            found.count += 1
            found.total += n
            if n > found.maximum:
                found.maximum = n
            if n < found.minimum:
                found.minimum = n
            if risen is not None and n > risen.get(gauge_key, 0):
                risen[gauge_key] = n
        if provisioned is not None:
            busy, allocated = provisioned
            running[h.provisioned] = running.get(h.provisioned, 0) + 1
            gauge = self._gauge
            for gauge_key in h.provisioned_gauges:
                gauge(gauge_key, busy)
                if risen is not None and busy > risen.get(gauge_key, 0):
                    risen[gauge_key] = busy
            gauge(h.utilization, busy / allocated if allocated else 0.0)

    def ended(self, key: CellKey, *, provisioned: bool = False) -> None:
        """An invocation that ``started`` ended, however."""
        if not self.enabled:
            return
        h = self._handles(key)
        running = self._running
        for count_key, _ in h.concurrency:
            left = running.get(count_key, 0) - 1
            if left > 0:
                running[count_key] = left
            else:
                running.pop(count_key, None)
        if provisioned:
            left = running.get(h.provisioned, 0) - 1
            if left > 0:
                running[h.provisioned] = left
            else:
                running.pop(h.provisioned, None)

    def pool(self, account: str, region: str, unreserved_running: int, claimed: int) -> None:
        """The account's pool as a lease was taken: UnreservedConcurrentExecutions and
        ClaimedAccountConcurrency."""
        if not self.enabled:
            return
        now = self._current()
        where = (account, region)
        keys = self._pools.get(where)
        if keys is None:
            keys = self._pools[where] = (
                (account, region, LAMBDA, "UnreservedConcurrentExecutions", ()),
                (account, region, LAMBDA, "ClaimedAccountConcurrency", ()),
            )
        self._gauge(keys[0], unreserved_running)
        self._gauge(keys[1], claimed)
        levels = self._levels
        if levels is not None:
            # Claimed is this node's pool plus what every reservation claims (the same on
            # each node): the pool's share is summed over nodes, the reservations' is not.
            self._pooled[where] = unreserved_running
            risen = levels.risen
            for level_key in keys:
                if unreserved_running > risen.get(level_key, 0):
                    risen[level_key] = unreserved_running
            base = self._claimed_base[where] = claimed - unreserved_running
            if base > now.bases.get(keys[1], 0):
                now.bases[keys[1]] = base

    def pool_released(self, account: str, region: str, unreserved_running: int) -> None:
        """A lease of the account's pool was given back (only the levels a cluster sums
        follow it: the gauges are sampled as leases are taken)."""
        if self._levels is not None:
            self._pooled[(account, region)] = unreserved_running

    def sample_levels(self) -> None:
        """On a shared store: write the levels held now and the highest since the last
        sample into the seconds since then (``metric_levels``; a few times a second)."""
        levels = self._levels
        if levels is None:
            return
        held = running_levels(self._running)
        bases = self._rolled().bases
        for where, n in self._pooled.items():
            keys = self._pools.get(where)
            if keys is not None and n > 0:
                held[keys[0]] = held[keys[1]] = n
                base = self._claimed_base.get(where, 0)
                if base > bases.get(keys[1], 0):
                    bases[keys[1]] = base
        levels.tick(held)

    def _minute_at(self, minute_no: int) -> Minute:
        """The minute ``minute_no`` to record in (made if missing; written at the next
        flush)."""
        self._touched = True
        minute = self._minutes.get(minute_no)
        if minute is None:
            minute = self._minutes[minute_no] = Minute()
        if minute_no != self._minute:
            self._dirty.add(minute_no)
        return minute

    def current_cells(self) -> dict[CellKey, Cell]:
        """The current minute's cells (what ``totals`` does not hold yet)."""
        return self._rolled().cells

    def running(self, account: str, region: str, name: str | None = None) -> int:
        """Invocations running now, of a function or of the account and region."""
        key = (account, region) if name is None else (account, region, name)
        return self._running.get(key, 0)

    def running_functions(self) -> list[tuple[str, str, str, int]]:
        """(account, region, function, running) of every function running now."""
        return [(k[0], k[1], k[2], n) for k, n in self._running.items() if len(k) == 3]

    # ------------------------------------------------------------ EMF

    def offer_emf(self, account: str, region: str, log_group: str, line: str) -> None:
        """A log line that looks like EMF (``emf.looks_like``): parsed later, off this path."""
        if self.enabled:
            self._emf.append((account, region, log_group, line))

    def parse_emf(self) -> int:
        """Turn the waiting EMF lines into custom metrics; returns how many metrics."""
        found = 0
        while self._emf:
            account, region, _group, line = self._emf.popleft()
            for point in emf.parse(line):
                self.record_custom(account, region, point)
                found += 1
        return found

    def record_custom(self, account: str, region: str, point: emf.Point) -> None:
        """One custom metric's values at ``point.timestamp_ms`` (within retention)."""
        now = time.time()
        at = point.timestamp_ms / 1000.0
        if not now - self.retention < at <= now + 2 * 3600:
            at = now  # CloudWatch refuses these; the values are kept as of now
        minute_no = int(at) // MINUTE
        self._current()
        minute = self._minutes.setdefault(minute_no, Minute())
        if minute_no != self._minute:
            self._dirty.add(minute_no)
        key = (account, region, point.namespace, point.name, point.dimensions)
        found = minute.custom.get(key)
        if found is None:
            found = minute.custom[key] = Distribution()
        for value, count in point.values:
            found.add(value, count)
        minute.units[key] = point.unit

    # ------------------------------------------------------------ other nodes

    def set_peer(
        self, node: str, account: str, region: str, minute_no: int, doc: dict[str, Any] | None
    ) -> None:
        """Another node's row of one minute, as the store has it now (None: deleted)."""
        oldest = int(time.time() - self.retention) // MINUTE
        rows = self._peers.setdefault(minute_no, {})
        if doc is None or minute_no < oldest:
            rows.pop((node, account, region), None)
            if not rows:
                del self._peers[minute_no]
            return
        minute = Minute()
        try:
            restore(account, region, minute, doc)
        except (KeyError, TypeError, ValueError, IndexError):
            log.warning("metrics of node %s, minute %d unreadable; skipped", node, minute_no)
            return
        rows[(node, account, region)] = minute

    def reset_peers(self, rows: Sequence[tuple[str, str, str, int, dict[str, Any]]]) -> None:
        """Every other node's rows, replacing what was known of them."""
        self._peers = {}
        for node, account, region, minute_no, doc in rows:
            self.set_peer(node, account, region, minute_no, doc)

    def _minute_numbers(self) -> set[int]:
        return set(self._minutes) | set(self._peers)

    def _peer_minutes(self, minute_no: int, account: str, region: str) -> list[Minute]:
        rows = self._peers.get(minute_no)
        if not rows:
            return []
        return [m for (_, a, r), m in list(rows.items()) if a == account and r == region]

    # ------------------------------------------------------------ reading

    def _series(
        self,
        minute: Minute,
        scope: Scoped,
        namespace: str,
        metric: str,
        dims: Dims,
        cached: bool = False,
    ) -> tuple[Distribution | None, str]:
        """One minute of a series; ``cached``: the minute is over, so what is merged for
        Lambda's metrics is kept with it (its cells no longer change)."""
        account, region = scope.account_id, scope.region
        if namespace == LAMBDA and metric in CELL_METRICS:
            unit = CELL_METRICS[metric][2]
            counts = cell_filter(dims)
            if counts is None:
                return None, unit
            cache_key = (account, region, metric, dims)
            if cached and cache_key in minute.merged:
                return minute.merged[cache_key], unit
            cells = [
                cell
                for key, cell in minute.cells.items()
                if key[0] == account and key[1] == region and counts(key)
            ]
            merged = series_of(metric, cells)
            if cached:
                minute.merged[cache_key] = merged
            return merged, unit
        series: SeriesKey = (account, region, namespace, metric, dims)
        if namespace == LAMBDA and metric in GAUGE_METRICS:
            return minute.gauges.get(series), GAUGE_METRICS[metric]
        return minute.custom.get(series), minute.units.get(series, "None")

    def query(
        self,
        scope: Scoped,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        start: float,
        end: float,
        period: int,
        statistics: Sequence[str],
    ) -> list[Datapoint]:
        """The datapoints of one metric (its exact dimension set, as CloudWatch matches)
        between ``start`` and ``end`` (epoch seconds), one per ``period`` seconds (a multiple
        of 60) that has data, oldest first. ``statistics``: CloudWatch's names and
        percentiles (``p99``, ``p99.9``). BadQuery for what CloudWatch refuses."""
        steps = self._query(scope, namespace, metric, dimensions, start, end, period, statistics)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: list[Datapoint] = done.value
                return result

    async def query_async(
        self,
        scope: Scoped,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        start: float,
        end: float,
        period: int,
        statistics: Sequence[str],
    ) -> list[Datapoint]:
        """``query``, letting the event loop run between minutes (a query over many minutes
        of many functions merges thousands of sketches; no slice of it blocks the loop)."""
        steps = self._query(scope, namespace, metric, dimensions, start, end, period, statistics)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: list[Datapoint] = done.value
                return result
            await asyncio.sleep(0)

    def _query(
        self,
        scope: Scoped,
        namespace: str,
        metric: str,
        dimensions: Mapping[str, str],
        start: float,
        end: float,
        period: int,
        statistics: Sequence[str],
    ) -> Generator[None, None, list[Datapoint]]:
        """``query`` one minute at a time (a yield after each)."""
        check_query(start, end, period, statistics)
        self._rolled()
        dims = tuple(sorted(dimensions.items()))
        first = int(start) // MINUTE
        last = math.ceil(end / MINUTE)
        per = period // MINUTE
        buckets: dict[int, Distribution] = {}
        unit = "None"
        summed = namespace == LAMBDA and metric in SUMMED_LEVELS
        for minute_no in sorted(m for m in self._minute_numbers() if first <= m < last):
            parts: list[tuple[Distribution | None, str]] = []
            minute = self._minutes.get(minute_no)  # gone meanwhile: past retention
            if minute is not None:
                parts.append(
                    self._series(
                        minute, scope, namespace, metric, dims, cached=minute_no != self._minute
                    )
                )
            peers = self._peer_minutes(minute_no, scope.account_id, scope.region)
            for peer in peers:
                # A peer's minute is never changed once made (a new row makes a new one).
                parts.append(self._series(peer, scope, namespace, metric, dims, cached=True))
            yield
            slot = first + (minute_no - first) // per * per
            for found, unit_found in parts:
                if found is None or not found.count:
                    continue
                unit = unit_found
                merged = buckets.get(slot)
                if merged is None:
                    merged = buckets[slot] = Distribution()
                merged.merge(found)
            if summed and peers and slot in buckets:
                series: SeriesKey = (scope.account_id, scope.region, namespace, metric, dims)
                mine = [] if minute is None else [minute]
                top = summed_peak([*mine, *peers], series)
                buckets[slot].maximum = max(buckets[slot].maximum, top)
        return [
            Datapoint(slot * MINUTE, unit, statistics_of(buckets[slot], statistics))
            for slot in sorted(buckets)
        ]

    def list_metrics(
        self,
        scope: Scoped,
        namespace: str | None = None,
        metric: str | None = None,
        dimensions: Iterable[tuple[str, str | None]] = (),
        since: float | None = None,
    ) -> list[MetricId]:
        """Every metric with data kept (in retention) that matches: the namespace, the name,
        and each dimension filter (a name, with a value or any value); ``since`` (epoch
        seconds): only metrics with data in a minute from then on."""
        steps = self._list(scope, namespace, metric, dimensions, since)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: list[MetricId] = done.value
                return result

    async def list_metrics_async(
        self,
        scope: Scoped,
        namespace: str | None = None,
        metric: str | None = None,
        dimensions: Iterable[tuple[str, str | None]] = (),
        since: float | None = None,
    ) -> list[MetricId]:
        """``list_metrics``, letting the event loop run between minutes."""
        steps = self._list(scope, namespace, metric, dimensions, since)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: list[MetricId] = done.value
                return result
            await asyncio.sleep(0)

    def _list(
        self,
        scope: Scoped,
        namespace: str | None,
        metric: str | None,
        dimensions: Iterable[tuple[str, str | None]],
        since: float | None = None,
    ) -> Generator[None, None, list[MetricId]]:
        self._rolled()
        account, region = scope.account_id, scope.region
        found: set[MetricId] = set()
        names: dict[CellKey, set[str]] = {}
        first = -1 if since is None else int(since) // MINUTE
        for minute_no in [m for m in self._minute_numbers() if m >= first]:
            minute = self._minutes.get(minute_no)
            minutes = self._peer_minutes(minute_no, account, region)
            if minute is not None:
                minutes.append(minute)
            for one in minutes:
                for key, cell in list(one.cells.items()):
                    if key[0] == account and key[1] == region:
                        names.setdefault(key, set()).update(present(cell))
                for series in (one.gauges, one.custom):
                    for k in list(series):
                        if k[0] == account and k[1] == region:
                            found.add(MetricId(k[2], k[3], k[4]))
            yield
        for key, metrics in names.items():
            for dims in dims_of(key):
                found.update(MetricId(LAMBDA, name, dims) for name in metrics)
        wanted = list(dimensions)
        return sorted(
            (
                m
                for m in found
                if (namespace is None or m.namespace == namespace)
                and (metric is None or m.name == metric)
                and all(has_dimension(m.dimensions, n, v) for n, v in wanted)
            ),
            key=lambda m: (m.namespace, m.name, m.dimensions),
        )

    # ------------------------------------------------------------ keeping

    async def flush(self) -> None:
        """Write the minutes that changed since the last flush (and the current one)."""
        if self._archive is None:
            return
        self._rolled()
        self.sample_levels()
        self._touched = False
        expired, self._expired = self._expired, []
        if expired:
            await self._archive.drop(expired)
        dirty, self._dirty = self._dirty, set()
        dirty.add(self._minute)
        rows: list[tuple[str, str, int, dict[str, Any]]] = []
        for minute_no in sorted(dirty):
            minute = self._minutes.get(minute_no)
            if minute is not None:
                rows.extend(documents(minute_no, minute))
        try:
            await self._archive.save(rows)
        except BaseException:
            self._dirty |= dirty
            self._touched = True
            raise

    def _restore(self, rows: list[tuple[str, str, int, dict[str, Any]]]) -> None:
        oldest = int(time.time() - self.retention) // MINUTE
        for account, region, minute_no, document in rows:
            if minute_no < oldest:
                self._expired.append((account, region, minute_no))
                continue
            try:
                restore(account, region, self._minutes.setdefault(minute_no, Minute()), document)
            except (KeyError, TypeError, ValueError, IndexError):
                log.warning(
                    "metrics of minute %d for %s/%s unreadable; skipped", minute_no, account, region
                )
