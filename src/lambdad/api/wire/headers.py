"""Invoke's headers: ``X-Amz-Invocation-Type``, ``X-Amz-Client-Context``, ``X-Amz-Log-Type``."""

from __future__ import annotations

import base64
import binascii
import json

from lambdad import errors
from lambdad.api.wire import values
from lambdad.api.wire.model import operation
from lambdad.control.validation import constraint
from lambdad.invoke.service import InvocationType

#: Largest decoded client context AWS takes, in bytes.
MAX_CLIENT_CONTEXT = 3583
_INVOCATION_TYPES = {kind.value: kind for kind in InvocationType}


def invocation_type(raw: str | None) -> InvocationType:
    """The invocation type; one outside the model's enum is AWS's InvalidParameterValueException
    (worded as a validation error, quoting the model's enum)."""
    kind = _INVOCATION_TYPES.get(raw or "RequestResponse")
    if kind is None:
        (member,) = [m for m in operation("Invoke").members if m.name == "InvocationType"]
        rule = (values.violations(member.shape, raw) or values.rules_of(member.shape))[0]
        raise errors.InvalidParameterValueException(
            "1 validation error detected: " + constraint(raw, "invocationType", rule)
        )
    return kind


def client_context(raw: str | None) -> str | None:
    """``X-Amz-Client-Context`` is base64 of a JSON object, at most 3583 bytes decoded; the
    runtime gets it as compact ASCII JSON (one line, so it can travel in a header)."""
    if not raw:
        return None
    if len(raw) > MAX_CLIENT_CONTEXT * 4 // 3 + 4:
        raise errors.InvalidParameterValueException(
            f"Client context must be less than or equal to {MAX_CLIENT_CONTEXT} bytes."
        )
    try:
        document = json.loads(base64.b64decode(raw, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidRequestContentException(
            "Client context must be a valid Base64-encoded JSON object."
        ) from exc
    return json.dumps(document, separators=(",", ":"))


def wants_tail(log_type: str | None, kind: InvocationType) -> bool:
    """``X-Amz-Log-Type: Tail`` asks for the log tail, which only a synchronous call has."""
    return log_type == "Tail" and kind is InvocationType.REQUEST_RESPONSE
