"""Invoke payload limits and the JSON check, with the errors AWS answers."""

from __future__ import annotations

import json

from lambdad import errors

SYNC_LIMIT = 6 * 1024 * 1024
EVENT_LIMIT = 1024 * 1024


def limit_of(invocation_type: str) -> int:
    return EVENT_LIMIT if invocation_type == "Event" else SYNC_LIMIT


def check_size(size: int, invocation_type: str) -> None:
    """Raise what AWS raises for an invoke payload of ``size`` bytes over the limit."""
    if size <= limit_of(invocation_type):
        return
    if invocation_type == "Event":
        raise errors.RequestTooLargeException(
            f"{size} byte payload is too large for the Event invocation type "
            f"(limit {EVENT_LIMIT} bytes)"
        )
    raise errors.RequestTooLargeException(
        f"Request must be smaller than {SYNC_LIMIT} bytes for the InvokeFunction operation"
    )


def check_payload(payload: bytes, invocation_type: str) -> None:
    """Raise what AWS raises for an oversized or non-JSON invoke payload."""
    check_size(len(payload), invocation_type)
    if not payload:
        return
    try:
        json.loads(payload)
    except UnicodeDecodeError as exc:
        raise errors.InvalidRequestContentException(
            "Could not parse request body into json: Could not parse payload into json: "
            "Invalid UTF-8 start byte"
        ) from exc
    except ValueError as exc:
        raise errors.InvalidRequestContentException(
            "Could not parse request body into json: Could not parse payload into json: "
            f"{_describe(exc, payload)}"
        ) from exc


def _describe(exc: ValueError, payload: bytes) -> str:
    if isinstance(exc, json.JSONDecodeError):
        excerpt = payload[:64].decode("utf-8", "replace")
        return (
            f"Unrecognized token '{excerpt.split()[0] if excerpt.split() else excerpt}': "
            "was expecting (JSON String, Number, Array, Object or token 'null', 'true' or "
            f"'false')\n at [Source: (byte[])\"{excerpt}\"; line: {exc.lineno}, "
            f"column: {exc.colno}]"
        )
    return str(exc)
