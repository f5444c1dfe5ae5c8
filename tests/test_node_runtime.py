"""The nodejs runtimes: lambdad's Node.js runtime client on the host's ``node``, through boto3."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from typing import Any

import pytest

from tests.conftest import ROLE, invoke_json, make_zip, unique

ECHO_CJS = """
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  console.log('got', JSON.stringify(event));
  return {
    event,
    count,
    pid: process.pid,
    node: process.version,
    env: process.env.AWS_EXECUTION_ENV,
    id: context.awsRequestId,
  };
};
"""

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t(?P<id>[0-9a-f-]{36})\tINFO\t(.*)$"
)


def node_function(new_function: Any, files: dict[str, str], **kwargs: Any) -> str:
    """Create a Node.js function (nodejs20.x, ``index.handler`` unless told) and return its name."""
    params: dict[str, Any] = {"Runtime": "nodejs20.x", "Handler": "index.handler", **kwargs}
    return str(new_function(files=files, **params)["FunctionName"])


def tail(response: dict[str, Any]) -> list[str]:
    return base64.b64decode(response["LogResult"]).decode().splitlines()


@pytest.mark.parametrize(
    "runtime", ["nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x", "nodejs26.x"]
)
def test_commonjs_handler_runs_on_every_nodejs_runtime(
    lam: Any, new_function: Any, runtime: str
) -> None:
    """A CommonJS ``exports.handler`` returns its result under each nodejs runtime id, all on
    the host's ``node`` (nodejs24.x as on Lambda; nodejs26.x, a preview the current Lambda
    model lists, too)."""
    name = node_function(new_function, {"index.js": ECHO_CJS}, Runtime=runtime)
    response, body = invoke_json(lam, name, {"hello": "node"})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert body["event"] == {"hello": "node"}
    assert body["env"] == f"AWS_Lambda_{runtime}"
    assert body["node"].startswith("v")
    assert body["id"] == response["ResponseMetadata"]["RequestId"]


def test_es_module_mjs_handler(lam: Any, new_function: Any) -> None:
    """An ``.mjs`` file is imported as an ES module and its named export is the handler."""
    code = "export const handler = async (event) => ({ esm: typeof require, got: event.x });\n"
    name = node_function(new_function, {"index.mjs": code})
    _, body = invoke_json(lam, name, {"x": 5})
    assert body == {"esm": "undefined", "got": 5}


def test_js_in_a_type_module_package_is_an_es_module(lam: Any, new_function: Any) -> None:
    """A ``.js`` handler under ``package.json`` ``"type": "module"`` is loaded as ESM."""
    files = {
        "package.json": json.dumps({"name": "esm-fn", "type": "module"}),
        "src/app.js": "import path from 'node:path';\n"
        "export async function run(event) { return path.join('a', event.p); }\n",
    }
    name = node_function(new_function, files, Handler="src/app.run")
    _, body = invoke_json(lam, name, {"p": "b"})
    assert body == "a/b"


def test_callback_style_handler(lam: Any, new_function: Any) -> None:
    """A ``(event, context, callback)`` handler answers through the callback, errors included."""
    code = (
        "exports.handler = (event, context, callback) => {\n"
        "  context.callbackWaitsForEmptyEventLoop = false;\n"
        "  if (event.fail) return callback(new TypeError('cb failed'));\n"
        "  setTimeout(() => callback(null, { doubled: event.n * 2 }), 5);\n"
        "};\n"
    )
    name = node_function(new_function, {"index.js": code})
    response, body = invoke_json(lam, name, {"n": 21})
    assert "FunctionError" not in response
    assert body == {"doubled": 42}
    response, body = invoke_json(lam, name, {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "TypeError"
    assert body["errorMessage"] == "cb failed"


def test_thrown_error_is_unhandled_with_the_node_error_body(lam: Any, new_function: Any) -> None:
    """An exception thrown by the handler gives Unhandled and {errorType, errorMessage, trace}."""
    code = (
        "class BadThing extends Error { constructor(m) { super(m); this.name = 'BadThing'; } }\n"
        "exports.handler = async () => { throw new BadThing('it broke'); };\n"
    )
    name = node_function(new_function, {"index.js": code})
    response, body = invoke_json(lam, name, {})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "BadThing"
    assert body["errorMessage"] == "it broke"
    assert body["trace"][0] == "BadThing: it broke"
    assert any("index.js" in frame for frame in body["trace"][1:])


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message_part"),
    [
        (
            {"index.js": "exports.other = 1;\n"},
            "nothere.handler",
            "Runtime.ImportModuleError",
            "Cannot find module 'nothere'",
        ),
        (
            {"index.js": "exports.other = async () => 1;\n"},
            "index.handler",
            "Runtime.HandlerNotFound",
            "index.handler is undefined or not exported",
        ),
    ],
    ids=["missing-module", "missing-handler"],
)
def test_init_errors_name_the_runtime_error_type(
    lam: Any,
    new_function: Any,
    files: dict[str, str],
    handler: str,
    error_type: str,
    message_part: str,
) -> None:
    """A handler that cannot be loaded fails the invoke with the RIC's ``Runtime.*`` error."""
    name = node_function(new_function, files, Handler=handler)
    response, body = invoke_json(lam, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == error_type
    assert message_part in body["errorMessage"]


def test_console_log_lines_in_text_format(lam: Any, new_function: Any) -> None:
    """``console.log`` writes ``<ts>\\t<request id>\\tINFO\\t<message>`` between START and END."""
    name = node_function(new_function, {"index.js": ECHO_CJS})
    response, _ = invoke_json(lam, name, {"a": 1}, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = tail(response)
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    logged = [m for m in map(TEXT_LINE.match, lines) if m]
    assert [(m["id"], m[2]) for m in logged] == [(request_id, 'got {"a":1}')]
    assert lines[-2] == f"END RequestId: {request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\t")


def test_json_log_format(lam: Any, new_function: Any) -> None:
    """With LoggingConfig JSON every console call is one JSON object with level and request id."""
    code = (
        "exports.handler = async (event) => {\n"
        "  console.info('hello', 'json');\n"
        "  console.debug('hidden below the level');\n"
        "  console.error(new Error('shown'));\n"
        "  return 1;\n"
        "};\n"
    )
    name = node_function(
        new_function,
        {"index.js": code},
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"},
    )
    response, _ = invoke_json(lam, name, None, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    records = [json.loads(line) for line in tail(response) if line.startswith("{")]
    app = [r for r in records if "level" in r and r.get("type") is None]
    assert [(r["level"], r["requestId"]) for r in app] == [
        ("INFO", request_id),
        ("ERROR", request_id),
    ]
    assert app[0]["message"] == "hello json"
    assert app[1]["message"]["errorType"] == "Error"
    assert app[1]["message"]["errorMessage"] == "shown"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", app[0]["timestamp"])


def test_context_fields(lam: Any, new_function: Any) -> None:
    """The context has the function name, request id, remaining time and the client context."""
    code = (
        "exports.handler = async (event, context) => ({\n"
        "  name: context.functionName, id: context.awsRequestId,\n"
        "  version: context.functionVersion, arn: context.invokedFunctionArn,\n"
        "  memory: context.memoryLimitInMB, group: context.logGroupName,\n"
        "  remaining: context.getRemainingTimeInMillis(), cc: context.clientContext,\n"
        "});\n"
    )
    name = node_function(new_function, {"index.js": code}, Timeout=9)
    ctx = {"client": {"app_title": "demo"}, "custom": {"k": "v"}, "env": {"platform": "x"}}
    encoded = base64.b64encode(json.dumps(ctx).encode()).decode()
    response, body = invoke_json(lam, name, {}, ClientContext=encoded)
    assert body["name"] == name
    assert body["id"] == response["ResponseMetadata"]["RequestId"]
    assert body["version"] == "$LATEST"
    assert body["arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert body["memory"] == "128"
    assert body["group"] == f"/aws/lambda/{name}"
    assert 7000 < body["remaining"] <= 9000
    assert body["cc"] == ctx


def test_warm_environment_keeps_module_state(lam: Any, new_function: Any) -> None:
    """A module-level counter grows across invokes of one warm node process."""
    name = node_function(new_function, {"index.js": ECHO_CJS})
    bodies = [invoke_json(lam, name, {})[1] for _ in range(3)]
    assert [b["count"] for b in bodies] == [1, 2, 3]
    assert len({b["pid"] for b in bodies}) == 1


def test_without_node_create_works_and_invoke_says_node_is_missing(start_server: Any) -> None:
    """With no usable ``node``, CreateFunction succeeds and invokes fail naming Node.js."""
    srv = start_server({"LAMBDAD_NODE": "/nonexistent/node"})
    with contextlib.closing(srv.client()) as client:
        name = unique("nonode")
        created = client.create_function(
            FunctionName=name,
            Runtime="nodejs20.x",
            Role=ROLE,
            Handler="index.handler",
            Code={"ZipFile": make_zip({"index.js": ECHO_CJS})},
        )
        assert created["Runtime"] == "nodejs20.x"
        for _ in range(2):
            response, body = invoke_json(client, name, {})
            assert response["StatusCode"] == 200
            assert response["FunctionError"] == "Unhandled"
            assert body["errorType"].startswith("Runtime.")
            assert "Node.js" in body["errorMessage"]
            assert "/nonexistent/node" in body["errorMessage"]
