"""A Kinesis (or DynamoDB Streams) event source mapping's poller: the mapping's settings turned
into a ``StreamSource`` and a ``StreamPoller`` reading the stream through the kind's
``StreamReader``, registered with ``Pollers`` per kind (``stream_factory``).

The factory takes what the poller needs beyond the mapping: the store its checkpoints live in,
how to find the function's role (Kinesis records carry it as ``invokeIdentityArn``), how to
make the kind's reader from the source client, and the on-failure sink (``destination_sinks``
turns a sender of on-failure records into one; without a sink, batches given up on are
logged and dropped). Each batch's
``LastProcessingResult`` is stored when it changes, not once per batch.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from lambdad.control.arns import Scope
from lambdad.control.mapping_model import EventSourceMapping
from lambdad.control.mappings import MappingEvent, MappingRemoved
from lambdad.events.checkpoints import Checkpoints
from lambdad.events.filters import compile_criteria, for_dynamodb, for_kinesis
from lambdad.events.pollers import PollerContext, ResultWriter
from lambdad.events.shards import Position, PositionKind, StreamReader
from lambdad.events.stream_failures import FailureDestination
from lambdad.events.stream_poller import BatchFailure, FailureSink, StreamPoller, StreamSource
from lambdad.store.base import Store

log = logging.getLogger(__name__)

#: The role of a mapping's function: ``(scope, function name, qualifier) -> role ARN``.
RoleOf = Callable[[Scope, str, str | None], Awaitable[str]]
#: The kind's reader: ``(source client, stream ARN, function role) -> StreamReader``.
ReaderOf = Callable[[Any, str, str], StreamReader]
#: The on-failure sink of a mapping (None: batches given up on are logged and dropped).
SinkOf = Callable[[EventSourceMapping, PollerContext], FailureSink | None]


class OnFailureSink:
    """The ``FailureSink`` of a mapping with ``DestinationConfig.OnFailure``: each batch given
    up on is sent to the destination as Lambda's on-failure record."""

    def __init__(self, destination: FailureDestination, mapping: EventSourceMapping) -> None:
        self._destination = destination
        self._mapping = mapping

    async def send(self, failure: BatchFailure) -> None:
        if not self._mapping.on_failure:
            return
        await self._destination.send(
            destination_arn=self._mapping.on_failure,
            batch_info_key=failure.batch_info_key,
            stream_arn=failure.stream_arn,
            shard_id=failure.shard_id,
            records=failure.records,
            condition=failure.condition,
            # No invoke answered (the function could not be invoked): a request id of its own.
            request_id=failure.request_id or str(uuid.uuid4()),
            invoke_count=failure.invoke_count,
            status_code=failure.status_code,
            executed_version=failure.executed_version,
            function_error=failure.function_error,
            function_arn=self._mapping.function_arn,
        )


def destination_sinks(
    destination_of: Callable[[PollerContext], FailureDestination],
) -> SinkOf:
    """A ``SinkOf`` sending to each mapping's on-failure destination (none without one)."""

    def sink_of(mapping: EventSourceMapping, ctx: PollerContext) -> FailureSink | None:
        if not mapping.on_failure:
            return None
        return OnFailureSink(destination_of(ctx), mapping)

    return sink_of


class MappingPollerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def source_of(mapping: EventSourceMapping) -> StreamSource:
    """The poller's view of a stream ``mapping``."""
    position = PositionKind(mapping.starting_position or "LATEST")
    return StreamSource(
        scope=Scope(mapping.account_id, mapping.region),
        mapping_uuid=mapping.uuid,
        function_name=mapping.function_name,
        qualifier=mapping.qualifier,
        stream_arn=mapping.source_arn,
        starting_position=Position(position, timestamp=mapping.starting_position_timestamp),
        batch_size=mapping.batch_size,
        batching_window=float(mapping.batching_window),
        parallelization=mapping.parallelization_factor or 1,
        bisect=bool(mapping.bisect),
        maximum_retry_attempts=(
            -1 if mapping.maximum_retry_attempts is None else mapping.maximum_retry_attempts
        ),
        maximum_record_age=-1 if mapping.maximum_record_age is None else mapping.maximum_record_age,
        report_batch_item_failures="ReportBatchItemFailures" in mapping.function_response_types,
        record_filter=_record_filter(mapping.kind, mapping.filters),
        tumbling_window=float(mapping.tumbling_window or 0),
    )


class StreamMappingPoller:
    """Polls one stream mapping's stream for as long as it runs."""

    def __init__(
        self,
        mapping: EventSourceMapping,
        ctx: PollerContext,
        *,
        store: Store,
        role_of: RoleOf,
        reader_of: ReaderOf,
        sink: FailureSink | None,
        time_scale: float = 1.0,
    ) -> None:
        self.mapping = mapping
        self._ctx = ctx
        self._store = store
        self._role_of = role_of
        self._reader_of = reader_of
        self._sink = sink
        self._scale = time_scale
        self._poller: StreamPoller | None = None
        self._result = ResultWriter(ctx)
        self.state = MappingPollerState.NEW

    def lag(self) -> dict[str, int] | None:
        """Milliseconds behind the stream's tip, per shard being read; None before the
        first read said (``Pollers.status`` shows it in ``lambdad esm``)."""
        lag = self._poller.lag() if self._poller is not None else {}
        return lag or None

    async def start(self) -> None:
        if self.state is not MappingPollerState.NEW:
            raise RuntimeError(f"stream mapping poller is {self.state.value}")
        self.state = MappingPollerState.RUNNING
        mapping = self.mapping
        source = source_of(mapping)
        client = await self._ctx.source_client()
        role = await self._role_of(source.scope, mapping.function_name, mapping.qualifier)
        if self.state is not MappingPollerState.RUNNING:  # closed meanwhile
            return
        reader = self._reader_of(client, mapping.source_arn, role)
        checkpoints = Checkpoints(self._store, source.scope, mapping.uuid)
        self._poller = StreamPoller(
            source,
            reader,
            self._ctx.invoker,
            checkpoints,
            self._result,
            self._sink,
            time_scale=self._scale,
            metrics=self._ctx.metrics(),
        )
        await self._poller.start()

    async def close(self) -> None:
        """Stop polling (a batch under way is read again from the checkpoint). Idempotent."""
        if self.state is MappingPollerState.CLOSED:
            return
        self.state = MappingPollerState.CLOSED
        self._result.stop()
        poller, self._poller = self._poller, None
        if poller is not None:
            await poller.close()
        await self._result.drain()


def _record_filter(
    kind: str, patterns: list[str] | None
) -> Callable[[dict[str, Any]], bool] | None:
    if not patterns:
        return None
    if kind == "dynamodb":
        criteria, view = compile_criteria(patterns, source="dynamodb"), for_dynamodb
    else:
        criteria, view = compile_criteria(patterns, source="kinesis"), for_kinesis
    return lambda record: criteria.matches(view(record))


def forget_removed(store: Store) -> Callable[[MappingEvent], Awaitable[None]]:
    """A listener of ``EventSourceMappings.subscribe`` deleting a deleted stream mapping's
    checkpoints (subscribe it after ``Pollers``, so the poller is closed first)."""

    async def heard(event: MappingEvent) -> None:
        mapping = event.mapping
        if isinstance(event, MappingRemoved) and mapping.kind != "sqs":
            scope = Scope(mapping.account_id, mapping.region)
            await Checkpoints(store, scope, mapping.uuid).forget()

    return heard


def stream_factory(
    *,
    store: Store,
    role_of: RoleOf,
    reader_of: ReaderOf,
    sink_of: SinkOf | None = None,
    time_scale: float = 1.0,
) -> Callable[[EventSourceMapping, PollerContext], StreamMappingPoller]:
    """The ``Pollers`` factory of a stream kind (``kinesis`` with ``KinesisReader``)."""

    def make(mapping: EventSourceMapping, ctx: PollerContext) -> StreamMappingPoller:
        sink = sink_of(mapping, ctx) if sink_of is not None else None
        return StreamMappingPoller(
            mapping,
            ctx,
            store=store,
            role_of=role_of,
            reader_of=reader_of,
            sink=sink,
            time_scale=time_scale,
        )

    return make
