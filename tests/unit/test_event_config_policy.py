"""``EventInvokeConfigs.policy`` and ``recursion``, the invoke path's view of the configs: they
answer from a cache that every write and every delete keeps current, without a store read per
event (the in-memory store twin stands in for SQLite here)."""

from __future__ import annotations

import asyncio
from typing import Any

from lambdad.control.arns import Scope
from lambdad.control.event_config import AsyncPolicy, EventInvokeConfigs, RecursiveLoop
from lambdad.control.event_config_model import service_of
from lambdad.control.functions import Functions
from lambdad.control.requests import (
    CreateAliasRequest,
    CreateFunctionRequest,
    Destination,
    DestinationConfig,
    FunctionCode,
    PutFunctionEventInvokeConfigRequest,
)
from lambdad.store.base import Key, Table
from lambdad.store.memory import MemoryBlobStore, MemoryStore
from tests.conftest import ROLE, make_zip

SCOPE = Scope("000000000000", "us-east-1")
QUEUE = "arn:aws:sqs:us-east-1:000000000000:failures"


class CountingStore(MemoryStore):
    """A MemoryStore that counts its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, table: Table, key: Key) -> dict[str, Any] | None:
        self.reads += 1
        return await super().get(table, key)

    async def scan(self, table: Table, prefix: Key = ()) -> list[tuple[Key, dict[str, Any]]]:
        self.reads += 1
        return await super().scan(table, prefix)


def _settings(**fields: Any) -> PutFunctionEventInvokeConfigRequest:
    return PutFunctionEventInvokeConfigRequest(function_name="fn", **fields)


async def _scenario() -> None:
    store = CountingStore()
    functions = Functions(store, MemoryBlobStore())
    configs = EventInvokeConfigs(store, functions)
    code = make_zip({"app.py": "def handler(e, c):\n    return e\n"})
    await functions.create(
        SCOPE,
        CreateFunctionRequest(
            function_name="fn",
            runtime="python3.11",
            role=ROLE,
            handler="app.handler",
            code=FunctionCode(zip_file=code),
        ),
    )
    await functions.publish(SCOPE, "fn", code_sha256=None, description=None, revision_id=None)
    await functions.create_alias(
        SCOPE, CreateAliasRequest(function_name="fn", name="live", function_version="1")
    )

    assert await configs.policy(SCOPE, "fn", None) == AsyncPolicy()
    await configs.put(SCOPE, _settings(maximum_retry_attempts=0))
    await configs.put(
        SCOPE,
        _settings(
            qualifier="live",
            destination_config=DestinationConfig(on_failure=Destination(destination=QUEUE)),
        ),
    )
    reads = store.reads
    for _ in range(100):
        assert await configs.policy(SCOPE, "fn", None) == AsyncPolicy(max_retry_attempts=0)
        assert await configs.policy(SCOPE, "fn", "$LATEST") == AsyncPolicy(max_retry_attempts=0)
        assert await configs.policy(SCOPE, "fn", "live") == AsyncPolicy(on_failure=QUEUE)
        assert await configs.policy(SCOPE, "fn", "1") == AsyncPolicy()
        assert await configs.recursion(SCOPE, "fn") is RecursiveLoop.TERMINATE
    assert store.reads - reads <= 1, "one read for the recursion setting, then the cache"

    await configs.update(SCOPE, _settings(maximum_event_age_in_seconds=60))
    assert await configs.policy(SCOPE, "fn", None) == AsyncPolicy(0, 60)
    await configs.put_recursion(SCOPE, "fn", "Allow")
    assert await configs.recursion(SCOPE, "fn") is RecursiveLoop.ALLOW

    await functions.delete_alias(SCOPE, "fn", "live")
    assert await configs.policy(SCOPE, "fn", "live") == AsyncPolicy()
    await configs.delete(SCOPE, "fn", None)
    assert await configs.policy(SCOPE, "fn", None) == AsyncPolicy()
    await configs.put(SCOPE, _settings(qualifier="1", maximum_retry_attempts=1))
    await functions.delete(SCOPE, "fn", None)
    assert await store.scan(Table.EVENT_INVOKE_CONFIGS) == []
    assert await store.scan(Table.RECURSION) == []
    assert await configs.policy(SCOPE, "fn", "1") == AsyncPolicy()
    assert await configs.recursion(SCOPE, "fn") is RecursiveLoop.TERMINATE


def test_policy_and_recursion_follow_writes_and_deletes_from_a_cache() -> None:
    """The invoke path's answers change with every write and delete, and cost no store reads."""
    asyncio.run(_scenario())


def test_destinations_in_every_region_the_model_allows_are_accepted() -> None:
    """A destination ARN of an ``eusc-`` or ISO region names its service as any other does: the
    model's DestinationArn pattern allows those regions, and so does AWS."""
    for region in ("us-east-1", "eusc-de-east-1", "us-isof-south-1", "us-gov-west-1"):
        assert service_of(f"arn:aws:sqs:{region}:000000000000:q") == "sqs"
    assert service_of("arn:aws:s3:us-east-1:000000000000:bucket") is None
