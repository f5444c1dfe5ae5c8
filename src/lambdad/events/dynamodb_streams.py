"""A DynamoDB stream read through the DynamoDB Streams API: ``DynamoDbStreamsReader``.

It implements ``lambdad.events.shards.StreamReader`` over the aiobotocore ``dynamodbstreams``
client a poller gets from ``PollerContext.source_client()``: ``DescribeStream`` (paged with
``ExclusiveStartShardId``) lists the shards and their parents, ``GetShardIterator`` opens one,
``GetRecords`` reads it. Each record becomes the record Lambda hands a function
(``lambda_record``): ``eventID``, ``eventName``, ``eventVersion`` ``1.1``, ``eventSource``
``aws:dynamodb``, ``awsRegion`` and ``eventSourceARN`` of the stream, ``dynamodb`` with
``ApproximateCreationDateTime`` in whole seconds, ``Keys``, the images the stream's view
type carries, ``SequenceNumber``, ``SizeBytes`` and ``StreamViewType``, and ``userIdentity``
(``type``, ``principalId``) on deletes made by Time to Live. Binary attribute values, which
botocore decodes to bytes, are base64 again, as on the wire. Decisions and what differs from
AWS: docs/event-source-mappings.md, "DynamoDB Streams reader".
"""

from __future__ import annotations

import base64
import datetime
import enum
import json
from collections.abc import Mapping
from typing import Any

from lambdad.events.shards import Page, Position, PositionKind, Shard, StreamRecord

#: The key of a DynamoDB stream batch's on-failure record.
BATCH_INFO_KEY = "DDBStreamBatchInfo"
#: The record format version Lambda gives DynamoDB records.
EVENT_VERSION = "1.1"
#: The most records one GetRecords returns.
READ_MAX = 1000

_POSITIONS = frozenset(
    {
        PositionKind.TRIM_HORIZON,
        PositionKind.LATEST,
        PositionKind.AT_SEQUENCE_NUMBER,
        PositionKind.AFTER_SEQUENCE_NUMBER,
    }
)


class ReaderState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class DynamoDbStreamsReader:
    """One DynamoDB stream (``stream_arn``), read with ``client`` (an aiobotocore
    ``dynamodbstreams`` client the caller owns: ``close`` does not close it)."""

    batch_info_key = BATCH_INFO_KEY

    def __init__(self, client: Any, stream_arn: str) -> None:
        self._client = client
        self.stream_arn = stream_arn
        self.region = stream_arn.split(":")[3]
        self.state = ReaderState.OPEN

    async def shards(self) -> list[Shard]:
        """Every shard DescribeStream shows now, page after page."""
        self._check_open()
        found: list[Shard] = []
        start: str | None = None
        while True:
            extra = {"ExclusiveStartShardId": start} if start else {}
            answer = await self._client.describe_stream(StreamArn=self.stream_arn, **extra)
            description = answer["StreamDescription"]
            found.extend(_shard_of(s) for s in description.get("Shards", []))
            start = description.get("LastEvaluatedShardId")
            if not start:
                return found

    async def iterator(self, shard_id: str, position: Position) -> str:
        """A shard iterator at ``position``; ValueError for AT_TIMESTAMP (Kinesis only) or a
        sequence-number position without its number."""
        self._check_open()
        if position.kind not in _POSITIONS:
            raise ValueError(f"DynamoDB Streams has no {position.kind} iterator")
        extra: dict[str, str] = {}
        if position.kind in (PositionKind.AT_SEQUENCE_NUMBER, PositionKind.AFTER_SEQUENCE_NUMBER):
            if not position.sequence_number:
                raise ValueError(f"{position.kind} needs a sequence number")
            extra["SequenceNumber"] = position.sequence_number
        answer = await self._client.get_shard_iterator(
            StreamArn=self.stream_arn,
            ShardId=shard_id,
            ShardIteratorType=position.kind.value,
            **extra,
        )
        return str(answer["ShardIterator"])

    async def read(self, iterator: str, limit: int) -> Page:
        """Up to ``limit`` records (at most 1,000, the service's cap) and the next iterator
        (None once a closed shard has been read to its end)."""
        self._check_open()
        answer = await self._client.get_records(
            ShardIterator=iterator, Limit=max(1, min(limit, READ_MAX))
        )
        records = [self._record(r) for r in answer.get("Records", [])]
        following = answer.get("NextShardIterator")
        return Page(records, str(following) if following else None)

    async def anchor(self, shard_id: str) -> Position:
        """After the shard's last record now (read from its start to its current end: DynamoDB
        Streams has no timestamp iterator); ``TRIM_HORIZON`` when it holds none yet."""
        iterator: str | None = await self.iterator(shard_id, Position(PositionKind.TRIM_HORIZON))
        last: str | None = None
        while iterator is not None:
            answer = await self._client.get_records(ShardIterator=iterator, Limit=READ_MAX)
            found = answer.get("Records", [])
            if not found:
                break
            last = str(found[-1]["dynamodb"]["SequenceNumber"])
            following = answer.get("NextShardIterator")
            iterator = str(following) if following else None
        if last is None:
            return Position(PositionKind.TRIM_HORIZON)
        return Position(PositionKind.AFTER_SEQUENCE_NUMBER, last)

    async def close(self) -> None:
        """Refuse further reads (the client is its owner's). Idempotent."""
        self.state = ReaderState.CLOSED

    def _check_open(self) -> None:
        if self.state is ReaderState.CLOSED:
            raise RuntimeError(f"the reader of {self.stream_arn} is closed")

    def _record(self, raw: Mapping[str, Any]) -> StreamRecord:
        event = lambda_record(raw, self.stream_arn, self.region)
        body = event["dynamodb"]
        return StreamRecord(
            sequence_number=body["SequenceNumber"],
            arrival=_epoch(raw["dynamodb"].get("ApproximateCreationDateTime")),
            partition_key=canonical_keys(body.get("Keys", {})),
            size_bytes=int(body.get("SizeBytes", 0)),
            event=event,
        )


def _shard_of(raw: Mapping[str, Any]) -> Shard:
    numbers = raw.get("SequenceNumberRange", {})
    return Shard(
        shard_id=str(raw["ShardId"]),
        parent_id=raw.get("ParentShardId") or None,
        adjacent_parent_id=None,  # DynamoDB shards split, never merge
        starting_sequence_number=str(numbers.get("StartingSequenceNumber", "")),
        ending_sequence_number=numbers.get("EndingSequenceNumber") or None,
    )


def lambda_record(raw: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """The record Lambda hands a function for one GetRecords record (as botocore parsed it)."""
    stream = raw.get("dynamodb", {})
    body: dict[str, Any] = {}
    created = stream.get("ApproximateCreationDateTime")
    if created is not None:
        body["ApproximateCreationDateTime"] = int(_epoch(created))
    for name in ("Keys", "NewImage", "OldImage"):
        if name in stream:
            body[name] = _wire_map(stream[name])
    body["SequenceNumber"] = str(stream.get("SequenceNumber", ""))
    body["SizeBytes"] = int(stream.get("SizeBytes", 0))
    body["StreamViewType"] = stream.get("StreamViewType")
    record: dict[str, Any] = {
        "eventID": raw.get("eventID"),
        "eventName": raw.get("eventName"),
        "eventVersion": EVENT_VERSION,
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": body,
        "eventSourceARN": stream_arn,
    }
    identity = raw.get("userIdentity")
    if identity:
        record["userIdentity"] = {
            "type": identity.get("Type"),
            "principalId": identity.get("PrincipalId"),
        }
    return record


def canonical_keys(keys: Mapping[str, Any]) -> str:
    """An item's ``Keys`` (wire form) as one string, equal for equal keys whatever their
    order: what ``ParallelizationFactor`` keeps in order."""
    return json.dumps(keys, sort_keys=True, separators=(",", ":"))


def _epoch(value: Any) -> float:
    """Epoch seconds of botocore's parsed timestamp (a datetime) or of a number."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return float(value.timestamp())
    if value is None:
        return 0.0
    return float(value)


def _wire_map(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _wire_value(value) for name, value in attributes.items()}


def _wire_value(value: Mapping[str, Any]) -> dict[str, Any]:
    """One attribute value as DynamoDB's JSON has it: bytes (``B``, ``BS``) base64 again."""
    out: dict[str, Any] = {}
    for kind, inner in value.items():
        if kind == "B":
            out[kind] = _b64(inner)
        elif kind == "BS":
            out[kind] = [_b64(b) for b in inner]
        elif kind == "M":
            out[kind] = _wire_map(inner)
        elif kind == "L":
            out[kind] = [_wire_value(v) for v in inner]
        else:
            out[kind] = inner
    return out


def _b64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return str(value)
