"""Durable functions: the official ``aws-durable-execution-sdk-python`` runs unchanged against
lambdad (docs/durable-functions.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Recorder, Server, create_function, shutdown, unique, wait_until

#: The SDK release these tests install into each durable function's zip.
SDK = "aws-durable-execution-sdk-python==3.0.0"

#: Two steps around a two-second wait; each step reports its name to the test's Recorder when
#: it runs (a replay that skips a step reports nothing).
REPORT = """
import os, socket

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy


def report(name, number):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    address = (host, int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{name} {number}\\n".encode())
        connection.recv(1)
    return number
"""

TWO_STEPS = (
    REPORT
    + """

@durable_execution
def handler(event, context: DurableContext):
    one = context.step(lambda _: report("one", 1), name="one")
    context.wait(Duration.from_seconds(event.get("wait", 2)), name="pause")
    two = context.step(lambda _: report("two", 2), name="two")
    return {"sum": one + two, "input": event.get("tag")}
"""
)

#: A step that reports, then takes a minute (long enough to stop lambdad in the middle).
SLOW_STEP = (
    REPORT
    + """
import time


@durable_execution
def handler(event, context: DurableContext):
    return context.step(lambda _: report("slow", 1) and time.sleep(60), name="slow")
"""
)

#: A step that fails on its first attempt and is retried a second later; then the handler
#: fails when the event asks it to.
RETRYING = (
    REPORT
    + """

RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=3, initial_delay=Duration.from_seconds(1), jitter_strategy=JitterStrategy.NONE
    )
)


def flaky(step):
    report("flaky", step.attempt)
    if step.attempt < 2:
        raise RuntimeError("not yet")
    return step.attempt


@durable_execution
def handler(event, context: DurableContext):
    tries = context.step(flaky, name="flaky", config=StepConfig(retry_strategy=RETRY))
    if event.get("fail"):
        raise ValueError("the handler gave up")
    return {"tries": tries}
"""
)


@pytest.fixture(scope="session")
def sdk_files() -> dict[str, bytes]:
    """The SDK and its dependencies as zip entries, installed from PyPI once per machine
    (``installed_sdk``; botocore's models other than Lambda's are left out: the zip stays
    small)."""
    target = installed_sdk()
    return {
        str(path.relative_to(target)): path.read_bytes()
        for path in target.rglob("*")
        if path.is_file() and _kept(path.relative_to(target))
    }


def installed_sdk() -> Path:
    """``pip install --target`` of SDK, kept under the user's cache directory
    (``$XDG_CACHE_HOME/lambdad-tests/``, named after the pinned release) for later sessions:
    the install took 20 s of every run. Made in a directory of its own and renamed into place
    when complete, so a session never sees half an install, and two sessions at once keep
    whichever finished first."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lambdad-tests"
    final = cache / SDK.replace("==", "-")
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="installing-", dir=cache))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(work), SDK],
        capture_output=True,
        timeout=600,
    )
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        pytest.skip(f"cannot install {SDK} from PyPI: {done.stderr.decode()[-500:]}")
    try:
        work.rename(final)
    except OSError:  # another session put its own there first
        shutil.rmtree(work, ignore_errors=True)
    return final


def _kept(path: Path) -> bool:
    parts = path.parts
    if "__pycache__" in parts or parts[0].endswith(".dist-info") or parts[0] == "bin":
        return False
    if parts[:2] == ("botocore", "data") and len(parts) > 3:
        return parts[2] == "lambda"
    return True


def durable_function(
    client: Any, recorder: Recorder, files: dict[str, bytes], code: str = TWO_STEPS
) -> str:
    package = {**files, "app.py": code.encode()}
    created = create_function(
        client,
        files=package,
        name=unique("durable"),
        Timeout=60,
        MemorySize=256,
        env={"RECORDER_PORT": str(recorder.port)},
        DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
    )
    return str(created["FunctionName"])


@pytest.fixture
def durable_fn(lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]) -> str:
    return durable_function(lam, recorder, sdk_files)


@pytest.mark.slow
def test_a_failed_step_is_retried_after_its_delay(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A step that raises is checkpointed as a RETRY and the execution is re-invoked when the
    retry's delay has passed; the second attempt's result is the step's (AWS: the SDK's retry
    strategy decides, the service keeps the timer)."""
    name = durable_function(lam, recorder, sdk_files, RETRYING)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    response = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"tries": 2}
    assert sorted(recorder.runs) == [("flaky", 1), ("flaky", 2)]
    arn = response["DurableExecutionArn"]
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    failed = [e for e in events if e["EventType"] == "StepFailed"]
    assert [e["StepFailedDetails"]["RetryDetails"] for e in failed] == [
        {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 1}
    ]
    succeeded = [e for e in events if e["EventType"] == "StepSucceeded"]
    assert succeeded[0]["StepSucceededDetails"]["RetryDetails"]["CurrentAttempt"] == 2


@pytest.mark.slow
def test_an_execution_past_its_timeout_times_out(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """An execution still waiting when its DurableConfig.ExecutionTimeout has passed ends
    TIMED_OUT (AWS: the timeout covers the whole execution, not one invocation)."""
    name = durable_function(lam, recorder, sdk_files)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    lam.update_function_configuration(FunctionName=name, DurableConfig={"ExecutionTimeout": 3})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    started = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"wait": 120}')
    arn = started["DurableExecutionArn"]
    wait_until(
        lambda: lam.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING",
        timeout=60,
    )
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "TIMED_OUT"
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    assert events[-1]["EventType"] == "ExecutionTimedOut"
    assert steps_run(recorder) == ["one"]


def test_an_execution_waiting_on_nothing_timed_times_out(lam: Any) -> None:
    """An execution that waits for nothing timed (its handler answered PENDING with no wait,
    retry or callback timeout: a callback without a timeout) still ends TIMED_OUT when its
    ExecutionTimeout has passed, without a restart (AWS: the timeout covers the whole
    execution)."""
    name = str(
        create_function(
            lam,
            "def handler(event, context):\n    return {'Status': 'PENDING'}\n",
            DurableConfig={"ExecutionTimeout": 2, "RetentionPeriodInDays": 1},
        )["FunctionName"]
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")[
        "DurableExecutionArn"
    ]
    wait_until(
        lambda: lam.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING",
        timeout=60,
    )
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "TIMED_OUT"
    types = [e["EventType"] for e in _history_of(lam, arn)]
    assert types == ["ExecutionStarted", "InvocationCompleted", "ExecutionTimedOut"]


def _history_of(client: Any, arn: str) -> list[dict[str, Any]]:
    return list(client.get_durable_execution_history(DurableExecutionArn=arn)["Events"])


@pytest.mark.slow
def test_a_throttled_execution_runs_once_concurrency_is_back(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """An execution whose function has no concurrency left is not failed: its invocations
    count against the function's concurrency like any invoke, and it runs once there is some
    (AWS: durable invocations respect reserved concurrency)."""
    name = durable_function(lam, recorder, sdk_files)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    started = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"wait": 1}')
    arn = started["DurableExecutionArn"]
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    assert recorder.runs == []
    lam.delete_function_concurrency(FunctionName=name)
    wait_until(
        lambda: lam.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING",
        timeout=60,
    )
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "SUCCEEDED"
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    completed = [e for e in events if e["EventType"] == "InvocationCompleted"]
    assert len(completed) == 2, "throttled attempts are not invocations"
    assert steps_run(recorder) == ["one", "two"]


@pytest.mark.slow
def test_a_handler_that_raises_fails_the_execution(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A handler that raises ends its execution FAILED with the error; a synchronous invoke
    answers it as a function error (AWS: X-Amz-Function-Error with the error's type)."""
    name = durable_function(lam, recorder, sdk_files, RETRYING)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    response = lam.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert response["FunctionError"] == "Unhandled"
    body = json.loads(response["Payload"].read())
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "the handler gave up"
    execution = lam.get_durable_execution(DurableExecutionArn=response["DurableExecutionArn"])
    assert execution["Status"] == "FAILED"
    assert execution["Error"]["ErrorType"] == "ValueError"


def steps_run(recorder: Recorder) -> list[str]:
    return sorted(name for name, _ in list(recorder.runs))


def test_durable_config_is_stored_and_shown(lam: Any, durable_fn: str) -> None:
    """DurableConfig given at CreateFunction is shown by GetFunctionConfiguration, and an
    UpdateFunctionConfiguration changes it (AWS: ExecutionTimeout and RetentionPeriodInDays)."""
    config = lam.get_function_configuration(FunctionName=durable_fn)
    assert config["DurableConfig"] == {"ExecutionTimeout": 600, "RetentionPeriodInDays": 1}
    lam.get_waiter("function_active_v2").wait(FunctionName=durable_fn)
    lam.update_function_configuration(
        FunctionName=durable_fn, DurableConfig={"RetentionPeriodInDays": 3}
    )
    config = lam.get_function_configuration(FunctionName=durable_fn)
    assert config["DurableConfig"] == {"ExecutionTimeout": 600, "RetentionPeriodInDays": 3}


@pytest.mark.slow
def test_two_steps_and_a_wait_succeed_with_each_step_run_once(
    lam: Any, durable_fn: str, recorder: Recorder
) -> None:
    """A synchronous invoke of a durable function answers the execution's result once it has
    ended (AWS: within the synchronous limit), with its ARN in X-Amz-Durable-Execution-Arn; the
    handler was replayed after the wait, yet each step ran once, and the execution's state and
    history show both steps and the wait."""
    response = lam.invoke(
        FunctionName=durable_fn,
        Payload=json.dumps({"tag": "t1"}).encode(),
        DurableExecutionName=unique("run"),
    )
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"sum": 3, "input": "t1"}
    arn = response["DurableExecutionArn"]
    assert "/durable-execution/" in arn
    assert steps_run(recorder) == ["one", "two"]

    execution = lam.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {"sum": 3, "input": "t1"}

    history = lam.get_durable_execution_history(DurableExecutionArn=arn)
    types = [(e["EventType"], e.get("Name")) for e in history["Events"]]
    assert types[0][0] == "ExecutionStarted"
    assert types[-1][0] == "ExecutionSucceeded"
    for expected in [
        ("StepStarted", "one"),
        ("StepSucceeded", "one"),
        ("WaitStarted", "pause"),
        ("WaitSucceeded", "pause"),
        ("StepStarted", "two"),
        ("StepSucceeded", "two"),
    ]:
        assert types.count(expected) == 1, types
    assert types.count(("InvocationCompleted", None)) == 2, "one before the wait, one after"
    assert [e["EventId"] for e in history["Events"]] == list(range(1, len(types) + 1))

    listed = lam.list_durable_executions_by_function(FunctionName=durable_fn)
    assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [arn]


def test_state_is_refused_for_a_stale_token(lam: Any, durable_fn: str) -> None:
    """GetDurableExecutionState and CheckpointDurableExecution with a token the execution did
    not issue for its invocation under way are InvalidParameterValueException (AWS: "Invalid
    checkpoint token")."""
    response = lam.invoke(FunctionName=durable_fn, InvocationType="Event", Payload=b'{"wait": 60}')
    assert response["StatusCode"] == 202
    arn = response["DurableExecutionArn"]
    for call in (
        lambda: lam.get_durable_execution_state(DurableExecutionArn=arn, CheckpointToken="AAAA"),
        lambda: lam.checkpoint_durable_execution(
            DurableExecutionArn=arn, CheckpointToken="AAAA", Updates=[]
        ),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        error = caught.value.response["Error"]
        assert error["Code"] == "InvalidParameterValueException"
        assert error["Message"] == "Invalid checkpoint token"
    lam.stop_durable_execution(DurableExecutionArn=arn)
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "STOPPED"


def test_the_same_name_is_the_same_execution(lam: Any, durable_fn: str) -> None:
    """An invoke naming an existing execution with the same payload returns that execution; with
    another payload it is DurableExecutionAlreadyStartedException (AWS, 409)."""
    name = unique("same")
    first = lam.invoke(
        FunctionName=durable_fn,
        InvocationType="Event",
        Payload=b'{"wait": 60}',
        DurableExecutionName=name,
    )
    again = lam.invoke(
        FunctionName=durable_fn,
        InvocationType="Event",
        Payload=b'{"wait": 60}',
        DurableExecutionName=name,
    )
    assert again["DurableExecutionArn"] == first["DurableExecutionArn"]
    with pytest.raises(ClientError) as caught:
        lam.invoke(
            FunctionName=durable_fn,
            InvocationType="Event",
            Payload=b'{"wait": 61}',
            DurableExecutionName=name,
        )
    assert caught.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    listed = lam.list_durable_executions_by_function(
        FunctionName=durable_fn, DurableExecutionName=name
    )
    assert len(listed["DurableExecutions"]) == 1
    lam.stop_durable_execution(DurableExecutionArn=first["DurableExecutionArn"])


def test_a_durable_invoke_of_a_plain_function_is_refused(lam: Any) -> None:
    """An invoke with a durable execution name of a function without DurableConfig is
    InvalidParameterValueException (AWS refuses a durable invoke of a non-durable function)."""
    name = str(create_function(lam)["FunctionName"])
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    with pytest.raises(ClientError) as caught:
        lam.invoke(FunctionName=name, Payload=b"{}", DurableExecutionName=unique("x"))
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_functions_reach_lambdad_with_boto3(lam: Any) -> None:
    """A function's boto3 Lambda client reaches the lambdad that runs it, with nothing
    configured (AWS: the SDKs find Lambda's endpoint and the function's credentials)."""
    code = (
        "import boto3\n"
        "def handler(event, context):\n"
        "    client = boto3.client('lambda')\n"
        "    return client.get_function_configuration(FunctionName=event['name'])['Runtime']\n"
    )
    name = str(create_function(lam, code, Timeout=30)["FunctionName"])
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    response = lam.invoke(FunctionName=name, Payload=json.dumps({"name": name}).encode())
    assert "FunctionError" not in response, response["Payload"].read()
    assert json.loads(response["Payload"].read()) == "python3.11"


@pytest.mark.slow
def test_an_execution_waiting_across_a_kill_completes_after_restart(
    start_server: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """A SIGKILL of lambdad during an execution's wait loses nothing: after the restart the
    wait's timer fires, the handler is replayed and the execution succeeds, no step run twice
    (AWS: executions survive any failure of the service)."""
    srv: Server = start_server()
    client = srv.client()
    name = durable_function(client, recorder, sdk_files)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    response = client.invoke(
        FunctionName=name, InvocationType="Event", Payload=b'{"wait": 4, "tag": "k"}'
    )
    arn = response["DurableExecutionArn"]
    wait_until(lambda: steps_run(recorder) == ["one"], timeout=60)
    wait_until(lambda: _has_event(client, arn, "WaitStarted"), timeout=30)
    srv.stop(signal.SIGKILL)

    again: Server = start_server(data_dir=srv.data_dir)
    client = again.client()
    wait_until(
        lambda: client.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING",
        timeout=90,
    )
    execution = client.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {"sum": 3, "input": "k"}
    assert steps_run(recorder) == ["one", "two"]


def _has_event(client: Any, arn: str, event_type: str) -> bool:
    events = client.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    return any(e["EventType"] == event_type for e in events)


def test_a_durable_invoke_checks_its_payload(lam: Any, durable_fn: str) -> None:
    """A durable invoke whose payload is not JSON is refused before any execution starts
    (AWS: InvalidRequestContentException, as for any invoke)."""
    with pytest.raises(ClientError) as caught:
        lam.invoke(FunctionName=durable_fn, Payload=b"{not json", DurableExecutionName="bad")
    assert caught.value.response["Error"]["Code"] == "InvalidRequestContentException"
    listed = lam.list_durable_executions_by_function(FunctionName=durable_fn)
    assert listed["DurableExecutions"] == []


def test_the_cli_lists_shows_and_tells_the_history(
    server: Server, lam: Any, durable_fn: str
) -> None:
    """``lambdad durable list|show|history`` print a function's executions, one execution and
    its history, through the public API."""
    name = unique("cli")
    started = lam.invoke(
        FunctionName=durable_fn,
        InvocationType="Event",
        Payload=b'{"wait": 60}',
        DurableExecutionName=name,
    )
    lam.stop_durable_execution(DurableExecutionArn=started["DurableExecutionArn"])
    cli = [sys.executable, "-m", "lambdad.cli.main", "durable"]
    where = ["--endpoint", server.endpoint]

    def run(*argv: str) -> str:
        done = subprocess.run([*cli, *argv, *where], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = run("list", durable_fn)
    assert any(line.split()[:2] == [name, "STOPPED"] for line in listed.splitlines())
    shown = json.loads(run("show", durable_fn, name))
    assert shown["DurableExecutionArn"] == started["DurableExecutionArn"]
    assert shown["Status"] == "STOPPED"
    history = run("history", durable_fn, name).splitlines()
    assert "ExecutionStarted" in history[0]
    assert any("ExecutionStopped" in line for line in history)


def test_an_unknown_execution_is_not_found(lam: Any) -> None:
    """GetDurableExecution and StopDurableExecution of an execution that does not exist are
    ResourceNotFoundException (404), as AWS answers."""
    arn = (
        "arn:aws:lambda:us-east-1:000000000000:function:nothing:$LATEST"
        "/durable-execution/none/0123456789abcdef"
    )
    for call in (
        lambda: lam.get_durable_execution(DurableExecutionArn=arn),
        lambda: lam.stop_durable_execution(DurableExecutionArn=arn),
        lambda: lam.get_durable_execution_history(DurableExecutionArn=arn),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_history_and_listings_are_paged(lam: Any, durable_fn: str) -> None:
    """GetDurableExecutionHistory and ListDurableExecutionsByFunction answer MaxItems at a time
    with a NextMarker for the rest, in order or reversed, and filter by status (AWS:
    ``Marker``, ``ReverseOrder``, ``Statuses``); an execution's name with an id that is not its
    own is ResourceNotFoundException, as AWS answers."""
    arns = []
    for _ in range(2):
        started = lam.invoke(
            FunctionName=durable_fn, InvocationType="Event", Payload=b'{"wait": 300}'
        )
        arns.append(started["DurableExecutionArn"])
    for arn in arns:  # each waits now, its history still
        wait_until(lambda arn=arn: _has_event(lam, arn, "InvocationCompleted"), timeout=60)
    events = lam.get_durable_execution_history(DurableExecutionArn=arns[0])["Events"]
    first = lam.get_durable_execution_history(DurableExecutionArn=arns[0], MaxItems=1)
    assert [e["EventId"] for e in first["Events"]] == [1]
    rest = lam.get_durable_execution_history(
        DurableExecutionArn=arns[0], MaxItems=1000, Marker=first["NextMarker"]
    )
    assert [e["EventId"] for e in rest["Events"]] == [e["EventId"] for e in events[1:]]
    assert "NextMarker" not in rest
    backwards = lam.get_durable_execution_history(DurableExecutionArn=arns[0], ReverseOrder=True)
    assert backwards["Events"] == events[::-1]
    page = lam.list_durable_executions_by_function(FunctionName=durable_fn, MaxItems=1)
    more = lam.list_durable_executions_by_function(
        FunctionName=durable_fn, MaxItems=1, Marker=page["NextMarker"]
    )
    listed = page["DurableExecutions"] + more["DurableExecutions"]
    assert sorted(e["DurableExecutionArn"] for e in listed) == sorted(arns)
    lam.stop_durable_execution(DurableExecutionArn=arns[0])
    by_status = {
        status: lam.list_durable_executions_by_function(FunctionName=durable_fn, Statuses=[status])
        for status in ("STOPPED", "RUNNING")
    }
    assert [e["DurableExecutionArn"] for e in by_status["STOPPED"]["DurableExecutions"]] == [
        arns[0]
    ]
    assert [e["DurableExecutionArn"] for e in by_status["RUNNING"]["DurableExecutions"]] == [
        arns[1]
    ]
    # The running execution's name with an id lambdad never issued names no execution.
    forged = arns[1].rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"
    for call in (
        lambda: lam.get_durable_execution(DurableExecutionArn=forged),
        lambda: lam.get_durable_execution_history(DurableExecutionArn=forged),
        lambda: lam.stop_durable_execution(DurableExecutionArn=forged),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    lam.stop_durable_execution(DurableExecutionArn=arns[1])


@pytest.mark.slow
def test_an_invocation_cut_by_a_shutdown_is_replayed_after_restart(
    start_server: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """Stopping lambdad while an execution's handler runs leaves no process behind and loses
    nothing: after the restart the execution is invoked again from its checkpoints (AWS: an
    interrupted invocation is retried; a step that had not ended may run again)."""
    srv: Server = start_server()
    client = srv.client()
    name = durable_function(client, recorder, sdk_files, SLOW_STEP)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    started = client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    arn = started["DurableExecutionArn"]
    wait_until(lambda: len(recorder.runs) == 1, timeout=60)
    shutdown(srv)

    again: Server = start_server(data_dir=srv.data_dir)
    client = again.client()
    wait_until(lambda: len(recorder.runs) == 2, timeout=60)
    assert client.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    client.stop_durable_execution(DurableExecutionArn=arn)


#: ``steps`` steps that report nothing (no waits: the execution ends in one invocation).
STEPS_ONLY = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return [context.step(lambda _: n, name=f"s{n}") for n in range(event["steps"])]
"""


def test_deleting_the_function_deletes_its_executions_histories(
    lam: Any, recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """DeleteFunction deletes the function's executions with their history events: a function
    made again under the same name starts an execution of the same name afresh (AWS: a
    deleted function's executions are gone)."""
    name = unique("durable")
    package = {**sdk_files, "app.py": STEPS_ONLY.encode()}
    histories = []
    for steps in (5, 1):
        create_function(
            lam,
            files=package,
            name=name,
            Timeout=60,
            MemorySize=256,
            DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
        )
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        response = lam.invoke(
            FunctionName=name,
            DurableExecutionName="again",
            Payload=json.dumps({"steps": steps}).encode(),
        )
        assert json.loads(response["Payload"].read()) == list(range(steps))
        arn = response["DurableExecutionArn"]
        events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        histories.append([e["EventType"] for e in events])
        lam.delete_function(FunctionName=name)
    assert len(histories[0]) == 13
    assert histories[1] == [
        "ExecutionStarted",
        "StepStarted",
        "StepSucceeded",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]
