"""Pausing and resuming a durable execution (PauseDurableExecution, ResumeDurableExecution;
docs/durable-functions.md, "Pause, resume and delete").

A paused execution stays ``RUNNING`` in its record (everything that drives, settles, stops or
resumes a running execution still applies to it); ``doc["pause"]`` says that it is held and
how:

- ``state``: ``PAUSING`` while an invocation of it is under way (it is paused at that
  invocation's next checkpoint, which is answered without a checkpoint token, or at its end),
  then ``PAUSED``: the engine invokes nothing, but waits, step retries and callback timeouts
  still end at their time and callbacks and chained invokes still complete;
- ``requested``, ``reason``, ``timeout_paused`` (PauseDurableExecution's members);
- ``since``: when it became ``PAUSED`` (the execution timeout is extended by the time from
  then to the resume, when ``timeout_paused``);
- ``interrupted``: the pause cut an invocation short, so the resume invokes the handler again.

Every function here changes the execution document in place and returns the history events
to record, as ``durable_callbacks`` does.
"""

from __future__ import annotations

from typing import Any

from lambdad import errors
from lambdad.control.durable_callbacks import Event

Doc = dict[str, Any]

PAUSING, PAUSED = "PAUSING", "PAUSED"
#: An execution whose timeout is paused still times out this long after it started (AWS).
LONGEST = 366 * 86400
#: A request repeated with the same client token and members within this many seconds
#: succeeds again without doing anything (AWS: 15 minutes).
CLIENT_TOKEN_WINDOW = 15 * 60


def status(doc: Doc) -> str:
    """The execution's status as the API shows it: ``PAUSING`` / ``PAUSED`` while held."""
    pause = doc.get("pause")
    if pause is not None and doc["status"] == "RUNNING":
        return str(pause["state"])
    return str(doc["status"])


def held(doc: Doc) -> bool:
    """Whether a pause was asked for and not resumed (``PAUSING`` or ``PAUSED``)."""
    return doc["status"] == "RUNNING" and doc.get("pause") is not None


def paused(doc: Doc) -> bool:
    """Whether the execution is ``PAUSED``: nothing of it may be invoked."""
    return held(doc) and doc["pause"]["state"] == PAUSED


def pausing(doc: Doc) -> bool:
    return held(doc) and doc["pause"]["state"] == PAUSING


def deadline(doc: Doc) -> float:
    """When the execution times out as it is now: while paused with its timeout paused, only
    at the longest (366 days after it started)."""
    pause = doc.get("pause")
    if paused(doc) and pause is not None and pause["timeout_paused"]:
        return float(doc["start"]) + LONGEST
    return float(doc["deadline"])


def _repeated(doc: Doc, slot: str, client_token: str | None, asked: Doc, now: float) -> bool:
    """Whether the request repeats the last one of its kind (same client token and members,
    within ``CLIENT_TOKEN_WINDOW``)."""
    last = doc.get(slot)
    return (
        client_token is not None
        and last is not None
        and last["client_token"] == client_token
        and last["asked"] == asked
        and now - last["at"] <= CLIENT_TOKEN_WINDOW
    )


def _conflict(doc: Doc, verb: str) -> errors.ResourceConflictException:
    return errors.ResourceConflictException(
        f"Cannot {verb} durable execution {doc['arn']} in status {status(doc)}."
    )


def request(
    doc: Doc,
    execution: dict[str, Any],
    reason: str | None,
    timeout_paused: bool | None,
    client_token: str | None,
    now: float,
) -> list[Event]:
    """PauseDurableExecution: a running execution is held (``PAUSED`` at once when no
    invocation of it is under way, else ``PAUSING``). ResourceConflictException when it has
    ended or is held already, unless the request repeats the last one (client token)."""
    asked = {"reason": reason, "timeout_paused": timeout_paused}
    if _repeated(doc, "last_pause", client_token, asked, now):
        return []
    if doc["status"] != "RUNNING" or held(doc):
        raise _conflict(doc, "pause")
    doc["pause"] = {
        "state": PAUSING,
        "requested": now,
        "reason": reason,
        "timeout_paused": timeout_paused is not False,  # AWS's default: true
        "since": None,
        "interrupted": False,
    }
    doc["last_pause"] = {"client_token": client_token, "asked": asked, "at": now}
    if doc["invoking"]:
        return []
    return reach(doc, execution, now, interrupted=False)


def reach(doc: Doc, execution: dict[str, Any], now: float, *, interrupted: bool) -> list[Event]:
    """A ``PAUSING`` execution becomes ``PAUSED`` (``ExecutionPaused``): at its invocation's
    checkpoint or end (``interrupted``), or at once."""
    pause = doc["pause"]
    pause["state"] = PAUSED
    pause["since"] = now
    pause["interrupted"] = interrupted
    details: Doc = {
        "PauseRequestTimestamp": pause["requested"],
        "ExecutionTimeoutPaused": pause["timeout_paused"],
    }
    if pause["reason"] is not None:
        details["Reason"] = {"Payload": pause["reason"], "Truncated": False}
    return [(execution, "ExecutionPaused", details)]


def resume(
    doc: Doc, execution: dict[str, Any], reason: str | None, client_token: str | None, now: float
) -> list[Event]:
    """ResumeDurableExecution: a ``PAUSING`` execution's pause is cancelled (its invocation
    goes on; nothing is recorded); a ``PAUSED`` one runs again (``ExecutionResumed``), its
    timeout extended by the time it was paused when that was asked for, and it is ``woken``
    when the pause cut an invocation short. ResourceConflictException when it is not held,
    unless the request repeats the last one (client token)."""
    asked = {"reason": reason}
    if _repeated(doc, "last_resume", client_token, asked, now):
        return []
    if not held(doc):
        raise _conflict(doc, "resume")
    pause = doc.pop("pause")
    doc["last_resume"] = {"client_token": client_token, "asked": asked, "at": now}
    if pause["state"] == PAUSING:
        return []
    if pause["timeout_paused"]:
        longest = float(doc["start"]) + LONGEST
        doc["deadline"] = min(float(doc["deadline"]) + now - pause["since"], longest)
    if pause["interrupted"]:
        doc["woken"] = True
    details: Doc = {"ResumeRequestTimestamp": now}
    if reason is not None:
        details["Reason"] = {"Payload": reason, "Truncated": False}
    return [(execution, "ExecutionResumed", details)]


def details(doc: Doc, include_data: bool) -> Doc | None:
    """GetDurableExecution's ``PauseDetails`` (None unless ``PAUSING`` or ``PAUSED``); the
    reason only with the execution's data."""
    if not held(doc):
        return None
    pause = doc["pause"]
    shown: Doc = {
        "PauseRequestTimestamp": pause["requested"],
        "ExecutionTimeoutPaused": pause["timeout_paused"],
    }
    if include_data and pause["reason"] is not None:
        shown["Reason"] = pause["reason"]
    return shown
