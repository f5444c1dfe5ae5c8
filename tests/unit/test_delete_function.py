"""DeleteFunction removes everything of a function in one store write (the in-memory store twin
records the writes)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.requests import CreateAliasRequest, CreateFunctionRequest, FunctionCode
from lambdad.store.base import Key, Table, Write
from lambdad.store.memory import MemoryBlobStore, MemoryStore
from tests.conftest import ROLE, make_zip

SCOPE = Scope("000000000000", "us-east-1")


class RecordingStore(MemoryStore):
    """A MemoryStore that records its transactions and prefix deletions."""

    def __init__(self) -> None:
        super().__init__()
        self.transactions: list[list[Write]] = []
        self.prefix_deletes = 0

    async def write(self, writes: Sequence[Write]) -> None:
        self.transactions.append(list(writes))
        await super().write(writes)

    async def delete_prefix(self, table: Table, prefix: Key) -> int:
        self.prefix_deletes += 1
        return await super().delete_prefix(table, prefix)


async def _scenario() -> None:
    store = RecordingStore()
    functions = Functions(store, MemoryBlobStore())
    code = make_zip({"app.py": "def handler(e, c):\n    return e\n"})
    for name in ("fn", "other"):
        await functions.create(
            SCOPE,
            CreateFunctionRequest(
                function_name=name,
                code=FunctionCode(zip_file=code),
                runtime="python3.11",
                role=ROLE,
                handler="app.handler",
            ),
        )
    await functions.publish(SCOPE, "fn", code_sha256=None, description=None, revision_id=None)
    await functions.create_alias(
        SCOPE, CreateAliasRequest(function_name="fn", name="live", function_version="1")
    )
    await store.put(Table.CONCURRENCY, SCOPE.key("fn"), {"reserved": 5})
    await store.put(Table.RECURSION, SCOPE.key("fn"), {"recursive_loop": "Allow"})
    await store.put(Table.EVENT_INVOKE_CONFIGS, SCOPE.key("fn", "live"), {"retries": 0})
    await store.put(Table.PROVISIONED, SCOPE.key("fn", "1"), {"requested": 1})
    await store.put(Table.FUNCTION_POLICIES, SCOPE.key("fn", ""), {"document": {}})
    await store.put(Table.FUNCTION_POLICIES, SCOPE.key("fn", "live"), {"document": {}})
    await store.put(Table.FUNCTION_POLICIES, SCOPE.key("other", ""), {"document": {}})
    store.transactions.clear()

    await functions.delete(SCOPE, "fn", None)

    touching = [t for t in store.transactions if any(w.key[2] == "fn" for w in t)]
    assert len(touching) == 1
    assert store.prefix_deletes == 0
    for table in Table:
        assert not [key for key, _ in await store.scan(table, SCOPE.key()) if key[2] == "fn"]
        assert await store.get(table, SCOPE.key("fn")) is None
    assert await store.get(Table.FUNCTIONS, SCOPE.key("other")) is not None
    assert not await store.scan(Table.FUNCTION_POLICIES, SCOPE.key("fn"))
    assert await store.get(Table.FUNCTION_POLICIES, SCOPE.key("other", "")) is not None


def test_delete_function_is_one_store_write() -> None:
    """The function's record, versions, aliases, reserved and provisioned concurrency, event
    invoke and recursion configs and resource policies go in one transaction; other functions
    stay."""
    asyncio.run(_scenario())
