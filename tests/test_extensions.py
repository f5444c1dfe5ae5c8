"""Extensions and the Telemetry API with real extensions: scripts shipped in a layer under
``extensions/``, run beside the runtime in the Linux sandbox (the default as root) and, for the
representative cases, in the plain-process sandbox. What an extension sees it prints (the line
lands in the function's log) or writes to ``/tmp`` for the function to read back."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import (
    Server,
    create_function,
    function_log,
    invoke_json,
    make_zip,
    reported,
    unique,
    wait_until,
)

PYTHON = os.path.realpath(sys.executable)

#: The start of every Python extension: a tiny Extensions API client.
PRELUDE = f"""#!{PYTHON}
import json, os, sys, tempfile, time, urllib.error, urllib.request
BASE = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"]
API = BASE + "/2020-01-01/extension"
NAME = os.path.basename(__file__)

def call(method, path, body=None, headers=None, base=API):
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {{}})
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()

def register(events, name=NAME, body=None):
    payload = json.dumps({{"events": events}}).encode() if body is None else body
    status, headers, answer = call("POST", "/register", payload, {{"Lambda-Extension-Name": name}})
    return status, headers.get("Lambda-Extension-Identifier"), answer

def next_event(ext_id):
    headers = {{"Lambda-Extension-Identifier": ext_id}}
    return json.loads(call("GET", "/event/next", headers=headers)[2])

def say(*parts):
    print(NAME, *parts, flush=True)
"""

#: Registers for INVOKE and SHUTDOWN, says what it got, exits on SHUTDOWN.
ECHO = (
    PRELUDE
    + """
# Before registering: the runtime starts once every extension has registered, so the file is
# there when the function's module is imported (written after, it would race the import).
with open(os.path.join(tempfile.gettempdir(), "extension-ready"), "w") as handle:
    handle.write(NAME)
status, ext_id, answer = register(["INVOKE", "SHUTDOWN"])
say("REGISTERED", status, answer.decode().strip())
hidden = [k for k in ("_HANDLER", "AWS_LAMBDA_LOG_STREAM_NAME", "LAMBDA_TASK_ROOT",
          "AWS_EXECUTION_ENV", "AWS_XRAY_CONTEXT_MISSING") if k in os.environ]
say("ENV", json.dumps({"hidden": hidden, "mine": os.environ.get("MY_SETTING"),
    "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME")}))
while True:
    event = next_event(ext_id)
    if event["eventType"] == "SHUTDOWN":
        left = event["deadlineMs"] - int(time.time() * 1000)
        say("SHUTDOWN", event["shutdownReason"], json.dumps(sorted(event)), 0 < left <= 2000)
        sys.exit(0)
    say("EVENT", json.dumps(event, sort_keys=True))
    delay = float(os.environ.get("EXTENSION_DELAY", "0"))
    if delay:
        time.sleep(delay)
        say("DONE", event["requestId"])
"""
)

#: The function of most tests: says whether the extension was up before its module loaded.
APP = """import json, os, tempfile
READY = os.path.exists(os.path.join(tempfile.gettempdir(), "extension-ready"))
def handler(event, context):
    print("in handler", context.aws_request_id)
    return {"extension_ready_at_import": READY}
"""


@dataclass
class Target:
    """A lambdad to run extensions on, a client for it, and its sandbox."""

    server: Server
    client: Any
    sandbox: str


@pytest.fixture(params=[pytest.param("linux", marks=pytest.mark.root), "process"])
def target(
    request: pytest.FixtureRequest, server: Server, start_server: Callable[..., Server]
) -> Iterator[Target]:
    """The shared lambdad (Linux sandbox as root), or one on the plain-process sandbox."""
    if request.param == "linux":
        require_linux(server)
    srv = server if request.param == "linux" else start_server({"LAMBDAD_SANDBOX": "process"})
    client = srv.client()
    yield Target(srv, client, str(request.param))
    client.close()


@pytest.fixture(params=[pytest.param("linux", marks=pytest.mark.root), "process"])
def warm_target(
    request: pytest.FixtureRequest, start_server: Callable[..., Server]
) -> Iterator[Target]:
    """A lambdad of its own whose environments stay warm between the test's invokes."""
    settings = {"LAMBDAD_KEEP_ALIVE": "100000"}
    if request.param == "process":
        settings["LAMBDAD_SANDBOX"] = "process"
    srv = start_server(settings)
    if request.param == "linux":
        require_linux(srv)
    client = srv.client()
    yield Target(srv, client, str(request.param))
    client.close()


@pytest.fixture(params=[pytest.param("linux", marks=pytest.mark.root)])
def linux(server: Server, lam: Any) -> Target:
    """The shared lambdad (the Linux sandbox, as root)."""
    require_linux(server)
    return Target(server, lam, "linux")


def require_linux(server: Server) -> None:
    """Skip unless ``server`` runs the Linux sandbox (root on Linux, not forced to processes)."""
    kind = server.get_json("/_lambdad/doctor")["sandbox"]["kind"]
    if kind != "linux":
        pytest.skip(f"this lambdad runs the {kind} sandbox, not the Linux one")


def layer(client: Any, files: Mapping[str, str], modes: Mapping[str, int] | None = None) -> str:
    """Publish a layer; files under ``extensions/`` are executable unless ``modes`` says."""
    chosen = {name: 0o755 for name in files if name.startswith("extensions/")}
    chosen.update(modes or {})
    published = client.publish_layer_version(
        LayerName=unique("ext"), Content={"ZipFile": make_zip(files, chosen)}
    )
    return str(published["LayerVersionArn"])


def function(
    client: Any, code: str, layers: list[str], env: Mapping[str, str] | None = None, **kwargs: Any
) -> str:
    created = create_function(client, code, Layers=layers, env=env or {}, **kwargs)
    return str(created["FunctionName"])


def messages(srv: Server, name: str, request_id: str = "") -> list[str]:
    """The function's log once it holds the REPORT line of ``request_id`` (of an invocation,
    when not given): a cluster's api node has a worker's lines a moment later (function_log)."""
    return function_log(srv, name, until=lambda lines: reported(lines, request_id))


def wait_for_line(
    srv: Server, name: str, predicate: Callable[[str], bool], timeout: float = 15.0
) -> list[str]:
    """Poll the function's log until a line satisfies ``predicate``; the log then."""
    return list(
        wait_until(
            lambda: (lines := function_log(srv, name)) and any(map(predicate, lines)) and lines,
            timeout=timeout,
        )
    )


def said(lines: list[str], prefix: str) -> list[str]:
    """What extension lines starting with ``prefix`` said after it."""
    return [line[len(prefix) :].strip() for line in lines if line.startswith(prefix)]


def report_duration(lines: list[str], request_id: str) -> float:
    line = next(x for x in lines if x.startswith(f"REPORT RequestId: {request_id}"))
    match = re.search(r"\tDuration: ([\d.]+) ms", line)
    assert match, line
    return float(match.group(1))


def error_json(error_type: str, message: str) -> str:
    """A RAPID error body (without its trailing newline)."""
    return json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":"))


# ----------------------------------------------------------------------------- lifecycle


def test_extension_registers_before_the_runtime_and_receives_invoke(target: Target) -> None:
    """An external extension starts before the runtime, registers, and gets each INVOKE."""
    arn = layer(target.client, {"extensions/echo": ECHO})
    name = function(target.client, APP, [arn], {"MY_SETTING": "visible"})
    response, body = invoke_json(target.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert "FunctionError" not in response
    assert body == {"extension_ready_at_import": True}
    lines = wait_for_line(target.server, name, lambda x: x.startswith("echo EVENT"))
    registered = said(lines, "echo REGISTERED 200")
    assert registered == [
        json.dumps(
            {"functionName": name, "functionVersion": "$LATEST", "handler": "app.handler"},
            separators=(",", ":"),
        )
    ]
    assert json.loads(said(lines, "echo ENV")[0]) == {
        "hidden": [],
        "mine": "visible",
        "function": name,
    }
    assert "EXTENSION\tName: echo\tState: Ready\tEvents: [INVOKE,SHUTDOWN]" in lines
    event = json.loads(said(lines, "echo EVENT")[0])
    assert set(event) == {"eventType", "deadlineMs", "requestId", "invokedFunctionArn", "tracing"}
    # Every invocation has a trace header (docs/async-config.md), so INVOKE always carries it.
    assert event["tracing"]["type"] == "X-Amzn-Trace-Id"
    assert event["tracing"]["value"].startswith("Root=1-")
    assert (event["eventType"], event["requestId"]) == ("INVOKE", request_id)
    assert event["invokedFunctionArn"].endswith(f":function:{name}")
    assert 0 < event["deadlineMs"] - time.time() * 1000 <= 3000


@pytest.mark.slow
def test_invocation_completes_only_when_the_extension_is_ready(linux: Target) -> None:
    """The caller gets the result at once; the environment (and REPORT) waits for the extension."""
    arn = layer(linux.client, {"extensions/echo": ECHO})
    name = function(linux.client, APP, [arn], {"EXTENSION_DELAY": "4"}, Timeout=10)
    began = time.monotonic()
    response, _ = invoke_json(linux.client, name, {})
    elapsed = time.monotonic() - began
    request_id = response["ResponseMetadata"]["RequestId"]
    # The extension takes 4 s after the event; a response that waited for it could not be
    # back in 3 (a wide margin for a loaded machine, not a latency bound).
    assert elapsed < 3.0, "the response does not wait for the extension"
    lines = wait_for_line(
        linux.server, name, lambda x: x.startswith(f"REPORT RequestId: {request_id}")
    )
    assert lines.index(f"echo DONE {request_id}") < next(
        i for i, x in enumerate(lines) if x.startswith(f"REPORT RequestId: {request_id}")
    )
    assert report_duration(lines, request_id) >= 1500


def test_extension_past_the_timeout_ends_the_environment(linux: Target) -> None:
    """An extension still busy at the function's timeout gets REPORT Status: timeout, SHUTDOWN."""
    arn = layer(linux.client, {"extensions/echo": ECHO})
    name = function(linux.client, APP, [arn], {"EXTENSION_DELAY": "1.5"}, Timeout=1)
    response, _ = invoke_json(linux.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert "FunctionError" not in response
    lines = wait_for_line(linux.server, name, lambda x: x.startswith("echo SHUTDOWN"))
    report = next(x for x in lines if x.startswith(f"REPORT RequestId: {request_id}"))
    assert report.endswith("\tStatus: timeout\t")
    assert any(x.endswith(f"{request_id} Task timed out after 1.00 seconds") for x in lines)
    assert said(lines, "echo SHUTDOWN")[0].startswith("timeout")


@pytest.mark.slow
def test_spindown_sends_shutdown_within_the_budget(target: Target) -> None:
    """Retiring an environment sends SHUTDOWN (spindown, 2,000 ms deadline) to its extension."""
    arn = layer(target.client, {"extensions/echo": ECHO})
    name = function(target.client, APP, [arn])
    response, _ = invoke_json(target.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    wait_for_line(target.server, name, lambda x: x.startswith(f"REPORT RequestId: {request_id}"))
    target.client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"CHANGED": "yes"}}
    )
    lines = wait_for_line(target.server, name, lambda x: x.startswith("echo SHUTDOWN"))
    fields = '["deadlineMs", "eventType", "shutdownReason"]'
    assert said(lines, "echo SHUTDOWN") == [f"spindown {fields} True"]
    assert not any("answered 500" in x for x in lines), "the runtime gets SIGTERM, not an error"


def test_runtime_crash_sends_shutdown_failure(linux: Target) -> None:
    """A runtime that dies mid-invoke resets the environment: SHUTDOWN with reason failure."""
    arn = layer(linux.client, {"extensions/echo": ECHO})
    code = "import os\ndef handler(event, context):\n    os._exit(7)\n"
    name = function(linux.client, code, [arn])
    _, body = invoke_json(linux.client, name, {})
    assert body["errorType"] == "Runtime.ExitError"
    lines = wait_for_line(linux.server, name, lambda x: x.startswith("echo SHUTDOWN"))
    assert said(lines, "echo SHUTDOWN")[0].startswith("failure")


def test_stopping_lambdad_sends_shutdown(start_server: Callable[..., Server]) -> None:
    """Stopping lambdad shuts environments down with SHUTDOWN before killing them."""
    srv = start_server({"LAMBDAD_KEEP_ALIVE": "600", "LAMBDAD_TIME_SCALE": "1"})
    client = srv.client()
    arn = layer(client, {"extensions/echo": ECHO})
    name = function(client, APP, [arn])
    invoke_json(client, name, {})
    data_dir = srv.data_dir
    assert srv.stop() == 0
    log = srv.log()
    restarted = start_server(data_dir=data_dir)
    lines = wait_for_line(restarted, name, lambda x: x.startswith("echo SHUTDOWN"))
    assert said(lines, "echo SHUTDOWN")[0].startswith("spindown"), log


# ----------------------------------------------------------------------------- failures

INIT_ERROR = (
    PRELUDE
    + """
status, ext_id, answer = register(["INVOKE"])
headers = {"Lambda-Extension-Identifier": ext_id}
reply = call("POST", "/init/error", b"{}", headers)
say("NO-TYPE", reply[0], reply[2].decode().strip())
headers["Lambda-Extension-Function-Error-Type"] = "Extension.ConfigInvalid"
reply = call("POST", "/init/error", b'{"errorMessage":"no config"}', headers)
say("INIT-ERROR", reply[0], reply[2].decode().strip())
"""
)
CRASH = PRELUDE + '\nregister(["INVOKE"])\nsys.exit(3)\n'


@pytest.mark.parametrize(
    ("script", "error_type", "reason", "state"),
    [
        pytest.param(
            INIT_ERROR,
            "Extension.InitError",
            "exit code 0",
            "InitError\tEvents: [INVOKE]\tError Type: Extension.ConfigInvalid",
            id="init-error",
        ),
        pytest.param(
            CRASH, "Extension.Crash", "exit status 3", "Exited\tEvents: [INVOKE]", id="crash"
        ),
    ],
)
def test_extension_failing_during_init_fails_the_invoke(
    linux: Target, script: str, error_type: str, reason: str, state: str
) -> None:
    """An /init/error (then exit) or an exit during init fails init and the invoke, as Lambda."""
    arn = layer(linux.client, {"extensions/failing": script})
    name = function(linux.client, APP, [arn])
    response, body = invoke_json(linux.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert response["FunctionError"] == "Unhandled"
    assert body == {
        "errorType": error_type,
        "errorMessage": f"RequestId: {request_id} Error: {reason}",
    }
    lines = messages(linux.server, name)
    assert f"EXTENSION\tName: failing\tState: {state}" in lines
    assert any(
        x.startswith("INIT_REPORT")
        and x.endswith(f"Phase: init\tStatus: error\tError Type: {error_type}")
        for x in lines
    )
    if error_type == "Extension.InitError":
        missing = error_json(
            "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found"
        )
        assert f"failing NO-TYPE 403 {missing}" in lines
        assert 'failing INIT-ERROR 202 {"status":"OK"}' in lines


def test_extension_that_cannot_run_is_a_launch_error(linux: Target) -> None:
    """A file in /opt/extensions that is not executable fails init with Extension.LaunchError."""
    arn = layer(linux.client, {"extensions/plain": ECHO}, {"extensions/plain": 0o644})
    name = function(linux.client, APP, [arn])
    response, body = invoke_json(linux.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert body == {
        "errorType": "Extension.LaunchError",
        "errorMessage": f"RequestId: {request_id} Error: fork/exec /opt/extensions/plain: "
        "permission denied",
    }
    lines = messages(linux.server, name)
    assert (
        "EXTENSION\tName: plain\tState: LaunchError\tEvents: []\tError Type: PermissionDenied"
        in lines
    )


def test_eleven_external_extensions_are_too_many(linux: Target) -> None:
    """More than ten files in /opt/extensions fail init before any is started."""
    files = {f"extensions/e{i:02d}": ECHO for i in range(11)}
    name = function(linux.client, APP, [layer(linux.client, files)])
    response, body = invoke_json(linux.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert body == {
        "errorType": "Extension.LaunchError",
        "errorMessage": f"RequestId: {request_id} Error: ErrTooManyExtensions",
    }
    lines = messages(linux.server, name)
    assert (
        "EXTENSION\tName: e10\tState: LaunchError\tEvents: []\tError Type: TooManyExtensions"
        in lines
    )
    assert not any(x.startswith("e0") for x in lines), "none was started"


# ----------------------------------------------------------------------------- the API

PROBE = (
    PRELUDE
    + """
def show(label, reply):
    say("RESULT", label, reply[0], reply[2].decode().strip())

show("empty-name", call("POST", "/register", b'{"events":[]}', {"Lambda-Extension-Name": ""}))
show("other-name-shutdown", call("POST", "/register", b'{"events":["INVOKE","SHUTDOWN"]}',
    {"Lambda-Extension-Name": "not-the-file"}))
show("bad-event", call("POST", "/register", b'{"events":["FOO"]}', {"Lambda-Extension-Name": NAME}))
show("config-keys", call("POST", "/register", b'{"events":[],"configurationKeys":["x"]}',
    {"Lambda-Extension-Name": NAME}))
show("next-no-id", call("GET", "/event/next"))
show("next-bad-id", call("GET", "/event/next", headers={"Lambda-Extension-Identifier": "nope"}))
show("next-unknown", call("GET", "/event/next",
    headers={"Lambda-Extension-Identifier": "00000000-0000-4000-8000-000000000000"}))
status, ext_id, answer = register(["INVOKE"], body=b'{"events":["INVOKE"]}')
show("again", call("POST", "/register", b'{"events":["INVOKE"]}', {"Lambda-Extension-Name": NAME}))
while True:
    event = next_event(ext_id)
    subscription = json.dumps({"schemaVersion": "2022-12-13", "types": ["platform"],
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:9"}}).encode()
    show("telemetry-after-init", call("PUT", "/2022-07-01/telemetry", subscription,
        {"Lambda-Extension-Identifier": ext_id}, base=BASE))
    show("logs-api", call("PUT", "/2020-08-15/logs", b"{}", {"Lambda-Extension-Identifier": ext_id},
        base=BASE))  # after init, as the Telemetry API
"""
)


def test_extensions_api_refuses_what_lambda_refuses(linux: Target) -> None:
    """Bad names, events, bodies and identifiers get RAPID's 403s, byte for byte."""
    arn = layer(linux.client, {"extensions/probe": PROBE})
    name = function(linux.client, APP, [arn])
    response, _ = invoke_json(linux.client, name, {})
    assert "FunctionError" not in response
    lines = wait_for_line(linux.server, name, lambda x: "RESULT logs-api" in x)
    results = {x.split()[2]: x.split(" ", 3)[3] for x in lines if x.startswith("probe RESULT")}
    expected = {
        "empty-name": ("Extension.InvalidExtensionName", "Empty extension name"),
        "other-name-shutdown": (
            "Extension.InvalidEventType",
            "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension",
        ),
        "bad-event": ("Extension.InvalidEventType", "FOO: ErrorInvalidEventType"),
        "config-keys": (
            "InvalidRequestFormat",
            "configurationKeys are deprecated; use environment variables instead",
        ),
        "next-no-id": (
            "Extension.MissingExtensionIdentifier",
            "Missing Lambda-Extension-Identifier header",
        ),
        "next-bad-id": (
            "Extension.InvalidExtensionIdentifier",
            "Invalid Lambda-Extension-Identifier",
        ),
        "next-unknown": (
            "Extension.UnknownExtensionIdentifier",
            "Unknown extension 00000000-0000-4000-8000-000000000000",
        ),
        "again": (
            "Extension.InvalidExtensionState",
            "State transition from Registered to Registered failed for extension probe. "
            "Error: State transition is not allowed",
        ),
        "telemetry-after-init": (
            "Telemetry.SubscriptionClosed",
            "Telemetry API subscription is closed",
        ),
        "logs-api": ("Logs.SubscriptionClosed", "Logs API subscription is closed"),
    }
    for label, (error_type, message) in expected.items():
        assert results[label] == f"403 {error_json(error_type, message)}", label


INTERNAL = """import json, os, threading, time, urllib.error, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"

def register(name, events):
    body = json.dumps({"events": events}).encode()
    request = urllib.request.Request(API + "/register", data=body, method="POST",
        headers={"Lambda-Extension-Name": name})
    try:
        with urllib.request.urlopen(request) as reply:
            ext_id = reply.headers["Lambda-Extension-Identifier"]
            return reply.status, ext_id, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, None, json.loads(error.read())

REFUSED = register("inside-shutdown", ["SHUTDOWN"])
STATUS, EXT_ID, REGISTERED = register("inside", ["INVOKE"])
SEEN = []

def loop():
    while True:
        request = urllib.request.Request(API + "/event/next",
            headers={"Lambda-Extension-Identifier": EXT_ID})
        with urllib.request.urlopen(request) as reply:
            SEEN.append(json.loads(reply.read()))

threading.Thread(target=loop, daemon=True).start()

def handler(event, context):
    deadline = time.time() + 5
    mine = context.aws_request_id
    while not any(e["requestId"] == mine for e in SEEN) and time.time() < deadline:
        time.sleep(0.01)
    return {"registered": [STATUS, REGISTERED], "refused": REFUSED[::2], "seen": SEEN[-1:],
            "late": register("late", ["INVOKE"])[::2]}
"""


def test_internal_extension_registered_at_import_receives_invoke(target: Target) -> None:
    """A handler module registers an internal extension at import; it gets INVOKE, not SHUTDOWN."""
    name = function(target.client, INTERNAL, [])
    response, body = invoke_json(target.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert "FunctionError" not in response, body
    assert body["registered"] == [
        200,
        {"functionName": name, "functionVersion": "$LATEST", "handler": "app.handler"},
    ]
    assert body["refused"] == [
        403,
        {
            "errorMessage": "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension",
            "errorType": "Extension.InvalidEventType",
        },
    ]
    assert [(e["eventType"], e["requestId"]) for e in body["seen"]] == [("INVOKE", request_id)]
    assert body["late"] == [
        403,
        {
            "errorMessage": "Extension registration closed already",
            "errorType": "Extension.RegistrationClosed",
        },
    ]
    lines = messages(target.server, name)
    assert "EXTENSION\tName: inside\tState: Ready\tEvents: [INVOKE]" in lines


TOO_MANY_APP = """import json, os, urllib.error, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
request = urllib.request.Request(API + "/register", data=b'{"events":[]}', method="POST",
    headers={"Lambda-Extension-Name": "eleventh"})
try:
    urllib.request.urlopen(request)
    ANSWER = "registered"
except urllib.error.HTTPError as error:
    ANSWER = [error.code, json.loads(error.read())]
def handler(event, context):
    return ANSWER
"""


def test_an_internal_extension_past_ten_is_refused(linux: Target) -> None:
    """With ten external extensions, an internal one is refused: Extension.TooManyExtensions."""
    arn = layer(linux.client, {f"extensions/e{i}": ECHO for i in range(10)})
    name = function(linux.client, TOO_MANY_APP, [arn], MemorySize=1024, Timeout=30)
    response, body = invoke_json(linux.client, name, {})
    assert "FunctionError" not in response, body
    assert body == [
        403,
        {
            "errorMessage": "Extension limit (10) reached",
            "errorType": "Extension.TooManyExtensions",
        },
    ]


# ----------------------------------------------------------------------------- exec wrapper

WRAPPER = '#!/bin/sh\nexport WRAPPED_BY="$0"\nexport WRAPPED_ARGS="$#"\nexec "$@"\n'
WRAPPED_APP = """import os, sys
def handler(event, context):
    return {"by": os.environ.get("WRAPPED_BY"), "args": os.environ.get("WRAPPED_ARGS")}
"""


def test_exec_wrapper_starts_the_runtime(target: Target) -> None:
    """AWS_LAMBDA_EXEC_WRAPPER runs before the runtime, with the runtime's command as arguments."""
    arn = layer(target.client, {"wrapper.sh": WRAPPER}, {"wrapper.sh": 0o755})
    name = function(
        target.client, WRAPPED_APP, [arn], {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper.sh"}
    )
    response, body = invoke_json(target.client, name, {})
    assert "FunctionError" not in response, body
    assert body["by"].endswith("/wrapper.sh")
    assert int(body["args"]) >= 1


@pytest.mark.parametrize(
    ("mode", "code"), [(None, 127), (0o644, 126)], ids=["missing", "not-executable"]
)
def test_exec_wrapper_that_cannot_run_is_runtime_exit_error(
    linux: Target, mode: int | None, code: int
) -> None:
    """A wrapper that is missing (127) or not executable (126) fails init as the shell would."""
    files = {"wrapper.sh": WRAPPER} if mode else {"other.txt": "x"}
    arn = layer(linux.client, files, {"wrapper.sh": mode} if mode else None)
    name = function(
        linux.client, WRAPPED_APP, [arn], {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper.sh"}
    )
    response, body = invoke_json(linux.client, name, {})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert body == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: "
        f"Runtime exited with error: exit status {code}",
    }


# ----------------------------------------------------------------------------- telemetry

TELEMETRY = (
    PRELUDE
    + """
import http.server, threading
SINK = os.path.join(tempfile.gettempdir(), "telemetry.jsonl")

class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        batch = self.rfile.read(int(self.headers["Content-Length"]))
        with open(SINK, "a") as handle:
            handle.write(batch.decode() + "\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass

host = "sandbox.localdomain" if os.environ.get("BIND_SANDBOX") else "127.0.0.1"
server = http.server.HTTPServer((host, 0), Sink)  # environments share the host's ports
PORT = server.server_address[1]
threading.Thread(target=server.serve_forever, daemon=True).start()
status, ext_id, answer = register(["INVOKE", "SHUTDOWN"])
headers = {"Lambda-Extension-Identifier": ext_id, "Content-Type": "application/json"}

def subscribe(document):
    reply = call("PUT", "/2022-07-01/telemetry", json.dumps(document).encode(), headers, base=BASE)
    say("SUBSCRIBE", reply[0], reply[2].decode().strip())

good = {"schemaVersion": "2022-12-13", "types": ["platform", "function", "extension"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{PORT}"}}
subscribe(dict(good, schemaVersion="2020-01-01"))
subscribe(dict(good, types=["logs"]))
subscribe(dict(good, buffering={"maxItems": 5}))
subscribe(dict(good, buffering={"timeoutMs": 30001}))
subscribe(dict(good, destination={"protocol": "FTP", "URI": "ftp://x"}))
subscribe(good)
while True:
    if next_event(ext_id)["eventType"] == "SHUTDOWN":
        sys.exit(0)
"""
)
TELEMETRY_APP = """import json, os, tempfile, time
SINK = os.path.join(tempfile.gettempdir(), "telemetry.jsonl")
def events():
    try:
        with open(SINK) as handle:
            return [e for line in handle if line.strip() for e in json.loads(line)]
    except FileNotFoundError:
        return []
def handler(event, context):
    print("hello-telemetry", context.aws_request_id)
    wanted = event.get("report_of")
    deadline = time.time() + 10
    def reported():
        return any(e["type"] == "platform.report" and e["record"]["requestId"] == wanted
                   for e in events())
    while wanted and time.time() < deadline and not reported():
        time.sleep(0.02)
    return events()
"""


def test_telemetry_subscription_receives_function_and_platform_records(warm_target: Target) -> None:
    """A subscriber gets batches of function lines and platform records at its HTTP listener."""
    target = warm_target
    arn = layer(target.client, {"extensions/telemetry": TELEMETRY})
    env: dict[str, str] = {}
    if target.sandbox == "linux":
        env["BIND_SANDBOX"] = "1"  # cells resolve sandbox.localdomain, as Lambda's do
    name = function(target.client, TELEMETRY_APP, [arn], env, MemorySize=256)
    first, _ = invoke_json(target.client, name, {})
    first_id = first["ResponseMetadata"]["RequestId"]
    second, records = invoke_json(target.client, name, {"report_of": first_id})
    assert "FunctionError" not in second, (records, function_log(target.server, name))
    kinds = [r["type"] for r in records]
    for kind in (
        "platform.initStart",
        "platform.telemetrySubscription",
        "platform.initRuntimeDone",
        "platform.initReport",
        "platform.extension",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
        "function",
    ):
        assert kind in kinds, (kind, kinds)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    assert f"hello-telemetry {first_id}" in [
        r["record"] for r in records if r["type"] == "function"
    ]
    report = next(r["record"] for r in records if r["type"] == "platform.report")
    assert report["requestId"] == first_id
    assert report["status"] == "success"
    assert set(report["metrics"]) >= {
        "durationMs",
        "billedDurationMs",
        "memorySizeMB",
        "maxMemoryUsedMB",
    }
    assert report["metrics"]["memorySizeMB"] == 256
    subscription = next(
        r["record"] for r in records if r["type"] == "platform.telemetrySubscription"
    )
    types = ["platform", "function", "extension"]
    assert subscription == {"name": "telemetry", "state": "Subscribed", "types": types}
    mine = [r["record"] for r in records if r["type"] == "extension"]
    assert any(line.startswith("telemetry SUBSCRIBE 400") for line in mine), mine
    lines = messages(target.server, name, second["ResponseMetadata"]["RequestId"])
    answers = said(lines, "telemetry SUBSCRIBE")
    assert [a.split(" ", 1)[0] for a in answers] == ["400"] * 5 + ["200"]
    assert all('"errorType":"ValidationError"' in a for a in answers[:5])
    assert answers[-1] == '200 "OK"'
    assert (
        "TELEMETRY\tName: telemetry\tState: Subscribed\tTypes: [Platform, Function, Extension]"
        in lines
    )


TCP_TELEMETRY = (
    PRELUDE
    + """
import socket, threading
SINK = os.path.join(tempfile.gettempdir(), "tcp-telemetry.jsonl")
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()

def receive():
    connection, _ = listener.accept()
    with connection, open(SINK, "ab", buffering=0) as handle:
        while chunk := connection.recv(65536):
            handle.write(chunk)

threading.Thread(target=receive, daemon=True).start()
status, ext_id, answer = register(["INVOKE"])
document = {"schemaVersion": "2022-07-01", "types": ["platform"],
            "buffering": {"timeoutMs": 25},
            "destination": {"protocol": "TCP", "port": listener.getsockname()[1]}}
reply = call("PUT", "/2022-07-01/telemetry", json.dumps(document).encode(),
             {"Lambda-Extension-Identifier": ext_id}, base=BASE)
say("SUBSCRIBE", reply[0], reply[2].decode())
while True:
    next_event(ext_id)
"""
)
TCP_APP = """import json, os, tempfile, time
SINK = os.path.join(tempfile.gettempdir(), "tcp-telemetry.jsonl")
def handler(event, context):
    deadline = time.time() + 5
    events = []
    while time.time() < deadline:  # polls: the first batch may not have arrived yet
        if os.path.exists(SINK):
            with open(SINK) as handle:
                events = [json.loads(line) for line in handle if line.strip()]
        if any(e["type"] == "platform.start" for e in events):
            return events
        time.sleep(0.02)
    return events
"""


def test_telemetry_over_tcp_is_json_lines(linux: Target) -> None:
    """A TCP subscriber gets one JSON event per line on its port."""
    arn = layer(linux.client, {"extensions/tcp": TCP_TELEMETRY})
    name = function(linux.client, TCP_APP, [arn])
    response, events = invoke_json(linux.client, name, {})
    assert "FunctionError" not in response, events
    assert 'tcp SUBSCRIBE 200 "OK"' in messages(linux.server, name)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "platform.initStart"
    assert "platform.start" in kinds
    assert "function" not in kinds, "only the subscribed types"
