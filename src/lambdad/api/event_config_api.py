"""Asynchronous invocation settings on the wire: Put/Get/Update/Delete/ListFunctionEventInvoke
Config(s) (``/2019-09-25``) and Get/PutFunctionRecursionConfig (``/2024-08-31``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import empty, json_body, max_items_of, paged, reply, scope_of
from lambdad.control.arns import Scope
from lambdad.control.event_config import EventInvokeConfigs
from lambdad.control.event_config_model import EventInvokeConfig

EVENT_CONFIGS = web.AppKey("event_configs", EventInvokeConfigs)

routes = web.RouteTableDef()
_CONFIG = "/2019-09-25/functions/{name}/event-invoke-config"
_RECURSION = "/2024-08-31/functions/{name}/recursion-config"


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


async def _written(request: web.Request, operation: str, *, replace: bool) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, operation)
    configs = _configs(request)
    write = configs.put if replace else configs.update
    config = await write(scope, request.match_info["name"], request.query.get("Qualifier"), body)
    return reply(event_invoke_config(scope, config))


@routes.put(_CONFIG)
async def put_function_event_invoke_config(request: web.Request) -> web.Response:
    return await _written(request, "PutFunctionEventInvokeConfig", replace=True)


@routes.post(_CONFIG)
async def update_function_event_invoke_config(request: web.Request) -> web.Response:
    return await _written(request, "UpdateFunctionEventInvokeConfig", replace=False)


@routes.get(_CONFIG)
async def get_function_event_invoke_config(request: web.Request) -> web.Response:
    scope = scope_of(request)
    config = await _configs(request).get(
        scope, request.match_info["name"], request.query.get("Qualifier")
    )
    return reply(event_invoke_config(scope, config))


@routes.delete(_CONFIG)
async def delete_function_event_invoke_config(request: web.Request) -> web.Response:
    await _configs(request).delete(
        scope_of(request), request.match_info["name"], request.query.get("Qualifier")
    )
    return empty()


@routes.get(_CONFIG + "/list")
async def list_function_event_invoke_configs(request: web.Request) -> web.Response:
    scope = scope_of(request)
    found, marker = await _configs(request).list_configs(
        scope, request.match_info["name"], request.query.get("Marker"), max_items_of(request)
    )
    items = [event_invoke_config(scope, c) for c in found]
    return paged("FunctionEventInvokeConfigs", items, marker)


@routes.get(_RECURSION)
async def get_function_recursion_config(request: web.Request) -> web.Response:
    setting = await _configs(request).get_recursion(scope_of(request), request.match_info["name"])
    return reply({"RecursiveLoop": setting.value})


@routes.put(_RECURSION)
async def put_function_recursion_config(request: web.Request) -> web.Response:
    body = await json_body(request, "PutFunctionRecursionConfig")
    setting = await _configs(request).put_recursion(
        scope_of(request), request.match_info["name"], body.get("RecursiveLoop")
    )
    return reply({"RecursiveLoop": setting.value})
