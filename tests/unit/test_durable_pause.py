"""Pausing, resuming and deleting durable executions (``control/durable_pause.py``,
``DurableExecutions.pause`` / ``resume`` / ``hold`` / ``delete``) over the in-memory store with
a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lambdad import errors
from lambdad.control import durable_pause
from lambdad.control.durable import Doc, DurableExecutions, token_of
from lambdad.store.base import Key, Table
from lambdad.store.memory import MemoryStore
from tests.unit.test_durable_executions import CONFIG, SCOPE, step

KEY: Key = SCOPE.key("flow", "run-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Scenario = Callable[[DurableExecutions, Doc, Clock, MemoryStore], Awaitable[None]]


def run(scenario: Scenario) -> None:
    """Run ``scenario`` with an execution whose first invocation is under way."""

    async def main() -> None:
        store = MemoryStore()
        await store.open()
        clock = Clock()
        executions = DurableExecutions(store, clock)
        await executions.start(SCOPE, CONFIG, "run-1", b"{}")
        begun = await executions.begin_invocation(KEY)
        assert begun is not None
        await scenario(executions, begun, clock, store)
        await store.close()

    asyncio.run(main())


def events(doc: Doc) -> list[str]:
    return [event["EventType"] for event in doc["history"]]


async def idle(executions: DurableExecutions, doc: Doc, *updates: dict[str, Any]) -> Doc:
    """Checkpoint ``updates`` and end the invocation (PENDING)."""
    if updates:
        await executions.checkpoint(SCOPE, doc["arn"], token_of(doc), list(updates), None)
    ended = await executions.end_invocation(KEY, 0.0, "req-1")
    assert ended is not None
    return ended


def conflict() -> Any:
    return pytest.raises(errors.ResourceConflictException)


def test_a_pause_during_an_invocation_takes_hold_at_its_next_checkpoint() -> None:
    """AWS: an execution with an invocation under way is PAUSING until the invocation's next
    checkpoint, then PAUSED; that checkpoint's updates are kept and its answer has no token
    (the SDK then ends the invocation PENDING), and nothing is invoked while paused."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        arn = doc["arn"]
        paused = await executions.pause(SCOPE, arn, "deploying", None, "t1")
        assert durable_pause.status(paused) == "PAUSING"
        assert "ExecutionPaused" not in events(paused)
        clock.now += 5
        answer = await executions.checkpoint(SCOPE, arn, token_of(doc), [step("s1", "START")], None)
        assert "CheckpointToken" not in answer
        assert [op["Id"] for op in answer["NewExecutionState"]["Operations"]] == ["s1"]
        current = await executions.get(SCOPE, arn)
        assert durable_pause.status(current) == "PAUSED"
        (event,) = [e for e in current["history"] if e["EventType"] == "ExecutionPaused"]
        assert event["EventTimestamp"] == clock.now
        assert event["ExecutionPausedDetails"] == {
            "PauseRequestTimestamp": clock.now - 5,
            "ExecutionTimeoutPaused": True,
            "Reason": {"Payload": "deploying", "Truncated": False},
        }
        ended = await executions.end_invocation(KEY, 0.0, "req-1")
        assert ended is not None
        assert events(ended)[-1] == "InvocationCompleted"
        assert await executions.begin_invocation(KEY) is None

    run(scenario)


def test_an_idle_execution_pauses_at_once_and_resumes_once() -> None:
    """An execution with no invocation under way is PAUSED at once; pausing it again, or
    resuming one that is not paused, is ResourceConflictException, unless the call repeats
    the last one with its client token; the resume records ExecutionResumed."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        arn = doc["arn"]
        await idle(executions, doc)
        with conflict():
            await executions.resume(SCOPE, arn, None, "r0")
        paused = await executions.pause(SCOPE, arn, None, None, "p1")
        assert durable_pause.status(paused) == "PAUSED"
        assert events(paused)[-1] == "ExecutionPaused"
        assert "Reason" not in paused["history"][-1]["ExecutionPausedDetails"]
        again = await executions.pause(SCOPE, arn, None, None, "p1")
        assert events(again).count("ExecutionPaused") == 1
        with conflict():
            await executions.pause(SCOPE, arn, None, None, "p2")
        clock.now += 3
        resumed = await executions.resume(SCOPE, arn, "fixed", "r1")
        assert durable_pause.status(resumed) == "RUNNING"
        assert resumed["history"][-1]["ExecutionResumedDetails"] == {
            "ResumeRequestTimestamp": clock.now,
            "Reason": {"Payload": "fixed", "Truncated": False},
        }
        assert not resumed["woken"]  # nothing was cut short, nothing ended meanwhile
        await executions.resume(SCOPE, arn, "fixed", "r1")  # repeated: no error, no event
        with conflict():
            await executions.resume(SCOPE, arn, "fixed", "r2")
        assert events(await executions.get(SCOPE, arn)).count("ExecutionResumed") == 1

    run(scenario)


def test_waits_end_while_paused_and_the_resume_replays_them() -> None:
    """AWS: while paused, pending operations such as waits still complete; the resume invokes
    the function when one did."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        wait = {"Id": "w1", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 10}}
        await idle(executions, doc, wait)
        await executions.pause(SCOPE, doc["arn"], None, None, None)
        held = await executions.hold(KEY)
        assert held is not None
        assert "WaitSucceeded" not in events(held)
        clock.now += 11
        held = await executions.hold(KEY)
        assert held is not None
        assert events(held)[-1] == "WaitSucceeded"
        assert held["woken"]
        resumed = await executions.resume(SCOPE, doc["arn"], None, None)
        assert resumed["woken"]

    run(scenario)


def test_the_execution_timeout_is_paused_unless_asked_otherwise() -> None:
    """AWS: with ExecutionTimeoutPaused (the default) the timeout is extended by the time the
    execution spent paused, and while paused it times out only 366 days after it started;
    without it the timeout runs on."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        arn = doc["arn"]
        await idle(executions, doc)
        deadline = doc["deadline"]
        paused = await executions.pause(SCOPE, arn, None, None, None)
        assert durable_pause.deadline(paused) == doc["start"] + durable_pause.LONGEST
        clock.now += 40
        resumed = await executions.resume(SCOPE, arn, None, None)
        assert durable_pause.deadline(resumed) == deadline + 40
        paused = await executions.pause(SCOPE, arn, None, False, None)
        assert durable_pause.deadline(paused) == deadline + 40
        clock.now += 7
        resumed = await executions.resume(SCOPE, arn, None, None)
        assert durable_pause.deadline(resumed) == deadline + 40

    run(scenario)


def test_a_resume_while_pausing_cancels_the_pause() -> None:
    """AWS: resuming a PAUSING execution cancels the pause; the invocation goes on (its next
    checkpoint gets a token) and nothing is recorded."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        arn = doc["arn"]
        await executions.pause(SCOPE, arn, None, None, None)
        resumed = await executions.resume(SCOPE, arn, None, None)
        assert durable_pause.status(resumed) == "RUNNING"
        answer = await executions.checkpoint(SCOPE, arn, token_of(doc), [], None)
        assert "CheckpointToken" in answer
        assert events(resumed) == ["ExecutionStarted"]

    run(scenario)


def test_a_pausing_execution_cut_off_by_a_restart_is_paused_and_replayed_on_resume() -> None:
    """A PAUSING execution whose invocation died with lambdad is PAUSED when the engine looks
    at it again: the dead invocation's token is refused, and the resume invokes the handler."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        arn = doc["arn"]
        await executions.pause(SCOPE, arn, None, None, None)
        held = await executions.hold(KEY)
        assert held is not None
        assert durable_pause.status(held) == "PAUSED"
        with pytest.raises(errors.InvalidParameterValueException):
            await executions.checkpoint(SCOPE, arn, token_of(doc), [], None)
        resumed = await executions.resume(SCOPE, arn, None, None)
        assert resumed["woken"]

    run(scenario)


def test_stop_ends_a_paused_execution() -> None:
    """AWS: StopDurableExecution stops a running or paused execution."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        await idle(executions, doc)
        await executions.pause(SCOPE, doc["arn"], None, None, None)
        stopped = await executions.stop(SCOPE, doc["arn"], None)
        assert durable_pause.status(stopped) == "STOPPED"
        assert events(stopped)[-2:] == ["ExecutionPaused", "ExecutionStopped"]
        with conflict():
            await executions.resume(SCOPE, doc["arn"], None, None)

    run(scenario)


def test_only_an_ended_execution_is_deleted_and_with_its_history() -> None:
    """AWS: DeleteDurableExecution refuses an execution that is not in a terminal state
    (ResourceConflictException) and removes an ended one with all its data."""

    async def scenario(
        executions: DurableExecutions, doc: Doc, clock: Clock, store: MemoryStore
    ) -> None:
        arn = doc["arn"]
        with conflict():
            await executions.delete(SCOPE, arn)
        await idle(executions, doc)
        await executions.pause(SCOPE, arn, None, None, None)
        with conflict():
            await executions.delete(SCOPE, arn)
        await executions.stop(SCOPE, arn, None)
        assert await executions.delete(SCOPE, arn) == clock.now
        with pytest.raises(errors.ResourceNotFoundException):
            await executions.get(SCOPE, arn)
        assert await store.scan(Table.DURABLE_EVENTS, KEY) == []
        with pytest.raises(errors.ResourceNotFoundException):
            await executions.delete(SCOPE, arn)

    run(scenario)


def test_a_stop_under_an_invocation_ends_its_checkpointing_without_a_token() -> None:
    """A checkpoint of the invocation under way when its execution was stopped is answered
    without a token and applies nothing (the SDK then ends the invocation PENDING, as when AWS
    ends an execution under it); a token of an earlier point stays refused."""

    async def scenario(executions: DurableExecutions, doc: Doc, clock: Clock, _: Any) -> None:
        arn = doc["arn"]
        first = token_of(doc)
        answer = await executions.checkpoint(SCOPE, arn, first, [step("s1", "START")], None)
        await executions.stop(SCOPE, arn, None)
        late = await executions.checkpoint(
            SCOPE, arn, answer["CheckpointToken"], [step("s1", "SUCCEED", Payload="1")], None
        )
        assert late == {"NewExecutionState": {"Operations": []}}
        with pytest.raises(errors.InvalidParameterValueException):
            await executions.checkpoint(SCOPE, arn, first, [], None)
        stopped = await executions.get(SCOPE, arn)
        assert events(stopped)[-1] == "ExecutionStopped"
        assert [op["Status"] for op in stopped["ops"] if op["Id"] == "s1"] == ["STARTED"]

    run(scenario)
