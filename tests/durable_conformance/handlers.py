"""The durable handlers of the conformance requirements, one per requirement id, written with
the official ``aws-durable-execution-sdk-python``. This file is shipped as ``conformance.py``
in one function's zip (tests/durable_conformance/test_conformance.py); ``handler`` picks the
requirement's handler from the execution's name (``<requirement>-<suffix>``).

The event every handler gets is the requirements' ``{"Input": ...}``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
from collections.abc import Callable
from typing import Any

import boto3
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    CallbackConfig,
    ChildConfig,
    CompletionConfig,
    Duration,
    InvokeConfig,
    JitterStrategy,
    MapConfig,
    NestingType,
    ParallelBranch,
    ParallelConfig,
    StepConfig,
    StepSemantics,
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.context import durable_with_child_context
from aws_durable_execution_sdk_python.plugin import DurableInstrumentationPlugin
from aws_durable_execution_sdk_python.retries import (
    RetryDecision,
    RetryPresets,
    RetryStrategyConfig,
    create_retry_strategy,
)
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitStrategyConfig,
    create_wait_strategy,
)

HANDLERS: dict[str, Callable[[Any, Any], Any]] = {}


def requirement(rid: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the durable handler of requirement ``rid``."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        HANDLERS[rid] = durable_execution(func, **options)
        return func

    return register


def handler(event: Any, context: Any) -> Any:
    """The function's entry point: the execution name names the requirement."""
    CURRENT["arn"] = event["DurableExecutionArn"]
    name = event["DurableExecutionArn"].split("/durable-execution/")[1].split("/")[0]
    return HANDLERS[name.rsplit("-", 1)[0].replace("_", "-")](event, context)


NO_RETRY = StepConfig(retry_strategy=RetryPresets.none())


def retry(attempts: int, delay: int = 1, backoff: float = 2.0) -> StepConfig:
    strategy = create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=attempts,
            initial_delay=Duration.from_seconds(delay),
            backoff_rate=backoff,
            jitter_strategy=JitterStrategy.NONE,
        )
    )
    return StepConfig(retry_strategy=strategy)


def crash() -> None:
    """End the runtime process at once, as a crash would (Runtime.ExitError)."""
    os._exit(1)


#: The execution the current invocation runs (set by ``handler``).
CURRENT: dict[str, str] = {}


def crash_once_recorded(event_type: str) -> None:
    """On the execution's first invocation only: once its history holds ``event_type`` (the
    SDK checkpoints in the background), crash. Later invocations go on."""
    client = boto3.client("lambda")
    arn = CURRENT["arn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = client.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        kinds = [e["EventType"] for e in events]
        if "InvocationCompleted" in kinds:
            return
        if event_type in kinds:
            crash()
        time.sleep(0.05)


class TransientError(Exception):
    pass


class Upper(SerDes[Any]):
    """Serializes strings upper-cased (every string value of a structure too)."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(_upper(value))

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return json.loads(data)


class RawUpper(SerDes[Any]):
    """Serializes a string as itself upper-cased (no JSON quoting)."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return str(value).upper()

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return data


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [_upper(v) for v in value]
    if isinstance(value, dict):
        return {k: _upper(v) for k, v in value.items()}
    return value


class Wrapped(SerDes[Any]):
    """``v`` is stored as ``wrapped:<v as JSON>`` and read back as ``v``."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return "wrapped:" + (value if isinstance(value, str) else json.dumps(value))

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return data.removeprefix("wrapped:")


class OpSerde(SerDes[Any]):
    """A batch result stored as ``OPSERDE:<results joined by commas>``."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        if not hasattr(value, "get_results"):  # an item (no item serdes of its own)
            return json.dumps(value)
        return "OPSERDE:" + ",".join(str(r) for r in value.get_results())

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        if not data.startswith("OPSERDE:"):
            return json.loads(data)
        from aws_durable_execution_sdk_python.concurrency.models import (
            BatchItem,
            BatchItemStatus,
            BatchResult,
            CompletionReason,
        )

        items = [
            BatchItem(index=i, status=BatchItemStatus.SUCCEEDED, result=r)
            for i, r in enumerate(data.removeprefix("OPSERDE:").split(","))
        ]
        return BatchResult(all=items, completion_reason=CompletionReason.ALL_COMPLETED)


def projection(batch: Any, *members: str) -> dict[str, Any]:
    values = {
        "completionReason": batch.completion_reason.value,
        "status": batch.status.value,
        "successCount": batch.success_count,
        "failureCount": batch.failure_count,
        "totalCount": batch.total_count,
    }
    return {m: values[m] for m in members}


def fail(message: str = "failed") -> Any:
    raise RuntimeError(message)


# --------------------------------------------------------------------------------- 1: steps


@requirement("1-1")
def step_basic(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(lambda _: f"Hello, {event['Input']}!")


@requirement("1-2")
def step_named(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(lambda _: f"Hello, {event['Input']}!", name="custom_step_name")


@requirement("1-3")
def step_sequence(event: Any, ctx: DurableContext) -> Any:
    first = ctx.step(lambda _: "first")
    return ctx.step(lambda _: f"{first}_second")


@requirement("1-4")
def step_object(event: Any, ctx: DurableContext) -> Any:
    data = event["Input"]
    user = {"name": data["name"], "tags": data["tags"]}
    return ctx.step(lambda _: {"user": user, "count": len(data["tags"])})


@requirement("1-5")
def step_none(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(lambda _: None)


@requirement("1-6")
def step_serdes(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(lambda _: event["Input"], config=StepConfig(serdes=Upper()))


@requirement("1-7")
def step_logger(event: Any, ctx: DurableContext) -> Any:
    def greet(step: Any) -> str:
        step.logger.info(f"Greeting step started for: {event['Input']}")
        greeting = f"Hello, {event['Input']}!"
        step.logger.info(f"Greeting step completed with: {greeting}")
        return greeting

    return ctx.step(greet)


@requirement("1-8")
def step_then_wait(event: Any, ctx: DurableContext) -> Any:
    result = ctx.step(lambda _: "computed")
    ctx.wait(Duration.from_seconds(2))
    return result


@requirement("1-9")
def step_cached(event: Any, ctx: DurableContext) -> Any:
    def once(step: Any) -> str:
        print("step executed")
        return "cached_value"

    result = ctx.step(once)
    ctx.wait(Duration.from_seconds(1))
    return result


@requirement("1-10")
def step_failure_cached(event: Any, ctx: DurableContext) -> Any:
    def failing(step: Any) -> None:
        print("step executed")
        raise RuntimeError("permanent failure")

    with contextlib.suppress(Exception):
        ctx.step(failing, config=NO_RETRY)
    ctx.wait(Duration.from_seconds(1))
    return None


def _flaky(until: int, result: Any = "Operation succeeded") -> Callable[[Any], Any]:
    def flaky(step: Any) -> Any:
        if step.attempt < until:
            raise RuntimeError(f"attempt {step.attempt} failed")
        return result

    return flaky


@requirement("1-11")
def step_retry(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(_flaky(2), config=retry(3))


@requirement("1-12")
def step_retry_exhausted(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(_flaky(99), config=retry(4, backoff=1.0))


@requirement("1-13")
def step_default_retry(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(_flaky(3))


@requirement("1-14")
def step_backoff(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(_flaky(3), config=retry(5, delay=2, backoff=3.0))


def _on_transient(retry_it: bool) -> Callable[[Exception, int], RetryDecision]:
    def strategy(error: Exception, attempts: int) -> RetryDecision:
        if isinstance(error, TransientError) == retry_it and attempts < 3:
            return RetryDecision.retry(Duration.from_seconds(1))
        return RetryDecision.no_retry()

    return strategy


@requirement("1-15")
def step_retry_transient(event: Any, ctx: DurableContext) -> Any:
    def func(step: Any) -> str:
        if step.attempt < 2:
            raise TransientError("try again")
        return "recovered"

    return ctx.step(func, config=StepConfig(retry_strategy=_on_transient(True)))


@requirement("1-16")
def step_no_retry_transient(event: Any, ctx: DurableContext) -> Any:
    def func(step: Any) -> str:
        raise TransientError("not retried")

    return ctx.step(func, config=StepConfig(retry_strategy=_on_transient(False)))


@requirement("1-17")
def step_at_most_once(event: Any, ctx: DurableContext) -> Any:
    def func(step: Any) -> str:
        step.logger.info(event["Input"])
        crash()
        return "unreachable"

    config = StepConfig(
        retry_strategy=RetryPresets.none(), step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY
    )
    return ctx.step(func, name="at_most_once_flaky_step", config=config)


@requirement("1-18")
def step_at_most_once_retried(event: Any, ctx: DurableContext) -> Any:
    def func(step: Any) -> str:
        step.logger.info(event["Input"])
        if step.attempt < 2:
            crash()
        return "succeeded on second attempt"

    config = StepConfig(
        retry_strategy=retry(3).retry_strategy,
        step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY,
    )
    return ctx.step(func, config=config)


@requirement("1-19")
def step_fails(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(lambda _: fail("always fails"), config=NO_RETRY)


@requirement("1-20")
def step_error_caught(event: Any, ctx: DurableContext) -> Any:
    with contextlib.suppress(Exception):
        ctx.step(lambda _: fail("caught"), config=NO_RETRY)
    return ctx.step(lambda _: "fallback_result")


# --------------------------------------------------------------------------------- 2: waits


@requirement("2-1")
def wait_basic(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_seconds(2))


@requirement("2-2")
def wait_named(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_seconds(2), name="custom_wait_name")


@requirement("2-3")
def wait_twice(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_seconds(2), name="wait-1")
    ctx.wait(Duration.from_seconds(2), name="wait-2")
    return {"completedWaits": 2}


@requirement("2-4")
def wait_minutes(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_minutes(1))


@requirement("2-5")
def wait_hours(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_hours(1))


# ------------------------------------------------------------------------ 3: child contexts
# Child bodies are named functions (``durable_with_child_context``): the context takes the
# function's name, as the requirements' histories show.


def _echo(value: Any) -> Callable[[Any], Any]:
    return lambda _: value


def replay_logging(c: DurableContext) -> Any:
    """The context's logger, logging during replays too (so a re-run shows in the logs)."""
    return c.logger.with_is_replaying(lambda: False)


@durable_with_child_context
def echo_child(c: DurableContext, value: Any) -> Any:
    return c.step(_echo(value))


@durable_with_child_context
def two_steps(c: DurableContext, value: Any) -> Any:
    first = c.step(_echo(value))
    return c.step(_echo(first))


@durable_with_child_context
def failing_step_child(c: DurableContext) -> Any:
    return c.step(lambda _: fail(), config=NO_RETRY)


@durable_with_child_context
def outer_child(c: DurableContext, value: Any) -> Any:
    c.step(_echo(value))
    return c.run_in_child_context(echo_child(value))


@durable_with_child_context
def retrying_child(c: DurableContext, value: Any, until: int, attempts: int) -> Any:
    return c.step(_flaky(until, value), config=retry(attempts))


@durable_with_child_context
def step_wait_child(c: DurableContext, value: Any) -> Any:
    result = c.step(_echo(value))
    c.wait(Duration.from_seconds(1))
    return result


@durable_with_child_context
def large_child(c: DurableContext, value: Any) -> Any:
    replay_logging(c).info(value)
    small = c.step(_echo("x"))
    return small * (300 * 1024)


@durable_with_child_context
def wait_child(c: DurableContext, value: Any) -> Any:
    c.wait(Duration.from_seconds(1))
    return value


@durable_with_child_context
def raising_child(c: DurableContext) -> Any:
    raise RuntimeError("thrown in the child")


@durable_with_child_context
def none_child(c: DurableContext) -> Any:
    return None


@durable_with_child_context
def logging_child(c: DurableContext, value: Any) -> Any:
    replay_logging(c).info(value)
    return value


@requirement("3-1")
def child_basic(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(echo_child(event["Input"]))


@requirement("3-2")
def child_named(event: Any, ctx: DurableContext) -> Any:
    data = event["Input"]
    return ctx.run_in_child_context(lambda c: c.step(_echo(data["value"])), name=data["name"])


@requirement("3-3")
def child_steps(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(two_steps(event["Input"]))


@requirement("3-4")
def child_fails(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(failing_step_child())


@requirement("3-5")
def child_fails_caught(event: Any, ctx: DurableContext) -> Any:
    with contextlib.suppress(Exception):
        ctx.run_in_child_context(failing_step_child())
    return ctx.step(_echo(event["Input"]))


@requirement("3-6")
def child_nested(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(outer_child(event["Input"]))


@requirement("3-7")
def child_retry(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(retrying_child(event["Input"], 2, 3))


@requirement("3-8")
def child_retry_exhausted(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(retrying_child(None, 99, 2))


@requirement("3-9")
def child_cached(event: Any, ctx: DurableContext) -> Any:
    result = ctx.run_in_child_context(echo_child(event["Input"]))
    ctx.wait(Duration.from_seconds(1))
    return result


@requirement("3-10")
def child_step_wait(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(step_wait_child(event["Input"]))


@requirement("3-11")
def child_large(event: Any, ctx: DurableContext) -> Any:
    result = ctx.run_in_child_context(large_child(event["Input"]))
    ctx.wait(Duration.from_seconds(1))
    return len(result)


@durable_with_child_context
def interrupted_child(c: DurableContext, value: Any) -> Any:
    def func(step: Any) -> Any:
        crash_once_recorded("StepStarted")
        return value

    return c.step(func)


@requirement("3-12")
def child_interrupted(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(interrupted_child(event["Input"]))


@requirement("3-13")
def child_wait(event: Any, ctx: DurableContext) -> Any:
    ctx.run_in_child_context(wait_child(event["Input"]))
    return ctx.step(_echo(event["Input"]))


@requirement("3-14")
def child_serdes(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(
        echo_child(event["Input"]), config=ChildConfig(serdes=RawUpper())
    )


@requirement("3-15")
def child_raises(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(raising_child())


@requirement("3-16")
def child_none(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(none_child())


@requirement("3-17")
def child_logger(event: Any, ctx: DurableContext) -> Any:
    result = ctx.run_in_child_context(logging_child(event["Input"]))
    ctx.wait(Duration.from_seconds(1))
    return result


@requirement("3-18")
def child_then_more(event: Any, ctx: DurableContext) -> Any:
    ctx.run_in_child_context(step_wait_child(event["Input"]))
    result = ctx.step(_echo(event["Input"]))
    ctx.wait(Duration.from_seconds(1))
    return result


# ------------------------------------------------------------------------------ 4: callbacks


class JsonSerdes(SerDes[Any]):
    """Plain JSON both ways."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return json.loads(data)


class Stamped(JsonSerdes):
    """A JSON object whose ISO ``timestamp`` is read as epoch seconds."""

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        value = json.loads(data)
        stamp = value["timestamp"].replace("Z", "+00:00")
        value["timestamp"] = int(datetime.datetime.fromisoformat(stamp).timestamp())
        return value


class Number(JsonSerdes):
    """A payload read as a number."""

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return int(json.loads(data))


def _callback(ctx: DurableContext, name: Any, **config: Any) -> Any:
    return ctx.create_callback(name=name, config=CallbackConfig(**config))


@requirement("4-1")
def callback_basic(event: Any, ctx: DurableContext) -> Any:
    return _callback(ctx, event["Input"]).result()


@requirement("4-2")
def callback_named(event: Any, ctx: DurableContext) -> Any:
    return _callback(ctx, "approval").result()


@requirement("4-3")
def callback_timeout(event: Any, ctx: DurableContext) -> Any:
    return _callback(ctx, event["Input"], timeout=Duration.from_seconds(5)).result()


@requirement("4-4")
def callback_heartbeat_timeout(event: Any, ctx: DurableContext) -> Any:
    return _callback(ctx, event["Input"], heartbeat_timeout=Duration.from_seconds(5)).result()


@requirement("4-5")
def callback_heartbeat(event: Any, ctx: DurableContext) -> Any:
    return _callback(ctx, event["Input"], heartbeat_timeout=Duration.from_seconds(10)).result()


@requirement("4-6")
def callback_failure(event: Any, ctx: DurableContext) -> Any:
    return _callback(ctx, event["Input"]).result()


@requirement("4-7")
def callback_step_failure(event: Any, ctx: DurableContext) -> Any:
    callback = _callback(ctx, event["Input"])
    ctx.step(_echo("between"))
    return callback.result()


@requirement("4-8")
def callback_step_timeout(event: Any, ctx: DurableContext) -> Any:
    callback = _callback(ctx, event["Input"], timeout=Duration.from_seconds(5))
    ctx.step(_echo("between"))
    return callback.result()


def _callback_wait(event: Any, ctx: DurableContext, wait: int, **config: Any) -> Any:
    callback = _callback(ctx, event["Input"], **config)
    ctx.wait(Duration.from_seconds(wait))
    return callback.result()


requirement("4-9")(lambda event, ctx: _callback_wait(event, ctx, 5))
requirement("4-10")(lambda event, ctx: _callback_wait(event, ctx, 5))
requirement("4-11")(lambda e, c: _callback_wait(e, c, 6, timeout=Duration.from_seconds(3)))


@requirement("4-12")
def callback_then_wait(event: Any, ctx: DurableContext) -> Any:
    result = _callback(ctx, event["Input"]).result()
    ctx.wait(Duration.from_seconds(2))
    return result


@requirement("4-13")
def callback_failure_caught(event: Any, ctx: DurableContext) -> Any:
    try:
        message = _callback(ctx, event["Input"]).result()
    except Exception as exc:
        message = f"callback failed: {exc}"
    ctx.wait(Duration.from_seconds(2))
    return message


@requirement("4-14")
def callback_timeout_caught(event: Any, ctx: DurableContext) -> Any:
    try:
        message = _callback(ctx, event["Input"], timeout=Duration.from_seconds(3)).result()
    except Exception as exc:
        message = f"callback timed out: {exc}"
    ctx.wait(Duration.from_seconds(2))
    return message


@requirement("4-15")
def callback_typed(event: Any, ctx: DurableContext) -> Any:
    return {"received": _callback(ctx, event["Input"], serdes=Stamped()).result()}


@requirement("4-16")
def callback_number(event: Any, ctx: DurableContext) -> Any:
    count = _callback(ctx, event["Input"], serdes=Number()).result()
    return {"count": count, "doubled": count * 2}


@requirement("4-17")
def callbacks_in_turn(event: Any, ctx: DurableContext) -> Any:
    first = _callback(ctx, event["Input"][0]).result()
    second = _callback(ctx, event["Input"][1]).result()
    return [first, second]


@requirement("4-18")
def callbacks_together(event: Any, ctx: DurableContext) -> Any:
    a, b = _callback(ctx, event["Input"][0]), _callback(ctx, event["Input"][1])
    return [a.result(), b.result()]


@requirement("4-19")
def callbacks_reversed(event: Any, ctx: DurableContext) -> Any:
    a, b = _callback(ctx, event["Input"][0]), _callback(ctx, event["Input"][1])
    second = b.result()
    return [a.result(), second]


# ------------------------------------------------------------------------ 5: chained invokes
# Targets (functions of their own, from this zip): TARGET_ECHO answers its input (a
# ``{"blob": ...}`` input with the blob's size), TARGET_FAIL raises.


def _target(kind: str) -> str:
    return os.environ[f"TARGET_{kind}"]


class UpperPayload(JsonSerdes):
    """Sends string values upper-cased."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(_upper(value))


class UpperResult(JsonSerdes):
    """Reads the result upper-cased."""

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return _upper(json.loads(data))


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
    value = ctx.step(_echo("from-step"))
    return ctx.invoke(_target("ECHO"), value)


@requirement("5-12")
def invoke_then_step(event: Any, ctx: DurableContext) -> Any:
    value = ctx.invoke(_target("ECHO"), "from-invoke")
    return ctx.step(_echo(value))


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


# ---------------------------------------------------------------------- 7: wait for callback


def _submit(callback_id: str, context: Any) -> None:
    """A submitter that hands the id on to nobody (the test completes the callback)."""


def _wait_callback(ctx: DurableContext, name: Any, **config: Any) -> Any:
    return ctx.wait_for_callback(_submit, name=name, config=WaitForCallbackConfig(**config))


requirement("7-1")(lambda event, ctx: _wait_callback(ctx, event["Input"]))
requirement("7-2")(lambda event, ctx: _wait_callback(ctx, "approval"))
requirement("7-3")(lambda event, ctx: ctx.wait_for_callback(lambda cid, c: None))
requirement("7-4")(lambda event, ctx: _wait_callback(ctx, event["Input"]))
requirement("7-5")(
    lambda event, ctx: _wait_callback(ctx, event["Input"], timeout=Duration.from_seconds(3))
)


@requirement("7-6")
def wait_callback_failure_caught(event: Any, ctx: DurableContext) -> Any:
    try:
        return _wait_callback(ctx, event["Input"])
    except Exception:
        return "recovered"


@requirement("7-7")
def wait_callback_submitter_fails(event: Any, ctx: DurableContext) -> Any:
    def submitter(callback_id: str, context: Any) -> None:
        raise RuntimeError("submitter failed")

    config = WaitForCallbackConfig(retry_strategy=retry(2).retry_strategy)
    return ctx.wait_for_callback(submitter, name=event["Input"], config=config)


@durable_with_child_context
def wrapper(c: DurableContext, name: Any) -> Any:
    return _wait_callback(c, name)


@requirement("7-8")
def wait_callback_in_child(event: Any, ctx: DurableContext) -> Any:
    return ctx.run_in_child_context(wrapper(event["Input"]))


@requirement("7-9")
def wait_callback_twice(event: Any, ctx: DurableContext) -> Any:
    _wait_callback(ctx, "first")
    return _wait_callback(ctx, "second")


@requirement("7-10")
def wait_callback_after_wait_and_step(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_seconds(1))
    ctx.step(_echo({"fixed": True}))
    return _wait_callback(ctx, event["Input"])


@requirement("7-11")
def wait_callback_json(event: Any, ctx: DurableContext) -> Any:
    return _wait_callback(ctx, event["Input"], serdes=JsonSerdes())["status"]


requirement("7-12")(
    lambda e, ctx: _wait_callback(ctx, e["Input"], heartbeat_timeout=Duration.from_seconds(5))
)
requirement("7-13")(
    lambda e, ctx: _wait_callback(ctx, e["Input"], heartbeat_timeout=Duration.from_seconds(10))
)


@requirement("7-14")
def wait_callback_timeout_caught(event: Any, ctx: DurableContext) -> Any:
    try:
        return _wait_callback(ctx, event["Input"], timeout=Duration.from_seconds(3))
    except Exception:
        return "timed-out-handled"


requirement("7-15")(lambda event, ctx: _wait_callback(ctx, event["Input"]))


# ------------------------------------------------------------------- 6: wait for condition


def _poll(until: Callable[[Any], bool], delay: int = 1, attempts: int = 60) -> Any:
    return create_wait_strategy(
        WaitStrategyConfig(
            should_continue_polling=until,
            max_attempts=attempts,
            initial_delay=Duration.from_seconds(delay),
            backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE,
        )
    )


def _count(state: int, _: Any) -> int:
    return state + 1


@requirement("6-1")
def condition_basic(event: Any, ctx: DurableContext) -> Any:
    limit = event["Input"]
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: s < limit), initial_state=0)
    return ctx.wait_for_condition(_count, config)


@requirement("6-2")
def condition_immediate(event: Any, ctx: DurableContext) -> Any:
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: s < 5), initial_state=5)
    return ctx.wait_for_condition(lambda s, _: s, config)


@requirement("6-3")
def condition_named(event: Any, ctx: DurableContext) -> Any:
    limit = event["Input"]
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: s < limit), initial_state=0)
    return ctx.wait_for_condition(_count, config, name="poll-status")


@requirement("6-4")
def condition_seeded(event: Any, ctx: DurableContext) -> Any:
    limit = event["Input"]
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: s < limit), initial_state=5)
    return ctx.wait_for_condition(_count, config)


@requirement("6-5")
def condition_fixed_delay(event: Any, ctx: DurableContext) -> Any:
    limit = event["Input"]
    config = WaitForConditionConfig(
        wait_strategy=_poll(lambda s: s < limit, delay=2), initial_state=0
    )
    return ctx.wait_for_condition(_count, config)


@requirement("6-6")
def condition_exhausted(event: Any, ctx: DurableContext) -> Any:
    config = WaitForConditionConfig(
        wait_strategy=_poll(lambda s: True, attempts=3), initial_state=0
    )
    return ctx.wait_for_condition(_count, config)


@requirement("6-7")
def condition_raises(event: Any, ctx: DurableContext) -> Any:
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: True), initial_state=0)
    return ctx.wait_for_condition(lambda s, _: fail("check failed"), config)


@requirement("6-8")
def condition_raises_caught(event: Any, ctx: DurableContext) -> Any:
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: True), initial_state=0)
    try:
        return ctx.wait_for_condition(lambda s, _: fail("check failed"), config)
    except Exception:
        return "recovered"


@requirement("6-9")
def condition_object(event: Any, ctx: DurableContext) -> Any:
    def check(state: dict[str, Any], _: Any) -> dict[str, Any]:
        attempts = state["attempts"] + 1
        return {"status": "DONE" if attempts >= 2 else "PENDING", "attempts": attempts}

    config = WaitForConditionConfig(
        wait_strategy=_poll(lambda s: s["status"] == "PENDING"),
        initial_state={"status": "PENDING", "attempts": 0},
    )
    return ctx.wait_for_condition(check, config)


@requirement("6-10")
def condition_none(event: Any, ctx: DurableContext) -> Any:
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: False), initial_state=0)
    return ctx.wait_for_condition(lambda s, _: None, config)


class Encoded(SerDes[str]):
    """A string state stored as ``enc:<state>``."""

    def serialize(self, value: str, serdes_context: SerDesContext) -> str:
        return json.dumps("enc:" + value)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> str:
        return str(json.loads(data)).removeprefix("enc:")


@requirement("6-11")
def condition_serdes(event: Any, ctx: DurableContext) -> Any:
    config = WaitForConditionConfig(
        wait_strategy=_poll(lambda s: len(s) < 2), initial_state="", serdes=Encoded()
    )
    return ctx.wait_for_condition(lambda s, _: s + "x", config)


@requirement("6-12")
def condition_then_step(event: Any, ctx: DurableContext) -> Any:
    limit = event["Input"]
    config = WaitForConditionConfig(wait_strategy=_poll(lambda s: s < limit), initial_state=0)
    value = ctx.wait_for_condition(_count, config)
    return ctx.step(lambda _: value * 10)


@requirement("6-13")
def condition_twice(event: Any, ctx: DurableContext) -> Any:
    first = ctx.wait_for_condition(
        _count, WaitForConditionConfig(wait_strategy=_poll(lambda s: s < 2), initial_state=0)
    )
    return ctx.wait_for_condition(
        _count, WaitForConditionConfig(wait_strategy=_poll(lambda s: s < 4), initial_state=first)
    )


# -------------------------------------------------------------------------------- 8: parallel


def _branch(value: Any) -> Callable[[DurableContext], Any]:
    return lambda c: value


def _step_branch(value: Any) -> Callable[[DurableContext], Any]:
    return lambda c: c.step(_echo(value))


def _failing_branch(c: DurableContext) -> Any:
    raise RuntimeError("branch failed")


def _sequential(**completion: Any) -> ParallelConfig:
    return ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


@requirement("8-1")
def parallel_basic(event: Any, ctx: DurableContext) -> Any:
    branches = [_step_branch("task-1"), _step_branch("task-2")]
    return ctx.parallel(branches, name="parallel", config=_sequential()).get_results()


@requirement("8-2")
def parallel_unnamed(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("alpha"), _branch("beta")]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-3")
def parallel_named_branches(event: Any, ctx: DurableContext) -> Any:
    branches = [
        ParallelBranch(_branch("one"), name="one"),
        ParallelBranch(_branch("two"), name="two"),
    ]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-4")
def parallel_types(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("hello"), _branch(42), _branch({"k": "v"})]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-5")
def parallel_empty(event: Any, ctx: DurableContext) -> Any:
    return ctx.parallel([], config=_sequential()).get_results()


@requirement("8-6")
def parallel_fail_fast(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("ok"), _failing_branch, _branch("never")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=0))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-7")
def parallel_rethrow(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _branch("never")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=0))
    batch.throw_if_error()
    return batch.get_results()


@requirement("8-8")
def parallel_min_successful(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _branch("b"), _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(min_successful=2))
    return projection(batch, "completionReason", "successCount", "totalCount")


@requirement("8-9")
def parallel_tolerated(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=1))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-10")
def parallel_tolerance_exceeded(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=1))
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("8-11")
def parallel_concurrent(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("r0"), _branch("r1"), _branch("r2")]
    return ctx.parallel(branches, config=ParallelConfig(max_concurrency=2)).get_results()


@requirement("8-12")
def parallel_flat(event: Any, ctx: DurableContext) -> Any:
    branches = [_step_branch("fa"), _step_branch("fb")]
    config = ParallelConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return ctx.parallel(branches, config=config).get_results()


@requirement("8-13")
def parallel_percentage_exceeded(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_percentage=25))
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("8-14")
def parallel_wait(event: Any, ctx: DurableContext) -> Any:
    def waiting(c: DurableContext) -> Any:
        c.wait(Duration.from_seconds(2))
        return "b1"

    branches = [_step_branch("b0"), waiting]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-15")
def parallel_item_serdes(event: Any, ctx: DurableContext) -> Any:
    config = ParallelConfig(max_concurrency=1, item_serdes=Wrapped())
    return ctx.parallel([_branch("x"), _branch("y")], config=config).get_results()


@requirement("8-16")
def parallel_all_fail(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _failing_branch]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=3))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-17")
def parallel_min_not_reached(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(min_successful=3))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-18")
def parallel_both_limits(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(min_successful=2, tolerated_failure_count=1))
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("8-19")
def parallel_zero_concurrency(event: Any, ctx: DurableContext) -> Any:
    return ctx.parallel([_branch("a")], config=ParallelConfig(max_concurrency=0)).get_results()


@requirement("8-20")
def parallel_accessors(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=1))
    return {
        "hasFailure": batch.has_failure,
        "successCount": len(batch.succeeded()),
        "failureCount": len(batch.failed()),
        "errorCount": len([e for e in batch.get_errors() if e is not None]),
    }


@requirement("8-21")
def parallel_nested(event: Any, ctx: DurableContext) -> Any:
    def inner(c: DurableContext) -> Any:
        branches = [_step_branch("i1"), _step_branch("i2")]
        return c.parallel(branches, config=_sequential()).get_results()

    return ctx.parallel([inner], config=_sequential()).get_results()


@requirement("8-22")
def parallel_percentage_equal(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _branch("b"), _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_percentage=25))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


# ------------------------------------------------------------------------------------- 9: map


def _map_config(**completion: Any) -> MapConfig[Any]:
    return MapConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def _item_fails_at(index: int | set[int], value: Any = "ok") -> Callable[..., Any]:
    failing = {index} if isinstance(index, int) else index

    def func(c: DurableContext, item: Any, i: int, items: Any) -> Any:
        if i in failing:
            raise RuntimeError(f"item {i} failed")
        return value

    return func


@requirement("9-1")
def map_basic(event: Any, ctx: DurableContext) -> Any:
    def greet(c: DurableContext, item: Any, i: int, items: Any) -> Any:
        return c.step(_echo(f"Hello, {item}!"))

    return ctx.map(event["Input"], greet, name="map", config=_map_config()).get_results()


@requirement("9-2")
def map_unnamed(event: Any, ctx: DurableContext) -> Any:
    return ctx.map(event["Input"], lambda c, x, i, xs: x * 2, config=_map_config()).get_results()


@requirement("9-3")
def map_index(event: Any, ctx: DurableContext) -> Any:
    return ctx.map(event["Input"], lambda c, x, i, xs: x + i, config=_map_config()).get_results()


@requirement("9-4")
def map_empty(event: Any, ctx: DurableContext) -> Any:
    return ctx.map(event["Input"], lambda c, x, i, xs: x, config=_map_config()).get_results()


@requirement("9-5")
def map_fail_fast(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2, 3], _item_fails_at(1), config=_map_config(tolerated_failure_count=0))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("9-6")
def map_rethrow(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2], _item_fails_at(0), config=_map_config(tolerated_failure_count=0))
    batch.throw_if_error()
    return batch.get_results()


@requirement("9-7")
def map_min_successful(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2, 3, 4], _item_fails_at(-1), config=_map_config(min_successful=2))
    return projection(batch, "completionReason", "successCount", "totalCount")


@requirement("9-8")
def map_tolerated(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2, 3], _item_fails_at(1), config=_map_config(tolerated_failure_count=1))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("9-9")
def map_tolerance_exceeded(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map(
        [1, 2, 3], _item_fails_at({0, 1}), config=_map_config(tolerated_failure_count=1)
    )
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("9-10")
def map_percentage_exceeded(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map(
        [1, 2, 3, 4], _item_fails_at({0, 1}), config=_map_config(tolerated_failure_percentage=25)
    )
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("9-11")
def map_concurrent(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=3)
    return ctx.map([0, 1, 2], lambda c, x, i, xs: f"r{x}", config=config).get_results()


@requirement("9-12")
def map_flat(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return ctx.map(
        ["a", "b"], lambda c, x, i, xs: c.step(_echo(f"f{x}")), config=config
    ).get_results()


@requirement("9-13")
def map_item_namer(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, item_namer=lambda x, i: f"item-{x}")
    return ctx.map(event["Input"], lambda c, x, i, xs: x * 10, config=config).get_results()


@requirement("9-14")
def map_item_serdes(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, item_serdes=Wrapped())
    return ctx.map(["x", "y"], lambda c, x, i, xs: x.upper(), config=config).get_results()


@requirement("9-15")
def map_wait(event: Any, ctx: DurableContext) -> Any:
    def func(c: DurableContext, item: Any, i: int, items: Any) -> Any:
        if i == 1:
            c.wait(Duration.from_seconds(1))
        return c.step(_echo(f"r{i}"))

    return ctx.map([0, 1], func, config=_map_config()).get_results()


@requirement("9-16")
def map_large(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([0, 1, 2, 3], lambda c, x, i, xs: str(x) * (70 * 1024), config=_map_config())
    return projection(batch, "successCount", "totalCount")


@requirement("9-17")
def map_then_wait(event: Any, ctx: DurableContext) -> Any:
    results = ctx.map(["a", "b"], lambda c, x, i, xs: x.upper(), config=_map_config())
    ctx.wait(Duration.from_seconds(1))
    return results.get_results()


@requirement("9-18")
def map_failed_then_wait(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2], _item_fails_at(1), config=_map_config(tolerated_failure_count=1))
    ctx.wait(Duration.from_seconds(1))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("9-19")
def map_operation_serdes(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, serdes=OpSerde())
    return ctx.map(["x", "y"], lambda c, x, i, xs: x.upper(), config=config).get_results()


@requirement("9-20")
def map_operation_serdes_wait(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, serdes=OpSerde())
    batch = ctx.map(["x", "y"], lambda c, x, i, xs: x.upper(), config=config)
    ctx.wait(Duration.from_seconds(1))
    return batch.get_results()


# ---------------------------------------------------------------------------------- 10: plugins


class Printer(DurableInstrumentationPlugin):
    """Prints one JSON line per hook (the requirements check them in the logs), each with the
    execution's ARN; operation and attempt hooks only for steps."""

    def __init__(self, tag: str, arn: str, faulty: bool = False) -> None:
        self.tag, self.arn, self.faulty = tag, arn, faulty

    def _emit(self, hook: str, **fields: Any) -> None:
        record = {"plugin": self.tag, "hook": hook, "durableExecutionArn": self.arn, **fields}
        print(json.dumps(record), flush=True)
        if self.faulty:
            raise RuntimeError(f"{hook} failed")

    def on_invocation_start(self, info: Any) -> None:
        self._emit("invocation-start", first=info.is_first_invocation)

    def on_invocation_end(self, info: Any) -> None:
        self._emit("invocation-end", status=info.status.value)

    def on_operation_start(self, info: Any) -> None:
        if info.operation_type.value == "STEP":
            self._emit("operation-start", op=info.operation_id)

    def on_operation_end(self, info: Any) -> None:
        if info.operation_type.value == "STEP":
            self._emit("operation-end", op=info.operation_id, status=info.status.value)

    def on_user_function_start(self, info: Any) -> None:
        if info.operation_type.value == "STEP":
            self._emit("attempt-start", n=info.attempt, op=info.operation_id)

    def on_user_function_end(self, info: Any) -> None:
        if info.operation_type.value == "STEP":
            fields = {"n": info.attempt, "outcome": info.outcome.value, "op": info.operation_id}
            self._emit("attempt-end", **fields)


class Factory:
    def __init__(self, tag: str = "CONFPLUGIN", faulty: bool = False) -> None:
        self.tag, self.faulty = tag, faulty

    def create_plugin(self, info: Any) -> Printer:
        return Printer(self.tag, info.execution_arn or "", self.faulty)


def _greeting(event: Any, ctx: DurableContext) -> Any:
    def greet(step: Any) -> str:
        step.logger.info(f"Greeting step running for: {event['Input']}")
        return f"Hello, {event['Input']}!"

    return ctx.step(greet)


for _rid, _plugins in {
    "10-1": [Factory()],
    "10-2": [Factory()],
    "10-4": [Factory("CONFPLUGIN-FAULTY", faulty=True)],
    "10-5": [Factory("CONFPLUGIN-A"), Factory("CONFPLUGIN-B")],
}.items():
    requirement(_rid, plugins=_plugins)(_greeting)


@requirement("10-3", plugins=[Factory()])
def plugin_attempts(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(_flaky(2), config=retry(3))


@requirement("10-6", plugins=[Factory()])
def plugin_wait(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_seconds(2))


@requirement("10-7", plugins=[Factory()])
def plugin_failure(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(lambda _: fail(), config=NO_RETRY)
