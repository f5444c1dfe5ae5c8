"""The conformance handlers of callbacks and wait-for-callback (4-x, 7-x)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import (
    CallbackConfig,
    Duration,
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.context import durable_with_child_context
from aws_durable_execution_sdk_python.serdes import SerDesContext

from .common import (
    JsonSerdes,
    echo,
    requirement,
    retry,
)


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
    ctx.step(echo("between"))
    return callback.result()


@requirement("4-8")
def callback_step_timeout(event: Any, ctx: DurableContext) -> Any:
    callback = _callback(ctx, event["Input"], timeout=Duration.from_seconds(5))
    ctx.step(echo("between"))
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
    ctx.step(echo({"fixed": True}))
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
