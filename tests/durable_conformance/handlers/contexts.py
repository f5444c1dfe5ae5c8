"""The conformance handlers of child contexts (3-x)."""

from __future__ import annotations

import contextlib
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import (
    ChildConfig,
    Duration,
)
from aws_durable_execution_sdk_python.context import durable_with_child_context

from .common import (
    NO_RETRY,
    RawUpper,
    crash_once_recorded,
    echo,
    fail,
    flaky,
    replay_logging,
    requirement,
    retry,
)

# Child bodies are named functions (``durable_with_child_context``): the context takes the
# function's name, as the requirements' histories show.


@durable_with_child_context
def echo_child(c: DurableContext, value: Any) -> Any:
    return c.step(echo(value))


@durable_with_child_context
def two_steps(c: DurableContext, value: Any) -> Any:
    first = c.step(echo(value))
    return c.step(echo(first))


@durable_with_child_context
def failing_step_child(c: DurableContext) -> Any:
    return c.step(lambda _: fail(), config=NO_RETRY)


@durable_with_child_context
def outer_child(c: DurableContext, value: Any) -> Any:
    c.step(echo(value))
    return c.run_in_child_context(echo_child(value))


@durable_with_child_context
def retrying_child(c: DurableContext, value: Any, until: int, attempts: int) -> Any:
    return c.step(flaky(until, value), config=retry(attempts))


@durable_with_child_context
def step_wait_child(c: DurableContext, value: Any) -> Any:
    result = c.step(echo(value))
    c.wait(Duration.from_seconds(1))
    return result


@durable_with_child_context
def large_child(c: DurableContext, value: Any) -> Any:
    replay_logging(c).info(value)
    small = c.step(echo("x"))
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
    return ctx.run_in_child_context(lambda c: c.step(echo(data["value"])), name=data["name"])


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
    return ctx.step(echo(event["Input"]))


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
    return ctx.step(echo(event["Input"]))


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
    result = ctx.step(echo(event["Input"]))
    ctx.wait(Duration.from_seconds(1))
    return result
