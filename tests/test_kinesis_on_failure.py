"""Kinesis mappings through a real lambdad and the suite's moto server: batches given up on
reach a real SQS queue or SNS topic as the on-failure record, and a LATEST mapping keeps its
start across a kill. Streams, functions and the ``Collector`` are those of
tests/test_kinesis_poller.py.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Moto, Server, launch_server, shutdown, unique, wait_until
from tests.test_kinesis_poller import Collector, Stream, data_of, function, mapping, settings_of

pytestmark = pytest.mark.slow


@pytest.fixture
def collector() -> Iterator[Collector]:
    service = Collector()
    yield service
    service.close()


@pytest.fixture(scope="module")
def esm_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad of moto's account whose streams, queues and topics are moto's."""
    srv = launch_server(tmp_path_factory.mktemp("lambdad-kinesis-fail"), settings_of(moto))
    yield srv
    shutdown(srv)


@pytest.fixture
def client(esm_server: Server) -> Iterator[Any]:
    lam = esm_server.client()
    yield lam
    lam.close()


def queue(moto: Moto) -> tuple[Any, str, str]:
    """A new moto queue: ``(sqs client, queue URL, queue ARN)``."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("fail"))["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return sqs, url, attributes["Attributes"]["QueueArn"]


def one_message(sqs: Any, url: str) -> str:
    messages = wait_until(
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"),
        timeout=60,
    )
    assert len(messages) == 1
    return str(messages[0]["Body"])


def exhaust(client: Any, collector: Collector, stream: Stream, destination: str) -> str:
    """Put a batch the function always fails and one after it; a mapping of one retry
    sending the failed batch to ``destination``. The function's ARN, once "after" is in."""
    collector.answer = lambda records: (
        {"raise": "bad"} if any(data_of(r).startswith("bad") for r in records) else {}
    )
    stream.put(["bad-0", "bad-1"])
    name = function(client, collector)
    mapping(
        client,
        name,
        stream,
        BatchSize=2,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": destination}},
    )
    wait_until(lambda: len(collector.batches) >= 2, timeout=60)
    stream.put(["after"])
    wait_until(lambda: "after" in collector.datas(), timeout=60)
    return str(client.get_function(FunctionName=name)["Configuration"]["FunctionArn"])


def check_record(
    record: dict[str, Any], collector: Collector, stream: Stream, function_arn: str
) -> None:
    """``record`` is AWS's on-failure record of the first batch ``collector`` saw."""
    batch = collector.batches[0]
    assert set(record) == {
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
    }
    context = record["requestContext"]
    assert set(context) == {"requestId", "functionArn", "condition", "approximateInvokeCount"}
    assert context["condition"] == "RetryAttemptsExhausted"
    assert context["approximateInvokeCount"] == 2
    assert context["functionArn"] == function_arn
    assert context["requestId"]
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["version"] == "1.0"
    info = record["KinesisBatchInfo"]
    assert info["shardId"] == batch[0]["eventID"].split(":")[0]
    assert info["startSequenceNumber"] == batch[0]["kinesis"]["sequenceNumber"]
    assert info["endSequenceNumber"] == batch[-1]["kinesis"]["sequenceNumber"]
    assert info["batchSize"] == 2
    assert info["streamArn"] == stream.arn
    for stamp in (info["approximateArrivalOfFirstRecord"], info["approximateArrivalOfLastRecord"]):
        assert len(stamp) == len("2019-11-14T00:38:04.835Z")
        assert stamp.endswith("Z")


def test_a_batch_given_up_reaches_the_sqs_on_failure_queue_as_kinesis_batch_info(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """When a batch's retries are spent Lambda sends its SQS on-failure destination one record
    naming the batch: requestContext (condition RetryAttemptsExhausted, the invoke count,
    the function's ARN), responseContext (200, $LATEST, Unhandled), version 1.0 and
    KinesisBatchInfo (shard, first and last sequence numbers, arrivals with milliseconds,
    batch size, stream ARN); the shard moves on."""
    sqs, url, arn = queue(moto)
    stream = Stream(moto)
    function_arn = exhaust(client, collector, stream, arn)
    check_record(json.loads(one_message(sqs, url)), collector, stream, function_arn)


def test_a_batch_given_up_reaches_the_sns_on_failure_topic(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """An SNS topic as the on-failure destination gets the same record as its message (read
    here through a queue subscribed to the topic)."""
    sns = moto.client("sns")
    topic = sns.create_topic(Name=unique("fail"))["TopicArn"]
    sqs, url, arn = queue(moto)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    stream = Stream(moto)
    function_arn = exhaust(client, collector, stream, topic)
    envelope = json.loads(one_message(sqs, url))
    assert envelope["TopicArn"] == topic
    check_record(json.loads(envelope["Message"]), collector, stream, function_arn)


def test_latest_resumes_where_it_began_after_a_kill_before_any_record(
    start_server: Callable[..., Server], moto: Moto, collector: Collector
) -> None:
    """A LATEST mapping of a lambdad killed before any record came delivers, once lambdad is
    back, the records put while it was down (AWS's poller, never down, would have), and none
    put before the mapping began."""
    stream = Stream(moto)
    stream.put(["before"])
    srv = start_server(settings_of(moto))
    lam = srv.client()
    uuid = mapping(lam, function(lam, collector), stream, StartingPosition="LATEST")
    data = srv.data_dir
    wait_until(lambda: reading(srv, uuid), timeout=30, interval=0.1)
    srv.stop(signal.SIGKILL)
    stream.put(["while-down"])
    start_server(settings_of(moto), data_dir=data)
    wait_until(lambda: "while-down" in collector.datas(), timeout=60)
    assert collector.datas() == ["while-down"]


def reading(srv: Server, uuid: str) -> bool:
    """Whether the mapping's poller has read its stream once (``/_lambdad/esm`` shows a lag):
    a LATEST mapping pins its start before its first read."""
    found = srv.get_json("/_lambdad/esm")["EventSourceMappings"]
    return any(m["UUID"] == uuid and m["MillisBehind"] is not None for m in found)
