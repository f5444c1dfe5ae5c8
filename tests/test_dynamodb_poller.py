"""DynamoDB Streams event source mappings polled by a real lambdad from the suite's moto server.

Each test creates a table with a stream on moto, a function on lambdad (whose account id is
moto's) and a mapping through the API, writes items with boto3 and reads what the function was
given from the ``Collector`` of tests/test_kinesis_poller.py (the function reports each batch to
it and does what it answers). On-failure records go to a real moto SQS queue.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Moto, Server, launch_server, shutdown, unique, wait_until
from tests.test_kinesis_poller import Collector, function, settings_of

pytestmark = pytest.mark.slow

#: Lambda's DynamoDB record: these members always, ``userIdentity`` only on TTL deletes.
RECORD_KEYS = {
    "eventID",
    "eventName",
    "eventVersion",
    "eventSource",
    "awsRegion",
    "dynamodb",
    "eventSourceARN",
}


@pytest.fixture
def collector() -> Iterator[Collector]:
    service = Collector()
    yield service
    service.close()


@pytest.fixture(scope="module")
def esm_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad of moto's account whose streams are moto's."""
    srv = launch_server(tmp_path_factory.mktemp("lambdad-dynamodb"), settings_of(moto))
    yield srv
    shutdown(srv)


@pytest.fixture
def client(esm_server: Server) -> Iterator[Any]:
    lam = esm_server.client()
    yield lam
    lam.close()


class Table:
    """A moto table keyed ``pk`` (a string) with a stream of ``view_type``."""

    def __init__(self, moto: Moto, view_type: str = "NEW_AND_OLD_IMAGES") -> None:
        self.ddb = moto.client("dynamodb")
        self.name = unique("tbl")
        answer = self.ddb.create_table(
            TableName=self.name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
        )
        self.arn = str(answer["TableDescription"]["LatestStreamArn"])

    def put(self, pk: str, **attributes: str) -> None:
        item = {"pk": {"S": pk}} | {k: {"S": v} for k, v in attributes.items()}
        self.ddb.put_item(TableName=self.name, Item=item)

    def delete(self, pk: str) -> None:
        self.ddb.delete_item(TableName=self.name, Key={"pk": {"S": pk}})


def mapping(client: Any, function_name: str, table: Table, **options: Any) -> str:
    """A mapping of ``table``'s stream to ``function_name``, once it reads ``Enabled``."""
    options.setdefault("StartingPosition", "TRIM_HORIZON")
    made = client.create_event_source_mapping(
        EventSourceArn=table.arn, FunctionName=function_name, **options
    )
    uuid = str(made["UUID"])
    wait_until(lambda: client.get_event_source_mapping(UUID=uuid)["State"] == "Enabled")
    return uuid


def changes(collector: Collector) -> list[str]:
    """Each delivered record as ``EVENT pk`` (``v`` of the new image appended when there)."""
    found = []
    for batch in list(collector.batches):
        for record in batch:
            body = record["dynamodb"]
            text = f"{record['eventName']} {body['Keys']['pk']['S']}"
            if "v" in body.get("NewImage", {}):
                text += f"={body['NewImage']['v']['S']}"
            found.append(text)
    return found


def test_insert_modify_remove_reach_the_function_in_order_in_lambdas_record_shape(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """Lambda hands the function the stream's INSERT, MODIFY and REMOVE records in order, in
    batches of at most BatchSize, each with eventVersion 1.1, eventSource aws:dynamodb, the
    stream's ARN and region, and ``dynamodb`` holding Keys, both images (NEW_AND_OLD_IMAGES),
    SequenceNumber, SizeBytes, StreamViewType and ApproximateCreationDateTime in seconds."""
    table = Table(moto)
    table.put("a", v="1")
    table.put("a", v="2")
    table.put("b", v="1")
    table.delete("a")
    uuid = mapping(client, function(client, collector), table, BatchSize=3)
    wait_until(lambda: len(changes(collector)) >= 4, timeout=60)
    assert changes(collector) == ["INSERT a=1", "MODIFY a=2", "INSERT b=1", "REMOVE a"]
    assert [len(b) for b in collector.batches] == [3, 1]
    records = [r for b in collector.batches for r in b]
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequences == sorted(sequences)
    modify = records[1]
    assert set(modify) == RECORD_KEYS
    assert modify["eventVersion"] == "1.1"
    assert modify["eventSource"] == "aws:dynamodb"
    assert modify["eventSourceARN"] == table.arn
    assert modify["awsRegion"] == "us-east-1"
    body = modify["dynamodb"]
    assert set(body) == {
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "OldImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    }
    assert isinstance(body["ApproximateCreationDateTime"], int)
    assert body["Keys"] == {"pk": {"S": "a"}}
    assert body["OldImage"] == {"pk": {"S": "a"}, "v": {"S": "1"}}
    assert body["NewImage"] == {"pk": {"S": "a"}, "v": {"S": "2"}}
    assert body["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert isinstance(body["SizeBytes"], int)
    assert body["SizeBytes"] > 0
    assert "NewImage" not in records[3]["dynamodb"]
    wait_until(lambda: client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK")


@pytest.mark.parametrize(
    ("view_type", "images"),
    [("KEYS_ONLY", set()), ("NEW_IMAGE", {"NewImage"}), ("OLD_IMAGE", {"OldImage"})],
)
def test_each_view_type_carries_only_its_images(
    client: Any, moto: Moto, collector: Collector, view_type: str, images: set[str]
) -> None:
    """A MODIFY record carries the images the stream's StreamViewType keeps, and no other."""
    table = Table(moto, view_type)
    table.put("a", v="1")
    table.put("a", v="2")
    mapping(client, function(client, collector), table)
    wait_until(lambda: len([r for b in collector.batches for r in b]) >= 2, timeout=60)
    modify = [r for b in collector.batches for r in b][1]
    assert modify["eventName"] == "MODIFY"
    body = modify["dynamodb"]
    assert {"NewImage", "OldImage"} & set(body) == images
    assert body["StreamViewType"] == view_type
    assert body["Keys"] == {"pk": {"S": "a"}}


def test_latest_starts_after_what_the_stream_held(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """A mapping starting at LATEST delivers only the changes made after it began reading."""
    table = Table(moto)
    table.put("old", v="1")
    mapping(client, function(client, collector), table, StartingPosition="LATEST")
    count = 0

    def fresh_seen() -> bool:
        nonlocal count
        table.put(f"new{count}", v="1")
        count += 1
        return any("new" in c for c in changes(collector))

    wait_until(fresh_seen, timeout=60, interval=0.3)
    assert not [c for c in changes(collector) if "old" in c]


def test_filter_criteria_on_the_new_image_and_the_event_name_skip_other_records(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """FilterCriteria patterns match the DynamoDB record as the function gets it
    (``eventName``, ``dynamodb.NewImage.<attribute>.S``); records no pattern matches are
    skipped and never delivered."""
    table = Table(moto)
    table.put("a", v="keep")
    table.put("b", v="drop")
    table.put("a", v="keep")  # a MODIFY: the pattern wants INSERTs only
    table.delete("b")
    table.put("c", v="keep")
    pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"v": {"S": ["keep"]}}}}
    mapping(
        client,
        function(client, collector),
        table,
        FilterCriteria={"Filters": [{"Pattern": json.dumps(pattern)}]},
    )
    wait_until(lambda: "INSERT c=keep" in changes(collector), timeout=60)
    assert changes(collector) == ["INSERT a=keep", "INSERT c=keep"]


def test_a_failing_batch_is_retried_until_it_succeeds_and_order_holds(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """A function error makes Lambda retry the same batch; the records after it wait and are
    delivered in order once it succeeds."""
    table = Table(moto)
    failures = 0

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal failures
        if failures < 2:
            failures += 1
            return {"raise": "not yet"}
        return {}

    collector.answer = answer
    table.put("a", v="1")
    table.put("b", v="1")
    mapping(client, function(client, collector), table, BatchSize=2)
    wait_until(lambda: len(collector.batches) >= 3, timeout=60)
    table.put("c", v="1")
    wait_until(lambda: "INSERT c=1" in changes(collector), timeout=60)
    assert changes(collector) == ["INSERT a=1", "INSERT b=1"] * 3 + ["INSERT c=1"]


def test_retry_exhaustion_sends_ddb_stream_batch_info_to_the_sqs_destination(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """After MaximumRetryAttempts retries Lambda gives the batch up and sends the on-failure
    queue a record naming it (not its data): requestContext (requestId, functionArn,
    condition RetryAttemptsExhausted, approximateInvokeCount), responseContext (statusCode 200,
    executedVersion $LATEST, functionError Unhandled), version 1.0, timestamp, and
    DDBStreamBatchInfo (shardId, start/endSequenceNumber, approximateArrivalOf{First,Last}Record
    in whole seconds, batchSize, streamArn); the records after it are delivered."""
    sqs = moto.client("sqs")
    queue = sqs.create_queue(QueueName=unique("ddb-fail"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    table = Table(moto)
    collector.answer = lambda records: (
        {"raise": "bad"} if any(r["dynamodb"]["Keys"]["pk"]["S"] == "bad" for r in records) else {}
    )
    table.put("bad", v="1")
    table.put("bad", v="2")
    name = function(client, collector)
    mapping(
        client,
        name,
        table,
        BatchSize=2,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    wait_until(lambda: len(collector.batches) >= 2, timeout=60)
    table.put("good", v="1")
    wait_until(lambda: "INSERT good=1" in changes(collector), timeout=60)
    messages = wait_until(
        lambda: sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages"),
        timeout=60,
    )
    record = json.loads(messages[0]["Body"])
    delivered = collector.batches[0]
    function_arn = client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    assert set(record) == {
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "DDBStreamBatchInfo",
    }
    context = record["requestContext"]
    assert context["condition"] == "RetryAttemptsExhausted"
    assert context["approximateInvokeCount"] == 2
    assert context["functionArn"] == function_arn
    assert isinstance(context["requestId"], str)
    assert context["requestId"]
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    assert "." in record["timestamp"]
    info = record["DDBStreamBatchInfo"]
    assert set(info) == {
        "shardId",
        "startSequenceNumber",
        "endSequenceNumber",
        "approximateArrivalOfFirstRecord",
        "approximateArrivalOfLastRecord",
        "batchSize",
        "streamArn",
    }
    assert info["shardId"].startswith("shardId-")
    assert info["startSequenceNumber"] == delivered[0]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == delivered[-1]["dynamodb"]["SequenceNumber"]
    assert info["batchSize"] == 2
    assert info["streamArn"] == table.arn
    for stamp in (info["approximateArrivalOfFirstRecord"], info["approximateArrivalOfLastRecord"]):
        assert len(stamp) == len("2019-11-14T00:13:19Z")
        assert stamp.endswith("Z")


def test_report_batch_item_failures_retries_from_the_lowest_failed_sequence_number(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With ReportBatchItemFailures Lambda checkpoints before the lowest SequenceNumber the
    function reports; the retry starts there and the records before it are not sent again."""
    table = Table(moto)
    reported = False

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal reported
        failed = [
            r["dynamodb"]["SequenceNumber"]
            for r in records
            if r["dynamodb"]["Keys"]["pk"]["S"] in ("c", "d")
        ]
        if reported or not failed:
            return {"return": {"batchItemFailures": []}}
        reported = True
        return {"return": {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}}

    collector.answer = answer
    for pk in "abcd":
        table.put(pk, v="1")
    mapping(
        client,
        function(client, collector),
        table,
        BatchSize=4,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    wait_until(lambda: len(collector.batches) >= 2, timeout=60)
    assert [[r["dynamodb"]["Keys"]["pk"]["S"] for r in b] for b in collector.batches] == [
        ["a", "b", "c", "d"],
        ["c", "d"],
    ]


def test_parallelization_keeps_each_items_changes_in_order(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With ParallelizationFactor above 1 Lambda runs several batches of a shard at a time,
    keeping the changes of one item (its keys) in order."""
    table = Table(moto)
    for n in range(6):
        for pk in "abcd":
            table.put(pk, v=str(n))
    mapping(client, function(client, collector), table, BatchSize=2, ParallelizationFactor=3)
    wait_until(lambda: len(changes(collector)) >= 24, timeout=60)
    for pk in "abcd":
        mine = [c.split("=")[1] for c in changes(collector) if c.split(" ")[1].startswith(pk)]
        assert mine == [str(n) for n in range(6)]


def test_a_restart_resumes_from_the_durable_checkpoint(
    moto: Moto, collector: Collector, tmp_path: Path
) -> None:
    """Lambda keeps each shard's checkpoint: after lambdad stops and starts again on its data,
    the mapping resumes after the last record done, skipping and repeating nothing."""
    (tmp_path / "one").mkdir()
    srv = launch_server(tmp_path / "one", settings_of(moto))
    table = Table(moto)
    for n in range(5):
        table.put(f"a{n}", v="1")
    try:
        lam = srv.client()
        uuid = mapping(lam, function(lam, collector), table, BatchSize=2)
        wait_until(lambda: len(changes(collector)) == 5, timeout=60)
        wait_until(lambda: lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK")
    finally:
        shutdown(srv)
    for n in range(5):
        table.put(f"b{n}", v="1")
    (tmp_path / "two").mkdir()
    srv = launch_server(tmp_path / "two", settings_of(moto), data_dir=srv.data_dir)
    try:
        wait_until(lambda: len(changes(collector)) >= 10, timeout=60)
        expected = [f"INSERT {p}{n}=1" for p in "ab" for n in range(5)]
        assert changes(collector) == expected
    finally:
        shutdown(srv)


def test_latest_resumes_where_it_began_after_a_kill_before_any_record(
    start_server: Callable[..., Server], moto: Moto, collector: Collector
) -> None:
    """A LATEST mapping of a lambdad killed before any record came delivers, once lambdad is
    back, the changes made while it was down (AWS's poller, never down, would have), and none
    made before the mapping began."""
    table = Table(moto)
    table.put("before", v="1")
    srv = start_server(settings_of(moto))
    lam = srv.client()
    uuid = mapping(lam, function(lam, collector), table, StartingPosition="LATEST")
    data = srv.data_dir
    wait_until(lambda: reading(srv, uuid), timeout=30, interval=0.1)
    srv.stop(signal.SIGKILL)
    table.put("while-down", v="1")
    start_server(settings_of(moto), data_dir=data)
    wait_until(lambda: "INSERT while-down=1" in changes(collector), timeout=60)
    assert changes(collector) == ["INSERT while-down=1"]


def reading(srv: Server, uuid: str) -> bool:
    """Whether the mapping's poller has read its stream once (``/_lambdad/esm`` shows a lag):
    a LATEST mapping pins its start before its first read."""
    found = srv.get_json("/_lambdad/esm")["EventSourceMappings"]
    return any(m["UUID"] == uuid and m["MillisBehind"] is not None for m in found)
