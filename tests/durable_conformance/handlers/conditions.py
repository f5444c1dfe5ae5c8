"""The conformance handlers of wait-for-condition (6-x)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import (
    Duration,
    JitterStrategy,
)
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitStrategyConfig,
    create_wait_strategy,
)

from .common import (
    fail,
    requirement,
)


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
