"""Tumbling windows of a stream mapping (``TumblingWindowInSeconds``).

A window is a fixed slice of time, aligned on multiples of its length since the epoch; a
record belongs to the window its arrival time falls in. Every invoke of a window carries
``window {start, end}``, the ``state`` the function returned last in that window (``{}`` at
first), ``shardId``, ``eventSourceARN``, ``isFinalInvokeForWindow`` and
``isWindowTerminatedEarly``; once the window has ended the function is invoked once more with
no records and ``isFinalInvokeForWindow: true``. A state above 1 MB ends the window early
(``isWindowTerminatedEarly: true``), as on AWS.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

#: The largest state a window keeps (AWS: 1 MB); beyond it the window ends early.
MAX_STATE = 1024 * 1024


def window_start(arrival: float, length: float) -> float:
    """The start (epoch seconds) of the window of ``length`` seconds ``arrival`` falls in."""
    return math.floor(arrival / length) * length


def iso(stamp: float) -> str:
    """Epoch seconds as AWS writes window bounds (``2020-07-30T17:00:00Z``; milliseconds
    only when the bound has a fraction of a second, as scaled windows do)."""
    moment = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(slots=True)
class Window:
    """The open window of one shard."""

    start: float
    end: float
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The last sequence number done in this window: the checkpoint once the window closes.
    last: str | None = None

    @classmethod
    def of(cls, arrival: float, length: float) -> Window:
        start = window_start(arrival, length)
        return cls(start, start + length)

    def fields(self, shard_id: str, stream_arn: str, *, final: bool, early: bool) -> dict[str, Any]:
        """What an invoke of this window adds to the event beside ``Records``."""
        return {
            "window": {"start": iso(self.start), "end": iso(self.end)},
            "state": self.state,
            "shardId": shard_id,
            "eventSourceARN": stream_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": early,
        }

    def absorb(self, payload: bytes) -> None:
        """Keep the ``state`` the function returned (a JSON object's ``state`` member that
        is an object); anything else leaves the state as it was."""
        try:
            answer = json.loads(payload or b"null")
        except ValueError:
            return
        if isinstance(answer, dict) and isinstance(answer.get("state"), dict):
            self.state = answer["state"]

    def too_big(self) -> bool:
        return len(json.dumps(self.state)) > MAX_STATE
