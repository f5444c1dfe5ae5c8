"""One HTTP request of the Lambda API, decoded into its operation's typed request value.

:func:`decode` reads the body (refusing one over the operation's size limit before reading
it), then :func:`decode_values` reads every input member from where the model says it travels,
checks types and constraints (:mod:`.values`), and ``msgspec.convert`` builds the Struct of
:mod:`lambdad.control.requests` (or of the API) that the handler hands on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from multidict import MultiMapping

from lambdad import errors
from lambdad.api.wire import values
from lambdad.api.wire.model import BODY, HEADER, LABEL, LAMBDA, QUERY, Operation, operation
from lambdad.control.validation import constraint, validation_error
from lambdad.invoke import json_check

T = TypeVar("T")

#: Largest CreateFunction / UpdateFunctionCode / PublishLayerVersion request AWS takes (a 50 MB
#: zip in base64, plus the JSON around it).
CODE_REQUEST_LIMIT = 70_167_211
#: Largest request body of any other control-plane call.
CONTROL_REQUEST_LIMIT = 6 * 1024 * 1024
CODE_OPERATIONS = frozenset({"CreateFunction", "UpdateFunctionCode", "PublishLayerVersion"})
#: What Java's ``Long.parseLong`` takes (no spaces, "+" or "_" as Python's ``int`` would).
_NUMBER = re.compile(r"-?[0-9]{1,20}")
#: Bodies larger than this are joined in a worker thread, off the event loop.
_JOIN_IN_THREAD = 1024 * 1024
#: Bodies larger than this are decoded in a worker thread, off the event loop.
_THREAD_THRESHOLD = 256 * 1024

#: Member paths whose model constraints the service checks itself with its own message (the
#: member is still type-checked): ``Runtime`` (deprecated runtimes get their own message, an
#: unknown one "… or be a valid ARN"), Invoke's ``InvocationType`` (InvalidParameterValue),
#: GetLayerVersionByArn's ``Arn``.
SERVICE_CHECKED: Mapping[str, frozenset[str]] = {
    "CreateFunction": frozenset({"runtime"}),
    "UpdateFunctionConfiguration": frozenset({"runtime"}),
    "Invoke": frozenset({"invocationType"}),
    # AWS prints a stricter pattern than the model's for an ARN that is not a layer version.
    "GetLayerVersionByArn": frozenset({"arn"}),
}


#: Members the model requires that AWS lets a request leave out: the provisioned concurrency
#: calls take the qualifier from a qualified function name as well.
NOT_REQUIRED: Mapping[str, frozenset[str]] = {
    "PutProvisionedConcurrencyConfig": frozenset({"Qualifier"}),
    "GetProvisionedConcurrencyConfig": frozenset({"Qualifier"}),
    "DeleteProvisionedConcurrencyConfig": frozenset({"Qualifier"}),
}


def request_limit(name: str, service: str = LAMBDA) -> int:
    """The largest request body the operation ``name`` takes."""
    code = service == LAMBDA and name in CODE_OPERATIONS
    return CODE_REQUEST_LIMIT if code else CONTROL_REQUEST_LIMIT


def _service_checked(op: Operation) -> frozenset[str]:
    return SERVICE_CHECKED.get(op.name, frozenset()) if op.service == LAMBDA else frozenset()


def _not_required(op: Operation) -> frozenset[str]:
    return NOT_REQUIRED.get(op.name, frozenset()) if op.service == LAMBDA else frozenset()


def too_large(limit: int, name: str) -> errors.RequestTooLargeException:
    return errors.RequestTooLargeException(
        f"Request must be smaller than {limit} bytes for the {name} operation"
    )


#: The body, when something before the handler had to read it (SigV4 hashes it).
READ_BODY = web.RequestKey("lambdad_body", bytes)


async def read_up_to(request: web.Request, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes when it is longer.

    Chunks are taken as they arrived (``readchunk``), so the body is copied once, at the end:
    ``read(n)`` would join aiohttp's buffered chunks first, a second copy of megabytes on the
    event loop. A large body is joined in a thread (``bytes.join`` releases the GIL there).
    """
    already: bytes | None = request.get(READ_BODY)
    if already is not None:  # read by SigV4 verification, before the handler ran
        return already[:limit]
    chunks: list[bytes] = []
    size = 0
    content = request.content
    while size < limit:
        if content.at_eof() and content.exception() is None:
            break  # all of the body was read: no readchunk just to be told so
        chunk, _ = await content.readchunk()
        if not chunk:
            break
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
    if len(chunks) == 1:
        return chunks[0]
    if size > _JOIN_IN_THREAD:
        return await asyncio.to_thread(b"".join, chunks)
    return b"".join(chunks)


async def read_body(request: web.Request, name: str, service: str = LAMBDA) -> bytes:
    """The whole body of operation ``name``; RequestEntityTooLarge over its limit, refused from
    the declared ``Content-Length`` before anything is read."""
    limit = request_limit(name, service)
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, name)
    data = await read_up_to(request, limit + 1)
    if len(data) > limit:
        raise too_large(limit, name)
    return data


async def decode(request: web.Request, name: str, kind: type[T], service: str = LAMBDA) -> T:
    """The request of operation ``name`` (of ``service``'s model) as a ``kind`` Struct, checked
    against the model."""
    op = operation(name, service)
    if not op.has_json_body:
        return _decode_bodiless(op, request, kind)
    request[OPERATION] = name
    body = await read_body(request, name, service)
    args = (op, request.match_info, request.query, request.headers, body)
    if len(body) > _THREAD_THRESHOLD:
        found = await asyncio.to_thread(decode_values, *args)
    else:
        found = decode_values(*args)
    return msgspec.convert(found, kind)


def decode_document(
    request: web.Request, name: str, kind: type[T], service: str, document: Mapping[str, Any]
) -> T:
    """The request of operation ``name`` whose body was decoded from another format than JSON
    (``document``, plain values: CBOR's timestamps already epoch seconds), checked as
    :func:`decode` checks a JSON body."""
    op = operation(name, service)
    request[OPERATION] = name
    found = decode_values(op, {}, request.query, {}, b"", document=document)
    return msgspec.convert(found, kind)


def _decode_bodiless(op: Operation, request: web.Request, kind: type[T]) -> T:
    """:func:`decode` of an operation without a JSON body: nothing to read, nothing awaited."""
    request[OPERATION] = op.name
    found = decode_values(op, request.match_info, request.query, request.headers, b"")
    return msgspec.convert(found, kind)


def decode_values(
    op: Operation,
    labels: Mapping[str, str],
    query: MultiMapping[str],
    headers: Mapping[str, str],
    body: bytes,
    document: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every input member of ``op`` that the request gives, typed and checked.

    ``document``: the body already decoded (a CBOR request's map), instead of ``body``'s JSON.
    Raises InvalidRequestContentException for a body that is not a JSON object or a member of
    the wrong type, ValidationException listing every constraint broken.
    """
    if document is None:
        document = _json_object(op, body) if op.has_json_body else _NO_DOCUMENT
    found: dict[str, Any] = {}
    clauses: list[str] = []
    skip = _service_checked(op)
    # One pass in model order: a type error raises at once (the first one in model order, as
    # when every member was typed before any was checked); constraint clauses are gathered.
    for step in _plan(op):
        where = step.where
        if where is _PAYLOAD:
            if step.shape.type_name == "structure":
                continue  # a structure as the whole body (StopDurableExecution's Error)
            # The raw body is read by the handler, under the operation's own limits.
            item: Any = b""
        elif where is _BODY:
            raw = document.get(step.name)
            item = None if raw is None else values.typed(step.shape, raw, step.chain)
        elif where is _LABEL:
            item = labels.get(step.wire_name)
        elif where is _HEADER:
            item = headers.get(step.wire_name)
        elif where is _QUERY:
            if step.many:
                item = list(query.getall(step.wire_name, [])) or None
            else:
                item = query.get(step.wire_name)
        else:
            item = None
        if item is None:
            if step.required:
                clauses.append(values.null_clause(step.camel))
            continue
        if step.number and where is not _BODY:
            item = _number(step, item)
        elif step.flag and where is not _BODY:
            item = item.lower() == "true"
        if where is not _PAYLOAD:
            found[step.name] = item
        if step.checked:
            good = step.good
            if type(item) is str and item in good:
                continue
            before = len(clauses)
            values.check(step.shape, item, step.camel, clauses, skip=skip)
            if type(item) is str and len(clauses) == before and len(item) <= _GOOD_LENGTH:
                if len(good) >= _GOOD_ENTRIES:
                    good.clear()
                good[item] = None
    if clauses:
        raise validation_error(clauses)
    return found


#: Where a plan step reads its member (compared by identity).
_PAYLOAD, _BODY, _LABEL, _HEADER, _QUERY = "payload", BODY, LABEL, HEADER, QUERY
_NOWHERE = "nowhere"  # a location the decoder does not read: the member is never given
_NO_DOCUMENT: Mapping[str, Any] = {}
#: Strings a step has seen pass its constraints, so a repeated one (a function name on every
#: invoke) is not matched again; bounded in count and length.
_GOOD_ENTRIES = 1024
_GOOD_LENGTH = 256


@dataclasses.dataclass(slots=True)
class _Step:
    """One input member as :func:`decode_values` reads and checks it, worked out once."""

    name: str
    wire_name: str
    where: str
    shape: Any
    #: Its path in a validation clause (``functionName``) and Jackson's reference chain.
    camel: str
    chain: str
    #: A missing member is a "must not be null" clause.
    required: bool
    #: A query member sent as a list; a label/query/header member read as a number or flag.
    many: bool
    number: bool
    flag: bool
    #: The member has model constraints that the service does not check itself.
    checked: bool
    good: dict[str, None]


_PLANS: dict[tuple[str, str], tuple[Operation, tuple[_Step, ...]]] = {}


def _plan(op: Operation) -> tuple[_Step, ...]:
    entry = _PLANS.get((op.service, op.name))
    if entry is not None and entry[0] is op:
        return entry[1]
    skip = _service_checked(op)
    optional = _not_required(op)
    steps: list[_Step] = []
    for member in op.members:
        shape = member.shape
        kind = shape.type_name
        camel = values.lower_camel(member.name)
        where = {BODY: _BODY, LABEL: _LABEL, HEADER: _HEADER, QUERY: _QUERY}.get(
            member.location, _NOWHERE
        )
        if member.name == op.payload:
            where = _PAYLOAD
        nested = kind in ("structure", "list", "map")
        rules = nested or bool(values.rules_of(shape))
        steps.append(
            _Step(
                name=member.name,
                wire_name=member.wire_name,
                where=where,
                shape=shape,
                camel=camel,
                chain=f'{op.input_name}["{member.name}"]',
                required=member.required and member.name not in optional,
                many=kind == "list",
                number=kind in ("integer", "long"),
                flag=kind == "boolean",
                checked=op.shape is not None and rules and camel not in skip,
                good={},
            )
        )
    plan = tuple(steps)
    _PLANS[(op.service, op.name)] = (op, plan)
    return plan


def json_document(op: Operation, body: bytes) -> dict[str, Any]:
    """The JSON object of a request body of ``op`` (an empty body is ``{}``), or
    InvalidRequestContentException in the words :func:`decode` uses."""
    return _json_object(op, body)


def _json_object(op: Operation, body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise values.parse_error(str(exc)) from None
    except RecursionError:
        raise values.parse_error(json_check.TOO_DEEP) from None
    if not isinstance(document, dict):
        raise values.parse_error(
            f"Cannot deserialize value of type `{op.input_name}` from {values.token(document)}"
        )
    return document


def _number(step: _Step, text: str) -> int:
    """A label, query or header value of an integer member."""
    low, high = values.INT_RANGE[step.shape.type_name]
    if _NUMBER.fullmatch(text) is None or not low <= int(text) <= high:
        raise validation_error([constraint(text, step.camel, "Member must be a number")])
    return int(text)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Every handler :func:`handles` made, with its operation (for tests and tooling).
HANDLED: dict[Handler, Operation] = {}
#: Handlers that serve several (Lambda) operations on one path and call :func:`decode`
#: themselves.
DISPATCHING: dict[Handler, tuple[str, ...]] = {}
#: The request type each :func:`handles` operation is decoded into.
KINDS: dict[tuple[str, str], type[Any]] = {}
#: (service, operation) of every operation of another service than Lambda that lambdad serves
#: by ``X-Amz-Target`` (``events``, ``logs``: ``lambdad.api.target_front``).
OTHER_SERVICES: set[tuple[str, str]] = set()


def prepare() -> None:
    """Work out now what decoding each routed operation needs the first time it is called:
    its plan, the patterns of its members compiled, msgspec's view of its request type (the
    first Invoke after a start paid some 2 ms for these)."""
    ops = {operation(name) for name in routed_operations()} | set(HANDLED.values())
    for op in ops:
        for step in _plan(op):
            values.prepare(step.shape)
    for service, name in sorted(OTHER_SERVICES):
        for step in _plan(operation(name, service)):
            values.prepare(step.shape)
    for kind in KINDS.values():
        with contextlib.suppress(msgspec.ValidationError):
            msgspec.convert({}, kind)


def routed_operations(service: str = LAMBDA) -> frozenset[str]:
    """The name of every operation of ``service`` lambdad routes (once the API modules are
    imported)."""
    handled = {op.name for op in HANDLED.values() if op.service == service}
    dispatched = {name for names in DISPATCHING.values() for name in names}
    return frozenset(handled | (dispatched if service == LAMBDA else set()))


def service_of(handler: Handler) -> str:
    """The service whose operation ``handler`` serves (``lambda`` for any other handler)."""
    op = HANDLED.get(handler)
    return op.service if op is not None else LAMBDA


def dispatches(*names: str) -> Callable[[Handler], Handler]:
    """Mark a handler that picks one of ``names`` from the request (the model gives some
    operations one path, told apart by a query member) and decodes it itself."""
    for name in names:
        operation(name)

    def mark(handler: Handler) -> Handler:
        DISPATCHING[handler] = names
        return handler

    return mark


#: The operation a request was decoded as (errors raised after decoding may name it).
OPERATION = web.RequestKey("operation", str)

#: Operations whose IAM action is not ``lambda:<operation>``.
_ACTIONS = {
    "Invoke": "InvokeFunction",
    "InvokeWithResponseStream": "InvokeFunction",
    "GetLayerVersionByArn": "GetLayerVersion",
}


def iam_action(name: str) -> str:
    """The IAM action operation ``name`` is authorized as (``lambda:GetFunction``)."""
    return f"lambda:{_ACTIONS.get(name, name)}"


def handles(
    name: str, kind: type[T], service: str = LAMBDA
) -> Callable[[Callable[[web.Request, T], Awaitable[web.StreamResponse]]], Handler]:
    """Decorate an aiohttp handler of operation ``name`` of ``service``'s model: it is called
    with the request decoded into ``kind`` (see :func:`decode`), so no handler reads the raw
    wire."""
    operation(name, service)  # an unknown name fails at import, not on the first request

    def wrap(handler: Callable[[web.Request, T], Awaitable[web.StreamResponse]]) -> Handler:
        op = operation(name, service)

        @functools.wraps(handler)
        async def decoded(request: web.Request) -> web.StreamResponse:
            if op.has_json_body:
                return await handler(request, await decode(request, name, kind, service))
            return await handler(request, _decode_bodiless(op, request, kind))

        HANDLED[decoded] = op
        KINDS[(service, name)] = kind
        return decoded

    return wrap
