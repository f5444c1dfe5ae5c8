"""Function URLs with ``AuthType AWS_IAM`` and invocations across accounts, on a lambdad in
SigV4 mode with keys of two accounts made by ``lambdad keys``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import Server, create_function, refused, unique
from tests.test_sigv4 import client_of, keys
from tests.url_client import Answer, call_url

OWNER = "111122223333"
OTHER = "444455556666"
FORBIDDEN = (403, b'{"Message":"Forbidden"}')


@pytest.fixture(scope="module")
def two_accounts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, dict[str, str], dict[str, str]]]:
    """A lambdad in SigV4 mode, a key of ``OWNER`` (alice) and one of ``OTHER`` (bob)."""
    from tests.conftest import launch_server, shutdown

    home = tmp_path_factory.mktemp("url-auth")
    data = home / "data"
    alice = keys(data, "create", "--account-id", OWNER, "--name", "alice")
    bob = keys(data, "create", "--account-id", OTHER, "--name", "bob")
    server = launch_server(home, {"LAMBDAD_AUTH": "sigv4"}, data)
    yield server, alice, bob
    shutdown(server)


def signed_call(url: str, key: dict[str, str], body: bytes = b"", secret: str = "") -> Answer:
    """POST ``body`` to the URL, signed by botocore's SigV4 signer (service ``lambda``)."""
    request = AWSRequest(method="POST", url=url + "signed?x=1", data=body)
    credentials = Credentials(key["AccessKeyId"], secret or key["SecretAccessKey"])
    SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
    return call_url(url, "/signed?x=1", method="POST", body=body, headers=headers)


@pytest.fixture
def iam_url(two_accounts: tuple[Server, dict[str, str], dict[str, str]]) -> tuple[str, str]:
    """(function name, its AWS_IAM URL), owned by alice's account."""
    server, alice, _ = two_accounts
    lam = client_of(server, alice)
    name = str(create_function(lam, name=unique("iam"))["FunctionName"])
    url = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    return name, str(url)


def test_the_owner_signs_and_the_event_names_them(
    two_accounts: tuple[Server, dict[str, str], dict[str, str]], iam_url: tuple[str, str]
) -> None:
    """AWS: an AWS_IAM URL serves a request SigV4-signed (service lambda) by the owner account,
    and the event's requestContext.authorizer.iam names the caller (access key, account, user
    ARN, user id)."""
    _, alice, _ = two_accounts
    _, url = iam_url
    answer = signed_call(url, alice, b'{"hello": 1}')
    assert answer.status == 200, answer.body
    event = answer.json()
    iam = event["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == alice["AccessKeyId"]
    assert iam["accountId"] == OWNER
    assert iam["userArn"] == f"arn:aws:iam::{OWNER}:user/alice"
    assert iam["userId"].startswith("AIDA")
    assert iam["callerId"] == iam["userId"]
    assert event["body"] == '{"hello": 1}'
    assert event["rawQueryString"] == "x=1"


def test_unsigned_or_forged_requests_are_forbidden(
    two_accounts: tuple[Server, dict[str, str], dict[str, str]], iam_url: tuple[str, str]
) -> None:
    """AWS: an AWS_IAM URL answers 403 {"Message":"Forbidden"} to an unsigned request and to
    one whose signature does not hold."""
    _, alice, _ = two_accounts
    _, url = iam_url
    unsigned = call_url(url, "/", method="POST", body=b"{}")
    assert (unsigned.status, unsigned.body) == FORBIDDEN
    forged = signed_call(url, alice, b"{}", secret="x" * 40)
    assert (forged.status, forged.body) == FORBIDDEN


def test_another_account_needs_a_grant(
    two_accounts: tuple[Server, dict[str, str], dict[str, str]], iam_url: tuple[str, str]
) -> None:
    """AWS: a caller of another account may invoke an AWS_IAM URL only once the resource policy
    grants its account both lambda:InvokeFunctionUrl and lambda:InvokeFunction."""
    server, alice, bob = two_accounts
    name, url = iam_url
    assert (signed_call(url, bob).status, signed_call(url, bob).body) == FORBIDDEN
    lam = client_of(server, alice)
    lam.add_permission(
        FunctionName=name,
        StatementId="bob-url",
        Action="lambda:InvokeFunctionUrl",
        Principal=OTHER,
        FunctionUrlAuthType="AWS_IAM",
    )
    assert signed_call(url, bob).status == 403
    lam.add_permission(
        FunctionName=name, StatementId="bob-invoke", Action="lambda:InvokeFunction", Principal=OTHER
    )
    answer = signed_call(url, bob)
    assert answer.status == 200
    assert answer.json()["requestContext"]["authorizer"]["iam"]["accountId"] == OTHER


def test_cross_account_invoke_needs_a_grant(
    two_accounts: tuple[Server, dict[str, str], dict[str, str]],
) -> None:
    """AWS: Invoke of another account's function (by ARN) is AccessDeniedException (403) until
    its resource policy grants the caller's account lambda:InvokeFunction; then it runs in the
    owner's account and the owner's function sees the invocation."""
    server, alice, bob = two_accounts
    owner, other = client_of(server, alice), client_of(server, bob)
    arn = create_function(owner, name=unique("shared"))["FunctionArn"]
    with refused("AccessDeniedException", 403) as error:
        other.invoke(FunctionName=arn, Payload=b'{"n": 1}')
    assert f"arn:aws:iam::{OTHER}:user/bob" in error["Message"]
    assert "lambda:InvokeFunction" in error["Message"]
    owner.add_permission(
        FunctionName=arn, StatementId="bob", Action="lambda:InvokeFunction", Principal=OTHER
    )
    answer = other.invoke(FunctionName=arn, Payload=b'{"n": 1}')
    assert json.loads(answer["Payload"].read()) == {"n": 1}
    # bob's own account still has no function of that name
    with refused("ResourceNotFoundException", 404):
        other.get_function(FunctionName=arn.rsplit(":", 1)[1])


def test_cross_account_grants_do_not_reach_the_control_plane(
    two_accounts: tuple[Server, dict[str, str], dict[str, str]],
) -> None:
    """A grant of lambda:InvokeFunction lets the other account invoke, nothing more: reading or
    deleting the function by its ARN stays AccessDeniedException, as on AWS."""
    server, alice, bob = two_accounts
    owner, other = client_of(server, alice), client_of(server, bob)
    arn = create_function(owner, name=unique("guarded"))["FunctionArn"]
    owner.add_permission(
        FunctionName=arn, StatementId="bob", Action="lambda:InvokeFunction", Principal=OTHER
    )
    with refused("AccessDeniedException", 403):
        other.get_function(FunctionName=arn)
    with refused("AccessDeniedException", 403):
        other.delete_function(FunctionName=arn)
    assert owner.get_function(FunctionName=arn)["Configuration"]["FunctionArn"] == arn
