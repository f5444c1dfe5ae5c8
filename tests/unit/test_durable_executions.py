"""Durable executions' checkpoint protocol (``control/durable.py``) over the in-memory store:
tokens, client-token retries, paging and the batch rules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.durable import Doc, DurableExecutions, token_of
from lambdad.control.model import FunctionConfig
from lambdad.store.memory import MemoryStore

SCOPE = Scope("111122223333", "eu-west-1")
CONFIG = FunctionConfig(
    name="flow",
    version="$LATEST",
    runtime="python3.12",
    role="",
    handler="app.handler",
    code_key="",
    code_sha256="",
    code_size=0,
    durable_execution_timeout=60,
)


def run(scenario: Callable[[DurableExecutions, Doc], Awaitable[None]]) -> None:
    """Run ``scenario`` with an execution whose first invocation is under way."""

    async def main() -> None:
        store = MemoryStore()
        await store.open()
        executions = DurableExecutions(store)
        _, created = await executions.start(SCOPE, CONFIG, "run-1", b'{"a": 1}')
        assert created
        begun = await executions.begin_invocation(SCOPE.key("flow", "run-1"))
        assert begun is not None
        await scenario(executions, begun)
        await store.close()

    asyncio.run(main())


def step(op_id: str, action: str, **members: Any) -> dict[str, Any]:
    return {"Id": op_id, "Type": "STEP", "Action": action, **members}


def refused(message: str) -> Any:
    return pytest.raises(errors.InvalidParameterValueException, match=f"^{message}$")


def test_each_checkpoint_takes_the_token_the_last_one_gave() -> None:
    """A checkpoint answers a new token; the one it consumed is refused from then on (AWS:
    "Invalid checkpoint token")."""

    async def scenario(executions: DurableExecutions, doc: Doc) -> None:
        first = token_of(doc)
        answer = await executions.checkpoint(SCOPE, doc["arn"], first, [step("s1", "START")], None)
        assert answer["CheckpointToken"] != first
        assert [op["Status"] for op in answer["NewExecutionState"]["Operations"]] == ["STARTED"]
        with refused("Invalid checkpoint token"):
            await executions.checkpoint(SCOPE, doc["arn"], first, [], None)
        nxt = answer["CheckpointToken"]
        done = await executions.checkpoint(
            SCOPE, doc["arn"], nxt, [step("s1", "SUCCEED", Payload="1")], None
        )
        (op,) = done["NewExecutionState"]["Operations"]
        assert (op["Status"], op["StepDetails"]) == ("SUCCEEDED", {"Attempt": 1, "Result": "1"})

    run(scenario)


def test_a_retried_checkpoint_with_its_client_token_gets_the_same_answer() -> None:
    """The same ClientToken and CheckpointToken again answer what the first call answered,
    without applying the updates twice."""

    async def scenario(executions: DurableExecutions, doc: Doc) -> None:
        token = token_of(doc)
        first = await executions.checkpoint(SCOPE, doc["arn"], token, [step("s1", "START")], "c1")
        again = await executions.checkpoint(SCOPE, doc["arn"], token, [step("s1", "START")], "c1")
        assert again == first
        with refused("Invalid checkpoint token"):
            await executions.checkpoint(SCOPE, doc["arn"], token, [step("s1", "START")], "c2")

    run(scenario)


def test_tokens_end_with_their_invocation() -> None:
    """Once the invocation ended, its tokens are refused for checkpoints and state alike."""

    async def scenario(executions: DurableExecutions, doc: Doc) -> None:
        token = token_of(doc)
        await executions.end_invocation(SCOPE.key("flow", "run-1"), 0.0, "req-1")
        with refused("Invalid checkpoint token"):
            await executions.checkpoint(SCOPE, doc["arn"], token, [], None)
        with refused("Invalid checkpoint token"):
            await executions.state(SCOPE, doc["arn"], token, None, None)

    run(scenario)


def test_state_is_paged() -> None:
    """GetDurableExecutionState answers MaxItems operations and a NextMarker for the rest."""

    async def scenario(executions: DurableExecutions, doc: Doc) -> None:
        token = token_of(doc)
        updates = [step("s1", "START"), step("s1", "SUCCEED", Payload="1"), step("s2", "START")]
        await executions.checkpoint(SCOPE, doc["arn"], token, updates, None)
        page = await executions.state(SCOPE, doc["arn"], token, None, 2)
        assert [op["Type"] for op in page["Operations"]] == ["EXECUTION", "STEP"]
        rest = await executions.state(SCOPE, doc["arn"], token, page["NextMarker"], 2)
        assert [op["Id"] for op in rest["Operations"]] == ["s2"]
        assert "NextMarker" not in rest

    run(scenario)


@pytest.mark.parametrize(
    ("before", "updates", "message"),
    [
        ([], [step("s1", "SUCCEED", Error={"ErrorType": "E"})], None),
        (
            [step("s1", "START")],
            [step("s1", "SUCCEED", Error={"ErrorType": "E"})],
            "Cannot provide an Error for SUCCEED action.",
        ),
        (
            [step("s1", "START")],
            [step("s1", "START")],
            "Invalid current STEP state to start.",
        ),
        (
            [],
            [{"Id": "w", "Type": "WAIT", "Action": "CANCEL"}],
            "Cannot cancel a WAIT that does not exist or has already completed.",
        ),
        (
            [],
            [{"Id": "x", "Type": "EXECUTION", "Action": "SUCCEED"}, step("s1", "START")],
            "EXECUTION checkpoint must be the last update.",
        ),
        ([], [step("s1", "START", ParentId="nope")], "Invalid parent operation id."),
        (
            [],
            [step("s1", "START"), step("s1", "START")],
            "Cannot checkpoint multiple operations with the same ID.",
        ),
        (
            [{"Id": "c", "Type": "CALLBACK", "Action": "START"}],
            [{"Id": "c", "Type": "CALLBACK", "Action": "START"}],
            "Cannot start a CALLBACK that already exist.",
        ),
        (
            [],
            [{"Id": "c", "Type": "CALLBACK", "Action": "SUCCEED"}],
            "Invalid action for the given operation type.",
        ),
        (
            [],
            [{"Id": "i", "Type": "CHAINED_INVOKE", "Action": "START"}],
            "Update for CHAINED_INVOKE operation requires ChainedInvokeOptions.",
        ),
    ],
)
def test_batches_breaking_the_rules_are_refused_whole(
    before: list[dict[str, Any]], updates: list[dict[str, Any]], message: str | None
) -> None:
    """A checkpoint breaking one of the service's rules is InvalidParameterValueException with
    the rule's words, and nothing of it is applied (the SDK's local runner's rules; ``None``:
    the batch is accepted)."""

    async def scenario(executions: DurableExecutions, doc: Doc) -> None:
        token = token_of(doc)
        if before:
            token = (await executions.checkpoint(SCOPE, doc["arn"], token, before, None))[
                "CheckpointToken"
            ]
        if message is None:  # closing a step never started is allowed (AT_MOST_ONCE steps)
            await executions.checkpoint(SCOPE, doc["arn"], token, updates, None)
            return
        kept = (await executions.get(SCOPE, doc["arn"]))["ops"]
        with refused(re.escape(message)):
            await executions.checkpoint(SCOPE, doc["arn"], token, updates, None)
        assert (await executions.get(SCOPE, doc["arn"]))["ops"] == kept

    run(scenario)
