"""Chained invokes of durable executions: a CHAINED_INVOKE operation's start and its end
(docs/durable-functions.md).

The SDK's ``context.invoke(function, payload)`` checkpoints a CHAINED_INVOKE ``START`` with
``ChainedInvokeOptions.FunctionName`` and the payload; the engine (``events/durable_chained``)
then invokes the target and ends the operation with its result or error. What it needs to do
that again after a restart is kept in the execution's document (``doc["chained"][operation
id]``: the target, the payload, the tenant), so an invoke that had not ended when lambdad
stopped is started again (a durable target: the same child execution, found by its name).

Functions here change the document they are given and return the history events to record;
``DurableExecutions`` holds the lock and writes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from lambdad import errors

Op = dict[str, Any]
Doc = dict[str, Any]
Event = tuple[Op, str, dict[str, Any]]

#: The largest result a chained invoke takes back (1 MiB); a larger one fails it, in the SDK
#: local runner's words.
MAX_RESULT_BYTES = 1_048_576
RESULT_TOO_LARGE = (
    f"CHAINED_INVOKE output payload size must be less than or equal to {MAX_RESULT_BYTES} bytes."
)

#: The member the engine adds to a CHAINED_INVOKE START before it is checkpointed: what the
#: target resolved to (``ExecutedVersion``, and a durable target's child
#: ``DurableExecutionArn``), recorded in ``ChainedInvokeStarted`` as AWS records them.
RESOLVED = "lambdad:Resolved"

#: How each end is recorded: the status to event type.
_EVENTS = {
    "SUCCEEDED": "ChainedInvokeSucceeded",
    "FAILED": "ChainedInvokeFailed",
    "TIMED_OUT": "ChainedInvokeTimedOut",
    "STOPPED": "ChainedInvokeStopped",
}


def start(doc: Doc, op: Op, update: dict[str, Any], now: float) -> Event:
    """A CHAINED_INVOKE START: the target is kept for the engine; ``ChainedInvokeStarted``."""
    options = update.get("ChainedInvokeOptions") or {}
    payload = update.get("Payload")
    resolved = update.get(RESOLVED) or {}
    doc.setdefault("chained", {})[op["Id"]] = {
        "function": options["FunctionName"],
        "payload": payload if payload is not None else "{}",
        "tenant": options.get("TenantId"),
        "child": resolved.get("DurableExecutionArn"),
    }
    details: dict[str, Any] = {"FunctionName": options["FunctionName"]}
    if options.get("TenantId") is not None:
        details["TenantId"] = options["TenantId"]
    details["Input"] = {} if payload is None else {"Payload": payload}
    details.update(resolved)
    return op, "ChainedInvokeStarted", details


def open_invokes(doc: Doc) -> dict[str, dict[str, Any]]:
    """The chained invokes of the execution that have not ended, by operation id."""
    ops = {op["Id"]: op for op in doc["ops"]}
    return {
        op_id: target
        for op_id, target in doc.get("chained", {}).items()
        if ops.get(op_id, {}).get("Status") == "STARTED"
    }


def open_children(doc: Doc) -> list[str]:
    """The ARNs of the durable child executions the execution's open chained invokes started
    (StopDurableExecution of the caller stops them too)."""
    return [str(t["child"]) for t in open_invokes(doc).values() if t.get("child")]


def child_name(arn: str, op_id: str) -> str:
    """The name of the durable execution a chained invoke of a durable function starts (the
    caller's ARN, the operation's id): the same for the same operation of the same execution,
    so a restart finds it again."""
    digest = hashlib.sha256(f"{arn}\n{op_id}".encode()).hexdigest()
    return f"chained-{digest[:48]}"


def end(status: str, result: str | None, error: dict[str, Any] | None, op_id: str) -> Any:
    """The change (for ``DurableExecutions.settle``) that ends the chained invoke ``op_id``
    with ``status`` and its result or error; nothing when it has already ended."""

    def change(doc: Doc, ops: dict[str, Op], now: float) -> list[Event]:
        op = ops.get(op_id)
        if op is None or op["Type"] != "CHAINED_INVOKE":
            raise errors.ResourceNotFoundException(f"Chained invoke {op_id} does not exist")
        if op["Status"] != "STARTED" or doc["status"] != "RUNNING":
            return []
        details = op.setdefault("ChainedInvokeDetails", {})
        op["Status"] = status
        op["EndTimestamp"] = now
        doc.get("chained", {}).pop(op_id, None)
        if status == "SUCCEEDED":
            details["Result"] = result if result is not None else ""
            return [(op, _EVENTS[status], {"Result": {"Payload": details["Result"]}})]
        details["Error"] = error or {}
        return [(op, _EVENTS[status], {"Error": {"Payload": details["Error"]}})]

    return change
