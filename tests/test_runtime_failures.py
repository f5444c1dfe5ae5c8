"""How invocations fail: timeouts, crashes, failed inits and the Runtime API's refusals.

Every test runs real runtime processes under a real lambdad and checks the bodies, log lines
and environment turnover that AWS Lambda shows for the same failure (wire spec §1.5-§1.7).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    IDENTITY,
    MEET,
    assert_environment_gone,
    create_function,
    function_log,
    invoke_json,
    reported,
)

COUNTER = (
    IDENTITY
    + """
import time
count = 0

def handler(event, context):
    global count
    count += 1
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"count": count, "identity": environment_identity()}
"""
)

CRASHER = (
    IDENTITY
    + """
import ctypes, os, signal

def handler(event, context):
    how = event.get("crash")
    if how == "exit":
        os._exit(3)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segv":
        ctypes.string_at(0)
    return environment_identity()
"""
)


def invoke_tail(client: Any, name: str, payload: Any = None, **kwargs: Any) -> tuple[Any, ...]:
    """Invoke with LogType=Tail: (response without its stream, raw body, decoded tail log)."""
    response = client.invoke(
        FunctionName=name, Payload=json.dumps(payload or {}).encode(), LogType="Tail", **kwargs
    )
    body = response.pop("Payload").read()
    return response, body, base64.b64decode(response["LogResult"]).decode()


def platform_error(error_type: str, request_id: str, reason: str) -> bytes:
    """Lambda's own error body, byte for byte (compact JSON, errorType first)."""
    return (
        f'{{"errorType":"{error_type}","errorMessage":"RequestId: {request_id} Error: {reason}"}}'
    ).encode()


def request_id_of(response: Any) -> str:
    return str(response["ResponseMetadata"]["RequestId"])


# ---------------------------------------------------------------- timeouts


def test_timeout_is_sandbox_timedout_and_replaces_the_environment(
    lam: Any, new_function: Any
) -> None:
    """A handler past its Timeout gets Lambda's Sandbox.Timedout body; its process is killed."""
    fn = new_function(COUNTER, Timeout=1)
    name = fn["FunctionName"]
    first = invoke_json(lam, name, {})[1]
    began = time.monotonic()
    response, body, log = invoke_tail(lam, name, {"sleep": 5})
    assert time.monotonic() - began < 4, "the invocation outlived its timeout"
    request_id = request_id_of(response)
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body == platform_error(
        "Sandbox.Timedout", request_id, "Task timed out after 1.00 seconds"
    )
    lines = log.splitlines()
    assert any(
        re.fullmatch(rf"\S+Z {request_id} Task timed out after 1\.00 seconds", line)
        for line in lines
    ), log
    assert lines[-2] == f"END RequestId: {request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert lines[-1].endswith("\tStatus: timeout\t")
    assert re.search(r"\tMax Memory Used: [1-9]\d* MB\t", lines[-1]), "measured before the kill"

    assert_environment_gone(first["identity"], timeout=5)
    after = invoke_json(lam, name, {})[1]
    assert after["count"] == 1, "the next invoke runs in a fresh environment"
    assert after["identity"]["token"] != first["identity"]["token"]


# ---------------------------------------------------------------- crashes


@pytest.mark.parametrize(
    ("crash", "reason"),
    [
        ("exit", "Runtime exited with error: exit status 3"),
        ("kill", "Runtime exited with error: signal: killed"),
        ("segv", "Runtime exited with error: signal: segmentation fault"),
    ],
)
def test_runtime_crash_is_runtime_exit_error(
    lam: Any, new_function: Any, crash: str, reason: str
) -> None:
    """A runtime that dies mid-invoke gives Runtime.ExitError with Go's wording of the exit."""
    fn = new_function(CRASHER)
    name = fn["FunctionName"]
    before = invoke_json(lam, name, {})[1]
    response, body, log = invoke_tail(lam, name, {"crash": crash})
    request_id = request_id_of(response)
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body == platform_error("Runtime.ExitError", request_id, reason)
    lines = log.splitlines()
    at = lines.index(f"RequestId: {request_id} Error: {reason}")
    assert lines[at + 1] == "Runtime.ExitError"
    assert lines[-2] == f"END RequestId: {request_id}"
    assert lines[-1].endswith("\tStatus: error\tError Type: Runtime.ExitError\t")
    assert re.search(r"\tMax Memory Used: [1-9]\d* MB\t", lines[-1])

    assert_environment_gone(before, timeout=5)
    after_response, after = invoke_json(lam, name, {})
    assert "FunctionError" not in after_response
    assert after["token"] != before["token"], "the next invoke runs in a new environment"


# ---------------------------------------------------------------- init failures


def _ric_init_error(message: str, error_type: str) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": "", "stackTrace": []}


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        pytest.param(
            {"other.py": "x = 1\n"},
            "app.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'app'",
            id="missing-module",
        ),
        pytest.param(
            {"app.py": "def other(e, c):\n    return 1\n"},
            "app.handler",
            "Runtime.HandlerNotFound",
            "Handler 'handler' missing on module 'app'",
            id="missing-handler",
        ),
        pytest.param(
            {"app.py": "def handler(e, c):\n    return 1\n"},
            "app",
            "Runtime.MalformedHandlerName",
            "Bad handler 'app': not enough values to unpack (expected 2, got 1)",
            id="malformed-name",
        ),
    ],
)
def test_handler_resolution_failures(
    server: Any,
    lam: Any,
    new_function: Any,
    files: dict[str, str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    """A handler that cannot be resolved fails init twice (init, then inside the invoke)."""
    fn = new_function(files=files, Handler=handler)
    name = fn["FunctionName"]
    response, body, log = invoke_tail(lam, name)
    request_id = request_id_of(response)
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(body) == _ric_init_error(message, error_type)
    _assert_failed_init_logs(server, name, request_id, log, error_type)


def _assert_failed_init_logs(
    server: Any, name: str, request_id: str, tail: str, error_type: str
) -> None:
    """The init phase and the suppressed init each end in INIT_REPORT ... Status: error."""
    phase_re = r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: {}\tStatus: error\tError Type: {}"
    init_line = phase_re.format("init", re.escape(error_type))
    invoke_line = phase_re.format("invoke", re.escape(error_type))
    lines = tail.splitlines()
    suppressed = [i for i, line in enumerate(lines) if re.fullmatch(invoke_line, line)]
    assert len(suppressed) == 1, tail
    start = lines.index(f"START RequestId: {request_id} Version: $LATEST")
    assert suppressed[0] < start, "the suppressed init comes before START, as on AWS"
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert lines[-1].rstrip("\t").endswith(f"\tStatus: error\tError Type: {error_type}")
    assert "Init Duration" not in lines[-1], "a suppressed init is part of the invoke's Duration"

    messages = function_log(server, name, until=lambda m: reported(m, request_id))
    assert messages[0].startswith("INIT_START Runtime Version: ")
    phases = [m for m in messages if m.startswith("INIT_REPORT")]
    assert len(phases) == 2, messages
    assert re.fullmatch(init_line, phases[0])
    assert re.fullmatch(invoke_line, phases[1])


def test_syntax_error_is_user_code_syntax_error(server: Any, lam: Any, new_function: Any) -> None:
    """A module that does not parse is Runtime.UserCodeSyntaxError with the offending line."""
    fn = new_function("x = 1\ndef handler(event, context)\n    return 1\n")
    name = fn["FunctionName"]
    response, body, log = invoke_tail(lam, name)
    error = json.loads(body)
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert error["errorMessage"].startswith("Syntax error in module 'app': ")
    assert "(app.py, line 2)" in error["errorMessage"]
    assert error["requestId"] == ""
    assert len(error["stackTrace"]) == 1
    assert "Line 2" in error["stackTrace"][0]
    _assert_failed_init_logs(
        server, name, request_id_of(response), log, "Runtime.UserCodeSyntaxError"
    )


def test_exception_at_import_is_reported_with_its_own_type(
    server: Any, lam: Any, new_function: Any
) -> None:
    """An exception raised by module code fails init with the exception's class and trace."""
    fn = new_function("raise ValueError('bad config')\ndef handler(e, c):\n    return 1\n")
    name = fn["FunctionName"]
    response, body, log = invoke_tail(lam, name)
    error = json.loads(body)
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "bad config"
    assert error["requestId"] == ""
    assert any("raise ValueError('bad config')" in frame for frame in error["stackTrace"])
    assert "[ERROR] ValueError: bad config\rTraceback (most recent call last):" in log
    _assert_failed_init_logs(server, name, request_id_of(response), log, "ValueError")


def test_sys_exit_at_import_is_runtime_exit_error(server: Any, lam: Any, new_function: Any) -> None:
    """sys.exit(2) while importing the handler is Runtime.ExitError: exit status 2."""
    fn = new_function("import sys\nsys.exit(2)\n")
    name = fn["FunctionName"]
    response, body, log = invoke_tail(lam, name)
    request_id = request_id_of(response)
    assert response["FunctionError"] == "Unhandled"
    reason = "Runtime exited with error: exit status 2"
    assert body == platform_error("Runtime.ExitError", request_id, reason)
    lines = log.splitlines()
    at = lines.index(f"RequestId: {request_id} Error: {reason}")
    assert lines[at + 1] == "Runtime.ExitError"
    _assert_failed_init_logs(server, name, request_id, log, "Runtime.ExitError")


def test_init_that_fails_once_succeeds_in_the_suppressed_init(
    server: Any, lam: Any, new_function: Any, rendezvous: Any
) -> None:
    """When init fails and the retry inside the invoke succeeds, the invoke succeeds."""
    inits = rendezvous()
    code = (
        IDENTITY + MEET + "if meet() == 1:\n"
        "    raise RuntimeError('first init fails')\n"
        "def handler(event, context):\n"
        "    return environment_identity()\n"
    )
    fn = new_function(code, Environment={"Variables": inits.env})
    name = fn["FunctionName"]
    response, body, log = invoke_tail(lam, name)
    assert "FunctionError" not in response
    token = json.loads(body)["token"]
    assert inits.count == 2, "init ran twice: failed, then retried inside the invoke"
    assert "INIT_REPORT" not in log
    messages = function_log(server, name, until=reported)
    phases = [m for m in messages if m.startswith("INIT_REPORT")]
    assert len(phases) == 1
    assert "\tPhase: init\tStatus: error\tError Type: RuntimeError" in phases[0]
    assert invoke_json(lam, name, {})[1]["token"] == token, "the retried environment stays warm"
    assert inits.count == 2


# ---------------------------------------------------------------- init timeout


@pytest.mark.slow
def test_init_timeout_is_retried_inside_the_invoke(start_server: Any, tmp_path: Path) -> None:
    """An init longer than the init cap is re-run inside the invoke, bounded by Timeout."""
    srv = start_server({"LAMBDAD_INIT_TIMEOUT": "1"})
    client = srv.client()
    slow = _create(client, "import time\ntime.sleep(2)\ndef handler(e, c):\n    return 'ok'\n", 10)
    response, body, log = invoke_tail(client, slow)
    assert "FunctionError" not in response
    assert json.loads(body) == "ok"
    messages = function_log(srv, slow, until=reported)
    phases = [m for m in messages if m.startswith("INIT_REPORT")]
    assert len(phases) == 1
    assert re.fullmatch(
        r"INIT_REPORT Init Duration: 1\d{3}\.\d\d ms\tPhase: init\tStatus: timeout", phases[0]
    )
    assert "Init Duration" not in log.splitlines()[-1]

    stuck = _create(client, "import time\ntime.sleep(30)\ndef handler(e, c):\n    return 1\n", 3)
    began = time.monotonic()
    response, body, log = invoke_tail(client, stuck)
    assert time.monotonic() - began < 10
    request_id = request_id_of(response)
    assert response["FunctionError"] == "Unhandled"
    assert body == platform_error(
        "Sandbox.Timedout", request_id, "Task timed out after 3.00 seconds"
    )
    lines = log.splitlines()
    assert re.fullmatch(
        r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: invoke\tStatus: timeout", lines[0]
    ), log
    assert lines[1] == f"START RequestId: {request_id} Version: $LATEST"
    assert lines[-1].endswith("\tStatus: timeout\t")


def _create(client: Any, code: str, timeout: int) -> str:
    return str(create_function(client, code, Timeout=timeout)["FunctionName"])


# ---------------------------------------------------------------- the Runtime API contract

#: A custom runtime that exercises the Runtime API and reports what it was told.
PROBE_RUNTIME = (
    IDENTITY
    + """
import json, os, sys, time, urllib.error, urllib.request

API = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]
CUSTOM_ERROR = b'{"errorMessage" : "nope",  "errorType": "Custom.Thing", "extra": [1, 2]}'


def call(method, path, body=None, headers=None):
    request = urllib.request.Request(API + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, got, text = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        status, got, text = error.code, error.headers, error.read().decode()
    return status, {k.lower(): v for k, v in got.items()}, text


def answer(status_headers_body):
    return [status_headers_body[0], status_headers_body[2]]


def respond(request_id, document):
    path = "/invocation/%s/response" % request_id
    return call("POST", path, json.dumps(document).encode(), {"Content-Type": "application/json"})


after = {}
while True:
    _, headers, body = call("GET", "/invocation/next")
    request_id = headers["lambda-runtime-aws-request-id"]
    action = json.loads(body).get("action")
    if action == "probe":
        again = call("GET", "/invocation/next")
        report = {
            "headers": headers,
            "body": body,
            "again": [again[0], again[1].get("lambda-runtime-aws-request-id"), again[2]],
            "wrong_id": answer(call("POST", "/invocation/not-this-one/response", b"{}")),
            "init_error": answer(call("POST", "/init/error", b"{}")),
        }
        respond(request_id, report)
        after = {
            "response": answer(respond(request_id, {})),
            "error": answer(call("POST", "/invocation/%s/error" % request_id, b"{}")),
        }
    elif action == "after":
        respond(request_id, after)
    elif action == "error":
        call(
            "POST",
            "/invocation/%s/error" % request_id,
            CUSTOM_ERROR,
            {"Content-Type": "application/json",
             "Lambda-Runtime-Function-Error-Type": "Function.Custom"},
        )
    elif action == "exit":
        sys.exit(0)
    else:
        respond(request_id, environment_identity())
"""
)

INVALID_REQUEST_ID = '{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}\n'


def _probe_function(new_function: Any, **kwargs: Any) -> dict[str, Any]:
    bootstrap = f"#!{os.path.realpath(sys.executable)}\n{PROBE_RUNTIME}"
    return dict(
        new_function(
            files={"bootstrap": bootstrap},
            modes={"bootstrap": 0o755},
            Runtime="provided.al2023",
            Handler="probe.handler",
            **kwargs,
        )
    )


def _state_error(src: str, dst: str) -> str:
    message = f"State transition from {src} to {dst} failed for runtime. "
    message += "Error: State transition is not allowed"
    return (
        json.dumps(
            {"errorMessage": message, "errorType": "InvalidStateTransition"}, separators=(",", ":")
        )
        + "\n"
    )


def test_runtime_api_refuses_what_lambda_refuses(lam: Any, new_function: Any) -> None:
    """A second /next re-renders the event; a wrong id is 400; posting twice or /init/error, 403."""
    fn = _probe_function(new_function, Timeout=5)
    name = fn["FunctionName"]
    response, report = invoke_json(lam, name, {"action": "probe"})
    request_id = request_id_of(response)
    assert "FunctionError" not in response
    assert report["again"] == [200, request_id, report["body"]]
    assert report["wrong_id"] == [400, INVALID_REQUEST_ID]
    assert report["init_error"] == [403, _state_error("Running", "InitError")]
    _, after = invoke_json(lam, name, {"action": "after"})
    assert after["response"] == [403, _state_error("RuntimeResponseSent", "InvocationResponse")]
    assert after["error"] == [
        403,
        _state_error("RuntimeResponseSent", "InvocationErrorResponse"),
    ]


def test_next_headers_describe_the_invocation(lam: Any, new_function: Any) -> None:
    """/next carries the request id, the deadline, the ARN as invoked and the client context."""
    fn = _probe_function(new_function, Timeout=5)
    name = fn["FunctionName"]
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    context = {"custom": {"k": "v"}, "env": {"e": "1"}, "client": {"app_title": "t"}}
    encoded = base64.b64encode(json.dumps(context).encode()).decode()
    before_ms = time.time() * 1000
    response, report = invoke_json(lam, name, {"action": "probe"}, ClientContext=encoded)
    after_ms = time.time() * 1000
    headers = report["headers"]
    assert headers["lambda-runtime-aws-request-id"] == request_id_of(response)
    deadline = int(headers["lambda-runtime-deadline-ms"])
    assert before_ms + 5000 - 50 <= deadline <= after_ms + 5000 + 50
    assert headers["lambda-runtime-invoked-function-arn"] == arn
    assert json.loads(headers["lambda-runtime-client-context"]) == context
    assert headers["content-type"] == "application/json"
    assert json.loads(report["body"]) == {"action": "probe"}

    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    for qualifier in (version, "live"):
        response, report = invoke_json(lam, name, {"action": "probe"}, Qualifier=qualifier)
        assert report["headers"]["lambda-runtime-invoked-function-arn"] == f"{arn}:{qualifier}"
        assert "lambda-runtime-client-context" not in report["headers"]


def test_posted_error_is_forwarded_verbatim(lam: Any, new_function: Any) -> None:
    """An /error body with an error-type header reaches the caller byte for byte, Unhandled."""
    fn = _probe_function(new_function)
    response = lam.invoke(FunctionName=fn["FunctionName"], Payload=b'{"action": "error"}')
    assert response["FunctionError"] == "Unhandled"
    assert response["Payload"].read() == (
        b'{"errorMessage" : "nope",  "errorType": "Custom.Thing", "extra": [1, 2]}'
    )


def test_runtime_exiting_cleanly_mid_invoke(lam: Any, new_function: Any) -> None:
    """A runtime that exits 0 during an invoke is Runtime.ExitError without a reason."""
    fn = _probe_function(new_function)
    name = fn["FunctionName"]
    token = invoke_json(lam, name, {})[1]["token"]
    response, body, log = invoke_tail(lam, name, {"action": "exit"})
    request_id = request_id_of(response)
    reason = "Runtime exited without providing a reason"
    assert body == platform_error("Runtime.ExitError", request_id, reason)
    assert f"RequestId: {request_id} Error: {reason}" in log.splitlines()
    assert invoke_json(lam, name, {})[1]["token"] != token


@pytest.mark.parametrize("present", [True, False], ids=["not-executable", "missing"])
def test_bootstrap_that_cannot_run_is_invalid_entrypoint(
    lam: Any, new_function: Any, present: bool
) -> None:
    """A provided runtime without an executable bootstrap fails with Runtime.InvalidEntrypoint."""
    files = {"bootstrap": "#!/bin/sh\nexit 0\n"} if present else {"other.txt": "x"}
    fn = new_function(
        files=files, modes={"bootstrap": 0o644}, Runtime="provided.al2023", Handler="x.y"
    )
    response, body, log = invoke_tail(lam, fn["FunctionName"])
    request_id = request_id_of(response)
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(body)
    assert list(error) == ["errorType", "errorMessage"]
    assert error["errorType"] == "Runtime.InvalidEntrypoint"
    assert error["errorMessage"].startswith(f"RequestId: {request_id} Error: ")
    if present:
        assert error["errorMessage"].endswith("/bootstrap: permission denied")
        assert "fork/exec " in error["errorMessage"]
    else:
        assert "Couldn't find valid bootstrap(s): [" in error["errorMessage"]
    assert (
        log.splitlines()[-1]
        .rstrip("\t")
        .endswith("\tStatus: error\tError Type: Runtime.InvalidEntrypoint")
    )
