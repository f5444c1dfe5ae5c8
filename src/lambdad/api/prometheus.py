"""``GET /metrics``: lambdad's metrics in Prometheus' text exposition format.

Rendered by the official ``prometheus_client`` from a collector that reads ``Metrics`` at
scrape time (nothing is updated per invoke but lambdad's own minute cells, so the invoke path
takes no lock of the client library). Counters and the duration histogram are totals since
lambdad started, per account, region, function and resource (``function`` or
``function:qualifier``); gauges are the figures of now. Function URL requests never reach
this route: they are told apart by their Host first (``url_front``).
"""

from __future__ import annotations

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


class LambdadCollector(Collector):
    """Reads ``Metrics`` (and lambdad's own gauges) when Prometheus scrapes."""

    def __init__(self, metrics: Metrics, own: dict[str, float]) -> None:
        self._metrics = metrics
        self._own = own

    def _totals(self) -> dict[tuple[str, str, str, str], Cell]:
        """Cells since start, by account, region, function and resource."""
        merged: dict[tuple[str, str, str, str], Cell] = {}
        for source in (self._metrics.totals, self._metrics.current_cells()):
            for key, cell in source.items():
                label = (key[0], key[1], key[2], resource_of(key))
                found = merged.get(label)
                if found is None:
                    found = merged[label] = Cell()
                found.merge(cell)
        return merged

    def collect(self) -> Iterator[Metric]:
        totals = self._totals()
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
        for account, region, function, n in self._metrics.running_functions():
            running.add_metric([account, region, function], n)
        yield running
        yield GaugeMetricFamily(
            "lambdad_environments",
            "Execution environments alive (on demand and provisioned)",
            value=self._own.get("environments", 0.0),
        )
        yield GaugeMetricFamily(
            "lambdad_queue_depth",
            "Asynchronous events queued, not yet done",
            value=self._own.get("queue_depth", 0.0),
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
    buckets = [(str(b), duration.count_at_most(b * 1000.0)) for b in DURATION_BUCKETS]
    buckets.append(("+Inf", duration.count))
    return buckets, duration.total / 1000.0


def render(metrics: Metrics, own: dict[str, float]) -> bytes:
    """The exposition text of ``metrics`` and ``own`` gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LambdadCollector(metrics, own))
    return generate_latest(registry)


@routes.get("/metrics")
async def prometheus_metrics(request: web.Request) -> web.Response:
    body = render(request.app[METRICS], request.app[OWN_GAUGES]())
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
