"""Function URL requests over plain HTTP: the payload format 2.0 event, response inference,
CORS, and the status codes and bodies AWS URLs answer with."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Server, wait_until
from tests.url_client import address_of, call_url, make_public

ECHO_NODE = "exports.handler = async (event) => event;\n"

STRUCTURED = """
import base64, json
def handler(event, context):
    return {
        "statusCode": 201,
        "headers": {"X-Custom": "yes", "X-Number": 7, "Content-Type": "text/plain"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\\x00\\xffraw").decode(),
        "isBase64Encoded": True,
    }
"""


@pytest.fixture
def url_of(lam: Any, new_function: Callable[..., dict[str, Any]]) -> Callable[..., str]:
    """``url_of(code, **CreateFunctionUrlConfig)``: a new function's URL ($LATEST)."""

    def make(
        code: str | None = None, *, function: dict[str, Any] | None = None, **config: Any
    ) -> str:
        name = (function or new_function(code))["FunctionName"]
        config.setdefault("AuthType", "NONE")
        url = str(lam.create_function_url_config(FunctionName=name, **config)["FunctionUrl"])
        if config["AuthType"] == "NONE":
            make_public(lam, name)
        return url

    return make


def test_the_event_is_payload_format_2(url_of: Callable[..., str], server: Server) -> None:
    """AWS: headers lowercased and repeats joined with ','; Cookie moved to cookies; rawPath and
    rawQueryString as sent; queryStringParameters decoded with repeats joined; requestContext
    with http, requestId, time, timeEpoch, domainName, domainPrefix, apiId, accountId
    ("anonymous" for AuthType NONE); no authorizer for AuthType NONE; the x-forwarded-for /
    -proto / -port and x-amzn-trace-id headers AWS's front end adds; a text body as it is."""
    url = url_of()
    answer = call_url(
        url,
        "/my/path?a=1&a=2&b=x%20y",
        method="POST",
        body=b'{"hello": "world"}',
        headers=[
            ("Content-Type", "application/json"),
            ("X-Multi", "v1"),
            ("X-Multi", "v2"),
            ("Cookie", "c1=v1; c2=v2"),
            ("User-Agent", "tester/1"),
        ],
    )
    assert answer.status == 200
    assert answer.header("Content-Type") == "application/json"
    event = answer.json()
    url_id = url.split("//")[1].split(".")[0]
    domain = url.split("//")[1].split(":")[0]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/my/path"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-multi"] == "v1,v2"
    assert "cookie" not in event["headers"]
    assert event["headers"]["content-type"] == "application/json"
    assert event["body"] == '{"hello": "world"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert "authorizer" not in context
    assert context["accountId"] == "anonymous"  # AWS, for AuthType NONE
    # The test's address as lambdad sees it: loopback, or a cluster's bridge (tests/cluster.py).
    source = server.cluster.network.gateway if server.cluster is not None else "127.0.0.1"
    assert event["headers"]["x-forwarded-for"] == source
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert event["headers"]["x-forwarded-port"] == url.rsplit(":", 1)[1].rstrip("/")
    assert event["headers"]["x-amzn-trace-id"].startswith("Root=1-")
    assert (context["apiId"], context["domainPrefix"], context["domainName"]) == (
        url_id,
        url_id,
        domain,
    )
    assert context["http"] == {
        "method": "POST",
        "path": "/my/path",
        "protocol": "HTTP/1.1",
        "sourceIp": source,
        "userAgent": "tester/1",
    }
    assert answer.header("x-amzn-RequestId") == context["requestId"]
    assert isinstance(context["timeEpoch"], int)
    assert context["time"].endswith(" +0000")


def test_optional_members_are_left_out_and_binary_bodies_are_base64(
    url_of: Callable[..., str],
) -> None:
    """AWS: without a query, cookies or body those members are absent; a binary content type, or
    a body that is not UTF-8, is base64 with isBase64Encoded true."""
    url = url_of()
    bare = call_url(url).json()
    assert not {"cookies", "queryStringParameters", "body"} & set(bare)
    assert bare["isBase64Encoded"] is False
    png = call_url(
        url, method="PUT", body=b"\x89PNG\x00", headers={"Content-Type": "image/png"}
    ).json()
    assert (png["isBase64Encoded"], base64.b64decode(png["body"])) == (True, b"\x89PNG\x00")
    latin = call_url(
        url, method="POST", body=b"caf\xe9", headers={"Content-Type": "text/plain"}
    ).json()
    assert (latin["isBase64Encoded"], base64.b64decode(latin["body"])) == (True, b"caf\xe9")


def test_a_node_function_gets_the_same_event(
    url_of: Callable[..., str], new_function: Callable[..., dict[str, Any]]
) -> None:
    """A Node.js handler echoing its event sees the same payload format 2.0 event."""
    function = new_function(
        files={"index.js": ECHO_NODE}, runtime="nodejs20.x", handler="index.handler"
    )
    event = call_url(url_of(function=function), "/n?x=1").json()
    assert (event["rawPath"], event["queryStringParameters"]) == ("/n", {"x": "1"})


def test_a_structured_response_sets_status_headers_cookies_and_body(
    url_of: Callable[..., str],
) -> None:
    """AWS: a result with statusCode is the response: its status, headers (values as text),
    each cookie as its own Set-Cookie, and a base64 body decoded when isBase64Encoded."""
    answer = call_url(url_of(STRUCTURED))
    assert answer.status == 201
    assert answer.header("X-Custom") == "yes"
    assert answer.header("X-Number") == "7"
    assert answer.header("Content-Type") == "text/plain"
    assert answer.all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert answer.body == b"\x00\xffraw"


def test_any_other_result_is_sent_as_json_text(url_of: Callable[..., str]) -> None:
    """AWS: a result without statusCode is sent with 200 and application/json as its raw JSON
    text: the string "Hello, world!" keeps its quotes."""
    answer = call_url(url_of('def handler(e, c):\n    return "Hello, world!"\n'))
    assert (answer.status, answer.body) == (200, b'"Hello, world!"')
    assert answer.header("Content-Type") == "application/json"


@pytest.mark.parametrize(
    "code",
    [
        "def handler(e, c):\n    raise ValueError('boom')\n",
        "import os\ndef handler(e, c):\n    os._exit(3)\n",
        "def handler(e, c):\n    return {'statusCode': 'teapot'}\n",
        "def handler(e, c):\n    return {'statusCode': 200, 'body': '!',"
        " 'isBase64Encoded': True}\n",
    ],
    ids=["error", "crash", "bad-status", "bad-base64"],
)
def test_failures_are_502_internal_server_error(url_of: Callable[..., str], code: str) -> None:
    """AWS: a function error or crash, or a result that is no HTTP response, answers 502 with the
    body "Internal Server Error"."""
    answer = call_url(url_of(code))
    assert (answer.status, answer.body) == (502, b"Internal Server Error")


@pytest.mark.slow
def test_a_timeout_is_a_502(url_of: Callable[..., str], new_function: Any) -> None:
    """AWS: a function that runs out of time answers 502 "Internal Server Error"."""
    function = new_function("import time\ndef handler(e, c):\n    time.sleep(5)\n", Timeout=1)
    answer = call_url(url_of(function=function))
    assert (answer.status, answer.body) == (502, b"Internal Server Error")


def test_a_throttled_url_is_429(url_of: Callable[..., str], lam: Any, new_function: Any) -> None:
    """AWS: a URL whose function cannot run for lack of concurrency answers 429."""
    function = new_function()
    lam.put_function_concurrency(
        FunctionName=function["FunctionName"], ReservedConcurrentExecutions=0
    )
    answer = call_url(url_of(function=function))
    assert answer.status == 429
    assert answer.header("x-amzn-ErrorType") == "TooManyRequestsException"


@pytest.mark.parametrize(
    "host",
    [
        "0123456789abcdef0123456789abcdef.lambda-url.us-east-1.localhost",
        "not_an_id.lambda-url.us-east-1.localhost:9",
        ".lambda-url.",
        "x.lambda-url.us-east-1",
    ],
)
def test_unknown_or_malformed_url_hosts_are_403(server: Server, host: str) -> None:
    """AWS: a URL host with no such url-id answers 403 {"Message":null} (AccessDenied)."""
    answer = call_url(server.endpoint, host=host)
    assert (answer.status, answer.body) == (403, b'{"Message":null}')
    assert answer.header("x-amzn-ErrorType") == "AccessDeniedException"


def test_a_url_answers_only_in_its_own_region(url_of: Callable[..., str]) -> None:
    """The url-id is found only under the region it was created in (else 403)."""
    url = url_of()
    other = url.split("//")[1].rstrip("/").replace("us-east-1", "eu-west-1")
    assert call_url(url, host=other).status == 403
    assert call_url(url, host=url.split("//")[1].rstrip("/").upper()).status == 200


def test_api_paths_on_a_url_host_reach_the_function(url_of: Callable[..., str]) -> None:
    """Any path and method on a URL host is the function's, even one the Lambda API routes."""
    answer = call_url(url_of(), "/2015-03-31/functions", method="DELETE")
    assert answer.json()["requestContext"]["http"]["method"] == "DELETE"


def test_oversized_bodies_are_413(url_of: Callable[..., str]) -> None:
    """AWS: a request body over 6 MB answers 413, declared or sent chunked, and nothing runs."""
    url = url_of()
    big = b"x" * (6 * 1024 * 1024 + 1)
    assert call_url(url, method="POST", body=big).status == 413
    port = url.rsplit(":", 1)[1].rstrip("/")
    host = url.split("//")[1].rstrip("/")
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Transfer-Encoding: chunked",
         "-H", f"Host: {host}", "--data-binary", "@-", f"http://{address_of(int(port))}:{port}/"],
        input=big, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout == b"413"


def test_an_event_over_the_invoke_limit_is_413(url_of: Callable[..., str]) -> None:
    """A binary body under 6 MB whose base64 event is over the 6 MB invoke payload is 413."""
    body = b"\xff" * (5 * 1024 * 1024)
    answer = call_url(
        url_of(), method="POST", body=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert answer.status == 413


def test_curl_reaches_a_url_as_returned(url_of: Callable[..., str]) -> None:
    """curl can call the URL as CreateFunctionUrlConfig returned it (resolved to loopback)."""
    url = url_of()
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    done = subprocess.run(
        ["curl", "-s", "--resolve", f"{host}:{port}:{address_of(int(port))}", url + "curl?q=1"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert json.loads(done.stdout)["rawQueryString"] == "q=1"


def test_an_alias_url_invokes_the_alias(lam: Any, new_function: Any) -> None:
    """A URL of an alias runs the alias's version with the alias-qualified invoked ARN."""
    name = new_function("def handler(e, c):\n    return {'arn': c.invoked_function_arn}\n")[
        "FunctionName"
    ]
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    url = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")[
        "FunctionUrl"
    ]
    make_public(lam, name, "live")
    assert call_url(url).json()["arn"].endswith(f":function:{name}:live")


def test_a_none_url_needs_a_public_grant_of_both_actions(lam: Any, new_function: Any) -> None:
    """AWS (since October 2025): an AuthType NONE URL answers 403 {"Message":"Forbidden"} unless
    its resource policy grants the public both lambda:InvokeFunctionUrl and
    lambda:InvokeFunction; removing either grant closes it again."""
    name = new_function()["FunctionName"]
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    refused = call_url(url)
    assert (refused.status, refused.body) == (403, b'{"Message":"Forbidden"}')
    lam.add_permission(
        FunctionName=name,
        StatementId="url-only",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    assert call_url(url).status == 403
    lam.add_permission(
        FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction", Principal="*"
    )
    assert call_url(url).status == 200
    lam.remove_permission(FunctionName=name, StatementId="invoke")
    assert call_url(url).status == 403


def test_a_grant_for_another_auth_type_does_not_open_a_none_url(
    lam: Any, new_function: Any
) -> None:
    """AWS: a statement conditioned on lambda:FunctionUrlAuthType AWS_IAM does not apply to a
    NONE URL's anonymous requests."""
    name = new_function()["FunctionName"]
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    lam.add_permission(
        FunctionName=name,
        StatementId="iam-url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="AWS_IAM",
    )
    lam.add_permission(
        FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction", Principal="*"
    )
    assert call_url(url).status == 403


def test_an_unsigned_request_to_an_aws_iam_url_is_forbidden(url_of: Callable[..., str]) -> None:
    """AWS: an AWS_IAM URL refuses a request without a SigV4 signature with 403."""
    answer = call_url(url_of(AuthType="AWS_IAM"))
    assert (answer.status, answer.body) == (403, b'{"Message":"Forbidden"}')


CORS = {
    "AllowOrigins": ["https://app.example.com"],
    "AllowMethods": ["GET", "POST"],
    "AllowHeaders": ["x-token"],
    "ExposeHeaders": ["x-custom"],
    "MaxAge": 300,
    "AllowCredentials": True,
}
PREFLIGHT_BOOM = "def handler(e, c):\n    raise RuntimeError('the function must not run')\n"


def test_preflight_is_answered_from_the_config_without_invoking(
    url_of: Callable[..., str],
) -> None:
    """AWS: with Cors set, a preflight OPTIONS is answered by Lambda (200, the allowed methods,
    headers, max age, credentials for the origin) and the function is not invoked."""
    url = url_of(PREFLIGHT_BOOM, Cors=CORS)
    answer = call_url(
        url,
        method="OPTIONS",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Token",
        },
    )
    assert answer.status == 200
    assert answer.header("Access-Control-Allow-Origin") == "https://app.example.com"
    assert answer.header("Access-Control-Allow-Methods") == "GET,POST"
    assert answer.header("Access-Control-Allow-Headers") == "x-token"
    assert answer.header("Access-Control-Max-Age") == "300"
    assert answer.header("Access-Control-Allow-Credentials") == "true"


@pytest.mark.parametrize(
    ("origin", "method"),
    [("https://evil.example.com", "GET"), ("https://app.example.com", "DELETE")],
)
def test_a_disallowed_preflight_gets_no_cors_headers(
    url_of: Callable[..., str], origin: str, method: str
) -> None:
    """AWS: a preflight from an origin, or for a method, the config does not allow is answered
    without CORS headers (the browser then refuses), still without invoking the function."""
    answer = call_url(
        url_of(PREFLIGHT_BOOM, Cors=CORS),
        method="OPTIONS",
        headers={"Origin": origin, "Access-Control-Request-Method": method},
    )
    assert answer.status == 200
    assert not [n for n, _ in answer.headers if n.lower().startswith("access-control-")]


def test_responses_carry_the_configs_cors_headers(url_of: Callable[..., str]) -> None:
    """AWS: a response to an allowed origin carries Allow-Origin, Allow-Credentials and
    Expose-Headers from the config (replacing the function's own); other origins get none."""
    code = (
        "def handler(e, c):\n"
        "    return {'statusCode': 200, 'headers': {'Access-Control-Allow-Origin': '*'}}\n"
    )
    url = url_of(code, Cors=CORS)
    allowed = call_url(url, headers={"Origin": "https://app.example.com"})
    assert allowed.all("Access-Control-Allow-Origin") == ["https://app.example.com"]
    assert allowed.header("Access-Control-Expose-Headers") == "x-custom"
    assert allowed.header("Access-Control-Allow-Credentials") == "true"
    other = call_url(url, headers={"Origin": "https://evil.example.com"})
    assert other.status == 200
    assert not [n for n, _ in other.headers if n.lower().startswith("access-control-")]


def test_without_cors_options_reaches_the_function(url_of: Callable[..., str]) -> None:
    """A URL without Cors passes OPTIONS requests to the function, preflight or not."""
    answer = call_url(
        url_of(),
        method="OPTIONS",
        headers={"Origin": "https://a.example", "Access-Control-Request-Method": "GET"},
    )
    assert answer.json()["requestContext"]["http"]["method"] == "OPTIONS"


def test_a_wildcard_origin_answers_star(url_of: Callable[..., str]) -> None:
    """AllowOrigins ["*"] without credentials answers Access-Control-Allow-Origin: *."""
    url = url_of(Cors={"AllowOrigins": ["*"]})
    answer = call_url(url, headers={"Origin": "https://any.example"})
    assert answer.header("Access-Control-Allow-Origin") == "*"


def _raw(url: str, request: bytes) -> bytes:
    """Send raw bytes to the URL's server and read the answer until it closes or 5 s pass."""
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    with socket.create_connection((address_of(port), port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data and data.startswith(b"HTTP/1.1 "):
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = re.search(rb"(?i)content-length: (\d+)", head)
                    if length and len(rest) >= int(length[1]):
                        break
    return data


def test_headers_with_odd_bytes_reach_the_function(url_of: Callable[..., str]) -> None:
    """A header value with bytes outside ASCII is passed on (decoded as Latin-1, never a 5xx)."""
    url = url_of()
    host = url.split("//")[1].rstrip("/").encode()
    answer = _raw(url, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nX-Odd: caf\xe9\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    event = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert event["headers"]["x-odd"] == "caf\u00e9"


def test_a_broken_chunked_body_is_400(url_of: Callable[..., str]) -> None:
    """A chunked body that cannot be parsed is answered 400, not 5xx, and nothing runs (the HTTP
    layer refuses it before any routing, in the API's error shape)."""
    url = url_of(PREFLIGHT_BOOM)
    host = url.split("//")[1].rstrip("/").encode()
    answer = _raw(
        url,
        b"POST / HTTP/1.1\r\nHost: " + host + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n",
    )
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer[:200]


def test_url_invocations_log_start_end_report(
    url_of: Callable[..., str], new_function: Any, server: Server
) -> None:
    """A URL invocation is an invocation like any other: START, END and REPORT lines under the
    request id the response's x-amzn-RequestId and the event's requestContext.requestId carry."""
    function = new_function()
    answer = call_url(url_of(function=function))
    request_id = answer.header("x-amzn-RequestId")
    assert answer.json()["requestContext"]["requestId"] == request_id

    def lines() -> list[str]:
        path = f"/_lambdad/logs?function={function['FunctionName']}"
        return [e["message"] for e in server.get_json(path)["events"]]

    wait_until(lambda: any(m.startswith(f"REPORT RequestId: {request_id}") for m in lines()))
    assert any(m.startswith(f"START RequestId: {request_id}") for m in lines())
    assert any(m.startswith(f"END RequestId: {request_id}") for m in lines())
