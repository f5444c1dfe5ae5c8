"""Durable executions' callbacks (``control/durable_callbacks.py``) over the in-memory store:
the id a CALLBACK START gets, completion, heartbeats and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lambdad import errors
from lambdad.control import durable_callbacks
from lambdad.control.arns import Scope
from lambdad.control.durable import Doc, DurableExecutions, next_due, token_of
from lambdad.control.model import FunctionConfig
from lambdad.store.base import Key
from lambdad.store.memory import MemoryStore

SCOPE = Scope("111122223333", "eu-west-1")
KEY = SCOPE.key("flow", "run-1")
CONFIG = FunctionConfig(
    name="flow",
    version="$LATEST",
    runtime="python3.12",
    role="",
    handler="app.handler",
    code_key="",
    code_sha256="",
    code_size=0,
    durable_execution_timeout=600,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Scenario = Callable[[DurableExecutions, Clock, str], Awaitable[None]]


def run(options: dict[str, Any], scenario: Scenario) -> None:
    """Run ``scenario`` with an execution whose handler started the callback ``cb`` with
    ``options`` and has returned PENDING; it gets the callback's id."""

    async def main() -> None:
        store = MemoryStore()
        await store.open()
        clock = Clock()
        executions = DurableExecutions(store, clock)
        await executions.start(SCOPE, CONFIG, "run-1", b"{}")
        doc = await executions.begin_invocation(KEY)
        assert doc is not None
        update = {"Id": "cb", "Type": "CALLBACK", "Action": "START", "Name": "approval"}
        if options:
            update["CallbackOptions"] = options
        answer = await executions.checkpoint(SCOPE, doc["arn"], token_of(doc), [update], None)
        [op] = answer["NewExecutionState"]["Operations"]
        await executions.end_invocation(KEY, clock.now, "r1")
        await scenario(executions, clock, op["CallbackDetails"]["CallbackId"])
        await store.close()

    asyncio.run(main())


def events(doc: Doc) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e["EventType"], e[f"{e['EventType']}Details"])
        for e in doc["history"]
        if e["EventType"].startswith("Callback")
    ]


def callback_op(doc: Doc) -> dict[str, Any]:
    return next(op for op in doc["ops"] if op["Id"] == "cb")


def succeed(result: str) -> Callable[[Doc, dict[str, Any], float], Any]:
    return lambda doc, ops, now: durable_callbacks.succeed(doc, ops, "cb", result, now)


async def settle(executions: DurableExecutions, key: Key, change: Any) -> Doc:
    return await executions.settle(key, change)


def test_a_callback_gets_an_id_that_names_it_and_succeeds_once() -> None:
    """A CALLBACK START answers the operation with a CallbackId; success records
    CallbackSucceeded and the result on the operation, marks the execution to be invoked
    again, and a second completion is CallbackTimeoutException (AWS: the callback is closed)."""

    async def scenario(executions: DurableExecutions, clock: Clock, cid: str) -> None:
        assert durable_callbacks.parse_id(cid) == ("flow", "run-1", "cb")
        doc = await settle(executions, KEY, succeed('"yes"'))
        assert doc["woken"]
        assert callback_op(doc)["Status"] == "SUCCEEDED"
        assert callback_op(doc)["CallbackDetails"] == {"CallbackId": cid, "Result": '"yes"'}
        assert events(doc) == [
            ("CallbackStarted", {"CallbackId": cid, "Timeout": 30}),
            ("CallbackSucceeded", {"Result": {"Payload": '"yes"'}}),
        ]
        with pytest.raises(errors.CallbackTimeoutException):
            await settle(executions, KEY, succeed('"again"'))
        begun = await executions.begin_invocation(KEY)
        assert begun is not None
        assert not begun["woken"]

    run({"TimeoutSeconds": 30}, scenario)


def test_a_callback_times_out_when_its_timeout_passes() -> None:
    """A callback with TimeoutSeconds is a durable timer: once it has passed, the next
    invocation finds the callback TIMED_OUT with the Callback.Timeout error."""

    async def scenario(executions: DurableExecutions, clock: Clock, cid: str) -> None:
        doc = await executions.get_key(KEY)
        assert doc is not None
        assert next_due(doc) == 1030.0
        clock.now = 1031.0
        doc = await executions.begin_invocation(KEY)
        assert doc is not None
        assert callback_op(doc)["Status"] == "TIMED_OUT"
        assert events(doc)[-1] == (
            "CallbackTimedOut",
            {"Error": {"Payload": durable_callbacks.TIMEOUT_ERROR}},
        )
        assert next_due(doc) is None

    run({"TimeoutSeconds": 30}, scenario)


def test_heartbeats_keep_a_callback_open() -> None:
    """Each heartbeat starts the HeartbeatTimeoutSeconds again; without one in time the
    callback times out with the Callback.Heartbeat error."""

    async def scenario(executions: DurableExecutions, clock: Clock, cid: str) -> None:
        beat = lambda doc, ops, now: durable_callbacks.heartbeat(doc, ops, "cb", now)  # noqa: E731
        clock.now = 1008.0
        doc = await settle(executions, KEY, beat)
        assert not doc["woken"], "a heartbeat is no reason to invoke"
        assert next_due(doc) == 1018.0
        clock.now = 1017.0
        doc = await executions.begin_invocation(KEY)
        assert doc is not None
        assert callback_op(doc)["Status"] == "STARTED"
        clock.now = 1019.0
        doc = await executions.begin_invocation(KEY)
        assert doc is not None
        assert callback_op(doc)["Status"] == "TIMED_OUT"
        assert callback_op(doc)["CallbackDetails"]["Error"] == durable_callbacks.HEARTBEAT_ERROR

    run({"HeartbeatTimeoutSeconds": 10}, scenario)


def test_a_callback_of_an_ended_execution_is_closed() -> None:
    """A callback whose execution has ended is CallbackTimeoutException; an id lambdad did not
    issue is InvalidParameterValueException, one of an unknown operation
    ResourceNotFoundException."""

    async def scenario(executions: DurableExecutions, clock: Clock, cid: str) -> None:
        missing = lambda doc, ops, now: durable_callbacks.heartbeat(doc, ops, "x", now)  # noqa: E731
        with pytest.raises(errors.ResourceNotFoundException):
            await settle(executions, KEY, missing)
        await executions.finish(KEY, "STOPPED")
        with pytest.raises(errors.CallbackTimeoutException):
            await settle(executions, KEY, succeed("1"))
        with pytest.raises(errors.InvalidParameterValueException):
            durable_callbacks.parse_id("bm90IGFuIGlk")

    run({}, scenario)


def test_an_ended_execution_is_gone_after_its_retention() -> None:
    """An execution that ended more than RetentionPeriodInDays ago is not found, not listed,
    and deleted by the sweep (AWS: it is kept that long after it ends); a running one is kept
    however old."""

    async def scenario(executions: DurableExecutions, clock: Clock, cid: str) -> None:
        clock.now += 400 * 86400
        assert [d["name"] for d in await executions.of_function(SCOPE, "flow")] == ["run-1"]
        doc = await executions.finish(KEY, "STOPPED")
        assert doc is not None
        clock.now += 30 * 86400 - 1  # the default retention: 30 days
        await executions.get(SCOPE, doc["arn"])
        assert await executions.expire() == 0
        clock.now += 1
        with pytest.raises(errors.ResourceNotFoundException):
            await executions.get(SCOPE, doc["arn"])
        assert await executions.of_function(SCOPE, "flow") == []
        assert await executions.expire() == 1
        assert await executions.get_key(KEY) is None

    run({}, scenario)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            {
                "Id": "s",
                "Type": "STEP",
                "Action": "FAIL",
                "Error": {"ErrorMessage": "x" * 40000},
            },
            "Error object size must be less than 32768 bytes.",
        ),
        (
            {
                "Id": "i",
                "Type": "CHAINED_INVOKE",
                "Action": "START",
                "Payload": "x" * 1_048_577,
                "ChainedInvokeOptions": {"FunctionName": "other"},
            },
            "CHAINED_INVOKE input payload size must be less than or equal to 1048576 bytes.",
        ),
    ],
)
def test_oversized_payloads_are_refused(update: dict[str, Any], message: str) -> None:
    """A checkpoint whose error object or chained invoke input is over its limit is
    InvalidParameterValueException (the SDK local runner's limits and words)."""

    async def scenario(executions: DurableExecutions, clock: Clock, cid: str) -> None:
        doc = await executions.begin_invocation(KEY)
        assert doc is not None
        with pytest.raises(errors.InvalidParameterValueException, match=f"^{message}$"):
            await executions.checkpoint(SCOPE, doc["arn"], token_of(doc), [update], None)

    run({}, scenario)


def test_a_callback_succeeded_without_a_result_has_none() -> None:
    """SendDurableExecutionCallbackSuccess without a body leaves the callback without a
    ``Result`` (the SDK answers None), not with an empty string."""

    async def scenario(executions: DurableExecutions, clock: Clock, cid: str) -> None:
        change = lambda doc, ops, now: durable_callbacks.succeed(doc, ops, "cb", None, now)  # noqa: E731
        doc = await settle(executions, KEY, change)
        assert callback_op(doc)["CallbackDetails"] == {"CallbackId": cid}
        assert events(doc)[-1] == ("CallbackSucceeded", {"Result": {}})

    run({}, scenario)
