"""The Lambda REST API (botocore's ``lambda`` model, rest-json): one small handler per call.

Handlers parse the wire (path labels, query, headers, JSON bodies), call the domain, and
render AWS shapes. They hold no rules of their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api.auth import region_of
from lambdad.api.shapes import alias_configuration, function_configuration, function_list_item
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.concurrency import Reservations
from lambdad.control.functions import Functions
from lambdad.invoke.payloads import EVENT_LIMIT, check_size, limit_of
from lambdad.invoke.service import (
    Accepted,
    InvocationType,
    Invoker,
    InvokeRequest,
    decode_client_context,
    parse_invocation_type,
)

#: Largest CreateFunction / UpdateFunctionCode request AWS takes (a 50 MB zip in base64, + JSON).
CODE_REQUEST_LIMIT = 70_167_211
#: Bodies larger than this are joined in a thread: a copy of megabytes takes milliseconds.
JOIN_IN_THREAD = 1024 * 1024
#: Largest request body of any other control-plane call.
CONTROL_REQUEST_LIMIT = 6 * 1024 * 1024

FUNCTIONS = web.AppKey("functions", Functions)
INVOKER = web.AppKey("invoker", Invoker)
RESERVATIONS = web.AppKey("reservations", Reservations)
ACCOUNT = web.AppKey("account_id", str)
DEFAULT_REGION = web.AppKey("default_region", str)

routes = web.RouteTableDef()


def scope_of(request: web.Request) -> Scope:
    app = request.app
    return Scope(app[ACCOUNT], region_of(request.headers, app[DEFAULT_REGION]))


def _functions(request: web.Request) -> Functions:
    return request.app[FUNCTIONS]


async def read_up_to(request: web.Request, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes when it is longer.

    Chunks are taken as they arrived (``readchunk``), so the body is copied once, at the end:
    ``read(n)`` would join aiohttp's buffered chunks first, a second copy of megabytes on the
    event loop. A large body is joined in a thread (``bytes.join`` releases the GIL there).
    """
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk, _ = await request.content.readchunk()
        if not chunk:
            break
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
    if len(chunks) == 1:
        return chunks[0]
    if size > JOIN_IN_THREAD:
        return await asyncio.to_thread(b"".join, chunks)
    return b"".join(chunks)


async def _read_limited(request: web.Request, limit: int, operation: str) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise errors.RequestTooLargeException(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )
    data = await read_up_to(request, limit + 1)
    if len(data) > limit:
        raise errors.RequestTooLargeException(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )
    return data


async def json_body(
    request: web.Request, operation: str, limit: int = CONTROL_REQUEST_LIMIT
) -> dict[str, Any]:
    raw = await _read_limited(request, limit, operation)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise errors.InvalidRequestContentException(
            f"Could not parse request body into json: {exc}"
        ) from exc
    if not isinstance(body, dict):
        raise errors.InvalidRequestContentException(
            "Could not parse request body into json: the body is not a JSON object"
        )
    return body


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def empty(status: int = 204) -> web.Response:
    return web.Response(status=status)


def max_items_of(request: web.Request) -> int | None:
    raw = request.query.get("MaxItems")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.InvalidParameterValueException(f"Invalid MaxItems value: {raw}") from None


def paged(key: str, items: list[dict[str, Any]], marker: str | None) -> web.Response:
    body: dict[str, Any] = {key: items}
    if marker:
        body["NextMarker"] = marker
    return reply(body)


# ------------------------------------------------------------------------- functions


@routes.post("/2015-03-31/functions")
async def create_function(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "CreateFunction", CODE_REQUEST_LIMIT)
    config = await _functions(request).create(scope, body)
    return reply(function_configuration(scope, config), 201)


@routes.get("/2015-03-31/functions")
@routes.get("/2015-03-31/functions/")
async def list_functions(request: web.Request) -> web.Response:
    scope = scope_of(request)
    all_versions = validation.wants_all_versions(request.query.get("FunctionVersion"))
    configs, marker = await _functions(request).list_functions(
        scope,
        all_versions=all_versions,
        marker=request.query.get("Marker"),
        max_items=max_items_of(request),
    )
    items = [function_list_item(scope, c, qualified=all_versions) for c in configs]
    return paged("Functions", items, marker)


@routes.get("/2015-03-31/functions/{name}")
async def get_function(request: web.Request) -> web.Response:
    scope = scope_of(request)
    functions = _functions(request)
    name = request.match_info["name"]
    config, named = await functions.lookup(scope, name, request.query.get("Qualifier"))
    record = await functions.record(scope, name)
    base = f"{request.scheme}://{request.host}"
    body: dict[str, Any] = {
        "Configuration": function_configuration(scope, config, qualifier=named),
        "Code": {"RepositoryType": "S3", "Location": f"{base}/_lambdad/code/{config.code_key}.zip"},
    }
    if record.tags:
        body["Tags"] = dict(record.tags)
    reserved = await request.app[RESERVATIONS].get(scope, record.name)
    if reserved is not None:
        body["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
    return reply(body)


@routes.delete("/2015-03-31/functions/{name}")
async def delete_function(request: web.Request) -> web.Response:
    await _functions(request).delete(
        scope_of(request), request.match_info["name"], request.query.get("Qualifier")
    )
    return empty()


@routes.get("/2015-03-31/functions/{name}/configuration")
async def get_function_configuration(request: web.Request) -> web.Response:
    scope = scope_of(request)
    config, named = await _functions(request).lookup(
        scope, request.match_info["name"], request.query.get("Qualifier")
    )
    return reply(function_configuration(scope, config, qualifier=named))


@routes.put("/2015-03-31/functions/{name}/configuration")
async def update_function_configuration(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "UpdateFunctionConfiguration")
    config = await _functions(request).update_config(scope, request.match_info["name"], body)
    return reply(function_configuration(scope, config))


@routes.put("/2015-03-31/functions/{name}/code")
async def update_function_code(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "UpdateFunctionCode", CODE_REQUEST_LIMIT)
    config = await _functions(request).update_code(scope, request.match_info["name"], body)
    return reply(function_configuration(scope, config))


# ------------------------------------------------------------------------- versions


@routes.post("/2015-03-31/functions/{name}/versions")
async def publish_version(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "PublishVersion")
    config = await _functions(request).publish(
        scope,
        request.match_info["name"],
        code_sha256=body.get("CodeSha256"),
        description=body.get("Description"),
        revision_id=body.get("RevisionId"),
    )
    return reply(function_configuration(scope, config), 201)


@routes.get("/2015-03-31/functions/{name}/versions")
async def list_versions(request: web.Request) -> web.Response:
    scope = scope_of(request)
    configs, marker = await _functions(request).list_versions(
        scope, request.match_info["name"], request.query.get("Marker"), max_items_of(request)
    )
    items = [function_list_item(scope, c, qualified=True) for c in configs]
    return paged("Versions", items, marker)


# ------------------------------------------------------------------------- aliases


@routes.post("/2015-03-31/functions/{name}/aliases")
async def create_alias(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "CreateAlias")
    alias = await _functions(request).create_alias(scope, request.match_info["name"], body)
    return reply(alias_configuration(scope, alias), 201)


@routes.get("/2015-03-31/functions/{name}/aliases")
async def list_aliases(request: web.Request) -> web.Response:
    scope = scope_of(request)
    aliases, marker = await _functions(request).list_aliases(
        scope,
        request.match_info["name"],
        request.query.get("FunctionVersion"),
        request.query.get("Marker"),
        max_items_of(request),
    )
    return paged("Aliases", [alias_configuration(scope, a) for a in aliases], marker)


@routes.get("/2015-03-31/functions/{name}/aliases/{alias}")
async def get_alias(request: web.Request) -> web.Response:
    scope = scope_of(request)
    alias = await _functions(request).get_alias(
        scope, request.match_info["name"], request.match_info["alias"]
    )
    return reply(alias_configuration(scope, alias))


@routes.put("/2015-03-31/functions/{name}/aliases/{alias}")
async def update_alias(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "UpdateAlias")
    alias = await _functions(request).update_alias(
        scope, request.match_info["name"], request.match_info["alias"], body
    )
    return reply(alias_configuration(scope, alias))


@routes.delete("/2015-03-31/functions/{name}/aliases/{alias}")
async def delete_alias(request: web.Request) -> web.Response:
    await _functions(request).delete_alias(
        scope_of(request), request.match_info["name"], request.match_info["alias"]
    )
    return empty()


# ------------------------------------------------------------------------- tags, account


@routes.get("/2017-03-31/tags/{arn}")
async def list_tags(request: web.Request) -> web.Response:
    tags = await _functions(request).tags(scope_of(request), request.match_info["arn"])
    return reply({"Tags": tags})


@routes.post("/2017-03-31/tags/{arn}")
async def tag_resource(request: web.Request) -> web.Response:
    body = await json_body(request, "TagResource")
    await _functions(request).tag(
        scope_of(request), request.match_info["arn"], body.get("Tags") or {}
    )
    return empty()


@routes.delete("/2017-03-31/tags/{arn}")
async def untag_resource(request: web.Request) -> web.Response:
    keys = request.query.getall("tagKeys", [])
    await _functions(request).untag(scope_of(request), request.match_info["arn"], list(keys))
    return empty()


@routes.get("/2016-08-19/account-settings")
@routes.get("/2016-08-19/account-settings/")
async def get_account_settings(request: web.Request) -> web.Response:
    scope = scope_of(request)
    count, total = await _functions(request).count(scope)
    reservations = request.app[RESERVATIONS]
    return reply(
        {
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800,
                "CodeSizeUnzipped": 262_144_000,
                "CodeSizeZipped": 52_428_800,
                "ConcurrentExecutions": reservations.limit,
                "UnreservedConcurrentExecutions": await reservations.unreserved(scope.region),
            },
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
        }
    )


# ------------------------------------------------------------------------- concurrency


@routes.put("/2017-10-31/functions/{name}/concurrency")
async def put_function_concurrency(request: web.Request) -> web.Response:
    body = await json_body(request, "PutFunctionConcurrency")
    reserved = await request.app[RESERVATIONS].put(
        scope_of(request), request.match_info["name"], body.get("ReservedConcurrentExecutions")
    )
    return reply({"ReservedConcurrentExecutions": reserved})


@routes.get("/2019-09-30/functions/{name}/concurrency")
async def get_function_concurrency(request: web.Request) -> web.Response:
    reserved = await request.app[RESERVATIONS].get(scope_of(request), request.match_info["name"])
    return reply({} if reserved is None else {"ReservedConcurrentExecutions": reserved})


@routes.delete("/2017-10-31/functions/{name}/concurrency")
async def delete_function_concurrency(request: web.Request) -> web.Response:
    await request.app[RESERVATIONS].delete(scope_of(request), request.match_info["name"])
    return empty()


# ------------------------------------------------------------------------- invoke


@routes.post("/2015-03-31/functions/{name}/invocations")
async def invoke(request: web.Request) -> web.Response:
    scope = scope_of(request)
    kind = parse_invocation_type(request.headers.get("X-Amz-Invocation-Type"))
    if request.content_length is not None:
        check_size(request.content_length, kind.value)
    payload = await read_up_to(request, limit_of(kind.value) + 1)
    log_type = request.headers.get("X-Amz-Log-Type", "None")
    outcome = await request.app[INVOKER].invoke(
        scope,
        InvokeRequest(
            function_name=request.match_info["name"],
            qualifier=request.query.get("Qualifier"),
            payload=payload,
            invocation_type=kind,
            tail=log_type == "Tail" and kind is InvocationType.REQUEST_RESPONSE,
            client_context=decode_client_context(request.headers.get("X-Amz-Client-Context")),
            trace_id=request.headers.get("X-Amzn-Trace-Id"),
            tenant_id=request.headers.get("X-Amz-Tenant-Id"),
        ),
    )
    if isinstance(outcome, Accepted):
        status = 202 if kind is InvocationType.EVENT else 204
        return web.Response(
            status=status,
            headers={
                "x-amzn-RequestId": outcome.request_id,
                "X-Amz-Executed-Version": outcome.executed_version,
            },
        )
    headers = {
        "x-amzn-RequestId": outcome.report.request_id,
        "X-Amz-Executed-Version": outcome.executed_version,
        "Content-Type": outcome.content_type or "application/json",
    }
    if outcome.function_error:
        headers["X-Amz-Function-Error"] = "Unhandled"
    if log_type == "Tail":
        headers["X-Amz-Log-Result"] = base64.b64encode(outcome.log.encode()).decode()
    return web.Response(status=200, body=outcome.payload, headers=headers)


@routes.post("/2014-11-13/functions/{name}/invoke-async/")
@routes.post("/2014-11-13/functions/{name}/invoke-async")
async def invoke_async(request: web.Request) -> web.Response:
    scope = scope_of(request)
    if request.content_length is not None:
        check_size(request.content_length, InvocationType.EVENT.value)
    payload = await read_up_to(request, EVENT_LIMIT + 1)
    await request.app[INVOKER].invoke(
        scope,
        InvokeRequest(
            function_name=request.match_info["name"],
            qualifier=None,
            payload=payload,
            invocation_type=InvocationType.EVENT,
        ),
    )
    return reply({"Status": 202}, 202)
