"""EventBridge scheduled rules fire their Lambda targets: the Scheduled Event (or a target's
Input) once per occurrence, on the schedulers' fast test clock, through the same engine as
EventBridge Scheduler's schedules."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import (
    Moto,
    Recorder,
    Server,
    create_function,
    kill_every_node,
    launch_server,
    shutdown,
    unique,
    wait_until,
)

#: The test clock: 2030-01-01T00:00:00Z when lambdad starts, one minute per real second.
FAST_CLOCK = {"LAMBDAD_SCHEDULER_CLOCK": "2030-01-01T00:00:00Z,60"}
#: Twice as fast, where only the events' times are asserted on, never a real wait's length.
FASTER_CLOCK = {"LAMBDAD_SCHEDULER_CLOCK": "2030-01-01T00:00:00Z,120"}
ACCOUNT = "000000000000"

#: Reports ``<request id> <n * 10**10 + the event's time>``: n is 1 for a Scheduled Event of
#: the right shape, 9 for one of a wrong shape, and the Input's ``n`` for an Input target.
RECORDING = """
import datetime, os, socket


def handler(event, context):
    if event.get("detail-type") == "Scheduled Event":
        ok = (
            event["version"] == "0" and event["source"] == "aws.events"
            and event["account"] == "000000000000" and event["region"] == "us-east-1"
            and event["detail"] == {} and len(event["resources"]) == 1
            and event["resources"][0].startswith("arn:aws:events:us-east-1:000000000000:rule/")
            and len(event["id"]) == 36
        )
        when = datetime.datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
        number = (1 if ok else 9) * 10**10 + int(when)
    else:
        number = int(event["n"]) * 10**10
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{context.aws_request_id} {number}\\n".encode())
        connection.recv(1)
    return event
"""


def events_client(server: Server) -> Any:
    return boto3.client(
        "events",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad whose schedulers' clock starts at 2030-01-01 and runs 60 times faster."""
    srv = launch_server(tmp_path_factory.mktemp("rules-clocked"), FAST_CLOCK)
    yield srv
    shutdown(srv)


def recording(lam: Any, recorder: Recorder) -> str:
    env = {"RECORDER_PORT": str(recorder.port)}
    created = create_function(lam, RECORDING, name=unique("ruled"), Timeout=30, env=env)
    return str(created["FunctionArn"])


def fires(recorder: Recorder, number: int) -> list[tuple[str, int]]:
    """(request id, event time) of every run reported as ``number``."""
    return sorted(
        (
            (run_id, value - number * 10**10)
            for run_id, value in list(recorder.runs)
            if value // 10**10 == number
        ),
        key=lambda run: (run[1], run[0]),
    )


def test_a_rate_rule_sends_its_targets_the_scheduled_event_each_occurrence(
    clocked: Server, recorder: Recorder
) -> None:
    """rate(1 minute) sends each target a Scheduled Event a minute (of the test clock) apart,
    and a target with Input that Input; a disabled rule sends nothing more (AWS: EventBridge's
    scheduled rules, the reference spec's Scheduled Event)."""
    lam, events = clocked.client(), events_client(clocked)
    function = recording(lam, recorder)
    name = unique("every-minute")
    events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")
    events.put_targets(
        Rule=name,
        Targets=[
            {"Id": "plain", "Arn": function},
            {"Id": "with-input", "Arn": function, "Input": json.dumps({"n": 2})},
        ],
    )
    wait_until(lambda: len(fires(recorder, 1)) >= 3 and len(fires(recorder, 2)) >= 3, timeout=60)
    times = [at for _, at in fires(recorder, 1)][:3]
    assert [b - a for a, b in itertools.pairwise(times)] == [60, 60]
    assert fires(recorder, 9) == []
    ids = [run_id for run_id, _ in fires(recorder, 1) + fires(recorder, 2)]
    assert len(ids) == len(set(ids)), "each target's invoke of each occurrence has its own id"
    events.disable_rule(Name=name)
    settled = len(recorder.runs)
    # A disabled rule fires nothing more: the next minutes of the test clock pass (a function
    # that just ran proves the clock moved on: a second rule's first fire).
    other = unique("witness")
    events.put_rule(Name=other, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=other, Targets=[{"Id": "w", "Arn": function, "Input": '{"n": 3}'}])
    wait_until(lambda: len(fires(recorder, 3)) >= 3, timeout=60)
    in_flight = 2  # an occurrence of each target may have been queued before the disable
    assert len(fires(recorder, 1)) + len(fires(recorder, 2)) <= settled + in_flight
    lam.close()
    events.close()


@pytest.mark.slow
def test_a_rule_fires_once_per_occurrence_across_a_sigkill(
    start_server: Any, recorder: Recorder
) -> None:
    """SIGKILL lambdad while a rule fires every minute of the test clock and start it again on
    its data: from the function's own record, every occurrence ran once with one request id,
    none skipped (the restart's clock starts at the same instant again, so the minutes already
    fired are replayed: recorded as fired, they are not fired twice)."""
    srv = start_server(FASTER_CLOCK)
    lam, events = srv.client(), events_client(srv)
    function = recording(lam, recorder)
    name = unique("killed")
    events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=name, Targets=[{"Id": "t", "Arn": function}])
    wait_until(lambda: len(fires(recorder, 1)) >= 3, timeout=60)
    kill_every_node(srv)
    lam.close()
    events.close()
    last = max(at for _, at in fires(recorder, 1))
    start_server(FASTER_CLOCK, data_dir=srv.data_dir)
    wait_until(lambda: max(at for _, at in fires(recorder, 1)) >= last + 4 * 60, timeout=90)
    ids_by_time: dict[int, set[str]] = {}
    for run_id, at in fires(recorder, 1):
        ids_by_time.setdefault(at, set()).add(run_id)
    times = sorted(ids_by_time)
    assert all(len(ids) == 1 for ids in ids_by_time.values()), ids_by_time  # none doubled
    assert [b - a for a, b in itertools.pairwise(times)] == [60] * (len(times) - 1)  # none missed
    assert fires(recorder, 9) == []


@pytest.mark.slow
def test_a_rule_whose_target_function_is_missing_goes_to_the_targets_dlq(
    moto: Moto, start_server: Any
) -> None:
    """A target whose function does not exist sends the event to the target's DeadLetterConfig
    queue with EventBridge's attributes (RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE,
    RETRY_ATTEMPTS); a target with an Input sends that Input.

    AWS: EventBridge does not retry a target resource that no longer exists; it sends the event
    straight to the DLQ (RetryPolicy applies to retriable errors only)."""
    srv = start_server({"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, **FASTER_CLOCK})
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("rule-dlq"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = events_client(srv)
    name = unique("lost")
    missing = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{unique('gone')}"
    events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")
    events.put_targets(
        Rule=name,
        Targets=[
            {
                "Id": "gone",
                "Arn": missing,
                "Input": '{"x": 1}',
                "DeadLetterConfig": {"Arn": queue_arn},
                "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600},
            }
        ],
    )

    def received() -> list[dict[str, Any]]:
        answer = sqs.receive_message(
            QueueUrl=url, MessageAttributeNames=["All"], MaxNumberOfMessages=10
        )
        return list(answer.get("Messages", []))

    messages = wait_until(received, timeout=60)
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes["RULE_ARN"] == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{name}"
    assert attributes["TARGET_ARN"] == missing
    assert attributes["ERROR_CODE"] == "RESOURCE_NOT_FOUND"
    assert attributes["RETRY_ATTEMPTS"] == "0"
    assert attributes["ERROR_MESSAGE"]
    assert "EXHAUSTED_RETRY_CONDITION" not in attributes  # not retried at all
    assert messages[0]["Body"] == '{"x": 1}'
    events.close()
