"""Callbacks of durable executions: a CALLBACK operation's start, its completion by
SendDurableExecutionCallbackSuccess / Failure, its heartbeats, and its timeouts
(docs/durable-functions.md).

A callback's id names its execution and operation (base64 of ``[function, execution name,
operation id]``, in the pattern AWS's model gives ``CallbackId``), so a callback is found from
its id alone, in the caller's account and region. The callback's timers live beside the
operations in the execution's document (``doc["callbacks"][operation id]``: the absolute
``timeout`` and the ``heartbeat`` interval with the time of the ``beat`` before it): they are
durable like a wait's ``ScheduledEndTimestamp``, and ``due`` ends the callbacks whose time has
passed (``CallbackTimedOut``, with the errors the SDK's local runner gives: ``Callback.Timeout``
and ``Callback.Heartbeat``).

Functions here change the document they are given and return the history events to record;
``DurableExecutions`` holds the lock and writes.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from lambdad import errors

Op = dict[str, Any]
Doc = dict[str, Any]
#: A history event to record: the operation, the event type, its details.
Event = tuple[Op, str, dict[str, Any]]

TIMEOUT_ERROR = {"ErrorType": "Callback.Timeout", "ErrorMessage": "Callback timed out"}
HEARTBEAT_ERROR = {
    "ErrorType": "Callback.Heartbeat",
    "ErrorMessage": "Callback timed out on heartbeat",
}
#: AWS's words for a callback that has ended, or whose execution has (CallbackTimeoutException).
CLOSED = "The callback ID token has either expired or the callback has already been closed."
#: SendDurableExecutionCallbackSuccess's ``Result``: at most 256 KB (the model's blob limit).
RESULT_LIMIT = 262144


def callback_id(function: str, name: str, op_id: str) -> str:
    """The id of the callback ``op_id`` of execution ``name`` of ``function``."""
    return base64.b64encode(json.dumps([function, name, op_id]).encode()).decode()


def parse_id(text: str) -> tuple[str, str, str]:
    """``(function, execution name, operation id)`` of a callback id;
    InvalidParameterValueException when it is not one lambdad issued."""
    try:
        found = json.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        found = None
    if (
        not isinstance(found, list)
        or len(found) != 3
        or not all(isinstance(part, str) and part for part in found)
    ):
        raise errors.InvalidParameterValueException(f"Invalid callback ID: {text}")
    return found[0], found[1], found[2]


def start(doc: Doc, op: Op, update: dict[str, Any], now: float) -> Event:
    """A CALLBACK START: the operation gets its id, its timers are kept; ``CallbackStarted``."""
    cid = callback_id(doc["function"], doc["name"], op["Id"])
    op["CallbackDetails"] = {"CallbackId": cid}
    options = update.get("CallbackOptions") or {}
    timeout = options.get("TimeoutSeconds") or 0
    heartbeat = options.get("HeartbeatTimeoutSeconds") or 0
    doc.setdefault("callbacks", {})[op["Id"]] = {
        "timeout": now + timeout if timeout > 0 else None,
        "heartbeat": heartbeat if heartbeat > 0 else None,
        "beat": now,
    }
    details: dict[str, Any] = {"CallbackId": cid}
    if timeout > 0:
        details["Timeout"] = timeout
    if heartbeat > 0:
        details["HeartbeatTimeout"] = heartbeat
    return op, "CallbackStarted", details


def open_callback(doc: Doc, ops: dict[str, Op], op_id: str) -> Op:
    """The callback ``op_id`` if it can still be completed: ResourceNotFoundException when the
    execution has no such callback, CallbackTimeoutException when it or its execution ended."""
    op = ops.get(op_id)
    if op is None or op["Type"] != "CALLBACK":
        raise errors.ResourceNotFoundException(f"Callback {op_id} does not exist")
    if doc["status"] != "RUNNING" or op["Status"] != "STARTED":
        raise errors.CallbackTimeoutException(CLOSED)
    return op


def succeed(
    doc: Doc, ops: dict[str, Op], op_id: str, result: str | None, now: float
) -> list[Event]:
    """SendDurableExecutionCallbackSuccess: ``CallbackSucceeded`` with ``result`` (None: the
    request had no body, and the callback has no result)."""
    op = open_callback(doc, ops, op_id)
    if result is not None:
        op["CallbackDetails"]["Result"] = result
    _close(doc, op, "SUCCEEDED", now)
    return [(op, "CallbackSucceeded", {"Result": {} if result is None else {"Payload": result}})]


def fail(
    doc: Doc, ops: dict[str, Op], op_id: str, error: dict[str, Any], now: float
) -> list[Event]:
    """SendDurableExecutionCallbackFailure: ``CallbackFailed`` with ``error``."""
    op = open_callback(doc, ops, op_id)
    op["CallbackDetails"]["Error"] = error
    _close(doc, op, "FAILED", now)
    return [(op, "CallbackFailed", {"Error": {"Payload": error}})]


def heartbeat(doc: Doc, ops: dict[str, Op], op_id: str, now: float) -> list[Event]:
    """SendDurableExecutionCallbackHeartbeat: the heartbeat timeout starts again (no event)."""
    open_callback(doc, ops, op_id)
    timers = doc.get("callbacks", {}).get(op_id)
    if timers is not None:
        timers["beat"] = now
    return []


def _close(doc: Doc, op: Op, status: str, now: float) -> None:
    op["Status"] = status
    op["EndTimestamp"] = now
    doc.get("callbacks", {}).pop(op["Id"], None)


def _deadline(timers: dict[str, Any]) -> tuple[float, dict[str, str]] | None:
    """When a callback times out, and with which error (None: never)."""
    found = []
    if timers["timeout"] is not None:
        found.append((timers["timeout"], TIMEOUT_ERROR))
    if timers["heartbeat"] is not None:
        found.append((timers["beat"] + timers["heartbeat"], HEARTBEAT_ERROR))
    return min(found, key=lambda item: item[0]) if found else None


def next_due(doc: Doc) -> float | None:
    """When the first of the execution's open callbacks times out (None: none does)."""
    times = [d[0] for d in map(_deadline, doc.get("callbacks", {}).values()) if d is not None]
    return min(times) if times else None


def due(doc: Doc, ops: dict[str, Op], now: float) -> list[Event]:
    """Time out the callbacks whose timeout or heartbeat timeout has passed."""
    events: list[Event] = []
    for op_id, timers in list(doc.get("callbacks", {}).items()):
        deadline = _deadline(timers)
        op = ops.get(op_id)
        if op is None or op["Status"] != "STARTED":
            doc["callbacks"].pop(op_id)
            continue
        if deadline is None or deadline[0] > now:
            continue
        error = dict(deadline[1])
        op["CallbackDetails"]["Error"] = error
        _close(doc, op, "TIMED_OUT", now)
        events.append((op, "CallbackTimedOut", {"Error": {"Payload": error}}))
    return events
