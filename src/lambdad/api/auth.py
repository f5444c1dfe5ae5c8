"""Who a request speaks for: its region and, in SigV4 mode, its verified caller.

Open mode (``LAMBDAD_AUTH=open``, the default) accepts any credentials, as a self-hosted
endpoint without IAM may: the credential scope of the ``Authorization`` header names the region,
and the configured account is the caller's. SigV4 mode (``LAMBDAD_AUTH=sigv4``) verifies every
request (``lambdad.api.sigv4``) before it is routed or decoded, except ``GET /_lambdad/health``,
code downloads and handlers marked ``@unsigned`` (function URLs: their ``AuthType`` decides),
and attaches the ``Verified`` caller: its account scopes everything the request touches. A
caller signing with a function's credentials (``lambdad.store.function_credentials``) is
refused once that function no longer exists, as the security token AWS no longer knows.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDictProxy

from lambdad import errors
from lambdad.api.limits import body_limit, refuse_read
from lambdad.api.sigv4 import SigV4Verifier, Verified
from lambdad.api.wire.decode import READ_BODY, read_up_to
from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.store.function_credentials import Session

H = TypeVar("H")

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")
#: The app's verifier (function URLs with ``AuthType=AWS_IAM`` verify with it).
VERIFIER = web.AppKey("sigv4_verifier", SigV4Verifier)
#: The verified caller of a request (SigV4 mode only).
CALLER = web.RequestKey("lambdad_caller", Verified)
#: Paths answered without a signature.
_UNSIGNED = frozenset({"/_lambdad/health"})
#: Code downloads (``Code.Location``, ``Content.Location``): like AWS's presigned S3 URLs, the
#: URL itself is the permission (it names the zip by its SHA-256, which only a reader of the
#: function or layer learns).
_CODE = "/_lambdad/code/"
_UNSIGNED_MARK = "_lambdad_unsigned"


def region_of(headers: CIMultiDictProxy[str], default: str) -> str:
    auth = headers.get("Authorization", "")
    match = _CREDENTIAL.search(auth)
    return match.group(3) if match else default


def caller_of(request: web.Request) -> Verified | None:
    """The verified caller of ``request``; None in open mode."""
    return request.get(CALLER)


def unsigned(handler: H) -> H:
    """Mark a route's handler as verified its own way, not by the API's SigV4 check (function
    URLs: ``AuthType=NONE`` needs nothing, ``AWS_IAM`` calls ``SigV4Verifier.verify`` itself).
    Never decided from the ``Host`` header, which any client may set."""
    setattr(handler, _UNSIGNED_MARK, True)
    return handler


def function_alive(functions: Functions) -> Callable[[Session], Awaitable[bool]]:
    """Whether a function credential's function still exists."""

    async def alive(session: Session) -> bool:
        scope = Scope(session.account_id, session.region)
        try:
            await functions.get(scope, session.function_name, None)
        except errors.ResourceNotFoundException:
            return False
        return True

    return alive


def sigv4_middleware(
    verifier: SigV4Verifier, alive: Callable[[Session], Awaitable[bool]] | None = None
) -> Middleware:
    """Refuse every request whose signature does not hold, with AWS's error; let the rest
    through with their caller attached. ``alive`` says whether a function credential's
    function still exists (None: not checked)."""

    @web.middleware
    async def verify(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if (
            path in _UNSIGNED
            or path.startswith(_CODE)
            or getattr(request.match_info.handler, _UNSIGNED_MARK, False)
        ):
            return await handler(request)
        body = b""
        if request.can_read_body:
            body = await read_up_to(request, body_limit(request) + 1)
            refuse_read(request, len(body))  # 413 as without SigV4, not a signature mismatch
            request[READ_BODY] = body
        raw_path, _, raw_query = request.raw_path.partition("?")
        caller = await verifier.verify_body(
            request.method, raw_path, raw_query, request.headers, body
        )
        if caller.session is not None and alive is not None and not await alive(caller.session):
            raise errors.UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        request[CALLER] = caller
        return await handler(request)

    return verify
