"""Resource-based policies of functions on the wire: AddPermission, RemovePermission and
GetPolicy (``/2015-03-31/functions/{FunctionName}/policy``), and the whole-document
Get/Put/DeleteResourcePolicy (``/2026-07-09/resource-policy/{ResourceArn}``)."""

from __future__ import annotations

from aiohttp import web

from lambdad.api.lambda_api import empty, reply, scope_of
from lambdad.api.wire.decode import handles
from lambdad.control.permissions import FunctionPolicies, StoredPolicy
from lambdad.control.policy_documents import compact
from lambdad.control.requests import (
    AddPermissionRequest,
    GetResourcePolicyRequest,
    PutResourcePolicyRequest,
    QualifiedFunctionRequest,
    RemovePermissionRequest,
    ResourcePolicyRequest,
)

POLICIES = web.AppKey("policies", FunctionPolicies)

routes = web.RouteTableDef()
_POLICY = "/2015-03-31/functions/{FunctionName}/policy"
_RESOURCE_POLICY = "/2026-07-09/resource-policy/{ResourceArn}"


def _policies(request: web.Request) -> FunctionPolicies:
    return request.app[POLICIES]


def _policy(stored: StoredPolicy) -> web.Response:
    """GetPolicy's and the resource-policy calls' answer: the document as a JSON string."""
    return reply({"Policy": compact(stored.document), "RevisionId": stored.revision_id})


@routes.post(_POLICY)
@handles("AddPermission", AddPermissionRequest)
async def add_permission(request: web.Request, req: AddPermissionRequest) -> web.Response:
    statement, _ = await _policies(request).add_permission(scope_of(request), req)
    return reply({"Statement": compact(statement)}, 201)


@routes.delete(_POLICY + "/{StatementId}")
@handles("RemovePermission", RemovePermissionRequest)
async def remove_permission(request: web.Request, req: RemovePermissionRequest) -> web.Response:
    await _policies(request).remove_permission(scope_of(request), req)
    return empty()


@routes.get(_POLICY)
@handles("GetPolicy", QualifiedFunctionRequest)
async def get_policy(request: web.Request, req: QualifiedFunctionRequest) -> web.Response:
    stored = await _policies(request).get_policy(
        scope_of(request), req.function_name, req.qualifier
    )
    return _policy(stored)


@routes.get(_RESOURCE_POLICY)
@handles("GetResourcePolicy", GetResourcePolicyRequest)
async def get_resource_policy(request: web.Request, req: GetResourcePolicyRequest) -> web.Response:
    stored = await _policies(request).get_resource_policy(scope_of(request), req.resource_arn)
    return _policy(stored)


@routes.put(_RESOURCE_POLICY)
@handles("PutResourcePolicy", PutResourcePolicyRequest)
async def put_resource_policy(request: web.Request, req: PutResourcePolicyRequest) -> web.Response:
    return _policy(await _policies(request).put_resource_policy(scope_of(request), req))


@routes.delete(_RESOURCE_POLICY)
@handles("DeleteResourcePolicy", ResourcePolicyRequest)
async def delete_resource_policy(request: web.Request, req: ResourcePolicyRequest) -> web.Response:
    await _policies(request).delete_resource_policy(
        scope_of(request), req.resource_arn, req.revision_id
    )
    return empty()
