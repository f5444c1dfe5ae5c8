"""The conformance handlers of steps and waits (requirements 1-x, 2-x)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import (
    Duration,
    StepConfig,
    StepSemantics,
)
from aws_durable_execution_sdk_python.retries import (
    RetryDecision,
    RetryPresets,
)

from .common import (
    NO_RETRY,
    TransientError,
    Upper,
    crash,
    fail,
    flaky,
    requirement,
    retry,
)


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


@requirement("1-11")
def step_retry(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(flaky(2), config=retry(3))


@requirement("1-12")
def step_retry_exhausted(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(flaky(99), config=retry(4, backoff=1.0))


@requirement("1-13")
def step_default_retry(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(flaky(3))


@requirement("1-14")
def step_backoff(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(flaky(3), config=retry(5, delay=2, backoff=3.0))


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
