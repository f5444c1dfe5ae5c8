"""An SQS event source mapping's poller: the mapping's settings turned into an ``SqsSource``
and an ``SqsPoller`` running it (``lambdad.events.sqs``), registered with ``Pollers`` for the
``sqs`` kind.

The queue's URL is asked of the queue's endpoint (``GetQueueUrl`` with the ARN's name and
account) when the poller starts; the mapping's ``FilterCriteria`` become the poller's record
filter (``lambdad.events.filters``); each batch's ``LastProcessingResult`` is stored when it
changes, not once per batch.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from lambdad.control.arns import Scope
from lambdad.control.mapping_model import EventSourceMapping
from lambdad.events.filters import compile_criteria, for_sqs
from lambdad.events.pollers import PollerContext, ResultWriter
from lambdad.events.sqs import SqsPoller, SqsSource

log = logging.getLogger(__name__)


class MappingPollerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class SqsMappingPoller:
    """Polls one SQS mapping's queue for as long as it runs."""

    def __init__(
        self, mapping: EventSourceMapping, ctx: PollerContext, *, time_scale: float = 1.0
    ) -> None:
        self.mapping = mapping
        self._ctx = ctx
        self._scale = time_scale
        self._poller: SqsPoller | None = None
        self._closed_poller: SqsPoller | None = None
        self._result = ResultWriter(ctx)
        self.state = MappingPollerState.NEW

    async def start(self) -> None:
        if self.state is not MappingPollerState.NEW:
            raise RuntimeError(f"SQS mapping poller is {self.state.value}")
        self.state = MappingPollerState.RUNNING
        mapping = self.mapping
        account, name = mapping.source_arn.split(":")[4:6]
        client = await self._ctx.source_client()
        answer = await client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
        source = SqsSource(
            scope=Scope(mapping.account_id, mapping.region),
            function_name=mapping.function_name,
            qualifier=mapping.qualifier,
            queue_arn=mapping.source_arn,
            queue_url=str(answer["QueueUrl"]),
            endpoint=self._ctx.clients.endpoint_settings("sqs"),
            batch_size=mapping.batch_size,
            batching_window=float(mapping.batching_window),
            maximum_concurrency=mapping.maximum_concurrency,
            report_batch_item_failures="ReportBatchItemFailures" in mapping.function_response_types,
            record_filter=_record_filter(mapping.filters),
        )
        if self.state is not MappingPollerState.RUNNING:  # closed while the URL was asked
            return
        self._poller = SqsPoller(
            source,
            self._ctx.invoker,
            self._result,
            time_scale=self._scale,
            metrics=self._ctx.metrics(),
        )
        await self._poller.start()

    async def backlog(self) -> dict[str, int] | None:
        """The queue's messages waiting and in flight (``SqsPoller.backlog``); None before the
        poller runs or after it closed."""
        poller = self._poller
        if poller is None or self.state is not MappingPollerState.RUNNING:
            return None
        return await poller.backlog()

    async def released(self) -> None:
        """Return once the long polls the close found under way ended and what they brought
        is back in the queue (``SqsPoller.released``)."""
        if self._closed_poller is not None:
            await self._closed_poller.released()

    async def close(self) -> None:
        """Stop polling (messages taken but not invoked go back to the queue, those a long
        poll under way takes too, once it ends). Idempotent."""
        if self.state is MappingPollerState.CLOSED:
            return
        self.state = MappingPollerState.CLOSED
        self._result.stop()
        poller, self._poller = self._poller, None
        self._closed_poller = poller
        if poller is not None:
            await poller.close()
        await self._result.drain()


def _record_filter(patterns: list[str] | None) -> Callable[[dict[str, Any]], bool] | None:
    if not patterns:
        return None
    criteria = compile_criteria(patterns, source="sqs")
    return lambda record: criteria.matches(for_sqs(record))


def sqs_factory(time_scale: float) -> Callable[[EventSourceMapping, PollerContext], Any]:
    """The ``Pollers`` factory of the ``sqs`` kind."""

    def make(mapping: EventSourceMapping, ctx: PollerContext) -> SqsMappingPoller:
        return SqsMappingPoller(mapping, ctx, time_scale=time_scale)

    return make
