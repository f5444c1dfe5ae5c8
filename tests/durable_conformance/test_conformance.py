"""AWS's durable execution conformance requirements (the ``aws-durable-execution-conformance-
tests`` package) run against lambdad: each requirement's handler, written with the official
SDK, runs as a durable execution and its history and result must match the requirement's
(docs/durable-functions.md, "Conformance")."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, create_function
from tests.durable_conformance import history, requirements
from tests.durable_conformance.requirements import NEEDS_CALLBACKS, Requirement
from tests.test_durable import sdk_files

__all__ = ["sdk_files"]

HANDLERS = Path(__file__).with_name("handlers.py")

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

CALLBACKS_PENDING = "callbacks/chained invokes land on branch dcallback"


class Run:
    """One requirement's execution: its ARN, final history and execution (or an error)."""

    def __init__(self) -> None:
        self.arn = ""
        self.events: list[dict[str, Any]] = []
        self.execution: dict[str, Any] = {}
        self.bound = history.Bindings()
        self.problems: list[str] = []


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
    create_function(
        client,
        name=name,
        files={**sdk_files, "conformance.py": HANDLERS.read_bytes()},
        handler="conformance.handler",
        Timeout=60,
        MemorySize=256,
        DurableConfig={"ExecutionTimeout": 600, "RetentionPeriodInDays": 1},
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
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
        if len(result.events) > seen:
            seen, progress = len(result.events), time.monotonic()
        elif time.monotonic() - progress > NO_PROGRESS:
            result.problems.append(f"no new history event for {NO_PROGRESS:.0f} s")
            break
        time.sleep(0.2)
    client.close()
    return result


def check(req: Requirement, result: Run) -> list[str]:
    """How ``result`` differs from what ``req`` expects (history, then status and result)."""
    problems = list(result.problems)
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


def _marks(suite: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.slow]
    if suite in NEEDS_CALLBACKS:
        marks.append(pytest.mark.xfail(reason=CALLBACKS_PENDING, strict=True))
    return marks


@pytest.mark.parametrize(
    "rid", [pytest.param(rid, id=rid, marks=_marks(suite)) for rid, suite in IDS]
)
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
