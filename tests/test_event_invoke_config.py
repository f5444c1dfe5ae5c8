"""Event invoke configs and recursion configs through boto3: shapes, validation, persistence and
their removal with the function, version or alias they belong to."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Server, create_function, refused, unique, wait_until

REGION = "us-east-1"
ACCOUNT = "000000000000"
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:done"
BUS = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"


def arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def body(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


@pytest.fixture
def fn(new_function: Callable[..., dict[str, Any]]) -> str:
    return str(new_function()["FunctionName"])


def test_put_then_get_answers_botocores_shape(lam: Any, fn: str) -> None:
    """Put on the unqualified function configures $LATEST; Get answers the same document."""
    put = body(
        lam.put_function_event_invoke_config(
            FunctionName=fn,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": QUEUE}},
        )
    )
    assert isinstance(put.pop("LastModified"), datetime.datetime)
    assert put == {
        "FunctionArn": arn(fn, "$LATEST"),
        "MaximumRetryAttempts": 1,
        "DestinationConfig": {"OnSuccess": {}, "OnFailure": {"Destination": QUEUE}},
    }
    got = body(lam.get_function_event_invoke_config(FunctionName=fn))
    got.pop("LastModified")
    assert got == put
    explicit = body(lam.get_function_event_invoke_config(FunctionName=fn, Qualifier="$LATEST"))
    assert explicit["FunctionArn"] == arn(fn, "$LATEST")


def test_put_replaces_and_update_merges(lam: Any, fn: str) -> None:
    """Put drops what it does not name; Update keeps it and changes only what it names."""
    lam.put_function_event_invoke_config(
        FunctionName=fn,
        MaximumRetryAttempts=0,
        MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnSuccess": {"Destination": TOPIC}},
    )
    replaced = lam.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=60)
    assert "MaximumRetryAttempts" not in replaced
    assert replaced["MaximumEventAgeInSeconds"] == 60
    assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    updated = lam.update_function_event_invoke_config(
        FunctionName=fn,
        MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": BUS}},
    )
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (2, 60)
    assert updated["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {"Destination": BUS}}
    again = lam.update_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": QUEUE}}
    )
    assert again["DestinationConfig"] == {
        "OnSuccess": {"Destination": QUEUE},
        "OnFailure": {"Destination": BUS},
    }
    assert again["LastModified"] >= updated["LastModified"]


def test_versions_and_aliases_have_their_own_configs_listed_in_pages(
    lam: Any, new_function: Callable[..., dict[str, Any]]
) -> None:
    """Each qualifier has its own config (also when named in the ARN); List pages them."""
    target = new_function()["FunctionName"]
    fn = new_function()["FunctionName"]
    lam.publish_version(FunctionName=fn)
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=2)
    lam.put_function_event_invoke_config(FunctionName=fn, Qualifier="1", MaximumRetryAttempts=1)
    lam.put_function_event_invoke_config(
        FunctionName=arn(fn, "live"),
        MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": arn(target)}},
    )
    assert (
        lam.get_function_event_invoke_config(FunctionName=fn, Qualifier="1")["MaximumRetryAttempts"]
        == 1
    )
    live = lam.get_function_event_invoke_config(FunctionName=f"{fn}:live")
    assert live["FunctionArn"] == arn(fn, "live")
    assert live["DestinationConfig"]["OnSuccess"] == {"Destination": arn(target)}

    first = lam.list_function_event_invoke_configs(FunctionName=fn, MaxItems=2)
    assert [c["FunctionArn"] for c in first["FunctionEventInvokeConfigs"]] == [
        arn(fn, "$LATEST"),
        arn(fn, "1"),
    ]
    rest = lam.list_function_event_invoke_configs(FunctionName=fn, Marker=first["NextMarker"])
    assert [c["FunctionArn"] for c in rest["FunctionEventInvokeConfigs"]] == [arn(fn, "live")]
    assert "NextMarker" not in rest
    assert rest["FunctionEventInvokeConfigs"][0]["MaximumRetryAttempts"] == 0
    every = lam.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"]
    assert len(every) == 3
    empty = lam.list_function_event_invoke_configs(FunctionName=target)
    assert empty["FunctionEventInvokeConfigs"] == []


def test_an_event_sent_to_an_alias_in_the_arn_keeps_its_qualifier(
    lam: Any, server: Server, new_function: Callable[..., dict[str, Any]]
) -> None:
    """``Invoke(FunctionName="fn:alias", InvocationType="Event")`` runs the alias's version
    (and so gets the alias's config), not $LATEST."""
    fn = new_function("def handler(e, c):\n    print('ran', c.function_version)\n")["FunctionName"]
    lam.publish_version(FunctionName=fn)
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    lam.invoke(FunctionName=f"{fn}:live", InvocationType="Event", Payload=b"{}")

    def ran() -> list[str]:
        events = server.get_json(f"/_lambdad/logs?function={fn}")["events"]
        return [e["message"].strip() for e in events if e["message"].startswith("ran")]

    assert wait_until(ran) == ["ran 1"]


def range_message(field: str, value: int, side: str, limit: int) -> str:
    return (
        f"Value '{value}' at '{field}' failed to satisfy constraint: Member must have value "
        f"{side} than or equal to {limit}"
    )


def test_settings_are_validated_as_aws_does(unchecked: Any, fn: str) -> None:
    """Out-of-range values are ValidationExceptions naming each field; no setting at all is
    refused."""
    with refused(
        "ValidationException",
        400,
        "1 validation error detected: " + range_message("maximumRetryAttempts", 3, "less", 2),
    ):
        unchecked.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=3)
    with refused(
        "ValidationException",
        400,
        "1 validation error detected: "
        + range_message("maximumEventAgeInSeconds", 21601, "less", 21600),
    ):
        unchecked.update_function_event_invoke_config(
            FunctionName=fn, MaximumEventAgeInSeconds=21601
        )
    with refused(
        "ValidationException",
        400,
        "2 validation errors detected: "
        + range_message("maximumRetryAttempts", -1, "greater", 0)
        + "; "
        + range_message("maximumEventAgeInSeconds", 59, "greater", 60),
    ):
        unchecked.put_function_event_invoke_config(
            FunctionName=fn, MaximumRetryAttempts=-1, MaximumEventAgeInSeconds=59
        )
    with refused(
        "InvalidParameterValueException",
        400,
        "You must specify at least one of error handling or destination setting.",
    ):
        unchecked.put_function_event_invoke_config(FunctionName=fn)
    with refused("ResourceNotFoundException", 404):
        unchecked.get_function_event_invoke_config(FunctionName=fn)


def test_destinations_are_validated_as_aws_does(lam: Any, unchecked: Any, fn: str) -> None:
    """Functions, queues, topics and buses are destinations; other ARNs, missing functions and
    the function itself are refused."""
    for target in (QUEUE, TOPIC, BUS, f"{QUEUE}.fifo"):
        config = lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": target}}
        )
        assert config["DestinationConfig"]["OnSuccess"] == {"Destination": target}
    bucket = "arn:aws:s3:::my-bucket"
    with refused(
        "InvalidParameterValueException",
        400,
        "The provided destination config DestinationConfig(onSuccess=null, "
        f"onFailure=OnFailure(destination={bucket})) is invalid.",
    ):
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": bucket}}
        )
    with refused("ValidationException", 400) as error:
        unchecked.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": "not-an-arn"}}
        )
    assert error["Message"].startswith(
        "1 validation error detected: Value 'not-an-arn' at "
        "'destinationConfig.onFailure.destination' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: "
    )
    missing = arn(unique("missing"))
    with refused(
        "InvalidParameterValueException", 400, f"The destination ARN {missing} is invalid."
    ):
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": missing}}
        )
    with refused(
        "InvalidParameterValueException",
        400,
        "You can't specify the function as a destination for itself.",
    ):
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": arn(fn)}}
        )


def test_unknown_functions_qualifiers_and_configs_are_not_found(lam: Any, fn: str) -> None:
    """Writes to a missing function or qualifier, and reads of a missing config, are 404s."""
    missing = unique("missing")
    for name, qualifier in ((missing, None), (fn, "7"), (fn, "nosuchalias")):
        extra = {"Qualifier": qualifier} if qualifier else {}
        with refused("ResourceNotFoundException", 404, "The function doesn't exist."):
            lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1, **extra)
        with refused("ResourceNotFoundException", 404, "The function doesn't exist."):
            lam.update_function_event_invoke_config(
                FunctionName=name, MaximumRetryAttempts=1, **extra
            )
    with refused("ResourceNotFoundException", 404, "The function doesn't exist."):
        lam.list_function_event_invoke_configs(FunctionName=missing)
    absent = f"The function {arn(fn, '$LATEST')} doesn't have an EventInvokeConfig"
    with refused("ResourceNotFoundException", 404, absent):
        lam.get_function_event_invoke_config(FunctionName=fn)
    with refused("ResourceNotFoundException", 404, absent):
        lam.delete_function_event_invoke_config(FunctionName=fn)
    with refused("ResourceNotFoundException", 404, absent):
        lam.update_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1)
    lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1)
    lam.delete_function_event_invoke_config(FunctionName=fn)
    with refused("ResourceNotFoundException", 404, absent):
        lam.get_function_event_invoke_config(FunctionName=fn)
    with refused("ValidationException", 400):
        lam.list_function_event_invoke_configs(FunctionName=fn, MaxItems=51)


def test_recursion_config_defaults_to_terminate_and_takes_allow(
    lam: Any, unchecked: Any, fn: str
) -> None:
    """GetFunctionRecursionConfig is Terminate until Put sets Allow (or Terminate again)."""
    assert lam.get_function_recursion_config(FunctionName=fn)["RecursiveLoop"] == "Terminate"
    put = lam.put_function_recursion_config(FunctionName=fn, RecursiveLoop="Allow")
    assert body(put) == {"RecursiveLoop": "Allow"}
    assert lam.get_function_recursion_config(FunctionName=arn(fn))["RecursiveLoop"] == "Allow"
    lam.put_function_recursion_config(FunctionName=fn, RecursiveLoop="Terminate")
    assert lam.get_function_recursion_config(FunctionName=fn)["RecursiveLoop"] == "Terminate"
    with refused(
        "ValidationException",
        400,
        "1 validation error detected: Value 'Sometimes' at 'recursiveLoop' failed to satisfy "
        "constraint: Member must satisfy enum value set: [Allow, Terminate]",
    ):
        unchecked.put_function_recursion_config(FunctionName=fn, RecursiveLoop="Sometimes")
    missing = unique("missing")
    with refused("ResourceNotFoundException", 404, f"Function not found: {arn(missing)}"):
        lam.get_function_recursion_config(FunctionName=missing)
    with refused("ResourceNotFoundException", 404, f"Function not found: {arn(missing)}"):
        lam.put_function_recursion_config(FunctionName=missing, RecursiveLoop="Allow")


def _create(client: Any, name: str) -> None:
    create_function(client, name=name)


def _qualifiers(client: Any, name: str) -> list[str]:
    configs = client.list_function_event_invoke_configs(FunctionName=name)
    return [c["FunctionArn"].rsplit(":", 1)[1] for c in configs["FunctionEventInvokeConfigs"]]


@pytest.mark.slow
def test_configs_survive_a_restart_and_go_with_what_they_belong_to(
    start_server: Callable[..., Server],
) -> None:
    """Configs and the recursion setting are durable; deleting an alias, a version or the
    function deletes theirs, so a function made again under the same name starts clean."""
    first = start_server()
    client = first.client()
    name = unique("cfg")
    _create(client, name)
    client.publish_version(FunctionName=name)
    client.update_function_configuration(FunctionName=name, Timeout=5)
    client.publish_version(FunctionName=name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    for qualifier in ("$LATEST", "1", "2", "live"):
        client.put_function_event_invoke_config(
            FunctionName=name, Qualifier=qualifier, MaximumEventAgeInSeconds=300
        )
    client.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    first.stop()

    second = start_server(data_dir=first.data_dir)
    client = second.client()
    assert _qualifiers(client, name) == ["$LATEST", "1", "2", "live"]
    assert (
        client.get_function_event_invoke_config(FunctionName=name, Qualifier="live")[
            "MaximumEventAgeInSeconds"
        ]
        == 300
    )
    assert client.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Allow"

    client.delete_alias(FunctionName=name, Name="live")
    assert _qualifiers(client, name) == ["$LATEST", "1", "2"]
    client.delete_function(FunctionName=name, Qualifier="1")
    assert _qualifiers(client, name) == ["$LATEST", "2"]
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    with refused("ResourceNotFoundException", 404):
        client.get_function_event_invoke_config(FunctionName=name, Qualifier="live")
    client.delete_function(FunctionName=name)
    _create(client, name)
    assert _qualifiers(client, name) == []
    assert client.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
    second.stop()

    third = start_server(data_dir=first.data_dir)
    assert _qualifiers(third.client(), name) == []
