"""What an asynchronous invocation leaves behind: the destination record and the DLQ message.

The record is the one of the wire spec §6, in its key order: ``version``, ``timestamp``,
``requestContext`` (``requestId``, ``functionArn`` qualified as invoked, ``condition``,
``approximateInvokeCount``), ``requestPayload`` (the event as JSON), ``responseContext``
(``statusCode``, ``executedVersion``, ``functionError`` on a function error) and
``responsePayload``. A dead-letter message is the event body as it was sent, with the
``RequestID``, ``ErrorCode`` and ``ErrorMessage`` attributes. See docs/async-delivery.md.

The payloads (up to 1 MB and 6 MB) are never parsed to build a record: the JSON carrying each
(``Embed``: the payload's own bytes when it is standard JSON, worked out off the event loop
when it is large) is spliced into the record as ``msgspec.Raw``, so building one costs the
loop a copy of its bytes (docs/invoke-payloads.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from lambdad.runtime.invocation import Outcome, error_body

#: The JSON that carries a payload in a record: the payload itself when it is standard JSON,
#: else what it reads as, or its text, or ``null`` when empty (``Invoker.embedded_payload``).
Embed = Callable[[bytes], Awaitable[bytes]]

#: How much of a failed attempt's response an event keeps for a later record (its attributes
#: are stored with it): SQS and SNS take 256 KB messages, so a larger record is not deliverable.
KEPT_RESPONSE = 256 * 1024
#: The DLQ's ``ErrorMessage`` attribute holds the first 1 KB of the error message.
DLQ_MESSAGE_LIMIT = 1024


class Condition(enum.StrEnum):
    SUCCESS = "Success"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """What one attempt answered: a run's outcome, a throttle, or lambdad refusing it."""

    status: int
    executed_version: str
    function_error: str | None
    payload: bytes

    @classmethod
    def of_outcome(cls, outcome: Outcome) -> Response:
        error = "Unhandled" if outcome.function_error else None
        return cls(200, outcome.executed_version, error, outcome.payload)

    @classmethod
    def refused(cls, status: int, version: str, code: str, message: str) -> Response:
        """An attempt that did not run: the error a synchronous caller would have had."""
        return cls(status, version, None, error_body(code, message))

    def to_attributes(self) -> dict[str, str]:
        """This response as event attributes (kept durably with the queued event)."""
        kept = {
            "status": str(self.status),
            "version": self.executed_version,
            "response": self.payload[:KEPT_RESPONSE].decode("utf-8", "replace"),
        }
        if self.function_error:
            kept["function_error"] = self.function_error
        return kept

    @classmethod
    def from_attributes(cls, attributes: dict[str, str]) -> Response | None:
        if "status" not in attributes:
            return None
        return cls(
            int(attributes["status"]),
            attributes.get("version", "$LATEST"),
            attributes.get("function_error"),
            attributes.get("response", "").encode(),
        )

    def error_message(self) -> str:
        """The error message of this response: its ``errorMessage``, else its body."""
        parsed = _json_or_text(self.payload)
        if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
            message: str = parsed["errorMessage"]
        else:
            message = self.payload.decode("utf-8", "replace")
        return message or (self.function_error or f"HTTP {self.status}")


def _json_or_text(data: bytes) -> Any:
    """The payload as JSON where it is JSON, else as text (None when empty)."""
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def timestamp(now: float) -> str:
    """``2019-11-14T18:16:05.568Z``: UTC, milliseconds."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """A destination record: the request it reports on and its JSON (UTF-8)."""

    request_id: str
    body: bytes


async def record(
    *,
    request_id: str,
    function_arn: str,
    condition: Condition,
    invoke_count: int,
    request_payload: bytes,
    response: Response | None,
    now: float,
    embed: Embed,
) -> Record:
    """The invocation record sent to a destination. ``response`` is None for an event that
    never reached the function (it expired first): the record then has no response parts.
    ``embed`` gives the JSON each payload is carried as; nothing here parses a payload."""
    document: dict[str, Any] = {
        "version": "1.0",
        "timestamp": timestamp(now),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition.value,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": msgspec.Raw(await embed(request_payload)),
    }
    if response is not None:
        context: dict[str, Any] = {
            "statusCode": response.status,
            "executedVersion": response.executed_version,
        }
        if response.function_error:
            context["functionError"] = response.function_error
        document["responseContext"] = context
        document["responsePayload"] = msgspec.Raw(await embed(response.payload))
    return Record(request_id, msgspec.json.encode(document))


def dead_letter_attributes(request_id: str, response: Response | None) -> dict[str, Any]:
    """The message attributes of a DLQ message, in the shape SQS and SNS both take."""
    status = response.status if response is not None else 429
    message = response.error_message() if response is not None else "Event age exceeded"
    clipped = message.encode()[:DLQ_MESSAGE_LIMIT].decode("utf-8", "ignore")
    return {
        "RequestID": {"DataType": "String", "StringValue": request_id},
        "ErrorCode": {"DataType": "Number", "StringValue": str(status)},
        "ErrorMessage": {"DataType": "String", "StringValue": clipped or f"HTTP {status}"},
    }
