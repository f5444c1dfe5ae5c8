"""What an api node and a worker say to each other about one invocation (docs/cluster.md,
"Invocations across nodes"): plain msgpack values, never pickles.

The api node publishes a ``Call`` to ``lambdad.invoke.<worker id>`` with a reply subject of its
own (``lambdad.reply.<api node id>.<token>``). Everything the worker sends back goes to that one
subject, so it arrives in the order it was sent; the first byte of each message says what it is:

- ``a``: alive (the worker still runs it; sent every ``KEEPALIVE`` seconds);
- ``b`` + content type: the runtime began a streamed response;
- ``c`` + bytes: the next chunk of it;
- ``p`` + bytes: the next part of the outcome's payload (one too large for one message);
- ``o`` + ``Done``: the outcome (its payload is the parts when there were any);
- ``e`` + ``Failed``: the invocation was refused or failed on the worker (a ``LambdaError``).

A request payload too large for one message goes ahead in parts on ``parts_subject``, each
with the call's reply subject; the call then says how many parts to wait for.
"""

from __future__ import annotations

import msgspec

from lambdad import errors
from lambdad.observe.platform import Report
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.streaming import ResponseSink

#: Seconds between a worker's keep-alives for each invocation it runs.
KEEPALIVE = 1.0
#: Seconds of silence after which an api node takes an invocation's worker for lost.
LOST_AFTER = 4.0

ALIVE = b"a"
BEGIN = b"b"
CHUNK = b"c"
PART = b"p"
DONE = b"o"
FAILED = b"e"

#: Bytes kept free in a message for its kind and framing.
HEADROOM = 4096


def invoke_subject(worker: str) -> str:
    """Where a worker takes invocations."""
    return f"lambdad.invoke.{worker}"


def parts_subject(worker: str) -> str:
    """Where a worker takes the parts of a large payload, each sent with the reply subject
    of its call (which names the call), in order, before the call."""
    return f"lambdad.invoke.{worker}.part"


def reply_prefix(node: str) -> str:
    """The subjects an api node hears its invocations' replies on (``<prefix>.<token>``)."""
    return f"lambdad.reply.{node}"


class Call(msgspec.Struct, array_like=True, frozen=True):
    """One invocation for a worker: the function's version, and the invocation itself."""

    account: str
    region: str
    name: str
    version: str
    #: The qualifier the caller named (the metrics' cell), None for none.
    qualifier: str | None
    request_id: str
    payload: bytes
    invoked_arn: str
    content_type: str
    client_context: str | None
    cognito_identity: str | None
    trace_id: str | None
    tenant_id: str | None
    tail: bool
    stream: bool
    paced: bool
    #: How many parts of the payload were sent ahead on ``parts_subject`` (a payload larger
    #: than one message); the call's own ``payload`` is then empty.
    parts: int = 0
    #: The configuration revision the api node resolved: a worker whose cache holds another
    #: reads the function again (the change feed had not reached it yet).
    revision: str = ""
    #: Whether the version has provisioned environments on some worker: one run on demand
    #: is then a spillover (ProvisionedConcurrencySpilloverInvocations), wherever it runs.
    provisioned: bool = False

    def invocation(
        self, sink: ResponseSink | None = None, payload: bytes | None = None
    ) -> Invocation:
        """The invocation as the worker runs it (``sink``: the worker's own, when streamed;
        ``payload``: the parts joined, when it came in parts)."""
        return Invocation(
            request_id=self.request_id,
            payload=self.payload if payload is None else payload,
            invoked_arn=self.invoked_arn,
            content_type=self.content_type,
            client_context=self.client_context,
            cognito_identity=self.cognito_identity,
            trace_id=self.trace_id,
            tenant_id=self.tenant_id,
            tail=self.tail,
            sink=sink,
            paced=self.paced,
        )


def call_of(
    account: str,
    region: str,
    name: str,
    version: str,
    qualifier: str | None,
    inv: Invocation,
    revision: str,
    provisioned: bool = False,
) -> Call:
    return Call(
        account,
        region,
        name,
        version,
        qualifier,
        inv.request_id,
        inv.payload,
        inv.invoked_arn,
        inv.content_type,
        inv.client_context,
        inv.cognito_identity,
        inv.trace_id,
        inv.tenant_id,
        inv.tail,
        inv.sink is not None,
        inv.paced,
        0,
        revision,
        provisioned,
    )


class Done(msgspec.Struct, array_like=True, frozen=True):
    """An invocation's outcome."""

    payload: bytes
    content_type: str
    function_error: bool
    log: str
    executed_version: str
    request_id: str
    duration_ms: float
    memory_mb: int
    max_memory_mb: int
    init_duration_ms: float | None
    status: str | None
    error_type: str | None
    restore_duration_ms: float | None

    @classmethod
    def of(cls, outcome: Outcome, payload: bytes) -> Done:
        r = outcome.report
        return cls(
            payload,
            outcome.content_type,
            outcome.function_error,
            outcome.log,
            outcome.executed_version,
            r.request_id,
            r.duration_ms,
            r.memory_mb,
            r.max_memory_mb,
            r.init_duration_ms,
            r.status,
            r.error_type,
            r.restore_duration_ms,
        )

    def outcome(self, payload: bytes) -> Outcome:
        report = Report(
            self.request_id,
            self.duration_ms,
            self.memory_mb,
            self.max_memory_mb,
            self.init_duration_ms,
            self.status,
            self.error_type,
            self.restore_duration_ms,
        )
        return Outcome(
            payload, self.content_type, self.function_error, self.log, report, self.executed_version
        )


class Failed(msgspec.Struct, array_like=True, frozen=True):
    """A ``LambdaError`` raised on the worker, to be raised again on the api node."""

    type: str
    message: str
    reason: str | None = None
    retry_after: int = 1

    @classmethod
    def of(cls, exc: errors.LambdaError) -> Failed:
        if isinstance(exc, errors.TooManyRequestsException):
            return cls(type(exc).__name__, exc.message, exc.reason, exc.retry_after)
        return cls(type(exc).__name__, exc.message)

    def error(self) -> errors.LambdaError:
        """The error again: of its own class when it takes a message alone, else
        ``ServiceException`` with its message."""
        if self.type == "TooManyRequestsException":
            return errors.TooManyRequestsException(
                self.message, reason=self.reason or "", retry_after=self.retry_after
            )
        kind = getattr(errors, self.type, None)
        if isinstance(kind, type) and issubclass(kind, errors.LambdaError):
            try:
                return kind(self.message)
            except TypeError:  # a class that takes more than a message
                pass
        return errors.ServiceException(self.message)


_calls = msgspec.msgpack.Decoder(Call)
_done = msgspec.msgpack.Decoder(Done)
_failed = msgspec.msgpack.Decoder(Failed)
_encode = msgspec.msgpack.Encoder().encode


def encode(value: Call | Done | Failed) -> bytes:
    return _encode(value)


def decode_call(data: bytes) -> Call:
    """A ``Call`` (``msgspec.DecodeError`` for anything else)."""
    return _calls.decode(data)


def decode_done(data: bytes) -> Done:
    return _done.decode(data)


def decode_failed(data: bytes) -> Failed:
    return _failed.decode(data)
