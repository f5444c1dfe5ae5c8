"""Lambda's event source mapping metrics read back with boto3's ``cloudwatch`` client after a
real ``lambdad serve`` polled the suite's moto server: IteratorAge of a Kinesis mapping, and
the event counts (``MetricsConfig`` ``EventCount``) of an SQS mapping (docs/metrics.md)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdad.observe.distribution import Distribution
from lambdad.observe.metric_cells import Cell
from tests.conftest import (
    Moto,
    Server,
    create_function,
    launch_server,
    shutdown,
    unique,
    wait_until,
)
from tests.test_kinesis_poller import Stream, settings_of

pytestmark = pytest.mark.slow

#: Succeeds, and fails a batch holding a record (an SQS body or Kinesis data) that says "bad".
HANDLER = """
import base64

def handler(event, context):
    for record in event["Records"]:
        if "body" in record:
            data = record["body"]
        else:
            data = base64.b64decode(record["kinesis"]["data"]).decode()
        if "bad" in data:
            raise RuntimeError("bad record")
    return None
"""


@pytest.fixture(scope="module")
def esm_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad of moto's account whose queues and streams are moto's."""
    srv = launch_server(tmp_path_factory.mktemp("lambdad-esm-metrics"), settings_of(moto))
    yield srv
    shutdown(srv)


@pytest.fixture
def lam(esm_server: Server) -> Iterator[Any]:
    client = esm_server.client()
    yield client
    client.close()


@pytest.fixture
def cw(esm_server: Server) -> Iterator[Any]:
    client = boto3.client(
        "cloudwatch",
        endpoint_url=esm_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield client
    client.close()


def _stat(cw: Any, metric: str, dimensions: dict[str, str], stat: str) -> list[float]:
    """The values of one GetMetricData query over the last hour, one per minute."""
    now = datetime.datetime.now(datetime.UTC)
    query = {
        "Id": "q",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            },
            "Period": 60,
            "Stat": stat,
        },
    }
    answer = cw.get_metric_data(
        MetricDataQueries=[query],
        StartTime=now - datetime.timedelta(hours=1),
        EndTime=now + datetime.timedelta(minutes=2),
    )
    return [float(v) for v in answer["MetricDataResults"][0]["Values"]]


def _enabled(lam: Any, uuid: str) -> None:
    wait_until(lambda: lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled")


def test_kinesis_mapping_records_iterator_age(lam: Any, cw: Any, moto: Moto) -> None:
    """A Kinesis mapping's invocations record IteratorAge (milliseconds from the newest
    record's arrival in the stream to the invoke) under the function's dimensions, as Lambda
    publishes it for stream sources without any MetricsConfig."""
    stream = Stream(moto)
    stream.put([f"r{n}" for n in range(5)])
    name = create_function(lam, HANDLER, Timeout=30)["FunctionName"]
    made = lam.create_event_source_mapping(
        EventSourceArn=stream.arn, FunctionName=name, StartingPosition="TRIM_HORIZON"
    )
    _enabled(lam, made["UUID"])
    assert "MetricsConfig" not in made
    function = {"FunctionName": name}
    assert wait_until(lambda: sum(_stat(cw, "IteratorAge", function, "SampleCount")), 60)
    # the records were put before the mapping existed: every invoke came after they arrived
    assert max(_stat(cw, "IteratorAge", function, "Maximum")) > 0
    assert _stat(cw, "IteratorAge", function, "p99")
    listed = cw.list_metrics(Namespace="AWS/Lambda", MetricName="IteratorAge")["Metrics"]
    assert {"Name": "FunctionName", "Value": name} in [d for m in listed for d in m["Dimensions"]]
    # no MetricsConfig: no event counts
    by_uuid = [{"Name": "EventSourceMappingUUID", "Value": made["UUID"]}]
    assert cw.list_metrics(Namespace="AWS/Lambda", Dimensions=by_uuid)["Metrics"] == []


def test_kinesis_mapping_counts_what_it_gives_up_on(lam: Any, cw: Any, moto: Moto) -> None:
    """A stream mapping with EventCount on counts the records of a batch it gives up on
    (retries exhausted) and sends to its on-failure destination as
    OnFailureDestinationDeliveredEventCount, not as DroppedEventCount (which Lambda counts
    for records given up on that no destination took)."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    stream = Stream(moto)
    stream.put(["bad", "good"], key=lambda n: "same")
    name = create_function(lam, HANDLER, Timeout=30)["FunctionName"]
    made = lam.create_event_source_mapping(
        EventSourceArn=stream.arn,
        FunctionName=name,
        StartingPosition="TRIM_HORIZON",
        BatchSize=1,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": arn}},
        MetricsConfig={"Metrics": ["EventCount"]},
    )
    mapping = {"EventSourceMappingUUID": made["UUID"]}

    def total(metric: str) -> float:
        return sum(_stat(cw, metric, mapping, "Sum"))

    assert wait_until(lambda: total("InvokedEventCount") == 2, 60)
    assert wait_until(lambda: total("OnFailureDestinationDeliveredEventCount") == 1, 30)
    assert total("DroppedEventCount") == 0
    assert total("FailedInvokeEventCount") == 1
    assert total("PolledEventCount") == 2
    assert "Messages" in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)

    # without a destination the record given up on is dropped
    bare = Stream(moto)
    bare.put(["bad"])
    plain = lam.create_event_source_mapping(
        EventSourceArn=bare.arn,
        FunctionName=name,
        StartingPosition="TRIM_HORIZON",
        MaximumRetryAttempts=0,
        MetricsConfig={"Metrics": ["EventCount"]},
    )
    mapping = {"EventSourceMappingUUID": plain["UUID"]}  # what ``total`` now reads
    assert wait_until(lambda: total("DroppedEventCount") == 1, 60)
    assert total("OnFailureDestinationDeliveredEventCount") == 0


def test_sqs_mapping_event_counts(lam: Any, cw: Any, moto: Moto) -> None:
    """With ``MetricsConfig: {Metrics: [EventCount]}`` an SQS mapping records, under the
    ``EventSourceMappingUUID`` dimension, the events polled, filtered out, invoked with,
    failed and deleted, as Lambda's event source mapping metrics count them."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("q"), Attributes={"VisibilityTimeout": "600"})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bodies = [{"kind": "keep"}] * 3 + [{"kind": "skip"}] * 2
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    name = create_function(lam, HANDLER, Timeout=30)["FunctionName"]
    made = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName=name,
        BatchSize=10,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["keep", "bad"]}})}]},
        MetricsConfig={"Metrics": ["EventCount"]},
    )
    uuid = made["UUID"]
    assert made["MetricsConfig"] == {"Metrics": ["EventCount"]}
    _enabled(lam, uuid)
    assert lam.get_event_source_mapping(UUID=uuid)["MetricsConfig"] == {"Metrics": ["EventCount"]}
    mapping = {"EventSourceMappingUUID": uuid}

    def total(metric: str) -> float:
        return sum(_stat(cw, metric, mapping, "Sum"))

    assert wait_until(lambda: total("DeletedEventCount") == 3, 60)
    assert total("PolledEventCount") == 5
    assert total("FilteredOutEventCount") == 2
    assert total("InvokedEventCount") == 3
    assert total("FailedInvokeEventCount") == 0
    listed = cw.list_metrics(
        Namespace="AWS/Lambda", Dimensions=[{"Name": "EventSourceMappingUUID"}]
    )
    names = {m["MetricName"] for m in listed["Metrics"] if m["Dimensions"][0]["Value"] == uuid}
    assert names == {
        "PolledEventCount",
        "FilteredOutEventCount",
        "InvokedEventCount",
        "DeletedEventCount",
    }

    # a failing batch: invoked with, failed, not deleted (it waits for the visibility timeout)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "bad"}))
    assert wait_until(lambda: total("FailedInvokeEventCount") == 1, 60)
    assert total("InvokedEventCount") == 4
    assert total("PolledEventCount") == 6
    assert total("DeletedEventCount") == 3


def test_metrics_config_takes_event_count_only(lam: Any, moto: Moto) -> None:
    """``MetricsConfig.Metrics`` of an SQS or stream mapping takes ``EventCount``; the
    Kafka-only ``ErrorCount`` and ``KafkaMetrics`` are InvalidParameterValueException, and an
    update can turn the counts off with an empty list."""
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    name = create_function(lam, HANDLER)["FunctionName"]
    with pytest.raises(ClientError) as excinfo:
        lam.create_event_source_mapping(
            EventSourceArn=arn, FunctionName=name, MetricsConfig={"Metrics": ["KafkaMetrics"]}
        )
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
    made = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, MetricsConfig={"Metrics": ["EventCount"]}
    )
    _enabled(lam, made["UUID"])
    updated = lam.update_event_source_mapping(UUID=made["UUID"], MetricsConfig={"Metrics": []})
    assert updated["MetricsConfig"] == {"Metrics": []}


def test_cells_keep_iterator_age_and_read_rows_written_before_it() -> None:
    """A minute's cell keeps IteratorAge through its stored form, and a cell stored before
    IteratorAge existed (one member fewer) still reads back, with none."""
    cell = Cell()
    cell.invocations = 2
    cell.iterator_age = Distribution()
    cell.iterator_age.add(1500.0)
    again = Cell.from_json(json.loads(json.dumps(cell.to_json())))
    assert again.invocations == 2
    assert again.iterator_age is not None
    assert again.iterator_age.maximum == 1500.0
    older = Cell.from_json(cell.to_json()[:-1])
    assert older.invocations == 2
    assert older.iterator_age is None
