"""The caches the invoke path reads forget what another node's write made stale, given the
store change its feed delivers (``forget_stored``, docs/cluster.md): two "nodes" here are two
sets of control objects on one in-memory store; node A writes, node B has the old value cached
until the change (precise, table-wide, or "anything may have changed") reaches it. Covered:
reservations, recursion, function and alias resolution, resource policies, the url-id index of
function URL configs, provisioned configs (the region's figures and the "functions with configs"
shortcut)."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lambdad.control import functions as functions_module
from lambdad.control.arns import Scope
from lambdad.control.changes import FunctionChanged
from lambdad.control.concurrency import Reservations
from lambdad.control.event_config import EventInvokeConfigs, RecursiveLoop
from lambdad.control.functions import Functions
from lambdad.control.permissions import FunctionPolicies
from lambdad.control.policies import RequestContext
from lambdad.control.provisioned import ProvisionedConfigs
from lambdad.control.requests import (
    AddPermissionRequest,
    AliasRoutingConfiguration,
    CreateAliasRequest,
    CreateFunctionRequest,
    FunctionCode,
    FunctionUrlConfigRequest,
    PutProvisionedConcurrencyConfigRequest,
    RemovePermissionRequest,
    UpdateAliasRequest,
    UpdateFunctionConfigurationRequest,
)
from lambdad.control.urls import FunctionUrls
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
        self.policies = FunctionPolicies(store, self.functions)
        self.urls = FunctionUrls(store, self.functions)
        self.provisioned = ProvisionedConfigs(store, self.functions, self.reservations)

    def forget(self, change: StoreChange) -> None:
        """What ``app.py`` subscribes to the store, in its order."""
        for cache in (
            self.functions,
            self.reservations,
            self.configs,
            self.policies,
            self.urls,
            self.provisioned,
        ):
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


#: The store change of node A's write to each kind of row, as precise as the feed may say it.
CHANGES = {
    "the row": {
        "reserved": StoreChange(Table.CONCURRENCY, SCOPE.key("fn")),
        "recursion": StoreChange(Table.RECURSION, SCOPE.key("fn")),
        "function": StoreChange(Table.FUNCTIONS, SCOPE.key("fn")),
        "alias": StoreChange(Table.ALIASES, SCOPE.key("fn", "live")),
        "policy": StoreChange(Table.FUNCTION_POLICIES, SCOPE.key("fn", "")),
        "url": StoreChange(Table.FUNCTION_URLS, SCOPE.key("fn", "$LATEST")),
        "provisioned": StoreChange(Table.PROVISIONED, SCOPE.key("fn", "1")),
    },
    "the table": {
        "reserved": StoreChange(Table.CONCURRENCY, (), prefix=True),
        "recursion": StoreChange(Table.RECURSION, (), prefix=True),
        "function": StoreChange(Table.FUNCTIONS, (), prefix=True),
        "alias": StoreChange(Table.ALIASES, (), prefix=True),
        "policy": StoreChange(Table.FUNCTION_POLICIES, (), prefix=True),
        "url": StoreChange(Table.FUNCTION_URLS, (), prefix=True),
        "provisioned": StoreChange(Table.PROVISIONED, (), prefix=True),
    },
    "anything": {
        "reserved": StoreChange(None),
        "recursion": StoreChange(None),
        "function": StoreChange(None),
        "alias": StoreChange(None),
        "policy": StoreChange(None),
        "url": StoreChange(None),
        "provisioned": StoreChange(None),
    },
}


async def stale_until_told(
    read: Callable[[], Awaitable[Any]],
    write: Callable[[], Awaitable[Any]],
    node: Node,
    change: StoreChange,
    *,
    follows: bool = False,
) -> tuple[Any, Any, Any]:
    """(before the write, after it, after ``change`` reached ``node``) as ``read`` sees them.

    ``follows``: what ``read`` sees is re-read in the background once told (the url-id index),
    so the last read is polled until it differs from the stale one (or a deadline passes)."""
    before = await read()
    await write()
    stale = await read()
    node.forget(change)
    if follows:
        return before, stale, await polled(read, stale)
    return before, stale, await read()


async def polled(read: Callable[[], Awaitable[Any]], stale: Any) -> Any:
    """What ``read`` returns once it no longer returns ``stale`` (``stale`` after 5 s)."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while (seen := await read()) == stale:
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.005)
    return seen


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


async def two_versions(node: Node) -> None:
    """Versions 1 and 2 of ``fn`` (a configuration change between the publishes)."""
    await node.functions.publish(SCOPE, "fn", code_sha256=None, description=None, revision_id=None)
    await node.functions.update_config(
        SCOPE, UpdateFunctionConfigurationRequest(function_name="fn", description="two")
    )
    await node.functions.publish(SCOPE, "fn", code_sha256=None, description=None, revision_id=None)


@pytest.mark.parametrize("precision", list(CHANGES))
def test_a_resolve_through_an_alias_follows_another_nodes_alias_update(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node B resolves an alias from its cache until the change of node A's UpdateAlias
    reaches it: first the alias's version, then its routing weights (a draw of 0.25 here)."""
    monkeypatch.setattr(functions_module, "random", types.SimpleNamespace(random=lambda: 0.25))
    change = CHANGES[precision]["alias"]

    async def scenario() -> None:
        a, b = await two_nodes()
        await two_versions(a)
        await a.functions.create_alias(
            SCOPE, CreateAliasRequest(function_name="fn", name="live", function_version="1")
        )

        async def version() -> str:
            return (await b.functions.resolve(SCOPE, "fn", "live")).version

        def update(**changes: Any) -> Callable[[], Awaitable[Any]]:
            request = UpdateAliasRequest(function_name="fn", name="live", **changes)
            return lambda: a.functions.update_alias(SCOPE, request)

        assert await stale_until_told(version, update(function_version="2"), b, change) == (
            "1",
            "1",
            "2",
        )
        weights = AliasRoutingConfiguration(additional_version_weights={"1": 0.5})
        assert await stale_until_told(version, update(routing_config=weights), b, change) == (
            "2",
            "2",
            "1",
        )

    asyncio.run(scenario())


@pytest.mark.parametrize("precision", list(CHANGES))
def test_resource_policy_decisions_follow_another_nodes_permissions(precision: str) -> None:
    """Node B decides whether another account may invoke from its cached policy until the
    change of node A's AddPermission (then RemovePermission) reaches it."""
    change = CHANGES[precision]["policy"]
    other = RequestContext(account_id="111111111111")

    async def scenario() -> None:
        a, b = await two_nodes()

        async def allowed() -> bool:
            return await b.policies.allows_invoke(SCOPE, "fn", None, other)

        async def grant() -> None:
            request = AddPermissionRequest(
                function_name="fn",
                statement_id="other",
                action="lambda:InvokeFunction",
                principal="111111111111",
            )
            await a.policies.add_permission(SCOPE, request)

        async def revoke() -> None:
            request = RemovePermissionRequest(function_name="fn", statement_id="other")
            await a.policies.remove_permission(SCOPE, request)

        assert await stale_until_told(allowed, grant, b, change) == (False, False, True)
        assert await stale_until_told(allowed, revoke, b, change) == (True, True, False)

    asyncio.run(scenario())


@pytest.mark.parametrize("precision", list(CHANGES))
def test_the_url_id_index_follows_another_nodes_url_configs(precision: str) -> None:
    """Node B's url-id index (what the URL front door reads) finds a URL config node A
    created, then its update, then misses it once deleted, each once the change reaches B."""
    change = CHANGES[precision]["url"]

    async def scenario() -> None:
        a, b = await two_nodes()
        await a.urls.start()
        await b.urls.start()
        try:
            created = await a.urls.create(
                SCOPE, FunctionUrlConfigRequest(function_name="fn", auth_type="NONE")
            )

            async def auth_type() -> str | None:
                found = b.urls.find(created.url_id)
                return None if found is None else found.auth_type.value

            assert await auth_type() is None
            b.forget(change)
            assert await polled(auth_type, None) == "NONE"

            update = FunctionUrlConfigRequest(function_name="fn", auth_type="AWS_IAM")
            assert await stale_until_told(
                auth_type, lambda: a.urls.update(SCOPE, update), b, change, follows=True
            ) == ("NONE", "NONE", "AWS_IAM")
            assert await stale_until_told(
                auth_type, lambda: a.urls.delete(SCOPE, "fn", None), b, change, follows=True
            ) == ("AWS_IAM", "AWS_IAM", None)
        finally:
            await a.urls.close()
            await b.urls.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("precision", list(CHANGES))
def test_provisioned_configs_put_elsewhere_are_looked_at_once_told(precision: str) -> None:
    """Node B counts a provisioned config node A put against the region's figures, and tells
    its listeners (which keep environments ready) on the function's next change, only once the
    config's store change reaches it: before, B knows the function as one without configs."""
    change = CHANGES[precision]["provisioned"]

    async def scenario() -> None:
        a, b = await two_nodes()
        await two_versions(a)
        heard: list[str] = []

        async def listener(scope: Scope, name: str) -> None:
            heard.append(name)

        b.provisioned.on_change(listener)
        assert await b.provisioned.functions_with_configs() == []

        async def seen() -> tuple[int, bool]:
            figure = await b.reservations.provisioned(SCOPE, "fn")
            heard.clear()
            await b.functions.changes.publish(FunctionChanged(SCOPE, "fn"))
            return figure, heard == ["fn"]

        async def put() -> None:
            request = PutProvisionedConcurrencyConfigRequest(
                function_name="fn", qualifier="1", provisioned_concurrent_executions=3
            )
            await a.provisioned.put(SCOPE, request)

        assert await stale_until_told(seen, put, b, change) == ((0, False), (0, False), (3, True))

    asyncio.run(scenario())
