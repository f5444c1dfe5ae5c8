"""Function resource-based policies through boto3 and the AWS CLI: AddPermission /
RemovePermission / GetPolicy on functions, versions and aliases, and the whole-document
Get/Put/DeleteResourcePolicy. Statement shapes and messages are AWS's, as recorded against
AWS in public snapshot tests of Lambda emulators and quoted per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Server, create_function, refused, unique

REGION = "us-east-1"
ACCOUNT = "000000000000"
OTHER = "111122223333"


def arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def policy_of(lam: Any, name: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
    got = lam.get_policy(FunctionName=name, **kwargs)
    return json.loads(got["Policy"]), got["RevisionId"]


@pytest.fixture
def fn(new_function: Callable[..., dict[str, Any]]) -> str:
    return str(new_function()["FunctionName"])


def test_add_permission_builds_awss_statement_for_a_service(lam: Any, fn: str) -> None:
    """AWS answers 201 with the statement as a JSON string: a service principal under
    ``Service``, SourceArn as ``ArnLike`` on ``AWS:SourceArn``; GetPolicy returns
    ``{"Version": "2012-10-17", "Id": "default", "Statement": [...]}`` and a RevisionId."""
    added = lam.add_permission(
        FunctionName=fn,
        StatementId="s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::my-bucket",
    )
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    statement = {
        "Sid": "s3",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": arn(fn),
        "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"}},
    }
    assert json.loads(added["Statement"]) == statement
    document, revision = policy_of(lam, fn)
    assert document == {"Version": "2012-10-17", "Id": "default", "Statement": [statement]}
    assert len(revision) == 36


def test_principals_and_conditions_take_awss_shapes(lam: Any, fn: str) -> None:
    """As AWS: an account id becomes ``{"AWS": "arn:aws:iam::ID:root"}``, an IAM ARN stays as
    given, ``*`` stays ``*``; SourceAccount, FunctionUrlAuthType and PrincipalOrgID go under
    ``StringEquals`` (in that order), SourceArn under ``ArnLike``, EventSourceToken under
    ``StringEquals`` ``lambda:EventSourceToken``, InvokedViaFunctionUrl under ``Bool``."""

    def add(sid: str, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("Action", "lambda:InvokeFunction")
        got = lam.add_permission(FunctionName=fn, StatementId=sid, **kwargs)
        return dict(json.loads(got["Statement"]))

    assert add("account", Principal=OTHER)["Principal"] == {"AWS": f"arn:aws:iam::{OTHER}:root"}
    user = f"arn:aws:iam::{OTHER}:user/bob"
    by_arn = add("user", Principal=user, SourceAccount=ACCOUNT)
    assert by_arn["Principal"] == {"AWS": user}
    assert by_arn["Condition"] == {"StringEquals": {"AWS:SourceAccount": ACCOUNT}}
    url = add(
        "url",
        Principal="*",
        Action="lambda:InvokeFunctionUrl",
        SourceAccount=ACCOUNT,
        FunctionUrlAuthType="NONE",
        PrincipalOrgID="o-1234567890",
        SourceArn="arn:aws:s3:::bucket",
    )
    assert url["Principal"] == "*"
    assert url["Condition"] == {
        "StringEquals": {
            "AWS:SourceAccount": ACCOUNT,
            "lambda:FunctionUrlAuthType": "NONE",
            "aws:PrincipalOrgID": "o-1234567890",
        },
        "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"},
    }
    assert list(url["Condition"]["StringEquals"]) == [
        "AWS:SourceAccount",
        "lambda:FunctionUrlAuthType",
        "aws:PrincipalOrgID",
    ]
    alexa = add("alexa", Principal="*", EventSourceToken="amzn1.ask.skill.abc")
    assert alexa["Condition"] == {
        "StringEquals": {"lambda:EventSourceToken": "amzn1.ask.skill.abc"}
    }
    via = add("via-url", Principal="*", InvokedViaFunctionUrl=True)
    assert via["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
    assert add("all", Principal="*", Action="lambda:*")["Action"] == "lambda:*"
    document, _ = policy_of(lam, fn)
    assert [s["Sid"] for s in document["Statement"]] == [
        "account",
        "user",
        "url",
        "alexa",
        "via-url",
        "all",
    ]


def test_invalid_principal_and_action_are_refused(lam: Any, unchecked: Any, fn: str) -> None:
    """AWS: "The provided principal was invalid. Please check the principal and try again."; an
    Action outside ``(lambda:[*]|lambda:[a-zA-Z]+|[*])`` and a StatementId outside
    ``([a-zA-Z0-9-_]+)`` are ValidationExceptions quoting the pattern."""
    with refused(
        "InvalidParameterValueException",
        400,
        "The provided principal was invalid. Please check the principal and try again.",
    ):
        lam.add_permission(
            FunctionName=fn, StatementId="x", Action="lambda:InvokeFunction", Principal="bob"
        )
    with refused(
        "ValidationException",
        400,
        "1 validation error detected: Value 's3:GetObject' at 'action' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
        "(lambda:[*]|lambda:[a-zA-Z]+|[*])",
    ):
        unchecked.add_permission(
            FunctionName=fn, StatementId="x", Action="s3:GetObject", Principal="*"
        )
    with refused(
        "ValidationException",
        400,
        "1 validation error detected: Value 'example.com' at 'statementId' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
    ):
        unchecked.add_permission(
            FunctionName=fn, StatementId="example.com", Action="lambda:*", Principal="*"
        )


def test_duplicate_statement_id_is_a_conflict(lam: Any, fn: str) -> None:
    """AWS: 409 "The statement id (s3) provided already exists. Please provide a new statement
    id, or remove the existing statement."; the same id may be used on a version or alias."""
    grant = {"StatementId": "s3", "Action": "lambda:InvokeFunction", "Principal": "*"}
    lam.add_permission(FunctionName=fn, **grant)
    with refused(
        "ResourceConflictException",
        409,
        "The statement id (s3) provided already exists. Please provide a new statement id, or "
        "remove the existing statement.",
    ):
        lam.add_permission(FunctionName=fn, **grant)
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.add_permission(FunctionName=fn, Qualifier=version, **grant)


def test_missing_targets_answer_awss_messages(lam: Any, fn: str) -> None:
    """AWS: AddPermission on a missing function, version or alias says "Function not found:
    <arn>" / "Cannot find alias arn: <arn>"; on ``$LATEST`` "We currently do not support adding
    policies for $LATEST."; a qualifier in the name and a different one as the parameter "The
    derived qualifier from the function name does not match the specified qualifier."."""
    grant = {"StatementId": "s", "Action": "lambda:InvokeFunction", "Principal": "*"}
    missing = unique()
    with refused("ResourceNotFoundException", 404, f"Function not found: {arn(missing)}"):
        lam.add_permission(FunctionName=missing, **grant)
    with refused("ResourceNotFoundException", 404, f"Function not found: {arn(fn, '42')}"):
        lam.add_permission(FunctionName=fn, Qualifier="42", **grant)
    with refused("ResourceNotFoundException", 404, f"Cannot find alias arn: {arn(fn, 'nope')}"):
        lam.add_permission(FunctionName=fn, Qualifier="nope", **grant)
    with refused(
        "InvalidParameterValueException",
        400,
        "We currently do not support adding policies for $LATEST.",
    ):
        lam.add_permission(FunctionName=fn, Qualifier="$LATEST", **grant)
    with refused(
        "InvalidParameterValueException",
        400,
        "The derived qualifier from the function name does not match the specified qualifier.",
    ):
        lam.add_permission(FunctionName=f"{fn}:1", Qualifier="2", **grant)


def test_get_policy_without_one_is_not_found(lam: Any, fn: str) -> None:
    """AWS answers GetPolicy with 404 "The resource you requested does not exist." when there
    is no policy, no such function or no such version."""
    message = "The resource you requested does not exist."
    with refused("ResourceNotFoundException", 404, message):
        lam.get_policy(FunctionName=fn)
    with refused("ResourceNotFoundException", 404, message):
        lam.get_policy(FunctionName=unique())
    with refused("ResourceNotFoundException", 404, message):
        lam.get_policy(FunctionName=fn, Qualifier="7")


def test_remove_permission_answers_and_drops_the_empty_policy(lam: Any, fn: str) -> None:
    """AWS: removing an unknown statement is "Statement <sid> is not found in resource
    policy."; with no policy "No policy is associated with the given resource."; on a missing
    function "No policy found for: <arn>"; removing the last statement removes the policy."""
    with refused("ResourceNotFoundException", 404, f"No policy found for: {arn('ghost')}"):
        lam.remove_permission(FunctionName="ghost", StatementId="s")
    with refused(
        "ResourceNotFoundException", 404, "No policy is associated with the given resource."
    ):
        lam.remove_permission(FunctionName=fn, StatementId="s")
    for sid in ("a", "b"):
        lam.add_permission(
            FunctionName=fn, StatementId=sid, Action="lambda:InvokeFunction", Principal="*"
        )
    with refused(
        "ResourceNotFoundException", 404, "Statement nope is not found in resource policy."
    ):
        lam.remove_permission(FunctionName=fn, StatementId="nope")
    removed = lam.remove_permission(FunctionName=fn, StatementId="a")
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    document, _ = policy_of(lam, fn)
    assert [s["Sid"] for s in document["Statement"]] == ["b"]
    lam.remove_permission(FunctionName=fn, StatementId="b")
    with refused("ResourceNotFoundException", 404, "The resource you requested does not exist."):
        lam.get_policy(FunctionName=fn)


def test_revision_id_guards_every_change(lam: Any, fn: str) -> None:
    """A RevisionId that is not the current one is AWS's 412 PreconditionFailedException
    ("... Call the GetPolicy API ..." on add, "... Call the GetFunction/GetAlias API ..." on
    remove); the current one is accepted, and each change makes a new one."""
    wrong = "00000000-0000-0000-0000-000000000000"
    function_revision = lam.get_function(FunctionName=fn)["Configuration"]["RevisionId"]
    lam.add_permission(
        FunctionName=fn,
        StatementId="a",
        Action="lambda:InvokeFunction",
        Principal="*",
        RevisionId=function_revision,
    )
    _, revision = policy_of(lam, fn)
    with refused(
        "PreconditionFailedException",
        412,
        "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy "
        "API to retrieve the latest Revision Id",
    ):
        lam.add_permission(
            FunctionName=fn,
            StatementId="b",
            Action="lambda:InvokeFunction",
            Principal="*",
            RevisionId=wrong,
        )
    lam.add_permission(
        FunctionName=fn,
        StatementId="b",
        Action="lambda:InvokeFunction",
        Principal="*",
        RevisionId=revision,
    )
    _, newer = policy_of(lam, fn)
    assert newer != revision
    with refused(
        "PreconditionFailedException",
        412,
        "The Revision Id provided does not match the latest Revision Id. Call the "
        "GetFunction/GetAlias API to retrieve the latest Revision Id",
    ):
        lam.remove_permission(FunctionName=fn, StatementId="a", RevisionId=revision)
    lam.remove_permission(FunctionName=fn, StatementId="a", RevisionId=newer)


def test_versions_and_aliases_have_their_own_policies(lam: Any, fn: str) -> None:
    """Each of the function, a version and an alias has its own policy whose statements name
    that qualified ARN; a qualified name works as the Qualifier parameter does (AWS)."""
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=version)
    grant = {"StatementId": "s", "Action": "lambda:InvokeFunction", "Principal": OTHER}
    lam.add_permission(FunctionName=fn, Qualifier=version, **grant)
    lam.add_permission(FunctionName=f"{fn}:live", **grant)
    versioned, _ = policy_of(lam, fn, Qualifier=version)
    assert versioned["Statement"][0]["Resource"] == arn(fn, version)
    aliased, _ = policy_of(lam, f"{fn}:live")
    assert aliased["Statement"][0]["Resource"] == arn(fn, "live")
    with refused("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=fn)
    lam.remove_permission(FunctionName=fn, Qualifier="live", StatementId="s")
    with refused("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=fn, Qualifier="live")
    assert policy_of(lam, fn, Qualifier=version)[0] == versioned


def test_policies_go_with_their_function_version_and_alias(lam: Any) -> None:
    """Deleting an alias, a version or the function drops its policy: a function created again
    under the same name starts without one."""
    name = unique()
    create_function(lam, name=name)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="a", FunctionVersion=version)
    grant = {"StatementId": "s", "Action": "lambda:InvokeFunction", "Principal": "*"}
    for qualifier in (None, version, "a"):
        extra = {"Qualifier": qualifier} if qualifier else {}
        lam.add_permission(FunctionName=name, **extra, **grant)
    lam.delete_alias(FunctionName=name, Name="a")
    lam.create_alias(FunctionName=name, Name="a", FunctionVersion=version)
    with refused("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name, Qualifier="a")
    lam.delete_function(FunctionName=name)
    create_function(lam, name=name)
    with refused("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name)
    lam.publish_version(FunctionName=name)
    with refused("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=name, Qualifier=version)


def test_policy_over_20_kb_is_refused(lam: Any, fn: str) -> None:
    """AWS: PolicyLengthExceededException "The final policy size (N) is bigger than the limit
    (20480)." once a statement would take the policy over 20 KB; the policy is unchanged."""
    source = "arn:aws:s3:::" + "b" * 200
    added = 0
    with refused("PolicyLengthExceededException", 400) as error:
        for i in range(200):
            lam.add_permission(
                FunctionName=fn,
                StatementId=f"statement-{i}",
                Action="lambda:InvokeFunction",
                Principal="s3.amazonaws.com",
                SourceArn=source,
            )
            added += 1
    size = int(error["Message"].split("(")[1].split(")")[0])
    assert size > 20480
    assert error["Message"] == f"The final policy size ({size}) is bigger than the limit (20480)."
    document, _ = policy_of(lam, fn)
    assert len(document["Statement"]) == added
    assert len(json.dumps(document, separators=(",", ":"))) <= 20480


def test_policies_survive_a_restart(start_server: Callable[..., Server]) -> None:
    """A policy is stored with the function: after a restart GetPolicy answers the same
    document and RevisionId."""
    first = start_server()
    client = first.client()
    name = create_function(client)["FunctionName"]
    client.add_permission(
        FunctionName=name, StatementId="s", Action="lambda:InvokeFunction", Principal=OTHER
    )
    before = client.get_policy(FunctionName=name)
    client.close()
    first.stop()
    second = start_server(data_dir=first.data_dir)
    again = second.client()
    after = again.get_policy(FunctionName=name)
    assert (after["Policy"], after["RevisionId"]) == (before["Policy"], before["RevisionId"])
    again.close()


# ---------------------------------------------------------------- whole documents


def test_put_get_delete_resource_policy(lam: Any, fn: str) -> None:
    """PutResourcePolicy replaces the whole policy (statements AddPermission made too) and
    answers it with a new RevisionId; GetPolicy and GetResourcePolicy then read it; Delete
    removes it (204), and a second Delete is "No policy is associated with the given
    resource."."""
    lam.add_permission(
        FunctionName=fn, StatementId="old", Action="lambda:InvokeFunction", Principal="*"
    )
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "new",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
                "Action": ["lambda:InvokeFunction", "lambda:GetFunction"],
                "Resource": arn(fn),
            }
        ],
    }
    put = lam.put_resource_policy(ResourceArn=arn(fn), Policy=json.dumps(document))
    assert json.loads(put["Policy"]) == document
    got = lam.get_resource_policy(ResourceArn=arn(fn))
    assert (json.loads(got["Policy"]), got["RevisionId"]) == (document, put["RevisionId"])
    assert policy_of(lam, fn) == (document, put["RevisionId"])
    deleted = lam.delete_resource_policy(ResourceArn=arn(fn), RevisionId=put["RevisionId"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with refused(
        "ResourceNotFoundException", 404, "No policy is associated with the given resource."
    ):
        lam.delete_resource_policy(ResourceArn=arn(fn))
    with refused("ResourceNotFoundException", 404):
        lam.get_resource_policy(ResourceArn=arn(fn))


def test_put_resource_policy_checks_the_revision(lam: Any, fn: str) -> None:
    """A RevisionId other than the policy's current one is PreconditionFailedException (AWS's
    model: "If the revision ID doesn't match, the operation fails")."""
    statement = {"Effect": "Allow", "Principal": "*", "Action": "lambda:*", "Resource": arn(fn)}
    body = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    put = lam.put_resource_policy(ResourceArn=arn(fn), Policy=body)
    wrong = "00000000-0000-0000-0000-000000000000"
    with refused("PreconditionFailedException", 412):
        lam.put_resource_policy(ResourceArn=arn(fn), Policy=body, RevisionId=wrong)
    with refused("PreconditionFailedException", 412):
        lam.delete_resource_policy(ResourceArn=arn(fn), RevisionId=wrong)
    lam.put_resource_policy(ResourceArn=arn(fn), Policy=body, RevisionId=put["RevisionId"])


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        ("{not json", "it is not valid JSON"),
        ("[1, 2]", "it is not a JSON object"),
        ('{"Version": "2012-10-17"}', "it has no Statement"),
        ('{"Statement": [{"Effect": "Maybe"}]}', "a statement's Effect is neither Allow nor Deny"),
        (
            '{"Statement": [{"Effect": "Allow", "Principal": "*", "Resource": "*"}]}',
            "a statement has no Action",
        ),
    ],
)
def test_put_resource_policy_refuses_a_malformed_document(
    lam: Any, fn: str, policy: str, why: str
) -> None:
    """A document that is not JSON or not a policy is refused with 400 and nothing stored."""
    with refused(
        "InvalidParameterValueException", 400, f"The policy document is malformed: {why}."
    ):
        lam.put_resource_policy(ResourceArn=arn(fn), Policy=policy)
    with refused("ResourceNotFoundException", 404):
        lam.get_policy(FunctionName=fn)


def test_put_resource_policy_over_20_kb_is_refused(lam: Any, unchecked: Any, fn: str) -> None:
    """A document over 20,480 characters breaks the model's length limit (ValidationException,
    as AWS's front end answers); one within it whose compact JSON is still over 20 KB of bytes
    is PolicyLengthExceededException."""
    statement = {"Effect": "Allow", "Principal": "*", "Action": "lambda:*", "Resource": arn(fn)}
    padded = json.dumps({"Statement": [statement], "Id": "x" * 20480})
    with refused("ValidationException", 400):
        unchecked.put_resource_policy(ResourceArn=arn(fn), Policy=padded)
    wide = json.dumps({"Statement": [statement], "Id": "é" * 10000}, ensure_ascii=False)
    with refused("PolicyLengthExceededException", 400):
        lam.put_resource_policy(ResourceArn=arn(fn), Policy=wide)


def test_resource_policy_of_a_missing_function_is_not_found(lam: Any) -> None:
    """Every resource-policy call on a function that does not exist is a 404."""
    missing = arn(unique())
    body = json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}
    )
    with refused("ResourceNotFoundException", 404):
        lam.get_resource_policy(ResourceArn=missing)
    with refused("ResourceNotFoundException", 404):
        lam.put_resource_policy(ResourceArn=missing, Policy=body)
    with refused("ResourceNotFoundException", 404):
        lam.delete_resource_policy(ResourceArn=missing)


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_add_permission_and_get_policy(server: Server, fn: str, tmp_path: Any) -> None:
    """``aws lambda add-permission`` and ``get-policy`` work against lambdad as against AWS."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    base = ["aws", "--endpoint-url", server.endpoint, "lambda"]
    added = subprocess.run(
        [
            *base,
            "add-permission",
            "--function-name",
            fn,
            "--statement-id",
            "cli",
            "--action",
            "lambda:InvokeFunction",
            "--principal",
            "sns.amazonaws.com",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(json.loads(added.stdout)["Statement"])["Principal"] == {
        "Service": "sns.amazonaws.com"
    }
    got = subprocess.run(
        [*base, "get-policy", "--function-name", fn],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(json.loads(got.stdout)["Policy"])["Statement"][0]["Sid"] == "cli"
