"""Response streaming: ``InvokeWithResponseStream`` through boto3, with runtimes that stream.

The functions that stream wait at a ``Rendezvous`` after their first chunk, which the test
joins only once it has received that chunk: a chunk that was not delivered while the function
was still running would leave both waiting (and the function would time out).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Rendezvous, refused, unique, wait_until

#: A custom runtime in Python that streams its ``/response`` with chunked transfer encoding.
#: The event says what to send: ``chunks`` (the first one alone, then ``meet`` the
#: rendezvous), ``error`` (in the trailers after the chunks), ``hang`` (seconds, before the end),
#: ``exit`` (the process exits after its first chunk), ``big`` (that many more bytes).
STREAMING_BOOTSTRAP = """#!{python}
import base64, http.client, json, os, socket, time

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
PROCESS = os.urandom(8).hex()  # who this process is (pids repeat in a pid namespace)
api = "/2018-06-01/runtime/invocation"

def meet():
    with socket.create_connection((host, int(os.environ["RENDEZVOUS_PORT"]))) as s:
        s.recv(16)

connection = http.client.HTTPConnection(host, int(port))
while True:
    connection.request("GET", api + "/next")
    answer = connection.getresponse()
    request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
    event = json.loads(answer.read())
    print("streaming for", request_id, flush=True)
    connection.putrequest("POST", api + "/" + request_id + "/response")
    connection.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Content-Type", "text/plain")
    connection.putheader(
        "Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    )
    connection.endheaders()
    for i, text in enumerate(event.get("chunks", [])):
        data = text.replace("{{process}}", PROCESS).encode()
        connection.send(b"%x\\r\\n%s\\r\\n" % (len(data), data))
        if i == 0 and event.get("meet"):
            meet()
        if event.get("exit"):
            os._exit(3)
    left = event.get("big", 0)
    while left:
        data = b"b" * min(left, 65536)
        connection.send(b"%x\\r\\n%s\\r\\n" % (len(data), data))
        left -= len(data)
    time.sleep(event.get("hang", 0))
    trailers = b""
    if event.get("error"):
        error = {{"errorType": "Custom.Late", "errorMessage": "failed after streaming"}}
        trailers = (
            b"Lambda-Runtime-Function-Error-Type: Custom.Late\\r\\n"
            b"Lambda-Runtime-Function-Error-Body: "
            + base64.b64encode(json.dumps(error).encode()) + b"\\r\\n"
        )
    connection.send(b"0\\r\\n" + trailers + b"\\r\\n")
    connection.getresponse().read()
"""

#: The custom-runtime tutorial's sh + curl bootstrap, streaming what a pipe writes (``-T -``
#: uploads it chunked as it comes).
CURL_BOOTSTRAP = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -o /dev/null -D "$HEADERS" "$API/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  { echo "first"; echo "second"; } | curl -sS -o /dev/null -X POST -T - \\
    -H "Lambda-Runtime-Function-Response-Mode: streaming" -H "Transfer-Encoding: chunked" \\
    "$API/$REQUEST_ID/response"
done
"""

STREAMIFY = """
const net = require('node:net');

function meet() {
  return new Promise((resolve, reject) => {
    const host = process.env.AWS_LAMBDA_RUNTIME_API.split(':')[0];
    const socket = net.connect(Number(process.env.RENDEZVOUS_PORT), host);
    socket.on('data', () => { socket.destroy(); resolve(); });
    socket.on('error', reject);
  });
}

exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.http) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201,
      headers: { 'x-made-by': 'node' },
    });
  }
  responseStream.write('first ' + process.pid);
  if (event.meet) await meet();
  if (event.fail) throw new Error('broke after the first chunk');
  responseStream.write(' second');
  responseStream.end();
});
"""


def meet(port: int) -> None:
    """Join a rendezvous: the function waiting there goes on."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.recv(16)


@pytest.fixture
def streamer(new_function: Any, rendezvous: Callable[[int], Rendezvous]) -> Any:
    """A custom runtime (``provided.al2023``) that streams; yields (name, its rendezvous)."""
    meeting = rendezvous(2)
    fn = new_function(
        files={"bootstrap": STREAMING_BOOTSTRAP.format(python=os.path.realpath(sys.executable))},
        modes={"bootstrap": 0o755},
        Runtime="provided.al2023",
        Handler="function.handler",
        Timeout=30,
        env=meeting.env,
    )
    return fn["FunctionName"], meeting


def node(new_function: Any, **kwargs: Any) -> str:
    """A Node.js function of ``STREAMIFY``; returns its name."""
    files = {"index.js": STREAMIFY}
    fn = new_function(files=files, Runtime="nodejs20.x", Handler="index.handler", **kwargs)
    return str(fn["FunctionName"])


def events(response: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The response's events as (kind, value): ``PayloadChunk`` bytes, ``InvokeComplete``."""
    for event in response["EventStream"]:
        if "PayloadChunk" in event:
            yield "PayloadChunk", event["PayloadChunk"]["Payload"]
        elif "InvokeComplete" in event:
            yield "InvokeComplete", event["InvokeComplete"]


def stream(lam: Any, name: str, payload: Any = None, **kwargs: Any) -> dict[str, Any]:
    return dict(
        lam.invoke_with_response_stream(
            FunctionName=name, Payload=json.dumps(payload or {}).encode(), **kwargs
        )
    )


def collect(response: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """(the payload chunks joined, the InvokeComplete event)."""
    chunks, complete = [], None
    for kind, value in events(response):
        if kind == "PayloadChunk":
            assert complete is None, "a chunk after InvokeComplete"
            chunks.append(value)
        else:
            complete = value
    assert complete is not None
    return b"".join(chunks), complete


def test_first_chunk_arrives_while_the_function_runs(lam: Any, streamer: Any) -> None:
    """A custom runtime's streamed chunks reach the caller as PayloadChunk events while the
    function is still running, then InvokeComplete without an error (as AWS streams them)."""
    name, meeting = streamer
    response = stream(lam, name, {"chunks": ["hello ", "world"], "meet": True})
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    received = events(response)
    assert next(received) == ("PayloadChunk", b"hello ")
    meet(meeting.port)  # the function goes on only now
    rest = list(received)
    assert rest == [("PayloadChunk", b"world"), ("InvokeComplete", {})]


def test_trailer_error_after_bytes_is_a_function_error(lam: Any, streamer: Any) -> None:
    """An error the runtime reports in the trailers after streaming ends the stream with
    InvokeComplete carrying its type and message; the bytes already sent stay sent."""
    name, _ = streamer
    body, complete = collect(stream(lam, name, {"chunks": ["partial"], "error": True}))
    assert body == b"partial"
    assert complete["ErrorCode"] == "Custom.Late"
    assert complete["ErrorDetails"] == "failed after streaming"
    # The environment is not harmed by a function error: the next stream works.
    body, complete = collect(stream(lam, name, {"chunks": ["again"]}))
    assert (body, complete) == (b"again", {})


def test_tail_log_comes_in_invoke_complete(lam: Any, streamer: Any) -> None:
    """``LogType=Tail`` puts the invocation's log, base64, in InvokeComplete's LogResult."""
    name, _ = streamer
    response = stream(lam, name, {"chunks": ["x"]}, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    _, complete = collect(response)
    log = base64.b64decode(complete["LogResult"]).decode()
    assert f"streaming for {request_id}" in log
    assert f"REPORT RequestId: {request_id}" in log


@pytest.mark.slow
def test_timeout_ends_the_stream(lam: Any, new_function: Any) -> None:
    """A function that times out mid-stream: the chunks sent so far, then InvokeComplete with
    ``Sandbox.Timedout`` (AWS ends the stream at the function's timeout)."""
    fn = new_function(
        files={"bootstrap": STREAMING_BOOTSTRAP.format(python=os.path.realpath(sys.executable))},
        modes={"bootstrap": 0o755},
        Runtime="provided.al2023",
        Handler="function.handler",
        Timeout=1,
    )
    body, complete = collect(stream(lam, fn["FunctionName"], {"chunks": ["early"], "hang": 60}))
    assert body == b"early"
    assert complete["ErrorCode"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in complete["ErrorDetails"]


def test_client_gone_mid_stream_leaves_the_environment_reusable(lam: Any, streamer: Any) -> None:
    """A client that disconnects mid-stream does not disturb the function: it runs to its end
    and its environment serves the next invocation (one environment: reserved concurrency 1)."""
    name, meeting = streamer
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    event = {"chunks": ["process {process}", "more", "and more"], "meet": True}
    response = stream(lam, name, event)
    first = next(events(response))
    response["EventStream"].close()
    meet(meeting.port)

    def second() -> bytes | None:
        try:
            return collect(stream(lam, name, {"chunks": ["process {process}"]}))[0]
        except ClientError as exc:  # throttled while the first one runs
            if exc.response["Error"]["Code"] != "TooManyRequestsException":
                raise
            return None

    assert wait_until(second) == first[1]


def test_buffered_function_is_one_chunk(lam: Any, new_function: Any) -> None:
    """A buffered function's whole response is one PayloadChunk, then an empty InvokeComplete
    (as AWS answers InvokeWithResponseStream for a function that does not stream)."""
    name = new_function("def handler(event, context):\n    return {'got': event}\n")["FunctionName"]
    response = stream(lam, name, {"a": 1})
    assert list(events(response)) == [
        ("PayloadChunk", b'{"got": {"a": 1}}'),
        ("InvokeComplete", {}),
    ]


def test_buffered_function_error(lam: Any, new_function: Any) -> None:
    """A buffered function's error: its error body as the chunk, its type and message in
    InvokeComplete."""
    code = "def handler(event, context):\n    raise ValueError('nope')\n"
    name = new_function(code)["FunctionName"]
    body, complete = collect(stream(lam, name))
    assert json.loads(body)["errorType"] == "ValueError"
    assert complete["ErrorCode"] == "ValueError"
    assert complete["ErrorDetails"] == "nope"


def test_dry_run_and_errors_before_the_stream(lam: Any, new_function: Any) -> None:
    """``DryRun`` answers 204 without running; a missing function, a bad qualifier and a
    throttle are AWS's ordinary errors, before any event stream."""
    name = new_function()["FunctionName"]
    dry = lam.invoke_with_response_stream(FunctionName=name, InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    with refused("ResourceNotFoundException", 404):
        lam.invoke_with_response_stream(FunctionName=unique())
    with refused("ResourceNotFoundException", 404):
        lam.invoke_with_response_stream(FunctionName=name, Qualifier="nope")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with refused("TooManyRequestsException", 429):
        lam.invoke_with_response_stream(FunctionName=name)


def test_plain_invoke_of_a_streaming_runtime_is_buffered(lam: Any, streamer: Any) -> None:
    """``Invoke`` of a function that streams gets the streamed bytes as one body (Lambda
    buffers them for a caller that does not stream)."""
    name, _ = streamer
    response = lam.invoke(FunctionName=name, Payload=json.dumps({"chunks": ["a", "b"]}))
    assert response["Payload"].read() == b"ab"
    assert "FunctionError" not in response


def test_node_streamify_response(lam: Any, new_function: Any, rendezvous: Any) -> None:
    """A Node handler wrapped in ``awslambda.streamifyResponse`` streams its writes at once."""
    meeting = rendezvous(2)
    name = node(new_function, env=meeting.env)
    response = stream(lam, name, {"meet": True})
    received = events(response)
    kind, first = next(received)
    assert kind == "PayloadChunk"
    assert first.startswith(b"first ")
    meet(meeting.port)
    assert list(received) == [("PayloadChunk", b" second"), ("InvokeComplete", {})]


def test_node_http_response_stream_prelude(lam: Any, new_function: Any) -> None:
    """``HttpResponseStream.from`` writes the JSON prelude and 8 NUL bytes before the body."""
    name = new_function(
        files={"index.js": STREAMIFY}, Runtime="nodejs20.x", Handler="index.handler"
    )["FunctionName"]
    body, complete = collect(stream(lam, name, {"http": True}))
    prelude, _, rest = body.partition(b"\0" * 8)
    assert json.loads(prelude) == {"statusCode": 201, "headers": {"x-made-by": "node"}}
    assert rest.startswith(b"first ")
    assert rest.endswith(b" second")
    assert complete == {}


def test_node_error_after_first_write(lam: Any, new_function: Any) -> None:
    """A Node streaming handler that throws after writing: the bytes, then InvokeComplete with
    the error (sent by the runtime in the trailers)."""
    name = new_function(
        files={"index.js": STREAMIFY}, Runtime="nodejs20.x", Handler="index.handler"
    )["FunctionName"]
    body, complete = collect(stream(lam, name, {"fail": True}))
    assert body.startswith(b"first ")
    assert complete["ErrorCode"] == "Error"
    assert complete["ErrorDetails"] == "broke after the first chunk"


def test_runtime_exit_mid_stream_ends_it_with_an_error(lam: Any, streamer: Any) -> None:
    """A runtime that exits mid-stream: the bytes sent, then InvokeComplete with the crash's
    error, worded as Invoke's ``Runtime.ExitError``; the next invocation gets a new environment
    (AWS resets a crashed one)."""
    name, _ = streamer
    body, complete = collect(stream(lam, name, {"chunks": ["process {process}"], "exit": True}))
    assert body.startswith(b"process ")
    assert complete["ErrorCode"] == "Runtime.ExitError"
    assert complete["ErrorDetails"].endswith("Error: Runtime exited with error: exit status 3")
    again, complete = collect(stream(lam, name, {"chunks": ["process {process}"]}))
    assert complete == {}
    assert again != body


def test_plain_invoke_of_a_stream_over_6_mb_is_too_large(lam: Any, streamer: Any) -> None:
    """``Invoke`` of a function that streams more than the buffered limit answers
    Function.ResponseSizeTooLarge as a function error (as Lambda does for a buffered response
    over 6 MB); the environment serves the next invocations."""
    name, _ = streamer
    payload = json.dumps({"chunks": ["process {process}"], "big": 7 * 1024 * 1024})
    response = lam.invoke(FunctionName=name, Payload=payload)
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "Function.ResponseSizeTooLarge"
    first = lam.invoke(FunctionName=name, Payload=json.dumps({"chunks": ["process {process}"]}))
    second = lam.invoke(FunctionName=name, Payload=json.dumps({"chunks": ["process {process}"]}))
    assert first["Payload"].read() == second["Payload"].read()


def test_shell_and_curl_bootstrap_streams(lam: Any, new_function: Any) -> None:
    """A sh + curl bootstrap that posts its response with the streaming header streams too."""
    fn = new_function(
        files={"bootstrap": CURL_BOOTSTRAP},
        modes={"bootstrap": 0o755},
        Runtime="provided.al2023",
        Handler="function.handler",
    )
    body, complete = collect(stream(lam, fn["FunctionName"]))
    assert body == b"first\nsecond\n"
    assert complete == {}


@pytest.mark.slow
def test_stream_over_200_mb_ends_too_large(lam: Any, streamer: Any) -> None:
    """A stream past Lambda's 200 MB limit ends with Function.ResponseSizeTooLarge after the
    200 MB sent; the environment serves the next invocation."""
    name, _ = streamer
    limit = 200 * 1024 * 1024
    event = {"chunks": ["process {process}"], "big": limit}
    sent, complete = 0, None
    for kind, value in events(stream(lam, name, event)):
        if kind == "PayloadChunk":
            sent += len(value)
        else:
            complete = value
    assert complete is not None
    assert complete["ErrorCode"] == "Function.ResponseSizeTooLarge"
    assert limit - 65536 < sent <= limit  # every whole chunk within the limit
    first = collect(stream(lam, name, {"chunks": ["process {process}"]}))
    assert first == collect(stream(lam, name, {"chunks": ["process {process}"]}))


def test_event_invocation_type_is_refused(unchecked: Any, new_function: Any) -> None:
    """``InvocationType=Event`` is outside the model's enum for this operation
    (RequestResponse, DryRun): a ValidationException quoting it, before anything runs."""
    name = new_function()["FunctionName"]
    message = (
        "1 validation error detected: Value 'Event' at 'invocationType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [RequestResponse, DryRun]"
    )
    with refused("ValidationException", 400, message):
        unchecked.invoke_with_response_stream(FunctionName=name, InvocationType="Event")
