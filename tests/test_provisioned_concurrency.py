"""Provisioned concurrency through boto3: Put/Get/Delete/ListProvisionedConcurrencyConfigs with
AWS's validation, environments initialised ahead (IN_PROGRESS to READY, or FAILED), what their
runtime sees, spill-over to on-demand environments, an alias move, a restart and retirement."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from tests.conftest import (
    IDENTITY,
    MEET,
    Rendezvous,
    Server,
    assert_environment_gone,
    environment_pids,
    invoke_json,
    refused,
    wait_until,
)

#: Other tests share the session's server: configs here live in a region of their own.
REGION = "ap-southeast-2"
ACCOUNT = "000000000000"
PROVISIONED = "provisioned-concurrency"
UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
NOT_A_TARGET = "The function resource provided must be an alias or a published version."
NOT_FOUND = "No Provisioned Concurrency Config found for this function"

#: Answers how its environment was initialised, by which version, in which environment; with
#: ``{"meet": true}`` it first waits at the test's rendezvous.
CODE = (
    IDENTITY
    + MEET
    + """
import os


def handler(event, context):
    if event.get("meet"):
        meet()
    return {
        "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
        "version": context.function_version,
        "identity": environment_identity(),
    }
"""
)


def arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def published(client: Any, new_function: Any, code: str = CODE, **kwargs: Any) -> str:
    """A new function with version 1 published; its name."""
    name = str(new_function(code, client=client, **kwargs)["FunctionName"])
    client.publish_version(FunctionName=name)
    return name


def second_version(client: Any, name: str) -> None:
    """Publish version 2 (a configuration change, so that there is something new)."""
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"VERSION": "2"}}
    )
    assert client.publish_version(FunctionName=name)["Version"] == "2"


def ready(client: Any, name: str, qualifier: str, amount: int) -> dict[str, Any]:
    """Poll until the config is READY with ``amount`` environments; its Get answer."""

    def check() -> dict[str, Any] | None:
        got = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        assert got["Status"] != "FAILED", got
        return got if got["Status"] == "READY" else None

    got: dict[str, Any] = wait_until(check, timeout=60)
    assert got["AllocatedProvisionedConcurrentExecutions"] == amount
    assert got["AvailableProvisionedConcurrentExecutions"] == amount
    return got


def tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def test_put_get_list_delete_and_what_provisioned_environments_see(
    server: Server, new_function: Any
) -> None:
    """Put answers 202 IN_PROGRESS; Get turns READY once two environments are initialised;
    their runtime sees the provisioned init type and their REPORT has no Init Duration, while
    $LATEST runs on demand with one; List names the config's ARN; Delete removes it."""
    client = server.client(REGION)
    name = published(client, new_function)
    try:
        put = client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
        )
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
        assert (put["Status"], put["RequestedProvisionedConcurrentExecutions"]) == (
            "IN_PROGRESS",
            2,
        )
        assert put["AllocatedProvisionedConcurrentExecutions"] == 0
        assert put["LastModified"].endswith("+0000")
        got = ready(client, name, "1", 2)
        assert got["RequestedProvisionedConcurrentExecutions"] == 2
        assert "StatusReason" not in got
        response, body = invoke_json(client, name, {}, Qualifier="1", LogType="Tail")
        assert (body["init"], body["version"]) == (PROVISIONED, "1")
        assert "REPORT RequestId" in tail(response)
        assert "Init Duration" not in tail(response)
        response, body = invoke_json(client, name, {}, LogType="Tail")
        assert body["init"] == "on-demand"
        assert "Init Duration" in tail(response)
        listed = client.list_provisioned_concurrency_configs(FunctionName=name)
        [item] = listed["ProvisionedConcurrencyConfigs"]
        assert (item["FunctionArn"], item["Status"]) == (arn(name, "1"), "READY")
        assert item["AllocatedProvisionedConcurrentExecutions"] == 2
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )
        assert ready(client, name, "1", 1)["RequestedProvisionedConcurrentExecutions"] == 1
        client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        with refused("ProvisionedConcurrencyConfigNotFoundException", 404, NOT_FOUND):
            client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        assert (
            client.list_provisioned_concurrency_configs(FunctionName=name)[
                "ProvisionedConcurrencyConfigs"
            ]
            == []
        )
        assert invoke_json(client, name, {}, Qualifier="1")[1]["init"] == "on-demand"
    finally:
        client.delete_function(FunctionName=name)


def test_validation_errors(server: Server, new_function: Any) -> None:
    """Unpublished targets, amounts below 1, missing versions, aliases and configs, weighted
    aliases, a version and its alias both configured, and more than the reservation are all
    refused with AWS's codes and messages."""
    client = server.client(REGION)
    unchecked = server.client(REGION, parameter_validation=False)
    name = published(client, new_function)
    try:
        for qualifier in ("$LATEST", None):
            params = {"Qualifier": qualifier} if qualifier else {}
            with refused("InvalidParameterValueException", 400, UNPUBLISHED):
                unchecked.put_provisioned_concurrency_config(
                    FunctionName=name, ProvisionedConcurrentExecutions=1, **params
                )
            with refused("InvalidParameterValueException", 400, NOT_A_TARGET):
                unchecked.get_provisioned_concurrency_config(FunctionName=name, **params)
            with refused("InvalidParameterValueException", 400, NOT_A_TARGET):
                unchecked.delete_provisioned_concurrency_config(FunctionName=name, **params)
        with refused(
            "ValidationException",
            400,
            "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed "
            "to satisfy constraint: Member must have value greater than or equal to 1",
        ):
            unchecked.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=0
            )
        with refused("ResourceNotFoundException", 404, f"Function not found: {arn(name, '9')}"):
            client.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier="9", ProvisionedConcurrentExecutions=1
            )
        with refused("ResourceNotFoundException", 404, f"Cannot find alias arn: {arn(name, 'x')}"):
            client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="x")
        with refused("ResourceNotFoundException", 404, f"Function not found: {arn('nope-pc')}"):
            client.list_provisioned_concurrency_configs(FunctionName="nope-pc")
        with refused("ProvisionedConcurrencyConfigNotFoundException", 404, NOT_FOUND):
            unchecked.get_provisioned_concurrency_config(FunctionName=arn(name, "1"))
        second_version(client, name)
        client.create_alias(
            FunctionName=name,
            Name="canary",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
        )
        with refused(
            "InvalidParameterValueException",
            400,
            "Alias with weights can not be used with Provisioned Concurrency",
        ):
            client.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier="canary", ProvisionedConcurrentExecutions=1
            )
        client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )
        with refused(
            "ResourceConflictException",
            409,
            "Alias can't be used for Provisioned Concurrency configuration on an already "
            "Provisioned version",
        ):
            client.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
            )
        client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        unchecked.put_provisioned_concurrency_config(
            FunctionName=f"{name}:live", ProvisionedConcurrentExecutions=1
        )
        pointed = "Version is pointed by a Provisioned Concurrency alias"
        with refused("ResourceConflictException", 409, pointed):
            client.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
            )
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        with refused(
            "InvalidParameterValueException",
            400,
            "Requested Provisioned Concurrency should not be greater than the "
            "reservedConcurrentExecution for function",
        ):
            client.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier="2", ProvisionedConcurrentExecutions=2
            )
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="2", ProvisionedConcurrentExecutions=1
        )
    finally:
        client.delete_function(FunctionName=name)
        unchecked.close()


def test_an_init_that_fails_makes_the_config_failed(server: Server, new_function: Any) -> None:
    """A handler module that raises at import leaves the config FAILED, with AWS's reason."""
    client = server.client(REGION)
    name = published(client, new_function, "raise RuntimeError('no init for you')\n")
    try:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )

        def settled() -> dict[str, Any] | None:
            got = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
            return got if got["Status"] != "IN_PROGRESS" else None

        got = wait_until(settled, timeout=60)
        assert (got["Status"], got["StatusReason"]) == ("FAILED", "FUNCTION_ERROR_INIT_FAILURE")
        assert got["AllocatedProvisionedConcurrentExecutions"] == 0
    finally:
        client.delete_function(FunctionName=name)


def test_busy_provisioned_environments_spill_over_to_on_demand(
    server: Server, new_function: Any, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """With two provisioned environments, three invokes held together at a rendezvous run in
    the two provisioned environments and one on-demand environment."""
    client = server.client(REGION)
    service = rendezvous(3)
    name = published(client, new_function, Environment={"Variables": service.env})
    try:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
        )
        ready(client, name, "1", 2)
        with ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(invoke_json, client, name, {"meet": True}, Qualifier="1")
                for _ in range(3)
            ]
            bodies = [f.result(timeout=60)[1] for f in futures]
        assert sorted(b["init"] for b in bodies) == ["on-demand", PROVISIONED, PROVISIONED]
        assert len({b["identity"]["token"] for b in bodies}) == 3
    finally:
        client.delete_function(FunctionName=name)


def test_provisioned_environments_follow_an_alias_and_retire(
    server: Server, new_function: Any
) -> None:
    """A config on an alias provisions its version; when the alias moves, environments of the
    new version are initialised (IN_PROGRESS, then READY) and the old ones end; deleting the
    config ends the new ones."""
    client = server.client(REGION)
    name = published(client, new_function)
    try:
        second_version(client, name)
        client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
        )
        ready(client, name, "live", 1)
        first = invoke_json(client, name, {}, Qualifier="live")[1]
        assert (first["init"], first["version"]) == (PROVISIONED, "1")
        client.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
        moving = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
        assert moving["Status"] in ("IN_PROGRESS", "READY")
        ready(client, name, "live", 1)
        assert_environment_gone(first["identity"])
        second = invoke_json(client, name, {}, Qualifier="live")[1]
        assert (second["init"], second["version"]) == (PROVISIONED, "2")
        client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
        assert_environment_gone(second["identity"])
        assert invoke_json(client, name, {}, Qualifier="live")[1]["init"] == "on-demand"
    finally:
        client.delete_function(FunctionName=name)


def test_deleting_a_version_or_the_function_retires_its_environments(
    server: Server, new_function: Any
) -> None:
    """Deleting a version deletes its config and ends its environments, the other version's
    stay; deleting the function ends the rest."""
    client = server.client(REGION)
    name = published(client, new_function)
    second_version(client, name)
    for version in ("1", "2"):
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=1
        )
    identities = {}
    for version in ("1", "2"):
        ready(client, name, version, 1)
        body = invoke_json(client, name, {}, Qualifier=version)[1]
        assert body["init"] == PROVISIONED
        identities[version] = body["identity"]
    client.delete_function(FunctionName=name, Qualifier="2")
    assert_environment_gone(identities["2"])
    listed = client.list_provisioned_concurrency_configs(FunctionName=name)
    assert [c["FunctionArn"] for c in listed["ProvisionedConcurrencyConfigs"]] == [arn(name, "1")]
    assert invoke_json(client, name, {}, Qualifier="1")[1]["identity"] == identities["1"]
    client.delete_function(FunctionName=name)
    assert_environment_gone(identities["1"])


def test_configs_count_against_the_account_and_survive_a_restart(
    start_server: Callable[..., Server], new_function: Any
) -> None:
    """With a limit of 105, a function without a reservation may provision 5 (the account keeps
    its 100 unreserved), which GetAccountSettings subtracts; a reservation below it is refused;
    after a restart the config is provisioned again and serves invokes."""
    settings = {"LAMBDAD_CONCURRENCY_LIMIT": "105"}
    srv = start_server(settings)
    client = srv.client(REGION)
    name = published(client, new_function)
    with refused(
        "InvalidParameterValueException",
        400,
        "Specified ConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].",
    ):
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=6
        )
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 103
    with refused("InvalidParameterValueException", 400):
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 102
    ready(client, name, "1", 2)
    srv.stop()
    again = start_server(settings, data_dir=srv.data_dir)
    client = again.client(REGION)
    ready(client, name, "1", 2)
    assert invoke_json(client, name, {}, Qualifier="1")[1]["init"] == PROVISIONED
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 102


def test_environments_initialise_in_parallel(
    server: Server, new_function: Any, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """Three provisioned environments whose init waits for all three at a rendezvous become
    READY: their inits run at the same time, not one after another."""
    client = server.client(REGION)
    service = rendezvous(3)
    code = MEET + "\nMET = meet()\n\n\ndef handler(event, context):\n    return MET\n"
    name = published(client, new_function, code, Environment={"Variables": service.env})
    try:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=3
        )
        ready(client, name, "1", 3)
        assert service.count == 3
    finally:
        client.delete_function(FunctionName=name)


def test_provisioned_environments_are_kept_idle_and_replaced_when_they_die(
    start_server: Callable[..., Server], new_function: Any
) -> None:
    """With a keep-alive of milliseconds, an idle on-demand environment is reaped while the
    provisioned one stays; a provisioned environment that dies is replaced by a new one."""
    srv = start_server({"LAMBDAD_KEEP_ALIVE": "1"})
    client = srv.client(REGION)
    name = published(client, new_function)
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    ready(client, name, "1", 1)
    kept = invoke_json(client, name, {}, Qualifier="1")[1]
    assert kept["init"] == PROVISIONED
    on_demand = invoke_json(client, name, {})[1]["identity"]
    assert_environment_gone(on_demand)
    again = invoke_json(client, name, {}, Qualifier="1")[1]
    assert (again["init"], again["identity"]) == (PROVISIONED, kept["identity"])
    for pid in environment_pids(kept["identity"]):
        os.kill(pid, signal.SIGKILL)

    def replaced() -> bool:
        # A frozen cell dies only once thawed: that invoke is a Runtime.ExitError.
        body = invoke_json(client, name, {}, Qualifier="1")[1]
        return body.get("init") == PROVISIONED and body["identity"] != kept["identity"]

    wait_until(replaced, timeout=30)


def test_a_weighted_alias_splits_its_environments(server: Server, new_function: Any) -> None:
    """When an alias with a config of 2 gains a 50% weight on another version, one environment
    of each version is initialised."""
    client = server.client(REGION)
    name = published(client, new_function)
    try:
        second_version(client, name)
        client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2
        )
        ready(client, name, "live", 2)
        client.update_alias(
            FunctionName=name,
            Name="live",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
        )
        ready(client, name, "live", 2)
        seen: set[str] = set()

        def both() -> bool:
            body = invoke_json(client, name, {}, Qualifier="live")[1]
            assert body["init"] == PROVISIONED
            seen.add(body["version"])
            return seen == {"1", "2"}

        wait_until(both, timeout=30)
    finally:
        client.delete_function(FunctionName=name)


def test_a_reservation_holds_provisioned_and_on_demand_together(
    server: Server, new_function: Any, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """With a reservation of 2 and 1 provisioned, two invokes run at once (one provisioned,
    one on demand) and a third is throttled for the reservation."""
    client = server.client(REGION)
    service = rendezvous(3)  # the two invokes, and the test once it has seen the throttle
    name = published(client, new_function, Environment={"Variables": service.env})
    try:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )
        ready(client, name, "1", 1)
        with ThreadPoolExecutor(3) as pool:
            running = [
                pool.submit(invoke_json, client, name, {"meet": True}, Qualifier="1")
                for _ in range(2)
            ]
            wait_until(lambda: service.count >= 2, timeout=60)
            third = pool.submit(client.invoke, FunctionName=name, Qualifier="1")
            error = third.exception(timeout=60)
            assert isinstance(error, ClientError), third.result()
            reason = error.response.get("Reason")
            assert reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
            with socket.create_connection(("127.0.0.1", service.port), timeout=30) as joining:
                joining.recv(16)
            bodies = [f.result(timeout=60)[1] for f in running]
        assert sorted(b["init"] for b in bodies) == ["on-demand", PROVISIONED]
    finally:
        client.delete_function(FunctionName=name)


def test_a_provisioned_init_is_logged_when_it_happens(server: Server, new_function: Any) -> None:
    """A provisioned environment's init is logged ahead of any invoke, as
    ``provisioned-concurrency`` in JSON platform records, with its init report (polled: log
    events arrive a moment after they happen, on AWS too, and in a cluster from the worker)."""
    client = server.client()  # the logs endpoint reads the default region
    name = published(client, new_function, LoggingConfig={"LogFormat": "JSON"})
    try:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
        )
        ready(client, name, "1", 1)

        def platform_records() -> dict[str, Any]:
            events = server.get_json(f"/_lambdad/logs?function={name}")["events"]
            records = [json.loads(e["message"]) for e in events]
            return {r["type"]: r["record"] for r in records if r["type"].startswith("platform.")}

        wait_until(lambda: "platform.initReport" in platform_records())
        kinds = platform_records()
        assert kinds["platform.initStart"]["initializationType"] == PROVISIONED
        report = kinds["platform.initReport"]
        assert (report["initializationType"], report["status"]) == (PROVISIONED, "success")
        assert "platform.start" not in kinds
    finally:
        client.delete_function(FunctionName=name)
