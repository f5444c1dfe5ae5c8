"""Function URL configs on the wire: Create/Get/Update/Delete/ListFunctionUrlConfig(s)
(``/2021-10-31/functions/{FunctionName}/url`` and ``.../urls``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import empty, paged, reply, scope_of
from lambdad.api.url_host import UrlShape
from lambdad.api.wire.decode import handles
from lambdad.control.requests import (
    FunctionUrlConfigRequest,
    ListFunctionUrlConfigsRequest,
    QualifiedFunctionRequest,
)
from lambdad.control.url_model import FunctionUrlConfig
from lambdad.control.urls import FunctionUrls

URLS = web.AppKey("function_urls", FunctionUrls)
URL_SHAPE = web.AppKey("url_shape", UrlShape)

routes = web.RouteTableDef()
_URL = "/2021-10-31/functions/{FunctionName}/url"


def _local_port(request: web.Request) -> int:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if sockname else 0


def function_url(request: web.Request, config: FunctionUrlConfig) -> str:
    """The config's ``FunctionUrl`` as this server writes it."""
    return request.app[URL_SHAPE].url(config.url_id, config.region, _local_port(request))


def url_config(
    request: web.Request, config: FunctionUrlConfig, *, modified: bool = True
) -> dict[str, Any]:
    """botocore's ``FunctionUrlConfig`` (Create's output has no ``LastModifiedTime``)."""
    body: dict[str, Any] = {
        "FunctionUrl": function_url(request, config),
        "FunctionArn": config.function_arn,
        "AuthType": config.auth_type.value,
    }
    if config.cors is not None:
        body["Cors"] = {
            wire: value
            for wire, value in (
                ("AllowCredentials", config.cors.allow_credentials),
                ("AllowHeaders", config.cors.allow_headers),
                ("AllowMethods", config.cors.allow_methods),
                ("AllowOrigins", config.cors.allow_origins),
                ("ExposeHeaders", config.cors.expose_headers),
                ("MaxAge", config.cors.max_age),
            )
            if value is not None
        }
    body["CreationTime"] = config.creation_time
    if modified:
        body["LastModifiedTime"] = config.last_modified_time
    body["InvokeMode"] = config.invoke_mode.value
    return body


def _urls(request: web.Request) -> FunctionUrls:
    return request.app[URLS]


@routes.post(_URL)
@handles("CreateFunctionUrlConfig", FunctionUrlConfigRequest)
async def create_function_url_config(
    request: web.Request, req: FunctionUrlConfigRequest
) -> web.Response:
    config = await _urls(request).create(scope_of(request), req)
    return reply(url_config(request, config, modified=False), 201)


@routes.get(_URL)
@handles("GetFunctionUrlConfig", QualifiedFunctionRequest)
async def get_function_url_config(
    request: web.Request, req: QualifiedFunctionRequest
) -> web.Response:
    config = await _urls(request).get(scope_of(request), req.function_name, req.qualifier)
    return reply(url_config(request, config))


@routes.put(_URL)
@handles("UpdateFunctionUrlConfig", FunctionUrlConfigRequest)
async def update_function_url_config(
    request: web.Request, req: FunctionUrlConfigRequest
) -> web.Response:
    config = await _urls(request).update(scope_of(request), req)
    return reply(url_config(request, config))


@routes.delete(_URL)
@handles("DeleteFunctionUrlConfig", QualifiedFunctionRequest)
async def delete_function_url_config(
    request: web.Request, req: QualifiedFunctionRequest
) -> web.Response:
    await _urls(request).delete(scope_of(request), req.function_name, req.qualifier)
    return empty()


@routes.get("/2021-10-31/functions/{FunctionName}/urls")
@handles("ListFunctionUrlConfigs", ListFunctionUrlConfigsRequest)
async def list_function_url_configs(
    request: web.Request, req: ListFunctionUrlConfigsRequest
) -> web.Response:
    found, marker = await _urls(request).list_configs(
        scope_of(request), req.function_name, req.marker, req.max_items
    )
    return paged("FunctionUrlConfigs", [url_config(request, c) for c in found], marker)
