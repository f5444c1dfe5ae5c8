"""The provided runtimes: the zip's own ``bootstrap``, the real awslambdaric or a hand-made one."""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import invoke_json

APP = """
import os
import awslambdaric

count = 0

def handler(event, context):
    global count
    count += 1
    print("printed by", context.function_name, event)
    if event.get("fail"):
        raise ValueError("ric boom")
    return {"count": count, "pid": os.getpid(), "ric": awslambdaric.__file__,
            "id": context.aws_request_id, "event": event}
"""

#: The AWS custom-runtime tutorial's bootstrap, in sh and curl, with a counter added.
CURL_BOOTSTRAP = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
count=0
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  count=$((count + 1))
  echo "handling $REQUEST_ID"
  curl -sS -o /dev/null -H 'Content-Type: application/json' "$API/$REQUEST_ID/response" \\
    -d "{\\"count\\": $count, \\"pid\\": $$, \\"id\\": \\"$REQUEST_ID\\", \\"event\\": $EVENT}"
done
"""

#: A Python bootstrap that resolves ``_HANDLER`` (``module.function``) like a managed runtime.
PY_BOOTSTRAP = """#!{python}
import importlib, json, os, sys, traceback, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
handler = getattr(importlib.import_module(module_name), function_name)

def post(path, body, headers=None):
    headers = {{"Content-Type": "application/json", **(headers or {{}})}}
    data = json.dumps(body).encode()
    request = urllib.request.Request(api + path, data=data, method="POST", headers=headers)
    urllib.request.urlopen(request).read()

while True:
    with urllib.request.urlopen(api + "/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read())
    try:
        result = handler(event, os.environ["_HANDLER"])
    except Exception as exc:
        post(f"/invocation/{{request_id}}/error",
             {{"errorType": "Custom." + type(exc).__name__, "errorMessage": str(exc),
              "stackTrace": traceback.format_tb(exc.__traceback__)}},
             {{"Lambda-Runtime-Function-Error-Type": "Function.Custom"}})
    else:
        post(f"/invocation/{{request_id}}/response", result)
"""

GREETER = """
def greet(event, handler_name):
    if "name" not in event:
        raise KeyError("name")
    return {"greeting": "hello " + event["name"], "handler": handler_name}
"""


@functools.cache
def vendored(*distributions: str) -> dict[str, bytes]:
    """The installed files of ``distributions`` (package code only), as zip entries."""
    files: dict[str, bytes] = {}
    for dist in distributions:
        for entry in importlib.metadata.files(dist) or []:
            name = str(entry)
            if ".dist-info/" in name or "__pycache__" in name or name.startswith(".."):
                continue
            files[name] = Path(str(entry.locate())).read_bytes()
    return files


@pytest.fixture
def ric_function(new_function: Any) -> Any:
    """A provided.al2023 function whose bootstrap runs the vendored awslambdaric on ``app``."""

    def create(**kwargs: Any) -> str:
        bootstrap = (
            "#!/bin/sh\n"
            'export PYTHONPATH="$LAMBDA_TASK_ROOT"\n'
            f'exec "{os.path.realpath(sys.executable)}" -S -m awslambdaric app.handler\n'
        )
        files = {
            **vendored("awslambdaric", "simplejson", "snapshot-restore-py"),
            "app.py": APP.encode(),
            "bootstrap": bootstrap.encode(),
        }
        params = {"Runtime": "provided.al2023", "Handler": "unused", **kwargs}
        fn = new_function(files=files, modes={"bootstrap": 0o755}, **params)
        return str(fn["FunctionName"])

    return create


def test_vendored_awslambdaric_returns_the_handler_result(lam: Any, ric_function: Any) -> None:
    """The unmodified RIC, shipped in the zip, runs the handler and its result comes back."""
    name = ric_function()
    response, body = invoke_json(lam, name, {"k": "v"})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert body["event"] == {"k": "v"}
    assert body["id"] == response["ResponseMetadata"]["RequestId"]
    assert "site-packages" not in body["ric"], "the RIC must come from the zip"


def test_vendored_awslambdaric_error_body(lam: Any, ric_function: Any) -> None:
    """A handler exception under the real RIC is Unhandled with the RIC's own error body."""
    name = ric_function()
    response, body = invoke_json(lam, name, {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "ric boom"
    assert body["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert any('raise ValueError("ric boom")' in frame for frame in body["stackTrace"])


def test_vendored_awslambdaric_prints_reach_the_tail_and_stay_warm(
    lam: Any, ric_function: Any
) -> None:
    """What the handler prints is in the tail log, and the RIC process is reused while warm."""
    name = ric_function()
    response, first = invoke_json(lam, name, {"n": 1}, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = base64.b64decode(response["LogResult"]).decode().splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert f"printed by {name} {{'n': 1}}" in lines
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\t")
    bodies = [first] + [invoke_json(lam, name, {})[1] for _ in range(2)]
    assert [b["count"] for b in bodies] == [1, 2, 3]
    assert len({b["pid"] for b in bodies}) == 1


def test_shell_and_curl_bootstrap(lam: Any, new_function: Any) -> None:
    """A sh + curl bootstrap answers with the request id it read and is reused while warm."""
    fn = new_function(
        files={"bootstrap": CURL_BOOTSTRAP},
        modes={"bootstrap": 0o755},
        Runtime="provided.al2023",
        Handler="function.handler",
    )
    name = fn["FunctionName"]
    results = [invoke_json(lam, name, {"i": i}) for i in range(3)]
    for i, (response, body) in enumerate(results):
        assert "FunctionError" not in response
        assert body["id"] == response["ResponseMetadata"]["RequestId"]
        assert body["event"] == {"i": i}
    assert [body["count"] for _, body in results] == [1, 2, 3]
    assert len({body["pid"] for _, body in results}) == 1
    response, _ = invoke_json(lam, name, None, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    log = base64.b64decode(response["LogResult"]).decode().splitlines()
    assert f"handling {request_id}" in log


def test_provided_al2_bootstrap_uses_the_handler_setting(lam: Any, new_function: Any) -> None:
    """On provided.al2 the bootstrap gets Handler as ``_HANDLER``; its /error body is verbatim."""
    fn = new_function(
        files={
            "bootstrap": PY_BOOTSTRAP.format(python=os.path.realpath(sys.executable)),
            "greeter.py": GREETER,
        },
        modes={"bootstrap": 0o755},
        Runtime="provided.al2",
        Handler="greeter.greet",
    )
    name = fn["FunctionName"]
    response, body = invoke_json(lam, name, {"name": "al2"})
    assert "FunctionError" not in response
    assert body == {"greeting": "hello al2", "handler": "greeter.greet"}
    response, body = invoke_json(lam, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Custom.KeyError"
    assert body["errorMessage"] == "'name'"
    assert body["stackTrace"]
