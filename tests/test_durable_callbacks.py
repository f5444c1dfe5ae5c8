"""Durable functions' callbacks: the official SDK's ``wait_for_callback`` against lambdad,
completed with SendDurableExecutionCallbackSuccess / Failure / Heartbeat
(docs/durable-functions.md)."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Recorder, Server, wait_until
from tests.test_durable import REPORT, durable_function, sdk_files, steps_run

__all__ = ["sdk_files"]  # the SDK fixture, used by name

#: Waits for a callback (its submitter reports, or completes the callback itself when the
#: event says ``inline``), then runs one step; a callback that fails or times out is answered
#: as the handler's result.
CALLBACK = (
    REPORT
    + """
import json

import boto3
from aws_durable_execution_sdk_python.config import WaitForCallbackConfig


def submit(callback_id, event):
    report("submitted", 1)
    if event.get("inline"):
        boto3.client("lambda").send_durable_execution_callback_success(
            CallbackId=callback_id, Result=json.dumps("inline").encode()
        )


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForCallbackConfig(
        timeout=Duration.from_seconds(event.get("timeout", 0)),
        heartbeat_timeout=Duration.from_seconds(event.get("heartbeat", 0)),
    )
    try:
        answer = context.wait_for_callback(
            lambda callback_id, _: submit(callback_id, event), name="approval", config=config
        )
    except Exception as error:
        return {"error": type(error).__name__, "message": str(error)}
    context.step(lambda _: report("after", 1), name="after")
    return {"answer": answer}
"""
)


def _events(client: Any, arn: str) -> list[dict[str, Any]]:
    return list(client.get_durable_execution_history(DurableExecutionArn=arn)["Events"])


def _callback_id(client: Any, arn: str) -> str:
    """The id of the execution's callback, once it has started."""
    started = wait_until(
        lambda: [e for e in _events(client, arn) if e["EventType"] == "CallbackStarted"],
        timeout=60,
    )
    return str(started[0]["CallbackStartedDetails"]["CallbackId"])


def _submitted(client: Any, arn: str) -> None:
    """Wait until the submitter step has been checkpointed (it does not run again)."""
    wait_until(
        lambda: any(
            e["EventType"] == "StepSucceeded" and e.get("Name") == "approval submitter"
            for e in _events(client, arn)
        ),
        timeout=60,
    )


def _ended(client: Any, arn: str, timeout: float = 60) -> dict[str, Any]:
    wait_until(
        lambda: client.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING",
        timeout=timeout,
    )
    return dict(client.get_durable_execution(DurableExecutionArn=arn))


def _start(client: Any, name: str, event: dict[str, Any]) -> str:
    started = client.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode()
    )
    return str(started["DurableExecutionArn"])


@pytest.mark.slow
def test_a_callback_result_resumes_the_execution(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """SendDurableExecutionCallbackSuccess completes the callback the handler waits for: the
    execution is invoked again and the handler goes on with the result, its submitter not run
    again; heartbeats are accepted while it waits (AWS: CallbackStarted, CallbackSucceeded)."""
    name = durable_function(lam, recorder, sdk_files, CALLBACK)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = _start(lam, name, {"timeout": 300, "heartbeat": 120})
    callback_id = _callback_id(lam, arn)
    wait_until(lambda: steps_run(recorder) == ["submitted"], timeout=60)
    lam.send_durable_execution_callback_heartbeat(CallbackId=callback_id)
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b'"approved"')

    execution = _ended(lam, arn)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {"answer": '"approved"'}
    assert steps_run(recorder) == ["after", "submitted"]
    events = _events(lam, arn)
    started = next(e for e in events if e["EventType"] == "CallbackStarted")
    assert started["Name"] == "approval create callback id"
    assert started["CallbackStartedDetails"] == {
        "CallbackId": callback_id,
        "Timeout": 300,
        "HeartbeatTimeout": 120,
    }
    succeeded = [e for e in events if e["EventType"] == "CallbackSucceeded"]
    assert [e["CallbackSucceededDetails"] for e in succeeded] == [
        {"Result": {"Payload": '"approved"'}}
    ]
    assert succeeded[0]["Id"] == started["Id"]


@pytest.mark.slow
def test_a_callback_completed_while_its_handler_runs_is_seen(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A callback completed before the invocation that created it has ended (the submitter
    calls SendDurableExecutionCallbackSuccess itself) still wakes the execution: the handler
    is invoked again and a synchronous invoke answers its result."""
    name = durable_function(lam, recorder, sdk_files, CALLBACK)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    response = lam.invoke(FunctionName=name, Payload=b'{"inline": true}')
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"answer": '"inline"'}
    assert steps_run(recorder) == ["after", "submitted"]


@pytest.mark.slow
def test_a_callback_failure_reaches_the_handler_and_closes_the_callback(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """SendDurableExecutionCallbackFailure fails the callback with its error, which the handler
    sees; the callback is then closed and any further call about it is
    CallbackTimeoutException (AWS: the callback has already been closed)."""
    name = durable_function(lam, recorder, sdk_files, CALLBACK)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = _start(lam, name, {})
    callback_id = _callback_id(lam, arn)
    lam.send_durable_execution_callback_failure(
        CallbackId=callback_id, Error={"ErrorType": "Rejected", "ErrorMessage": "no way"}
    )
    execution = _ended(lam, arn)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {
        "error": "CallbackExternalError",
        "message": "no way",
    }
    failed = [e for e in _events(lam, arn) if e["EventType"] == "CallbackFailed"]
    assert [e["CallbackFailedDetails"] for e in failed] == [
        {"Error": {"Payload": {"ErrorType": "Rejected", "ErrorMessage": "no way"}}}
    ]
    for call in (
        lambda: lam.send_durable_execution_callback_success(CallbackId=callback_id),
        lambda: lam.send_durable_execution_callback_failure(CallbackId=callback_id),
        lambda: lam.send_durable_execution_callback_heartbeat(CallbackId=callback_id),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "CallbackTimeoutException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.slow
def test_a_callback_of_a_stopped_execution_is_closed(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A callback whose execution has ended (stopped) is CallbackTimeoutException; an id
    lambdad never issued is InvalidParameterValueException, one of a well-formed but unknown
    execution ResourceNotFoundException."""
    name = durable_function(lam, recorder, sdk_files, CALLBACK)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = _start(lam, name, {})
    callback_id = _callback_id(lam, arn)
    lam.stop_durable_execution(DurableExecutionArn=arn)
    cases = {
        callback_id: "CallbackTimeoutException",
        "bm90LWFuLWlk": "InvalidParameterValueException",
        "WyJub25lIiwgIm5vbmUiLCAib3AiXQ==": "ResourceNotFoundException",
        # An id with "/" and "+" (base64) travels percent-encoded in its one path segment.
        "WyJmbi1ub25lIiwgIm4wIiwgIsO/w74+PzAiXQ==": "ResourceNotFoundException",
    }
    for given, code in cases.items():
        with pytest.raises(ClientError) as caught:
            lam.send_durable_execution_callback_success(CallbackId=given, Result=b"1")
        assert caught.value.response["Error"]["Code"] == code, given


@pytest.mark.slow
def test_a_callback_timeout_survives_a_kill_and_restart(
    start_server: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A callback's TimeoutSeconds is a durable timer: lambdad killed with SIGKILL while the
    handler waits, then restarted, still times the callback out when it is due, and the
    handler sees the timeout (AWS: CallbackTimedOut, the SDK's CallbackTimeoutError)."""
    srv: Server = start_server()
    client = srv.client()
    name = durable_function(client, recorder, sdk_files, CALLBACK)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = _start(client, name, {"timeout": 5})
    _callback_id(client, arn)
    _submitted(client, arn)
    srv.stop(signal.SIGKILL)

    again: Server = start_server(data_dir=srv.data_dir)
    client = again.client()
    execution = _ended(client, arn, timeout=90)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {
        "error": "CallbackTimeoutError",
        "message": "Callback timed out",
    }
    timed_out = [e for e in _events(client, arn) if e["EventType"] == "CallbackTimedOut"]
    assert [e["CallbackTimedOutDetails"]["Error"]["Payload"]["ErrorType"] for e in timed_out] == [
        "Callback.Timeout"
    ]
    assert steps_run(recorder) == ["submitted"]


@pytest.mark.slow
def test_a_callback_completed_after_a_restart_resumes_the_execution(
    start_server: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A callback still open when lambdad is killed can be completed after the restart, and
    its execution then runs to its end."""
    srv: Server = start_server()
    client = srv.client()
    name = durable_function(client, recorder, sdk_files, CALLBACK)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = _start(client, name, {"heartbeat": 300})
    callback_id = _callback_id(client, arn)
    _submitted(client, arn)
    srv.stop(signal.SIGKILL)

    again: Server = start_server(data_dir=srv.data_dir)
    client = again.client()
    client.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"42")
    execution = _ended(client, arn)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {"answer": "42"}
    assert steps_run(recorder) == ["after", "submitted"]


@pytest.mark.slow
def test_a_synchronous_invoke_waits_for_the_callback(
    server: Server, lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A synchronous invoke of a durable function answers when its execution ends, however long
    the execution waits for a callback in between (AWS: the invoke waits for the whole
    execution, within the synchronous limit)."""
    name = durable_function(lam, recorder, sdk_files, CALLBACK)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    answers: list[Any] = []
    caller = threading.Thread(
        target=lambda: answers.append(server.client().invoke(FunctionName=name, Payload=b"{}"))
    )
    caller.start()
    arn = wait_until(lambda: _executions(lam, name), timeout=60)[0]["DurableExecutionArn"]
    callback_id = _callback_id(lam, arn)
    _submitted(lam, arn)
    wait_until(lambda: not _invoking(lam, arn), timeout=60)
    assert caller.is_alive(), "the invoke answered before the execution ended"
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b'"late"')
    caller.join(timeout=120)
    [response] = answers
    assert response["DurableExecutionArn"] == arn
    assert json.loads(response["Payload"].read()) == {"answer": '"late"'}


def _executions(client: Any, name: str) -> list[dict[str, Any]]:
    found = client.list_durable_executions_by_function(FunctionName=name)
    return list(found["DurableExecutions"])


def _invoking(client: Any, arn: str) -> bool:
    """Whether an invocation of the execution is under way (its last InvocationCompleted
    is older than the last event of the handler)."""
    events = _events(client, arn)
    return events[-1]["EventType"] != "InvocationCompleted"
