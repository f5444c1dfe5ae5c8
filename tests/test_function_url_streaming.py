"""Function URLs with ``InvokeMode RESPONSE_STREAM``: the response goes to the HTTP client chunk
by chunk while the function runs, its status, headers and cookies from the
``HttpResponseStream`` prelude.

The streaming function waits at a ``Rendezvous`` after its first chunk, which the test joins
only once it has read that chunk from the URL's response: a chunk not delivered while the
function was still running would leave both waiting.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Rendezvous
from tests.url_client import address_of, call_url, make_public

#: A Node handler that streams through ``awslambda.streamifyResponse``: ``/plain`` writes no
#: prelude, ``/meet`` waits at the rendezvous after its first chunk, ``/fail`` throws after it.
STREAMING_NODE = """
const net = require('node:net');

function meet() {
  return new Promise((resolve, reject) => {
    const host = process.env.AWS_LAMBDA_RUNTIME_API.split(':')[0];
    const socket = net.connect(Number(process.env.RENDEZVOUS_PORT), host);
    socket.on('data', () => { socket.destroy(); resolve(); });
    socket.on('error', reject);
  });
}

exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  if (event.rawPath !== '/plain') {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 207,
      headers: { 'content-type': 'text/plain', 'x-made-by': 'node' },
      cookies: ['a=1; Path=/', 'b=2'],
    });
  }
  responseStream.write('first;');
  if (event.rawPath === '/meet') await meet();
  if (event.rawPath === '/fail') throw new Error('broke after the first chunk');
  responseStream.write('second;' + event.requestContext.http.method);
  responseStream.end();
});
"""


@pytest.fixture
def streaming_url(
    lam: Any, new_function: Any, rendezvous: Callable[[int], Rendezvous]
) -> tuple[str, Rendezvous]:
    """A public RESPONSE_STREAM URL of the Node streaming function, and its rendezvous."""
    meeting = rendezvous(2)
    name = new_function(
        files={"index.js": STREAMING_NODE},
        Runtime="nodejs20.x",
        Handler="index.handler",
        Timeout=30,
        env=meeting.env,
    )["FunctionName"]
    url = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
    )["FunctionUrl"]
    make_public(lam, name)
    return url, meeting


def open_url(url: str, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or 80
    connection = http.client.HTTPConnection(address_of(port), port, timeout=60)
    connection.request("GET", path, headers={"Host": parts.netloc})
    return connection, connection.getresponse()


def test_the_first_chunk_arrives_while_the_function_runs(
    streaming_url: tuple[str, Rendezvous],
) -> None:
    """AWS: a RESPONSE_STREAM URL sends what the function writes as it writes it (chunked
    transfer), with the status, headers and cookies of the HttpResponseStream prelude."""
    url, meeting = streaming_url
    connection, response = open_url(url, "/meet")
    try:
        assert response.status == 207
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("x-made-by") == "node"
        assert response.getheader("Content-Type") == "text/plain"
        assert response.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]
        assert response.read1(64) == b"first;"  # the function is waiting at the rendezvous
        meet(meeting.port)
        assert response.read() == b"second;GET"
    finally:
        connection.close()


def test_a_stream_without_prelude_is_200_with_the_runtimes_type(
    streaming_url: tuple[str, Rendezvous],
) -> None:
    """A streamed response without an HttpResponseStream prelude: status 200 and the body as
    the function wrote it."""
    url, _ = streaming_url
    answer = call_url(url, "/plain", method="POST")
    assert answer.status == 200
    assert answer.body == b"first;second;POST"


def test_an_error_after_the_first_byte_breaks_the_response(
    streaming_url: tuple[str, Rendezvous],
) -> None:
    """A function that fails after it started streaming: the client gets the bytes sent and
    then a broken response (no last chunk), never a complete-looking one; the next request is
    served normally."""
    url, _ = streaming_url
    connection, response = open_url(url, "/fail")
    try:
        assert response.status == 207
        with pytest.raises(http.client.IncompleteRead) as broken:
            response.read()
        assert broken.value.partial == b"first;"
    finally:
        connection.close()
    assert call_url(url, "/").body == b"first;second;GET"


def test_a_client_gone_mid_stream_does_not_disturb_the_function(
    streaming_url: tuple[str, Rendezvous],
) -> None:
    """A client that disconnects mid-stream: the function finishes undisturbed and the next
    request is served (AWS: the function is not interrupted)."""
    url, meeting = streaming_url
    connection, response = open_url(url, "/meet")
    assert response.read1(64) == b"first;"
    connection.close()
    meet(meeting.port)
    assert call_url(url, "/").body == b"first;second;GET"


def test_a_buffered_function_behind_a_streaming_url_is_answered_whole(
    lam: Any, new_function: Any
) -> None:
    """A function that does not stream (Python) behind a RESPONSE_STREAM URL: its result is
    turned into the response as for a BUFFERED URL; a failure before any byte is 502."""
    name = new_function(
        "def handler(event, context):\n"
        "    if event['rawPath'] == '/fail':\n"
        "        raise RuntimeError('no')\n"
        "    return {'statusCode': 203, 'headers': {'x-whole': 'yes'}, 'body': 'whole'}\n"
    )["FunctionName"]
    url = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
    )["FunctionUrl"]
    make_public(lam, name)
    answer = call_url(url, "/")
    assert (answer.status, answer.body) == (203, b"whole")
    assert answer.header("x-whole") == "yes"
    assert call_url(url, "/fail").status == 502


def meet(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.recv(16)
