"""What a runtime answers an environment: replies, init failures, crashes, refusals."""

from __future__ import annotations

import dataclasses
import json

from lambdad.observe.platform import Report
from lambdad.runtime.body_stream import BodyStream
from lambdad.runtime.invocation import Outcome, error_body


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """What the runtime posted for an invocation."""

    ok: bool
    body: bytes
    content_type: str
    error_type: str | None = None
    #: A streamed ``/response``: its body, still arriving when the runtime's reply is accepted
    #: (``body`` is then empty); kept on the reply read from it, for its size.
    stream: BodyStream | None = None

    def outcome(self, log: str, report: Report, version: str) -> Outcome:
        """What the caller gets of this reply."""
        return Outcome(
            payload=self.body,
            content_type=self.content_type,
            function_error=not self.ok,
            log=log,
            report=report,
            executed_version=version,
        )


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
    """A Runtime, Extensions or Telemetry API call refused: carries the status and the error
    type; the server answers it with ``http11.error_response``."""

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


@dataclasses.dataclass(frozen=True, slots=True)
class Ending:
    """How an invocation that failed in the platform ends: REPORT's status and error type, the
    caller's body, and the lines its log gets after START."""

    status: str  # "error" | "timeout"
    error_type: str
    body: bytes
    content_type: str
    lines: tuple[str, ...]


def timed_out(request_id: str, timeout: int, line: str) -> Ending:
    message = f"Task timed out after {float(timeout):.2f} seconds"
    body = error_body("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}")
    return Ending("timeout", "Sandbox.Timedout", body, "application/json", (line,))


def crashed(request_id: str, crash: Crashed) -> Ending:
    message = f"RequestId: {request_id} Error: {crash.reason}"
    body = error_body(crash.error_type, message)
    return Ending("error", crash.error_type, body, "application/json", (message, crash.error_type))


def init_failed(request_id: str, failure: InitFailure) -> Ending:
    body, content_type = failure.invoke_body(request_id)
    error_type = failure.error_type or "Runtime.Unknown"
    lines: tuple[str, ...] = ()
    if failure.reason is not None:
        lines = (f"RequestId: {request_id} Error: {failure.reason}", error_type)
    return Ending("error", error_type, body, content_type, lines)


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
