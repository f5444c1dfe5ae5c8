"""The typed values of asynchronous invocation settings, and the checks of their requests.

``EventInvokeConfig`` is one ``FunctionEventInvokeConfig`` document (per ``$LATEST``, version or
alias); ``settings_of`` turns a Put/Update request body into the fields it sets, with AWS's
validation: ``MaximumRetryAttempts`` 0-2, ``MaximumEventAgeInSeconds`` 60-21600, destination
ARNs that match the model's pattern (a ``ValidationException``) and name a service Lambda
delivers to: a function, an SQS queue, an SNS topic or an EventBridge bus (anything else is
refused with ``InvalidParameterValueException``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any, Self

from lambdad import errors
from lambdad.control import validation

MIN_RETRIES, MAX_RETRIES = 0, 2
MIN_AGE, MAX_AGE = 60, 21600
MAX_DESTINATION = 350

#: botocore's ``DestinationArn`` pattern, as AWS prints it in its ValidationException.
DESTINATION_PATTERN = (
    r"^$|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d{1})?:"
    r"(\d{12})?:(.*)"
)
_DESTINATION_RE = re.compile(
    r"arn:(aws[a-zA-Z0-9-]*):(?P<service>[a-zA-Z0-9\-]+):([a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\d)?:"
    r"(\d{12})?:(?P<resource>.*)"
)
#: What each destination service's ARN names: ``(service, resource pattern)``.
_DESTINATION_KINDS = {
    "lambda": re.compile(r"function:[a-zA-Z0-9\-_]+(:[a-zA-Z0-9\-_$]+)?"),
    "sqs": re.compile(r"[a-zA-Z0-9\-_]+(\.fifo)?"),
    "sns": re.compile(r"[a-zA-Z0-9\-_]+(\.fifo)?"),
    "events": re.compile(r"event-bus/[A-Za-z0-9\-_./]+"),
}
_FIELDS = {
    "MaximumRetryAttempts": ("maximumRetryAttempts", MIN_RETRIES, MAX_RETRIES),
    "MaximumEventAgeInSeconds": ("maximumEventAgeInSeconds", MIN_AGE, MAX_AGE),
}
_SIDES = {"OnSuccess": "onSuccess", "OnFailure": "onFailure"}


@dataclasses.dataclass(frozen=True, slots=True)
class EventInvokeConfig:
    """One qualifier's settings; None where the request left a setting out."""

    function_name: str
    qualifier: str
    max_retry_attempts: int | None = None
    max_event_age: int | None = None
    on_success: str | None = None
    on_failure: str | None = None
    #: Epoch seconds (the model's ``timestamp``).
    last_modified: float = dataclasses.field(default_factory=time.time)

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Self:
        return cls(**doc)

    def merged(self, changes: Mapping[str, Any]) -> EventInvokeConfig:
        """This config with ``changes`` (from ``settings_of``) applied, modified now."""
        return dataclasses.replace(self, **changes, last_modified=time.time())


def _integer(body: Mapping[str, Any], key: str, clauses: list[str]) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    field, minimum, maximum = _FIELDS[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidRequestContentException(
            f"Could not parse request body into json: {key} must be an integer"
        )
    if value < minimum:
        clauses.append(
            validation.constraint(
                value, field, f"Member must have value greater than or equal to {minimum}"
            )
        )
    elif value > maximum:
        clauses.append(
            validation.constraint(
                value, field, f"Member must have value less than or equal to {maximum}"
            )
        )
    return value


def _destinations(raw: Any, clauses: list[str]) -> dict[str, str | None]:
    """``{"on_success": arn or None, ...}`` for the sides the request names."""
    if not isinstance(raw, Mapping):
        raise errors.InvalidRequestContentException(
            "Could not parse request body into json: DestinationConfig must be an object"
        )
    found: dict[str, str | None] = {}
    for side, field in _SIDES.items():
        if side not in raw:
            continue
        entry = raw[side] or {}
        target = entry.get("Destination") if isinstance(entry, Mapping) else None
        if target is not None and not isinstance(target, str):
            raise errors.InvalidRequestContentException(
                f"Could not parse request body into json: {side}.Destination must be a string"
            )
        where = f"destinationConfig.{field}.destination"
        if target and len(target) > MAX_DESTINATION:
            clauses.append(
                validation.constraint(
                    target,
                    where,
                    f"Member must have length less than or equal to {MAX_DESTINATION}",
                )
            )
        elif target and _DESTINATION_RE.fullmatch(target) is None:
            clauses.append(
                validation.constraint(
                    target,
                    where,
                    f"Member must satisfy regular expression pattern: {DESTINATION_PATTERN}",
                )
            )
        found["on_success" if side == "OnSuccess" else "on_failure"] = target or None
    return found


def settings_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a Put/Update request sets, keyed as ``EventInvokeConfig``'s.

    Raises InvalidParameterValueException when it sets nothing, ValidationException for values
    outside the model (every such value named, as AWS does), and InvalidParameterValueException
    for a destination Lambda cannot deliver to.
    """
    if all(body.get(k) is None for k in (*_FIELDS, "DestinationConfig")):
        raise errors.InvalidParameterValueException(
            "You must specify at least one of error handling or destination setting."
        )
    clauses: list[str] = []
    changes: dict[str, Any] = {}
    retries = _integer(body, "MaximumRetryAttempts", clauses)
    age = _integer(body, "MaximumEventAgeInSeconds", clauses)
    if retries is not None:
        changes["max_retry_attempts"] = retries
    if age is not None:
        changes["max_event_age"] = age
    if body.get("DestinationConfig") is not None:
        changes.update(_destinations(body["DestinationConfig"], clauses))
    if clauses:
        raise validation.validation_error(clauses)
    _check_services(changes.get("on_success"), changes.get("on_failure"))
    return changes


def _check_services(on_success: str | None, on_failure: str | None) -> None:
    if all(target is None or service_of(target) for target in (on_success, on_failure)):
        return
    success = f"OnSuccess(destination={on_success})" if on_success else "null"
    failure = f"OnFailure(destination={on_failure})" if on_failure else "null"
    raise errors.InvalidParameterValueException(
        f"The provided destination config DestinationConfig(onSuccess={success}, "
        f"onFailure={failure}) is invalid."
    )


def service_of(target: str) -> str | None:
    """The destination service an ARN names (``lambda``, ``sqs``, ``sns``, ``events``), or None
    when Lambda cannot deliver there."""
    match = _DESTINATION_RE.fullmatch(target)
    if match is None:
        return None
    kind = _DESTINATION_KINDS.get(match["service"])
    if kind is None or kind.fullmatch(match["resource"]) is None:
        return None
    return match["service"]


def function_of(target: str) -> tuple[str, str, str] | None:
    """``(region, account, name)`` of a Lambda destination ARN, else None."""
    if service_of(target) != "lambda":
        return None
    parts = target.split(":")
    return parts[3], parts[4], parts[6]
