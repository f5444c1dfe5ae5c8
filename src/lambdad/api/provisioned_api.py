"""Put / Get / Delete / ListProvisionedConcurrencyConfigs (``/2019-09-30/.../provisioned-
concurrency``): parse the wire, call the domain, render botocore's shapes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import empty, json_body, max_items_of, paged, reply, scope_of
from lambdad.control.arns import Scope
from lambdad.control.provisioned import ProvisionedConfigs
from lambdad.invoke.provisioned import ProvisionedStatus, Provisioner

CONFIGS = web.AppKey("provisioned_configs", ProvisionedConfigs)
PROVISIONER = web.AppKey("provisioner", Provisioner)
PATH = "/2019-09-30/functions/{name}/provisioned-concurrency"

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
    targets = await request.app[CONFIGS].targets(scope.region, name)
    return [provisioner.describe(scope.region, target) for target in targets]


@routes.put(PATH)
async def put_provisioned_concurrency_config(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "PutProvisionedConcurrencyConfig")
    config = await request.app[CONFIGS].put(
        scope,
        request.match_info["name"],
        request.query.get("Qualifier"),
        body.get("ProvisionedConcurrentExecutions"),
    )
    # Accepted: the environments are being initialised.
    return reply(_shape(ProvisionedStatus(config, 0, 0, "IN_PROGRESS")), 202)


@routes.get(PATH)
async def get_provisioned_concurrency_config(request: web.Request) -> web.Response:
    if request.query.get("List") == "ALL":
        return await _list(request)
    scope = scope_of(request)
    config = await request.app[CONFIGS].get(
        scope, request.match_info["name"], request.query.get("Qualifier")
    )
    statuses = await _statuses(request, scope, config.function_name)
    found = [s for s in statuses if s.config.qualifier == config.qualifier]
    status = found[0] if found else ProvisionedStatus(config, 0, 0, "IN_PROGRESS")
    return reply(_shape(status))


async def _list(request: web.Request) -> web.Response:
    scope = scope_of(request)
    configs, marker = await request.app[CONFIGS].list_configs(
        scope, request.match_info["name"], request.query.get("Marker"), max_items_of(request)
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
async def delete_provisioned_concurrency_config(request: web.Request) -> web.Response:
    await request.app[CONFIGS].delete(
        scope_of(request), request.match_info["name"], request.query.get("Qualifier")
    )
    return empty()
