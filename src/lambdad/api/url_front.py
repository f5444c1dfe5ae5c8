"""The function URL front door: a request whose Host is ``<url-id>.lambda-url.<region>.<any>``
is served here, whatever its method and path, before any Lambda API route.

``url_middleware`` is the application's outermost middleware: one substring test of the Host
for every request, then either the API's own handling or ``serve_url``. A URL request goes:

1. the url-id is looked up in memory (``FunctionUrls.find``); an unknown or malformed one is
   AWS's ``403`` ``{"Message":null}`` (``AccessDeniedException``);
2. a CORS preflight is answered from the config without invoking (``url_cors``), before any
   authorization (browsers send preflights unsigned and without credentials);
3. the body is read (6 MB at most: ``413``);
4. ``authorize(config, request, caller)``, with ``caller = caller_identity(config, request,
   body)`` (``AWS_IAM``: the SigV4 signature, service ``lambda``, verified):
   the URL's resource policy decides (``403`` ``{"Message":"Forbidden"}`` when it refuses);
5. the payload format 2.0 event is built (``url_event``) and the function invoked
   synchronously through ``Invoker`` (concurrency, START / END / REPORT, the invoked ARN
   qualified by the alias);
6. the result becomes the response (``url_event.infer_response``), CORS headers are added, and
   ``write_response`` sends it: the one function a streaming path replaces.

Errors, as AWS URLs give them (docs/function-urls.md): a function error, timeout or crash, or a
result that is no HTTP response: ``502`` ``Internal Server Error``; throttled: ``429``; a
body or event over 6 MB: ``413``; a body that cannot be parsed (bad chunk): ``400``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from lambdad import errors
from lambdad.api import url_cors
from lambdad.api.auth import VERIFIER
from lambdad.api.policy_api import POLICIES
from lambdad.api.url_event import (
    MAX_PRELUDE,
    PRELUDE_END,
    PRELUDE_TYPE,
    BadResponse,
    CallerIdentity,
    UrlRequest,
    UrlResponse,
    build_event,
    infer_response,
    prelude_response,
)
from lambdad.api.url_host import MARK, parse_host
from lambdad.api.urls_api import URLS
from lambdad.api.wire.decode import read_up_to
from lambdad.control.policies import RequestContext
from lambdad.control.url_model import AuthType, FunctionUrlConfig, InvokeMode
from lambdad.invoke import lineage
from lambdad.invoke.payloads import SYNC_LIMIT
from lambdad.invoke.service import Invoker, InvokeRequest, StreamedInvocation
from lambdad.observe.request_ids import new_request_id
from lambdad.runtime.invocation import Outcome

log = logging.getLogger(__name__)

URL_INVOKER = web.AppKey("url_invoker", Invoker)

#: The largest request body a URL takes (AWS: the 6 MB synchronous invoke payload).
BODY_LIMIT = SYNC_LIMIT


class UrlRefused(Exception):
    """A URL request answered with an error response of AWS's (status, body, error type)."""

    def __init__(self, status: int, body: bytes, error_type: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.error_type = error_type


def forbidden() -> UrlRefused:
    """AWS's answer for an unknown url-id, or a caller the URL's policy does not allow."""
    return UrlRefused(403, b'{"Message":null}', "AccessDeniedException")


def denied() -> UrlRefused:
    """AWS's answer when the URL's resource policy (or a missing signature) refuses the
    caller: ``403`` ``{"Message":"Forbidden"}``."""
    return UrlRefused(403, b'{"Message":"Forbidden"}', "AccessDeniedException")


def _failed() -> UrlRefused:
    """A function error, timeout or crash, or a result that is no HTTP response."""
    return UrlRefused(502, b"Internal Server Error")


def _too_large() -> UrlRefused:
    return UrlRefused(
        413, b'{"Message":"Request Entity Too Large"}', "RequestEntityTooLargeException"
    )


def _throttled() -> UrlRefused:
    return UrlRefused(429, b'{"Message":"Too Many Requests"}', "TooManyRequestsException")


@contextlib.contextmanager
def _refused_as_url(request_id: str) -> Iterator[None]:
    """An error of the invoke path becomes the answer a URL gives for it."""
    try:
        yield
    except errors.LambdaError as exc:
        log.info("URL request %s refused: %s: %s", request_id, exc.code, exc.message)
        raise _refusal_of(exc) from None


def _refusal_of(exc: errors.LambdaError) -> UrlRefused:
    """What a URL answers for an error of the invoke path."""
    if isinstance(exc, errors.TooManyRequestsException):
        return _throttled()
    if isinstance(exc, errors.RequestTooLargeException):
        return _too_large()
    if isinstance(exc, errors.ResourceNotFoundException):  # deleted while we looked
        return forbidden()
    return _failed()


# ------------------------------------------------------------------------- seams


async def caller_identity(
    config: FunctionUrlConfig, request: web.Request, body: bytes
) -> CallerIdentity | None:
    """Who signed a request to an ``AWS_IAM`` URL (SigV4, service ``lambda``, with a key of
    ``lambdad keys``, in either auth mode); None for an ``AuthType NONE`` URL, whose requests
    are anonymous whatever they carry, or an unsigned request. A signature that does not hold
    is ``denied()``."""
    if config.auth_type is not AuthType.AWS_IAM:
        return None
    headers = request.headers
    if "Authorization" not in headers and "X-Amz-Signature" not in request.query:
        return None
    verifier = request.app.get(VERIFIER)
    if verifier is None:
        raise denied()
    raw_path, _, raw_query = request.raw_path.partition("?")
    try:
        verified = await verifier.verify_body(request.method, raw_path, raw_query, headers, body)
    except errors.LambdaError as exc:
        log.info("URL request refused: %s: %s", exc.code, exc.message)
        raise denied() from None
    identity = verified.identity
    return CallerIdentity(
        access_key=identity.access_key_id,
        account_id=identity.account_id,
        caller_id=identity.user_id,
        user_arn=identity.user_arn,
        user_id=identity.user_id,
    )


async def authorize(
    config: FunctionUrlConfig, request: web.Request, caller: CallerIdentity | None
) -> None:
    """Raise ``denied()`` when the URL's resource policy does not let ``caller`` invoke it.

    ``AuthType NONE``: the policy must grant the public both ``lambda:InvokeFunctionUrl`` and
    ``lambda:InvokeFunction`` (AWS's rule since October 2025); ``AWS_IAM``: a signed caller of
    the owner account, or of an account the policy grants both actions
    (``control.policies.may_invoke_url``).
    """
    if config.auth_type is AuthType.AWS_IAM and caller is None:
        raise denied()
    context = RequestContext(
        account_id=caller.account_id if caller is not None else None,
        principal_arn=caller.user_arn if caller is not None else None,
        org_id=caller.principal_org_id if caller is not None else None,
    )
    allowed = await request.app[POLICIES].allows_url(
        config.scope, config.function_name, config.alias, config.auth_type.value, context
    )
    if not allowed:
        raise denied()


async def write_response(
    request: web.Request, response: UrlResponse, request_id: str
) -> web.StreamResponse:
    """Send a buffered URL response (the one place a streaming path replaces)."""
    out = web.Response(status=response.status, body=response.body)
    for name, value in response.headers:
        out.headers.add(name, value)
    out.headers["x-amzn-RequestId"] = request_id
    return out


# ------------------------------------------------------------------------- serving


@web.middleware
async def url_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve function URL requests; hand every other request to the API."""
    host = request.headers.get("Host")
    if host is None or MARK not in host.lower():
        return await handler(request)
    return await serve_url(request, host)


async def serve_url(request: web.Request, host: str) -> web.StreamResponse:
    """Answer one URL request (never raises but for cancellation)."""
    request_id = new_request_id()
    try:
        return await _serve(request, host, request_id)
    except UrlRefused as refused:
        return _refusal(refused, request_id)
    except HttpProcessingError as exc:
        log.info("unparseable URL request body: %s", exc.message)
        refusal = _refusal(UrlRefused(400, b'{"Message":"Bad Request"}'), request_id)
        refusal.force_close()
        return refusal
    except ConnectionError:
        log.debug("client went away during a URL request")
        return _refusal(UrlRefused(400, b'{"Message":"Bad Request"}'), request_id)
    except Exception:
        log.exception("URL request %s failed", request_id)
        return _refusal(_failed(), request_id)


def _refusal(refused: UrlRefused, request_id: str) -> web.Response:
    response = web.Response(
        status=refused.status, body=refused.body, content_type="application/json"
    )
    response.headers["x-amzn-RequestId"] = request_id
    if refused.error_type:
        response.headers["x-amzn-ErrorType"] = refused.error_type
    if refused.status == 413:
        response.force_close()  # the body was not read
    return response


def _port_of(host: str, scheme: str) -> str:
    """The port the client addressed: the Host header's, else the scheme's default."""
    _, colon, port = host.strip().rpartition(":")
    if colon and port.isdigit():
        return port
    return "443" if scheme == "https" else "80"


def _config_of(request: web.Request, host: str) -> tuple[FunctionUrlConfig, str]:
    parsed = parse_host(host)
    if parsed is None:
        raise forbidden()
    url_id, region = parsed
    config = request.app[URLS].find(url_id)
    if config is None or config.region != region:
        raise forbidden()
    name = host.strip().lower()
    return config, name.rsplit(":", 1)[0] if ":" in name else name


async def _serve(request: web.Request, host: str, request_id: str) -> web.StreamResponse:
    config, domain = _config_of(request, host)
    cors = config.cors
    if cors is not None and url_cors.is_preflight(request.method, request.headers):
        # Before authorization: a browser never signs a preflight, nor sends its credentials.
        headers = url_cors.preflight_headers(cors, request.headers)
        return await write_response(request, UrlResponse(200, headers, b""), request_id)
    body = await _read_body(request)
    caller = await caller_identity(config, request, body)
    await authorize(config, request, caller)
    trace = lineage.with_root(request.headers.get("X-Amzn-Trace-Id"))
    event = build_event(
        UrlRequest(
            method=request.method,
            raw_target=request.raw_path,
            headers=request.headers,
            body=body,
            source_ip=request.remote or "",
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
            url_id=config.url_id,
            domain_name=domain,
            account_id=config.account_id,
            request_id=request_id,
            caller=caller,
            iam=config.auth_type is AuthType.AWS_IAM,
            scheme=request.scheme,
            port=_port_of(host, request.scheme),
            trace_id=trace,
        )
    )
    invocation = _invoke_request(config, event, request_id, trace)
    if config.invoke_mode is InvokeMode.RESPONSE_STREAM:
        return await _serve_streamed(request, config, invocation)
    outcome = await _invoke(request, config, invocation)
    response = _with_cors(config, request, _buffered(outcome, request_id))
    return await write_response(request, response, request_id)


def _buffered(outcome: Outcome, request_id: str) -> UrlResponse:
    """The response a function's whole result makes (``502`` for an error or no response)."""
    if outcome.function_error:
        raise _failed()
    try:
        return infer_response(outcome.payload)
    except BadResponse as exc:
        log.info("URL request %s: the function's result is no HTTP response: %s", request_id, exc)
        raise _failed() from None


def _with_cors(
    config: FunctionUrlConfig, request: web.Request, response: UrlResponse
) -> UrlResponse:
    """The config's CORS headers in place of any the function set."""
    if config.cors is None:
        return response
    extra = url_cors.response_headers(config.cors, request.headers.get("Origin"))
    headers = url_cors.without_cors(response.headers) + extra
    return UrlResponse(response.status, headers, response.body)


# ------------------------------------------------------------------------- streaming


async def _serve_streamed(
    request: web.Request, config: FunctionUrlConfig, invocation: InvokeRequest
) -> web.StreamResponse:
    """``InvokeMode RESPONSE_STREAM``: the response goes out chunk by chunk as the function
    writes it (chunked transfer), its status and headers from the ``HttpResponseStream``
    prelude when it has one. A function that answers buffered is answered as a buffered URL
    would; a failure after the first byte ends the response unfinished (the connection is
    closed before the last chunk), as the client must not take a broken stream for a whole."""
    request_id = str(invocation.request_id)
    with _refused_as_url(request_id):
        started = await request.app[URL_INVOKER].invoke_streaming(config.scope, invocation)
    if not isinstance(started, StreamedInvocation):  # a RequestResponse invoke always runs
        raise _failed()
    try:
        return await _relay(request, config, started, request_id)
    except BaseException:  # refused, cancelled or failed: the function runs on undisturbed
        started.abandon()
        raise


async def _relay(
    request: web.Request, config: FunctionUrlConfig, started: StreamedInvocation, request_id: str
) -> web.StreamResponse:
    if not started.streamed:
        whole = _with_cors(config, request, _buffered(await started.outcome(), request_id))
        return await write_response(request, whole, request_id)
    head = UrlResponse(200, [("Content-Type", started.content_type)], b"")
    first = b""
    if started.content_type == PRELUDE_TYPE:
        head, first = await _prelude(started, request_id)
    head = _with_cors(config, request, head)
    response = web.StreamResponse(status=head.status)
    for name, value in head.headers:
        response.headers.add(name, value)
    response.headers["x-amzn-RequestId"] = request_id
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        if first:
            await response.write(first)
        async for chunk in started:
            await response.write(chunk)
    except ConnectionError:
        started.abandon()  # the client went away; the function runs on
        log.debug("client went away during streamed URL request %s", request_id)
        return response
    outcome = await started.outcome()
    if outcome.function_error:
        log.info("URL request %s: the function failed mid-stream", request_id)
        response.force_close()
        if request.transport is not None:
            request.transport.close()  # no last chunk: the client sees a broken response
        return response
    await response.write_eof()
    return response


async def _prelude(started: StreamedInvocation, request_id: str) -> tuple[UrlResponse, bytes]:
    """Read up to the prelude's end: the status and headers it sets, and the body bytes that
    came with it. ``502`` when it never ends or is no prelude."""
    held = bytearray()
    async for chunk in started:
        held += chunk
        end = held.find(PRELUDE_END)
        if end >= 0:
            try:
                return prelude_response(bytes(held[:end])), bytes(held[end + len(PRELUDE_END) :])
            except BadResponse as exc:
                log.info("URL request %s: a malformed prelude: %s", request_id, exc)
                break
        if len(held) > MAX_PRELUDE:
            log.info("URL request %s: the prelude does not end", request_id)
            break
    else:
        outcome = await started.outcome()
        if outcome.function_error:
            raise _failed()
        try:  # the stream ended with the prelude: no body
            return prelude_response(bytes(held).rstrip(b"\0")), b""
        except BadResponse:
            pass
    started.abandon()
    raise _failed()


async def _read_body(request: web.Request) -> bytes:
    declared = request.content_length
    if declared is not None and declared > BODY_LIMIT:
        raise _too_large()
    body = await read_up_to(request, BODY_LIMIT + 1)
    if len(body) > BODY_LIMIT:
        raise _too_large()
    return body


async def _invoke(
    request: web.Request, config: FunctionUrlConfig, invocation: InvokeRequest
) -> Outcome:
    with _refused_as_url(str(invocation.request_id)):
        outcome = await request.app[URL_INVOKER].invoke(config.scope, invocation)
    if not isinstance(outcome, Outcome):  # a RequestResponse invoke always runs
        raise _failed()
    return outcome


def _invoke_request(
    config: FunctionUrlConfig, event: bytes, request_id: str, trace: str
) -> InvokeRequest:
    return InvokeRequest(
        function_name=config.function_name,
        qualifier=config.alias,
        payload=event,
        trace_id=trace,
        request_id=request_id,
    )
