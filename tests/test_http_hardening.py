"""The API's HTTP edge: connection timeouts, AWS-shaped parser errors, body limits, request ids."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest

from lambdad import errors
from lambdad.api.errors import render, wire_of
from tests.conftest import Server

#: SO_LINGER on with a zero timeout: close() resets the connection.
RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"

#: A hang guard: every exchange below must end well within this many seconds.
GUARD = 20.0

#: Short head and body deadlines; a long idle timeout, so closes below are the deadlines'.
TIMEOUTS = {
    "LAMBDAD_HTTP_IDLE_TIMEOUT": "60",
    "LAMBDAD_HTTP_HEADER_TIMEOUT": "1",
    "LAMBDAD_HTTP_BODY_TIMEOUT": "1",
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.conftest import launch_server, shutdown

    srv = launch_server(tmp_path_factory.mktemp("edge"), TIMEOUTS)
    yield srv
    shutdown(srv)


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=GUARD)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails on the hang guard."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"connection still open after {GUARD} s: {data!r}") from None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def trickle(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` a byte every 50 ms until the server closes; fail on the hang guard."""
    deadline = time.monotonic() + GUARD
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return  # closed: the deadline worked
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the behaviour under test: a slow client, not synchronisation
    raise AssertionError("a trickling client was never cut off")


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def assert_aws_error(raw: bytes, status: int, code: str) -> dict[str, Any]:
    got, headers, body = parse(raw)
    assert (got, headers.get("x-amzn-errortype")) == (status, code), raw
    assert headers.get("x-amzn-requestid"), raw
    assert headers.get("content-type", "").startswith("application/json"), raw
    assert set(body) == {"Type", "message"} or set(body) == {"Type", "Message"}, body
    return dict(body)


def test_idle_new_connection_is_closed(start_server: Callable[..., Server]) -> None:
    """A connection that never sends a request is closed after the idle timeout."""
    server = start_server({"LAMBDAD_HTTP_IDLE_TIMEOUT": "1"})
    with connect(server) as sock:
        assert read_until_closed(sock) == b""


def test_idle_keep_alive_connection_is_closed(start_server: Callable[..., Server]) -> None:
    """A keep-alive connection idle after a response is closed after the idle timeout."""
    server = start_server({"LAMBDAD_HTTP_IDLE_TIMEOUT": "1"})
    with connect(server) as sock:
        sock.sendall(b"GET /_lambdad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw


def test_partial_head_is_closed(edge: Server) -> None:
    """A request head that never completes is closed after the header timeout."""
    with connect(edge) as sock:
        sock.sendall(b"GET /_lambdad/health HTTP/1.1\r\nHost: x\r\n")
        assert read_until_closed(sock) == b""


def test_trickled_head_is_closed(edge: Server) -> None:
    """Sending a head one byte at a time does not extend the header timeout."""
    head = b"GET /_lambdad/health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
    with connect(edge) as sock:
        trickle(sock, head)
        assert read_until_closed(sock) == b""


def test_short_body_is_closed(edge: Server) -> None:
    """A body shorter than its declared Content-Length is closed after the body timeout."""
    with connect(edge) as sock:
        sock.sendall(
            b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        assert read_until_closed(sock) == b""


def test_trickled_body_is_closed(edge: Server) -> None:
    """Sending a body slowly does not extend the body timeout."""
    with connect(edge) as sock:
        sock.sendall(
            b"POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        trickle(sock, b" " * 100000)
        read_until_closed(sock)


@pytest.mark.parametrize(
    "path",
    [
        "/2014-11-13/functions/fn/invoke-async/",
        "/2015-03-31/functions/fn/invocations",
        "/2015-03-31/functions",
        "/2015-03-31/functions/fn/aliases",
        "/2018-10-31/layers/lay/versions",
    ],
)
def test_huge_declared_length_is_refused_before_reading(edge: Server, path: str) -> None:
    """A declared Content-Length over the operation's limit is answered 413 at once.

    AWS answers ``RequestEntityTooLargeException`` (413) for a request over the limit.
    """
    with connect(edge) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{{".encode()
        )
        raw = sock.recv(65536)
    body = assert_aws_error(raw, 413, "RequestEntityTooLargeException")
    if "invoke-async" in path:  # an asynchronous invoke: Event's message, with the size
        assert body["message"] == (
            "99999999999 byte payload is too large for the Event invocation type "
            "(limit 1048576 bytes)"
        )
    else:
        assert "Request must be smaller than" in body["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/2015-03-31/functions"),
        ("PUT", "/2015-03-31/functions/fn/code"),
        ("POST", "/2018-10-31/layers/lay/versions"),
    ],
)
def test_code_uploads_may_declare_more_than_6_mb(edge: Server, method: str, path: str) -> None:
    """CreateFunction, UpdateFunctionCode and PublishLayerVersion take up to 70,167,211 bytes
    (a 50 MB zip in base64), so a 10 MB declared body is waited for, not refused.
    """
    with connect(edge) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n{{".encode()
        )
        assert read_until_closed(sock) == b""  # closed by the body timeout, not answered 413


def test_event_invoke_declared_over_its_limit_is_refused(edge: Server) -> None:
    """An Event invoke declaring more than 1 MB is refused before its body is read.

    AWS answers 413 ``RequestEntityTooLargeException`` with "<n> byte payload is too large for
    the Event invocation type (limit 1048576 bytes)".
    """
    size = 2 * 1024 * 1024
    with connect(edge) as sock:
        sock.sendall(
            b"POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: x\r\n"
            b"X-Amz-Invocation-Type: Event\r\n" + f"Content-Length: {size}\r\n\r\n{{".encode()
        )
        raw = sock.recv(65536)
    body = assert_aws_error(raw, 413, "RequestEntityTooLargeException")
    assert body["message"] == (
        f"{size} byte payload is too large for the Event invocation type (limit 1048576 bytes)"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /_lambdad/health HTTP/9.9\r\n\r\n",
        b"GET /_lambdad/health HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /_lambdad/health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /_lambdad/health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /2015-03-31/functions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /_lambdad/health HTTP/1.1\r\nX: \x00\r\n\r\n",
    ],
    ids=["request-line", "version", "header", "length", "two-lengths", "chunk", "nul"],
)
def test_parser_errors_are_aws_shaped(edge: Server, raw: bytes) -> None:
    """A request aiohttp cannot parse gets a JSON 400 with AWS's error headers, then a close."""
    with connect(edge) as sock:
        sock.sendall(raw)
        answer = read_until_closed(sock)
    assert_aws_error(answer, 400, "InvalidRequestContentException")


@pytest.mark.parametrize(
    "path",
    [
        "/2015-03-31/functions",
        "/2015-03-31/functions/fn/invocations",
        "/2014-11-13/functions/fn/invoke-async",
    ],
)
def test_bad_chunk_while_the_body_is_read(edge: Server, path: str) -> None:
    """A chunk aiohttp cannot parse, arriving while a handler reads the body, is an AWS-shaped
    400 at once, not a wait for the body timeout and not a logged internal error.
    """
    with connect(edge) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100"), "no 100 Continue"
        sock.sendall(b"5\r\nabcde\r\nzz\r\n")
        raw = read_until_closed(sock)
    body = assert_aws_error(raw, 400, "InvalidRequestContentException")
    assert body["message"].startswith("Could not parse request body"), body
    assert edge.get_json("/_lambdad/health")["status"] == "ok"
    assert "Traceback" not in edge.log()


def test_client_disconnect_is_not_an_internal_error(edge: Server) -> None:
    """A client that goes away mid-body is not logged as an unhandled error."""
    for path in ("/2015-03-31/functions", "/2015-03-31/functions/fn/invocations"):
        with connect(edge) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode()
            )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    assert edge.get_json("/_lambdad/health")["status"] == "ok"
    log = edge.log()
    assert "Traceback" not in log, log
    assert "unhandled error" not in log, log


def test_every_response_carries_one_request_id(edge: Server) -> None:
    """Success, error and unknown-path answers each carry exactly one x-amzn-RequestId."""
    conn = http.client.HTTPConnection(edge.host, edge.port, timeout=GUARD)
    for method, path in [
        ("GET", "/2016-08-19/account-settings"),
        ("GET", "/2015-03-31/functions/missing"),
        ("GET", "/no/such/path"),
        ("PATCH", "/2015-03-31/functions"),
        ("GET", "/_lambdad/health"),
    ]:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        assert len(response.msg.get_all("x-amzn-RequestId") or []) == 1, (method, path)
    conn.close()


def test_unknown_paths_answer_unknown_operation(edge: Server) -> None:
    """A path or method lambdad does not route answers 404 UnknownOperationException."""
    conn = http.client.HTTPConnection(edge.host, edge.port, timeout=GUARD)
    for method, path in [("GET", "/nope"), ("PATCH", "/2015-03-31/functions")]:
        conn.request(method, path)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 404
        assert response.getheader("x-amzn-ErrorType") == "UnknownOperationException"
        assert set(body) == {"Type", "message"}
    conn.close()


class _Missing(errors.ResourceNotFoundException):
    pass


def test_renderer_follows_the_class_hierarchy() -> None:
    """A subclass of a mapped error renders with its base's status and message member."""
    response = render(_Missing("gone"))
    assert response.status == 404
    assert isinstance(response.body, bytes)
    assert json.loads(response.body) == {"Type": "User", "Message": "gone"}
    assert response.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"


_FRONT_END = (
    errors.MissingAuthenticationTokenException,
    errors.InvalidSignatureException,
    errors.IncompleteSignatureException,
)


def _error_classes() -> list[type[errors.LambdaError]]:
    found: list[type[errors.LambdaError]] = []
    pending = [errors.LambdaError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [c for c in found if c.__module__ == "lambdad.errors" and c is not errors.LambdaError]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_error_bodies_match_the_model(cls: type[errors.LambdaError]) -> None:
    """Each error renders with its model shape's status and exactly its body members.

    botocore's ``lambda`` model gives each error shape's HTTP status and members (``Type`` and
    ``message`` or ``Message``; TooManyRequests adds ``Reason`` and a ``Retry-After`` header).
    Signature errors come from AWS's front end as ``{"message": ...}``.
    """
    model = botocore.session.get_session().get_service_model("lambda")
    exc = (
        cls("m", reason="ConcurrentInvocationLimitExceeded")  # type: ignore[call-arg]
        if cls is errors.TooManyRequestsException
        else cls("m")
    )
    response = render(exc)
    assert isinstance(response.body, bytes)
    body = json.loads(response.body)
    shape_name = "RequestTooLargeException" if cls is errors.RequestTooLargeException else cls.code
    if cls in _FRONT_END:  # refused by AWS's front end, before Lambda: {"message": ...} alone
        assert set(body) == {"message"}
        return
    if shape_name not in model.shape_names:
        assert set(body) == {"Type", "message"} or set(body) == {"Type", "Message"}
        return
    shape = model.shape_for(shape_name)
    body_members = {n for n, m in shape.members.items() if "location" not in m.serialization}
    header_members = {
        m.serialization["name"] for m in shape.members.values() if "location" in m.serialization
    }
    assert response.status == shape.metadata["error"]["httpStatusCode"]
    assert set(body) == body_members
    assert header_members <= set(response.headers)
    assert wire_of(exc)[0] == response.status
