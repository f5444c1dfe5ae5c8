"""Invoke through boto3: results, headers, logs, warm reuse, payload limits."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import IDENTITY, MEET, invoke_json, refused, wait_until

COUNTER = """
import os
count = 0

def handler(event, context):
    global count
    count += 1
    print("event", event)
    return {"count": count, "pid": os.getpid(), "event": event, "id": context.aws_request_id}
"""


def test_invoke_returns_the_handler_result_and_the_executed_version(
    lam: Any, new_function: Any
) -> None:
    """A RequestResponse invoke returns 200, the handler's result and X-Amz-Executed-Version."""
    fn = new_function(COUNTER)
    response, body = invoke_json(lam, fn["FunctionName"], {"hello": "world"})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert body["event"] == {"hello": "world"}
    assert response["ResponseMetadata"]["RequestId"] == body["id"]


def test_environments_are_reused_while_warm(lam: Any, new_function: Any) -> None:
    """Module state survives between invocations of one warm environment."""
    fn = new_function(COUNTER)
    counts = [invoke_json(lam, fn["FunctionName"], {})[1]["count"] for _ in range(3)]
    assert counts == [1, 2, 3]


def test_concurrent_invokes_run_in_separate_environments(
    server: Any, new_function: Any, rendezvous: Any
) -> None:
    """Invocations that overlap run in parallel, each in an environment of its own."""
    meeting = rendezvous(4)  # answers nobody until all four handlers are inside at once
    code = "def handler(e, c):\n    meet()\n    return environment_identity()\n"
    fn = new_function(
        IDENTITY + MEET + code,
        Environment={"Variables": {"RENDEZVOUS_PORT": str(meeting.port)}},
        Timeout=30,
    )
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client = server.client()
            try:
                response, body = invoke_json(client, fn["FunctionName"], {})
                assert "FunctionError" not in response, body
                results.append(body)
            finally:
                client.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Run one after another, the first handler would wait for the others until it timed out.
    assert not errors, errors
    assert len({identity["token"] for identity in results}) == 4


def test_tail_returns_the_last_4kb_of_the_invocation_log(lam: Any, new_function: Any) -> None:
    """LogType=Tail gives base64 START ... REPORT with what the function printed."""
    fn = new_function(COUNTER)
    response = lam.invoke(FunctionName=fn["FunctionName"], Payload=b'{"x": 1}', LogType="Tail")
    log = base64.b64decode(response["LogResult"]).decode()
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert "event {'x': 1}" in lines
    assert lines[-2] == f"END RequestId: {request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert "\tInit Duration: " in lines[-1], "the first invoke is a cold start"
    assert "\tMemory Size: 128 MB\tMax Memory Used: " in lines[-1]
    second = lam.invoke(FunctionName=fn["FunctionName"], Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(second["LogResult"]).decode()

    noisy = new_function("def handler(e, c):\n    print('x' * 1000 + '\\n') ; print('y' * 9000)\n")
    response = lam.invoke(FunctionName=noisy["FunctionName"], LogType="Tail")
    tail = base64.b64decode(response["LogResult"])
    assert len(tail) <= 4096
    assert tail.decode().rstrip().splitlines()[-1].startswith("REPORT RequestId:")


def test_report_line_format(lam: Any, new_function: Any) -> None:
    """The REPORT line has Lambda's fields, tab-separated, with a trailing tab."""
    fn = new_function(COUNTER, MemorySize=256)
    response = lam.invoke(FunctionName=fn["FunctionName"], LogType="Tail")
    report = base64.b64decode(response["LogResult"]).decode().splitlines()[-1]
    fields = report.split("\t")
    assert fields[0].startswith("REPORT RequestId: ")
    assert fields[1].startswith("Duration: ")
    assert fields[1].endswith(" ms")
    duration = float(fields[1].split()[1])
    billed = int(fields[2].removeprefix("Billed Duration: ").removesuffix(" ms"))
    init = float(fields[5].split()[2])
    assert billed >= duration + init - 1e-6
    assert fields[3] == "Memory Size: 256 MB"
    used = int(fields[4].removeprefix("Max Memory Used: ").removesuffix(" MB"))
    assert 1 <= used <= 256  # a forked runtime shares its template's pages (docs/zygote.md)
    assert report.endswith("\t")


def test_client_context_reaches_the_function(lam: Any, new_function: Any) -> None:
    """X-Amz-Client-Context (base64 JSON) arrives as context.client_context."""
    fn = new_function(
        "def handler(e, c):\n"
        "    cc = c.client_context\n"
        "    return {'custom': cc.custom, 'env': cc.env, 'app': cc.client.app_title}\n"
    )
    ctx = {"client": {"app_title": "demo"}, "custom": {"k": "v"}, "env": {"platform": "x"}}
    encoded = base64.b64encode(json.dumps(ctx).encode()).decode()
    _, body = invoke_json(lam, fn["FunctionName"], {}, ClientContext=encoded)
    assert body == {"custom": {"k": "v"}, "env": {"platform": "x"}, "app": "demo"}


def test_a_pretty_printed_client_context_reaches_the_function(lam: Any, new_function: Any) -> None:
    """A client context of indented, non-ASCII JSON (newlines inside) reaches the function
    intact: lambdad re-serialises it compactly, so the Runtime API header it travels in
    carries no CR or LF (issue 9: lambdad's own Python bootstrap failed on one)."""
    fn = new_function("def handler(e, c):\n    return c.client_context.custom\n")
    custom = {"greeting": "grüß dich", "lines": ["a", "b"]}
    pretty = json.dumps({"custom": custom}, indent=2, ensure_ascii=False)
    encoded = base64.b64encode(pretty.encode()).decode()
    response, body = invoke_json(lam, fn["FunctionName"], {}, ClientContext=encoded)
    assert "FunctionError" not in response
    assert body == custom


def test_context_object_fields(lam: Any, new_function: Any) -> None:
    """The context carries the function's identity and the remaining time."""
    fn = new_function(
        "def handler(e, c):\n"
        "    return {'name': c.function_name, 'version': c.function_version,\n"
        "            'arn': c.invoked_function_arn, 'memory': c.memory_limit_in_mb,\n"
        "            'group': c.log_group_name, 'stream': c.log_stream_name,\n"
        "            'remaining': c.get_remaining_time_in_millis()}\n",
        Timeout=7,
    )
    name = fn["FunctionName"]
    _, body = invoke_json(lam, name, {})
    assert body["name"] == name
    assert body["version"] == "$LATEST"
    assert body["arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert int(body["memory"]) == 128
    assert body["group"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in body["stream"]
    assert 5000 < body["remaining"] <= 7000


def test_the_invoked_arn_carries_the_qualifier_given_in_the_name(
    lam: Any, new_function: Any
) -> None:
    """As on AWS, ``context.invoked_function_arn`` is the ARN the caller invoked: a qualifier
    given in the function name (``fn:live``, no ``Qualifier``) is part of it, as is one given
    as the parameter; an unqualified invoke's ARN has none."""
    fn = new_function("def handler(e, c):\n    return c.invoked_function_arn\n")
    name = fn["FunctionName"]
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert invoke_json(lam, f"{name}:live", {})[1] == f"{arn}:live"
    assert invoke_json(lam, f"{arn}:1", {})[1] == f"{arn}:1"
    assert invoke_json(lam, name, {}, Qualifier="live")[1] == f"{arn}:live"
    assert invoke_json(lam, name, {})[1] == arn


def test_function_error_is_unhandled_with_the_runtime_body(lam: Any, new_function: Any) -> None:
    """An exception in the handler gives 200, FunctionError Unhandled and the RIC error body."""
    fn = new_function("def handler(e, c):\n    raise ValueError('boom')\n")
    response, body = invoke_json(lam, fn["FunctionName"], {})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "boom"
    assert body["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert any("raise ValueError('boom')" in frame for frame in body["stackTrace"])


def test_dry_run_validates_without_running(lam: Any, new_function: Any) -> None:
    """DryRun answers 204 and runs nothing."""
    fn = new_function(COUNTER)
    response = lam.invoke(FunctionName=fn["FunctionName"], InvocationType="DryRun")
    assert response["StatusCode"] == 204
    _, body = invoke_json(lam, fn["FunctionName"], {})
    assert body["count"] == 1
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName="no-such-function-here", InvocationType="DryRun")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_event_invocations_are_accepted_and_run(server: Any, lam: Any, new_function: Any) -> None:
    """An Event invoke answers 202 at once and the function runs in the background."""
    fn = new_function("import time\ndef handler(e, c):\n    print('ran', e['n'])\n")
    response = lam.invoke(
        FunctionName=fn["FunctionName"], InvocationType="Event", Payload=b'{"n": 7}'
    )
    assert response["StatusCode"] == 202

    def printed() -> bool:
        events = server.get_json(f"/_lambdad/logs?function={fn['FunctionName']}")["events"]
        return any(e["message"] == "ran 7" for e in events)

    wait_until(printed)


def test_invoke_of_a_missing_function(lam: Any) -> None:
    """An unknown function is a 404 ResourceNotFoundException naming its ARN; Invoke, unlike
    GetFunction, names the ``$LATEST`` it would have run (as AWS answers since 2025)."""
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName="missing-fn")
    error = info.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert error["Error"]["Message"] == (
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:missing-fn:$LATEST"
    )


def test_an_unknown_invocation_type_quotes_the_model_enum(
    unchecked: Any, new_function: Any
) -> None:
    """AWS answers an ``X-Amz-Invocation-Type`` outside the model's enum with a 400
    InvalidParameterValueException worded as a validation error listing the enum."""
    name = new_function(COUNTER)["FunctionName"]
    with refused(
        "InvalidParameterValueException",
        400,
        "1 validation error detected: Value 'Later' at 'invocationType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
    ):
        unchecked.invoke(FunctionName=name, InvocationType="Later", Payload=b"{}")


def test_payload_limits(lam: Any, new_function: Any) -> None:
    """Sync payloads over 6 MB and Event payloads over 1 MB get 413 RequestEntityTooLarge."""
    fn = new_function(COUNTER, Timeout=60)  # it prints and returns 6 MB: not a test of speed
    big = b'"' + b"a" * (6 * 1024 * 1024) + b'"'
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=fn["FunctionName"], Payload=big)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert info.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    medium = b'"' + b"a" * (1024 * 1024) + b'"'
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=fn["FunctionName"], Payload=medium, InvocationType="Event")
    assert info.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    # Just under the sync limit still runs.
    ok = b'"' + b"a" * (6 * 1024 * 1024 - 1000) + b'"'
    response = lam.invoke(FunctionName=fn["FunctionName"], Payload=ok)
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Payload"].read()[:500]


def test_non_json_payload_is_rejected(lam: Any, new_function: Any) -> None:
    """A payload that is not JSON gets 400 InvalidRequestContentException."""
    fn = new_function(COUNTER)
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=fn["FunctionName"], Payload=b"hello there")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert info.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert info.value.response["Error"]["Message"].startswith(
        "Could not parse request body into json"
    )


def test_empty_payload_is_an_empty_object(lam: Any, new_function: Any) -> None:
    """Invoking with no payload delivers {} to the handler."""
    fn = new_function(COUNTER)
    response = lam.invoke(FunctionName=fn["FunctionName"])
    assert json.loads(response["Payload"].read())["event"] == {}


def test_response_too_large(lam: Any, new_function: Any) -> None:
    """A response over 6 MB is Function.ResponseSizeTooLarge, Unhandled."""
    fn = new_function("def handler(e, c):\n    return 'x' * (6 * 1024 * 1024 + 200)\n")
    response, body = invoke_json(lam, fn["FunctionName"], {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"
    assert body["errorMessage"].startswith("Response payload size (")
    assert body["errorMessage"].endswith(
        "bytes) exceeded maximum allowed payload size (6291556 bytes)."
    )
