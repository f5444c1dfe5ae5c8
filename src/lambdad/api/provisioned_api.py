"""Put / Get / Delete / ListProvisionedConcurrencyConfigs (``/2019-09-30/.../provisioned-
concurrency``): parse the wire, call the domain, render botocore's shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import empty, paged, reply, scope_of
from lambdad.api.wire.decode import decode, dispatches, handles
from lambdad.control.arns import Scope
from lambdad.control.provisioned import ProvisionedConfigs
from lambdad.control.requests import (
    ListByFunctionRequest,
    ProvisionedConcurrencyConfigRequest,
    PutProvisionedConcurrencyConfigRequest,
)
from lambdad.invoke.provisioned import ProvisionedStatus, Provisioner

CONFIGS = web.AppKey("provisioned_configs", ProvisionedConfigs)
PROVISIONER = web.AppKey("provisioner", Provisioner)
PATH = "/2019-09-30/functions/{FunctionName}/provisioned-concurrency"

routes = web.RouteTableDef()


def _shape(status: ProvisionedStatus) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "RequestedProvisionedConcurrentExecutions": status.config.requested,
        "AvailableProvisionedConcurrentExecutions": status.available,
        "AllocatedProvisionedConcurrentExecutions": status.allocated,
        "Status": status.status,
        "LastModified": status.config.last_modified,
    }
    if status.reason:
        shape["StatusReason"] = status.reason
    return shape


async def _statuses(request: web.Request, scope: Scope, name: str) -> list[ProvisionedStatus]:
    provisioner = request.app[PROVISIONER]
    targets = await request.app[CONFIGS].targets(scope, name)
    return [await provisioner.describe(scope, target) for target in targets]


@routes.put(PATH)
@handles("PutProvisionedConcurrencyConfig", PutProvisionedConcurrencyConfigRequest)
async def put_provisioned_concurrency_config(
    request: web.Request, req: PutProvisionedConcurrencyConfigRequest
) -> web.Response:
    config = await request.app[CONFIGS].put(scope_of(request), req)
    # Accepted: the environments are being initialised.
    return reply(_shape(ProvisionedStatus(config, 0, 0, "IN_PROGRESS")), 202)


@routes.get(PATH)
@dispatches("GetProvisionedConcurrencyConfig", "ListProvisionedConcurrencyConfigs")
async def get_provisioned_concurrency_config(request: web.Request) -> web.Response:
    """GetProvisionedConcurrencyConfig, or ListProvisionedConcurrencyConfigs when the query
    says ``List=ALL`` (the model's two operations share the path)."""
    if request.query.get("List") == "ALL":
        listing = await decode(request, "ListProvisionedConcurrencyConfigs", ListByFunctionRequest)
        return await _list(request, listing)
    req = await decode(
        request, "GetProvisionedConcurrencyConfig", ProvisionedConcurrencyConfigRequest
    )
    scope = scope_of(request)
    config = await request.app[CONFIGS].get(scope, req.function_name, req.qualifier)
    statuses = await _statuses(request, scope, config.function_name)
    found = [s for s in statuses if s.config.qualifier == config.qualifier]
    status = found[0] if found else ProvisionedStatus(config, 0, 0, "IN_PROGRESS")
    return reply(_shape(status))


async def _list(request: web.Request, req: ListByFunctionRequest) -> web.Response:
    scope = scope_of(request)
    configs, marker = await request.app[CONFIGS].list_configs(
        scope, req.function_name, req.marker, req.max_items
    )
    statuses = {}
    if configs:
        name = configs[0].function_name
        statuses = {s.config.qualifier: s for s in await _statuses(request, scope, name)}
    items = []
    for config in configs:
        status = statuses.get(config.qualifier) or ProvisionedStatus(config, 0, 0, "IN_PROGRESS")
        arn = scope.function_arn(config.function_name, config.qualifier)
        items.append({"FunctionArn": arn, **_shape(status)})
    return paged("ProvisionedConcurrencyConfigs", items, marker)


@routes.delete(PATH)
@handles("DeleteProvisionedConcurrencyConfig", ProvisionedConcurrencyConfigRequest)
async def delete_provisioned_concurrency_config(
    request: web.Request, req: ProvisionedConcurrencyConfigRequest
) -> web.Response:
    await request.app[CONFIGS].delete(scope_of(request), req.function_name, req.qualifier)
    return empty()
