"""The history events an ``OperationUpdate`` records (``control/durable_ops.py``), as AWS's
conformance requirements show them (tests/durable_conformance/ runs the requirements
themselves)."""

from __future__ import annotations

from typing import Any

from lambdad.control import durable_ops


def applied(*updates: dict[str, Any]) -> list[tuple[str, dict[str, Any]] | None]:
    """The events ``updates`` record, applied one after the other to one operation."""
    ops: dict[str, Any] = {}
    events = []
    for update in updates:
        op = durable_ops.apply(ops, update, 100.0)
        events.append(durable_ops.event_of(update, op))
    return events


STEP = {"Id": "s1", "Type": "STEP", "SubType": "Step"}


def test_a_retried_failure_is_step_failed_with_its_next_delay() -> None:
    """A RETRY with an Error records StepFailed whose RetryDetails name the attempt and the
    delay (AWS: requirement 1-11)."""
    error = {"ErrorType": "RuntimeError", "ErrorMessage": "no"}
    retry = {
        **STEP,
        "Action": "RETRY",
        "Error": error,
        "StepOptions": {"NextAttemptDelaySeconds": 3},
    }
    _, event = applied({**STEP, "Action": "START"}, retry)
    assert event == (
        "StepFailed",
        {
            "Error": {"Payload": error, "Truncated": False},
            "RetryDetails": {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 3},
        },
    )


def test_a_poll_without_error_is_step_succeeded_with_its_state() -> None:
    """A RETRY without an Error (a wait-for-condition poll) records StepSucceeded carrying the
    state and the delay before the next poll (AWS: requirements 6-1, 6-5)."""
    poll = {**STEP, "SubType": "WaitForCondition", "Action": "RETRY", "Payload": "1"}
    poll["StepOptions"] = {"NextAttemptDelaySeconds": 2}
    _, event = applied({**STEP, "SubType": "WaitForCondition", "Action": "START"}, poll)
    assert event == (
        "StepSucceeded",
        {
            "Result": {"Payload": "1", "Truncated": False},
            "RetryDetails": {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 2},
        },
    )


def test_a_final_end_names_only_the_attempt() -> None:
    """A step's SUCCEED or FAIL names its attempt and no next delay: there is none (AWS:
    "no NextAttemptDelaySeconds means retries exhausted", requirement 3-8)."""
    _, event = applied({**STEP, "Action": "START"}, {**STEP, "Action": "SUCCEED", "Payload": "2"})
    assert event is not None
    assert event[1]["RetryDetails"] == {"CurrentAttempt": 1}


def test_replay_children_is_kept_on_the_context() -> None:
    """A CONTEXT SUCCEED with ContextOptions.ReplayChildren keeps it in ContextDetails, so the
    SDK re-runs the children of a context whose result was too large to checkpoint (AWS:
    requirement 3-11)."""
    ops: dict[str, Any] = {}
    context = {"Id": "c1", "Type": "CONTEXT", "SubType": "RunInChildContext"}
    durable_ops.apply(ops, {**context, "Action": "START"}, 1.0)
    succeed = {**context, "Action": "SUCCEED", "ContextOptions": {"ReplayChildren": True}}
    op = durable_ops.apply(ops, succeed, 2.0)
    assert op["ContextDetails"] == {"ReplayChildren": True}
    assert op["Status"] == "SUCCEEDED"


def test_an_oversized_payload_is_cut_and_marked_truncated() -> None:
    """An event payload longer than EventResult.Payload's bound (6,291,456) is cut there and
    marked Truncated; a shorter one is whole with Truncated false."""
    big = "x" * (durable_ops.MAX_EVENT_PAYLOAD + 10)
    assert durable_ops.data(big) == {
        "Payload": big[: durable_ops.MAX_EVENT_PAYLOAD],
        "Truncated": True,
    }
    assert durable_ops.data("small") == {"Payload": "small", "Truncated": False}
    assert durable_ops.data(None) == {}
