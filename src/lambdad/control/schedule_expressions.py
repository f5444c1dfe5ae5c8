"""Schedule expressions: when a schedule's occurrences fall.

A minimal stand-in supporting ``rate(value unit)`` and ``at(yyyy-mm-ddThh:mm:ss)`` only (the
full evaluator with ``cron(...)`` replaces this module, with the same interface). Messages are
EventBridge Scheduler's.

A ``rate`` expression has no anchor of its own: its next occurrence after ``t`` is ``t`` plus
the rate, so a caller that chains ``next_after`` from the schedule's start (its ``StartDate``,
or the moment it was created) gets every occurrence from there.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import zoneinfo

_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_AT = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


class InvalidExpression(ValueError):
    """An expression or time zone the service refuses; ``str(exc)`` is its message."""


@dataclasses.dataclass(frozen=True)
class ScheduleExpression:
    text: str
    timezone: str = "UTC"

    def next_after(self, after: datetime.datetime) -> datetime.datetime | None:
        """The first occurrence strictly after ``after`` (aware), in UTC; None when none."""
        after = after.astimezone(datetime.UTC)
        rate = _RATE.fullmatch(self.text)
        if rate is not None:
            step = int(rate.group(1)) * _UNITS[rate.group(2).rstrip("s")]
            return after + datetime.timedelta(seconds=step)
        due = self._at()
        return due if due > after else None

    def is_one_time(self) -> bool:
        return self.text.startswith("at(")

    def _at(self) -> datetime.datetime:
        match = _AT.fullmatch(self.text)
        assert match is not None  # parse_expression accepted it
        local = datetime.datetime.fromisoformat(match.group(1))
        zone = zoneinfo.ZoneInfo(self.timezone)
        return local.replace(tzinfo=zone).astimezone(datetime.UTC)


def parse_expression(text: str, timezone: str = "UTC") -> ScheduleExpression:
    """``text`` as an expression evaluated in ``timezone``; InvalidExpression if refused."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidExpression(f"Invalid timezone {timezone}.") from exc
    rate = _RATE.fullmatch(text)
    if rate is not None:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise InvalidExpression("Invalid Schedule Expression " + text + ".")
        return ScheduleExpression(text, timezone)
    at = _AT.fullmatch(text)
    if at is not None:
        try:
            datetime.datetime.fromisoformat(at.group(1))
        except ValueError as exc:
            raise InvalidExpression("Invalid Schedule Expression " + text + ".") from exc
        return ScheduleExpression(text, timezone)
    raise InvalidExpression("Invalid Schedule Expression " + text + ".")
