"""Asynchronous invocation settings on the wire: Put/Get/Update/Delete/ListFunctionEventInvoke
Config(s) (``/2019-09-25``) and Get/PutFunctionRecursionConfig (``/2024-08-31``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import empty, paged, reply, scope_of
from lambdad.api.wire.decode import handles
from lambdad.control.arns import Scope
from lambdad.control.event_config import EventInvokeConfigs
from lambdad.control.event_config_model import EventInvokeConfig
from lambdad.control.requests import (
    FunctionRequest,
    ListByFunctionRequest,
    PutFunctionEventInvokeConfigRequest,
    PutFunctionRecursionConfigRequest,
    QualifiedFunctionRequest,
)

EVENT_CONFIGS = web.AppKey("event_configs", EventInvokeConfigs)

routes = web.RouteTableDef()
_CONFIG = "/2019-09-25/functions/{FunctionName}/event-invoke-config"
_RECURSION = "/2024-08-31/functions/{FunctionName}/recursion-config"


def event_invoke_config(scope: Scope, config: EventInvokeConfig) -> dict[str, Any]:
    """botocore's ``FunctionEventInvokeConfig``: unset settings left out, both destinations
    always present (empty when unset), as AWS answers."""
    body: dict[str, Any] = {
        "LastModified": config.last_modified,
        "FunctionArn": scope.function_arn(config.function_name, config.qualifier),
    }
    if config.max_retry_attempts is not None:
        body["MaximumRetryAttempts"] = config.max_retry_attempts
    if config.max_event_age is not None:
        body["MaximumEventAgeInSeconds"] = config.max_event_age
    body["DestinationConfig"] = {
        "OnSuccess": {"Destination": config.on_success} if config.on_success else {},
        "OnFailure": {"Destination": config.on_failure} if config.on_failure else {},
    }
    return body


def _configs(request: web.Request) -> EventInvokeConfigs:
    return request.app[EVENT_CONFIGS]


@routes.put(_CONFIG)
@handles("PutFunctionEventInvokeConfig", PutFunctionEventInvokeConfigRequest)
async def put_function_event_invoke_config(
    request: web.Request, req: PutFunctionEventInvokeConfigRequest
) -> web.Response:
    scope = scope_of(request)
    config = await _configs(request).put(scope, req)
    return reply(event_invoke_config(scope, config))


@routes.post(_CONFIG)
@handles("UpdateFunctionEventInvokeConfig", PutFunctionEventInvokeConfigRequest)
async def update_function_event_invoke_config(
    request: web.Request, req: PutFunctionEventInvokeConfigRequest
) -> web.Response:
    scope = scope_of(request)
    config = await _configs(request).update(scope, req)
    return reply(event_invoke_config(scope, config))


@routes.get(_CONFIG)
@handles("GetFunctionEventInvokeConfig", QualifiedFunctionRequest)
async def get_function_event_invoke_config(
    request: web.Request, req: QualifiedFunctionRequest
) -> web.Response:
    scope = scope_of(request)
    config = await _configs(request).get(scope, req.function_name, req.qualifier)
    return reply(event_invoke_config(scope, config))


@routes.delete(_CONFIG)
@handles("DeleteFunctionEventInvokeConfig", QualifiedFunctionRequest)
async def delete_function_event_invoke_config(
    request: web.Request, req: QualifiedFunctionRequest
) -> web.Response:
    await _configs(request).delete(scope_of(request), req.function_name, req.qualifier)
    return empty()


@routes.get(_CONFIG + "/list")
@handles("ListFunctionEventInvokeConfigs", ListByFunctionRequest)
async def list_function_event_invoke_configs(
    request: web.Request, req: ListByFunctionRequest
) -> web.Response:
    scope = scope_of(request)
    found, marker = await _configs(request).list_configs(
        scope, req.function_name, req.marker, req.max_items
    )
    items = [event_invoke_config(scope, c) for c in found]
    return paged("FunctionEventInvokeConfigs", items, marker)


@routes.get(_RECURSION)
@handles("GetFunctionRecursionConfig", FunctionRequest)
async def get_function_recursion_config(request: web.Request, req: FunctionRequest) -> web.Response:
    setting = await _configs(request).get_recursion(scope_of(request), req.function_name)
    return reply({"RecursiveLoop": setting.value})


@routes.put(_RECURSION)
@handles("PutFunctionRecursionConfig", PutFunctionRecursionConfigRequest)
async def put_function_recursion_config(
    request: web.Request, req: PutFunctionRecursionConfigRequest
) -> web.Response:
    setting = await _configs(request).put_recursion(
        scope_of(request), req.function_name, req.recursive_loop
    )
    return reply({"RecursiveLoop": setting.value})
