"""The typed values of asynchronous invocation settings, and the checks of their requests.

``EventInvokeConfig`` is one ``FunctionEventInvokeConfig`` document (per ``$LATEST``, version or
alias); ``settings_of`` turns a Put/Update request (already checked against the model's
ranges and patterns by ``lambdad.api``) into the fields it sets, with the service's rules: at
least one setting, and destinations that name a service Lambda delivers to: a function, an SQS
queue, an SNS topic or an EventBridge bus (anything else is refused with
``InvalidParameterValueException``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from typing import Any, Self

from lambdad import errors
from lambdad.control.requests import PutFunctionEventInvokeConfigRequest

#: The ARN part of the model's DestinationArn pattern (checked when decoded), with groups.
_DESTINATION_RE = re.compile(
    r"arn:(aws[a-zA-Z0-9-]*):(?P<service>[a-zA-Z0-9\-]+):"
    r"((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d)?:(\d{12})?:(?P<resource>.*)"
)
#: What each destination service's ARN names: ``(service, resource pattern)``.
_DESTINATION_KINDS = {
    "lambda": re.compile(r"function:[a-zA-Z0-9\-_]+(:[a-zA-Z0-9\-_$]+)?"),
    "sqs": re.compile(r"[a-zA-Z0-9\-_]+(\.fifo)?"),
    "sns": re.compile(r"[a-zA-Z0-9\-_]+(\.fifo)?"),
    "events": re.compile(r"event-bus/[A-Za-z0-9\-_./]+"),
}


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


def settings_of(request: PutFunctionEventInvokeConfigRequest) -> dict[str, Any]:
    """The fields a Put/Update request sets, keyed as ``EventInvokeConfig``'s.

    Raises InvalidParameterValueException when it sets nothing, or names a destination Lambda
    cannot deliver to. A destination side given without an ARN (``"OnSuccess": {}``) clears it.
    """
    destinations = request.destination_config
    retries, age = request.maximum_retry_attempts, request.maximum_event_age_in_seconds
    if retries is None and age is None and destinations is None:
        raise errors.InvalidParameterValueException(
            "You must specify at least one of error handling or destination setting."
        )
    changes: dict[str, Any] = {}
    if retries is not None:
        changes["max_retry_attempts"] = retries
    if age is not None:
        changes["max_event_age"] = age
    if destinations is not None:
        if destinations.on_success is not None:
            changes["on_success"] = destinations.on_success.destination or None
        if destinations.on_failure is not None:
            changes["on_failure"] = destinations.on_failure.destination or None
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
