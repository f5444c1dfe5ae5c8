"""The on-failure destination of a stream event source mapping (Kinesis, DynamoDB Streams).

When a batch of a shard is given up (its retries spent, or its records too old), Lambda sends
the mapping's ``DestinationConfig.OnFailure`` (an SQS queue or SNS topic) a record that says
which records were skipped, not the records themselves:

    {"requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "responseContext": {"statusCode", "executedVersion", "functionError"},
     "version": "1.0", "timestamp": "2019-11-14T00:13:49.717Z",
     "KinesisBatchInfo" | "DDBStreamBatchInfo": {"shardId", "startSequenceNumber",
        "endSequenceNumber", "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord", "batchSize", "streamArn"}}

``failure_record`` builds it; ``StreamFailureDestination.send`` builds and sends it through
``AwsClients`` (the async destinations' ``MessageSender``), tried a few times: a destination
that cannot be reached is logged, never raised into the poller. Decisions and differences
from AWS: docs/event-source-mappings.md, "Stream on-failure destination".
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lambdad.events.shards import StreamRecord
from lambdad.invoke.aws_clients import AwsClients
from lambdad.invoke.destinations import MessageSender, tried

log = logging.getLogger(__name__)

#: ``requestContext.condition``: the batch's retries are spent (MaximumRetryAttempts), or its
#: records are older than MaximumRecordAgeInSeconds.
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
KINESIS_BATCH_INFO = "KinesisBatchInfo"
DDB_BATCH_INFO = "DDBStreamBatchInfo"
VERSION = "1.0"


class FailureDestination(Protocol):
    """What the shard poller calls when it gives a batch up (``StreamFailureDestination``)."""

    async def send(
        self,
        *,
        destination_arn: str,
        batch_info_key: str,
        stream_arn: str,
        shard_id: str,
        records: Sequence[StreamRecord],
        condition: str,
        request_id: str,
        invoke_count: int,
        status_code: int | None,
        executed_version: str | None,
        function_error: str | None,
        function_arn: str,
    ) -> None: ...


def _iso(epoch: float, *, millis: bool) -> str:
    """``2019-11-14T00:38:04.835Z`` (``millis``) or ``2019-11-14T00:13:19Z``."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_record(
    *,
    batch_info_key: str,
    stream_arn: str,
    shard_id: str,
    records: Sequence[StreamRecord],
    condition: str,
    request_id: str,
    invoke_count: int,
    status_code: int | None,
    executed_version: str | None,
    function_error: str | None,
    function_arn: str,
    now: float,
) -> dict[str, Any]:
    """The on-failure record of ``records`` (a batch of one shard, in order; at least one),
    given up at epoch ``now``. Arrival times keep milliseconds for Kinesis and whole seconds
    for DynamoDB, as AWS's records do; a ``responseContext`` member that is None (no
    invocation answered, or no function error) is left out."""
    if not records:
        raise ValueError("an on-failure record needs at least one record")
    millis = batch_info_key != DDB_BATCH_INFO
    response = {
        "statusCode": status_code,
        "executedVersion": executed_version,
        "functionError": function_error,
    }
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": {k: v for k, v in response.items() if v is not None},
        "version": VERSION,
        "timestamp": _iso(now, millis=True),
        batch_info_key: {
            "shardId": shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": _iso(records[0].arrival, millis=millis),
            "approximateArrivalOfLastRecord": _iso(records[-1].arrival, millis=millis),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


class DestinationState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class StreamFailureDestination:
    """Sends on-failure records through ``clients`` (a poller's: ``PollerContext.clients``).

    ``attempts`` tries per record, ``retry_delay`` seconds doubling between them (pass it
    already scaled by the time scale); ``clock`` gives epoch seconds for ``timestamp``."""

    def __init__(
        self,
        clients: AwsClients,
        *,
        attempts: int = 3,
        retry_delay: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sender = MessageSender(clients)
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._clock = clock
        self.state = DestinationState.OPEN

    async def send(
        self,
        *,
        destination_arn: str,
        batch_info_key: str,
        stream_arn: str,
        shard_id: str,
        records: Sequence[StreamRecord],
        condition: str,
        request_id: str,
        invoke_count: int,
        status_code: int | None,
        executed_version: str | None,
        function_error: str | None,
        function_arn: str,
    ) -> None:
        """Send the record of a given-up batch to ``destination_arn``. Never raises (but
        cancellation): a record that cannot be built or delivered is logged and dropped."""
        what = f"on-failure record of {stream_arn} {shard_id} to {destination_arn}"
        if self.state is DestinationState.CLOSED:
            log.error("%s not sent: the destination is closed", what)
            return
        try:
            record = failure_record(
                batch_info_key=batch_info_key,
                stream_arn=stream_arn,
                shard_id=shard_id,
                records=records,
                condition=condition,
                request_id=request_id,
                invoke_count=invoke_count,
                status_code=status_code,
                executed_version=executed_version,
                function_error=function_error,
                function_arn=function_arn,
                now=self._clock(),
            )
        except ValueError as exc:
            log.error("%s not sent: %s", what, exc)
            return
        body = json.dumps(record)

        async def deliver() -> None:
            await self._sender.send(destination_arn, body)

        await tried(what, deliver, attempts=self._attempts, retry_delay=self._retry_delay)

    async def close(self) -> None:
        """Refuse further records (the clients are the caller's). Idempotent."""
        self.state = DestinationState.CLOSED
