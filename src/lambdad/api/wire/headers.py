"""Invoke's headers: ``X-Amz-Invocation-Type``, ``X-Amz-Client-Context``, ``X-Amz-Log-Type``."""

from __future__ import annotations

import base64
import binascii
import json

from lambdad import errors
from lambdad.invoke.service import InvocationType

#: Largest decoded client context AWS takes, in bytes.
MAX_CLIENT_CONTEXT = 3583


def invocation_type(raw: str | None) -> InvocationType:
    """The invocation type; an unknown one is AWS's InvalidParameterValueException."""
    try:
        return InvocationType(raw or "RequestResponse")
    except ValueError:
        raise errors.InvalidParameterValueException(
            f"1 validation error detected: Value '{raw}' at 'invocationType' failed to satisfy "
            "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        ) from None


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
