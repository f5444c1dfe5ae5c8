"""Asynchronous invocations are retried as on Lambda: function errors up to two more times with
the attempts kept durably, throttles without using attempts, expired and deleted events not run
again, and the event dead-lettered (SQS or SNS, through moto's server) after its last failure."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aws import (
    Inbox,
    Moto,
    behaving_function,
    fire,
    queued,
    release,
    topic_into,
)
from tests.conftest import Recorder, Rendezvous, Server, wait_until

#: ``aws_server`` runs every platform delay times 0.01: retries come 0.6 s, then 1.2 s, after a
#: failure.
SCALE = "0.01"


@pytest.fixture
def client(aws_server: Server) -> Iterator[Any]:
    lam = aws_server.client()
    yield lam
    lam.close()


def runs_of(recorder: Recorder, request_id: str) -> int:
    return recorder.runs_of(request_id)


def attributes_of(message: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        name: (value["DataType"], value["StringValue"])
        for name, value in message["MessageAttributes"].items()
    }


@pytest.mark.parametrize("failure", ["raise", "exit", "sleep"])
@pytest.mark.slow
def test_a_function_error_runs_three_times_then_is_dead_lettered(
    moto: Moto, aws_server: Server, client: Any, recorder: Recorder, failure: str
) -> None:
    """A handler exception, a crash or a timeout runs the event 3 times in all (2 retries),
    then the SQS dead-letter queue gets the event body as sent, with Lambda's attributes."""
    dlq = Inbox(moto)
    name = behaving_function(
        client, recorder.port, Timeout=1, DeadLetterConfig={"TargetArn": dlq.arn}
    )
    message = "boom " * 400
    event = {"seq": 1, "do": failure, "message": message}
    request_id = fire(client, name, event)

    (letter,) = dlq.wait(1)
    assert runs_of(recorder, request_id) == 3
    assert letter["Body"] == json.dumps(event)
    attributes = attributes_of(letter)
    assert attributes["RequestID"] == ("String", request_id)
    assert attributes["ErrorCode"] == ("Number", "200")
    kind, error_message = attributes["ErrorMessage"]
    assert kind == "String"
    if failure == "raise":
        assert error_message == message[:1024]
    else:
        assert error_message
    wait_until(lambda: queued(aws_server, request_id) is None)
    assert runs_of(recorder, request_id) == 3


@pytest.mark.slow
def test_an_sns_dead_letter_topic_gets_the_event_and_its_attributes(
    moto: Moto, client: Any, recorder: Recorder
) -> None:
    """A DLQ may be an SNS topic: it publishes the event body with the same attributes."""
    inbox = Inbox(moto)
    topic = topic_into(moto, inbox, raw=True)
    name = behaving_function(client, recorder.port, DeadLetterConfig={"TargetArn": topic})
    event = {"seq": 2, "do": "raise", "message": "sns please"}
    request_id = fire(client, name, event)

    (letter,) = inbox.wait(1)
    assert letter["Body"] == json.dumps(event)
    assert attributes_of(letter) == {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "sns please"),
    }
    assert runs_of(recorder, request_id) == 3


@pytest.mark.slow
def test_a_throttled_event_waits_without_using_its_attempts(
    moto: Moto,
    aws_server: Server,
    client: Any,
    recorder: Recorder,
    rendezvous: Callable[[int], Rendezvous],
) -> None:
    """An event throttled many times (reserved concurrency 1, held by another event) still has
    all its attempts when concurrency frees up: a failing function then runs 3 times."""
    gate = rendezvous(2)
    dlq = Inbox(moto)
    name = behaving_function(client, recorder.port, DeadLetterConfig={"TargetArn": dlq.arn})
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    holder = fire(client, name, {"seq": 30, "do": "hold", "gate": gate.port})
    wait_until(lambda: runs_of(recorder, holder) == 1, timeout=30)
    request_id = fire(client, name, {"seq": 3, "do": "raise"})

    def throttled_often() -> bool:
        row = queued(aws_server, request_id)
        return row is not None and int(row[1].get("throttles", "0")) >= 4

    wait_until(throttled_often, timeout=30)
    row = queued(aws_server, request_id)
    assert row is not None
    assert row[0] == 0, "throttles must not count as attempts"
    assert runs_of(recorder, request_id) == 0

    release(gate)
    (letter,) = dlq.wait(1, timeout=60)
    assert attributes_of(letter)["RequestID"] == ("String", request_id)
    assert attributes_of(letter)["ErrorCode"] == ("Number", "200")
    assert runs_of(recorder, request_id) == 3


def test_a_deleted_functions_events_are_dropped(
    aws_server: Server,
    client: Any,
    recorder: Recorder,
    rendezvous: Callable[[int], Rendezvous],
) -> None:
    """Events still queued when their function is deleted are dropped, not run or kept."""
    gate = rendezvous(2)
    name = behaving_function(client, recorder.port)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    holder = fire(client, name, {"seq": 40, "do": "hold", "gate": gate.port})
    wait_until(lambda: runs_of(recorder, holder) == 1, timeout=30)
    request_id = fire(client, name, {"seq": 4})
    wait_until(lambda: (queued(aws_server, request_id) or (0, {}))[1].get("throttles"))
    client.delete_function(FunctionName=name)
    release(gate)
    wait_until(lambda: queued(aws_server, request_id) is None, timeout=30)
    assert runs_of(recorder, request_id) == 0


@pytest.mark.slow
def test_an_event_past_its_maximum_age_is_dead_lettered_unrun(
    moto: Moto,
    start_server: Callable[..., Server],
    recorder: Recorder,
    rendezvous: Callable[[int], Rendezvous],
) -> None:
    """An event that could not run within MaximumEventAgeInSeconds (default 6 h, times a time
    scale of 0.0002: 4.3 s) is not run: its body goes to the DLQ with the last error (429)."""
    srv = start_server({"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, "LAMBDAD_TIME_SCALE": "0.0002"})
    client = srv.client()
    gate = rendezvous(2)
    dlq = Inbox(moto)
    name = behaving_function(client, recorder.port, DeadLetterConfig={"TargetArn": dlq.arn})
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    holder = fire(client, name, {"seq": 50, "do": "hold", "gate": gate.port})
    wait_until(lambda: runs_of(recorder, holder) == 1, timeout=30)
    request_id = fire(client, name, {"seq": 5})

    (letter,) = dlq.wait(1, timeout=60)
    assert attributes_of(letter) == {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", "429"),
        "ErrorMessage": ("String", "Rate Exceeded."),
    }
    wait_until(lambda: queued(srv, request_id) is None)
    assert runs_of(recorder, request_id) == 0
    release(gate)


@pytest.mark.slow
def test_a_killed_lambdad_keeps_the_attempt_count(
    moto: Moto, start_server: Callable[..., Server], recorder: Recorder, tmp_path: Path
) -> None:
    """SIGKILL between two attempts of a failing event: after a restart on the same data the
    event runs its remaining 2 attempts, not 3 more, and is dead-lettered once."""
    settings = {"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, "LAMBDAD_TIME_SCALE": "0.03"}
    srv = start_server(settings)
    client = srv.client()
    dlq = Inbox(moto)
    name = behaving_function(client, recorder.port, DeadLetterConfig={"TargetArn": dlq.arn})
    request_id = fire(client, name, {"seq": 6, "do": "raise"})
    # The first attempt failed and its count is committed; the retry is 1.8 s away.
    wait_until(lambda: (queued(srv, request_id) or (0, {}))[0] == 1, timeout=30, interval=0.01)
    srv.stop(signal.SIGKILL)
    assert runs_of(recorder, request_id) == 1

    start_server(settings, data_dir=srv.data_dir)
    (letter,) = dlq.wait(1, timeout=60)
    assert attributes_of(letter)["RequestID"] == ("String", request_id)
    assert runs_of(recorder, request_id) == 3
