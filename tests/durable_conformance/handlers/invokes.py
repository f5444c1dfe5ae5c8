"""The conformance handlers of chained invokes (5-x) and their targets."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    Duration,
    InvokeConfig,
)
from aws_durable_execution_sdk_python.context import durable_with_child_context
from aws_durable_execution_sdk_python.serdes import SerDesContext

from .common import (
    JsonSerdes,
    echo,
    requirement,
    upper,
)

# Targets (functions of their own, from this zip): TARGET_ECHO answers its input (a
# ``{"blob": ...}`` input with the blob's size), TARGET_FAIL raises.


def _target(kind: str) -> str:
    return os.environ[f"TARGET_{kind}"]


class UpperPayload(JsonSerdes):
    """Sends string values upper-cased."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(upper(value))


class UpperResult(JsonSerdes):
    """Reads the result upper-cased."""

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return upper(json.loads(data))


@requirement("5-1")
def invoke_basic(event: Any, ctx: DurableContext) -> Any:
    return ctx.invoke(_target("ECHO"), event["Input"])


@requirement("5-2")
def invoke_named(event: Any, ctx: DurableContext) -> Any:
    data = event["Input"]
    return ctx.invoke(_target("ECHO"), data["payload"], name=data["name"])


requirement("5-3")(invoke_basic)
requirement("5-4")(invoke_basic)


@requirement("5-5")
def invoke_fails(event: Any, ctx: DurableContext) -> Any:
    return ctx.invoke(_target("FAIL"), event["Input"])


@requirement("5-6")
def invoke_fails_caught(event: Any, ctx: DurableContext) -> Any:
    try:
        return ctx.invoke(_target("FAIL"), event["Input"])
    except Exception:
        return "fallback"


@requirement("5-7")
def invoke_large(event: Any, ctx: DurableContext) -> Any:
    return ctx.invoke(_target("ECHO"), {"blob": "x" * (200 * 1024)})


@requirement("5-8")
def invoke_tenant(event: Any, ctx: DurableContext) -> Any:
    data = event["Input"]
    config: InvokeConfig[Any, Any] = InvokeConfig(tenant_id=data["tenantId"])
    return ctx.invoke(_target("ECHO"), data["payload"], config=config)


@requirement("5-9")
def invoke_then_wait(event: Any, ctx: DurableContext) -> Any:
    result = ctx.invoke(_target("ECHO"), "cached")
    ctx.wait(Duration.from_seconds(1))
    return result


@requirement("5-10")
def invoke_failure_then_wait(event: Any, ctx: DurableContext) -> Any:
    with contextlib.suppress(Exception):
        ctx.invoke(_target("FAIL"), "boom")
    ctx.wait(Duration.from_seconds(1))
    return "recovered"


@requirement("5-11")
def step_then_invoke(event: Any, ctx: DurableContext) -> Any:
    value = ctx.step(echo("from-step"))
    return ctx.invoke(_target("ECHO"), value)


@requirement("5-12")
def invoke_then_step(event: Any, ctx: DurableContext) -> Any:
    value = ctx.invoke(_target("ECHO"), "from-invoke")
    return ctx.step(echo(value))


@durable_with_child_context
def invoking_child(c: DurableContext) -> Any:
    return c.invoke(_target("ECHO"), "in-child")


@requirement("5-13")
def invoke_in_child(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(invoking_child())


@requirement("5-14")
def invoke_twice(event: Any, ctx: DurableContext) -> Any:
    first = ctx.invoke(_target("ECHO"), "first")
    return [first, ctx.invoke(_target("ECHO"), "second")]


@requirement("5-15")
def invoke_payload_serdes(event: Any, ctx: DurableContext) -> Any:
    config: InvokeConfig[Any, Any] = InvokeConfig(serdes_payload=UpperPayload())
    return ctx.invoke(_target("ECHO"), event["Input"], config=config)


@requirement("5-16")
def invoke_result_serdes(event: Any, ctx: DurableContext) -> Any:
    config: InvokeConfig[Any, Any] = InvokeConfig(serdes_result=UpperResult())
    return json.dumps(ctx.invoke(_target("ECHO"), event["Input"], config=config))


@durable_execution
def echo_target(event: Any, ctx: DurableContext) -> Any:
    """The chained invokes' echo target (a durable function of its own)."""
    if isinstance(event, dict) and "blob" in event:
        return {"size": len(event["blob"])}
    return event


@durable_execution
def failing_target(event: Any, ctx: DurableContext) -> Any:
    """The chained invokes' failing target."""
    raise RuntimeError("target failed")
