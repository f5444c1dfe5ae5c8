"""The legacy Logs API (``PUT /2020-08-15/logs``) with real extensions: a script in a layer
subscribes over HTTP or TCP and forwards every batch it receives, as a JSON line, to a service
of the test (``service_listener``, reached at ``AWS_LAMBDA_RUNTIME_API``'s host), and to a file
in ``/tmp`` that the function polls when it must wait for a delivery (an idle environment is
frozen, its extensions with it)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lambdad.runtime.telemetry import REQUEST_TIMEOUT
from tests.conftest import (
    Server,
    invoke_json,
    launch_server,
    service_listener,
    shutdown,
    wait_until,
)
from tests.test_extensions import PRELUDE, Target, function, layer, messages, require_linux

#: Subscribes as ``SUBSCRIBE_<NAME>`` lists (``[[api, body], ...]``; ``HTTP_PORT`` and
#: ``"TCP_PORT"`` in a body are its listeners' ports) and forwards what it receives.
FORWARDER = (
    PRELUDE
    + """
import http.server, socket, threading
HOST = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)[0]
collector = socket.create_connection((HOST, int(os.environ["COLLECTOR_PORT"])))
lock = threading.Lock()
SINK = os.path.join(tempfile.gettempdir(), "received.jsonl")

def forward(document):
    document["from"] = NAME
    line = json.dumps(document) + "\\n"
    with lock:
        collector.sendall(line.encode())
        with open(SINK, "a") as handle:
            handle.write(line)

REFUSALS = [int(os.environ.get("REFUSE_BATCHES", "0"))]
REFUSE_UNTIL = [os.environ.get("REFUSE_UNTIL")]  # every batch up to one holding this type
HANGS = [int(os.environ.get("HANG_BATCHES", "0"))]

class Sink(http.server.BaseHTTPRequestHandler):
    def receive(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            hang = HANGS[0] > 0
            HANGS[0] -= 1
        if hang:  # never answers (its thread waits until the extension exits)
            forward({"held": [e["type"] for e in batch]})
            threading.Event().wait()
        refused = REFUSALS[0] > 0 or REFUSE_UNTIL[0] is not None
        REFUSALS[0] -= 1
        if REFUSE_UNTIL[0] in [e["type"] for e in batch]:
            REFUSE_UNTIL[0] = None
        if refused:
            forward({"refused": [e["type"] for e in batch]})
        else:
            forward({"via": "HTTP", "method": self.command, "path": self.path, "events": batch})
        self.send_response(500 if refused else 200)
        self.end_headers()
    do_POST = do_PUT = receive
    def log_message(self, *args):
        pass

host = "sandbox.localdomain" if os.environ.get("BIND_SANDBOX") else "127.0.0.1"
web = http.server.ThreadingHTTPServer((host, 0), Sink)  # environments may share the host's ports
threading.Thread(target=web.serve_forever, daemon=True).start()
tcp = socket.socket()
tcp.bind((host, 0))
tcp.listen()

def receive_tcp():
    while True:
        connection, _ = tcp.accept()
        with connection, connection.makefile("rb") as lines:
            for line in lines:
                forward({"via": "TCP", "events": [json.loads(line)]})

threading.Thread(target=receive_tcp, daemon=True).start()
status, ext_id, answer = register(["INVOKE", "SHUTDOWN"])
headers = {"Lambda-Extension-Identifier": ext_id, "Content-Type": "application/json"}
for api, body in json.loads(os.environ["SUBSCRIBE_" + NAME.upper()]):
    text = body if isinstance(body, str) else json.dumps(body)
    text = text.replace("HTTP_PORT", str(web.server_address[1]))
    text = text.replace('"TCP_PORT"', str(tcp.getsockname()[1]))
    path = "/2020-08-15/logs" if api == "logs" else "/2022-07-01/telemetry"
    reply = call("PUT", path, text.encode(), headers, base=BASE)
    forward({"subscribed": api, "status": reply[0], "answer": reply[2].decode()})
say("subscribed")

def seen(kind):
    with lock, open(SINK) as handle:
        return any(e["type"] == kind for line in handle for e in json.loads(line).get("events", []))

while True:
    if next_event(ext_id)["eventType"] == "SHUTDOWN":
        deadline = time.time() + 1.5  # (polled) the REPORT of a crash is on its way
        waiting = bool(os.environ.get("AWAIT_REPORT"))
        while waiting and time.time() < deadline and not seen("platform.report"):
            time.sleep(0.01)
        sys.exit(0)
"""
)

#: Prints ``lines`` lines, then waits until the extensions received what the event names.
APP = """import json, os, tempfile, time
SINK = os.path.join(tempfile.gettempdir(), "received.jsonl")
def received():
    try:
        with open(SINK) as handle:
            return [json.loads(line) for line in handle]
    except FileNotFoundError:
        return []
def count(kind, request_id=None):
    return sum(1 for doc in received() for e in doc.get("events", []) if e["type"] == kind
               and (request_id is None or e["record"]["requestId"] == request_id))
def handler(event, context):
    for number in range(event.get("lines", 1)):
        print("hello-logs", context.aws_request_id, number, "x" * event.get("width", 0))
    deadline = time.time() + 10
    def done():
        if "seen" in event:
            return count(event["seen"]) > 0
        if "report_of" in event:
            return count("platform.report", event["report_of"]) >= event.get("subscribers", 1)
        return count("function") >= event.get("functions", 0)
    while time.time() < deadline and not done():
        time.sleep(0.01)
    if event.get("crash"):
        os._exit(7)
    return {"done": done()}
"""

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ALL_TYPES = ["platform", "function", "extension"]


class Collector:
    """The test's end of the forwarders: every JSON line any of them sent, in order."""

    def __init__(self) -> None:
        self._listener = service_listener()
        self.port = int(self._listener.getsockname()[1])
        self.documents: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="collector", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as lines:
            for line in lines:
                with self.lock:
                    self.documents.append(json.loads(line))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def batches(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [d for d in self.documents if d["from"] == name and "events" in d]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for batch in self.batches(name) for e in batch["events"]]

    def answers(self, name: str) -> list[tuple[str, int, str]]:
        with self.lock:
            found = [d for d in self.documents if d["from"] == name and "subscribed" in d]
        return [(d["subscribed"], d["status"], d["answer"]) for d in found]

    def wait_for(self, name: str, kind: str, **fields: Any) -> dict[str, Any]:
        """The first event of ``kind`` (with ``fields`` in its record) ``name`` received."""

        def match() -> dict[str, Any] | None:
            for event in self.events(name):
                record = event["record"]
                if event["type"] == kind and all(
                    isinstance(record, dict) and record.get(k) == v for k, v in fields.items()
                ):
                    return event
            return None

        found: dict[str, Any] = wait_until(match, timeout=15)
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    opened = Collector()
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def warm_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Server]]:
    """lambdads (one per sandbox, started on first use) whose environments stay warm."""
    started: dict[str, Server] = {}

    def get(sandbox: str) -> Server:
        if sandbox not in started:
            settings = {"LAMBDAD_KEEP_ALIVE": "100000"}
            if sandbox == "process":
                settings["LAMBDAD_SANDBOX"] = "process"
            started[sandbox] = launch_server(tmp_path_factory.mktemp(f"logs-{sandbox}"), settings)
        return started[sandbox]

    yield get
    for srv in started.values():
        shutdown(srv)


def _target(srv: Server, sandbox: str) -> Iterator[Target]:
    if sandbox == "linux":
        require_linux(srv)
    client = srv.client()
    yield Target(srv, client, sandbox)
    client.close()


#: On a cluster (pytest --cluster), a plain process's Logs API subscriber is on its node's
#: loopback, from where the test's collector cannot be reached when nodes have namespaces.
ON_NODE_LOOPBACK = "plain processes' extensions reach the collector on their node's loopback"


@pytest.fixture(
    params=[
        pytest.param("linux", marks=pytest.mark.root),
        pytest.param("process", marks=pytest.mark.no_cluster(ON_NODE_LOOPBACK)),
    ]
)
def target(
    request: pytest.FixtureRequest, warm_servers: Callable[[str], Server]
) -> Iterator[Target]:
    """A warm lambdad on the Linux sandbox (as root) or on the plain-process one."""
    yield from _target(warm_servers(str(request.param)), str(request.param))


@pytest.fixture(params=[pytest.param("linux", marks=pytest.mark.root)])
def linux(
    request: pytest.FixtureRequest, warm_servers: Callable[[str], Server]
) -> Iterator[Target]:
    """A warm lambdad on the Linux sandbox (as root)."""
    yield from _target(warm_servers("linux"), "linux")


def deploy(
    target: Target,
    collector: Collector,
    subscriptions: dict[str, list[tuple[str, Any]]],
    timeout: int = 3,
    **env: str,
) -> str:
    """A function with one forwarder per entry of ``subscriptions`` (name: its requests)."""
    files = {f"extensions/{name}": FORWARDER for name in subscriptions}
    variables = {f"SUBSCRIBE_{n.upper()}": json.dumps(s) for n, s in subscriptions.items()}
    variables |= {"COLLECTOR_PORT": str(collector.port), **env}
    if target.sandbox == "linux":
        variables["BIND_SANDBOX"] = "1"  # cells resolve sandbox.localdomain, as Lambda's do
    layers = [layer(target.client, files)]
    return function(target.client, APP, layers, variables, MemorySize=256, Timeout=timeout)


def run(target: Target, name: str, event: dict[str, Any]) -> str:
    """Invoke successfully; the request id."""
    response, body = invoke_json(target.client, name, event)
    assert "FunctionError" not in response, (body, messages(target.server, name))
    return str(response["ResponseMetadata"]["RequestId"])


def http_subscription(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": "2021-03-18",
        "types": ALL_TYPES,
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {
            "protocol": "HTTP",
            "URI": "http://sandbox.localdomain:HTTP_PORT/lambda_logs",
            "method": "PUT",
        },
    }
    return document | overrides


def error(error_type: str) -> Callable[[str], bool]:
    return lambda answer: json.loads(answer)["errorType"] == error_type


# ----------------------------------------------------------------------------- HTTP


def test_http_subscriber_gets_the_logs_api_records(target: Target, collector: Collector) -> None:
    """A Logs API subscriber (schema 2021-03-18) gets function, extension and platform records
    in the Logs API's shapes, PUT to its URI as AWS does when asked for PUT."""
    name = deploy(target, collector, {"logs": [("logs", http_subscription())]})
    first = run(target, name, {})
    run(target, name, {"report_of": first})
    collector.wait_for("logs", "platform.report", requestId=first)
    events = collector.events("logs")
    by_kind: dict[str, list[Any]] = {}
    for event in events:
        assert TIME.fullmatch(event["time"]), event
        assert set(event) == {"time", "type", "record"}
        by_kind.setdefault(event["type"], []).append(event["record"])

    assert collector.answers("logs") == [("logs", 200, '"OK"')]
    assert by_kind["platform.logsSubscription"] == [
        {"name": "logs", "state": "Subscribed", "types": ALL_TYPES}
    ]
    assert {"name": "logs", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]} in by_kind[
        "platform.extension"
    ]
    assert {"requestId": first, "version": "$LATEST"} in by_kind["platform.start"]
    assert {"requestId": first, "status": "success"} in by_kind["platform.runtimeDone"]
    assert {"requestId": first} in by_kind["platform.end"]
    report = next(r for r in by_kind["platform.report"] if r["requestId"] == first)
    assert set(report) == {"requestId", "metrics"}
    assert set(report["metrics"]) >= {
        "durationMs",
        "billedDurationMs",
        "memorySizeMB",
        "maxMemoryUsedMB",
    }
    assert report["metrics"]["memorySizeMB"] == 256
    assert f"hello-logs {first} 0 \n" in by_kind["function"]
    assert "logs subscribed\n" in by_kind["extension"]
    for telemetry_only in ("platform.initStart", "platform.initReport", "platform.initRuntimeDone"):
        assert telemetry_only not in by_kind
    batches = collector.batches("logs")
    assert {(b["via"], b["method"], b["path"]) for b in batches} == {
        ("HTTP", "PUT", "/lambda_logs")
    }
    assert "LOGS\tName: logs\tState: Subscribed\tTypes: [Platform, Function, Extension]" in (
        messages(target.server, name)
    )


BAD_SUBSCRIPTIONS: list[tuple[str, Any]] = [
    ("logs", "not json"),
    ("logs", http_subscription(schemaVersion="2022-07-01")),
    ("logs", http_subscription(types=[])),
    ("logs", http_subscription(types=["logs"])),
    ("logs", http_subscription(buffering={"maxItems": 999})),
    ("logs", http_subscription(buffering={"maxBytes": 1048577})),
    ("logs", http_subscription(buffering={"timeoutMs": 24})),
    ("logs", http_subscription(buffering={"timeoutMs": "soon"})),
    ("logs", http_subscription(destination={"protocol": "FTP", "URI": "ftp://x"})),
    ("logs", http_subscription(destination={"protocol": "TCP"})),
    ("logs", http_subscription(destination={"protocol": "HTTP", "URI": "http://[::1"})),
    ("logs", http_subscription(destination={"protocol": "HTTP", "URI": "http://h:99999"})),
    (
        "logs",
        http_subscription(destination={"protocol": "HTTP", "URI": "http://h", "method": "GET"}),
    ),
]


def test_bad_subscriptions_are_refused_and_the_last_good_one_wins(
    linux: Target, collector: Collector
) -> None:
    """A malformed subscription is a 400 ``Logs.ValidationError`` (AWS's documented type); a
    second good one replaces the first, so only its types and destination get anything."""
    first = http_subscription(types=["function"])
    second = {  # no schemaVersion: the original schema, without platform.runtimeDone
        "types": ["platform"],
        "buffering": {"timeoutMs": 25},
        "destination": {"protocol": "TCP", "port": "TCP_PORT"},
    }
    requests = [*BAD_SUBSCRIPTIONS, ("logs", first), ("logs", second)]
    name = deploy(linux, collector, {"logs": requests})
    one = run(linux, name, {})
    run(linux, name, {"report_of": one})
    collector.wait_for("logs", "platform.report", requestId=one)

    answers = collector.answers("logs")
    assert [status for _, status, _ in answers] == [400] * len(BAD_SUBSCRIPTIONS) + [200, 200]
    assert all(map(error("Logs.ValidationError"), [a for _, s, a in answers if s == 400]))
    batches = collector.batches("logs")
    assert {b["via"] for b in batches} == {"TCP"}, "the replaced HTTP subscription gets nothing"
    kinds = {e["type"] for e in collector.events("logs")}
    assert {"platform.start", "platform.end", "platform.report"} <= kinds
    assert all(k.startswith("platform.") for k in kinds), kinds
    assert "platform.runtimeDone" not in kinds, "only schema 2021-03-18 has it"


# ----------------------------------------------------------------------------- buffering


def test_a_full_buffer_is_delivered_at_max_items(linux: Target, collector: Collector) -> None:
    """Batches are cut at ``maxItems`` and sent at once, without waiting for ``timeoutMs``."""
    subscription = http_subscription(
        types=["function"], buffering={"maxItems": 1000, "maxBytes": 1048576, "timeoutMs": 30000}
    )
    name = deploy(linux, collector, {"logs": [("logs", subscription)]})
    request_id = run(linux, name, {"lines": 2500, "functions": 2000})
    wait_until(lambda: len(collector.batches("logs")) >= 2, timeout=15)
    batches = collector.batches("logs")
    assert [len(b["events"]) for b in batches[:2]] == [1000, 1000]
    records = [e["record"] for b in batches[:2] for e in b["events"]]
    assert records == [f"hello-logs {request_id} {n} \n" for n in range(2000)]


def test_a_full_buffer_is_delivered_at_max_bytes(linux: Target, collector: Collector) -> None:
    """Batches are cut before they would pass ``maxBytes`` (the events' compact JSON) and
    sent at once, without waiting for ``timeoutMs``."""
    subscription = http_subscription(
        types=["function"], buffering={"maxItems": 10000, "maxBytes": 262144, "timeoutMs": 30000}
    )
    name = deploy(linux, collector, {"logs": [("logs", subscription)]})
    run(linux, name, {"lines": 600, "width": 1000, "functions": 400})
    wait_until(lambda: len(collector.batches("logs")) >= 2, timeout=15)
    for batch in collector.batches("logs")[:2]:
        sizes = [len(json.dumps(e, separators=(",", ":"))) for e in batch["events"]]
        assert sum(sizes) <= 262144 < sum(sizes) + max(sizes), "as many as fit"


def test_an_undelivered_batch_is_counted_in_platform_logs_dropped(
    linux: Target, collector: Collector
) -> None:
    """A batch the subscriber refuses is dropped, and the next one starts with a
    ``platform.logsDropped`` in the Logs API's words (AWS drops what its subscriber cannot
    take, and says so)."""
    subscription = http_subscription(types=["platform", "function"])
    name = deploy(linux, collector, {"logs": [("logs", subscription)]}, REFUSE_BATCHES="1")
    run(linux, name, {})
    run(linux, name, {"seen": "platform.logsDropped"})
    dropped = collector.wait_for("logs", "platform.logsDropped")["record"]
    with collector.lock:
        refused = next(d["refused"] for d in collector.documents if "refused" in d)
    assert dropped["droppedRecords"] == len(refused)
    assert dropped["droppedBytes"] > 0
    assert dropped["reason"] == (
        "Consumer seems to have fallen behind as it has not acknowledged receipt of logs."
    )
    assert collector.events("logs")[0]["type"] == "platform.logsDropped"


def test_a_drop_with_nothing_after_it_is_still_told(linux: Target, collector: Collector) -> None:
    """When the subscriber refuses a batch and nothing is recorded afterwards (the function is
    busy and silent), ``platform.logsDropped`` is delivered on its own after the buffering
    time: a drop is an event of its own, not only the head of a later batch."""
    subscription = http_subscription(types=["platform", "function"])
    subscriptions = {"logs": [("logs", subscription)]}
    name = deploy(linux, collector, subscriptions, REFUSE_UNTIL="function")
    run(linux, name, {"seen": "platform.logsDropped"})
    with collector.lock:
        refused = [t for d in collector.documents for t in d.get("refused", [])]
    first = collector.batches("logs")[0]["events"]
    assert first[0]["type"] == "platform.logsDropped"
    assert first[0]["record"]["droppedRecords"] == len(
        [kind for kind in refused if kind != "platform.logsDropped"]
    )
    assert "function" in refused


def test_a_subscriber_that_never_answers_does_not_stall_delivery(
    linux: Target, collector: Collector
) -> None:
    """A subscriber that takes a batch and never answers loses that batch after a bounded time
    (AWS gives each delivery a timeout); the next batch starts with ``platform.logsDropped``
    counting it, and delivery goes on."""
    subscription = http_subscription(types=["platform", "function"])
    subscriptions = {"logs": [("logs", subscription)]}
    name = deploy(linux, collector, subscriptions, timeout=20, HANG_BATCHES="1")
    request_id = run(linux, name, {"seen": "platform.logsDropped"})
    with collector.lock:
        held = next(d["held"] for d in collector.documents if "held" in d)
    dropped = collector.events("logs")[0]
    assert dropped["type"] == "platform.logsDropped"
    assert dropped["record"]["droppedRecords"] == len(held)
    run(linux, name, {"report_of": request_id})  # the previous REPORT, delivered meanwhile


def test_a_batch_waiting_for_a_frozen_subscriber_is_not_dropped(
    linux: Target, collector: Collector
) -> None:
    """A batch sent as the environment freezes waits for the thaw, however long the environment
    stays idle: the delivery timeout counts only the time the subscriber could answer (on
    Lambda the platform's delivery freezes with the sandbox)."""
    subscription = http_subscription(types=["platform", "function"])
    name = deploy(linux, collector, {"logs": [("logs", subscription)]})
    first = run(linux, name, {})
    time.sleep(REQUEST_TIMEOUT + 1)  # the idle time under test, not a synchronisation
    second = run(linux, name, {"report_of": first})
    run(linux, name, {"report_of": second})  # all sent before the thaw has arrived by now
    assert "platform.logsDropped" not in [e["type"] for e in collector.events("logs")]


# ----------------------------------------------------------------------------- faults


def test_a_crash_is_a_platform_fault(linux: Target, collector: Collector) -> None:
    """A runtime that dies mid-invoke is told to subscribers as ``platform.fault`` (the lines
    Lambda logs for it), END and REPORT before their SHUTDOWN."""
    subscription = http_subscription(types=["platform"])
    name = deploy(linux, collector, {"logs": [("logs", subscription)]}, AWAIT_REPORT="1")
    response, body = invoke_json(linux.client, name, {"crash": True})
    assert body["errorType"] == "Runtime.ExitError"
    request_id = response["ResponseMetadata"]["RequestId"]
    fault = collector.wait_for("logs", "platform.fault")
    assert fault["record"] == (
        f"RequestId: {request_id} Error: Runtime exited with error: exit status 7\n"
        "Runtime.ExitError"
    )
    report = collector.wait_for("logs", "platform.report", requestId=request_id)
    kinds = [e["type"] for e in collector.events("logs")]
    assert kinds.index("platform.fault") < kinds.index("platform.end")
    assert report["record"]["metrics"]["durationMs"] > 0


# ----------------------------------------------------------------------------- both APIs


def test_logs_and_telemetry_subscribers_side_by_side(target: Target, collector: Collector) -> None:
    """A Logs API and a Telemetry API subscriber each get their own API's schema; an extension
    subscribed through one API is refused by the other, as AWS documents."""
    telemetry = {
        "schemaVersion": "2022-12-13",
        "types": ALL_TYPES,
        "buffering": {"timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:HTTP_PORT"},
    }
    name = deploy(
        target,
        collector,
        {
            "logs": [("logs", http_subscription()), ("telemetry", telemetry)],
            "telemetry": [("telemetry", telemetry), ("logs", http_subscription())],
        },
    )
    first = run(target, name, {})
    run(target, name, {"report_of": first, "subscribers": 2})
    logs_report = collector.wait_for("logs", "platform.report", requestId=first)
    telemetry_report = collector.wait_for("telemetry", "platform.report", requestId=first)

    assert [a[:2] for a in collector.answers("logs")] == [("logs", 200), ("telemetry", 400)]
    assert error("ValidationError")(collector.answers("logs")[1][2])
    assert [a[:2] for a in collector.answers("telemetry")] == [("telemetry", 200), ("logs", 400)]
    assert error("Logs.ValidationError")(collector.answers("telemetry")[1][2])
    assert "status" not in logs_report["record"]
    assert telemetry_report["record"]["status"] == "success"
    logs_kinds = {e["type"] for e in collector.events("logs")}
    telemetry_kinds = {e["type"] for e in collector.events("telemetry")}
    assert {"platform.logsSubscription", "platform.end"} <= logs_kinds
    assert not logs_kinds & {"platform.telemetrySubscription", "platform.initStart"}
    assert {"platform.telemetrySubscription", "platform.initStart"} <= telemetry_kinds
    assert not telemetry_kinds & {"platform.logsSubscription", "platform.end"}
    logs_lines = [e["record"] for e in collector.events("logs") if e["type"] == "function"]
    telemetry_lines = [
        e["record"] for e in collector.events("telemetry") if e["type"] == "function"
    ]
    assert f"hello-logs {first} 0 \n" in logs_lines
    assert f"hello-logs {first} 0 " in telemetry_lines
