"""The one place where errors become HTTP responses, in the rest-json shape botocore parses.

Each service lambdad serves renders errors in its own shape: Lambda's below, EventBridge
Scheduler's in ``_SCHEDULER`` (``{"Message": ...}`` and Scheduler's codes: a Lambda
``ResourceConflictException`` is Scheduler's ``ConflictException``, a body Lambda would call
``InvalidRequestContent`` is Scheduler's ``ValidationException``). The service is the one of
the operation the request's route serves (``decode.service_of``).

An error renders by the first class of its MRO found in ``_WIRE`` (so a subclass of a mapped
error renders as its base does, under its own ``code``). The body carries exactly the members
of AWS's error shape in botocore's ``lambda`` model: ``Type`` and ``message`` or ``Message``
(per shape), plus ``Reason`` for ``TooManyRequestsException``, whose ``Retry-After`` is a
header. Every response, success or error, carries ``x-amzn-RequestId``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from lambdad import errors
from lambdad.api.limits import refuse_oversized
from lambdad.api.wire import cbor
from lambdad.api.wire.cbor import CBOR_TYPE
from lambdad.api.wire.decode import OPERATION, iam_action, service_of
from lambdad.observe.request_ids import new_request_id
from lambdad.store.base import StoreError

log = logging.getLogger(__name__)

REQUEST_ID = "x-amzn-RequestId"

#: class -> (HTTP status, the message member's name in that error shape)
_WIRE: dict[type[errors.LambdaError], tuple[int, str]] = {
    errors.ResourceNotFoundException: (404, "Message"),
    errors.ResourceConflictException: (409, "message"),
    errors.ResourceInUseException: (400, "Message"),
    errors.DurableExecutionAlreadyStartedException: (409, "Message"),
    errors.CallbackTimeoutException: (400, "Message"),
    errors.ResourceNotReadyException: (502, "message"),
    errors.PreconditionFailedException: (412, "message"),
    errors.InvalidParameterValueException: (400, "message"),
    errors.InvalidRequestContentException: (400, "message"),
    errors.RequestTooLargeException: (413, "message"),
    errors.UnsupportedMediaTypeException: (415, "message"),
    errors.TooManyRequestsException: (429, "message"),
    errors.CodeStorageExceededException: (400, "message"),
    errors.ServiceQuotaExceededException: (402, "Message"),
    errors.InvalidRuntimeException: (502, "Message"),
    errors.InvalidZipFileException: (502, "Message"),
    errors.UnrecognizedClientException: (403, "message"),
    errors.MissingAuthenticationTokenException: (403, "message"),
    errors.InvalidSignatureException: (403, "message"),
    errors.IncompleteSignatureException: (403, "message"),
    errors.AccessDeniedException: (403, "Message"),
    errors.UnknownOperationException: (404, "message"),
    errors.ValidationException: (400, "message"),
    errors.RecursiveInvocationException: (400, "Message"),
    errors.ProvisionedConcurrencyConfigNotFoundException: (404, "message"),
    errors.PolicyLengthExceededException: (400, "message"),
    errors.PublicPolicyException: (400, "Message"),
    errors.LimitExceededException: (400, "message"),
    errors.InvalidParameterException: (400, "message"),
    errors.ResourceAlreadyExistsException: (400, "message"),
    errors.ServiceException: (500, "Message"),
    errors.InvalidParameterCombinationException: (400, "message"),
    errors.MissingRequiredParameterException: (400, "message"),
    errors.InvalidNextToken: (400, "message"),
    errors.LambdaError: (500, "Message"),
}


def wire_of(exc: errors.LambdaError) -> tuple[int, str]:
    """(HTTP status, message member) of ``exc``: its nearest mapped class's."""
    for cls in type(exc).__mro__:
        if cls in _WIRE:
            return _WIRE[cls]
    return (500, "Message")


#: Refused by AWS's front end before Lambda sees the request: the body is ``{"message": ...}``
#: alone, without Lambda's ``Type``.
_FRONT_END = (
    errors.MissingAuthenticationTokenException,
    errors.InvalidSignatureException,
    errors.IncompleteSignatureException,
)


#: EventBridge Scheduler's errors: class -> (HTTP status, Scheduler's error code). Anything
#: else renders as Lambda's (auth, size limits), or as ``InternalServerException``.
_SCHEDULER: dict[type[errors.LambdaError], tuple[int, str]] = {
    errors.ValidationException: (400, "ValidationException"),
    errors.InvalidParameterValueException: (400, "ValidationException"),
    errors.InvalidRequestContentException: (400, "ValidationException"),
    errors.ResourceNotFoundException: (404, "ResourceNotFoundException"),
    errors.ResourceConflictException: (409, "ConflictException"),
    errors.ServiceQuotaExceededException: (402, "ServiceQuotaExceededException"),
    errors.TooManyRequestsException: (429, "ThrottlingException"),
    errors.UnknownOperationException: (404, "UnknownOperationException"),
}
_KEPT = (
    errors.RequestTooLargeException,
    errors.UnsupportedMediaTypeException,
    errors.UnrecognizedClientException,
    errors.MissingAuthenticationTokenException,
    errors.InvalidSignatureException,
    errors.IncompleteSignatureException,
    errors.AccessDeniedException,
)


def render_scheduler(exc: errors.LambdaError, request_id: str | None = None) -> web.Response:
    """``exc`` as EventBridge Scheduler answers: ``x-amzn-ErrorType`` and ``{"Message"}``."""
    if isinstance(exc, _KEPT):
        return render(exc, request_id)
    status, code = 500, "InternalServerException"
    for cls in type(exc).__mro__:
        if cls in _SCHEDULER:
            status, code = _SCHEDULER[cls]
            break
    message = (
        exc.message if status < 500 else "Unexpected error occurred while processing the request"
    )
    return web.Response(
        status=status,
        body=json.dumps({"Message": message}).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": code, REQUEST_ID: request_id or new_request_id()},
    )


def render(exc: errors.LambdaError, request_id: str | None = None) -> web.Response:
    status, key = wire_of(exc)
    body: dict[str, object] = {"Type": "Service" if status >= 500 else "User", key: exc.message}
    if isinstance(exc, _FRONT_END):
        del body["Type"]
    headers = {"x-amzn-ErrorType": exc.code, REQUEST_ID: request_id or new_request_id()}
    if isinstance(exc, errors.TooManyRequestsException):
        body["Reason"] = exc.reason
        headers["Retry-After"] = str(exc.retry_after)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


#: A request answered in the JSON 1.1 protocol (EventBridge, ``lambdad.api.target_front``):
#: its errors are ``{"__type": ..., "message": ...}`` as botocore's JSON parser reads them.
JSON11 = web.RequestKey("lambdad_json11", bool)
JSON11_TYPE = "application/x-amz-json-1.1"
#: Lambda's codes that JSON 1.1 services word their own way.
_JSON11_CODES = {
    errors.InvalidRequestContentException: "SerializationException",
    errors.ServiceException: "InternalException",
    errors.RequestTooLargeException: "RequestEntityTooLargeException",
}


def render_json11(exc: errors.LambdaError, request_id: str | None = None) -> web.Response:
    """``exc`` as a JSON 1.1 service answers it: 400 for the client's errors (all of
    EventBridge's, not-found included), 500 for internal ones, 413 for an oversized body."""
    code = exc.code
    for cls in type(exc).__mro__:
        if cls in _JSON11_CODES:
            code = _JSON11_CODES[cls]
            break
    status = wire_of(exc)[0]
    if status not in (403, 413) and status < 500:
        status = 400
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": exc.message}).encode(),
        headers={
            "Content-Type": JSON11_TYPE,
            "x-amzn-ErrorType": code,
            REQUEST_ID: request_id or new_request_id(),
        },
    )


def is_json11(request: web.Request) -> bool:
    """Whether ``request`` speaks JSON 1.1 (``POST /`` with ``X-Amz-Target``), known before any
    handler runs, so that a refusal by SigV4 verification is in that shape as well."""
    return request.get(JSON11, False) or (
        request.path == "/" and request.method == "POST" and "X-Amz-Target" in request.headers
    )


#: A request of CloudWatch's metrics API (``lambdad.api.cloudwatch_front``): ``"cbor"`` (Smithy
#: RPC v2 CBOR, what botocore sends) or ``"json"`` (JSON 1.0 with ``X-Amz-Target``).
CLOUDWATCH = web.RequestKey("lambdad_cloudwatch", str)
CLOUDWATCH_PREFIX = "GraniteServiceVersion20100801"
CLOUDWATCH_PATH = f"/service/{CLOUDWATCH_PREFIX}/operation/"
JSON10_TYPE = "application/x-amz-json-1.0"
#: lambdad's code -> (CloudWatch's error shape, its query error code and fault, HTTP status).
#: The query code travels in ``x-amzn-query-error``, so botocore reports the code CloudWatch's
#: query protocol always gave (``InvalidParameterValue``).
_CLOUDWATCH_CODES: dict[str, tuple[str, str | None, int]] = {
    "InvalidParameterValueException": (
        "InvalidParameterValueException",
        "InvalidParameterValue;Sender",
        400,
    ),
    "InvalidParameterCombinationException": (
        "InvalidParameterCombinationException",
        "InvalidParameterCombination;Sender",
        400,
    ),
    "MissingRequiredParameterException": (
        "MissingRequiredParameterException",
        "MissingParameter;Sender",
        400,
    ),
    "InvalidNextToken": ("InvalidNextToken", "InvalidNextToken;Sender", 400),
    "ValidationException": ("ValidationException", "ValidationError;Sender", 400),
    "InvalidRequestContentException": ("SerializationException", None, 400),
    "ServiceException": ("InternalServiceFault", "InternalServiceError;Receiver", 500),
    "RequestEntityTooLargeException": ("RequestEntityTooLargeException", None, 413),
    "UnknownOperationException": ("UnknownOperationException", None, 404),
}


def cloudwatch_protocol(request: web.Request) -> str | None:
    """``"cbor"`` or ``"json"`` for a request of CloudWatch's API (known from its path or
    target before any handler runs, so that a SigV4 refusal is in its shape too), else None."""
    found: str | None = request.get(CLOUDWATCH)
    if found is not None:
        return found
    if request.path.startswith(CLOUDWATCH_PATH):
        return "cbor"
    if request.path == "/" and request.headers.get("X-Amz-Target", "").startswith(
        CLOUDWATCH_PREFIX + "."
    ):
        return "json"
    return None


def render_cloudwatch(
    exc: errors.LambdaError, protocol: str, request_id: str | None = None
) -> web.Response:
    """``exc`` as CloudWatch answers it: ``{"__type", "message"}`` in CBOR or JSON, the query
    error code in ``x-amzn-query-error``."""
    found = _CLOUDWATCH_CODES.get(exc.code)
    if found is None:
        status = wire_of(exc)[0]
        found = (exc.code, None, 400 if 400 < status < 500 and status != 403 else status)
    shape, query_code, status = found
    document = {"__type": f"com.amazonaws.cloudwatch#{shape}", "message": exc.message}
    headers = {"x-amzn-ErrorType": shape, REQUEST_ID: request_id or new_request_id()}
    if query_code is not None:
        headers["x-amzn-query-error"] = query_code
    if protocol == "cbor":
        headers["smithy-protocol"] = "rpc-v2-cbor"
        headers["Content-Type"] = CBOR_TYPE
        return web.Response(status=status, body=cbor.write(document), headers=headers)
    headers["Content-Type"] = JSON10_TYPE
    return web.Response(status=status, body=json.dumps(document).encode(), headers=headers)


#: CloudWatch Logs' targets: it reports its model's violations as ``InvalidParameterException``.
LOGS_TARGET_PREFIX = "Logs_20140328."


def _render_for(request: web.Request, exc: errors.LambdaError) -> web.Response:
    protocol = cloudwatch_protocol(request)
    if protocol is not None:
        return render_cloudwatch(exc, protocol)
    if not is_json11(request):
        return _renderer(request)(exc)
    if isinstance(exc, errors.ValidationException) and request.headers.get(
        "X-Amz-Target", ""
    ).startswith(LOGS_TARGET_PREFIX):
        exc = errors.InvalidParameterException(exc.message)
    return render_json11(exc)


#: Path prefixes only Scheduler's operations use: a request under one that no route serves
#: (an empty name) is answered in Scheduler's shape.
_SCHEDULER_PATHS = ("/schedules", "/schedule-groups", "/tags/")


def _renderer(request: web.Request) -> Callable[[errors.LambdaError], web.Response]:
    """How errors of the request's service render (Lambda's for a path no route serves)."""
    match = request.match_info
    if match.http_exception is None:
        scheduler = service_of(match.handler) == "scheduler"
    else:
        scheduler = request.path.startswith(_SCHEDULER_PATHS)
    return render_scheduler if scheduler else render


def _from_http(exc: web.HTTPException) -> errors.LambdaError | None:
    """The Lambda error an aiohttp HTTP exception stands for (None: a non-error answer)."""
    if exc.status in (404, 405):
        return errors.UnknownOperationException("Unknown operation")
    if exc.status == 413:
        return errors.RequestTooLargeException(exc.text or "Request entity too large")
    if exc.status >= 500:
        return errors.ServiceException("An internal error occurred.")
    if exc.status >= 400:
        return errors.InvalidRequestContentException(exc.text or exc.reason)
    return None


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into an AWS-shaped response and stamp ``x-amzn-RequestId`` on all.

    A declared body over the operation's limit is refused before the handler runs. A client
    that went away mid-request is logged quietly, not as an internal error. Cancellation
    always propagates. A request id is made only for an answer that has none (Invoke's carries
    its invocation's).
    """
    response: web.StreamResponse
    try:
        if request.match_info.http_exception is None:
            refuse_oversized(request)
        response = await handler(request)
    except errors.LambdaError as exc:
        if isinstance(exc, errors.NotAuthorizedOnResource) and OPERATION in request:
            exc = exc.for_action(iam_action(request[OPERATION]))
        response = _render_for(request, exc)
        if isinstance(exc, errors.RequestTooLargeException):
            response.force_close()  # don't read (or linger over) the body just refused
    except web.HTTPException as exc:
        error = _from_http(exc)
        if error is None:
            exc.headers.setdefault(REQUEST_ID, new_request_id())
            raise
        response = _render_for(request, error)
    except HttpProcessingError as exc:  # a body aiohttp could not parse, met while reading
        log.info("unparseable body in %s %s: %s", request.method, request.path, exc.message)
        response = _render_for(
            request,
            errors.InvalidRequestContentException(f"Could not parse request body: {exc.message}"),
        )
        response.force_close()
    except ConnectionError:
        if not _client_gone(request):
            log.exception("unhandled error in %s %s", request.method, request.path)
            return _render_for(request, errors.ServiceException("An internal error occurred."))
        log.debug("client went away during %s %s", request.method, request.path)
        response = _render_for(request, errors.InvalidRequestContentException("Connection lost"))
    except StoreError as exc:  # lambdad's own storage failed: the client sees Lambda's 500
        log.error("%s %s failed in storage: %s", request.method, request.path, exc)
        response = _render_for(request, errors.ServiceException("An internal error occurred."))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = _render_for(request, errors.ServiceException("An internal error occurred."))
    if not response.prepared and REQUEST_ID not in response.headers:
        response.headers[REQUEST_ID] = new_request_id()
    return response
