"""What CloudWatch's metrics calls share: reading timestamps, dimensions and NextTokens of a
request, the metrics store of the app, the InvalidParameterValue of a bad one."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
from collections.abc import Sequence

from aiohttp import web

from lambdad import errors
from lambdad.api.prometheus import METRICS
from lambdad.control.metric_requests import Dimension
from lambdad.observe.metrics import Metrics

#: The timestamps a request may name: years 1 to 9999 (what an ISO 8601 date can say).
EARLIEST, LATEST = -62_135_596_800.0, 253_402_300_799.0


def metrics_of(request: web.Request) -> Metrics:
    return request.app[METRICS]


def invalid(message: str) -> errors.InvalidParameterValueException:
    return errors.InvalidParameterValueException(message)


def seconds(value: float | str, member: str) -> float:
    """A request timestamp as epoch seconds (a JSON client may send ISO 8601)."""
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.UTC)
            value = parsed.timestamp()
        except (ValueError, OverflowError):
            value = math.nan
    if not EARLIEST <= value <= LATEST:  # NaN too
        raise invalid(f"The parameter {member} must be a valid ISO 8601 date.")
    return value


def time_range(start: float | str, end: float | str) -> tuple[float, float]:
    first, last = seconds(start, "StartTime"), seconds(end, "EndTime")
    if last <= first:
        raise invalid("The parameter StartTime must be less than the parameter EndTime.")
    return first, last


def when(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def dimensions_of(dimensions: Sequence[Dimension] | None, member: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in dimensions or ():
        if item.name in found:
            raise invalid(f"The collection {member} must not have duplicate dimension names.")
        found[item.name] = item.value
    return found


def page_offset(token: str | None) -> int:
    """The offset a NextToken of ours stands for (0 without one)."""
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, binascii.Error, KeyError, TypeError, UnicodeError):
        offset = None
    if type(offset) is not int or offset < 0:
        raise errors.InvalidNextToken("The service couldn't process the NextToken.")
    return offset


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()
