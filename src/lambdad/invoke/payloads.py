"""Invoke payload limits and the JSON check, with the errors AWS answers.

The JSON check is O(payload), so it must not hold the event loop (docs/invoke-payloads.md):
a payload up to ``INLINE_LIMIT`` bytes is checked in place with msgspec (well under a
millisecond); a larger one goes to a helper process (``json_check.py``), because a thread
would not help: no JSON parser releases the GIL, so a parse in a thread still stalls the loop
for as long as it runs.
"""

from __future__ import annotations

import json

from lambdad import errors
from lambdad.invoke.json_check import (
    JsonChecker,
    embedding,
    error_message,
    is_standard,
    json_error,
)

SYNC_LIMIT = 6 * 1024 * 1024
EVENT_LIMIT = 1024 * 1024
#: Payloads up to this size are checked on the loop: msgspec skims 70 KB of the densest JSON
#: (small objects, short numbers) in 0.06-0.07 ms here, so 256 KB costs about 0.25 ms.
INLINE_LIMIT = 256 * 1024
#: A payload that is not standard JSON is embedded (or read for its error message) in place
#: only up to this size: it is then parsed with ``json`` (or decoded as text), 10-20x slower
#: than the skim.
PARSE_INLINE_LIMIT = 16 * 1024


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


def compact_client_context(text: str | None) -> str | None:
    """The client context as the runtime gets it: compact, ASCII-only JSON (one header line).

    A caller may send pretty-printed JSON; its newlines must not reach the
    ``Lambda-Runtime-Client-Context`` header. Text that is not JSON is passed on as it is (the
    Runtime API's writer still never lets a CR or LF into a header).
    """
    if not text:
        return None
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=True)
    except (ValueError, RecursionError):
        return text


class PayloadCheck:
    """Checks invoke payloads (size, then JSON) without holding the event loop.

    ``close`` stops the helper process; it also ends by itself when idle or when lambdad goes.
    """

    def __init__(self, inline_limit: int = INLINE_LIMIT) -> None:
        self._inline = inline_limit
        self._checker = JsonChecker()

    async def check(self, payload: bytes, invocation_type: str) -> None:
        """Raise what AWS raises for an oversized or non-JSON invoke payload."""
        check_size(len(payload), invocation_type)
        if not payload:
            return
        if len(payload) <= self._inline:
            message = json_error(payload)
        else:
            message = await self._checker.error_of(payload)
        if message is not None:
            raise errors.InvalidRequestContentException(message)

    async def embedded(self, payload: bytes) -> bytes:
        """The JSON that carries ``payload`` inside a record (``json_check.embedding``): the
        payload itself when it is standard JSON, spliced without parsing it; else what it
        reads as, or its text, or ``null``. O(size), so a large payload is looked at by the
        helper process; the loop only copies its bytes.
        """
        if len(payload) <= self._inline and is_standard(payload):
            return payload
        if len(payload) <= PARSE_INLINE_LIMIT:
            answer = embedding(payload)
        else:
            answer = await self._checker.embedding_of(payload)
        return payload if answer is None else answer

    async def error_message(self, payload: bytes) -> str:
        """The ``errorMessage`` of an error response, else its text (``json_check``'s);
        worked out by the helper process when the payload is large."""
        if len(payload) <= PARSE_INLINE_LIMIT or (
            len(payload) <= self._inline and is_standard(payload)
        ):
            return error_message(payload)
        return await self._checker.error_message_of(payload)

    async def close(self) -> None:
        await self._checker.close()
