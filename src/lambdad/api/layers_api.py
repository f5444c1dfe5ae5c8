"""The layer calls of the Lambda REST API (``/2018-10-31/layers``): one small handler per call.

Handlers parse the wire and render AWS shapes; the rules live in ``lambdad.control.layers``.
"""

from __future__ import annotations

import json

from aiohttp import web

from lambdad.api.lambda_api import empty, paged, reply, scope_of
from lambdad.api.shapes import (
    layer_policy,
    layer_statement,
    layer_version,
    layer_version_item,
    layers_list_item,
)
from lambdad.api.wire.decode import decode, dispatches, handles
from lambdad.control.layers import Layers
from lambdad.control.requests import (
    AddLayerVersionPermissionRequest,
    GetLayerVersionByArnRequest,
    LayerVersionRequest,
    ListLayersRequest,
    ListLayerVersionsRequest,
    PublishLayerVersionRequest,
    RemoveLayerVersionPermissionRequest,
)

LAYERS = web.AppKey("layers", Layers)

routes = web.RouteTableDef()

_VERSION = "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}"


def _layers(request: web.Request) -> Layers:
    return request.app[LAYERS]


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@routes.get("/2018-10-31/layers")
@routes.get("/2018-10-31/layers/")
@dispatches("ListLayers", "GetLayerVersionByArn")
async def list_layers(request: web.Request) -> web.Response:
    """ListLayers, or GetLayerVersionByArn when the query says ``find=LayerVersion`` (the
    model's two operations share the path)."""
    scope = scope_of(request)
    if request.query.get("find") == "LayerVersion":
        by_arn = await decode(request, "GetLayerVersionByArn", GetLayerVersionByArnRequest)
        version = await _layers(request).get_by_arn(scope, by_arn.arn)
        return reply(layer_version(scope, version, _base_url(request)))
    req = await decode(request, "ListLayers", ListLayersRequest)
    versions, marker = await _layers(request).list_layers(
        scope,
        runtime=req.compatible_runtime,
        architecture=req.compatible_architecture,
        marker=req.marker,
        max_items=req.max_items,
    )
    return paged("Layers", [layers_list_item(scope, v) for v in versions], marker)


@routes.post("/2018-10-31/layers/{LayerName}/versions")
@handles("PublishLayerVersion", PublishLayerVersionRequest)
async def publish_layer_version(
    request: web.Request, req: PublishLayerVersionRequest
) -> web.Response:
    scope = scope_of(request)
    version = await _layers(request).publish(scope, req)
    return reply(layer_version(scope, version, _base_url(request)), 201)


@routes.get("/2018-10-31/layers/{LayerName}/versions")
@handles("ListLayerVersions", ListLayerVersionsRequest)
async def list_layer_versions(request: web.Request, req: ListLayerVersionsRequest) -> web.Response:
    scope = scope_of(request)
    versions, marker = await _layers(request).list_versions(
        scope,
        req.layer_name,
        runtime=req.compatible_runtime,
        architecture=req.compatible_architecture,
        marker=req.marker,
        max_items=req.max_items,
    )
    return paged("LayerVersions", [layer_version_item(scope, v) for v in versions], marker)


@routes.get(_VERSION)
@handles("GetLayerVersion", LayerVersionRequest)
async def get_layer_version(request: web.Request, req: LayerVersionRequest) -> web.Response:
    scope = scope_of(request)
    version = await _layers(request).get_version(scope, req.layer_name, req.version_number)
    return reply(layer_version(scope, version, _base_url(request)))


@routes.delete(_VERSION)
@handles("DeleteLayerVersion", LayerVersionRequest)
async def delete_layer_version(request: web.Request, req: LayerVersionRequest) -> web.Response:
    await _layers(request).delete_version(scope_of(request), req.layer_name, req.version_number)
    return empty()


@routes.post(_VERSION + "/policy")
@handles("AddLayerVersionPermission", AddLayerVersionPermissionRequest)
async def add_layer_version_permission(
    request: web.Request, req: AddLayerVersionPermissionRequest
) -> web.Response:
    scope = scope_of(request)
    version, statement, policy = await _layers(request).add_permission(scope, req)
    shape = layer_statement(scope, version, statement)
    return reply({"Statement": json.dumps(shape), "RevisionId": policy.revision_id}, 201)


@routes.get(_VERSION + "/policy")
@handles("GetLayerVersionPolicy", LayerVersionRequest)
async def get_layer_version_policy(request: web.Request, req: LayerVersionRequest) -> web.Response:
    scope = scope_of(request)
    version, policy = await _layers(request).get_policy(scope, req.layer_name, req.version_number)
    document = layer_policy(scope, version, policy)
    return reply({"Policy": json.dumps(document), "RevisionId": policy.revision_id})


@routes.delete(_VERSION + "/policy/{StatementId}")
@handles("RemoveLayerVersionPermission", RemoveLayerVersionPermissionRequest)
async def remove_layer_version_permission(
    request: web.Request, req: RemoveLayerVersionPermissionRequest
) -> web.Response:
    await _layers(request).remove_permission(
        scope_of(request),
        req.layer_name,
        req.version_number,
        req.statement_id,
        req.revision_id,
    )
    return empty()
