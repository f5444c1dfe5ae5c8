"""How one ``OperationUpdate`` of CheckpointDurableExecution changes a durable execution's
operations (wire-shaped dicts, as GetDurableExecutionState returns them), and the history
events it records.

Handled: STEP (START, SUCCEED, FAIL, RETRY), WAIT (START, CANCEL), CONTEXT (START, SUCCEED,
FAIL), EXECUTION (SUCCEED, FAIL), and the START of CALLBACK and CHAINED_INVOKE (their details
and events: ``durable_callbacks``, ``durable_chained``); ``durable_checks`` has refused anything
else before an update gets here.

A step's ``Attempt`` counts as the SDK's own local runner counts it
(``aws-durable-execution-sdk-python-testing``): 0 when started, one more on each RETRY,
SUCCEED and FAIL; a RETRY without ``NextAttemptDelaySeconds`` is due at once.
"""

from __future__ import annotations

from typing import Any

from lambdad import errors

Op = dict[str, Any]

#: The history event type of each (type, action).
_EVENTS = {
    ("STEP", "START"): "StepStarted",
    ("STEP", "SUCCEED"): "StepSucceeded",
    ("STEP", "FAIL"): "StepFailed",
    ("WAIT", "START"): "WaitStarted",
    ("WAIT", "CANCEL"): "WaitCancelled",
    ("CONTEXT", "START"): "ContextStarted",
    ("CONTEXT", "SUCCEED"): "ContextSucceeded",
    ("CONTEXT", "FAIL"): "ContextFailed",
}


def apply(ops: dict[str, Op], update: dict[str, Any], now: float) -> Op:
    """Apply ``update`` to ``ops`` (by id); returns the operation as it is now."""
    kind, action = update["Type"], update["Action"]
    op = ops.get(update["Id"])
    if op is None:
        op = {"Id": update["Id"], "Type": kind, "StartTimestamp": now, "Status": "STARTED"}
        for member in ("ParentId", "Name", "SubType"):
            if update.get(member) is not None:
                op[member] = update[member]
        ops[op["Id"]] = op
    elif op["Type"] != kind:
        raise errors.InvalidParameterValueException(
            f"Invalid operation update: operation {op['Id']} is of type {op['Type']}, not {kind}."
        )
    _UPDATES[(kind, action)](op, update, now)
    return op


def _step_start(op: Op, update: dict[str, Any], now: float) -> None:
    details = op.setdefault("StepDetails", {"Attempt": 0})
    details.pop("NextAttemptTimestamp", None)
    op["Status"] = "STARTED"


def _step_end(status: str) -> Any:
    def end(op: Op, update: dict[str, Any], now: float) -> None:
        details = op.setdefault("StepDetails", {"Attempt": 0})
        details.pop("NextAttemptTimestamp", None)
        details["Attempt"] = int(details.get("Attempt", 0)) + 1
        _finish(op, details, status, update, now)

    return end


def _step_retry(op: Op, update: dict[str, Any], now: float) -> None:
    details = op.setdefault("StepDetails", {"Attempt": 0})
    delay = (update.get("StepOptions") or {}).get("NextAttemptDelaySeconds") or 0
    details["Attempt"] = int(details.get("Attempt", 0)) + 1
    details["NextAttemptTimestamp"] = now + delay
    if update.get("Error") is not None:
        details["Error"] = update["Error"]
    if update.get("Payload") is not None:
        details["Result"] = update["Payload"]
    op["Status"] = "PENDING"


def _wait_start(op: Op, update: dict[str, Any], now: float) -> None:
    seconds = (update.get("WaitOptions") or {}).get("WaitSeconds") or 0
    op["WaitDetails"] = {"ScheduledEndTimestamp": now + seconds}
    op["Status"] = "STARTED"


def _wait_cancel(op: Op, update: dict[str, Any], now: float) -> None:
    op["Status"] = "CANCELLED"
    op["EndTimestamp"] = now


def _context_start(op: Op, update: dict[str, Any], now: float) -> None:
    op["Status"] = "STARTED"


def _context_end(status: str) -> Any:
    def end(op: Op, update: dict[str, Any], now: float) -> None:
        details = op.setdefault("ContextDetails", {})
        if (update.get("ContextOptions") or {}).get("ReplayChildren"):
            details["ReplayChildren"] = True
        _finish(op, details, status, update, now)

    return end


def _execution_end(status: str) -> Any:
    def end(op: Op, update: dict[str, Any], now: float) -> None:
        op["Status"] = status
        op["EndTimestamp"] = now

    return end


def _finish(
    op: Op, details: dict[str, Any], status: str, update: dict[str, Any], now: float
) -> None:
    op["Status"] = status
    op["EndTimestamp"] = now
    if update.get("Payload") is not None:
        details["Result"] = update["Payload"]
    if update.get("Error") is not None:
        details["Error"] = update["Error"]


_UPDATES = {
    ("STEP", "START"): _step_start,
    ("STEP", "SUCCEED"): _step_end("SUCCEEDED"),
    ("STEP", "FAIL"): _step_end("FAILED"),
    ("STEP", "RETRY"): _step_retry,
    ("WAIT", "START"): _wait_start,
    ("WAIT", "CANCEL"): _wait_cancel,
    ("CONTEXT", "START"): _context_start,
    ("CALLBACK", "START"): _context_start,  # its id and timers: durable_callbacks.start
    ("CHAINED_INVOKE", "START"): _context_start,  # the invoke itself: durable_chained
    ("CONTEXT", "SUCCEED"): _context_end("SUCCEEDED"),
    ("CONTEXT", "FAIL"): _context_end("FAILED"),
    ("EXECUTION", "SUCCEED"): _execution_end("SUCCEEDED"),
    ("EXECUTION", "FAIL"): _execution_end("FAILED"),
}


def event_of(update: dict[str, Any], op: Op) -> tuple[str, dict[str, Any]] | None:
    """The history event an update records (type, details), or None (EXECUTION's own end is
    recorded when the execution ends). A step's RETRY records the attempt that ended: a
    ``StepFailed`` when it carries an ``Error`` (a retried failure), a ``StepSucceeded``
    otherwise (a wait-for-condition poll whose state is its ``Payload``); its
    ``RetryDetails`` name the attempt and the delay before the next one. A step's final end
    names only the attempt (no delay: there is no next one)."""
    kind, action = update["Type"], update["Action"]
    name = _EVENTS.get((kind, action))
    if (kind, action) == ("STEP", "RETRY"):
        name = "StepFailed" if update.get("Error") is not None else "StepSucceeded"
    if name is None:
        return None
    details: dict[str, Any] = {}
    if name == "WaitStarted":
        details = {
            "Duration": (update.get("WaitOptions") or {}).get("WaitSeconds") or 0,
            "ScheduledEndTimestamp": op["WaitDetails"]["ScheduledEndTimestamp"],
        }
    elif name.endswith("Succeeded"):
        details = {"Result": data(update.get("Payload"))}
    elif name.endswith("Failed"):
        details = {"Error": data(update.get("Error"))}
    if kind == "STEP" and name != "StepStarted":
        retry: dict[str, Any] = {"CurrentAttempt": op["StepDetails"]["Attempt"]}
        if action == "RETRY":
            options = update.get("StepOptions") or {}
            retry["NextAttemptDelaySeconds"] = options.get("NextAttemptDelaySeconds") or 0
        details["RetryDetails"] = retry
    return name, details


#: The longest payload a history event carries (``EventResult.Payload``'s bound in AWS's
#: model); a longer one is cut there and marked ``Truncated``.
MAX_EVENT_PAYLOAD = 6_291_456


def data(value: Any) -> dict[str, Any]:
    """An event's payload member, ``{"Payload": ..., "Truncated": ...}`` (empty when there is
    none). A text payload past ``MAX_EVENT_PAYLOAD`` characters is cut there."""
    if value is None:
        return {}
    if isinstance(value, str) and len(value) > MAX_EVENT_PAYLOAD:
        return {"Payload": value[:MAX_EVENT_PAYLOAD], "Truncated": True}
    return {"Payload": value, "Truncated": False}


def due(ops: dict[str, Op], now: float) -> list[Op]:
    """Ends the waits whose time has come and readies the steps whose retry is due; returns the
    operations changed (a wait that ended records ``WaitSucceeded``)."""
    changed = []
    for op in ops.values():
        if op["Type"] == "WAIT" and op["Status"] == "STARTED":
            if op["WaitDetails"]["ScheduledEndTimestamp"] <= now:
                op["Status"] = "SUCCEEDED"
                op["EndTimestamp"] = now
                changed.append(op)
        elif (
            op["Type"] == "STEP"
            and op["Status"] == "PENDING"
            and op.get("StepDetails", {}).get("NextAttemptTimestamp", now) <= now
        ):
            op["Status"] = "READY"
            changed.append(op)
    return changed


def next_due(ops: dict[str, Op]) -> float | None:
    """When the next wait ends or step retry is due (None: nothing is timed)."""
    times = []
    for op in ops.values():
        if op["Type"] == "WAIT" and op["Status"] == "STARTED":
            times.append(op["WaitDetails"]["ScheduledEndTimestamp"])
        elif op["Type"] == "STEP" and op["Status"] == "PENDING":
            times.append(op.get("StepDetails", {}).get("NextAttemptTimestamp", 0))
    return min(times) if times else None
