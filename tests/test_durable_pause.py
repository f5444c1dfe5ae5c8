"""Pause, resume and delete durable executions (PauseDurableExecution,
ResumeDurableExecution, DeleteDurableExecution) with the official SDK in the function and boto3
speaking the model lambdad ships (docs/durable-functions.md)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdad.api.wire.model import MODELS
from tests.conftest import (
    MEET,
    Recorder,
    Rendezvous,
    Server,
    create_function,
    unique,
    wait_until,
)
from tests.test_durable import REPORT, TWO_STEPS, sdk_files, steps_run

__all__ = ["sdk_files"]  # the SDK fixture, used by name

#: Step ``one`` meets the test (it stays inside the step until the test joins it), then step
#: ``two`` runs; each reports its name when it runs.
MEETING = (
    REPORT
    + MEET
    + """

@durable_execution
def handler(event, context: DurableContext):
    one = context.step(lambda _: report("one", meet()), name="one")
    two = context.step(lambda _: report("two", 2), name="two")
    return {"sum": one + two}
"""
)

#: AWS: an execution whose timeout is paused still times out 366 days after it started.
LONGEST = 366 * 86400


def _function(
    client: Any, recorder: Recorder, files: dict[str, bytes], code: str, **env: str
) -> str:
    created = create_function(
        client,
        files={**files, "app.py": code.encode()},
        name=unique("paused"),
        Timeout=60,
        MemorySize=256,
        env={"RECORDER_PORT": str(recorder.port), **env},
        DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
    )
    name = str(created["FunctionName"])
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def _history(client: Any, arn: str, **members: Any) -> list[dict[str, Any]]:
    return list(client.get_durable_execution_history(DurableExecutionArn=arn, **members)["Events"])


def _types(client: Any, arn: str) -> list[str]:
    return [event["EventType"] for event in _history(client, arn)]


def _status(client: Any, arn: str) -> str:
    return str(client.get_durable_execution(DurableExecutionArn=arn)["Status"])


def _refused(code: str, status: int) -> Any:
    class Refused:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, error: Any, trace: Any) -> bool:
            assert isinstance(error, ClientError), f"expected {code}, got {error!r}"
            response = error.response
            assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
                code,
                status,
            )
            return True

    return Refused()


@pytest.mark.slow
def test_a_pause_holds_at_the_next_checkpoint_survives_a_kill_and_resumes(
    start_server: Any,
    recorder: Recorder,
    rendezvous: Any,
    sdk_files: dict[str, bytes],
) -> None:
    """AWS: PauseDurableExecution of an execution whose invocation is under way makes it
    PAUSING until the invocation's next checkpoint, then PAUSED (the SDK ends the invocation
    PENDING); nothing runs while paused, a restart keeps it paused (lambdad killed with
    SIGKILL), and ResumeDurableExecution continues it from its checkpoints, no step run
    twice."""
    srv: Server = start_server()
    client = srv.client()
    meeting: Rendezvous = rendezvous(2)
    name = _function(client, recorder, sdk_files, MEETING, **meeting.env)
    arn = client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")[
        "DurableExecutionArn"
    ]
    wait_until(lambda: "StepStarted" in _types(client, arn), timeout=60)

    client.pause_durable_execution(DurableExecutionArn=arn, Reason="downstream is degraded")
    execution = client.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "PAUSING"
    assert execution["PauseDetails"]["Reason"] == "downstream is degraded"
    assert execution["PauseDetails"]["ExecutionTimeoutPaused"] is True
    with socket.create_connection(("127.0.0.1", meeting.port), timeout=30) as joined:
        joined.recv(16)  # step "one" goes on: its end is the checkpoint the pause holds at

    def paused_and_idle() -> bool:
        types = _types(client, arn)
        return "ExecutionPaused" in types and types[-1] == "InvocationCompleted"

    wait_until(paused_and_idle, timeout=60)
    assert _status(client, arn) == "PAUSED"
    types = _types(client, arn)
    assert types[types.index("StepSucceeded") :] == [
        "StepSucceeded",
        "ExecutionPaused",
        "InvocationCompleted",
    ], "step two never started"
    srv.stop(signal.SIGKILL)

    again: Server = start_server(data_dir=srv.data_dir)
    client = again.client()
    assert _status(client, arn) == "PAUSED"
    listed = client.list_durable_executions_by_function(FunctionName=name, Statuses=["PAUSED"])
    assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [arn]
    assert steps_run(recorder) == ["one"]

    client.resume_durable_execution(DurableExecutionArn=arn, Reason="recovered")
    wait_until(lambda: _status(client, arn) == "SUCCEEDED", timeout=90)
    execution = client.get_durable_execution(DurableExecutionArn=arn)
    assert json.loads(execution["Result"]) == {"sum": 3}
    assert steps_run(recorder) == ["one", "two"]
    types = _types(client, arn)
    resumed = types.index("ExecutionResumed")
    assert types[resumed + 1 : resumed + 2] == ["StepStarted"], "the resume replayed the handler"
    event = _history(client, arn)[resumed]
    assert event["ExecutionResumedDetails"]["Reason"]["Payload"] == "recovered"


@pytest.mark.slow
def test_waits_end_while_paused_and_only_the_resume_invokes_again(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """AWS: while an execution is paused Lambda does not invoke the function, but its waits
    still complete; a pause or resume it is not in is ResourceConflictException, as is a
    DeleteDurableExecution of an execution that has not ended; the resume invokes the
    function, since an operation completed while it was paused."""
    name = _function(lam, recorder, sdk_files, TWO_STEPS)
    arn = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"wait": 1}')[
        "DurableExecutionArn"
    ]
    wait_until(lambda: "WaitStarted" in _types(lam, arn), timeout=60)
    with _refused("ResourceConflictException", 409):
        lam.resume_durable_execution(DurableExecutionArn=arn)
    lam.pause_durable_execution(
        DurableExecutionArn=arn, Reason="investigating", ExecutionTimeoutPaused=True
    )
    wait_until(lambda: "WaitSucceeded" in _types(lam, arn), timeout=60)
    execution = lam.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "PAUSED"
    started = execution["StartTimestamp"].timestamp()
    expected = execution["ExpectedExecutionTimeoutTimestamp"].timestamp()
    assert abs(expected - (started + LONGEST)) < 1
    hidden = lam.get_durable_execution(DurableExecutionArn=arn, IncludeExecutionData=False)
    assert "Reason" not in hidden["PauseDetails"]
    (paused,) = [e for e in _history(lam, arn) if e["EventType"] == "ExecutionPaused"]
    assert paused["ExecutionPausedDetails"]["Reason"]["Payload"] == "investigating"
    assert paused["ExecutionPausedDetails"]["ExecutionTimeoutPaused"] is True
    (bare,) = [
        e
        for e in _history(lam, arn, IncludeExecutionData=False)
        if e["EventType"] == "ExecutionPaused"
    ]
    assert bare["ExecutionPausedDetails"]["Reason"] == {"Truncated": True}
    with _refused("ResourceConflictException", 409):
        lam.pause_durable_execution(DurableExecutionArn=arn)
    with _refused("ResourceConflictException", 409):
        lam.delete_durable_execution(DurableExecutionArn=arn)

    lam.resume_durable_execution(DurableExecutionArn=arn)
    wait_until(lambda: _status(lam, arn) == "SUCCEEDED", timeout=60)
    types = _types(lam, arn)
    assert types.index("WaitSucceeded") < types.index("ExecutionResumed")
    assert types[types.index("ExecutionResumed") + 1] == "StepStarted", (
        "nothing was invoked between the wait's end and the resume"
    )
    assert steps_run(recorder) == ["one", "two"]
    with _refused("ResourceConflictException", 409):
        lam.pause_durable_execution(DurableExecutionArn=arn)

    deleted = lam.delete_durable_execution(DurableExecutionArn=arn)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert deleted["DeletionRequestTimestamp"].timestamp() >= started
    with _refused("ResourceNotFoundException", 404):
        lam.get_durable_execution(DurableExecutionArn=arn)
    with _refused("ResourceNotFoundException", 404):
        lam.get_durable_execution_history(DurableExecutionArn=arn)
    listed = lam.list_durable_executions_by_function(FunctionName=name)
    assert listed["DurableExecutions"] == []


#: A durable handler without the SDK that suspends for ever: its execution waits on nothing
#: timed, with no invocation under way.
SUSPENDED = """
def handler(event, context):
    return {"Status": "PENDING"}
"""


def test_the_aws_cli_pauses_resumes_and_deletes_with_lambdads_model(
    lam: Any, server: Server, tmp_path: Path
) -> None:
    """The AWS CLI, given lambdad's shipped model (``AWS_DATA_PATH``), pauses, resumes, stops
    and deletes an execution: AWS's ``aws lambda pause-durable-execution`` and the rest."""
    name = str(
        create_function(
            lam,
            SUSPENDED,
            DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
        )["FunctionName"]
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")[
        "DurableExecutionArn"
    ]
    wait_until(lambda: "InvocationCompleted" in _types(lam, arn), timeout=60)
    env = {
        **os.environ,
        "AWS_DATA_PATH": str(MODELS),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }

    def aws(op: str, *args: str) -> str:
        argv = ["aws", "lambda", op, "--endpoint-url", server.endpoint, *args]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, f"{op}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    aws("pause-durable-execution", "--durable-execution-arn", arn, "--reason", "cli")
    shown = json.loads(aws("get-durable-execution", "--durable-execution-arn", arn))
    assert shown["Status"] == "PAUSED"
    assert shown["PauseDetails"]["Reason"] == "cli"
    aws("resume-durable-execution", "--durable-execution-arn", arn)
    assert _status(lam, arn) == "RUNNING"
    aws("stop-durable-execution", "--durable-execution-arn", arn)
    deleted = json.loads(aws("delete-durable-execution", "--durable-execution-arn", arn))
    assert "DeletionRequestTimestamp" in deleted
    with _refused("ResourceNotFoundException", 404):
        lam.get_durable_execution(DurableExecutionArn=arn)
    assert _types_ended(lam, name) == []


def _types_ended(client: Any, function: str) -> list[str]:
    listed = client.list_durable_executions_by_function(FunctionName=function)
    return [e["Status"] for e in listed["DurableExecutions"]]


@pytest.mark.slow
def test_a_stop_ends_the_invocation_under_way_at_its_next_checkpoint(
    lam: Any, recorder: Recorder, rendezvous: Any, sdk_files: dict[str, bytes]
) -> None:
    """StopDurableExecution while a step runs: the step's end is not recorded, the SDK is told
    to stop checkpointing (no token) and ends the invocation PENDING, cleanly, and nothing
    after it runs (AWS: the execution is STOPPED and its in-progress operations end)."""
    meeting: Rendezvous = rendezvous(2)
    name = _function(lam, recorder, sdk_files, MEETING, **meeting.env)
    arn = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")[
        "DurableExecutionArn"
    ]
    wait_until(lambda: "StepStarted" in _types(lam, arn), timeout=60)
    lam.stop_durable_execution(DurableExecutionArn=arn)
    with socket.create_connection(("127.0.0.1", meeting.port), timeout=30) as joined:
        joined.recv(16)
    wait_until(lambda: _types(lam, arn)[-1] == "InvocationCompleted", timeout=60)
    history = _history(lam, arn)
    assert [e["EventType"] for e in history] == [
        "ExecutionStarted",
        "StepStarted",
        "ExecutionStopped",
        "InvocationCompleted",
    ]
    assert not history[-1]["InvocationCompletedDetails"].get("Error"), "it ended PENDING"
    assert _status(lam, arn) == "STOPPED"
    assert steps_run(recorder) == ["one"]


def test_lambdad_durable_pauses_resumes_stops_and_deletes(lam: Any, server: Server) -> None:
    """``lambdad durable pause|resume|stop|delete FUNCTION EXECUTION`` act on an execution
    named by its name, through the public API, and print its status after."""
    name = str(
        create_function(
            lam,
            SUSPENDED,
            DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
        )["FunctionName"]
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    execution = unique("cli")
    arn = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=b"{}", DurableExecutionName=execution
    )["DurableExecutionArn"]
    wait_until(lambda: "InvocationCompleted" in _types(lam, arn), timeout=60)

    def lambdad(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "lambdad.cli.main", "durable", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = ("--endpoint", server.endpoint)
    said = lambdad("pause", name, execution, "--reason", "by hand", *where)
    assert said.split() == [execution, "PAUSED"]
    paused = lam.get_durable_execution(DurableExecutionArn=arn)
    assert paused["PauseDetails"]["Reason"] == "by hand"
    assert lambdad("resume", name, execution, *where).split() == [execution, "RUNNING"]
    assert lambdad("stop", name, execution, *where).split() == [execution, "STOPPED"]
    assert "Error" not in lam.get_durable_execution(DurableExecutionArn=arn)
    assert "DeletionRequestTimestamp" in json.loads(lambdad("delete", name, arn, *where))
    with _refused("ResourceNotFoundException", 404):
        lam.get_durable_execution(DurableExecutionArn=arn)
