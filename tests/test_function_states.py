"""Lambda's asynchronous function states, as AWS answers them (docs/function-states.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import ROLE, Server, invoke_json, make_zip, refused, unique, wait_until

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
CREATING = "The function is being created."
#: boto3's waiters poll every 1-5 s; lambdad is done by the first poll.
FAST = {"Delay": 1, "MaxAttempts": 30}


def _create(client: Any, **kwargs: Any) -> dict[str, Any]:
    return dict(
        client.create_function(
            FunctionName=kwargs.pop("FunctionName", unique()),
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 'v1'\n"})},
            **kwargs,
        )
    )


def test_create_answers_pending_then_the_function_is_active(lam: Any) -> None:
    """AWS answers CreateFunction with State Pending, StateReason "The function is being
    created." and StateReasonCode Creating (no LastUpdateStatus); once created, GetFunction says
    Active / Successful without reasons, under a new RevisionId, and function_active_v2 and
    function_active are satisfied."""
    created = _create(lam)
    name = created["FunctionName"]
    assert (created["State"], created["StateReason"], created["StateReasonCode"]) == (
        "Pending",
        CREATING,
        "Creating",
    )
    assert "LastUpdateStatus" not in created
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST)
    lam.get_waiter("function_active").wait(FunctionName=name, WaiterConfig=FAST)
    config = lam.get_function(FunctionName=name)["Configuration"]
    assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Successful")
    assert not {"StateReason", "StateReasonCode", "LastUpdateStatusReason"} & set(config)
    assert config["RevisionId"] != created["RevisionId"]


def test_an_invoke_right_after_create_runs(lam: Any) -> None:
    """AWS refuses to invoke a Pending function; lambdad's Pending ends right after the
    answer, and an invoke arriving first completes it, so create-then-invoke just runs."""
    name = _create(lam)["FunctionName"]
    assert invoke_json(lam, name, {})[1] == "v1"


def test_updates_answer_in_progress_then_successful(lam: Any) -> None:
    """AWS answers UpdateFunctionConfiguration and UpdateFunctionCode with State Active,
    LastUpdateStatus InProgress, LastUpdateStatusReason "The function is being created." and
    LastUpdateStatusReasonCode Creating; then Successful (function_updated_v2 satisfied), and a
    second update right after the first one is taken."""
    name = _create(lam)["FunctionName"]
    updated = lam.update_function_configuration(FunctionName=name, Timeout=9)
    assert (updated["State"], updated["LastUpdateStatus"]) == ("Active", "InProgress")
    assert updated["LastUpdateStatusReason"] == CREATING
    assert updated["LastUpdateStatusReasonCode"] == "Creating"
    code = lam.update_function_code(
        FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"})
    )
    assert (code["LastUpdateStatus"], code["LastUpdateStatusReasonCode"]) == (
        "InProgress",
        "Creating",
    )
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST)
    lam.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig=FAST)
    config = lam.get_function_configuration(FunctionName=name)
    assert (config["LastUpdateStatus"], config["Timeout"]) == ("Successful", 9)
    assert "LastUpdateStatusReason" not in config
    assert invoke_json(lam, name, {})[1] == "v2"


def test_a_version_published_with_update_code_starts_pending(lam: Any) -> None:
    """AWS answers UpdateFunctionCode(Publish=True) with the new version, qualified ARN,
    State Pending / Creating and no LastUpdateStatus; published_version_active then succeeds
    and the version is Active. A plain PublishVersion of a settled $LATEST is Active at once."""
    name = _create(lam)["FunctionName"]
    published = lam.update_function_code(
        FunctionName=name,
        ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"}),
        Publish=True,
    )
    assert (published["Version"], published["FunctionArn"]) == ("1", f"{ARN}{name}:1")
    assert (published["State"], published["StateReasonCode"]) == ("Pending", "Creating")
    assert "LastUpdateStatus" not in published
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier="1", WaiterConfig=FAST
    )
    version = lam.get_function_configuration(FunctionName=name, Qualifier="1")
    assert (version["State"], version["LastUpdateStatus"]) == ("Active", "Successful")
    lam.update_function_configuration(FunctionName=name, Timeout=8)
    second = lam.publish_version(FunctionName=name)
    assert (second["Version"], second["State"], second["LastUpdateStatus"]) == (
        "2",
        "Active",
        "Successful",
    )


def test_while_pending_or_in_progress_aws_refuses_invokes_and_updates(
    start_server: Callable[..., Server],
) -> None:
    """With LAMBDAD_FUNCTION_SETTLE_DELAY lambdad keeps the states as long as AWS may; meanwhile
    it answers as AWS does: a Pending function's Invoke is ResourceConflictException "...The
    function is currently in the following state: Pending", its update "...The resource <arn> is
    currently in the following state: 'Pending'. StateReasonCode: 'Creating'", and an update
    while another is InProgress "...An update is in progress for resource: <arn>"."""
    server = start_server({"LAMBDAD_FUNCTION_SETTLE_DELAY": "3"})
    client = server.client()
    name = _create(client)["FunctionName"]
    assert client.get_function(FunctionName=name)["Configuration"]["State"] == "Pending"
    with refused(
        "ResourceConflictException",
        409,
        "The operation cannot be performed at this time. The function is currently in the "
        "following state: Pending",
    ):
        client.invoke(FunctionName=name)
    with refused(
        "ResourceConflictException",
        409,
        f"The operation cannot be performed at this time. The resource {ARN}{name} is "
        "currently in the following state: 'Pending'. StateReasonCode: 'Creating'",
    ):
        client.update_function_configuration(FunctionName=name, Timeout=9)
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST)
    assert client.update_function_configuration(FunctionName=name, Timeout=9)[
        "LastUpdateStatus"
    ] == ("InProgress")
    with refused(
        "ResourceConflictException",
        409,
        "The operation cannot be performed at this time. An update is in progress for "
        f"resource: {ARN}{name}",
    ):
        client.update_function_code(
            FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 2\n"})
        )
    assert invoke_json(client, name, {})[1] == "v1", "an Active function runs meanwhile"
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST)
    assert client.get_function_configuration(FunctionName=name)["Timeout"] == 9


def test_a_restart_completes_what_it_interrupted(start_server: Callable[..., Server]) -> None:
    """A function left Pending by a stopped lambdad becomes Active after the restart."""
    first = start_server({"LAMBDAD_FUNCTION_SETTLE_DELAY": "600"})
    name = _create(first.client())["FunctionName"]
    first.stop()
    again = start_server(data_dir=first.data_dir).client()

    def active() -> bool:
        config = again.get_function(FunctionName=name)["Configuration"]
        return bool(config["State"] == "Active")

    wait_until(active)
    assert invoke_json(again, name, {})[1] == "v1"
