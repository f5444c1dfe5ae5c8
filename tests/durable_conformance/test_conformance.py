"""AWS's durable execution conformance requirements (the ``aws-durable-execution-conformance-
tests`` package) run against lambdad: each requirement's handler, written with the official
SDK, runs as a durable execution and its history and result must match the requirement's
(docs/durable-functions.md, "Conformance")."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Server, create_function
from tests.durable_conformance import history, logs, requirements
from tests.durable_conformance.requirements import Requirement
from tests.test_cloudwatch_logs import logs_client as logs_client_of
from tests.test_durable import sdk_files

__all__ = ["sdk_files"]  # the SDK's zip entries (a session fixture of tests/test_durable.py)

#: The handlers' package, shipped in the function's zip as ``conformance/``.
HANDLERS = Path(__file__).with_name("handlers")

#: Requirement ids per suite in the package's 1.0.0 release (a newer release's extra ones are
#: reported by ``test_every_requirement_is_known``).
SUITES = {
    "step": (1, 20),
    "wait": (2, 5),
    "child": (3, 18),
    "callback": (4, 19),
    "invoke": (5, 16),
    "wait_for_condition": (6, 13),
    "wait_for_callback": (7, 15),
    "parallel": (8, 22),
    "map": (9, 20),
    "plugin": (10, 7),
}
IDS = [(f"{n}-{i}", suite) for suite, (n, count) in SUITES.items() for i in range(1, count + 1)]

#: Executions run at once (each takes seconds of waits, little CPU).
PARALLEL = 8
#: How long an execution may go without a new history event before it counts as stuck.
NO_PROGRESS = 60.0


class Run:
    """One requirement's execution: its ARN, final history and execution (or an error)."""

    def __init__(self) -> None:
        self.arn = ""
        self.events: list[dict[str, Any]] = []
        self.execution: dict[str, Any] = {}
        self.bound = history.Bindings()
        self.problems: list[str] = []
        self.log_problems: list[str] = []


@pytest.fixture(scope="session")
def conformance_requirements(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Requirement]:
    """The requirements of the wheel, downloaded once per session."""
    wheel = requirements.download(tmp_path_factory.mktemp("conformance"))
    if isinstance(wheel, str):
        pytest.skip(wheel)
    return requirements.load(wheel)


@pytest.fixture(scope="session")
def conformance(
    request: pytest.FixtureRequest,
    server: Server,
    sdk_files: dict[str, bytes],
    conformance_requirements: dict[str, Requirement],
) -> Iterator[dict[str, Future[Run]]]:
    """Every selected requirement's execution, started at once (``PARALLEL`` at a time) in one
    function whose handler picks the requirement's handler by the execution's name."""
    client = server.client()
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    files = {
        **sdk_files,
        **{f"conformance/{path.name}": path.read_bytes() for path in HANDLERS.glob("*.py")},
    }
    targets = {
        kind: _durable(client, files, f"{name}-{kind.lower()}", handler, {})
        for kind, handler in (("ECHO", "invokes.echo_target"), ("FAIL", "invokes.failing_target"))
    }
    env = {f"TARGET_{k}": v for k, v in targets.items()}
    _durable(client, files, name, "handler", env, LoggingConfig={"LogFormat": "JSON"})
    for function in (name, *targets.values()):
        client.get_waiter("function_active_v2").wait(FunctionName=function)
    selected = {
        item.callspec.params["rid"]
        for item in request.session.items
        if hasattr(item, "callspec") and "rid" in item.callspec.params
    }
    pool = ThreadPoolExecutor(PARALLEL)
    runs = {
        rid: pool.submit(run, server, name, conformance_requirements[rid])
        for rid in sorted(selected)
        if rid in conformance_requirements
    }
    yield runs
    pool.shutdown(wait=False, cancel_futures=True)
    client.close()


def _durable(
    client: Any,
    files: dict[str, bytes],
    name: str,
    handler: str,
    env: dict[str, str],
    **config: Any,
) -> str:
    """A durable function of the conformance zip whose entry point is ``handler``."""
    create_function(
        client,
        name=name,
        files=files,
        handler=f"conformance.{handler}",
        env=env,
        Timeout=60,
        MemorySize=256,
        DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
        **config,
    )
    return name


def run(server: Server, function: str, req: Requirement) -> Run:
    """Start ``req``'s execution and follow it to its end (or, for a requirement without an
    expected result, until its expected history is there; it is then stopped)."""
    client = server.client()
    result = Run()
    result.bound = history.Bindings(req.variables)
    payload = {"Input": result.bound.substitute(req.spec.get("Input"))}
    started = client.invoke(
        FunctionName=function,
        InvocationType="Event",
        DurableExecutionName=f"{req.rid.replace('-', '_')}-{uuid.uuid4().hex[:8]}",
        Payload=json.dumps(payload).encode(),
    )
    result.arn = started["DurableExecutionArn"]
    seen, progress = 0, time.monotonic()
    callbacks = Callbacks(client, req.spec.get("CallbackActions") or [], result.bound)
    while True:
        result.execution = client.get_durable_execution(DurableExecutionArn=result.arn)
        result.events = client.get_durable_execution_history(
            DurableExecutionArn=result.arn, IncludeExecutionData=True
        )["Events"]
        if result.execution["Status"] != "RUNNING":
            break
        if req.expected_result is None and not history.match(
            req.expected_events, result.events, history.Bindings(result.bound.values)
        ):
            client.stop_durable_execution(DurableExecutionArn=result.arn)
            break
        result.problems += callbacks.answer(result.events)
        if len(result.events) > seen:
            seen, progress = len(result.events), time.monotonic()
        elif time.monotonic() - progress > NO_PROGRESS:
            result.problems.append(f"no new history event for {NO_PROGRESS:.0f} s")
            break
        time.sleep(0.2)
    if req.spec.get("ExpectedLogs"):
        logs_client = logs_client_of(server)
        result.log_problems = _logs(logs_client, function, req, result)
        logs_client.close()
    client.close()
    return result


def _logs(client: Any, function: str, req: Requirement, result: Run) -> list[str]:
    """How the execution's log records differ from the requirement's ``ExpectedLogs``: the
    records carrying its ARN (the SDK's logger adds ``executionArn``, the plugins
    ``durableExecutionArn``), read as AWS's runner reads them (FilterLogEvents), until they
    match or 10 s have passed (lambdad writes an invocation's logs as it ends)."""
    bound = history.Bindings(result.bound.values)
    history.match(req.expected_events, result.events, bound)  # binds the ids logs name
    expected = bound.substitute(req.spec["ExpectedLogs"])
    pattern = f'{{ ($.durableExecutionArn = "{result.arn}") || ($.executionArn = "{result.arn}") }}'
    deadline = time.monotonic() + 10
    while True:
        events = _log_events(client, function, pattern)
        problems = logs.check(expected, events)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.5)


def _log_events(client: Any, function: str, pattern: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"logGroupName": f"/aws/lambda/{function}", "filterPattern": pattern}
    while True:
        page = client.filter_log_events(**kwargs)
        events += page.get("events", [])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


class Callbacks:
    """The requirement's ``CallbackActions``: each new ``CallbackStarted`` gets the first
    unused action whose ``CallbackName`` matches its name (``*`` any, ``${/re/}`` a regular
    expression), sent after the action's ``Delay`` (the external system's pace, as the
    requirements set it). A heartbeat leaves the callback open for a later action."""

    def __init__(self, client: Any, actions: list[dict[str, Any]], bound: history.Bindings):
        self._client, self._actions, self._bound = client, actions, bound
        self._used: set[int] = set()
        self._done: set[str] = set()

    def answer(self, events: list[dict[str, Any]]) -> list[str]:
        problems: list[str] = []
        for event in events:
            callback_id = (event.get("CallbackStartedDetails") or {}).get("CallbackId")
            if event["EventType"] != "CallbackStarted" or callback_id in self._done:
                continue
            index = self._action_for(event.get("Name", ""))
            if index is None:
                self._done.add(callback_id)
                if self._actions:
                    problems.append(f"no callback action for {event.get('Name')!r}")
                continue
            self._used.add(index)
            action = self._actions[index]
            if action["Operation"].lower() != "heartbeat":
                self._done.add(callback_id)
            time.sleep(float(action.get("Delay", 0)))
            try:
                self._send(callback_id, action["Operation"].lower(), action.get("Payload"))
            except ClientError as exc:
                problems.append(f"{action['Operation']} of callback {callback_id}: {exc}")
        return problems

    def _action_for(self, name: str) -> int | None:
        for index, action in enumerate(self._actions):
            wanted = str(self._bound.substitute(action["CallbackName"]))
            pattern = re.match(r"^\$\{/(.+)/\}$", wanted)
            if index not in self._used and (
                wanted in ("*", name) or (pattern is not None and re.search(pattern[1], name))
            ):
                return index
        return None

    def _send(self, callback_id: str, operation: str, payload: Any) -> None:
        payload = self._bound.substitute(payload)
        if operation == "success":
            extra = {} if payload is None else {"Result": json.dumps(payload).encode()}
            self._client.send_durable_execution_callback_success(CallbackId=callback_id, **extra)
        elif operation == "failure":
            self._client.send_durable_execution_callback_failure(
                CallbackId=callback_id, Error=payload or {}
            )
        else:
            self._client.send_durable_execution_callback_heartbeat(CallbackId=callback_id)


def check(req: Requirement, result: Run) -> list[str]:
    """How ``result`` differs from what ``req`` expects (history, then status and result)."""
    problems = list(result.problems) + result.log_problems
    problems += history.match(req.expected_events, result.events, result.bound)
    expected = req.expected_result
    if expected is None:
        return problems
    status = result.execution.get("Status")
    if expected.get("ExecutionStatus") and status != expected["ExecutionStatus"]:
        problems.append(f"status {status}, expected {expected['ExecutionStatus']}")
    elif status == "SUCCEEDED" and "Result" in expected:
        raw = result.execution.get("Result")
        try:
            actual = json.loads(raw) if raw is not None else None
        except ValueError:
            actual = raw
        want = result.bound.substitute(expected["Result"])
        if actual != want:
            problems.append(f"result {actual!r}, expected {want!r}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("rid", [pytest.param(rid, id=rid) for rid, _ in IDS])
def test_requirement(
    rid: str,
    conformance_requirements: dict[str, Requirement],
    conformance: dict[str, Future[Run]],
) -> None:
    """The requirement's execution records the history AWS records for it (events matched by
    EventId, with its wildcards and bound ids) and ends with its status and result."""
    req = conformance_requirements[rid]
    result = conformance[rid].result(timeout=600)
    problems = check(req, result)
    detail = json.dumps(result.events, indent=1, default=str)[:6000]
    assert not problems, f"{rid} ({req.spec.get('description')}): {problems}\n{detail}"


def test_every_requirement_is_known(conformance_requirements: dict[str, Requirement]) -> None:
    """Every requirement of the package is one of the cases above (a newer release of the
    package may add some: they need handlers)."""
    assert sorted(conformance_requirements) == sorted(rid for rid, _ in IDS)
