"""Function credentials: in SigV4 mode a function's own AWS SDK signs with credentials lambdad
issues for the function's account and execution role (docs/accounts-and-sigv4.md).

AWS gives each function temporary credentials of its execution role (``AWS_ACCESS_KEY_ID``
starting ``ASIA``, a secret and a session token); its calls act as
``arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION`` in its account.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Recorder, Server, create_function, launch_server, shutdown, unique
from tests.test_durable import durable_function, sdk_files, steps_run

__all__ = ["sdk_files"]  # the SDK fixture, used by name
from tests.test_sigv4 import client_of, keys

ALICE = "111111111111"
BOB = "222222222222"
#: Calls Lambda with the SDK's own credentials (nothing explicit): lists the account's
#: functions, invokes another, or answers the credentials it was given.
CALLER = """
import json, os

import boto3
from botocore.exceptions import ClientError


def handler(event, context):
    client = boto3.client("lambda")
    if event["do"] == "credentials":
        return {k: os.environ[k] for k in (
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    if event["do"] == "list":
        return sorted(f["FunctionName"] for f in client.list_functions()["Functions"])
    try:
        response = client.invoke(FunctionName=event["target"], Payload=b'{"hello": 1}')
    except ClientError as exc:
        return {"error": exc.response["Error"]["Code"]}
    return json.loads(response["Payload"].read())
"""


@pytest.fixture(scope="module")
def sigv4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, Any]]:
    """A lambdad in SigV4 mode with a key of account ALICE and one of account BOB."""
    home = tmp_path_factory.mktemp("fncreds")
    data = home / "data"
    alice_key = keys(data, "create", "--account-id", ALICE, "--name", "alice")
    bob_key = keys(data, "create", "--account-id", BOB, "--name", "bob")
    server = launch_server(home, {"LAMBDAD_AUTH": "sigv4"}, data)
    yield server, client_of(server, alice_key), client_of(server, bob_key)
    shutdown(server)


def call(client: Any, name: str, event: dict[str, Any]) -> Any:
    response = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    payload = response["Payload"].read()
    assert "FunctionError" not in response, payload
    return json.loads(payload)


def caller_function(client: Any) -> str:
    name = str(create_function(client, CALLER, name=unique("caller"), Timeout=30)["FunctionName"])
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def session_client(server: Server, creds: dict[str, str], **changes: str) -> Any:
    values = {**creds, **changes}
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=values["AWS_SESSION_TOKEN"],
        config=Config(retries={"total_max_attempts": 1}),
    )


def error_of(call_it: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call_it()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_a_function_lists_and_invokes_functions_of_its_account(
    sigv4: tuple[Server, Any, Any],
) -> None:
    """boto3 inside a handler, with no credentials given, lists its account's functions and
    invokes another of them (AWS: the SDK signs with the role's temporary credentials)."""
    _, alice, _ = sigv4
    name = caller_function(alice)
    target = str(create_function(alice, name=unique("target"))["FunctionName"])
    alice.get_waiter("function_active_v2").wait(FunctionName=target)
    listed = call(alice, name, {"do": "list"})
    assert name in listed
    assert target in listed
    assert call(alice, name, {"do": "invoke", "target": target}) == {"hello": 1}
    creds = call(alice, name, {"do": "credentials"})
    assert creds["AWS_ACCESS_KEY_ID"].startswith("ASIA")


def test_function_credentials_do_not_reach_another_account(
    sigv4: tuple[Server, Any, Any],
) -> None:
    """A function's credentials act in its account only: another account's function, named by
    its ARN, is refused as to any principal no resource policy grants (AWS:
    AccessDeniedException)."""
    _, alice, bob = sigv4
    name = caller_function(alice)
    other = create_function(bob, name=unique("bobs"))
    bob.get_waiter("function_active_v2").wait(FunctionName=other["FunctionName"])
    answer = call(alice, name, {"do": "invoke", "target": other["FunctionArn"]})
    assert answer == {"error": "AccessDeniedException"}


def test_the_caller_is_the_functions_role_session(sigv4: tuple[Server, Any, Any]) -> None:
    """The credentials a function got act, from anywhere, as the role session
    ``assumed-role/ROLE/FUNCTION`` of its account: a refusal names that principal (AWS names
    the caller's ARN in AccessDeniedException)."""
    server, alice, bob = sigv4
    name = caller_function(alice)
    creds = call(alice, name, {"do": "credentials"})
    other = create_function(bob, name=unique("bobs"))
    client = session_client(server, creds)
    assert name in [f["FunctionName"] for f in client.list_functions()["Functions"]]
    code, message = error_of(lambda: client.get_function(FunctionName=other["FunctionArn"]))
    assert code == "AccessDeniedException"
    role = alice.get_function_configuration(FunctionName=name)["Role"].rsplit("/", 1)[-1]
    assert f"arn:aws:sts::{ALICE}:assumed-role/{role}/{name} " in message


def test_forged_or_altered_function_credentials_are_refused(
    sigv4: tuple[Server, Any, Any],
) -> None:
    """An altered secret does not match the signature, an altered or missing session token or
    an unknown ASIA key id is no credential AWS issued: AWS's InvalidSignatureException and
    UnrecognizedClientException."""
    server, alice, _ = sigv4
    name = caller_function(alice)
    creds = call(alice, name, {"do": "credentials"})
    secret = creds["AWS_SECRET_ACCESS_KEY"]
    altered = ("A" if secret[0] != "A" else "B") + secret[1:]
    client = session_client(server, creds, AWS_SECRET_ACCESS_KEY=altered)
    code, _ = error_of(client.list_functions)
    assert code == "InvalidSignatureException"

    prefix, _, body = creds["AWS_SESSION_TOKEN"].partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "a": BOB}).encode()).decode()
    for token in (f"{prefix}.{forged}", creds["AWS_SESSION_TOKEN"] + "x", "none"):
        client = session_client(server, creds, AWS_SESSION_TOKEN=token)
        code, message = error_of(client.list_functions)
        assert (code, message) == (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    client = session_client(server, creds, AWS_ACCESS_KEY_ID="ASIA" + "Q" * 16)
    code, _ = error_of(client.list_functions)
    assert code == "UnrecognizedClientException"


def test_credentials_of_a_deleted_function_are_refused(sigv4: tuple[Server, Any, Any]) -> None:
    """Once its function is deleted, a function's credentials are refused as an invalid
    security token (AWS: a role's session outlives the function until it expires; lambdad has
    no expiry, so deletion ends it)."""
    server, alice, _ = sigv4
    name = caller_function(alice)
    creds = call(alice, name, {"do": "credentials"})
    client = session_client(server, creds)
    client.list_functions()
    alice.delete_function(FunctionName=name)
    code, _ = error_of(client.list_functions)
    assert code == "UnrecognizedClientException"


def test_a_durable_function_completes_in_sigv4_mode(
    sigv4: tuple[Server, Any, Any], recorder: Recorder, sdk_files: dict[str, bytes]
) -> None:
    """The durable-execution SDK checkpoints with the function's own credentials: a step, a
    wait and a step complete, each step run once (AWS: the SDK signs with the role's
    credentials)."""
    _, alice, _ = sigv4
    name = durable_function(alice, recorder, sdk_files)
    alice.get_waiter("function_active_v2").wait(FunctionName=name)
    response = alice.invoke(
        FunctionName=name,
        Payload=json.dumps({"tag": "s", "wait": 1}).encode(),
        DurableExecutionName=unique("run"),
    )
    payload = response["Payload"].read()
    assert "FunctionError" not in response, payload
    assert json.loads(payload) == {"sum": 3, "input": "s"}
    assert steps_run(recorder) == ["one", "two"]
    execution = alice.get_durable_execution(DurableExecutionArn=response["DurableExecutionArn"])
    assert execution["Status"] == "SUCCEEDED"
