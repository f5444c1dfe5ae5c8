"""Durable functions reached other ways than Invoke: InvokeAsync, function URLs,
InvokeWithResponseStream and schedules start durable executions (docs/durable-functions.md)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import (
    Moto,
    Recorder,
    Server,
    create_function,
    launch_server,
    shutdown,
    unique,
    wait_until,
)
from tests.test_cloudwatch_logs import logs_client
from tests.test_durable import REPORT, durable_function, sdk_files, steps_run
from tests.test_esm_api import esm_server, queue_arn
from tests.test_scheduler import FAST_CLOCK, OFF, fn_arn, scheduler_client, target
from tests.url_client import call_url

__all__ = ["esm_server", "sdk_files"]  # fixtures, used by name

#: One step; the result names the event it got.
ONE_STEP = (
    REPORT
    + """

@durable_execution
def handler(event, context: DurableContext):
    context.step(lambda _: report("one", 1), name="one")
    return {"got": event}
"""
)


def _executions(client: Any, name: str) -> list[dict[str, Any]]:
    return list(client.list_durable_executions_by_function(FunctionName=name)["DurableExecutions"])


def _succeeded(client: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in _executions(client, name) if e["Status"] == "SUCCEEDED"]


@pytest.fixture
def one_step(lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]) -> str:
    name = durable_function(lam, recorder, sdk_files, ONE_STEP)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


@pytest.mark.slow
def test_invoke_async_starts_an_execution(lam: Any, one_step: str, recorder: Recorder) -> None:
    """InvokeAsync of a durable function starts a durable execution with its payload (AWS:
    durable functions support every invocation method of other functions)."""
    answer = lam.invoke_async(FunctionName=one_step, InvokeArgs=b'{"via": "invoke-async"}')
    assert answer["Status"] == 202
    [done] = wait_until(lambda: _succeeded(lam, one_step), timeout=60)
    execution = lam.get_durable_execution(DurableExecutionArn=done["DurableExecutionArn"])
    assert json.loads(execution["Result"]) == {"got": {"via": "invoke-async"}}
    assert steps_run(recorder) == ["one"]


@pytest.mark.slow
def test_executions_are_listed_by_start_time(lam: Any, one_step: str) -> None:
    """ListDurableExecutionsByFunction's StartedAfter and StartedBefore keep the executions
    started in that span (AWS: both bounds inclusive filters on the start time)."""
    lam.invoke(FunctionName=one_step, Payload=b"{}")
    [listed] = _executions(lam, one_step)
    started = listed["StartTimestamp"]
    second = datetime.timedelta(seconds=1)

    def between(**bounds: Any) -> int:
        found = lam.list_durable_executions_by_function(FunctionName=one_step, **bounds)
        return len(found["DurableExecutions"])

    assert between(StartedAfter=started - second) == 1
    assert between(StartedAfter=started + second) == 0
    assert between(StartedBefore=started + second) == 1
    assert between(StartedBefore=started - second) == 0
    assert between(StartedAfter=started - second, StartedBefore=started + second) == 1


@pytest.mark.slow
def test_a_function_url_answers_the_execution_result(
    lam: Any, one_step: str, recorder: Recorder
) -> None:
    """A function URL of a durable function runs an execution and answers its result, as a
    synchronous invoke does."""
    url = lam.create_function_url_config(FunctionName=one_step, AuthType="NONE")["FunctionUrl"]
    lam.add_permission(
        FunctionName=one_step,
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    lam.add_permission(
        FunctionName=one_step, StatementId="invoke", Action="lambda:InvokeFunction", Principal="*"
    )
    answer = call_url(url, method="POST", body=b"hello")
    assert answer.status == 200
    got = answer.json()["got"]
    assert got["body"] == "hello"
    assert got["requestContext"]["http"]["method"] == "POST"
    assert len(_succeeded(lam, one_step)) == 1


@pytest.mark.slow
def test_invoke_with_response_stream_answers_the_execution_result(lam: Any, one_step: str) -> None:
    """InvokeWithResponseStream of a durable function runs an execution and answers its
    result in one piece."""
    response = lam.invoke_with_response_stream(FunctionName=one_step, Payload=b'{"s": 1}')
    chunks = b"".join(
        event["PayloadChunk"]["Payload"]
        for event in response["EventStream"]
        if "PayloadChunk" in event
    )
    assert json.loads(chunks) == {"got": {"s": 1}}
    assert len(_succeeded(lam, one_step)) == 1


@pytest.fixture
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad whose schedulers' clock runs 60 times faster (a minute is a second)."""
    srv = launch_server(tmp_path_factory.mktemp("clocked"), FAST_CLOCK)
    yield srv
    shutdown(srv)


@pytest.mark.slow
def test_a_schedule_starts_an_execution_each_time_it_fires(
    clocked: Server, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """An EventBridge Scheduler schedule whose target is a durable function starts a durable
    execution at each occurrence (AWS: the scheduler invokes asynchronously)."""
    lam, sched = clocked.client(), scheduler_client(clocked)
    name = durable_function(lam, recorder, sdk_files, ONE_STEP)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    schedule = unique("durable")
    sched.create_schedule(
        Name=schedule,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=OFF,
        Target=target(fn_arn(name), Input='{"from": "schedule"}'),
    )
    done = wait_until(lambda: len(_succeeded(lam, name)) >= 2 and _succeeded(lam, name), timeout=90)
    sched.delete_schedule(Name=schedule)
    execution = lam.get_durable_execution(DurableExecutionArn=done[0]["DurableExecutionArn"])
    assert json.loads(execution["Result"]) == {"got": {"from": "schedule"}}
    names = {e["DurableExecutionName"] for e in _executions(lam, name)}
    assert len(names) == len(_executions(lam, name)), "one execution per occurrence"
    assert all(len(n) == 36 for n in names), "named after the occurrence's id"
    lam.close()
    sched.close()


#: Logs one line with the SDK's logger, which names the execution.
LOGGING = (
    REPORT
    + """

@durable_execution
def handler(event, context: DurableContext):
    context.logger.info("inside the execution")
    return "logged"
"""
)


@pytest.mark.slow
def test_the_execution_arn_is_in_the_function_logs(
    lam: Any, server: Server, sdk_files: dict[str, bytes]
) -> None:
    """A durable function's log records written with the SDK's logger carry the execution's
    ARN (AWS: with the JSON log format, as ``executionArn``)."""
    name = str(
        create_function(
            lam,
            files={**sdk_files, "app.py": LOGGING.encode()},
            name=unique("durable"),
            Timeout=60,
            MemorySize=256,
            LoggingConfig={"LogFormat": "JSON"},
            DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
        )["FunctionName"]
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    response = lam.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(response["Payload"].read()) == "logged"
    logs = logs_client(server)

    def logged() -> list[dict[str, Any]]:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        return [json.loads(e["message"]) for e in events if "inside the execution" in e["message"]]

    [record] = wait_until(logged, timeout=60)
    assert record["executionArn"] == response["DurableExecutionArn"]
    logs.close()


@pytest.mark.slow
def test_an_sqs_mapping_starts_an_execution_per_batch_and_deletes_its_messages(
    esm_server: Server, moto: Moto, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """An SQS event source mapping whose function is durable starts one durable execution per
    batch, its input the batch's ``Records``, and deletes the messages once the execution has
    succeeded (AWS: a mapping invokes a durable function synchronously, waiting up to 15
    minutes for the execution's end)."""
    lam = esm_server.client()
    name = durable_function(lam, recorder, sdk_files, ONE_STEP)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    source = queue_arn(moto)
    sqs = moto.client("sqs")
    url = sqs.get_queue_url(QueueName=source.rsplit(":", 1)[1])["QueueUrl"]
    bodies = {f"m{i}" for i in range(3)}
    for body in sorted(bodies):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    uuid = lam.create_event_source_mapping(EventSourceArn=source, FunctionName=name, BatchSize=10)[
        "UUID"
    ]
    try:
        done = wait_until(
            lambda: (
                (ran := _succeeded(lam, name))
                and sum(len(_records(lam, e)) for e in ran) >= len(bodies)
                and ran
            ),
            timeout=90,
        )
        got = [r for e in done for r in _records(lam, e)]
        assert sorted(r["body"] for r in got) == sorted(bodies)
        assert all(r["eventSource"] == "aws:sqs" for r in got)
        assert steps_run(recorder) == ["one"] * len(done)

        def left() -> int:
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            return sum(int(value) for value in attributes.values())

        wait_until(lambda: left() == 0, timeout=60)
    finally:
        lam.delete_event_source_mapping(UUID=uuid)
        lam.close()


def _records(lam: Any, execution: dict[str, Any]) -> list[dict[str, Any]]:
    """The SQS records an execution was started with (its result echoes its event)."""
    found = lam.get_durable_execution(DurableExecutionArn=execution["DurableExecutionArn"])
    return list(json.loads(found["Result"])["got"]["Records"])
