"""The checks a CheckpointDurableExecution batch passes before any of it is applied.

The rules and their wording are those of the SDK's own local runner
(``aws-durable-execution-sdk-python-testing``, ``checkpoint/validators``), which follows the
service: every breach is ``InvalidParameterValueException``. Each update is checked against
the operations as they were before the batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lambdad import errors

Op = dict[str, Any]

_ACTIONS = {
    "STEP": {"START", "FAIL", "RETRY", "SUCCEED"},
    "CONTEXT": {"START", "FAIL", "SUCCEED"},
    "WAIT": {"START", "CANCEL"},
    "CALLBACK": {"START"},
    "CHAINED_INVOKE": {"START"},
    "EXECUTION": {"SUCCEED", "FAIL"},
}


_CONSISTENT = (
    ("Type", "Inconsistent operation type."),
    ("SubType", "Inconsistent operation subtype."),
    ("Name", "Inconsistent operation name."),
    ("ParentId", "Inconsistent parent operation id."),
)


def _refuse(message: str) -> None:
    raise errors.InvalidParameterValueException(message)


def check_batch(updates: list[Op], ops: Mapping[str, Op]) -> None:
    """InvalidParameterValueException for the first rule ``updates`` break."""
    if not updates:
        return
    executions = [u for u in updates if u["Type"] == "EXECUTION"]
    if len(executions) > 1:
        _refuse("Cannot checkpoint multiple EXECUTION updates.")
    if executions and updates[-1]["Type"] != "EXECUTION":
        _refuse("EXECUTION checkpoint must be the last update.")
    _check_ids(updates, ops)
    for update in updates:
        _check_sizes(update)
        _check_update(update, ops.get(update["Id"]))


#: The largest error object an update may carry, as JSON (the SDK local runner's limit).
MAX_ERROR_BYTES = 32768
#: The largest input of a chained invoke (1 MiB, as an asynchronous invoke's payload).
MAX_CHAINED_INPUT_BYTES = 1_048_576


def _check_sizes(update: Op) -> None:
    error = update.get("Error")
    if error is not None and len(json.dumps(error)) > MAX_ERROR_BYTES:
        _refuse(f"Error object size must be less than {MAX_ERROR_BYTES} bytes.")
    payload = update.get("Payload")
    if (
        update["Type"] == "CHAINED_INVOKE"
        and payload is not None
        and len(payload.encode()) > MAX_CHAINED_INPUT_BYTES
    ):
        _refuse(
            "CHAINED_INVOKE input payload size must be less than or equal to "
            f"{MAX_CHAINED_INPUT_BYTES} bytes."
        )


def _check_ids(updates: list[Op], ops: Mapping[str, Op]) -> None:
    started: dict[str, Op] = {}
    last: dict[str, Op] = {}
    for update in updates:
        before = last.get(update["Id"])
        if before is not None and not (
            before["Type"] in ("STEP", "CONTEXT")
            and before["Action"] == "START"
            and update["Action"] != "START"
        ):
            _refuse("Cannot checkpoint multiple operations with the same ID.")
        parent = update.get("ParentId")
        if parent is not None:
            owner = started.get(parent) or ops.get(parent)
            if owner is None or owner["Type"] != "CONTEXT":
                _refuse("Invalid parent operation id.")
        if update["Action"] == "START":
            started[update["Id"]] = update
        last[update["Id"]] = update


def _check_update(update: Op, current: Op | None) -> None:
    kind, action = update["Type"], update["Action"]
    if current is not None:
        for member, message in _CONSISTENT:
            if update.get(member) is not None and update[member] != current.get(member):
                _refuse(message)
    if action not in _ACTIONS.get(kind, set()):
        _refuse("Invalid action for the given operation type.")
    _TRANSITIONS[kind](update, current)


def _closing(update: Op) -> None:
    if update["Action"] == "FAIL" and update.get("Payload") is not None:
        _refuse("Cannot provide a Payload for FAIL action.")
    if update["Action"] == "SUCCEED" and update.get("Error") is not None:
        _refuse("Cannot provide an Error for SUCCEED action.")


def _step(update: Op, current: Op | None) -> None:
    if current is None:
        return
    status, action = current["Status"], update["Action"]
    if action == "START" and status != "READY":
        _refuse("Invalid current STEP state to start.")
    if action in ("SUCCEED", "FAIL"):
        if status not in ("STARTED", "READY"):
            _refuse("Invalid current STEP state to close.")
        _closing(update)
    if action == "RETRY":
        if status not in ("STARTED", "READY"):
            _refuse("Invalid current STEP state to re-attempt.")
        if update.get("StepOptions") is None:
            _refuse("Invalid StepOptions for the given action.")
        if update.get("Error") is not None and update.get("Payload") is not None:
            _refuse("Cannot provide both error and payload to RETRY a STEP.")


def _context(update: Op, current: Op | None) -> None:
    if update["Action"] == "START":
        if current is not None:
            _refuse("Cannot start a CONTEXT that already exist.")
        return
    if current is not None and current["Status"] != "STARTED":
        _refuse("Invalid current CONTEXT state to close.")
    _closing(update)


def _wait(update: Op, current: Op | None) -> None:
    if update["Action"] == "START" and current is not None:
        _refuse("Cannot start a WAIT that already exist.")
    if update["Action"] == "CANCEL" and (current is None or current["Status"] != "STARTED"):
        _refuse("Cannot cancel a WAIT that does not exist or has already completed.")


def _execution(update: Op, current: Op | None) -> None:
    _closing(update)


def _callback(update: Op, current: Op | None) -> None:
    if current is not None:
        _refuse("Cannot start a CALLBACK that already exist.")


def _chained_invoke(update: Op, current: Op | None) -> None:
    if current is not None:
        _refuse("Cannot start a CHAINED_INVOKE operation that already exists.")
    if not (update.get("ChainedInvokeOptions") or {}).get("FunctionName"):
        _refuse("Update for CHAINED_INVOKE operation requires ChainedInvokeOptions.")


_TRANSITIONS = {
    "STEP": _step,
    "CONTEXT": _context,
    "WAIT": _wait,
    "EXECUTION": _execution,
    "CALLBACK": _callback,
    "CHAINED_INVOKE": _chained_invoke,
}
