"""What the conformance handlers share: the registry of handlers by requirement id, the
function's entry point, retry configurations, crashes, serializers and small helpers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import boto3
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    Duration,
    JitterStrategy,
    StepConfig,
)
from aws_durable_execution_sdk_python.retries import (
    RetryPresets,
    RetryStrategyConfig,
    create_retry_strategy,
)
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext

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
        return json.dumps(upper(value))

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return json.loads(data)


class RawUpper(SerDes[Any]):
    """Serializes a string as itself upper-cased (no JSON quoting)."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return str(value).upper()

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return data


def upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [upper(v) for v in value]
    if isinstance(value, dict):
        return {k: upper(v) for k, v in value.items()}
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


def flaky(until: int, result: Any = "Operation succeeded") -> Callable[[Any], Any]:
    def flaky(step: Any) -> Any:
        if step.attempt < until:
            raise RuntimeError(f"attempt {step.attempt} failed")
        return result

    return flaky


def echo(value: Any) -> Callable[[Any], Any]:
    return lambda _: value


def replay_logging(c: DurableContext) -> Any:
    """The context's logger, logging during replays too (so a re-run shows in the logs)."""
    return c.logger.with_is_replaying(lambda: False)


class JsonSerdes(SerDes[Any]):
    """Plain JSON both ways."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return json.loads(data)
