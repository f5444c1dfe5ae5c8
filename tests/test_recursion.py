"""Recursive loop detection: a chain of invocations that a function starts by calling itself
through the AWS SDK (which forwards the trace header) is stopped after 16 of them, unless the
function's recursion config is Allow."""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROLE, Recorder, Server, refused, unique, wait_until
from tests.test_provided_runtime import vendored

#: The test venv's own boto3 and what it needs, for the layer the functions import it from
#: (botocore's data cut down to the Lambda model and the files every client loads).
SITE = Path(boto3.__file__).resolve().parent.parent
PACKAGES = ("boto3", "botocore", "jmespath", "dateutil", "s3transfer", "urllib3", "six.py")

#: Reports ``<its trace header> <hop>`` to the recorder, then, while ``hop`` is below the
#: event's ``budget``, invokes itself (or ``NEXT_FUNCTION``) asynchronously through boto3 with
#: ``hop + 1``. boto3 finds the endpoint (``AWS_ENDPOINT_URL_LAMBDA``), region and credentials
#: in the environment.
SELF_CALLING = """
import json, os, socket
import boto3

client = boto3.client("lambda")


def handler(event, context):
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        trace = os.environ.get("_X_AMZN_TRACE_ID", "-")
        connection.sendall(f"{trace} {event['hop']}\\n".encode())
        connection.recv(1)
    if event["hop"] < event["budget"]:
        payload = {"hop": event["hop"] + 1, "budget": event["budget"]}
        client.invoke(
            FunctionName=os.environ.get("NEXT_FUNCTION", context.function_name),
            InvocationType="Event",
            Payload=json.dumps(payload).encode(),
        )
    return event["hop"]
"""

TRACE_ECHO = """
import os


def handler(event, context):
    return os.environ.get("_X_AMZN_TRACE_ID")
"""
NODE_TRACE_ECHO = "exports.handler = async () => process.env._X_AMZN_TRACE_ID ?? null;\n"


def _wanted(path: Path) -> bool:
    relative = path.relative_to(SITE)
    parts = relative.parts
    if "__pycache__" in parts:
        return False
    if parts[:2] == ("botocore", "data") and len(parts) > 3:
        return parts[2] == "lambda"
    return not (parts[:2] == ("botocore", "data") and len(parts) == 3 and path.is_dir())


def boto3_layer() -> bytes:
    """A layer zip of the test venv's boto3 under ``python/``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            root = SITE / package
            paths = [root] if root.is_file() else sorted(root.rglob("*"))
            for path in paths:
                if path.is_file() and _wanted(path):
                    archive.write(path, f"python/{path.relative_to(SITE)}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def layer_arn(server: Server) -> Iterator[str]:
    client = server.client()
    published = client.publish_layer_version(
        LayerName=unique("boto3"),
        Content={"ZipFile": boto3_layer()},
        CompatibleRuntimes=["python3.11"],
    )
    yield str(published["LayerVersionArn"])
    client.close()


@pytest.fixture
def self_calling(
    lam: Any, server: Server, layer_arn: str, recorder: Recorder
) -> Callable[..., str]:
    def create(name: str | None = None, calls: str | None = None) -> str:
        """A function (named ``name``) that calls itself, or the function ``calls``."""
        name = name or unique("loop")
        variables = {
            "AWS_ENDPOINT_URL_LAMBDA": server.endpoint,
            "RECORDER_PORT": str(recorder.port),
        }
        if calls:
            variables["NEXT_FUNCTION"] = calls
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Timeout=30,
            Layers=[layer_arn],
            Code={"ZipFile": _zip({"app.py": SELF_CALLING})},
            Environment={"Variables": variables},
        )
        return name

    return create


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def lineage(trace: str) -> dict[str, int]:
    """The ``Lineage`` entries of a trace header."""
    fields = dict(part.split("=", 1) for part in trace.split(";"))
    return {k: int(n) for k, n in (entry.split(":") for entry in fields["Lineage"].split("|"))}


def start(lam: Any, name: str, budget: int) -> None:
    payload = json.dumps({"hop": 1, "budget": budget}).encode()
    assert (
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=payload)["StatusCode"] == 202
    )


def stopped_line(server: Server, name: str) -> bool:
    """Whether lambdad logged the loop's stop (any node's log, on a cluster: the node that
    stopped it is the one that ran the chain's last invocation)."""
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name} after"
    nodes = [n.server for n in server.cluster.nodes.values()] if server.cluster else [server]
    return any(
        "recursive loop stopped" in line and arn in line
        for node in nodes
        for line in node.log().split("\n")
    )


@pytest.mark.slow
def test_a_function_calling_itself_is_stopped_after_16_invocations(
    lam: Any, server: Server, recorder: Recorder, self_calling: Callable[..., str]
) -> None:
    """With the default Terminate, the 17th invocation of the chain is stopped (and said so in
    lambdad's log), so exactly 16 ran, each one hop further in the trace's Lineage."""
    name = self_calling()
    start(lam, name, budget=100)
    wait_until(lambda: stopped_line(server, name), timeout=90)
    runs = sorted(recorder.runs, key=lambda run: run[1])
    assert [hop for _, hop in runs] == list(range(1, 17))
    roots = set()
    for trace, hop in runs:
        assert list(lineage(trace).values()) == [hop]
        roots.add(trace.split(";")[0])
    assert len(roots) == 1, "the chain keeps one trace"


def test_a_loop_of_two_functions_is_stopped_when_one_reaches_16(
    lam: Any, server: Server, recorder: Recorder, self_calling: Callable[..., str]
) -> None:
    """A calls B calls A ...: each function's own count is kept in the Lineage, and A's 17th
    invocation is stopped after both ran 16 times."""
    first, second = unique("ping"), unique("pong")
    self_calling(first, calls=second)
    self_calling(second, calls=first)
    start(lam, first, budget=100)
    wait_until(lambda: stopped_line(server, first), timeout=90)
    runs = sorted(recorder.runs, key=lambda run: run[1])
    assert [hop for _, hop in runs] == list(range(1, 33))
    counts = [sorted(lineage(trace).values()) for trace, _ in runs]
    assert counts[:3] == [[1], [1, 1], [1, 2]]
    assert counts[-1] == [16, 16]
    assert not stopped_line(server, second)


def test_allow_lets_the_loop_run_on(
    lam: Any, server: Server, recorder: Recorder, self_calling: Callable[..., str]
) -> None:
    """With Allow, the chain runs past 16 invocations, until the event's own budget ends it."""
    name = self_calling()
    lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    start(lam, name, budget=20)
    wait_until(lambda: len(recorder.runs) >= 20, timeout=90)
    assert sorted(hop for _, hop in recorder.runs) == list(range(1, 21))
    assert not stopped_line(server, name)


def _invoke_with_trace(lam: Any, name: str, header: str | None) -> Any:
    def add_header(request: Any, **_: Any) -> None:
        if header is not None:
            request.headers["X-Amzn-Trace-Id"] = header

    lam.meta.events.register("before-sign.lambda.Invoke", add_header)
    try:
        response = lam.invoke(FunctionName=name)
        return json.loads(response["Payload"].read())
    finally:
        lam.meta.events.unregister("before-sign.lambda.Invoke", add_header)


def test_synchronous_invokes_count_the_lineage_they_carry(
    lam: Any, new_function: Callable[..., dict[str, Any]]
) -> None:
    """A synchronous invoke whose trace header shows 16 invocations of the function already is
    refused with RecursiveInvocationException; Lambda makes the header when none is sent, and
    keeps other functions' entries (also percent-encoded, as botocore forwards them)."""
    name = new_function(TRACE_ECHO)["FunctionName"]
    first = _invoke_with_trace(lam, name, None)
    fields = dict(part.split("=", 1) for part in first.split(";"))
    assert fields["Root"].startswith("1-")
    assert (fields["Sampled"], len(fields["Parent"])) == ("0", 16)
    (key,) = lineage(first)
    assert lineage(first) == {key: 1}

    root = "Root=1-5759e988-bd862e3fe1be46a994272793"
    fifteen = _invoke_with_trace(lam, name, f"{root};Sampled=1;Lineage=0badcafe:3%7C{key}:15")
    assert fifteen.startswith(root + ";")
    assert lineage(fifteen) == {"0badcafe": 3, key: 16}
    with refused(
        "RecursiveInvocationException",
        400,
        "Lambda has detected your function being invoked in a recursive loop with other Amazon "
        "Web Services resources and stopped your function's invocation.",
    ):
        _invoke_with_trace(lam, name, f"{root};Lineage={key}:16")

    lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    allowed = _invoke_with_trace(lam, name, f"{root};Lineage={key}:16")
    assert lineage(allowed) == {key: 17}


def _trace_echo(new_function: Callable[..., dict[str, Any]], runtime: str) -> str:
    if runtime == "nodejs20.x":
        made = new_function(
            files={"index.js": NODE_TRACE_ECHO}, Runtime=runtime, Handler="index.handler"
        )
    elif runtime == "provided.al2023":
        bootstrap = (
            "#!/bin/sh\n"
            'export PYTHONPATH="$LAMBDA_TASK_ROOT"\n'
            f'exec "{os.path.realpath(sys.executable)}" -S -m awslambdaric app.handler\n'
        )
        files = {
            **vendored("awslambdaric", "simplejson", "snapshot-restore-py"),
            "app.py": TRACE_ECHO.encode(),
            "bootstrap": bootstrap.encode(),
        }
        made = new_function(files=files, modes={"bootstrap": 0o755}, Runtime=runtime)
    else:
        made = new_function(TRACE_ECHO, Runtime=runtime)
    return str(made["FunctionName"])


@pytest.mark.parametrize("runtime", ["python3.11", "nodejs20.x", "provided.al2023"])
def test_every_runtime_client_exports_the_invocations_trace_header(
    lam: Any, new_function: Callable[..., dict[str, Any]], runtime: str
) -> None:
    """lambdad's Python and Node.js runtime clients and awslambdaric set ``_X_AMZN_TRACE_ID``
    to each invocation's own header, where the SDKs pick it up."""
    name = _trace_echo(new_function, runtime)
    root = "Root=1-5759e988-bd862e3fe1be46a994272793"
    sent = _invoke_with_trace(lam, name, f"{root};Lineage=0badcafe:2")
    assert sent.startswith(root + ";")
    assert lineage(sent)["0badcafe"] == 2
    assert sorted(lineage(sent).values()) == [1, 2]
    fresh = _invoke_with_trace(lam, name, None)
    assert not fresh.startswith(root)
    assert list(lineage(fresh).values()) == [1]


#: Reports its trace header to the recorder; its on-success destination carries the chain on.
REPORTING = """
import os, socket


def handler(event, context):
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{os.environ.get('_X_AMZN_TRACE_ID', '-')} 0\\n".encode())
        connection.recv(1)
    return "ok"
"""


def test_a_loop_through_on_success_destinations_is_stopped(
    lam: Any, server: Server, recorder: Recorder
) -> None:
    """A's on-success destination is B and B's is A: the destinations' invocations carry the
    trace header on, so the loop is stopped when A would run a 17th time."""
    first, second = unique("dest-a"), unique("dest-b")
    for name in (first, second):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": _zip({"app.py": REPORTING})},
            Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
        )
    arn = "arn:aws:lambda:us-east-1:000000000000:function:{}"
    for name, target in ((first, second), (second, first)):
        lam.put_function_event_invoke_config(
            FunctionName=name,
            DestinationConfig={"OnSuccess": {"Destination": arn.format(target)}},
        )
    assert (
        lam.invoke(FunctionName=first, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    )
    wait_until(lambda: stopped_line(server, first), timeout=90)
    counts = sorted(sorted(lineage(trace).values()) for trace, _ in recorder.runs)
    assert len(counts) == 32
    assert counts[-1] == [16, 16]
    assert not stopped_line(server, second)
