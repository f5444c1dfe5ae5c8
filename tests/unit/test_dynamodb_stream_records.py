"""What the DynamoDB Streams reader makes of answers moto cannot give: shards split from a
parent and closed, DescribeStream pages, the end of a closed shard, Time to Live deletes and
binary attributes. The answers are written out as botocore parses the service's JSON (the
API's documented shapes); ``tests/test_dynamodb_streams_reader.py`` reads real streams."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from lambdad.events.dynamodb_streams import DynamoDbStreamsReader, lambda_record
from lambdad.events.shards import Shard

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/T/stream/2024-01-01T00:00:00.000"


class Answers:
    """A stand-in for the aiobotocore client: canned answers, and the calls made."""

    def __init__(self, pages: list[dict[str, Any]], records: dict[str, Any]) -> None:
        self.pages = pages
        self.records = records
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("describe_stream", kwargs))
        return {"StreamDescription": self.pages[len(self.calls) - 1]}

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get_records", kwargs))
        return self.records


def test_shards_are_read_page_by_page_with_their_parents() -> None:
    """DescribeStream is asked again with ExclusiveStartShardId while it answers
    LastEvaluatedShardId; a child names its parent, a closed shard its ending number."""
    pages = [
        {
            "Shards": [
                {
                    "ShardId": "shardId-1",
                    "SequenceNumberRange": {
                        "StartingSequenceNumber": "100",
                        "EndingSequenceNumber": "199",
                    },
                }
            ],
            "LastEvaluatedShardId": "shardId-1",
        },
        {
            "Shards": [
                {
                    "ShardId": "shardId-2",
                    "ParentShardId": "shardId-1",
                    "SequenceNumberRange": {"StartingSequenceNumber": "200"},
                }
            ]
        },
    ]
    client = Answers(pages, {})
    shards = asyncio.run(DynamoDbStreamsReader(client, ARN).shards())
    assert shards == [
        Shard("shardId-1", None, None, "100", "199"),
        Shard("shardId-2", "shardId-1", None, "200", None),
    ]
    assert client.calls == [
        ("describe_stream", {"StreamArn": ARN}),
        ("describe_stream", {"StreamArn": ARN, "ExclusiveStartShardId": "shardId-1"}),
    ]


def test_the_end_of_a_closed_shard_has_no_next_iterator() -> None:
    """GetRecords without NextShardIterator (AWS: a closed shard read to its end) is a page
    whose ``next_iterator`` is None; a limit above 1,000 asks for the service's 1,000."""
    client = Answers([], {"Records": []})
    page = asyncio.run(DynamoDbStreamsReader(client, ARN).read("it", 5000))
    assert page.records == []
    assert page.next_iterator is None
    assert client.calls == [("get_records", {"ShardIterator": "it", "Limit": 1000})]


def test_a_ttl_delete_carries_user_identity_and_binary_values_are_base64() -> None:
    """A delete by Time to Live gets Lambda's ``userIdentity`` {type: Service, principalId:
    dynamodb.amazonaws.com}; binary values (bytes once botocore parsed them) are base64 in
    the record, as in the service's JSON; the creation time is whole epoch seconds."""
    created = datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    raw = {
        "eventID": "e1",
        "eventName": "REMOVE",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "Keys": {"id": {"B": b"\x00\x01"}},
            "OldImage": {
                "id": {"B": b"\x00\x01"},
                "tags": {"BS": [b"\xff"]},
                "nested": {"M": {"blob": {"B": b"a"}, "list": {"L": [{"B": b"b"}, {"N": "1"}]}}},
            },
            "SequenceNumber": "300",
            "SizeBytes": 42,
            "StreamViewType": "OLD_IMAGE",
        },
        "userIdentity": {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},
    }
    record = lambda_record(raw, ARN, "eu-west-1")
    assert record == {
        "eventID": "e1",
        "eventName": "REMOVE",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": int(created.timestamp()),
            "Keys": {"id": {"B": "AAE="}},
            "OldImage": {
                "id": {"B": "AAE="},
                "tags": {"BS": ["/w=="]},
                "nested": {
                    "M": {"blob": {"B": "YQ=="}, "list": {"L": [{"B": "Yg=="}, {"N": "1"}]}}
                },
            },
            "SequenceNumber": "300",
            "SizeBytes": 42,
            "StreamViewType": "OLD_IMAGE",
        },
        "eventSourceARN": ARN,
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
    }
