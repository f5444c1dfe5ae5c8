"""``FunctionPolicies.allows_invoke`` / ``allows_url``: the decisions the invoke path and the
function URLs ask for, over policies written with AddPermission (on the in-memory store twin)."""

from __future__ import annotations

import asyncio
from typing import Any

from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.permissions import FunctionPolicies
from lambdad.control.policies import RequestContext
from lambdad.control.requests import (
    AddPermissionRequest,
    CreateAliasRequest,
    CreateFunctionRequest,
    FunctionCode,
    RemovePermissionRequest,
)
from lambdad.store.memory import MemoryBlobStore, MemoryStore
from tests.conftest import ROLE, make_zip

OWNER = "000000000000"
OTHER = "111122223333"
SCOPE = Scope(OWNER, "us-east-1")
ANON = RequestContext()
OTHER_CALLER = RequestContext(account_id=OTHER, principal_arn=f"arn:aws:iam::{OTHER}:user/bob")
OWNER_CALLER = RequestContext(account_id=OWNER, principal_arn=f"arn:aws:iam::{OWNER}:root")


async def _setup() -> tuple[Functions, FunctionPolicies]:
    functions = Functions(MemoryStore(), MemoryBlobStore())
    policies = FunctionPolicies(MemoryStore(), functions)
    await functions.create(
        SCOPE,
        CreateFunctionRequest(
            function_name="fn",
            code=FunctionCode(zip_file=make_zip({"app.py": "def handler(e, c):\n    return e\n"})),
            runtime="python3.11",
            role=ROLE,
            handler="app.handler",
        ),
    )
    return functions, policies


def grant(
    sid: str, principal: str, action: str = "lambda:InvokeFunction", **extra: Any
) -> AddPermissionRequest:
    return AddPermissionRequest(
        function_name="fn",
        statement_id=sid,
        action=action,
        principal=principal,
        **extra,
    )


def test_cross_account_invoke_needs_a_grant() -> None:
    """The owner invokes without a policy; another account once the policy grants it, and no
    longer once the statement is removed; a grant on the function does not cover an alias."""

    async def scenario() -> None:
        functions, policies = await _setup()
        assert await policies.allows_invoke(SCOPE, "fn", None, OWNER_CALLER)
        assert not await policies.allows_invoke(SCOPE, "fn", None, OTHER_CALLER)
        await policies.add_permission(SCOPE, grant("other", OTHER))
        assert await policies.allows_invoke(SCOPE, "fn", None, OTHER_CALLER)
        assert await policies.allows_invoke(SCOPE, "fn", "$LATEST", OTHER_CALLER)
        await functions.publish(SCOPE, "fn", code_sha256=None, description=None, revision_id=None)
        await functions.create_alias(
            SCOPE, CreateAliasRequest(function_name="fn", name="live", function_version="1")
        )
        assert not await policies.allows_invoke(SCOPE, "fn", "live", OTHER_CALLER)
        await policies.remove_permission(
            SCOPE, RemovePermissionRequest(function_name="fn", statement_id="other")
        )
        assert not await policies.allows_invoke(SCOPE, "fn", None, OTHER_CALLER)

    asyncio.run(scenario())


def test_public_url_opens_with_both_grants_only() -> None:
    """AWS since October 2025: a NONE URL needs ``*`` granted lambda:InvokeFunctionUrl (with
    FunctionUrlAuthType NONE) and lambda:InvokeFunction (here with InvokedViaFunctionUrl)."""

    async def scenario() -> None:
        _, policies = await _setup()
        assert not await policies.allows_url(SCOPE, "fn", None, "NONE", ANON)
        await policies.add_permission(
            SCOPE,
            grant("url", "*", "lambda:InvokeFunctionUrl", function_url_auth_type="NONE"),
        )
        assert not await policies.allows_url(SCOPE, "fn", None, "NONE", ANON)
        await policies.add_permission(SCOPE, grant("invoke", "*", invoked_via_function_url=True))
        assert await policies.allows_url(SCOPE, "fn", None, "NONE", ANON)
        assert not await policies.allows_invoke(SCOPE, "fn", None, OTHER_CALLER)

    asyncio.run(scenario())


def test_iam_url_serves_the_owner_and_granted_accounts() -> None:
    """An AWS_IAM URL serves the owner account; another account once both actions are granted
    to it."""

    async def scenario() -> None:
        _, policies = await _setup()
        assert await policies.allows_url(SCOPE, "fn", None, "AWS_IAM", OWNER_CALLER)
        assert not await policies.allows_url(SCOPE, "fn", None, "AWS_IAM", OTHER_CALLER)
        await policies.add_permission(
            SCOPE,
            grant("url", OTHER, "lambda:InvokeFunctionUrl", function_url_auth_type="AWS_IAM"),
        )
        await policies.add_permission(SCOPE, grant("invoke", OTHER))
        assert await policies.allows_url(SCOPE, "fn", None, "AWS_IAM", OTHER_CALLER)
        assert not await policies.allows_url(SCOPE, "fn", None, "AWS_IAM", ANON)

    asyncio.run(scenario())
