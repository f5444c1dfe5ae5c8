"""CBOR bodies (Smithy RPC v2 CBOR, the protocol botocore's ``cloudwatch`` model speaks),
read into and written from plain values with ``cbor2``.

A request is read into the values a JSON body would give (maps with string keys, lists,
strings, numbers, booleans, nulls), timestamps (tag 1) as epoch seconds, so the decoder checks
it as it checks JSON. Anything else (byte strings where no member takes them, other tags,
``undefined``, non-string keys) is refused as a serialization error, never passed on.
"""

from __future__ import annotations

import datetime
from typing import Any

import cbor2

from lambdad import errors

CBOR_TYPE = "application/cbor"
#: Deeper documents are refused (no CloudWatch request nests more than a few levels).
_MAX_DEPTH = 32


def serialization_error(detail: str) -> errors.InvalidRequestContentException:
    return errors.InvalidRequestContentException(f"Could not parse request body: {detail}")


def read(body: bytes) -> dict[str, Any]:
    """The request map of a CBOR body (an empty body is an empty request)."""
    if not body:
        return {}
    try:
        document = cbor2.loads(body)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise serialization_error(f"not CBOR ({str(exc)[:200]})") from None
    if not isinstance(document, dict):
        raise serialization_error("the body is not a CBOR map")
    plain: dict[str, Any] = _plain(document, 0)
    return plain


def _plain(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise serialization_error("nested too deeply")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    if isinstance(value, list):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise serialization_error("a map key is not a text string")
            out[key] = _plain(item, depth + 1)
        return out
    raise serialization_error(f"unexpected CBOR item of type {type(value).__name__}")


def write(document: Any) -> bytes:
    """``document`` as CBOR: ``datetime``s as tag 1 epoch seconds (as botocore reads them)."""
    return cbor2.dumps(document, datetime_as_timestamp=True, timezone=datetime.UTC)
