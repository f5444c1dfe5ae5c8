"""Invoke payloads: the JSON check of large payloads, the 1 MB async limit, client context."""

from __future__ import annotations

import base64
import json
import os
import sys
from typing import Any

from lambdad.invoke.json_check import PARSE_PREFIX, TOO_DEEP
from tests.conftest import invoke_json, refused
from tests.test_provided_runtime import vendored

#: Larger than what lambdad checks on its event loop (``payloads.INLINE_LIMIT``).
LARGE = 256 * 1024 + 1
EVENT_LIMIT = 1024 * 1024
NOT_JSON = (
    "Could not parse request body into json: Could not parse payload into json: "
    "Unrecognized token 'hello': was expecting (JSON String, Number, Array, Object or token "
    "'null', 'true' or 'false')\n at [Source: (byte[])\""
)

SUMMARY = """
def handler(event, context):
    return {"items": len(event), "last": event[-1]}
"""

CONTEXT = """
def handler(event, context):
    cc = context.client_context
    return {
        "custom": cc.custom,
        "env": cc.env,
        "client": None if cc.client is None else {
            "installation_id": cc.client.installation_id,
            "app_title": cc.client.app_title,
        },
    }
"""

NODE_CONTEXT = """
exports.handler = async (event, context) => {
  const cc = context.clientContext;
  return {custom: cc.custom, env: cc.env, installation_id: cc.client.installation_id};
};
"""

RIC_CONTEXT = """
def handler(event, context):
    cc = context.client_context
    return {"custom": cc.custom, "env": cc.env, "installation_id": cc.client.installation_id}
"""

CLIENT_CONTEXT = {
    "client": {"installation_id": "inst-1", "app_title": "Notes\r\nApp", "app_version_name": "1"},
    "custom": {"greeting": "héllo\nworld", "nested": {"list": [1, 2, 3]}},
    "env": {"platform": "Android", "locale": "fr_FR"},
}


def _pretty_client_context() -> str:
    """Base64 of pretty-printed JSON: its raw newlines must never reach a header."""
    text = json.dumps(CLIENT_CONTEXT, indent=4, ensure_ascii=False)
    assert "\n" in text
    return base64.b64encode(text.encode()).decode()


def test_a_large_payload_that_is_not_json_gets_the_same_answer_as_a_small_one(
    lam: Any, new_function: Any
) -> None:
    """A non-JSON payload too large to check in place is refused as AWS refuses any non-JSON
    payload: 400 InvalidRequestContentException, ``Could not parse request body into json``."""
    fn = new_function()
    for payload in (b"hello there", b"hello " + b" " * LARGE):
        with refused("InvalidRequestContentException", 400) as error:
            lam.invoke(FunctionName=fn["FunctionName"], Payload=payload)
        assert error["Message"].startswith(NOT_JSON), error


def test_a_deeply_nested_payload_is_refused_not_a_500(lam: Any, new_function: Any) -> None:
    """A payload nested deeper than Lambda's parser allows (Jackson's limit is 1,000 levels) is
    refused with 400 InvalidRequestContentException, small or large; the next invoke runs."""
    fn = new_function(SUMMARY)
    for depth in (5_000, 300_000):  # checked in place, and by the helper process
        payload = b"[" * depth + b"]" * depth
        with refused("InvalidRequestContentException", 400) as error:
            lam.invoke(FunctionName=fn["FunctionName"], Payload=payload)
        assert error["Message"] == PARSE_PREFIX + TOO_DEEP, error
    _, body = invoke_json(lam, fn["FunctionName"], Payload=b"[1]")
    assert body == {"items": 1, "last": 1}


def test_large_payloads_that_are_json_reach_the_function(lam: Any, new_function: Any) -> None:
    """Large JSON payloads (many small objects, a byte order mark, a lone surrogate escape,
    which Lambda's parser accepts) are checked off the loop and delivered whole."""
    fn = new_function(SUMMARY)
    items = [{"id": index, "ok": True, "name": f"item-{index}"} for index in range(60_000)]
    payload = json.dumps(items).encode()
    assert len(payload) > LARGE
    _, body = invoke_json(lam, fn["FunctionName"], Payload=payload)
    assert body == {"items": 60_000, "last": items[-1]}
    padding = b" " * LARGE
    _, body = invoke_json(lam, fn["FunctionName"], Payload=b'["\\ud800", 1]' + padding)
    assert body == {"items": 2, "last": 1}
    _, body = invoke_json(lam, fn["FunctionName"], Payload=b"\xef\xbb\xbf[7]" + padding)
    assert body == {"items": 1, "last": 7}


def test_an_event_payload_over_1_mb_is_refused_with_aws_message(
    lam: Any, new_function: Any
) -> None:
    """AWS refuses an ``Event`` payload over 1,048,576 bytes with 413
    RequestEntityTooLargeException, ``<size> byte payload is too large for the Event
    invocation type (limit 1048576 bytes)``; one of exactly 1 MB is accepted."""
    name = new_function()["FunctionName"]
    over = b'"' + b"a" * (EVENT_LIMIT - 1) + b'"'
    message = (
        f"{len(over)} byte payload is too large for the Event invocation type "
        f"(limit {EVENT_LIMIT} bytes)"
    )
    with refused("RequestEntityTooLargeException", 413, message):
        lam.invoke(FunctionName=name, Payload=over, InvocationType="Event")
    exact = over[:-2] + b'"'
    assert len(exact) == EVENT_LIMIT
    response = lam.invoke(FunctionName=name, Payload=exact, InvocationType="Event")
    assert response["StatusCode"] == 202


def test_an_invoke_async_payload_over_1_mb_is_refused_with_aws_message(
    lam: Any, new_function: Any
) -> None:
    """The legacy InvokeAsync is an asynchronous invoke: the same 1 MB limit and message."""
    name = new_function()["FunctionName"]
    over = b'"' + b"a" * (EVENT_LIMIT + 10) + b'"'
    message = (
        f"{len(over)} byte payload is too large for the Event invocation type "
        f"(limit {EVENT_LIMIT} bytes)"
    )
    with refused("RequestEntityTooLargeException", 413, message):
        lam.invoke_async(FunctionName=name, InvokeArgs=over)


def test_a_pretty_printed_client_context_reaches_a_python_function_intact(
    lam: Any, new_function: Any
) -> None:
    """Lambda hands the caller's ClientContext (base64 of JSON) to the function as
    ``context.client_context``; pretty-printed JSON with newlines and non-ASCII arrives whole."""
    fn = new_function(CONTEXT)
    _, body = invoke_json(lam, fn["FunctionName"], {}, ClientContext=_pretty_client_context())
    assert body == {
        "custom": CLIENT_CONTEXT["custom"],
        "env": CLIENT_CONTEXT["env"],
        "client": {"installation_id": "inst-1", "app_title": "Notes\r\nApp"},
    }


def test_a_pretty_printed_client_context_reaches_awslambdaric_intact(
    lam: Any, new_function: Any
) -> None:
    """The real runtime client (awslambdaric, as a custom runtime) gets the same client
    context from the ``Lambda-Runtime-Client-Context`` header."""
    bootstrap = (
        "#!/bin/sh\n"
        'export PYTHONPATH="$LAMBDA_TASK_ROOT"\n'
        f'exec "{os.path.realpath(sys.executable)}" -S -m awslambdaric app.handler\n'
    )
    files = {
        **vendored("awslambdaric", "simplejson", "snapshot-restore-py"),
        "app.py": RIC_CONTEXT.encode(),
        "bootstrap": bootstrap.encode(),
    }
    fn = new_function(
        files=files, modes={"bootstrap": 0o755}, Runtime="provided.al2023", Handler="unused"
    )
    response, body = invoke_json(
        lam, fn["FunctionName"], {}, ClientContext=_pretty_client_context()
    )
    assert "FunctionError" not in response, body
    assert body == {
        "custom": CLIENT_CONTEXT["custom"],
        "env": CLIENT_CONTEXT["env"],
        "installation_id": "inst-1",
    }


def test_a_pretty_printed_client_context_reaches_a_node_function_intact(
    lam: Any, new_function: Any
) -> None:
    """Node.js functions get the same client context as ``context.clientContext``."""
    fn = new_function(
        files={"index.js": NODE_CONTEXT}, Runtime="nodejs20.x", Handler="index.handler"
    )
    response, body = invoke_json(
        lam, fn["FunctionName"], {}, ClientContext=_pretty_client_context()
    )
    assert "FunctionError" not in response, body
    assert body == {
        "custom": CLIENT_CONTEXT["custom"],
        "env": CLIENT_CONTEXT["env"],
        "installation_id": "inst-1",
    }
