"""Function URL configs through boto3 and the AWS CLI: shapes, AWS's errors, pagination, their
removal with the function or alias, and url-ids that survive a restart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, create_function, refused
from tests.url_client import call_url, make_public

REGION = "us-east-1"
ACCOUNT = "000000000000"
URL_RE = re.compile(r"http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/")
#: The AWS CLI installed beside the interpreter running the tests (awscli is a test dependency).
AWS_CLI = str(Path(sys.executable).with_name("aws"))
STAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def body(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


@pytest.fixture
def fn(new_function: Callable[..., dict[str, Any]]) -> str:
    return str(new_function()["FunctionName"])


def test_create_get_update_delete_answer_botocores_shapes(
    lam: Any, fn: str, server: Server
) -> None:
    """Create answers 201 without LastModifiedTime; Get and Update answer the whole config; the
    URL is http://<32 lowercase alphanumerics>.lambda-url.<region>.localhost:<port>/."""
    created = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    created = body(created)
    match = URL_RE.fullmatch(created["FunctionUrl"])
    assert match
    assert int(match[2]) == server.port
    assert STAMP_RE.fullmatch(created.pop("CreationTime"))
    assert created == {
        "FunctionUrl": created["FunctionUrl"],
        "FunctionArn": arn(fn),
        "AuthType": "NONE",
        "InvokeMode": "BUFFERED",
    }
    got = body(lam.get_function_url_config(FunctionName=fn))
    assert got["FunctionUrl"] == created["FunctionUrl"]
    assert STAMP_RE.fullmatch(got["LastModifiedTime"])
    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET"], "MaxAge": 60}
    updated = body(
        lam.update_function_url_config(
            FunctionName=fn, AuthType="AWS_IAM", Cors=cors, InvokeMode="RESPONSE_STREAM"
        )
    )
    assert updated["FunctionUrl"] == created["FunctionUrl"]
    assert (updated["AuthType"], updated["Cors"], updated["InvokeMode"]) == (
        "AWS_IAM",
        cors,
        "RESPONSE_STREAM",
    )
    assert updated["CreationTime"] == got["CreationTime"]
    kept = body(lam.update_function_url_config(FunctionName=fn, AuthType="NONE"))
    assert (kept["Cors"], kept["InvokeMode"]) == (cors, "RESPONSE_STREAM")
    assert (
        lam.delete_function_url_config(FunctionName=fn)["ResponseMetadata"]["HTTPStatusCode"] == 204
    )
    with refused("ResourceNotFoundException", 404, "The resource you requested does not exist."):
        lam.get_function_url_config(FunctionName=fn)


def test_a_second_create_is_a_conflict_in_aws_words(lam: Any, fn: str) -> None:
    """AWS: ResourceConflictException "Failed to create function url config for [functionArn =
    <arn>]. Error message:  FunctionUrlConfig exists for this Lambda function"."""
    lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    message = (
        f"Failed to create function url config for [functionArn = {arn(fn)}]. "
        "Error message:  FunctionUrlConfig exists for this Lambda function"
    )
    with refused("ResourceConflictException", 409, message):
        lam.create_function_url_config(FunctionName=fn, AuthType="AWS_IAM")


def test_missing_function_alias_or_config_answer_aws_messages(lam: Any, fn: str) -> None:
    """AWS: Create/Update/List on a missing function or alias say "Function does not exist";
    Get/Delete/Update without a config say "The resource you requested does not exist."."""
    with refused("ResourceNotFoundException", 404, "Function does not exist"):
        lam.create_function_url_config(FunctionName=fn + "-gone", AuthType="NONE")
    with refused("ResourceNotFoundException", 404, "Function does not exist"):
        lam.create_function_url_config(FunctionName=fn, Qualifier="nope", AuthType="NONE")
    with refused("ResourceNotFoundException", 404, "Function does not exist"):
        lam.list_function_url_configs(FunctionName=fn + "-gone")
    missing = "The resource you requested does not exist."
    with refused("ResourceNotFoundException", 404, missing):
        lam.get_function_url_config(FunctionName=fn)
    with refused("ResourceNotFoundException", 404, missing):
        lam.delete_function_url_config(FunctionName=fn)
    with refused("ResourceNotFoundException", 404, missing):
        lam.update_function_url_config(FunctionName=fn, AuthType="NONE")


def test_versions_and_latest_are_refused_by_the_qualifier_pattern(unchecked: Any, fn: str) -> None:
    """AWS: a version number or $LATEST as the qualifier breaks FunctionUrlQualifier's pattern,
    a ValidationException naming 'qualifier'."""
    for qualifier in ("1", "$LATEST"):
        with refused("ValidationException", 400) as error:
            unchecked.create_function_url_config(
                FunctionName=fn, Qualifier=qualifier, AuthType="NONE"
            )
        assert error["Message"] == (
            f"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
            "((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
        )


def test_bad_auth_type_and_cors_are_validation_errors(unchecked: Any, fn: str) -> None:
    """AWS: an AuthType outside its enum and a MaxAge over 86400 are ValidationExceptions."""
    with refused("ValidationException", 400):
        unchecked.create_function_url_config(FunctionName=fn, AuthType="OPEN")
    with refused("ValidationException", 400):
        unchecked.create_function_url_config(
            FunctionName=fn, AuthType="NONE", Cors={"MaxAge": 86401}
        )


def test_alias_urls_list_in_pages_and_go_with_their_alias(lam: Any, fn: str) -> None:
    """An alias has its own URL with an alias-qualified FunctionArn; List pages with MaxItems and
    NextMarker; deleting the alias deletes its URL config, as AWS does."""
    version = lam.publish_version(FunctionName=fn)["Version"]
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=version)
    latest = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    live = lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")
    assert live["FunctionArn"] == arn(fn, "live")
    assert live["FunctionUrl"] != latest["FunctionUrl"]
    first = lam.list_function_url_configs(FunctionName=fn, MaxItems=1)
    second = lam.list_function_url_configs(FunctionName=fn, Marker=first["NextMarker"])
    listed = first["FunctionUrlConfigs"] + second["FunctionUrlConfigs"]
    assert [c["FunctionArn"] for c in listed] == [arn(fn), arn(fn, "live")]
    assert "NextMarker" not in second
    lam.delete_alias(FunctionName=fn, Name="live")
    assert [
        c["FunctionArn"]
        for c in lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"]
    ] == [arn(fn)]
    assert call_url(live["FunctionUrl"]).status == 403


def test_deleting_the_function_deletes_its_url(lam: Any, fn: str) -> None:
    """AWS: a deleted function's URL configs go with it; its URL then answers 403."""
    url = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")["FunctionUrl"]
    make_public(lam, fn)
    assert call_url(url).status == 200
    lam.delete_function(FunctionName=fn)
    assert call_url(url).status == 403
    create_function(lam, name=fn)
    with refused("ResourceNotFoundException", 404):
        lam.get_function_url_config(FunctionName=fn)


@pytest.mark.slow
def test_url_ids_survive_a_restart(start_server: Callable[..., Server], tmp_path: Path) -> None:
    """A URL keeps its url-id across a restart and is served again from the store."""
    data_dir = tmp_path / "keep"
    first = start_server(data_dir=data_dir)
    client = first.client()
    name = str(create_function(client)["FunctionName"])
    url = client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    make_public(client, name)
    first.stop()
    second = start_server(data_dir=data_dir)
    again = second.client().get_function_url_config(FunctionName=name)["FunctionUrl"]
    assert URL_RE.fullmatch(again)[1] == URL_RE.fullmatch(url)[1]  # type: ignore[index]
    answer = call_url(again)
    assert answer.status == 200
    assert answer.json()["requestContext"]["apiId"] in url


def test_url_settings_shape_the_url(start_server: Callable[..., Server]) -> None:
    """LAMBDAD_URL_SCHEME/DOMAIN/PORT change the URL shown; the scheme's default port is left
    out; the URL is still served on lambdad's own port by its Host."""
    srv = start_server(
        {
            "LAMBDAD_URL_SCHEME": "https",
            "LAMBDAD_URL_DOMAIN": "fn.example.net",
            "LAMBDAD_URL_PORT": "443",
        }
    )
    client = srv.client(region="eu-west-1")
    name = str(create_function(client)["FunctionName"])
    url = client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    make_public(client, name)
    assert re.fullmatch(r"https://[a-z0-9]{32}\.lambda-url\.eu-west-1\.fn\.example\.net/", url)
    answer = call_url(url, port=srv.port)
    assert answer.status == 200
    assert answer.json()["requestContext"]["domainName"] == url[len("https://") : -1]


def test_aws_cli_creates_a_url_config(server: Server, fn: str, tmp_path: Path) -> None:
    """``aws lambda create-function-url-config`` prints the new config, as against AWS."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    done = subprocess.run(
        [AWS_CLI, "lambda", "create-function-url-config", "--endpoint-url", server.endpoint,
         "--function-name", fn, "--auth-type", "NONE",
         "--cors", "AllowOrigins=https://example.com,AllowMethods=GET"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert URL_RE.fullmatch(printed["FunctionUrl"])
    assert printed["Cors"] == {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET"]}
