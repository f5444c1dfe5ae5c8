"""Get / PutRuntimeManagementConfig (``/2021-07-20/functions/{name}/runtime-management-config``):
parse the wire, call the domain, render botocore's shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import FUNCTIONS, json_body, reply, scope_of
from lambdad.control.arns import Scope
from lambdad.control.model import LATEST, FunctionConfig, UpdateRuntimeOn

PATH = "/2021-07-20/functions/{name}/runtime-management-config"

routes = web.RouteTableDef()


def _shape(scope: Scope, config: FunctionConfig) -> dict[str, Any]:
    """The config as AWS's examples show it: the function's ARN (a published version's
    number appended), and the pinned runtime version only in ``Manual`` mode."""
    qualifier = None if config.version == LATEST else config.version
    shape: dict[str, Any] = {
        "UpdateRuntimeOn": config.runtime_update_on.value,
        "FunctionArn": scope.function_arn(config.name, qualifier),
    }
    if config.runtime_update_on is UpdateRuntimeOn.MANUAL:
        shape["RuntimeVersionArn"] = config.runtime_version_arn
    return shape


@routes.get(PATH)
async def get_runtime_management_config(request: web.Request) -> web.Response:
    scope = scope_of(request)
    config = await request.app[FUNCTIONS].runtime_management(
        scope, request.match_info["name"], request.query.get("Qualifier")
    )
    return reply(_shape(scope, config))


@routes.put(PATH)
async def put_runtime_management_config(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "PutRuntimeManagementConfig")
    config = await request.app[FUNCTIONS].put_runtime_management(
        scope,
        request.match_info["name"],
        request.query.get("Qualifier"),
        body.get("UpdateRuntimeOn"),
        body.get("RuntimeVersionArn"),
    )
    return reply(_shape(scope, config))
