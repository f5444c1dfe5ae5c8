"""Function URL payloads: the request event (payload format 2.0) and the response inferred from
what the function returned (reference spec section 6; AWS's ``urls-invocation`` page).

Request rules:

- header names are lowercased, repeated headers joined with ``,``; ``Cookie`` headers become
  ``cookies`` (split on ``;``), never a header;
- ``rawPath`` is the path as sent, ``rawQueryString`` the query as sent (no ``?``);
  ``queryStringParameters`` are decoded, repeated names joined with ``,``;
- a body whose content type is not text, or that is not UTF-8, is base64 with
  ``isBase64Encoded: true``; text types are ``text/*`` and the ``application/`` types
  ``json``, ``javascript``, ``xml``, ``x-www-form-urlencoded``, ``yaml``, ``x-yaml``,
  ``graphql`` and any ``+json`` / ``+xml`` suffix;
- ``cookies``, ``queryStringParameters`` and ``body`` are left out when there are none;
- ``requestContext.authorizer`` is present only for ``AWS_IAM`` URLs.

Response rules: a JSON object with ``statusCode`` is a structured response (``headers``,
``body``, ``cookies`` → one ``set-cookie`` each, ``isBase64Encoded``); any other JSON is sent
as it is with status 200 and ``content-type: application/json``. A structured response lambdad
cannot honour (a status outside 100-599, headers that are not an object, a body that is not
valid base64) is a 502, as is a result that is not JSON.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import msgspec
from multidict import CIMultiDictProxy

_TEXT_SUBTYPES = frozenset(
    {"json", "javascript", "xml", "x-www-form-urlencoded", "yaml", "x-yaml", "graphql"}
)
#: Response headers lambdad writes itself (the framing of the HTTP/1.1 response).
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


@dataclasses.dataclass(frozen=True, slots=True)
class CallerIdentity:
    """Who signed a request to an ``AWS_IAM`` URL (``requestContext.authorizer.iam``)."""

    access_key: str | None = None
    account_id: str | None = None
    caller_id: str | None = None
    principal_org_id: str | None = None
    user_arn: str | None = None
    user_id: str | None = None

    def to_event(self) -> dict[str, Any]:
        return {
            "iam": {
                "accessKey": self.access_key,
                "accountId": self.account_id,
                "callerId": self.caller_id,
                "cognitoIdentity": None,
                "principalOrgId": self.principal_org_id,
                "userArn": self.user_arn,
                "userId": self.user_id,
            }
        }


@dataclasses.dataclass(frozen=True, slots=True)
class UrlRequest:
    """What the event is built from: the HTTP request as read, and where it was addressed."""

    method: str
    raw_target: str
    headers: CIMultiDictProxy[str]
    body: bytes
    source_ip: str
    protocol: str
    url_id: str
    domain_name: str
    account_id: str
    request_id: str
    caller: CallerIdentity | None = None
    iam: bool = False
    #: The scheme and port the client addressed (``x-forwarded-proto`` / ``-port``).
    scheme: str = "http"
    port: str = "80"
    trace_id: str = ""


def is_text(content_type: str | None) -> bool:
    """Whether a body of this content type travels as text (else base64)."""
    if not content_type:
        return True  # no type: sent as text when it is UTF-8
    kind = content_type.split(";", 1)[0].strip().lower()
    major, _, minor = kind.partition("/")
    if major == "text":
        return True
    if major != "application":
        return False
    return minor in _TEXT_SUBTYPES or minor.endswith(("+json", "+xml"))


def _clf_time(now: float) -> str:
    t = time.gmtime(now)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _text(value: str) -> str:
    """A header or path as text: bytes that were not UTF-8 (kept by the HTTP parser as lone
    surrogates, which JSON cannot carry) are read as Latin-1 instead, as HTTP/1.1 allows."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("latin-1")
    return value


def _headers_and_cookies(headers: CIMultiDictProxy[str]) -> tuple[dict[str, str], list[str]]:
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, raw in headers.items():
        key, value = _text(name).lower(), _text(raw)
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif key in joined:
            joined[key] = f"{joined[key]},{value}"
        else:
            joined[key] = value
    return joined, cookies


def _query(raw: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def _body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    if is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _forwarded(headers: dict[str, str], request: UrlRequest) -> None:
    """The headers AWS's front end adds to a URL request: who connected, over what scheme
    and port (kept when a proxy in front of lambdad set them), and the trace header."""
    forwarded_for = headers.get("x-forwarded-for")
    if request.source_ip:
        headers["x-forwarded-for"] = (
            f"{forwarded_for}, {request.source_ip}" if forwarded_for else request.source_ip
        )
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-forwarded-port", request.port)
    if request.trace_id:
        headers.setdefault("x-amzn-trace-id", request.trace_id)


def build_event(request: UrlRequest, now: float | None = None) -> bytes:
    """The payload format 2.0 event of ``request``, as JSON."""
    now = time.time() if now is None else now
    raw_path, _, raw_query = _text(request.raw_target).partition("?")
    headers, cookies = _headers_and_cookies(request.headers)
    _forwarded(headers, request)
    context: dict[str, Any] = {
        # AWS: "anonymous" for AuthType NONE, the owner's account for AWS_IAM.
        "accountId": request.account_id if request.iam else "anonymous",
        "apiId": request.url_id,
        "authentication": None,
    }
    if request.iam:
        context["authorizer"] = (request.caller or CallerIdentity()).to_event()
    context.update(
        {
            "domainName": request.domain_name,
            "domainPrefix": request.url_id,
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": _clf_time(now),
            "timeEpoch": int(now * 1000),
        }
    )
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = _query(raw_query) if raw_query else None
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = context
    encoded = False
    if request.body:
        event["body"], encoded = _body(request.body, headers.get("content-type"))
    event["pathParameters"] = None
    event["isBase64Encoded"] = encoded
    event["stageVariables"] = None
    return _encode(event)


# ------------------------------------------------------------------------- response


class BadResponse(Exception):
    """The function's result cannot be turned into an HTTP response (a 502)."""


@dataclasses.dataclass(frozen=True, slots=True)
class UrlResponse:
    """The HTTP response a URL answers: status, headers (a name may repeat) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    raise BadResponse(f"a header value that is not a string: {value!r}")


def _safe(text: str) -> bool:
    return "\r" not in text and "\n" not in text and "\0" not in text


def _status(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise BadResponse(f"statusCode {value!r} is not an HTTP status")
    return value


def _structured(result: Mapping[str, Any]) -> UrlResponse:
    status = _status(result["statusCode"])
    headers: list[tuple[str, str]] = []
    given = result.get("headers") or {}
    if not isinstance(given, dict):
        raise BadResponse("headers is not an object")
    for name, value in given.items():
        text = _header_value(value)
        if name and _safe(name) and _safe(text) and name.lower() not in _OWN_HEADERS:
            headers.append((name, text))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise BadResponse("cookies is not a list")
    headers.extend(("Set-Cookie", c) for c in cookies if isinstance(c, str) and _safe(c))
    return UrlResponse(status, headers, _response_body(result))


def _response_body(result: Mapping[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        return _encode(body)
    if result.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadResponse("body is not valid base64") from exc
    return body.encode("utf-8", "surrogatepass")


def infer_response(payload: bytes) -> UrlResponse:
    """The HTTP response for a function's result; ``BadResponse`` when there is none."""
    try:
        result = _decode(payload)
    except msgspec.DecodeError as exc:
        raise BadResponse("the result is not JSON") from exc
    if isinstance(result, dict) and "statusCode" in result:
        return _structured(result)
    return UrlResponse(200, [("Content-Type", "application/json")], payload)


#: The ``Content-Type`` of a streamed response that starts with an HTTP prelude
#: (``awslambda.HttpResponseStream.from``): JSON metadata, then ``PRELUDE_END``, then the body.
PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_END = b"\0" * 8
#: The longest prelude lambdad waits for before it calls the response malformed.
MAX_PRELUDE = 1 << 20


def prelude_response(prelude: bytes) -> UrlResponse:
    """The status and headers a streamed response's prelude sets (``statusCode`` 200,
    ``Content-Type`` ``application/octet-stream`` when absent); the body follows the prelude."""
    try:
        meta = _decode(prelude) if prelude.strip() else {}
    except msgspec.DecodeError as exc:
        raise BadResponse("the prelude is not JSON") from exc
    if not isinstance(meta, dict):
        raise BadResponse("the prelude is not an object")
    head = _structured({**meta, "statusCode": meta.get("statusCode", 200), "body": None})
    headers = [(n, v) for n, v in head.headers if not _defaulted(n, v, meta)]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.insert(0, ("Content-Type", "application/octet-stream"))
    return UrlResponse(head.status, headers, b"")


def _defaulted(name: str, value: str, meta: Mapping[str, Any]) -> bool:
    """The ``Content-Type`` ``_structured`` adds when the result names none."""
    given = meta.get("headers") or {}
    named = isinstance(given, dict) and any(str(k).lower() == "content-type" for k in given)
    return name == "Content-Type" and value == "application/json" and not named
