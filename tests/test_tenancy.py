"""Tenant isolation through boto3: ``TenancyConfig`` at create, ``X-Amz-Tenant-Id`` on Invoke,
one execution environment per tenant, and the tenant id in the function's context."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Recorder, create_function, invoke_json, refused, wait_until

PER_TENANT = {"TenantIsolationMode": "PER_TENANT"}

#: Answers which environment ran it (a token drawn once per environment) and for which tenant.
WHO = """
import os, uuid
TOKEN = uuid.uuid4().hex

def handler(event, context):
    return {"token": TOKEN, "pid": os.getpid(), "tenant": context.tenant_id}
"""

#: Reports ``<tenant> <environment token>`` to the test's recorder (a token, not the pid:
#: each sandbox may have a pid namespace of its own).
REPORT = """
import os, random, socket
TOKEN = random.getrandbits(48)

def handler(event, context):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    with socket.create_connection((host, int(os.environ["RECORDER_PORT"]))) as s:
        s.sendall(f"{context.tenant_id} {TOKEN}\\n".encode())
        s.recv(1)
"""


@pytest.fixture
def isolated(new_function: Callable[..., dict[str, Any]]) -> str:
    return str(new_function(WHO, TenancyConfig=PER_TENANT)["FunctionName"])


def test_tenancy_config_is_echoed(lam: Any, new_function: Callable[..., dict[str, Any]]) -> None:
    """AWS echoes ``TenancyConfig`` in CreateFunction, GetFunction and
    GetFunctionConfiguration of a tenant-isolated function, and leaves it out otherwise."""
    created = new_function(WHO, TenancyConfig=PER_TENANT)
    name = created["FunctionName"]
    assert created["TenancyConfig"] == PER_TENANT
    assert lam.get_function(FunctionName=name)["Configuration"]["TenancyConfig"] == PER_TENANT
    assert lam.get_function_configuration(FunctionName=name)["TenancyConfig"] == PER_TENANT
    version = lam.publish_version(FunctionName=name)
    assert version["TenancyConfig"] == PER_TENANT
    plain = new_function()
    assert "TenancyConfig" not in plain
    assert "TenancyConfig" not in lam.get_function_configuration(FunctionName=plain["FunctionName"])


def test_unknown_isolation_mode_is_refused(unchecked: Any) -> None:
    """A mode outside the model's enum is a ValidationException naming ``[PER_TENANT]``."""
    with refused("ValidationException", 400) as error:
        create_function(unchecked, TenancyConfig={"TenantIsolationMode": "SHARED"})
    assert "tenancyConfig.tenantIsolationMode" in error["Message"]
    assert "[PER_TENANT]" in error["Message"]


def test_tenant_id_is_required_exactly_for_isolated_functions(
    lam: Any, isolated: str, new_function: Callable[..., dict[str, Any]]
) -> None:
    """AWS: InvalidParameterValueException when a tenant-isolated function is invoked without a
    tenant id, or a function without tenant isolation with one (sync, Event and DryRun)."""
    for kind in ("RequestResponse", "Event", "DryRun"):
        with refused("InvalidParameterValueException", 400):
            lam.invoke(FunctionName=isolated, InvocationType=kind)
    plain = new_function()["FunctionName"]
    for kind in ("RequestResponse", "Event", "DryRun"):
        with refused("InvalidParameterValueException", 400):
            lam.invoke(FunctionName=plain, InvocationType=kind, TenantId="blue")


def test_bad_tenant_ids_are_validation_errors(unchecked: Any, isolated: str) -> None:
    """A tenant id outside the model's pattern ``[a-zA-Z0-9\\._:\\/=+\\-@ ]+`` or over 256
    characters is a ValidationException on ``tenantId``."""
    for bad in ("semi;colon", "x" * 257):
        with refused("ValidationException", 400) as error:
            unchecked.invoke(FunctionName=isolated, TenantId=bad)
        assert "'tenantId'" in error["Message"]


def test_tenant_id_reaches_the_context(lam: Any, isolated: str) -> None:
    """The handler's ``context.tenant_id`` is the invocation's tenant id (AWS: "The tenant
    identifier is available through the tenantId property of the context object")."""
    _, got = invoke_json(lam, isolated, {}, TenantId="blue:team/1@x")
    assert got["tenant"] == "blue:team/1@x"


def test_two_tenants_never_share_an_environment(lam: Any, isolated: str) -> None:
    """Each tenant's invocations run in environments made for it: interleaved invocations of
    two tenants never see the other's environment, and each tenant's warm environment is
    reused (AWS: "an execution environment dedicated to that specific tenant")."""
    seen: dict[str, set[str]] = {"blue": set(), "green": set()}
    for tenant in ["blue", "green"] * 4:
        _, got = invoke_json(lam, isolated, {}, TenantId=tenant)
        assert got["tenant"] == tenant
        seen[tenant].add(got["token"])
    assert not seen["blue"] & seen["green"]
    assert len(seen["blue"]) == 1
    assert len(seen["green"]) == 1


def test_isolated_version_and_alias_keep_tenants_apart(lam: Any, isolated: str) -> None:
    """A published version and an alias of a tenant-isolated function are isolated too."""
    version = lam.publish_version(FunctionName=isolated)["Version"]
    lam.create_alias(FunctionName=isolated, Name="live", FunctionVersion=version)
    _, blue = invoke_json(lam, f"{isolated}:live", {}, TenantId="blue")
    _, green = invoke_json(lam, isolated, {}, Qualifier=version, TenantId="green")
    assert (blue["tenant"], green["tenant"]) == ("blue", "green")
    assert blue["token"] != green["token"]
    with refused("InvalidParameterValueException", 400):
        lam.invoke(FunctionName=f"{isolated}:live")


def test_event_invocations_keep_their_tenant(
    lam: Any, new_function: Callable[..., dict[str, Any]], recorder: Recorder
) -> None:
    """An ``Event`` invocation with a tenant id runs later for that tenant, in that tenant's
    environment (AWS: asynchronous invocations take ``--tenant-id`` too)."""
    name = new_function(
        REPORT, TenancyConfig=PER_TENANT, env={"RECORDER_PORT": str(recorder.port)}
    )["FunctionName"]
    for tenant in ("blue", "green", "blue"):
        accepted = lam.invoke(
            FunctionName=name, InvocationType="Event", TenantId=tenant, Payload=json.dumps({})
        )
        assert accepted["StatusCode"] == 202
    wait_until(lambda: len(recorder.runs) == 3, timeout=30)
    tokens: dict[str, set[int]] = {}
    for tenant, token in recorder.runs:
        tokens.setdefault(tenant, set()).add(token)
    assert set(tokens) == {"blue", "green"}
    assert not tokens["blue"] & tokens["green"]


def test_node_context_has_the_tenant_id(
    lam: Any, new_function: Callable[..., dict[str, Any]]
) -> None:
    """A Node.js handler reads the tenant as ``context.tenantId`` (AWS's Node.js context)."""
    code = "exports.handler = async (event, context) => ({ tenant: context.tenantId });\n"
    name = new_function(
        files={"index.js": code},
        Runtime="nodejs20.x",
        Handler="index.handler",
        TenancyConfig=PER_TENANT,
    )["FunctionName"]
    _, got = invoke_json(lam, name, {}, TenantId="green")
    assert got == {"tenant": "green"}


def test_streamed_invocations_keep_tenants_apart(lam: Any, isolated: str) -> None:
    """InvokeWithResponseStream takes X-Amz-Tenant-Id as Invoke does: required for a
    tenant-isolated function, and the response comes from that tenant's own environment."""
    with refused("InvalidParameterValueException", 400):
        lam.invoke_with_response_stream(FunctionName=isolated)

    def streamed(tenant: str) -> dict[str, Any]:
        answer = lam.invoke_with_response_stream(FunctionName=isolated, TenantId=tenant)
        body = b"".join(
            event["PayloadChunk"]["Payload"]
            for event in answer["EventStream"]
            if "PayloadChunk" in event
        )
        return dict(json.loads(body))

    blue, green = streamed("blue"), streamed("green")
    assert (blue["tenant"], green["tenant"]) == ("blue", "green")
    assert blue["token"] != green["token"]
    assert streamed("blue")["token"] == blue["token"]
