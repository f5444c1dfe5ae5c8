"""Get / PutRuntimeManagementConfig
(``/2021-07-20/functions/{FunctionName}/runtime-management-config``): call the domain with the
decoded request, render botocore's shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import FUNCTIONS, reply, scope_of
from lambdad.api.wire.decode import handles
from lambdad.control.arns import Scope
from lambdad.control.model import LATEST, FunctionConfig, UpdateRuntimeOn
from lambdad.control.requests import PutRuntimeManagementConfigRequest, QualifiedFunctionRequest

PATH = "/2021-07-20/functions/{FunctionName}/runtime-management-config"

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
@handles("GetRuntimeManagementConfig", QualifiedFunctionRequest)
async def get_runtime_management_config(
    request: web.Request, req: QualifiedFunctionRequest
) -> web.Response:
    scope = scope_of(request)
    config = await request.app[FUNCTIONS].runtime_management(
        scope, req.function_name, req.qualifier
    )
    return reply(_shape(scope, config))


@routes.put(PATH)
@handles("PutRuntimeManagementConfig", PutRuntimeManagementConfigRequest)
async def put_runtime_management_config(
    request: web.Request, req: PutRuntimeManagementConfigRequest
) -> web.Response:
    scope = scope_of(request)
    config = await request.app[FUNCTIONS].put_runtime_management(scope, req)
    return reply(_shape(scope, config))
