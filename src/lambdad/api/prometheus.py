"""``GET /metrics``: lambdad's metrics in Prometheus' text exposition format.

Rendered by the official ``prometheus_client`` from a collector that reads ``Metrics`` at
scrape time (nothing is updated per invoke but lambdad's own minute cells, so the invoke path
takes no lock of the client library). Counters and the duration histogram are totals since
lambdad started, per account, region, function and resource (``function`` or
``function:qualifier``); gauges are the figures of now. Function URL requests never reach
this route: they are told apart by their Host first (``url_front``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from lambdad.observe.distribution import Distribution
from lambdad.observe.metric_cells import Cell, resource_of
from lambdad.observe.metrics import Metrics

OwnGauges = Callable[[], dict[str, float]]
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
OWN_GAUGES: web.AppKey[OwnGauges] = web.AppKey("own_gauges")

LABELS = ["account", "region", "function", "resource"]
#: The duration histogram's upper bounds, in seconds.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
)  # fmt: skip
#: Counters: name, help, the cell's attribute.
COUNTERS = (
    ("lambdad_invocations", "Invocations that ran (Lambda's Invocations)", "invocations"),
    ("lambdad_errors", "Invocations that ended in a function error", "errors"),
    ("lambdad_throttles", "Invocation requests throttled", "throttles"),
    ("lambdad_provisioned_invocations", "Invocations run on provisioned concurrency",
     "provisioned_invocations"),
    ("lambdad_provisioned_spillover_invocations",
     "Invocations run on demand while provisioned concurrency was all in use", "spillover"),
    ("lambdad_async_events_received", "Asynchronous events queued", "async_received"),
    ("lambdad_async_events_dropped", "Asynchronous events dropped after their last failure",
     "async_dropped"),
    ("lambdad_dead_letter_errors", "Dead letters not delivered", "dead_letter_errors"),
    ("lambdad_destination_delivery_failures", "Destination records not delivered",
     "destination_failures"),
    ("lambdad_recursive_invocations_dropped", "Invocations stopped as a recursive loop",
     "recursive_dropped"),
)  # fmt: skip

#: The classic text format every Prometheus scrapes (what ``generate_latest`` writes with its
#: default escaping; newer clients label it 1.0.0, which older servers do not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

routes = web.RouteTableDef()


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What a scrape shows, copied on the event loop so that rendering can run in a thread:
    cells since start by (account, region, function, resource), invocations running now,
    lambdad's own gauges."""

    totals: dict[tuple[str, str, str, str], Cell]
    running: list[tuple[str, str, str, int]]
    own: dict[str, float]


def snapshot(metrics: Metrics, own: dict[str, float]) -> Snapshot:
    """Merge the totals and the current minute into cells of this scrape's own (the
    metrics' objects go on changing; these do not)."""
    merged: dict[tuple[str, str, str, str], Cell] = {}
    for source in (metrics.totals, metrics.current_cells()):
        for key, cell in source.items():
            label = (key[0], key[1], key[2], resource_of(key))
            found = merged.get(label)
            if found is None:
                found = merged[label] = Cell()
            found.merge(cell)
    return Snapshot(merged, metrics.running_functions(), own)


class LambdadCollector(Collector):
    """Yields a ``Snapshot`` as Prometheus metric families."""

    def __init__(self, taken: Snapshot) -> None:
        self._taken = taken

    def collect(self) -> Iterator[Metric]:
        totals = self._taken.totals
        for name, text, attribute in COUNTERS:
            family = CounterMetricFamily(name, text, labels=LABELS)
            for labels, cell in totals.items():
                value = getattr(cell, attribute)
                if value or attribute == "invocations":
                    family.add_metric(list(labels), value)
            yield family
        yield self._durations(totals)
        running = GaugeMetricFamily(
            "lambdad_concurrent_executions",
            "Invocations running now",
            labels=["account", "region", "function"],
        )
        for account, region, function, n in self._taken.running:
            running.add_metric([account, region, function], n)
        yield running
        own = self._taken.own
        yield GaugeMetricFamily(
            "lambdad_environments",
            "Execution environments alive (on demand and provisioned)",
            value=own.get("environments", 0.0),
        )
        yield GaugeMetricFamily(
            "lambdad_queue_depth",
            "Asynchronous events queued, not yet done",
            value=own.get("queue_depth", 0.0),
        )

    def _durations(self, totals: dict[tuple[str, str, str, str], Cell]) -> Metric:
        family = HistogramMetricFamily(
            "lambdad_duration_seconds",
            "Time function code spent on an invocation (Lambda's Duration)",
            labels=LABELS,
        )
        for labels, cell in totals.items():
            if cell.duration is not None:
                buckets, total = _buckets(cell.duration)
                family.add_metric(list(labels), buckets, total)
        return family


def _buckets(duration: Distribution) -> tuple[list[tuple[str, float]], float]:
    """Cumulative bucket counts (bounds in seconds) from a distribution in milliseconds."""
    counts = duration.cumulative([b * 1000.0 for b in DURATION_BUCKETS])
    buckets = [(str(b), n) for b, n in zip(DURATION_BUCKETS, counts, strict=True)]
    buckets.append(("+Inf", duration.count))
    return buckets, duration.total / 1000.0


def render(taken: Snapshot) -> bytes:
    """The exposition text of a snapshot (any thread: it reads nothing shared)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LambdadCollector(taken))
    return generate_latest(registry)


@routes.get("/metrics")
async def prometheus_metrics(request: web.Request) -> web.Response:
    """Copied on the loop, rendered in a thread: the client library's formatting takes about
    1 ms per function shown, which must not hold the event loop."""
    taken = snapshot(request.app[METRICS], request.app[OWN_GAUGES]())
    body = await asyncio.to_thread(render, taken)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
