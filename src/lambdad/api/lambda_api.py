"""The Lambda REST API (botocore's ``lambda`` model, rest-json): one small handler per call.

Each handler is given its request already decoded and checked against the model
(:mod:`lambdad.api.wire`), calls the domain, and renders AWS shapes. They hold no rules of
their own.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api.auth import caller_of, region_of
from lambdad.api.shapes import alias_configuration, function_configuration, function_list_item
from lambdad.api.wire import headers
from lambdad.api.wire.decode import handles, read_up_to
from lambdad.control.arns import Scope
from lambdad.control.concurrency import Reservations
from lambdad.control.functions import Functions
from lambdad.control.mappings import EventSourceMappings
from lambdad.control.model import FunctionConfig
from lambdad.control.requests import (
    AliasRequest,
    CreateAliasRequest,
    CreateFunctionRequest,
    FunctionRequest,
    ListAliasesRequest,
    ListByFunctionRequest,
    ListFunctionsRequest,
    ListTagsRequest,
    PublishVersionRequest,
    PutFunctionConcurrencyRequest,
    QualifiedFunctionRequest,
    TagResourceRequest,
    UntagResourceRequest,
    UpdateAliasRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionConfigurationRequest,
    Wire,
)
from lambdad.events.durable import SYNC_LIMIT, DurableEngine, answer_of
from lambdad.invoke.payloads import EVENT_LIMIT, limit_of
from lambdad.invoke.service import Accepted, InvocationType, Invoker, InvokeRequest

FUNCTIONS = web.AppKey("functions", Functions)
INVOKER = web.AppKey("invoker", Invoker)
MAPPINGS = web.AppKey("event_source_mappings", EventSourceMappings)
RESERVATIONS = web.AppKey("reservations", Reservations)
DURABLE = web.AppKey("durable_engine", DurableEngine)
ACCOUNT = web.AppKey("account_id", str)
DEFAULT_REGION = web.AppKey("default_region", str)

routes = web.RouteTableDef()

_FUNCTION = "/2015-03-31/functions/{FunctionName}"
_ALIAS = _FUNCTION + "/aliases/{Name}"


class NoInput(Wire, frozen=True, kw_only=True):
    """The input of a call that takes none (GetAccountSettings)."""


class InvokeParameters(Wire, frozen=True, kw_only=True):
    """Invoke's members other than the payload (read raw by the handler)."""

    function_name: str
    qualifier: str | None = None
    invocation_type: str | None = None
    log_type: str | None = None
    client_context: str | None = None
    tenant_id: str | None = None


class InvokeMembers(InvokeParameters, frozen=True, kw_only=True):
    """Invoke's members: InvokeWithResponseStream's, and the durable execution's name."""

    durable_execution_name: str | None = None


def scope_of(request: web.Request) -> Scope:
    """The account and region a request speaks for: its verified caller's account and signed
    region in SigV4 mode; the configured account and the credential scope's region in open
    mode."""
    caller = caller_of(request)
    if caller is not None:
        return Scope(caller.identity.account_id, caller.region, caller.identity.user_arn)
    app = request.app
    return Scope(app[ACCOUNT], region_of(request.headers, app[DEFAULT_REGION]))


def _functions(request: web.Request) -> Functions:
    return request.app[FUNCTIONS]


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def empty(status: int = 204) -> web.Response:
    return web.Response(status=status)


def paged(key: str, items: list[dict[str, Any]], marker: str | None) -> web.Response:
    body: dict[str, Any] = {key: items}
    if marker:
        body["NextMarker"] = marker
    return reply(body)


# ------------------------------------------------------------------------- functions


@routes.post("/2015-03-31/functions")
@handles("CreateFunction", CreateFunctionRequest)
async def create_function(request: web.Request, req: CreateFunctionRequest) -> web.Response:
    scope = scope_of(request)
    config = await _functions(request).create(scope, req)
    return reply(function_configuration(scope, config, bare_arn=True), 201)


@routes.get("/2015-03-31/functions")
@routes.get("/2015-03-31/functions/")
@handles("ListFunctions", ListFunctionsRequest)
async def list_functions(request: web.Request, req: ListFunctionsRequest) -> web.Response:
    scope = scope_of(request)
    all_versions = req.function_version == "ALL"
    configs, marker = await _functions(request).list_functions(
        scope, all_versions=all_versions, marker=req.marker, max_items=req.max_items
    )
    items = [function_list_item(scope, c, qualified=all_versions) for c in configs]
    return paged("Functions", items, marker)


@routes.get(_FUNCTION)
@handles("GetFunction", QualifiedFunctionRequest)
async def get_function(request: web.Request, req: QualifiedFunctionRequest) -> web.Response:
    scope = scope_of(request)
    functions = _functions(request)
    config, named = await functions.lookup(scope, req.function_name, req.qualifier)
    record = await functions.record(scope, req.function_name)
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


@routes.delete(_FUNCTION)
@handles("DeleteFunction", QualifiedFunctionRequest)
async def delete_function(request: web.Request, req: QualifiedFunctionRequest) -> web.Response:
    await _functions(request).delete(scope_of(request), req.function_name, req.qualifier)
    return empty()


@routes.get(_FUNCTION + "/configuration")
@handles("GetFunctionConfiguration", QualifiedFunctionRequest)
async def get_function_configuration(
    request: web.Request, req: QualifiedFunctionRequest
) -> web.Response:
    scope = scope_of(request)
    config, named = await _functions(request).lookup(scope, req.function_name, req.qualifier)
    return reply(function_configuration(scope, config, qualifier=named))


@routes.put(_FUNCTION + "/configuration")
@handles("UpdateFunctionConfiguration", UpdateFunctionConfigurationRequest)
async def update_function_configuration(
    request: web.Request, req: UpdateFunctionConfigurationRequest
) -> web.Response:
    scope = scope_of(request)
    config = await _functions(request).update_config(scope, req)
    return reply(function_configuration(scope, config))


@routes.put(_FUNCTION + "/code")
@handles("UpdateFunctionCode", UpdateFunctionCodeRequest)
async def update_function_code(
    request: web.Request, req: UpdateFunctionCodeRequest
) -> web.Response:
    scope = scope_of(request)
    config = await _functions(request).update_code(scope, req)
    return reply(function_configuration(scope, config))


# ------------------------------------------------------------------------- versions


@routes.post(_FUNCTION + "/versions")
@handles("PublishVersion", PublishVersionRequest)
async def publish_version(request: web.Request, req: PublishVersionRequest) -> web.Response:
    scope = scope_of(request)
    config = await _functions(request).publish(
        scope,
        req.function_name,
        code_sha256=req.code_sha256,
        description=req.description,
        revision_id=req.revision_id,
        publish_to=req.publish_to,
    )
    return reply(function_configuration(scope, config), 201)


@routes.get(_FUNCTION + "/versions")
@handles("ListVersionsByFunction", ListByFunctionRequest)
async def list_versions(request: web.Request, req: ListByFunctionRequest) -> web.Response:
    scope = scope_of(request)
    configs, marker = await _functions(request).list_versions(
        scope, req.function_name, req.marker, req.max_items
    )
    items = [function_list_item(scope, c, qualified=True) for c in configs]
    return paged("Versions", items, marker)


# ------------------------------------------------------------------------- aliases


@routes.post(_FUNCTION + "/aliases")
@handles("CreateAlias", CreateAliasRequest)
async def create_alias(request: web.Request, req: CreateAliasRequest) -> web.Response:
    scope = scope_of(request)
    alias = await _functions(request).create_alias(scope, req)
    return reply(alias_configuration(scope, alias), 201)


@routes.get(_FUNCTION + "/aliases")
@handles("ListAliases", ListAliasesRequest)
async def list_aliases(request: web.Request, req: ListAliasesRequest) -> web.Response:
    scope = scope_of(request)
    aliases, marker = await _functions(request).list_aliases(
        scope, req.function_name, req.function_version, req.marker, req.max_items
    )
    return paged("Aliases", [alias_configuration(scope, a) for a in aliases], marker)


@routes.get(_ALIAS)
@handles("GetAlias", AliasRequest)
async def get_alias(request: web.Request, req: AliasRequest) -> web.Response:
    scope = scope_of(request)
    alias = await _functions(request).get_alias(scope, req.function_name, req.name)
    return reply(alias_configuration(scope, alias))


@routes.put(_ALIAS)
@handles("UpdateAlias", UpdateAliasRequest)
async def update_alias(request: web.Request, req: UpdateAliasRequest) -> web.Response:
    scope = scope_of(request)
    alias = await _functions(request).update_alias(scope, req)
    return reply(alias_configuration(scope, alias))


@routes.delete(_ALIAS)
@handles("DeleteAlias", AliasRequest)
async def delete_alias(request: web.Request, req: AliasRequest) -> web.Response:
    await _functions(request).delete_alias(scope_of(request), req.function_name, req.name)
    return empty()


# ------------------------------------------------------------------------- tags, account


def _tagged(request: web.Request, arn: str) -> Functions | EventSourceMappings:
    """Who keeps the tags of the resource ``arn`` names (the model's TaggableResource
    pattern, checked when decoded): event source mappings theirs, functions the rest."""
    if arn.split(":")[5] == "event-source-mapping":
        return request.app[MAPPINGS]
    return _functions(request)


@routes.get("/2017-03-31/tags/{Resource}")
@handles("ListTags", ListTagsRequest)
async def list_tags(request: web.Request, req: ListTagsRequest) -> web.Response:
    tags = await _tagged(request, req.resource).tags(scope_of(request), req.resource)
    return reply({"Tags": tags})


@routes.post("/2017-03-31/tags/{Resource}")
@handles("TagResource", TagResourceRequest)
async def tag_resource(request: web.Request, req: TagResourceRequest) -> web.Response:
    await _tagged(request, req.resource).tag(scope_of(request), req.resource, req.tags)
    return empty()


@routes.delete("/2017-03-31/tags/{Resource}")
@handles("UntagResource", UntagResourceRequest)
async def untag_resource(request: web.Request, req: UntagResourceRequest) -> web.Response:
    await _tagged(request, req.resource).untag(scope_of(request), req.resource, req.tag_keys)
    return empty()


@routes.get("/2016-08-19/account-settings")
@routes.get("/2016-08-19/account-settings/")
@handles("GetAccountSettings", NoInput)
async def get_account_settings(request: web.Request, req: NoInput) -> web.Response:
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
                "UnreservedConcurrentExecutions": await reservations.unreserved(scope),
            },
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
        }
    )


# ------------------------------------------------------------------------- concurrency


@routes.put("/2017-10-31/functions/{FunctionName}/concurrency")
@handles("PutFunctionConcurrency", PutFunctionConcurrencyRequest)
async def put_function_concurrency(
    request: web.Request, req: PutFunctionConcurrencyRequest
) -> web.Response:
    reserved = await request.app[RESERVATIONS].put(
        scope_of(request), req.function_name, req.reserved_concurrent_executions
    )
    return reply({"ReservedConcurrentExecutions": reserved})


@routes.get("/2019-09-30/functions/{FunctionName}/concurrency")
@handles("GetFunctionConcurrency", FunctionRequest)
async def get_function_concurrency(request: web.Request, req: FunctionRequest) -> web.Response:
    reserved = await request.app[RESERVATIONS].get(scope_of(request), req.function_name)
    return reply({} if reserved is None else {"ReservedConcurrentExecutions": reserved})


@routes.delete("/2017-10-31/functions/{FunctionName}/concurrency")
@handles("DeleteFunctionConcurrency", FunctionRequest)
async def delete_function_concurrency(request: web.Request, req: FunctionRequest) -> web.Response:
    await request.app[RESERVATIONS].delete(scope_of(request), req.function_name)
    return empty()


# ------------------------------------------------------------------------- invoke


async def invoke_request(
    request: web.Request, req: InvokeParameters, kind: InvocationType
) -> InvokeRequest:
    """What Invoke and InvokeWithResponseStream ask of the invoker: the request's members and
    headers, and its payload read up to the limit of its invocation type."""
    payload = await read_up_to(request, limit_of(kind.value) + 1)
    return InvokeRequest(
        function_name=req.function_name,
        qualifier=req.qualifier,
        payload=payload,
        invocation_type=kind,
        tail=headers.wants_tail(req.log_type, kind),
        client_context=headers.client_context(req.client_context),
        trace_id=request.headers.get("X-Amzn-Trace-Id"),
        tenant_id=req.tenant_id,
    )


@routes.post(_FUNCTION + "/invocations")
@handles("Invoke", InvokeMembers)
async def invoke(request: web.Request, req: InvokeMembers) -> web.Response:
    kind = headers.invocation_type(req.invocation_type)
    invocation = await invoke_request(request, req, kind)
    tail = invocation.tail
    invoker = request.app[INVOKER]
    resolved = None
    if kind is not InvocationType.DRY_RUN:
        # Resolved once, for the durable check and the invoke (alias weights drawn once).
        resolved = await invoker.resolve(scope_of(request), invocation)
        durable = await durable_invoke(
            request,
            resolved,
            req.durable_execution_name,
            invocation.payload,
            sync=kind is InvocationType.REQUEST_RESPONSE,
        )
        if durable is not None:
            return durable
    outcome = await invoker.invoke(scope_of(request), invocation, resolved)
    if isinstance(outcome, Accepted):
        # AWS names the executed version only on a synchronous answer.
        status = 202 if kind is InvocationType.EVENT else 204
        return web.Response(status=status, headers={"x-amzn-RequestId": outcome.request_id})
    response_headers = {
        "x-amzn-RequestId": outcome.report.request_id,
        "X-Amz-Executed-Version": outcome.executed_version,
        "Content-Type": outcome.content_type or "application/json",
    }
    if outcome.function_error:
        response_headers["X-Amz-Function-Error"] = "Unhandled"
    if tail:
        response_headers["X-Amz-Log-Result"] = base64.b64encode(outcome.log.encode()).decode()
    return web.Response(status=200, body=outcome.payload, headers=response_headers)


@routes.post("/2014-11-13/functions/{FunctionName}/invoke-async/")
@routes.post("/2014-11-13/functions/{FunctionName}/invoke-async")
@handles("InvokeAsync", FunctionRequest)
async def invoke_async(request: web.Request, req: FunctionRequest) -> web.Response:
    scope = scope_of(request)
    payload = await read_up_to(request, EVENT_LIMIT + 1)
    await request.app[INVOKER].invoke(
        scope,
        InvokeRequest(
            function_name=req.function_name,
            qualifier=None,
            payload=payload,
            invocation_type=InvocationType.EVENT,
        ),
    )
    return reply({"Status": 202}, 202)


# ------------------------------------------------------------------ Invoke of a durable function


async def durable_invoke(
    request: web.Request,
    resolved: tuple[Scope, FunctionConfig],
    name: str | None,
    payload: bytes,
    sync: bool,
) -> web.Response | None:
    """Invoke's answer when the function ``resolved`` (``Invoker.resolve``) is durable (None:
    an ordinary invoke). A durable execution name for a function without ``DurableConfig`` is
    InvalidParameterValueException."""
    scope, config = resolved
    if not config.durable:
        if name is not None:
            raise errors.InvalidParameterValueException(
                "You cannot specify a durable execution name for a function that does not "
                "have a durable config."
            )
        return None
    kind = InvocationType.REQUEST_RESPONSE if sync else InvocationType.EVENT
    await request.app[INVOKER].payloads.check(payload, kind.value)
    engine = request.app[DURABLE]
    doc = await engine.begin(scope, config, name, payload)
    base = {"X-Amz-Durable-Execution-Arn": doc["arn"], "X-Amz-Executed-Version": config.version}
    if not sync:
        return web.Response(status=202, headers=base)
    doc = await engine.wait_end(scope, doc, SYNC_LIMIT)
    headers = {**base, "Content-Type": "application/json"}
    body, failed = answer_of(doc)
    if failed:
        headers["X-Amz-Function-Error"] = "Unhandled"
    return web.Response(status=200, body=body, headers=headers)
