"""Whether an event source exists, asked of its service when a mapping is created.

Lambda refuses a mapping whose queue or stream does not exist, with
InvalidParameterValueException: ``Error occurred while ReceiveMessage. SQS Error Code:
AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: ...`` for a queue, ``Stream not
found: <arn>`` for a Kinesis or DynamoDB stream. ``SourceChecker`` asks the source's service
through ``AwsClients`` (SQS GetQueueUrl, Kinesis DescribeStreamSummary, DynamoDB Streams
DescribeStream); an Amazon MQ broker must be one lambdad is told of (``LAMBDAD_MQ_BROKERS``).
A source lambdad cannot ask (no endpoint configured, the endpoint does not
answer within ``timeout``, any other error) is not refused here: its poller reports the
problem in the mapping's ``LastProcessingResult``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lambdad import errors
from lambdad.control.mapping_model import SourceKind
from lambdad.invoke.aws_clients import AwsClients, NoEndpoint

log = logging.getLogger(__name__)

#: The error codes a missing queue is answered with (the JSON and the query protocol's).
_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def _code_of(exc: Exception) -> str | None:
    """The AWS error code of a botocore ClientError (duck-typed: botocore is imported lazily)."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


class SourceChecker:
    """Refuses a mapping of a source its service says does not exist."""

    def __init__(
        self,
        clients: AwsClients,
        *,
        brokers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._clients = clients
        self._brokers = brokers or {}
        self._timeout = timeout

    async def __call__(self, kind: SourceKind, arn: str) -> None:
        """InvalidParameterValueException, in Lambda's words, when the source does not exist
        (an Amazon MQ broker: when it is not one of ``LAMBDAD_MQ_BROKERS``)."""
        if kind is SourceKind.MQ:
            if arn not in self._brokers:
                raise errors.InvalidParameterValueException(
                    f"The broker {arn} does not exist or cannot be reached: lambdad reaches "
                    "the brokers of LAMBDAD_MQ_BROKERS only."
                )
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._ask(kind, arn)
        except errors.LambdaError:
            raise
        except NoEndpoint:
            return
        except Exception as exc:  # unreachable or refusing: the poller will say so
            log.info("could not check event source %s: %s", arn, exc)

    async def _ask(self, kind: SourceKind, arn: str) -> None:
        parts = arn.split(":", 5)
        region = parts[3]
        try:
            if kind is SourceKind.SQS:
                sqs = await self._clients.client("sqs", region)
                await sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
            elif kind is SourceKind.KINESIS:
                kinesis = await self._clients.client("kinesis", region)
                await kinesis.describe_stream_summary(StreamARN=arn)
            else:
                streams = await self._clients.client("dynamodbstreams", region)
                await streams.describe_stream(StreamArn=arn, Limit=1)
        except Exception as exc:
            code = _code_of(exc)
            if kind is SourceKind.SQS and code in _NO_QUEUE:
                raise errors.InvalidParameterValueException(
                    "Error occurred while ReceiveMessage. SQS Error Code: "
                    "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified "
                    "queue does not exist."
                ) from exc
            if kind is not SourceKind.SQS and code == "ResourceNotFoundException":
                raise errors.InvalidParameterValueException(f"Stream not found: {arn}") from exc
            raise
