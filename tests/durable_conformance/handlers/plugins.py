"""The conformance handlers of instrumentation plugins (10-x)."""

from __future__ import annotations

import json
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import (
    Duration,
)
from aws_durable_execution_sdk_python.plugin import DurableInstrumentationPlugin

from .common import (
    NO_RETRY,
    fail,
    flaky,
    requirement,
    retry,
)


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
    return ctx.step(flaky(2), config=retry(3))


@requirement("10-6", plugins=[Factory()])
def plugin_wait(event: Any, ctx: DurableContext) -> Any:
    ctx.wait(Duration.from_seconds(2))


@requirement("10-7", plugins=[Factory()])
def plugin_failure(event: Any, ctx: DurableContext) -> Any:
    return ctx.step(lambda _: fail(), config=NO_RETRY)
