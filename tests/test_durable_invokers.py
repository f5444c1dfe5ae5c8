"""Durable functions reached other ways than Invoke: InvokeAsync, function URLs,
InvokeWithResponseStream and schedules start durable executions (docs/durable-functions.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Recorder, Server, launch_server, shutdown, unique, wait_until
from tests.test_durable import REPORT, durable_function, sdk_files, steps_run
from tests.test_scheduler import FAST_CLOCK, OFF, fn_arn, scheduler_client, target
from tests.url_client import call_url

__all__ = ["sdk_files"]  # the SDK fixture, used by name

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
