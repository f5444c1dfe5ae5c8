"""The DynamoDB Streams reader (``lambdad.events.dynamodb_streams``) against real streams of the
suite's moto server: tables with a ``StreamSpecification``, written with boto3, read through
the aiobotocore client a poller would get. The reader alone, in this process (no lambdad).

moto keeps one open shard per stream and never closes it, so what only a split or a closed
shard shows (parents, the end of a shard, ``LastEvaluatedShardId`` paging) is pinned in
``tests/unit/test_dynamodb_stream_records.py`` with the service's answers written out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lambdad.events.dynamodb_streams import DynamoDbStreamsReader
from lambdad.events.shards import Position, PositionKind
from lambdad.invoke.aws_clients import AwsClients
from tests.conftest import Moto, unique

REGION = "us-east-1"
VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")


def table(moto: Moto, view_type: str = "NEW_AND_OLD_IMAGES") -> tuple[Any, str, str]:
    """A new table keyed ``pk`` (string) and ``sk`` (number) with a stream: ``(dynamodb client,
    table name, stream ARN)``."""
    ddb = moto.client("dynamodb")
    name = unique("tbl")
    answer = ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
    )
    return ddb, name, answer["TableDescription"]["LatestStreamArn"]


def key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def with_reader(
    moto: Moto, arn: str, scenario: Callable[[DynamoDbStreamsReader], Awaitable[None]]
) -> None:
    """Run ``scenario`` with a reader of ``arn`` over an aiobotocore client of moto."""

    async def run() -> None:
        clients = AwsClients(default=moto.endpoint, access_key="testing", secret_key="testing")
        try:
            client = await clients.client("dynamodbstreams", REGION)
            reader = DynamoDbStreamsReader(client, arn)
            try:
                await scenario(reader)
            finally:
                await reader.close()
        finally:
            await clients.close()

    asyncio.run(run())


async def read_all(reader: DynamoDbStreamsReader, iterator: str) -> list[dict[str, Any]]:
    """Every record from ``iterator`` up to the shard's present end (an empty page)."""
    events: list[dict[str, Any]] = []
    current: str | None = iterator
    while current is not None:
        page = await reader.read(current, 1000)
        events.extend(r.event for r in page.records)
        if not page.records:
            break
        current = page.next_iterator
    return events


def test_the_streams_shards_are_listed(moto: Moto) -> None:
    """DescribeStream's shards become ``Shard`` values: id, no parent for the first shard,
    its starting sequence number, open (no ending sequence number)."""
    _, _, arn = table(moto)

    async def scenario(reader: DynamoDbStreamsReader) -> None:
        shards = await reader.shards()
        assert len(shards) == 1
        shard = shards[0]
        assert shard.shard_id.startswith("shardId-")
        assert shard.parent_id is None
        assert shard.adjacent_parent_id is None
        assert shard.starting_sequence_number.isdigit()
        assert shard.ending_sequence_number is None
        assert reader.batch_info_key == "DDBStreamBatchInfo"

    with_reader(moto, arn, scenario)


@pytest.mark.parametrize("view_type", VIEW_TYPES)
def test_insert_modify_remove_come_in_order_with_the_images_of_the_view_type(
    moto: Moto, view_type: str
) -> None:
    """A put, an update and a delete read back as INSERT, MODIFY, REMOVE in sequence order,
    each in Lambda's record shape (eventVersion 1.1, eventSource aws:dynamodb, the stream's
    region and ARN), with Keys always and NewImage / OldImage as the stream's view type gives
    them (AWS: KEYS_ONLY neither, NEW_IMAGE the new one, OLD_IMAGE the old one,
    NEW_AND_OLD_IMAGES both where they exist)."""
    ddb, name, arn = table(moto, view_type)
    ddb.put_item(TableName=name, Item={**key("a", 1), "colour": {"S": "red"}})
    ddb.put_item(TableName=name, Item={**key("a", 1), "colour": {"S": "blue"}})
    ddb.delete_item(TableName=name, Key=key("a", 1))

    async def scenario(reader: DynamoDbStreamsReader) -> None:
        shard = (await reader.shards())[0]
        iterator = await reader.iterator(shard.shard_id, Position(PositionKind.TRIM_HORIZON))
        page = await reader.read(iterator, 100)
        events = [r.event for r in page.records]
        assert [e["eventName"] for e in events] == ["INSERT", "MODIFY", "REMOVE"]
        numbers = [int(r.sequence_number) for r in page.records]
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == 3
        red = {**key("a", 1), "colour": {"S": "red"}}
        blue = {**key("a", 1), "colour": {"S": "blue"}}
        new = view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
        old = view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
        expected = [
            ({"NewImage": red} if new else {}),
            ({"NewImage": blue} if new else {}) | ({"OldImage": red} if old else {}),
            ({"OldImage": blue} if old else {}),
        ]
        for event, record, images in zip(events, page.records, expected, strict=True):
            assert set(event) == {
                "eventID",
                "eventName",
                "eventVersion",
                "eventSource",
                "awsRegion",
                "dynamodb",
                "eventSourceARN",
            }
            assert event["eventVersion"] == "1.1"
            assert event["eventSource"] == "aws:dynamodb"
            assert event["awsRegion"] == REGION
            assert event["eventSourceARN"] == arn
            body = event["dynamodb"]
            assert body["Keys"] == key("a", 1)
            assert {k: body[k] for k in ("NewImage", "OldImage") if k in body} == images
            assert body["StreamViewType"] == view_type
            assert body["SequenceNumber"] == record.sequence_number
            assert isinstance(body["ApproximateCreationDateTime"], int)
            assert body["ApproximateCreationDateTime"] == int(record.arrival)
            assert body["SizeBytes"] == record.size_bytes > 0
            assert record.partition_key == json.dumps(
                {"pk": {"S": "a"}, "sk": {"N": "1"}}, sort_keys=True, separators=(",", ":")
            )
            json.dumps(event)  # the event is plain JSON

    with_reader(moto, arn, scenario)


def test_items_with_the_same_keys_share_a_partition_key(moto: Moto) -> None:
    """Records of one item share ``partition_key`` (its Keys, serialised canonically); records
    of other items do not."""
    ddb, name, arn = table(moto, "KEYS_ONLY")
    for pk, sk in (("a", 1), ("b", 1), ("a", 2), ("a", 1)):
        ddb.put_item(TableName=name, Item=key(pk, sk))

    async def scenario(reader: DynamoDbStreamsReader) -> None:
        shard = (await reader.shards())[0]
        iterator = await reader.iterator(shard.shard_id, Position(PositionKind.TRIM_HORIZON))
        keys = [r.partition_key for r in (await reader.read(iterator, 100)).records]
        assert keys[0] == keys[3]
        assert len({keys[0], keys[1], keys[2]}) == 3

    with_reader(moto, arn, scenario)


def test_iterators_start_where_their_position_says(moto: Moto) -> None:
    """TRIM_HORIZON reads from the oldest record, LATEST only what is written after it was
    taken, AT_SEQUENCE_NUMBER from that record, AFTER_SEQUENCE_NUMBER from the next one; a
    read of ``limit`` records hands back an iterator that continues after them."""
    ddb, name, arn = table(moto, "KEYS_ONLY")
    for sk in range(5):
        ddb.put_item(TableName=name, Item=key("a", sk))

    def sks(events: list[dict[str, Any]]) -> list[int]:
        return [int(e["dynamodb"]["Keys"]["sk"]["N"]) for e in events]

    async def scenario(reader: DynamoDbStreamsReader) -> None:
        shard_id = (await reader.shards())[0].shard_id
        horizon = await reader.iterator(shard_id, Position(PositionKind.TRIM_HORIZON))
        first = await reader.read(horizon, 2)
        assert sks([r.event for r in first.records]) == [0, 1]
        assert first.next_iterator is not None
        assert sks(await read_all(reader, first.next_iterator)) == [2, 3, 4]
        second = first.records[1].sequence_number
        at = Position(PositionKind.AT_SEQUENCE_NUMBER, second)
        assert sks(await read_all(reader, await reader.iterator(shard_id, at))) == [1, 2, 3, 4]
        after = Position(PositionKind.AFTER_SEQUENCE_NUMBER, second)
        assert sks(await read_all(reader, await reader.iterator(shard_id, after))) == [2, 3, 4]
        latest = await reader.iterator(shard_id, Position(PositionKind.LATEST))
        await asyncio.to_thread(ddb.put_item, TableName=name, Item=key("a", 99))
        assert sks(await read_all(reader, latest)) == [99]

    with_reader(moto, arn, scenario)


def test_the_anchor_of_a_shard_is_after_its_last_record_or_its_horizon(moto: Moto) -> None:
    """The durable stand-in for LATEST: TRIM_HORIZON while the shard holds nothing, then
    AFTER_SEQUENCE_NUMBER its last record, from which only later writes are read."""
    ddb, name, arn = table(moto, "KEYS_ONLY")

    async def scenario(reader: DynamoDbStreamsReader) -> None:
        shard_id = (await reader.shards())[0].shard_id
        assert await reader.anchor(shard_id) == Position(PositionKind.TRIM_HORIZON)
        for sk in range(3):
            await asyncio.to_thread(ddb.put_item, TableName=name, Item=key("a", sk))
        anchor = await reader.anchor(shard_id)
        assert anchor.kind is PositionKind.AFTER_SEQUENCE_NUMBER
        await asyncio.to_thread(ddb.put_item, TableName=name, Item=key("a", 9))
        later = await read_all(reader, await reader.iterator(shard_id, anchor))
        assert [int(e["dynamodb"]["Keys"]["sk"]["N"]) for e in later] == [9]

    with_reader(moto, arn, scenario)


def test_an_empty_read_of_an_open_shard_keeps_an_iterator(moto: Moto) -> None:
    """Reading an open shard past its last record gives no records and an iterator to read
    from later (AWS: NextShardIterator stays set while the shard is open); records written
    afterwards are read from it."""
    ddb, name, arn = table(moto, "KEYS_ONLY")

    async def scenario(reader: DynamoDbStreamsReader) -> None:
        shard_id = (await reader.shards())[0].shard_id
        iterator = await reader.iterator(shard_id, Position(PositionKind.TRIM_HORIZON))
        empty = await reader.read(iterator, 10)
        assert empty.records == []
        assert empty.next_iterator is not None
        await asyncio.to_thread(ddb.put_item, TableName=name, Item=key("z", 7))
        later = await reader.read(empty.next_iterator, 10)
        assert [r.event["eventName"] for r in later.records] == ["INSERT"]

    with_reader(moto, arn, scenario)


def test_at_timestamp_is_refused_and_a_closed_reader_reads_nothing(moto: Moto) -> None:
    """AT_TIMESTAMP is Kinesis's alone (ValueError before any request); a closed reader
    refuses work (RuntimeError), and closing it twice is fine."""
    _, _, arn = table(moto, "KEYS_ONLY")

    async def scenario(reader: DynamoDbStreamsReader) -> None:
        shard_id = (await reader.shards())[0].shard_id
        with pytest.raises(ValueError, match="AT_TIMESTAMP"):
            await reader.iterator(shard_id, Position(PositionKind.AT_TIMESTAMP, timestamp=1.0))
        with pytest.raises(ValueError, match="sequence number"):
            await reader.iterator(shard_id, Position(PositionKind.AFTER_SEQUENCE_NUMBER))
        await reader.close()
        await reader.close()
        with pytest.raises(RuntimeError):
            await reader.shards()

    with_reader(moto, arn, scenario)
