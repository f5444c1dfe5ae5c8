"""The layer calls of the Lambda REST API (``/2018-10-31/layers``): one small handler per call.

Handlers parse the wire and render AWS shapes; the rules live in ``lambdad.control.layers``.
"""

from __future__ import annotations

import json

from aiohttp import web

from lambdad.api.lambda_api import (
    CODE_REQUEST_LIMIT,
    empty,
    json_body,
    max_items_of,
    paged,
    reply,
    scope_of,
)
from lambdad.api.shapes import (
    layer_policy,
    layer_statement,
    layer_version,
    layer_version_item,
    layers_list_item,
)
from lambdad.control.layers import Layers

LAYERS = web.AppKey("layers", Layers)

routes = web.RouteTableDef()

_VERSION = "/2018-10-31/layers/{layer}/versions/{version}"


def _layers(request: web.Request) -> Layers:
    return request.app[LAYERS]


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@routes.get("/2018-10-31/layers")
@routes.get("/2018-10-31/layers/")
async def list_layers(request: web.Request) -> web.Response:
    """ListLayers, or GetLayerVersionByArn when the query says ``find=LayerVersion``."""
    scope = scope_of(request)
    if request.query.get("find") == "LayerVersion":
        version = await _layers(request).get_by_arn(scope, request.query.get("Arn", ""))
        return reply(layer_version(scope, version, _base_url(request)))
    versions, marker = await _layers(request).list_layers(
        scope,
        runtime=request.query.get("CompatibleRuntime"),
        architecture=request.query.get("CompatibleArchitecture"),
        marker=request.query.get("Marker"),
        max_items=max_items_of(request),
    )
    return paged("Layers", [layers_list_item(scope, v) for v in versions], marker)


@routes.post("/2018-10-31/layers/{layer}/versions")
async def publish_layer_version(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "PublishLayerVersion", CODE_REQUEST_LIMIT)
    version = await _layers(request).publish(scope, request.match_info["layer"], body)
    return reply(layer_version(scope, version, _base_url(request)), 201)


@routes.get("/2018-10-31/layers/{layer}/versions")
async def list_layer_versions(request: web.Request) -> web.Response:
    scope = scope_of(request)
    versions, marker = await _layers(request).list_versions(
        scope,
        request.match_info["layer"],
        runtime=request.query.get("CompatibleRuntime"),
        architecture=request.query.get("CompatibleArchitecture"),
        marker=request.query.get("Marker"),
        max_items=max_items_of(request),
    )
    return paged("LayerVersions", [layer_version_item(scope, v) for v in versions], marker)


@routes.get(_VERSION)
async def get_layer_version(request: web.Request) -> web.Response:
    scope = scope_of(request)
    version = await _layers(request).get_version(
        scope, request.match_info["layer"], request.match_info["version"]
    )
    return reply(layer_version(scope, version, _base_url(request)))


@routes.delete(_VERSION)
async def delete_layer_version(request: web.Request) -> web.Response:
    await _layers(request).delete_version(
        scope_of(request), request.match_info["layer"], request.match_info["version"]
    )
    return empty()


@routes.post(_VERSION + "/policy")
async def add_layer_version_permission(request: web.Request) -> web.Response:
    scope = scope_of(request)
    body = await json_body(request, "AddLayerVersionPermission")
    version, statement, policy = await _layers(request).add_permission(
        scope,
        request.match_info["layer"],
        request.match_info["version"],
        body,
        request.query.get("RevisionId"),
    )
    shape = layer_statement(scope, version, statement)
    return reply({"Statement": json.dumps(shape), "RevisionId": policy.revision_id}, 201)


@routes.get(_VERSION + "/policy")
async def get_layer_version_policy(request: web.Request) -> web.Response:
    scope = scope_of(request)
    version, policy = await _layers(request).get_policy(
        scope, request.match_info["layer"], request.match_info["version"]
    )
    document = layer_policy(scope, version, policy)
    return reply({"Policy": json.dumps(document), "RevisionId": policy.revision_id})


@routes.delete(_VERSION + "/policy/{sid}")
async def remove_layer_version_permission(request: web.Request) -> web.Response:
    await _layers(request).remove_permission(
        scope_of(request),
        request.match_info["layer"],
        request.match_info["version"],
        request.match_info["sid"],
        request.query.get("RevisionId"),
    )
    return empty()
