"""SigV4 mode (``LAMBDAD_AUTH=sigv4``): keys made by ``lambdad keys``, requests verified as AWS
verifies them, and refused with AWS's codes, statuses and messages.

The messages pinned here are AWS Lambda's, as its SDK users have reported them:
``MissingAuthenticationTokenException: Missing Authentication Token`` (403, a request to
``lambda.us-east-1.amazonaws.com/2015-03-31/functions/.../invocations`` without a signature),
``UnrecognizedClientException: The security token included in the request is invalid.`` (403),
``InvalidSignatureException: The request signature we calculated does not match the signature
you provided. ...`` (403), ``InvalidSignatureException: Signature expired: 20160928T174419Z is
now earlier than 20160928T174724Z (20160928T175224Z - 5 min.)`` (403, from ListFunctions), and
``IncompleteSignatureException`` (403) for an Authorization header that does not parse.
"""

from __future__ import annotations

import datetime
import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.conftest import Server, create_function, invoke_json, refused, wait_until

ACCOUNT = "111122223333"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def keys(data_dir: Path, *args: str) -> Any:
    """Run ``lambdad keys ...`` on ``data_dir`` as a user would; its JSON output, if any."""
    done = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "keys", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(done.stdout) if done.stdout.strip() else None


def client_of(server: Server, key: dict[str, str], secret: str | None = None) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=secret or key["SecretAccessKey"],
        config=Config(retries={"total_max_attempts": 1}),
    )


def raw(
    server: Server, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of a plain HTTP request."""
    request = urllib.request.Request(server.endpoint + path, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def signed(
    server: Server, key: dict[str, str], path: str, *, query_auth: bool = False
) -> AWSRequest:
    """A GET of ``path`` signed by botocore's own signer with ``key``."""
    request = AWSRequest(method="GET", url=server.endpoint + path)
    credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    signer = (
        SigV4QueryAuth(credentials, "lambda", "us-east-1")
        if query_auth
        else SigV4Auth(credentials, "lambda", "us-east-1")
    )
    signer.add_auth(request)
    return request


def send(server: Server, request: AWSRequest) -> tuple[int, dict[str, str], Any]:
    path = request.url[len(server.endpoint) :]
    return raw(server, path, dict(request.headers.items()))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sigv4")


@pytest.fixture(scope="module")
def secured(home: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    """A lambdad in SigV4 mode, and a key of account ``ACCOUNT`` made before it started."""
    from tests.conftest import launch_server, shutdown

    data = home / "data"
    key = keys(data, "create", "--account-id", ACCOUNT, "--name", "alice")
    server = launch_server(home, {"LAMBDAD_AUTH": "sigv4"}, data)
    yield server, key
    shutdown(server)


def test_key_create_prints_the_key_and_keeps_the_secret_private(tmp_path: Path) -> None:
    """``lambdad keys create`` prints AccessKeyId (AKIA + 16), a 40-character secret and the
    account; the key file is 0600 and ``keys list`` shows no secret."""
    key = keys(tmp_path, "create", "--account-id", ACCOUNT, "--name", "bob")
    assert set(key) == {"AccessKeyId", "SecretAccessKey", "AccountId"}
    assert key["AccessKeyId"].startswith("AKIA")
    assert len(key["AccessKeyId"]) == 20
    assert key["AccessKeyId"][4:].isalnum()
    assert key["AccessKeyId"].isupper()
    assert len(key["SecretAccessKey"]) == 40
    assert key["AccountId"] == ACCOUNT
    assert (tmp_path / "access-keys.json").stat().st_mode & 0o777 == 0o600
    listed = keys(tmp_path, "list")["AccessKeys"]
    assert [k["AccessKeyId"] for k in listed] == [key["AccessKeyId"]]
    assert key["SecretAccessKey"] not in json.dumps(listed)
    keys(tmp_path, "delete", key["AccessKeyId"])
    assert keys(tmp_path, "list")["AccessKeys"] == []


def test_keys_refuse_a_malformed_account(tmp_path: Path) -> None:
    """An account id that is not 12 digits is refused with a message and a non-zero exit."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lambdad.cli.main",
            "keys",
            "create",
            "--account-id",
            "12",
            "--name",
            "x",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "12 digits" in done.stderr


def test_signed_calls_work_and_carry_the_key_account(
    secured: tuple[Server, dict[str, str]],
) -> None:
    """boto3 with a key made by the CLI creates, lists and invokes; ARNs name the key's
    account, as AWS's name the caller's."""
    server, key = secured
    client = client_of(server, key)
    created = create_function(client)
    assert created["FunctionArn"].startswith(f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:")
    names = [f["FunctionName"] for f in client.list_functions()["Functions"]]
    assert created["FunctionName"] in names
    _, body = invoke_json(client, created["FunctionName"], {"hello": 1})
    assert body == {"hello": 1}


def test_no_signature_is_missing_authentication_token(
    secured: tuple[Server, dict[str, str]],
) -> None:
    """AWS answers an unsigned request 403 MissingAuthenticationTokenException with the body
    ``{"message":"Missing Authentication Token"}``."""
    server, _ = secured
    status, headers, body = raw(server, "/2015-03-31/functions/")
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert body == {"message": "Missing Authentication Token"}


def test_health_needs_no_signature(secured: tuple[Server, dict[str, str]]) -> None:
    """``GET /_lambdad/health`` answers without a signature in SigV4 mode."""
    server, _ = secured
    assert raw(server, "/_lambdad/health")[:1] == (200,)


def test_unknown_key_is_unrecognized_client(secured: tuple[Server, dict[str, str]]) -> None:
    """AWS answers a key it does not know 403 UnrecognizedClientException ``The security token
    included in the request is invalid.``"""
    server, _ = secured
    stranger = {"AccessKeyId": "AKIAAAAAAAAAAAAAAAAA", "SecretAccessKey": "x" * 40}
    with refused(
        "UnrecognizedClientException", 403, "The security token included in the request is invalid."
    ):
        client_of(server, stranger).list_functions()


def test_wrong_secret_is_invalid_signature(secured: tuple[Server, dict[str, str]]) -> None:
    """AWS answers a signature made with the wrong secret 403 InvalidSignatureException ``The
    request signature we calculated does not match the signature you provided. ...``"""
    server, key = secured
    with refused("InvalidSignatureException", 403, MISMATCH):
        client_of(server, key, secret="y" * 40).list_functions()


def test_a_tampered_request_is_invalid_signature(secured: tuple[Server, dict[str, str]]) -> None:
    """A signed request whose path was changed after signing no longer verifies (AWS: 403
    InvalidSignatureException)."""
    server, key = secured
    request = signed(server, key, "/2015-03-31/functions/")
    status, headers, body = raw(server, "/2015-03-31/functions/?MaxItems=1", dict(request.headers))
    assert (status, headers["x-amzn-ErrorType"], body["message"]) == (
        403,
        "InvalidSignatureException",
        MISMATCH,
    )


def test_skewed_clock_is_signature_expired(
    secured: tuple[Server, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS answers a request signed more than 5 minutes ago 403 InvalidSignatureException
    ``Signature expired: <date> is now earlier than <now - 5 min> (<now> - 5 min.)``."""
    server, key = secured
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    with refused("InvalidSignatureException", 403) as error:
        client_of(server, key).list_functions()
    stamp = past.strftime("%Y%m%dT%H%M%SZ")
    assert error["Message"].startswith(f"Signature expired: {stamp} is now earlier than ")
    assert error["Message"].endswith(" - 5 min.)")


def test_future_clock_is_not_yet_current(
    secured: tuple[Server, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request dated more than 5 minutes ahead is refused (AWS: InvalidSignatureException
    ``Signature not yet current: ...``)."""
    server, key = secured
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: future)
    with refused("InvalidSignatureException", 403) as error:
        client_of(server, key).list_functions()
    assert error["Message"].startswith("Signature not yet current: ")


def test_replayed_request_is_accepted(secured: tuple[Server, dict[str, str]]) -> None:
    """The same signed request sent twice within the skew window is served twice, as AWS
    serves it."""
    server, key = secured
    request = signed(server, key, "/2015-03-31/functions/")
    assert send(server, request)[0] == 200
    assert send(server, request)[0] == 200


def test_presigned_query_is_verified(secured: tuple[Server, dict[str, str]]) -> None:
    """A request signed in its query string (``X-Amz-Algorithm=...&X-Amz-Signature=...``) is
    accepted; the same with a wrong signature is InvalidSignatureException."""
    server, key = secured
    request = signed(server, key, "/2015-03-31/functions/", query_auth=True)
    assert "X-Amz-Signature=" in request.url
    assert send(server, request)[0] == 200
    forged = request.url[: -len("0000")] + "0000"
    status, headers, _ = raw(server, forged[len(server.endpoint) :])
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")


@pytest.mark.parametrize(
    ("authorization", "message_start"),
    [
        ("Bearer abc", "Authorization header requires 'Credential' parameter."),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAX/20240101/us-east-1/lambda/aws4_request",
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAX/20240101/us-east-1/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00",
            "Credential must have exactly 5 slash-delimited elements",
        ),
        ("AWS4-HMAC-SHA256 oops", "'oops' not a valid key=value pair (missing equal-sign)"),
    ],
)
def test_malformed_header_is_incomplete_signature(
    secured: tuple[Server, dict[str, str]], authorization: str, message_start: str
) -> None:
    """AWS answers an Authorization header it cannot parse 403 IncompleteSignatureException,
    saying what is missing (``Authorization header requires 'Credential' parameter. ...``)."""
    server, _ = secured
    headers = {"Authorization": authorization, "X-Amz-Date": "20240101T000000Z"}
    status, got, body = raw(server, "/2015-03-31/functions/", headers)
    assert (status, got["x-amzn-ErrorType"]) == (403, "IncompleteSignatureException")
    assert body["message"].startswith(message_start), body


def test_keys_made_and_deleted_while_serving_apply_at_once(
    secured: tuple[Server, dict[str, str]], home: Path
) -> None:
    """A key created while the server runs works on the next request; deleted, the next
    request is UnrecognizedClientException."""
    server, _ = secured
    fresh = keys(server.data_dir, "create", "--account-id", ACCOUNT, "--name", "carol")
    client = client_of(server, fresh)
    assert client.list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200
    keys(server.data_dir, "delete", fresh["AccessKeyId"])
    with refused("UnrecognizedClientException", 403):
        client.list_functions()


def test_doctor_says_which_auth_mode(secured: tuple[Server, dict[str, str]]) -> None:
    """``/_lambdad/doctor`` (behind the signature, like the API) reports the auth mode."""
    server, key = secured
    request = signed(server, key, "/_lambdad/doctor")
    status, _, body = send(server, request)
    assert status == 200
    assert body["auth"]["mode"] == "sigv4"


def test_open_mode_takes_any_credentials(server: Server) -> None:
    """Open mode (the default) serves any credentials in the configured account; its doctor
    says ``open``."""
    assert server.client().list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert server.get_json("/_lambdad/doctor")["auth"]["mode"] == "open"


def test_big_signed_body_is_verified(secured: tuple[Server, dict[str, str]]) -> None:
    """A signed request with a large body (a zip of several MB, hashed off the event loop)
    verifies."""
    server, key = secured
    client = client_of(server, key)
    blob = bytes(range(256)) * (3 * 1024 * 1024 // 256)
    created = create_function(
        client, files={"app.py": "def handler(e, c):\n    return 1\n", "blob.bin": blob}
    )
    wait_until(lambda: client.get_function(FunctionName=created["FunctionName"]))


def test_code_location_downloads_without_a_signature(
    secured: tuple[Server, dict[str, str]],
) -> None:
    """GetFunction's ``Code.Location`` downloads with a plain GET, as AWS's presigned S3 URL
    does."""
    server, key = secured
    client = client_of(server, key)
    name = create_function(client)["FunctionName"]
    location = client.get_function(FunctionName=name)["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=30) as download:
        assert download.read()[:2] == b"PK"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": ""},
        {"Authorization": "AWS4-HMAC-SHA256"},
        {"Authorization": "AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature="},
        {
            "Authorization": "AWS4-HMAC-SHA256 Credential=A/B/C/D/aws4_request, "
            "SignedHeaders=host, Signature=zz",
            "X-Amz-Date": "not-a-date",
        },
        {
            "Authorization": "AWS4-HMAC-SHA256 Credential=A/20240101/r/lambda/aws4_request, "
            "SignedHeaders=x-amz-date, Signature=00",
            "X-Amz-Date": "20240101T000000Z",
        },
        {"Authorization": "AWS4-HMAC-SHA256 " + "a=b, " * 1000},
    ],
)
def test_garbage_signatures_get_an_aws_403(
    secured: tuple[Server, dict[str, str]], headers: dict[str, str]
) -> None:
    """A forged or garbled Authorization header is a 403 with an AWS error code, never a 5xx."""
    server, _ = secured
    status, got, body = raw(server, "/2015-03-31/functions/", headers)
    assert status == 403
    assert got["x-amzn-ErrorType"].endswith("Exception")
    assert body["message"]


def test_presigned_query_garbage_gets_an_aws_403(secured: tuple[Server, dict[str, str]]) -> None:
    """A presigned query missing its parts is IncompleteSignatureException."""
    server, _ = secured
    status, got, _ = raw(server, "/2015-03-31/functions/?X-Amz-Algorithm=AWS4-HMAC-SHA256")
    assert (status, got["x-amzn-ErrorType"]) == (403, "IncompleteSignatureException")


def test_a_url_host_does_not_skip_verification(secured: tuple[Server, dict[str, str]]) -> None:
    """A ``Host`` of the function URL form does not make an API request unsigned: the request
    is a function URL request (an unknown url-id: 403), never one the API answers."""
    server, _ = secured
    host = "a" * 32 + ".lambda-url.us-east-1.localhost"
    status, got, body = raw(server, "/2015-03-31/functions/", {"Host": host})
    assert (status, got["x-amzn-ErrorType"]) == (403, "AccessDeniedException")
    assert body == {"Message": None}


def test_oversized_chunked_invoke_is_413_not_a_signature_error(
    secured: tuple[Server, dict[str, str]],
) -> None:
    """A signed Invoke whose chunked body is over 6 MB is refused as without SigV4 (AWS: 413
    RequestEntityTooLargeException), after reading no more than the limit."""
    server, key = secured
    client = client_of(server, key)
    name = create_function(client)["FunctionName"]
    body = b'"' + b"x" * (6 * 1024 * 1024 + 10) + b'"'
    path = f"/2015-03-31/functions/{name}/invocations"
    request = AWSRequest(method="POST", url=server.endpoint + path, data=body)
    credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    headers = dict(request.headers.items())
    conn.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 413
    assert response.getheader("x-amzn-ErrorType") == "RequestEntityTooLargeException"


def test_escaped_paths_and_repeated_query_keys_verify(
    secured: tuple[Server, dict[str, str]],
) -> None:
    """Requests whose path holds an escaped ARN and whose query repeats a key (UntagResource)
    or holds ``$`` verify as AWS verifies them."""
    server, key = secured
    client = client_of(server, key)
    created = create_function(client)
    arn = created["FunctionArn"]
    client.get_function(FunctionName=created["FunctionName"], Qualifier="$LATEST")
    client.tag_resource(Resource=arn, Tags={"a": "1", "b c": "2 3", "d/e": "x=y"})
    client.untag_resource(Resource=arn, TagKeys=["a", "b c"])
    assert client.list_tags(Resource=arn)["Tags"] == {"d/e": "x=y"}
    assert client.list_versions_by_function(FunctionName=arn, MaxItems=5)["Versions"]


def test_keys_created_at_once_are_all_kept(tmp_path: Path) -> None:
    """Several ``lambdad keys create`` at the same time each keep their key (the file is
    rewritten under a lock)."""
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lambdad.cli.main",
                "keys",
                "create",
                "--account-id",
                ACCOUNT,
                "--name",
                f"user{i}",
                "--data-dir",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    made = {json.loads(p.communicate(timeout=60)[0])["AccessKeyId"] for p in processes}
    listed = {k["AccessKeyId"] for k in keys(tmp_path, "list")["AccessKeys"]}
    assert len(made) == 4
    assert listed == made


def test_non_ascii_signature_parts_get_an_aws_403(
    secured: tuple[Server, dict[str, str]],
) -> None:
    """Non-ASCII bytes in the signature, the scope or a signed header are a signature mismatch
    (403), never a 5xx."""
    server, key = secured
    now = datetime.datetime.now(datetime.UTC)
    auth = (
        f"AWS4-HMAC-SHA256 Credential={key['AccessKeyId']}/{now:%Y%m%d}/us-\xe9ast-1/lambda/"
        "aws4_request, SignedHeaders=host;x-amz-date;x-odd, Signature=\xe9\xe9"
    )
    headers = {"Authorization": auth, "X-Amz-Date": f"{now:%Y%m%dT%H%M%SZ}", "X-Odd": "\xff"}
    status, got, _ = raw(server, "/2015-03-31/functions/", headers)
    assert (status, got["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
