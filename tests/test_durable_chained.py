"""Durable functions' chained invokes: the official SDK's ``context.invoke`` against lambdad,
of plain and durable targets (docs/durable-functions.md)."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from tests.conftest import Recorder, Server, create_function, unique, wait_until
from tests.test_durable import REPORT, TWO_STEPS, durable_function, sdk_files, steps_run

__all__ = ["sdk_files"]  # the SDK fixture, used by name

#: Invokes the function the event names with the event's payload, then runs one step; an
#: invoke that fails is answered as the handler's result.
CALLER = (
    REPORT
    + """

@durable_execution
def handler(event, context: DurableContext):
    try:
        answer = context.invoke(event["target"], event.get("payload", {}), name="call")
    except Exception as error:
        return {"error": type(error).__name__, "message": str(error)}
    context.step(lambda _: report("caller", 1), name="after")
    return {"answer": answer}
"""
)

#: A plain function: doubles ``n``, answers ``big`` bytes, or raises.
PLAIN = """
def handler(event, context):
    if "big" in event:
        return "x" * event["big"]
    if "n" not in event:
        raise KeyError("n is missing")
    return {"doubled": event["n"] * 2}
"""


def _events(client: Any, arn: str) -> list[dict[str, Any]]:
    return list(client.get_durable_execution_history(DurableExecutionArn=arn)["Events"])


def _run(client: Any, caller: str, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke ``caller`` synchronously: its result and execution ARN."""
    response = client.invoke(FunctionName=caller, Payload=json.dumps(event).encode())
    assert "FunctionError" not in response
    return {
        "result": json.loads(response["Payload"].read()),
        "arn": response["DurableExecutionArn"],
    }


def _plain(client: Any) -> str:
    name = str(create_function(client, PLAIN, name=unique("plain"))["FunctionName"])
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


@pytest.mark.slow
def test_a_plain_function_is_invoked_and_its_result_returned(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """``context.invoke`` of a plain function: lambdad invokes it with the payload, records its
    result on the CHAINED_INVOKE operation once the caller's invocation has ended, and invokes
    the caller again, which goes on with it (AWS: ChainedInvokeStarted, InvocationCompleted,
    ChainedInvokeSucceeded)."""
    caller = durable_function(lam, recorder, sdk_files, CALLER)
    target = _plain(lam)
    lam.get_waiter("function_active_v2").wait(FunctionName=caller)
    ran = _run(lam, caller, {"target": target, "payload": {"n": 21}})
    assert ran["result"] == {"answer": {"doubled": 42}}
    assert steps_run(recorder) == ["caller"]
    history = [e["EventType"] for e in _events(lam, ran["arn"])]
    assert history[1:4] == [
        "ChainedInvokeStarted",
        "InvocationCompleted",
        "ChainedInvokeSucceeded",
    ], "the target's end is recorded after the invocation that started it"
    events = [e for e in _events(lam, ran["arn"]) if e["EventType"].startswith("ChainedInvoke")]
    assert events[0]["Name"] == "call"
    assert events[0]["ChainedInvokeStartedDetails"]["FunctionName"] == target
    assert events[0]["ChainedInvokeStartedDetails"]["ExecutedVersion"] == "$LATEST"
    assert "DurableExecutionArn" not in events[0]["ChainedInvokeStartedDetails"]
    assert json.loads(events[0]["ChainedInvokeStartedDetails"]["Input"]["Payload"]) == {"n": 21}
    assert json.loads(events[1]["ChainedInvokeSucceededDetails"]["Result"]["Payload"]) == {
        "doubled": 42
    }


@pytest.mark.slow
def test_a_failing_target_fails_the_invoke(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A target that raises, that does not exist, or whose result is over 1 MiB fails the
    chained invoke with its error, which the caller sees as the SDK's InvokeError (AWS:
    ChainedInvokeFailed; the limit and words are the SDK local runner's)."""
    caller = durable_function(lam, recorder, sdk_files, CALLER)
    target = _plain(lam)
    lam.get_waiter("function_active_v2").wait(FunctionName=caller)
    ran = _run(lam, caller, {"target": target, "payload": {}})
    assert ran["result"]["error"] == "InvokeError"
    assert "n is missing" in ran["result"]["message"]
    failed = [e for e in _events(lam, ran["arn"]) if e["EventType"] == "ChainedInvokeFailed"]
    error = failed[0]["ChainedInvokeFailedDetails"]["Error"]["Payload"]
    assert error["ErrorType"] == "KeyError"

    ran = _run(lam, caller, {"target": unique("missing")})
    assert ran["result"]["error"] == "InvokeError"
    failed = [e for e in _events(lam, ran["arn"]) if e["EventType"] == "ChainedInvokeFailed"]
    error = failed[0]["ChainedInvokeFailedDetails"]["Error"]["Payload"]
    assert error["ErrorType"] == "ResourceNotFoundException"

    ran = _run(lam, caller, {"target": target, "payload": {"big": 1_100_000}})
    assert ran["result"]["error"] == "InvokeError"
    failed = [e for e in _events(lam, ran["arn"]) if e["EventType"] == "ChainedInvokeFailed"]
    error = failed[0]["ChainedInvokeFailedDetails"]["Error"]["Payload"]
    assert error["ErrorMessage"] == (
        "CHAINED_INVOKE output payload size must be less than or equal to 1048576 bytes."
    )
    assert steps_run(recorder) == []


def _child_waiting(
    client: Any, recorder: Recorder, sdk_files: dict[str, bytes], wait: int, tag: str
) -> tuple[str, str, str]:
    """A durable caller whose chained invoke started a durable child that now waits ``wait``
    seconds: (the child function, the caller's execution ARN, the child's)."""
    caller = durable_function(client, recorder, sdk_files, CALLER)
    child = durable_function(client, recorder, sdk_files, TWO_STEPS)
    client.get_waiter("function_active_v2").wait(FunctionName=caller)
    client.get_waiter("function_active_v2").wait(FunctionName=child)
    started = client.invoke(
        FunctionName=caller,
        InvocationType="Event",
        Payload=json.dumps({"target": child, "payload": {"wait": wait, "tag": tag}}).encode(),
    )
    arn = started["DurableExecutionArn"]
    children = wait_until(
        lambda: client.list_durable_executions_by_function(FunctionName=child)["DurableExecutions"],
        timeout=60,
    )
    child_arn = children[0]["DurableExecutionArn"]
    wait_until(
        lambda: any(e["EventType"] == "WaitStarted" for e in _events(client, child_arn)),
        timeout=60,
    )
    return child, arn, child_arn


@pytest.mark.slow
def test_a_durable_target_runs_as_an_execution_of_its_own_across_a_restart(
    start_server: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """``context.invoke`` of a durable function starts an execution of it, named in
    ChainedInvokeStarted's DurableExecutionArn; lambdad killed with
    SIGKILL while that execution waits, then restarted, finishes both: the child's steps each
    run once, and the caller gets the child's result (AWS: executions survive the service's
    failures; a chained invoke of a durable function is a durable execution of its own)."""
    srv: Server = start_server()
    client = srv.client()
    child, arn, child_arn = _child_waiting(client, recorder, sdk_files, 4, "c")
    srv.stop(signal.SIGKILL)

    again: Server = start_server(data_dir=srv.data_dir)
    client = again.client()
    wait_until(
        lambda: client.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING",
        timeout=90,
    )
    execution = client.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {"answer": {"sum": 3, "input": "c"}}
    assert steps_run(recorder) == ["caller", "one", "two"]
    assert client.get_durable_execution(DurableExecutionArn=child_arn)["Status"] == "SUCCEEDED"
    listed = client.list_durable_executions_by_function(FunctionName=child)["DurableExecutions"]
    assert len(listed) == 1, "the restart found the same child execution"
    [started_event] = [e for e in _events(client, arn) if e["EventType"] == "ChainedInvokeStarted"]
    assert started_event["ChainedInvokeStartedDetails"]["DurableExecutionArn"] == child_arn


@pytest.mark.slow
def test_stopping_a_caller_stops_its_durable_child(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """StopDurableExecution of a caller whose chained invoke started a durable child execution
    stops the child too, with the same error, and the caller's history ends with
    ExecutionStopped (AWS: stopping an execution terminates its in-progress operations)."""
    _, arn, child_arn = _child_waiting(lam, recorder, sdk_files, 600, "s")
    wait_until(
        lambda: any(e["EventType"] == "InvocationCompleted" for e in _events(lam, arn)),
        timeout=60,
    )
    error = {"ErrorType": "Cancelled", "ErrorMessage": "no longer needed"}
    lam.stop_durable_execution(DurableExecutionArn=arn, Error=error)
    stopped = lam.get_durable_execution(DurableExecutionArn=child_arn)
    assert stopped["Status"] == "STOPPED"
    assert stopped["Error"]["ErrorType"] == "Cancelled"
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "STOPPED"
    history = [e["EventType"] for e in _events(lam, arn)]
    assert history[-1] == "ExecutionStopped"
    assert "ChainedInvokeStarted" in history
    assert "ChainedInvokeStopped" not in history
    assert steps_run(recorder) == ["one"]


#: A durable handler without the SDK that suspends for ever (nothing timed, nothing under way).
SUSPENDED = """
def handler(event, context):
    return {"Status": "PENDING"}
"""


def test_a_refused_checkpoint_creates_no_child_execution(lam: Any) -> None:
    """A CHAINED_INVOKE START in a checkpoint refused for its token creates no child execution
    of the durable target: the token and the batch are checked before the child is made (AWS:
    a refused checkpoint changes nothing)."""
    durable = {"ExecutionTimeout": 600, "RetentionPeriodInDays": 1}
    caller, target = (
        str(create_function(lam, SUSPENDED, DurableConfig=durable)["FunctionName"])
        for _ in range(2)
    )
    for name in (caller, target):
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = lam.invoke(FunctionName=caller, InvocationType="Event", Payload=b"{}")[
        "DurableExecutionArn"
    ]
    wait_until(
        lambda: any(e["EventType"] == "InvocationCompleted" for e in _events(lam, arn)),
        timeout=60,
    )
    start = {
        "Id": "call",
        "Type": "CHAINED_INVOKE",
        "Action": "START",
        "Payload": "{}",
        "ChainedInvokeOptions": {"FunctionName": target},
    }
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.checkpoint_durable_execution(
            DurableExecutionArn=arn, CheckpointToken="c3RhbGU6MQ==", Updates=[start]
        )
    listed = lam.list_durable_executions_by_function(FunctionName=target)
    assert listed["DurableExecutions"] == []
    assert [e["EventType"] for e in _events(lam, arn)] == [
        "ExecutionStarted",
        "InvocationCompleted",
    ]
