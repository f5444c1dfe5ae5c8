"""Active tracing: sampling, the X-Ray segment listener, the trace read path and OTLP export
(docs/tracing.md)."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, create_function, free_port, wait_until

#: A function that reports its trace header and X-Ray variables and, when its event asks and
#: it is sampled, sends a subsegment (and any ``garbage`` first) to its X-Ray daemon address,
#: as the X-Ray SDK does: one UDP datagram, the daemon header line, then the document.
TRACED = """
import json, os, secrets, socket, time

def handler(event, context):
    header = os.environ.get("_X_AMZN_TRACE_ID", "")
    fields = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
    address = os.environ["AWS_XRAY_DAEMON_ADDRESS"]
    host, port = address.split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for junk in event.get("garbage", []):
            udp.sendto(junk.encode(), (host, int(port)))
        if event.get("send") and fields.get("Sampled") == "1":
            now = time.time()
            doc = {"type": "subsegment", "trace_id": fields["Root"],
                   "parent_id": fields["Parent"], "id": secrets.token_hex(8),
                   "name": "work", "start_time": now, "end_time": now + 0.002,
                   "namespace": "local",
                   "subsegments": [{"id": secrets.token_hex(8), "name": "inner",
                                    "start_time": now, "end_time": now + 0.001}]}
            udp.sendto(b'{"format":"json","version":1}\\n' + json.dumps(doc).encode(),
                       (host, int(port)))
    return {"header": header, "fields": fields, "address": address,
            "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
            "xray": {k: v for k, v in os.environ.items() if "XRAY" in k}}
"""


def fresh_root() -> str:
    """An X-Ray root no other test of the session uses (the server and its traces are shared)."""
    return f"1-5759e988-{uuid.uuid4().hex[:24]}"


def traced(client: Any, mode: str = "Active") -> str:
    return str(create_function(client, TRACED, TracingConfig={"Mode": mode})["FunctionName"])


def invoke(server: Server, name: str, event: Any, trace_header: str | None = None) -> Any:
    """Invoke over raw HTTP (so a caller's ``X-Amzn-Trace-Id`` can be sent)."""
    url = f"{server.endpoint}/2015-03-31/functions/{name}/invocations"
    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST")
    if trace_header:
        request.add_header("X-Amzn-Trace-Id", trace_header)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def trace_of(server: Server, root: str, has: Callable[[list[dict[str, Any]]], bool]) -> Any:
    """Trace ``root`` once its spans satisfy ``has``, polled: spans are recorded after the
    answer, and in a cluster the worker's reach the api node through the trace stream
    (docs/tracing.md, "In a cluster"), as X-Ray's traces appear seconds after the invoke."""

    def found() -> Any:
        with contextlib.suppress(OSError):
            trace = server.get_json(f"/_lambdad/traces/{root}")
            return trace if has(trace["Spans"]) else None
        return None

    return wait_until(found, timeout=20)


def names(spans: list[dict[str, Any]]) -> set[str]:
    return {s["Name"] for s in spans}


def test_active_function_is_sampled_and_its_segment_joins_lambdad_spans(
    server: Server, lam: Any
) -> None:
    """An Active function's first invocation is sampled (X-Ray's reservoir: the first request
    each second); it sees ``Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=1`` and an
    X-Ray daemon address in its cell, and the subsegment it sends there joins lambdad's own
    ``AWS::Lambda`` / ``AWS::Lambda::Function`` spans under one trace id."""
    name = traced(lam)
    body = invoke(server, name, {"send": True})
    fields = body["fields"]
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", fields["Root"])
    assert re.fullmatch(r"[0-9a-f]{16}", fields["Parent"])
    assert fields["Sampled"] == "1"
    host, port = body["address"].split(":")
    assert host == body["runtime_api"].split(":")[0]
    assert int(port) > 0
    if server.get_json("/_lambdad/doctor")["sandbox"]["kind"] == "linux":
        assert host != "127.0.0.1"  # the cells' gateway: sent from inside the cell's netns
    xray = body["xray"]
    assert xray["_AWS_XRAY_DAEMON_ADDRESS"] == host
    assert xray["_AWS_XRAY_DAEMON_PORT"] == port
    assert xray["AWS_XRAY_CONTEXT_MISSING"] == "LOG_ERROR"

    trace = trace_of(server, fields["Root"], lambda s: {"work", "Invocation"} <= names(s))
    assert trace["TraceId"] == fields["Root"]
    assert trace["OtelTraceId"] == fields["Root"][2:].replace("-", "")
    spans = {s["Name"]: s for s in trace["Spans"] if s["Name"] not in (name,)}
    by_id = {s["Id"]: s for s in trace["Spans"]}
    function_segment = by_id[fields["Parent"]]
    assert function_segment["Attributes"]["aws.xray.origin"] == "AWS::Lambda::Function"
    service = by_id[function_segment["ParentId"]]
    assert service["Attributes"]["aws.xray.origin"] == "AWS::Lambda"
    assert spans["work"]["ParentId"] == fields["Parent"]
    assert spans["inner"]["ParentId"] == spans["work"]["Id"]
    assert spans["Invocation"]["ParentId"] == fields["Parent"]
    assert spans["Initialization"]["ParentId"] == fields["Parent"]  # the cold start's init
    assert spans["Initialization"]["EndTime"] <= spans["Invocation"]["StartTime"]

    listed = server.get_json(f"/_lambdad/traces?function={name}")["Traces"]
    assert [t["TraceId"] for t in listed] == [fields["Root"]]

    printed = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "traces", name, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed.startswith(fields["Root"])
    assert re.search(r"ms\s+ Invocation\n", printed)  # indented under the function span
    assert re.search(r"ms\s+ inner\n", printed)


def test_passthrough_and_a_callers_decision(server: Server, lam: Any) -> None:
    """PassThrough never samples on its own but follows a caller's ``Sampled=1``; a caller's
    ``Sampled=0`` is kept even for an Active function (Lambda honours the upstream decision)."""
    passthrough = traced(lam, "PassThrough")
    assert invoke(server, passthrough, {})["fields"]["Sampled"] == "0"
    assert server.get_json(f"/_lambdad/traces?function={passthrough}")["Traces"] == []
    root = fresh_root()
    caller = f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"
    fields = invoke(server, passthrough, {}, caller)["fields"]
    assert (fields["Root"], fields["Sampled"]) == (root, "1")
    trace = trace_of(server, root, lambda s: "Invocation" in names(s))
    service = next(
        s for s in trace["Spans"] if s["Attributes"].get("aws.xray.origin") == "AWS::Lambda"
    )
    assert service["ParentId"] == "53995c3f42cd8ad8"

    active = traced(lam)
    unsampled = f"Root={fresh_root()};Parent=53995c3f42cd8ad8;Sampled=0"
    assert invoke(server, active, {}, unsampled)["fields"]["Sampled"] == "0"
    assert server.get_json(f"/_lambdad/traces?function={active}")["Traces"] == []


def test_udp_garbage_is_counted_and_dropped(server: Server, lam: Any) -> None:
    """Datagrams that are not X-Ray segment documents are counted and dropped; the listener
    keeps receiving the segments that follow them."""
    name = traced(lam)
    before = server.get_json("/_lambdad/doctor")["tracing"]["datagrams dropped"]
    garbage = [
        "",
        "hello",
        '{"format":"json","version":1}\nnot json',
        '{"format":"json","version":1}\n[1, 2]',
        '{"format":"json","version":1}\n{"trace_id": "1-x", "id": "zz", "name": 1}',
        '{"format":"json","version":2}\n{}',
        "\u00ff" * 2000,
    ]
    fields = invoke(server, name, {"send": True, "garbage": garbage})["fields"]
    trace_of(server, fields["Root"], lambda s: "work" in names(s))
    dropped = server.get_json("/_lambdad/doctor")["tracing"]["datagrams dropped"]
    assert dropped - before >= len(garbage)
    assert server.get_json("/_lambdad/health")["status"] == "ok"


def test_an_event_invocation_shows_its_time_in_the_queue(server: Server, lam: Any) -> None:
    """An ``Event`` invocation's trace has, as X-Ray shows it on Lambda, ``Dwell Time`` (in
    the queue) and ``Attempt #1`` under the ``AWS::Lambda`` span, which starts when the event
    was accepted; the caller's trace id is kept."""
    name = traced(lam)
    root = fresh_root()
    url = f"{server.endpoint}/2015-03-31/functions/{name}/invocations"
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("X-Amz-Invocation-Type", "Event")
    request.add_header("X-Amzn-Trace-Id", f"Root={root};Sampled=1")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 202
    trace = trace_of(server, root, lambda s: {"Dwell Time", "Invocation"} <= names(s))
    by_name = {s["Name"]: s for s in trace["Spans"]}
    origins = {s["Attributes"].get("aws.xray.origin"): s for s in trace["Spans"]}
    service = origins["AWS::Lambda"]
    assert by_name["Dwell Time"]["ParentId"] == service["Id"]
    assert by_name["Attempt #1"]["ParentId"] == service["Id"]
    assert service["StartTime"] == by_name["Dwell Time"]["StartTime"]
    assert by_name["Dwell Time"]["EndTime"] == by_name["Attempt #1"]["StartTime"]


def test_unknown_trace_and_bad_limit(server: Server) -> None:
    """Reading a trace lambdad does not hold is a 404 ResourceNotFoundException, a bad limit a
    400, never a 500."""
    for path, status in (
        ("/_lambdad/traces/1-00000000-000000000000000000000000", 404),
        ("/_lambdad/traces/garbage", 404),
        ("/_lambdad/traces?limit=x", 400),
    ):
        with pytest.raises(urllib.error.HTTPError) as caught:
            server.get_json(path)
        assert caught.value.code == status


# ------------------------------------------------------------------ OTLP export


class OtlpReceiver:
    """An OTLP/HTTP traces receiver: keeps the spans of each ``ExportTraceServiceRequest``."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/traces"
                assert self.headers["Content-Type"] == "application/x-protobuf"
                receiver.spans.extend(decode_request(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """The (field number, wire type, value) of one protobuf message."""
    at = 0

    def varint() -> int:
        nonlocal at
        shift = value = 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while at < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 1:
            yield number, wire, int.from_bytes(data[at : at + 8], "little")
            at += 8
        elif wire == 2:
            size = varint()
            yield number, wire, data[at : at + size]
            at += size
        else:
            raise AssertionError(f"unexpected wire type {wire}")


def decode_request(body: bytes) -> list[dict[str, Any]]:
    """The spans of an ``ExportTraceServiceRequest`` (opentelemetry-proto's field numbers)."""
    spans = []
    for number, _, resource_spans in _fields(body):
        assert number == 1
        service = None
        for field, _, value in _fields(resource_spans):
            if field == 1:  # Resource
                for _, _, kv in _fields(value):
                    pair = {n: v for n, _, v in _fields(kv)}
                    if pair[1] == b"service.name":
                        service = next(v for _, _, v in _fields(pair[2])).decode()
            elif field == 2:  # ScopeSpans
                for scope_field, _, span in _fields(value):
                    if scope_field == 2:
                        spans.append({**_span(span), "service": service})
    return spans


def _span(data: bytes) -> dict[str, Any]:
    span: dict[str, Any] = {"attributes": {}}
    for number, _, value in _fields(data):
        if number in (1, 2, 4):
            span[{1: "trace_id", 2: "span_id", 4: "parent_id"}[number]] = value.hex()
        elif number == 5:
            span["name"] = value.decode()
        elif number in (7, 8):
            span["start" if number == 7 else "end"] = value
        elif number == 9:
            pair = {n: v for n, _, v in _fields(value)}
            span["attributes"][pair[1].decode()] = next(v for _, _, v in _fields(pair[2]))
    return span


@pytest.mark.no_cluster("its OTLP receiver is on the test's loopback, which nodes cannot reach")
def test_spans_are_exported_over_otlp(start_server: Any, otlp: OtlpReceiver) -> None:
    """With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, lambdad's spans and the function's segments
    reach an OTLP/HTTP protobuf receiver under the X-Ray root's 32 hex digits as trace id,
    with their parent links; segments whose ids or times OTLP cannot carry (``0x`` ids,
    times past any year) are dropped when received and do not cost the export."""
    server = start_server({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    client = server.client()
    name = traced(client)
    header = '{"format":"json","version":1}\n'
    hostile = [
        header + json.dumps({"trace_id": fresh_root(), "id": "0x0123456789abcd", "name": "x",
                             "start_time": 1.0}),
        header + json.dumps({"trace_id": fresh_root(), "id": "0123456789abcdef", "name": "x",
                             "start_time": 1e30}),
    ]  # fmt: skip
    fields = invoke(server, name, {"send": True, "garbage": hostile})["fields"]
    trace_id = fields["Root"][2:].replace("-", "")

    def exported() -> Any:
        spans = [s for s in otlp.spans if s["trace_id"] == trace_id]
        return spans if {"work", "inner", "Invocation"} <= {s["name"] for s in spans} else None

    spans = wait_until(exported, timeout=20)
    by_name = {s["name"]: s for s in spans}
    by_id = {s["span_id"]: s for s in spans}
    function_segment = by_id[fields["Parent"]]
    assert function_segment["attributes"]["aws.xray.origin"] == b"AWS::Lambda::Function"
    assert by_id[function_segment["parent_id"]]["attributes"]["aws.xray.origin"] == b"AWS::Lambda"
    assert by_name["work"]["parent_id"] == fields["Parent"]
    assert by_name["inner"]["parent_id"] == by_name["work"]["span_id"]
    assert by_name["Invocation"]["parent_id"] == fields["Parent"]
    assert {s["service"] for s in spans} == {name}
    assert all(s["end"] >= s["start"] > 0 for s in spans)
    client.close()


def test_an_unreachable_exporter_does_not_fail_invokes(start_server: Any) -> None:
    """An OTLP endpoint nobody listens on costs the spans (counted), never an invocation."""
    port = free_port()
    server = start_server({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/t"})
    client = server.client()
    name = traced(client)
    caller = "Root=1-5759e988-" + uuid.uuid4().hex[:22] + "{:02x};Sampled=1"
    for n in range(5):
        assert invoke(server, name, {"send": True}, caller.format(n))["fields"]["Sampled"] == "1"
    wait_until(lambda: server.get_json("/_lambdad/doctor")["tracing"]["spans not exported"] > 0)
    assert server.get_json("/_lambdad/doctor")["tracing"]["otlp endpoint"].endswith(f":{port}/t")
    client.close()


# ------------------------------------------------------------------ the real X-Ray SDK

XRAY_SDK_HANDLER = """
from aws_xray_sdk.core import xray_recorder

@xray_recorder.capture("sdk-work")
def work():
    xray_recorder.current_subsegment().put_annotation("answer", 42)
    return 42

def handler(event, context):
    import os
    return {"header": os.environ.get("_X_AMZN_TRACE_ID", ""), "value": work()}
"""


def _package_files(*packages: str) -> dict[str, bytes]:
    """The installed packages' files, to ship inside a function's zip."""
    files: dict[str, bytes] = {}
    for package in packages:
        module = pytest.importorskip(package)
        root = Path(module.__file__ or "").parent
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files[str(Path(package) / path.relative_to(root))] = path.read_bytes()
    return files


def test_the_x_ray_sdk_sends_its_subsegments_from_inside_the_cell(server: Server, lam: Any) -> None:
    """A handler using the AWS X-Ray SDK for Python (``xray_recorder.capture``) as on Lambda:
    its subsegment reaches lambdad through ``AWS_XRAY_DAEMON_ADDRESS`` and hangs under the
    invocation's ``AWS::Lambda::Function`` span."""
    files = {"app.py": XRAY_SDK_HANDLER.encode(), **_package_files("aws_xray_sdk", "wrapt")}
    name = create_function(lam, files=files, TracingConfig={"Mode": "Active"})["FunctionName"]
    body = invoke(server, name, {})
    assert body["value"] == 42
    fields = dict(p.split("=", 1) for p in body["header"].split(";"))
    assert fields["Sampled"] == "1"
    trace = trace_of(server, fields["Root"], lambda s: "sdk-work" in names(s))
    work = next(s for s in trace["Spans"] if s["Name"] == "sdk-work")
    assert work["ParentId"] == fields["Parent"]
    assert work["Service"] == name


# ------------------------------------------------------------------ extensions and SnapStart


def test_extensions_init_and_post_invoke_time_are_spans(server: Server, lam: Any) -> None:
    """A sampled cold invocation of a function with an external extension has, as X-Ray shows
    extensions on Lambda, the extension's init (``Extension <name>`` under ``Initialization``)
    and its time after the runtime's response (``Extensions`` under the function segment,
    with ``Extension <name>`` under it), in the invocation's trace."""
    from tests.test_extensions import ECHO, layer

    arn = layer(lam, {"extensions/echo": ECHO})
    name = create_function(
        lam,
        TRACED,
        Layers=[arn],
        TracingConfig={"Mode": "Active"},
        env={"EXTENSION_DELAY": "0.05"},
    )["FunctionName"]
    root = fresh_root()
    fields = invoke(server, name, {}, f"Root={root};Sampled=1")["fields"]
    parent = fields["Parent"]
    trace = trace_of(server, root, lambda s: "Extensions" in names(s))
    by_id = {s["Id"]: s for s in trace["Spans"]}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in trace["Spans"]:
        by_name.setdefault(span["Name"], []).append(span)
    init = by_name["Initialization"][0]
    assert init["ParentId"] == parent
    extensions = by_name["Extensions"][0]
    assert extensions["ParentId"] == parent
    echo = {by_id[s["ParentId"]]["Name"]: s for s in by_name["Extension echo"]}
    assert set(echo) == {"Initialization", "Extensions"}
    assert echo["Initialization"]["ParentId"] == init["Id"]
    assert echo["Extensions"]["ParentId"] == extensions["Id"]
    assert echo["Extensions"]["Attributes"]["faas.extension"] == "echo"
    for span in (*echo.values(), extensions):
        assert span["EndTime"] >= span["StartTime"] > 0
        assert span["Service"] == name
    assert extensions["StartTime"] >= by_name["Invocation"][0]["StartTime"]

    # a warm invocation: the extension's post-invoke time only
    root = fresh_root()
    invoke(server, name, {}, f"Root={root};Sampled=1")
    trace = trace_of(server, root, lambda s: "Extensions" in names(s))
    assert "Initialization" not in names(trace["Spans"])
    assert [s["Name"] for s in trace["Spans"]].count("Extension echo") == 1


def test_a_snapstart_environment_shows_its_restore(server: Server, lam: Any) -> None:
    """A sampled first invocation of a SnapStart version's restored environment has a
    ``Restore`` span under the function segment and no ``Initialization``, as X-Ray shows
    restored environments on Lambda; the next invocation has neither."""
    from tests.test_snapstart import create, publish_active

    name = create(lam, TracingConfig={"Mode": "Active"})
    version = publish_active(lam, name)
    url = f"{server.endpoint}/2015-03-31/functions/{name}/invocations?Qualifier={version}"
    roots = []
    for _ in range(2):
        root = fresh_root()
        request = urllib.request.Request(url, data=b"{}", method="POST")
        request.add_header("X-Amzn-Trace-Id", f"Root={root};Sampled=1")
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
        roots.append(root)
    first = trace_of(server, roots[0], lambda s: "Invocation" in names(s))
    restore = next(s for s in first["Spans"] if s["Name"] == "Restore")
    function_segment = next(
        s
        for s in first["Spans"]
        if s["Attributes"].get("aws.xray.origin") == "AWS::Lambda::Function"
    )
    assert restore["ParentId"] == function_segment["Id"]
    assert restore["EndTime"] > restore["StartTime"]
    assert "Initialization" not in names(first["Spans"])
    second = trace_of(server, roots[1], lambda s: "Invocation" in names(s))
    assert not {"Restore", "Initialization"} & names(second["Spans"])
