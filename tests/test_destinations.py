"""Asynchronous invocation records reach their destinations as on Lambda: another function, an
SQS queue, an SNS topic or an EventBridge bus (the last three through moto's server), with the
record of the wire spec §6 and the conditions Success, RetriesExhausted and EventAgeExceeded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.aws import (
    Collector,
    Inbox,
    Moto,
    behaving_function,
    bus_into,
    fire,
    forwarding_function,
    function_of,
    queued,
    release,
    topic_into,
)
from tests.conftest import Recorder, Rendezvous, Server, wait_until

#: ``aws_server`` runs every platform delay times 0.01: retries 0.6 s and 1.2 s apart, a 60 s
#: maximum age 0.6 s.
SCALE = "0.01"
ACCOUNT = "000000000000"
RECORD_KEYS = [
    "version",
    "timestamp",
    "requestContext",
    "requestPayload",
    "responseContext",
    "responsePayload",
]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def collector() -> Iterator[Collector]:
    service = Collector()
    yield service
    service.close()


@pytest.fixture
def client(aws_server: Server) -> Iterator[Any]:
    lam = aws_server.client()
    yield lam
    lam.close()


def configure(client: Any, name: str, qualifier: str | None = None, **config: Any) -> None:
    """PutFunctionEventInvokeConfig for ``name`` (at ``qualifier``)."""
    extra = {"Qualifier": qualifier} if qualifier else {}
    client.put_function_event_invoke_config(FunctionName=name, **extra, **config)


def runs_of(recorder: Recorder, request_id: str) -> int:
    return recorder.runs_of(request_id)


def arn_of(name: str, qualifier: str = "$LATEST") -> str:
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}:{qualifier}"


def test_a_success_record_goes_to_a_function(
    client: Any, recorder: Recorder, collector: Collector
) -> None:
    """On success, the destination function is invoked asynchronously with the record."""
    destination = forwarding_function(client, collector)
    name = behaving_function(client, recorder.port)
    configure(client, name, DestinationConfig={"OnSuccess": {"Destination": destination}})
    event = {"seq": 1, "do": "ok"}
    request_id = fire(client, name, event)

    (record,) = collector.wait(1)
    assert list(record) == RECORD_KEYS
    assert record["version"] == "1.0"
    assert TIMESTAMP.fullmatch(record["timestamp"])
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": arn_of(name),
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == event
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"echo": event}


def test_a_failure_record_goes_to_sqs_after_the_configured_retries(
    moto: Moto, client: Any, recorder: Recorder
) -> None:
    """With MaximumRetryAttempts 1 a failing event runs twice, then the on-failure queue gets a
    RetriesExhausted record with the function's error."""
    inbox = Inbox(moto)
    name = behaving_function(client, recorder.port)
    configure(
        client,
        name,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": inbox.arn}},
    )
    event = {"seq": 2, "do": "raise", "message": "no luck"}
    request_id = fire(client, name, event)

    (record,) = inbox.bodies(1)
    assert runs_of(recorder, request_id) == 2
    assert list(record) == RECORD_KEYS
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": arn_of(name),
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 2,
    }
    assert record["requestPayload"] == event
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "no luck"


def test_no_retries_and_an_sns_destination(moto: Moto, client: Any, recorder: Recorder) -> None:
    """MaximumRetryAttempts 0 runs a failing event once; the record is the SNS message."""
    inbox = Inbox(moto)
    topic = topic_into(moto, inbox, raw=False)
    name = behaving_function(client, recorder.port)
    configure(
        client,
        name,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": topic}},
    )
    request_id = fire(client, name, {"seq": 3, "do": "raise"})

    (notification,) = inbox.bodies(1)
    assert notification["TopicArn"] == topic
    record = json.loads(notification["Message"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert runs_of(recorder, request_id) == 1


def test_eventbridge_gets_the_record_as_the_detail_of_a_lambda_event(
    moto: Moto, client: Any, recorder: Recorder
) -> None:
    """An EventBridge destination gets an event from source ``lambda`` whose detail is the
    record, with the function's and the bus's ARNs as its resources."""
    inbox = Inbox(moto)
    bus = bus_into(moto, inbox)
    name = behaving_function(client, recorder.port)
    configure(client, name, DestinationConfig={"OnSuccess": {"Destination": bus}})
    request_id = fire(client, name, {"seq": 4})

    (event,) = inbox.bodies(1)
    assert event["source"] == "lambda"
    assert event["detail-type"] == "Lambda Function Invocation Result - Success"
    assert event["resources"] == [arn_of(name), bus]
    assert event["detail"]["requestContext"]["requestId"] == request_id
    assert event["detail"]["requestContext"]["condition"] == "Success"


def test_an_alias_records_its_qualified_arn_and_version(
    moto: Moto, client: Any, recorder: Recorder
) -> None:
    """Events sent to an alias use the alias's config; the record names the alias and the
    version that ran."""
    inbox = Inbox(moto)
    name = behaving_function(client, recorder.port)
    version = client.publish_version(FunctionName=name)["Version"]
    client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    configure(client, name, "live", DestinationConfig={"OnSuccess": {"Destination": inbox.arn}})
    fire(client, name, {"seq": 5}, Qualifier="live")

    (record,) = inbox.bodies(1)
    assert record["requestContext"]["functionArn"] == arn_of(name, "live")
    assert record["responseContext"]["executedVersion"] == version


def test_an_expired_event_fails_with_event_age_exceeded(
    moto: Moto, client: Any, recorder: Recorder, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """An event throttled past MaximumEventAgeInSeconds (its function's one concurrent run is
    held) is not run: the on-failure record says EventAgeExceeded, and the DLQ gets it too."""
    gate = rendezvous(2)
    inbox = Inbox(moto)
    dlq = Inbox(moto)
    name = behaving_function(client, recorder.port, DeadLetterConfig={"TargetArn": dlq.arn})
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    configure(
        client,
        name,
        MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": inbox.arn}},
    )
    holder = fire(client, name, {"seq": 60, "do": "hold", "gate": gate.port})
    wait_until(lambda: runs_of(recorder, holder) == 1, timeout=30)
    event = {"seq": 6}
    request_id = fire(client, name, event)

    (record,) = inbox.bodies(1)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == event
    assert record["responseContext"]["statusCode"] == 429
    (letter,) = dlq.wait(1)
    assert letter["Body"] == json.dumps(event)
    assert runs_of(recorder, request_id) == 0
    release(gate)


@pytest.mark.slow
def test_a_retry_past_the_maximum_age_reports_the_last_error(
    moto: Moto, start_server: Callable[..., Server], recorder: Recorder
) -> None:
    """A failed event whose retry falls after MaximumEventAgeInSeconds (60 s, as long as the
    first retry delay; both scaled to 3 s) is not run again: EventAgeExceeded with the last
    attempt's error."""
    srv = start_server({"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, "LAMBDAD_TIME_SCALE": "0.05"})
    client = srv.client()
    inbox = Inbox(moto)
    name = behaving_function(client, recorder.port)
    configure(
        client,
        name,
        MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": inbox.arn}},
    )
    request_id = fire(client, name, {"seq": 10, "do": "raise", "message": "first and last"})

    (record,) = inbox.bodies(1)
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorMessage"] == "first and last"
    assert runs_of(recorder, request_id) == 1


def test_a_failed_delivery_does_not_stop_the_dispatcher(
    aws_server: Server, moto: Moto, client: Any, recorder: Recorder
) -> None:
    """A record that cannot be delivered (its queue does not exist) is dropped after a few
    tries; the event is still acknowledged and later events are delivered."""
    missing = "arn:aws:sqs:us-east-1:123456789012:nowhere"
    lost = behaving_function(client, recorder.port)
    configure(client, lost, DestinationConfig={"OnSuccess": {"Destination": missing}})
    lost_id = fire(client, lost, {"seq": 7})
    wait_until(lambda: runs_of(recorder, lost_id) == 1 and queued(aws_server, lost_id) is None)

    inbox = Inbox(moto)
    name = behaving_function(client, recorder.port)
    configure(client, name, DestinationConfig={"OnSuccess": {"Destination": inbox.arn}})
    request_id = fire(client, name, {"seq": 8})
    (record,) = inbox.bodies(1)
    assert record["requestContext"]["requestId"] == request_id


#: Answers with the trace header it runs under.
TRACE_ECHO = """
import os


def handler(event, context):
    return os.environ.get("_X_AMZN_TRACE_ID")
"""
RECURSION_MESSAGE = (
    "Lambda has detected your function being invoked in a recursive loop with other Amazon "
    "Web Services resources and stopped your function's invocation."
)


def invoke_traced(client: Any, header: str | None, **kwargs: Any) -> Any:
    """Invoke with ``X-Amzn-Trace-Id: header`` (as the SDK forwards it inside a function)."""

    def add_header(request: Any, **_: Any) -> None:
        if header is not None:
            request.headers["X-Amzn-Trace-Id"] = header

    client.meta.events.register("before-sign.lambda.Invoke", add_header)
    try:
        return client.invoke(**kwargs)
    finally:
        client.meta.events.unregister("before-sign.lambda.Invoke", add_header)


def test_a_stopped_recursive_event_fails_at_once(moto: Moto, client: Any) -> None:
    """An event whose chain already ran its function 16 times is stopped, not retried: the
    on-failure record and the DLQ get it at once, with the 400 RecursiveInvocationException."""
    inbox, dlq = Inbox(moto), Inbox(moto)
    name = function_of(client, TRACE_ECHO, DeadLetterConfig={"TargetArn": dlq.arn})
    configure(client, name, DestinationConfig={"OnFailure": {"Destination": inbox.arn}})
    trace = json.loads(invoke_traced(client, None, FunctionName=name)["Payload"].read())
    fields = dict(part.split("=", 1) for part in trace.split(";"))
    key = fields["Lineage"].split(":")[0]
    header = f"{fields['Root']};Lineage={key}:16"

    event = {"seq": 9}
    accepted = invoke_traced(
        client, header, FunctionName=name, InvocationType="Event", Payload=json.dumps(event)
    )
    assert accepted["StatusCode"] == 202
    request_id = accepted["ResponseMetadata"]["RequestId"]

    (record,) = inbox.bodies(1)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"] == {"statusCode": 400, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {
        "errorType": "RecursiveInvocationException",
        "errorMessage": RECURSION_MESSAGE,
    }
    (letter,) = dlq.wait(1)
    assert letter["Body"] == json.dumps(event)
    assert {k: v["StringValue"] for k, v in letter["MessageAttributes"].items()} == {
        "RequestID": request_id,
        "ErrorCode": "400",
        "ErrorMessage": RECURSION_MESSAGE,
    }
