"""Kinesis Data Streams as a ``StreamReader``: shards, iterators and records of one stream.

``KinesisReader`` speaks to Kinesis through the aiobotocore client the poller's context opens
(``PollerContext.source_client()``): ``ListShards`` (paged), ``GetShardIterator`` and
``GetRecords``. Each record becomes Lambda's Kinesis record (the reference spec, section 6):
``data`` in base64, ``approximateArrivalTimestamp`` in epoch seconds with milliseconds,
``eventID`` ``<shard id>:<sequence number>``, ``invokeIdentityArn`` the function's role.
"""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import Mapping
from typing import Any

from lambdad.events.shards import Page, Position, PositionKind, Shard, StreamRecord

#: The key of the on-failure record's batch description.
BATCH_INFO_KEY = "KinesisBatchInfo"
#: The most records one GetRecords returns.
READ_MAX = 10_000


def _epoch(stamp: Any) -> float:
    """A botocore timestamp (datetime, or epoch seconds) as epoch seconds."""
    if isinstance(stamp, datetime.datetime):
        return stamp.timestamp()
    return float(stamp or 0.0)


def record_of(
    raw: Mapping[str, Any], shard_id: str, stream_arn: str, role_arn: str
) -> StreamRecord:
    """Lambda's record of one record ``GetRecords`` returned from ``shard_id``."""
    data = raw.get("Data", b"")
    if isinstance(data, str):
        data = data.encode()
    arrival = round(_epoch(raw.get("ApproximateArrivalTimestamp")), 3)
    sequence = str(raw["SequenceNumber"])
    key = str(raw.get("PartitionKey", ""))
    event = {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": key,
            "sequenceNumber": sequence,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": role_arn,
        "awsRegion": stream_arn.split(":")[3],
        "eventSourceARN": stream_arn,
    }
    return StreamRecord(sequence, arrival, key, len(data) + len(key), event)


class KinesisReader:
    """One Kinesis stream read through ``client`` (an aiobotocore Kinesis client, owned by
    the poller's context: ``close`` leaves it open). ``role_arn`` is the function's role,
    Lambda's ``invokeIdentityArn``."""

    batch_info_key = BATCH_INFO_KEY

    def __init__(self, client: Any, stream_arn: str, role_arn: str) -> None:
        self._client = client
        self.stream_arn = stream_arn
        self._role = role_arn
        #: The shard each iterator this reader handed out belongs to.
        self._shard_of: dict[str, str] = {}

    async def shards(self) -> list[Shard]:
        found: list[Shard] = []
        args: dict[str, Any] = {"StreamARN": self.stream_arn}
        while True:
            answer = await self._client.list_shards(**args)
            found += [_shard(s) for s in answer.get("Shards", [])]
            token = answer.get("NextToken")
            if not token:
                return found
            args = {"NextToken": token}

    async def iterator(self, shard_id: str, position: Position) -> str:
        args: dict[str, Any] = {
            "StreamARN": self.stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind.value,
        }
        if position.kind in (PositionKind.AT_SEQUENCE_NUMBER, PositionKind.AFTER_SEQUENCE_NUMBER):
            args["StartingSequenceNumber"] = position.sequence_number
        elif position.kind is PositionKind.AT_TIMESTAMP:
            args["Timestamp"] = datetime.datetime.fromtimestamp(
                position.timestamp or 0.0, datetime.UTC
            )
        answer = await self._client.get_shard_iterator(**args)
        iterator = str(answer["ShardIterator"])
        self._shard_of[iterator] = shard_id
        return iterator

    async def read(self, iterator: str, limit: int) -> Page:
        shard_id = self._shard_of.pop(iterator, "")
        answer = await self._client.get_records(
            ShardIterator=iterator, Limit=min(limit, READ_MAX), StreamARN=self.stream_arn
        )
        records = [
            record_of(r, shard_id, self.stream_arn, self._role) for r in answer.get("Records", [])
        ]
        following = answer.get("NextShardIterator")
        if following:
            self._shard_of[str(following)] = shard_id
        behind = answer.get("MillisBehindLatest")
        return Page(records, str(following) if following else None, behind)

    async def anchor(self, shard_id: str) -> Position:
        """``AT_TIMESTAMP`` now: every record that arrives from now on (Kinesis stamps a
        record's arrival with its own clock, so a clock of lambdad's ahead of it could skip
        a record put in the difference)."""
        return Position(PositionKind.AT_TIMESTAMP, timestamp=time.time())

    async def close(self) -> None:
        self._shard_of.clear()


def _shard(raw: Mapping[str, Any]) -> Shard:
    numbers = raw.get("SequenceNumberRange", {})
    return Shard(
        shard_id=str(raw["ShardId"]),
        parent_id=raw.get("ParentShardId"),
        adjacent_parent_id=raw.get("AdjacentParentShardId"),
        starting_sequence_number=str(numbers.get("StartingSequenceNumber", "")),
        ending_sequence_number=numbers.get("EndingSequenceNumber"),
    )
