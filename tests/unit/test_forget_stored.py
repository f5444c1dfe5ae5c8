"""The caches the invoke path reads forget what another node's write made stale, given the
store change its feed delivers (``forget_stored``, docs/cluster.md): two "nodes" here are two
sets of control objects on one in-memory store; node A writes, node B has the old value cached
until the change (precise, table-wide, or "anything may have changed") reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lambdad.control.arns import Scope
from lambdad.control.concurrency import Reservations
from lambdad.control.event_config import EventInvokeConfigs, RecursiveLoop
from lambdad.control.functions import Functions
from lambdad.control.requests import CreateFunctionRequest, FunctionCode
from lambdad.store.base import StoreChange, Table
from lambdad.store.memory import MemoryBlobStore, MemoryStore
from tests.conftest import ROLE, make_zip

SCOPE = Scope("000000000000", "us-east-1")


class Node:
    """The control objects of one lambdad on ``store``."""

    def __init__(self, store: MemoryStore, blobs: MemoryBlobStore) -> None:
        self.functions = Functions(store, blobs)
        self.reservations = Reservations(store, self.functions, 1000)
        self.configs = EventInvokeConfigs(store, self.functions)

    def forget(self, change: StoreChange) -> None:
        for cache in (self.functions, self.reservations, self.configs):
            cache.forget_stored(change)


async def two_nodes() -> tuple[Node, Node]:
    store, blobs = MemoryStore(), MemoryBlobStore()
    a, b = Node(store, blobs), Node(store, blobs)
    await a.functions.create(
        SCOPE,
        CreateFunctionRequest(
            function_name="fn",
            runtime="python3.11",
            role=ROLE,
            handler="app.handler",
            code=FunctionCode(zip_file=make_zip({"app.py": "def handler(e, c):\n    pass\n"})),
        ),
    )
    return a, b


CHANGES = {
    "the row": {
        "reserved": StoreChange(Table.CONCURRENCY, SCOPE.key("fn")),
        "recursion": StoreChange(Table.RECURSION, SCOPE.key("fn")),
        "function": StoreChange(Table.FUNCTIONS, SCOPE.key("fn")),
    },
    "the table": {
        "reserved": StoreChange(Table.CONCURRENCY, (), prefix=True),
        "recursion": StoreChange(Table.RECURSION, (), prefix=True),
        "function": StoreChange(Table.FUNCTIONS, (), prefix=True),
    },
    "anything": {
        "reserved": StoreChange(None),
        "recursion": StoreChange(None),
        "function": StoreChange(None),
    },
}


async def stale_until_told(
    read: Callable[[], Awaitable[Any]],
    write: Callable[[], Awaitable[Any]],
    node: Node,
    change: StoreChange,
) -> tuple[Any, Any, Any]:
    """(before the write, after it, after ``change`` reached ``node``) as ``read`` sees them."""
    before = await read()
    await write()
    stale = await read()
    node.forget(change)
    return before, stale, await read()


@pytest.mark.parametrize("precision", list(CHANGES))
def test_reserved_concurrency_recursion_and_resolution_follow_another_nodes_writes(
    precision: str,
) -> None:
    """Node B answers from its cache until the store change of node A's write reaches it, then
    reads the store again: a reservation, a recursion setting, a deleted function."""
    changes = CHANGES[precision]

    async def scenario() -> None:
        a, b = await two_nodes()
        assert await stale_until_told(
            lambda: b.reservations.get(SCOPE, "fn"),
            lambda: a.reservations.put(SCOPE, "fn", 7),
            b,
            changes["reserved"],
        ) == (None, None, 7)
        assert await stale_until_told(
            lambda: b.configs.recursion(SCOPE, "fn"),
            lambda: a.configs.put_recursion(SCOPE, "fn", "Allow"),
            b,
            changes["recursion"],
        ) == (RecursiveLoop.TERMINATE, RecursiveLoop.TERMINATE, RecursiveLoop.ALLOW)

        async def resolves() -> bool:
            try:
                await b.functions.resolve(SCOPE, "fn", None)
            except Exception:
                return False
            return True

        assert await stale_until_told(
            resolves, lambda: a.functions.delete(SCOPE, "fn", None), b, changes["function"]
        ) == (True, True, False)

    asyncio.run(scenario())


def test_changes_to_other_tables_and_functions_leave_the_caches_be() -> None:
    """A change to another function, or to a table a cache does not hold, drops nothing."""

    async def scenario() -> None:
        a, b = await two_nodes()
        assert await b.reservations.get(SCOPE, "fn") is None
        await a.reservations.put(SCOPE, "fn", 7)
        b.forget(StoreChange(Table.CONCURRENCY, ("111111111111", "us-east-1", "fn")))
        b.forget(StoreChange(Table.METRICS, (), prefix=True))
        assert await b.reservations.get(SCOPE, "fn") is None  # still the cached figure

    asyncio.run(scenario())
