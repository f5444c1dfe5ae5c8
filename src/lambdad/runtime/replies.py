"""What a runtime answers an environment: replies, init failures, crashes, refusals."""

from __future__ import annotations

import dataclasses
import json

from lambdad.runtime.invocation import error_body


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """What the runtime posted for an invocation."""

    ok: bool
    body: bytes
    content_type: str
    error_type: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class InitFailure:
    """Why init did not finish: an ``/init/error``, an exit, a spawn failure or a timeout."""

    status: str  # "error" | "timeout"
    error_type: str | None
    body: bytes | None = None
    content_type: str = "application/json"
    #: For exits and spawn failures: the text after ``Error:`` in Lambda's message.
    reason: str | None = None

    def invoke_body(self, request_id: str) -> tuple[bytes, str]:
        if self.body is not None:
            return self.body, self.content_type
        return (
            error_body(
                self.error_type or "Runtime.Unknown",
                f"RequestId: {request_id} Error: {self.reason}",
            ),
            "application/json",
        )


class RuntimeApiError(Exception):
    """A Runtime API call the environment refuses: carries the status and the error type."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


class Crashed(Exception):
    """The runtime process ended during an invocation."""

    def __init__(self, reason: str, error_type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type or "Runtime.ExitError"


def forwardable_error(body: bytes, content_type: str) -> tuple[bytes, str]:
    """Error bodies are forwarded verbatim, except the X-Ray error-cause form (cause dropped)."""
    if content_type.startswith("application/vnd.aws.lambda.error.cause+json"):
        try:
            parsed = json.loads(body)
        except ValueError:
            return b"Invalid error body", "application/octet-stream"
        if isinstance(parsed, dict):
            parsed.pop("errorCause", None)
        return json.dumps(parsed).encode(), "application/json"
    return body, content_type or "application/json"


def json_error_body(error_type: str, message: str) -> bytes:
    """A Runtime/Extensions API error body as RAPID writes it (Go's json.Encoder: compact,
    errorMessage first, a trailing newline)."""
    document = {"errorMessage": message, "errorType": error_type}
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()
