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
loop a copy of its bytes (docs/invoke-payloads.md). A dead letter's message is read the same
way (``MessageOf``: only ``errorMessage`` is decoded, off the loop when the response is large).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from lambdad.runtime.invocation import Outcome, error_body

#: The JSON that carries a payload in a record: the payload itself when it is standard JSON,
#: else what it reads as, or its text, or ``null`` when empty (``PayloadCheck.embedded``).
Embed = Callable[[bytes], Awaitable[bytes]]
#: The error message of a response: its ``errorMessage``, else its text
#: (``PayloadCheck.error_message``).
MessageOf = Callable[[bytes], Awaitable[str]]

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


async def dead_letter_attributes(
    request_id: str, response: Response | None, message_of: MessageOf
) -> dict[str, Any]:
    """The message attributes of a DLQ message, in the shape SQS and SNS both take.

    ``ErrorMessage`` is the response's error message (``message_of``), else its function error,
    else ``HTTP <status>``; its first 1 KB in whole characters."""
    if response is None:
        status, message = 429, "Event age exceeded"
    else:
        status = response.status
        message = await message_of(response.payload)
        message = message or response.function_error or f"HTTP {status}"
    # 1 KB of UTF-8 is at most 1,024 characters; a lone surrogate (json reads one from an
    # escape) has no UTF-8 and is dropped.
    head = message[:DLQ_MESSAGE_LIMIT].encode("utf-8", "surrogatepass")
    clipped = head[:DLQ_MESSAGE_LIMIT].decode("utf-8", "ignore")
    return {
        "RequestID": {"DataType": "String", "StringValue": request_id},
        "ErrorCode": {"DataType": "Number", "StringValue": str(status)},
        "ErrorMessage": {"DataType": "String", "StringValue": clipped or f"HTTP {status}"},
    }
