"""Function URL pieces without a server: Host parsing, the URL shown, text types, response
inference and CORS matching."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from lambdad.api import url_cors, url_event
from lambdad.api.url_event import BadResponse, infer_response, is_text
from lambdad.api.url_host import UrlShape, parse_host
from lambdad.control.url_model import CorsSettings, new_url_id

ID = "0123456789abcdefghijklmnopqrstuv"


def test_url_ids_are_32_lowercase_alphanumerics() -> None:
    """A url-id is 32 characters of a-z and 0-9, different each time."""
    ids = {new_url_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and i.isalnum() and i == i.lower() for i in ids)


@pytest.mark.parametrize(
    ("host", "parsed"),
    [
        (f"{ID}.lambda-url.us-east-1.localhost:9000", (ID, "us-east-1")),
        (f"{ID.upper()}.LAMBDA-URL.EU-WEST-1.on.aws", (ID, "eu-west-1")),
        (f"{ID}.lambda-url.us-east-1", None),
        (".lambda-url.us-east-1.x", None),
        (f"{ID}.lambda-url..x", None),
        ("a/b.lambda-url.us-east-1.x", None),
    ],
)
def test_url_hosts_parse_with_or_without_a_port(host: str, parsed: object) -> None:
    """``<url-id>.lambda-url.<region>.<anything>[:port]`` (any case) names a URL; nothing else."""
    assert parse_host(host) == parsed


def test_the_schemes_default_port_is_left_out() -> None:
    """The URL shows the port unless it is the scheme's default."""
    assert UrlShape().url(ID, "us-east-1", 9000) == (
        f"http://{ID}.lambda-url.us-east-1.localhost:9000/"
    )
    assert (
        UrlShape("http", "fn.test", 0).url(ID, "r-1", 80) == f"http://{ID}.lambda-url.r-1.fn.test/"
    )
    assert (
        UrlShape("https", "x.io", 443).url(ID, "r-1", 9000) == f"https://{ID}.lambda-url.r-1.x.io/"
    )


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        (None, True),
        ("text/html; charset=utf-8", True),
        ("application/json", True),
        ("application/vnd.api+json", True),
        ("application/x-www-form-urlencoded", True),
        ("application/xml", True),
        ("application/octet-stream", False),
        ("image/png", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_text_content_types(content_type: str | None, text: bool) -> None:
    """Text types travel as text; every other type is base64."""
    assert is_text(content_type) is text


def test_structured_responses_and_raw_json() -> None:
    """statusCode makes a structured response; anything else is the raw JSON with 200."""
    raw = infer_response(b'{"a": 1}')
    assert (raw.status, raw.body, raw.headers) == (
        200,
        b'{"a": 1}',
        [("Content-Type", "application/json")],
    )
    body = base64.b64encode(b"\x00\x01").decode()
    structured = infer_response(
        b'{"statusCode": "204", "headers": {"A": true, "Content-Length": "9"},'
        b' "cookies": ["c=1"], "body": "' + body.encode() + b'", "isBase64Encoded": true}'
    )
    assert structured.status == 204
    assert structured.headers == [
        ("A", "true"),
        ("Content-Type", "application/json"),
        ("Set-Cookie", "c=1"),
    ]
    assert structured.body == b"\x00\x01"
    assert infer_response(b'{"statusCode": 200, "body": {"x": 1}}').body == b'{"x":1}'


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"statusCode": 99}',
        b'{"statusCode": true}',
        b'{"statusCode": 200, "headers": ["a"]}',
        b'{"statusCode": 200, "headers": {"a": {"b": 1}}}',
        b'{"statusCode": 200, "body": "@@", "isBase64Encoded": true}',
    ],
)
def test_results_that_are_no_response(payload: bytes) -> None:
    """A result lambdad cannot turn into a response raises BadResponse (a 502)."""
    with pytest.raises(BadResponse):
        infer_response(payload)


def _headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def test_cors_matching() -> None:
    """Origins match exactly or by *; * with credentials echoes the origin."""
    cors = CorsSettings(allow_origins=("https://a.example",), allow_methods=("*",))
    request = _headers(Origin="https://A.example", Access_Control_Request_Method="PATCH")
    assert ("Access-Control-Allow-Origin", "https://A.example") in url_cors.preflight_headers(
        cors, request
    )
    assert url_cors.response_headers(cors, "https://b.example") == []
    star = CorsSettings(allow_origins=("*",), allow_credentials=True)
    assert url_cors.response_headers(star, "https://b.example")[0] == (
        "Access-Control-Allow-Origin",
        "https://b.example",
    )


def test_a_prelude_sets_status_headers_and_cookies() -> None:
    """An HttpResponseStream prelude: statusCode, headers and each cookie as a Set-Cookie;
    statusCode defaults to 200 and Content-Type to application/octet-stream; a prelude that is
    not a JSON object is no response."""
    head = url_event.prelude_response(b'{"headers": {"x-a": 1}, "cookies": ["c=1"]}')
    assert head.status == 200
    assert head.headers == [
        ("Content-Type", "application/octet-stream"),
        ("x-a", "1"),
        ("Set-Cookie", "c=1"),
    ]
    typed = url_event.prelude_response(b'{"statusCode": 404, "headers": {"content-type": "t"}}')
    assert (typed.status, typed.headers) == (404, [("content-type", "t")])
    assert url_event.prelude_response(b"").status == 200
    for bad in (b"[1]", b"{", b'{"statusCode": 1000}'):
        with pytest.raises(url_event.BadResponse):
            url_event.prelude_response(bad)
