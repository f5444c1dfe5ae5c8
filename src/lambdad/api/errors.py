"""The one place where errors become HTTP responses, in the rest-json shape botocore parses."""

from __future__ import annotations

import json
import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from lambdad import errors
from lambdad.store.base import StoreError

log = logging.getLogger(__name__)

#: code -> (HTTP status, the message member's name in that error shape)
_WIRE: dict[type[errors.LambdaError], tuple[int, str]] = {
    errors.ResourceNotFoundException: (404, "Message"),
    errors.ResourceConflictException: (409, "message"),
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
    errors.UnknownOperationException: (404, "message"),
    errors.ValidationException: (400, "message"),
    errors.RecursiveInvocationException: (400, "Message"),
    errors.ProvisionedConcurrencyConfigNotFoundException: (404, "message"),
    errors.ServiceException: (500, "Message"),
}


def render(exc: errors.LambdaError, request_id: str | None = None) -> web.Response:
    status, key = _WIRE.get(type(exc), (500, "Message"))
    body: dict[str, object] = {"Type": "Service" if status >= 500 else "User", key: exc.message}
    headers = {
        "x-amzn-ErrorType": exc.code,
        "x-amzn-RequestId": request_id or str(uuid.uuid4()),
    }
    if isinstance(exc, errors.TooManyRequestsException):
        body["Reason"] = exc.reason
        headers["Retry-After"] = str(exc.retry_after)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into an AWS-shaped response; cancellation always propagates."""
    try:
        return await handler(request)
    except errors.LambdaError as exc:
        return render(exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            return render(errors.UnknownOperationException("Unknown operation"))
        if exc.status == 405:
            return render(errors.UnknownOperationException("Unknown operation"))
        if exc.status == 413:
            return render(
                errors.RequestTooLargeException(
                    "Request must be smaller than 70167211 bytes for the operation"
                )
            )
        raise
    except StoreError as exc:  # lambdad's own storage failed: the client sees Lambda's 500
        log.error("%s %s failed in storage: %s", request.method, request.path, exc)
        return render(errors.ServiceException("An internal error occurred."))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return render(errors.ServiceException("An internal error occurred."))
