"""The Python managed runtimes: interpreters, process environment, logging, handlers, results.

Each test deploys a zip to a real lambdad and checks what the function sees and what the
caller gets back against AWS's Python runtime (wire spec §3 and §4).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from typing import Any

import pytest

from lambdad.runtime.runtimes import find_python
from tests.conftest import (
    IDENTITY,
    MEET,
    ROLE,
    assert_environment_gone,
    invoke_json,
    make_zip,
    unique,
    wait_until,
)

STREAM_NAME = re.compile(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}")
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"

VERSION_REPORTER = (
    "import os, sys\n"
    "def handler(event, context):\n"
    "    return {'version': list(sys.version_info[:2]), 'exe': sys.executable,\n"
    "            'env': os.environ['AWS_EXECUTION_ENV']}\n"
)


def invoke_tail(client: Any, name: str, payload: Any = None, **kwargs: Any) -> tuple[Any, ...]:
    """Invoke with LogType=Tail: (response without its stream, raw body, decoded tail log)."""
    response = client.invoke(
        FunctionName=name, Payload=json.dumps(payload or {}).encode(), LogType="Tail", **kwargs
    )
    body = response.pop("Payload").read()
    return response, body, base64.b64decode(response["LogResult"]).decode()


def group_messages(server: Any, name: str) -> list[str]:
    """The function's log lines once its invocation's REPORT is among them: CloudWatch Logs
    delivers lines with a delay (here a cluster's worker sends them to the api node within
    about 0.1 s)."""

    def reported() -> list[str] | None:
        events = server.get_json(f"/_lambdad/logs?function={name}")["events"]
        messages = [event["message"] for event in events]
        return messages if any(m.startswith("REPORT") for m in messages) else None

    found: list[str] = wait_until(reported)
    return found


# ---------------------------------------------------------------- interpreters


@pytest.mark.parametrize("minor", [9, 10, 11, 12, 13])
def test_each_python_runtime_runs_on_its_own_interpreter(
    server: Any, lam: Any, new_function: Any, minor: int
) -> None:
    """python3.X functions run on a Python 3.X interpreter, and say nothing about it."""
    if find_python((3, minor), os.environ.get("PATH", "")) is None:
        pytest.skip(f"python3.{minor} is not installed here")
    fn = new_function(VERSION_REPORTER, Runtime=f"python3.{minor}")
    response, body = invoke_json(lam, fn["FunctionName"], {})
    assert "FunctionError" not in response
    assert body["version"] == [3, minor]
    assert body["env"] == f"AWS_Lambda_python3.{minor}"
    assert not [m for m in group_messages(server, fn["FunctionName"]) if "lambdad:" in m]


def test_a_missing_interpreter_falls_back_to_the_closest_and_says_so(
    server: Any, lam: Any, new_function: Any
) -> None:
    """python3.14 without a 3.14 interpreter runs on 3.13, with a notice in the function's log."""
    if find_python((3, 14), os.environ.get("PATH", "")) is not None:
        pytest.skip("python3.14 is installed here")
    fn = new_function(VERSION_REPORTER, Runtime="python3.14")
    name = fn["FunctionName"]
    response, body = invoke_json(lam, name, {})
    assert "FunctionError" not in response
    assert body["version"] == [3, 13]
    assert body["env"] == "AWS_Lambda_python3.14"
    messages = group_messages(server, name)
    notices = [m for m in messages if m.startswith("lambdad: python3.14 is not installed")]
    assert len(notices) == 1, messages
    assert "running on python3.13" in notices[0]
    assert messages.index(notices[0]) < next(
        i for i, m in enumerate(messages) if m.startswith("START")
    ), "the notice belongs to the init phase"


@pytest.mark.parametrize("runtime", ["python3.14", "python3.15"])
def test_the_newest_python_runtimes_run_on_the_closest_interpreter(
    server: Any, lam: Any, new_function: Any, runtime: str
) -> None:
    """python3.14 (first-class on Lambda) and python3.15 (a preview the current Lambda model
    lists) are accepted and run: on their own interpreter, else the closest the host has, with
    AWS_EXECUTION_ENV naming the runtime asked for."""
    minor = int(runtime.split(".")[1])
    fn = new_function(VERSION_REPORTER, Runtime=runtime)
    assert fn["Runtime"] == runtime
    response, body = invoke_json(lam, fn["FunctionName"], {})
    assert "FunctionError" not in response, body
    assert body["env"] == f"AWS_Lambda_{runtime}"
    expected = find_python((3, minor), os.environ.get("PATH", ""))
    if expected is not None:
        assert body["version"] == [3, minor]
    else:
        assert body["version"][0] == 3
        assert body["version"][1] < minor
        notices = [m for m in group_messages(server, fn["FunctionName"]) if "lambdad:" in m]
        assert notices
        assert f"{runtime} is not installed" in notices[0]


# ---------------------------------------------------------------- process environment

ENV_REPORTER = """
import os, tempfile

def handler(event, context):
    path = os.path.join(tempfile.gettempdir(), "probe.txt")
    with open(path, "w") as handle:
        handle.write("written")
    with open(path) as handle:
        read_back = handle.read()
    return {
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "files": sorted(os.listdir(".")),
        "read_back": read_back,
        "arn": context.invoked_function_arn,
    }
"""


def test_process_environment_matches_lambda(server: Any, new_function: Any) -> None:
    """The runtime process gets Lambda's variables, for the function's region and runtime."""
    client = server.client(region="eu-west-1")
    fn = new_function(
        ENV_REPORTER,
        client=client,
        Runtime="python3.12",
        MemorySize=256,
        Environment={"Variables": {"MY_SETTING": "on", "LANG": "C.UTF-8"}},
    )
    name = fn["FunctionName"]
    response, body = invoke_json(client, name, {})
    assert "FunctionError" not in response
    env = body["env"]
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert STREAM_NAME.fullmatch(env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert body["arn"] == f"arn:aws:lambda:eu-west-1:000000000000:function:{name}"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["LAMBDA_TASK_ROOT"] == body["cwd"]
    assert "app.py" in body["files"]
    # Lambda's is 127.0.0.1:9001; a cell with a network of its own reaches lambdad at its
    # gateway (docs/sandbox.md), a port per environment.
    walls = server.get_json("/_lambdad/doctor")["sandbox"].get("network namespace", "")
    host = walls.split("gateway ")[1].split(";")[0] if walls.startswith("active") else "127.0.0.1"
    assert re.fullmatch(re.escape(host) + r":\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_LOG_FORMAT"] == "Text"
    assert env["TZ"] == ":UTC"
    assert env["LANG"] == "C.UTF-8", "LANG is not reserved: the function's value wins"
    assert env["MY_SETTING"] == "on"
    for credential in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert env[credential], credential
    assert body["read_back"] == "written"


def test_tmp_is_private_to_each_environment(
    server: Any, new_function: Any, rendezvous: Any
) -> None:
    """Two environments running at once each have a /tmp of their own."""
    both = rendezvous(2)
    code = """
import os, tempfile

def handler(event, context):
    token = environment_identity()["token"]
    tmp = tempfile.gettempdir()
    open(os.path.join(tmp, token + ".mark"), "w").close()
    met = meet()
    marks = sorted(n for n in os.listdir(tmp) if n.endswith(".mark"))
    return {"marks": marks, "token": token, "met": met}
"""
    fn = new_function(IDENTITY + MEET + code, Environment={"Variables": both.env}, Timeout=20)
    results: list[dict[str, Any]] = []

    def call() -> None:
        results.append(invoke_json(server.client(), fn["FunctionName"], {})[1])

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    first, second = results
    assert first["token"] != second["token"]
    assert {first["met"], second["met"]} == {1, 2}, "both had written their mark before listing"
    for result in results:
        assert result["marks"] == [f"{result['token']}.mark"]


# ---------------------------------------------------------------- logging

LOGGER = """
import logging

def handler(event, context):
    logging.info("hidden info")
    logging.warning("careful %s", "now")
    logging.getLogger("app.sub").error("bad", extra={"order": 7})
    print("plain print")
    return "ok"
"""


def test_json_log_format(lam: Any, new_function: Any) -> None:
    """LogFormat JSON: records are JSON with the request id, below the level are dropped."""
    fn = new_function(LOGGER, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    response, body, log = invoke_tail(lam, fn["FunctionName"])
    request_id = response["ResponseMetadata"]["RequestId"]
    assert json.loads(body) == "ok"
    lines = log.splitlines()
    start, report = json.loads(lines[0]), json.loads(lines[-1])
    assert start["type"] == "platform.start"
    assert start["record"] == {"requestId": request_id, "version": "$LATEST"}
    assert report["type"] == "platform.report"
    assert report["record"]["requestId"] == request_id
    assert report["record"]["status"] == "success"
    assert {"durationMs", "billedDurationMs", "memorySizeMB", "initDurationMs"} <= set(
        report["record"]["metrics"]
    )
    assert re.fullmatch(TIMESTAMP, start["time"])
    records = [json.loads(line) for line in lines[1:-1] if line.startswith('{"timestamp"')]
    assert [(r["level"], r["message"], r["logger"]) for r in records] == [
        ("WARNING", "careful now", "root"),
        ("ERROR", "bad", "app.sub"),
    ]
    assert all(r["requestId"] == request_id for r in records)
    assert all(re.fullmatch(TIMESTAMP, r["timestamp"]) for r in records)
    assert records[1]["order"] == 7
    assert "hidden info" not in log
    assert "plain print" in lines


def test_text_log_format(lam: Any, new_function: Any) -> None:
    """Text format: the root logger is at WARNING unless the code lowers it; RIC's line format."""
    fn = new_function(
        "import logging\n"
        "logger = logging.getLogger()\n"
        "def handler(event, context):\n"
        "    logger.info('before setLevel')\n"
        "    logger.setLevel(logging.INFO)\n"
        "    logger.info('hello %s', 'there')\n"
        "    logging.warning('watch out')\n"
        "    return 'ok'\n"
    )
    response, _, log = invoke_tail(lam, fn["FunctionName"])
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = log.splitlines()
    assert "before setLevel" not in log
    assert any(
        re.fullmatch(rf"\[INFO\]\t{TIMESTAMP}\t{request_id}\thello there", line) for line in lines
    ), log
    assert any(
        re.fullmatch(rf"\[WARNING\]\t{TIMESTAMP}\t{request_id}\twatch out", line) for line in lines
    ), log


# ---------------------------------------------------------------- handlers and results


@pytest.mark.parametrize("handler", ["pkg/mod.handler", "pkg.mod.handler"])
def test_handler_in_a_subdirectory(lam: Any, new_function: Any, handler: str) -> None:
    """A handler module below the task root is named with '/' or '.'."""
    fn = new_function(
        files={"pkg/mod.py": "def handler(event, context):\n    return __name__\n"},
        Handler=handler,
    )
    response, body = invoke_json(lam, fn["FunctionName"], {})
    assert "FunctionError" not in response
    assert body == "pkg.mod"


def test_vendored_package_is_importable(lam: Any, new_function: Any) -> None:
    """A package shipped at the zip's root imports without any .pth or sys.path setup."""
    fn = new_function(
        files={
            "app.py": (
                "import os\nimport vendored\nfrom vendored.sub import VALUE\n"
                "def handler(event, context):\n"
                "    return {'value': VALUE, 'root': os.path.dirname(os.path.dirname("
                "vendored.__file__)) == os.environ['LAMBDA_TASK_ROOT']}\n"
            ),
            "vendored/__init__.py": "",
            "vendored/sub.py": "VALUE = 42\n",
        }
    )
    _, body = invoke_json(lam, fn["FunctionName"], {})
    assert body == {"value": 42, "root": True}


def test_bytes_and_none_results(lam: Any, new_function: Any) -> None:
    """bytes are returned raw; None is JSON null."""
    raw = new_function("def handler(event, context):\n    return b'\\x00\\xffraw'\n")
    response = lam.invoke(FunctionName=raw["FunctionName"])
    assert "FunctionError" not in response
    assert response["Payload"].read() == b"\x00\xffraw"
    none = new_function("def handler(event, context):\n    return None\n")
    response = lam.invoke(FunctionName=none["FunctionName"])
    assert "FunctionError" not in response
    assert response["Payload"].read() == b"null"


def test_unserialisable_result_is_marshal_error(lam: Any, new_function: Any) -> None:
    """A result json cannot encode is Runtime.MarshalError, Unhandled."""
    fn = new_function("def handler(event, context):\n    return {1, 2}\n")
    response, body = invoke_json(lam, fn["FunctionName"], {})
    assert response["FunctionError"] == "Unhandled"
    assert body == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError",
        "requestId": response["ResponseMetadata"]["RequestId"],
        "stackTrace": [],
    }


# ---------------------------------------------------------------- idle reaping


def test_idle_environments_are_reaped(start_server: Any) -> None:
    """After the keep-alive an idle environment's process exits and the next invoke is cold."""
    srv = start_server({"LAMBDAD_KEEP_ALIVE": "1", "LAMBDAD_TIME_SCALE": "1"})
    client = srv.client()
    name = unique()
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={
            "ZipFile": make_zip(
                {"app.py": IDENTITY + "def handler(e, c):\n    return environment_identity()\n"}
            )
        },
    )
    _, body, log = invoke_tail(client, name)
    identity = json.loads(body)
    assert "\tInit Duration: " in log.splitlines()[-1]
    assert_environment_gone(identity, timeout=10)
    _, body, log = invoke_tail(client, name)
    assert json.loads(body)["token"] != identity["token"]
    assert "\tInit Duration: " in log.splitlines()[-1], "a reaped environment means a cold start"
