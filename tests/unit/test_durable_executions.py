"""Durable executions' checkpoint protocol (``control/durable.py``) over the in-memory store:
tokens, client-token retries, paging and the batch rules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.durable import Doc, DurableExecutions, token_of
from lambdad.control.model import FunctionConfig
from lambdad.store.base import StoreChange, StoreUnavailable, Table, Write
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


class FailingStore(MemoryStore):
    """An in-memory store whose next ``fail`` writes fail as a lost database would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0

    async def write(self, writes: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise StoreUnavailable("the database went away")
        await super().write(writes)


def started(store: MemoryStore) -> Callable[[], Awaitable[tuple[DurableExecutions, Doc]]]:
    async def make() -> tuple[DurableExecutions, Doc]:
        executions = DurableExecutions(store)
        await executions.start(SCOPE, CONFIG, "run-1", b"{}")
        begun = await executions.begin_invocation(SCOPE.key("flow", "run-1"))
        assert begun is not None
        return executions, begun

    return make


def test_a_checkpoint_whose_write_failed_changed_nothing() -> None:
    """A checkpoint that could not be stored is refused and leaves the execution as stored:
    the same checkpoint retried with the same token is applied once (the running execution
    kept in memory is not left ahead of the store)."""

    async def main() -> None:
        store = FailingStore()
        executions, doc = await started(store)()
        token = token_of(doc)
        store.fail = 1
        with pytest.raises(StoreUnavailable):
            await executions.checkpoint(SCOPE, doc["arn"], token, [step("s1", "START")], None)
        await executions.checkpoint(SCOPE, doc["arn"], token, [step("s1", "START")], None)
        stored = await executions.get(SCOPE, doc["arn"])
        assert [e["EventType"] for e in stored["history"]] == ["ExecutionStarted", "StepStarted"]

    asyncio.run(main())


def test_checkpoints_are_stored_before_they_are_answered() -> None:
    """Each accepted checkpoint is in the store when it is answered (a new DurableExecutions
    over the same store, as after a restart, sees it), though the running execution is read
    from memory."""

    async def main() -> None:
        store = MemoryStore()
        executions, doc = await started(store)()
        answer = await executions.checkpoint(
            SCOPE, doc["arn"], token_of(doc), [step("s1", "START")], None
        )
        await executions.checkpoint(
            SCOPE, doc["arn"], answer["CheckpointToken"], [step("s1", "SUCCEED")], None
        )
        after_restart = DurableExecutions(store)
        stored = await after_restart.get(SCOPE, doc["arn"])
        assert [op["Status"] for op in stored["ops"]] == ["STARTED", "SUCCEEDED"]

    asyncio.run(main())


def test_a_deleted_execution_is_not_written_back() -> None:
    """An execution deleted under a running invocation (DeleteFunction; another node's
    delete, heard on the change feed) is forgotten: its next checkpoint is
    ResourceNotFoundException, not a write that brings it back."""

    async def main() -> None:
        for forget in ("local", "feed"):
            store = MemoryStore()
            executions, doc = await started(store)()
            key = SCOPE.key("flow", "run-1")
            await store.delete(Table.DURABLE_EXECUTIONS, key)
            if forget == "local":
                executions.forget(SCOPE.key("flow"))
            else:
                executions.forget_stored(StoreChange(Table.DURABLE_EXECUTIONS, key))
            with pytest.raises(errors.ResourceNotFoundException):
                await executions.checkpoint(SCOPE, doc["arn"], token_of(doc), [], None)
            assert await store.get(Table.DURABLE_EXECUTIONS, key) is None

    asyncio.run(main())


def test_another_nodes_change_is_never_overwritten_by_the_kept_copy() -> None:
    """Two nodes on one store, the change feed not yet heard: a stop written by the other node
    while an invocation runs here is not undone by this node's next checkpoint (answered as a
    checkpoint of a stopped execution: no token, nothing applied) nor by the invocation's end;
    a step checkpointed here before a pause there is kept by the pause (AWS: a stopped
    execution takes no more checkpoints; changes are serialised)."""

    async def main() -> None:
        store = MemoryStore()
        worker, doc = await started(store)()
        api = DurableExecutions(store)
        key = SCOPE.key("flow", "run-1")
        first = await worker.checkpoint(
            SCOPE, doc["arn"], token_of(doc), [step("s1", "START")], None
        )
        await api.pause(SCOPE, doc["arn"], None, None, None)
        stopped = await api.stop(SCOPE, doc["arn"], None)
        assert stopped["status"] == "STOPPED"
        late = await worker.checkpoint(
            SCOPE, doc["arn"], first["CheckpointToken"], [step("s1", "SUCCEED")], None
        )
        assert late == {"NewExecutionState": {"Operations": []}}
        await worker.end_invocation(key, 0.0, "req-1")
        stored = await api.get(SCOPE, doc["arn"])
        assert stored["status"] == "STOPPED"
        kinds = [e["EventType"] for e in stored["history"]]
        assert kinds[kinds.index("StepStarted") :][-2:] == [
            "ExecutionStopped",
            "InvocationCompleted",
        ]
        assert "StepSucceeded" not in kinds
        assert [op["Status"] for op in stored["ops"]] == ["STOPPED", "STARTED"]

    asyncio.run(main())


def test_history_events_are_rows_of_their_own() -> None:
    """A checkpoint stores its new events as rows of their own beside the execution's record
    (which holds no history); the history reads back whole and in order past nine events."""

    async def main() -> None:
        store = MemoryStore()
        executions, doc = await started(store)()
        token = token_of(doc)
        for number in range(6):
            updates = [step(f"s{number}", "START"), step(f"s{number}", "SUCCEED", Payload="1")]
            answer = await executions.checkpoint(SCOPE, doc["arn"], token, updates, None)
            token = answer["CheckpointToken"]
        key = SCOPE.key("flow", "run-1")
        record = await store.get(Table.DURABLE_EXECUTIONS, key)
        assert record is not None
        assert "history" not in record
        rows = await store.scan(Table.DURABLE_EVENTS, key)
        assert [event["EventId"] for _, event in rows] == list(range(1, 14))
        stored = await executions.get(SCOPE, doc["arn"])
        assert [e["EventId"] for e in stored["history"]] == list(range(1, 14))

    asyncio.run(main())


def test_a_document_with_its_history_inside_is_read_and_moved_to_rows() -> None:
    """An execution stored before events had rows (its history inside its document) reads
    back whole, and its next change moves every event to rows."""

    async def main() -> None:
        store = MemoryStore()
        executions, doc = await started(store)()
        key = SCOPE.key("flow", "run-1")
        legacy = await executions.get(SCOPE, doc["arn"])
        legacy.pop("_event_rows")
        await store.delete_prefix(Table.DURABLE_EVENTS, key)
        await store.put(Table.DURABLE_EXECUTIONS, key, legacy)
        fresh = DurableExecutions(store)
        assert (await fresh.get(SCOPE, doc["arn"]))["history"] == legacy["history"]
        await fresh.checkpoint(SCOPE, doc["arn"], token_of(doc), [step("s1", "START")], None)
        record = await store.get(Table.DURABLE_EXECUTIONS, key)
        assert record is not None
        assert "history" not in record
        rows = await store.scan(Table.DURABLE_EVENTS, key)
        assert [event["EventType"] for _, event in rows] == ["ExecutionStarted", "StepStarted"]

    asyncio.run(main())


class WritesKept(MemoryStore):
    """The in-memory store, remembering the rows each transaction wrote, by table."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[dict[Table, list[tuple[str, ...]]]] = []

    async def write(self, writes: Sequence[Write]) -> None:
        await super().write(writes)
        rows: dict[Table, list[tuple[str, ...]]] = {}
        for w in writes:
            rows.setdefault(w.table, []).append(w.key)
        self.written.append(rows)


def test_a_checkpoint_writes_only_the_operations_it_changed() -> None:
    """Each operation is a row of its own, in its order of creation (the record keeps none,
    nor the input); a checkpoint writes the record, the operations its answer names and its
    new events, never the earlier operations, so its write does not grow with the steps."""

    async def main() -> None:
        store = WritesKept()
        executions, doc = await started(store)()
        token = token_of(doc)
        for number in range(5):
            updates = [step(f"s{number}", "START"), step(f"s{number}", "SUCCEED", Payload="1")]
            answer = await executions.checkpoint(SCOPE, doc["arn"], token, updates, None)
            token = answer["CheckpointToken"]
        key = SCOPE.key("flow", "run-1")
        last = store.written[-1]
        assert last[Table.DURABLE_OPERATIONS] == [(*key, "000000005")]
        assert len(last[Table.DURABLE_EVENTS]) == 2
        record = await store.get(Table.DURABLE_EXECUTIONS, key)
        assert record is not None
        assert "ops" not in record
        assert "input" not in record
        rows = await store.scan(Table.DURABLE_OPERATIONS, key)
        assert [op["Id"] for _, op in rows][1:] == [f"s{n}" for n in range(5)]
        stored = await executions.get(SCOPE, doc["arn"])
        assert stored["ops"] == [op for _, op in rows]
        assert stored["input"] == "{}"
        described = await executions.describe(SCOPE, doc["arn"])
        assert (described["input"], "ops" in described) == ("{}", False)

    asyncio.run(main())


def test_state_and_history_pages_read_their_rows() -> None:
    """GetDurableExecutionState and GetDurableExecutionHistory page over the rows: the pages
    joined are every operation and every event in order (reversed: the events backwards)."""

    async def main() -> None:
        store = MemoryStore()
        executions, doc = await started(store)()
        token = token_of(doc)
        for number in range(4):
            updates = [step(f"s{number}", "START"), step(f"s{number}", "SUCCEED", Payload="1")]
            answer = await executions.checkpoint(SCOPE, doc["arn"], token, updates, None)
            token = answer["CheckpointToken"]
        whole = await executions.get(SCOPE, doc["arn"])
        for member, read, items in (
            ("Operations", lambda m: executions.state(SCOPE, doc["arn"], token, m, 3), "ops"),
            ("Events", lambda m: executions.history(SCOPE, doc["arn"], m, 3, False), "history"),
            ("Events", lambda m: executions.history(SCOPE, doc["arn"], m, 3, True), "back"),
        ):
            got: list[Any] = []
            marker = None
            while True:
                body = await read(marker)
                got += body[member]
                marker = body.get("NextMarker")
                if marker is None:
                    break
            expected = whole["history"][::-1] if items == "back" else whole[items]
            assert got == expected

    asyncio.run(main())


def test_a_document_with_its_operations_inside_is_read_and_moved_to_rows() -> None:
    """An execution stored before operations had rows (them and its input inside its
    record) reads back whole, answers its state, and its next change moves every operation
    to rows and takes them out of the record."""

    async def main() -> None:
        store = MemoryStore()
        executions, doc = await started(store)()
        key = SCOPE.key("flow", "run-1")
        token = token_of(doc)
        answer = await executions.checkpoint(SCOPE, doc["arn"], token, [step("s1", "START")], None)
        token = answer["CheckpointToken"]
        legacy = await executions.get(SCOPE, doc["arn"])
        legacy = {k: v for k, v in legacy.items() if not k.startswith("_") and k != "history"}
        await store.delete_prefix(Table.DURABLE_OPERATIONS, key)
        await store.put(Table.DURABLE_EXECUTIONS, key, legacy)
        fresh = DurableExecutions(store)
        assert (await fresh.get(SCOPE, doc["arn"]))["ops"] == legacy["ops"]
        state = await fresh.state(SCOPE, doc["arn"], token, None, None)
        assert state["Operations"] == legacy["ops"]
        await fresh.checkpoint(SCOPE, doc["arn"], token, [step("s1", "SUCCEED")], None)
        record = await store.get(Table.DURABLE_EXECUTIONS, key)
        assert record is not None
        assert "ops" not in record
        assert "input" not in record
        rows = await store.scan(Table.DURABLE_OPERATIONS, key)
        assert [(op["Id"], op["Status"]) for _, op in rows][1:] == [("s1", "SUCCEEDED")]
        assert (await fresh.describe(SCOPE, doc["arn"]))["input"] == "{}"

    asyncio.run(main())
