"""The values that cross the runtime boundary: an invocation in, an outcome out."""

from __future__ import annotations

import dataclasses
import json
import time

import msgspec

from lambdad.observe.platform import Report
from lambdad.runtime.streaming import ResponseSink

#: The largest response (or event) body the Runtime API accepts: 6 MiB + 100 bytes.
MAX_RUNTIME_PAYLOAD = 6 * 1024 * 1024 + 100
#: The largest buffered response a caller gets (Lambda's 6 MB, as in its error message).
MAX_RESPONSE_PAYLOAD = 6_291_556
#: The largest streamed response (AWS: 200 MB since July 2025, 20 MB before).
MAX_STREAMED_RESPONSE = 200 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Invocation:
    request_id: str
    payload: bytes
    invoked_arn: str
    content_type: str = "application/json"
    client_context: str | None = None
    cognito_identity: str | None = None
    trace_id: str | None = None
    tenant_id: str | None = None
    #: Collect the invocation's log for ``X-Amz-Log-Type: Tail``.
    tail: bool = False
    #: Where a streamed response goes as it arrives; None: the caller takes it whole.
    sink: ResponseSink | None = None
    #: An ``Event`` invocation from the async queue: nobody waits on its answer, so it may
    #: wait for an environment of its function to come back rather than start one more
    #: while ``pool.PACED_STARTS`` are already starting (docs/async-delivery.md).
    paced: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What an invocation produced. A function error is an outcome, not an exception."""

    payload: bytes
    content_type: str
    #: True sets ``X-Amz-Function-Error: Unhandled``.
    function_error: bool
    #: The invocation's log from START to REPORT, when ``tail`` was asked for.
    log: str
    report: Report
    executed_version: str = "$LATEST"

    @property
    def error_type(self) -> str | None:
        return self.report.error_type


@dataclasses.dataclass(slots=True)
class Run:
    """One invocation in an environment: its request, its clock and its deadline."""

    invocation: Invocation
    timeout: int
    #: ``time.perf_counter()`` at its start; the deadline on the same clock.
    began: float
    deadline: float
    #: ``Lambda-Runtime-Deadline-Ms`` (epoch milliseconds).
    deadline_ms: int
    #: The Init Duration its REPORT carries (an on-demand environment's first only).
    init_ms: float | None = None

    @classmethod
    def begin(cls, invocation: Invocation, timeout: int) -> Run:
        began = time.perf_counter()
        deadline_ms = int((time.time() + timeout) * 1000)
        return cls(invocation, timeout, began, began + timeout, deadline_ms)

    @property
    def request_id(self) -> str:
        return self.invocation.request_id


def error_body(error_type: str, message: str) -> bytes:
    """A platform error body, compact as Lambda writes it: ``{"errorType":…,"errorMessage":…}``."""
    document = {"errorType": error_type, "errorMessage": message}
    return json.dumps(document, separators=(",", ":")).encode()


class _ErrorTyped(msgspec.Struct):
    """The one member read from an error body; msgspec skips the rest without building it."""

    errorType: object = None


_error_typed = msgspec.json.Decoder(_ErrorTyped)


def runtime_error_type(body: bytes, header: str | None) -> str | None:
    """The error type a runtime reported: its header, else the body's ``errorType``."""
    if header:
        return header
    try:
        value = _error_typed.decode(body).errorType
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, str) else None
