"""The metrics of one event source mapping, as Lambda publishes them (docs/metrics.md).

``IteratorAge`` (stream mappings, always on) counts in the function's cells, like Duration,
under the function's dimension sets. The event counts are published only when the mapping's
``MetricsConfig.Metrics`` holds ``EventCount``: series of namespace ``AWS/Lambda`` with the
one dimension ``EventSourceMappingUUID``. A poller makes one ``MappingMetrics`` and calls it
on its path: each call is a few dictionary operations in memory (``Metrics.add_count``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambdad.observe.metric_minutes import SeriesKey
    from lambdad.observe.metrics import Metrics

LAMBDA = "AWS/Lambda"
#: ``MetricsConfig.Metrics`` value that turns the event counts on.
EVENT_COUNT = "EventCount"

POLLED = "PolledEventCount"
FILTERED_OUT = "FilteredOutEventCount"
INVOKED = "InvokedEventCount"
FAILED_INVOKE = "FailedInvokeEventCount"
DROPPED = "DroppedEventCount"
ON_FAILURE_DELIVERED = "OnFailureDestinationDeliveredEventCount"
DELETED = "DeletedEventCount"
#: The event counts lambdad's pollers record.
EVENT_COUNTS = (
    POLLED,
    FILTERED_OUT,
    INVOKED,
    FAILED_INVOKE,
    DROPPED,
    ON_FAILURE_DELIVERED,
    DELETED,
)


class MappingMetrics:
    """What one mapping's poller records: ``count`` (when ``EventCount`` is on) and
    ``iterator_age``."""

    __slots__ = ("_account", "_function", "_keys", "_metrics", "_qualifier", "_region")

    def __init__(
        self,
        metrics: Metrics,
        *,
        account: str,
        region: str,
        uuid: str,
        function: str,
        qualifier: str | None,
        event_counts: bool,
    ) -> None:
        self._metrics = metrics
        self._account = account
        self._region = region
        self._function = function
        self._qualifier = qualifier
        dims = (("EventSourceMappingUUID", uuid),)
        #: metric -> its series; empty when the event counts are off.
        self._keys: dict[str, SeriesKey] = (
            {name: (account, region, LAMBDA, name, dims) for name in EVENT_COUNTS}
            if event_counts
            else {}
        )

    def count(self, metric: str, n: int) -> None:
        """``n`` more events of ``metric`` (one of ``EVENT_COUNTS``)."""
        key = self._keys.get(metric)
        if key is not None and n > 0:
            self._metrics.add_count(key, n)

    def iterator_age(self, age_ms: float, executed_version: str) -> None:
        """The function was invoked with a batch whose newest record arrived ``age_ms``
        before; ``executed_version``: the version that ran."""
        key = (self._account, self._region, self._function, self._qualifier, executed_version)
        self._metrics.iterator_age(key, age_ms)
