"""Accounts: in SigV4 mode each key's account owns what it makes, and no account sees another's
functions, layers, logs or events; data written before accounts belongs to the default account.

AWS keeps every resource inside the account that made it: ARNs name that account, and another
account's function is "not found" to a caller no policy grants it to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdad.store.base import Table
from lambdad.store.sqlite import SqliteStore
from tests.conftest import (
    Server,
    create_function,
    invoke_json,
    launch_server,
    make_zip,
    refused,
    shutdown,
    wait_until,
)
from tests.test_sigv4 import client_of, keys

ALICE = "111111111111"
BOB = "222222222222"
NAME = "same-name"
#: Prints and answers which account's code runs, and the event it got.
CODE = """
import json, os

def handler(event, context):
    print("ran", os.environ["OWNER"], json.dumps(event))
    return {"owner": os.environ["OWNER"], "event": event}
"""


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, Any, dict]]:
    """A lambdad in SigV4 mode with a function ``same-name`` in each of two accounts."""
    home = tmp_path_factory.mktemp("accounts")
    data = home / "data"
    alice_key = keys(data, "create", "--account-id", ALICE, "--name", "alice")
    bob_key = keys(data, "create", "--account-id", BOB, "--name", "bob")
    server = launch_server(home, {"LAMBDAD_AUTH": "sigv4"}, data)
    alice, bob = client_of(server, alice_key), client_of(server, bob_key)
    for client, owner in ((alice, "alice"), (bob, "bob")):
        create_function(client, CODE, name=NAME, env={"OWNER": owner})
    yield server, alice, bob, {"alice": alice_key, "bob": bob_key}
    shutdown(server)


def test_same_name_in_two_accounts_is_two_functions(two: tuple[Server, Any, Any, dict]) -> None:
    """Each account lists and gets only its own function, whose ARN names its account."""
    _, alice, bob, _ = two
    for client, account in ((alice, ALICE), (bob, BOB)):
        listed = client.list_functions()["Functions"]
        assert [f["FunctionArn"] for f in listed] == [
            f"arn:aws:lambda:us-east-1:{account}:function:{NAME}"
        ]
        got = client.get_function(FunctionName=NAME)["Configuration"]
        assert got["FunctionArn"] == f"arn:aws:lambda:us-east-1:{account}:function:{NAME}"


def test_invocations_run_each_account_code_apart(two: tuple[Server, Any, Any, dict]) -> None:
    """An invoke runs the caller's account's function in its own environment, never one of the
    other account's same-named function."""
    _, alice, bob, _ = two
    for _ in range(2):  # warm environments too
        assert invoke_json(alice, NAME, {"n": 1})[1]["owner"] == "alice"
        assert invoke_json(bob, NAME, {"n": 1})[1]["owner"] == "bob"
    # Taking turns, each account's environment stays warm: the pools are apart (one shared
    # pool would retire the other account's environment at every turn).
    for client in (alice, bob, alice, bob):
        response, _ = invoke_json(client, NAME, {"n": 2}, LogType="Tail")
        report = base64.b64decode(response["LogResult"]).decode().splitlines()[-1]
        assert report.startswith("REPORT")
        assert "Init Duration" not in report


def test_another_account_arn_is_access_denied(two: tuple[Server, Any, Any, dict]) -> None:
    """A full ARN of another account's function is AccessDeniedException to the caller's
    control-plane calls and invokes, whether or not the function exists, naming the caller,
    the IAM action and the resource (AWS: "User: ... is not authorized to perform:
    lambda:GetFunctionConfiguration on resource: ... because no resource-based policy allows
    the ... action")."""
    _, alice, _, _ = two
    arn = f"arn:aws:lambda:us-east-1:{BOB}:function:{NAME}"
    with refused("AccessDeniedException", 403) as error:
        alice.get_function(FunctionName=arn)
    message = error["Message"]
    assert message.startswith("User: arn:aws:iam::")
    assert f"lambda:GetFunction on resource: {arn} because no resource-based policy" in message
    with refused("AccessDeniedException", 403) as error:
        alice.get_function_configuration(FunctionName=arn + "-missing:1")
    assert f"on resource: {arn}-missing:1 " in error["Message"]
    with refused("AccessDeniedException", 403) as error:
        alice.delete_function(FunctionName=arn)
    assert "lambda:DeleteFunction" in error["Message"]
    with refused("AccessDeniedException", 403):
        alice.invoke(FunctionName=arn, Payload=b"{}")


def test_deleting_in_one_account_leaves_the_other(two: tuple[Server, Any, Any, dict]) -> None:
    """Deleting a function deletes the caller's account's function only."""
    _, alice, bob, _ = two
    other = "only-once"
    create_function(alice, name=other)
    create_function(bob, name=other)
    alice.delete_function(FunctionName=other)
    assert bob.get_function(FunctionName=other)["Configuration"]["FunctionName"] == other
    with refused("ResourceNotFoundException", 404):
        alice.get_function(FunctionName=other)


def _logs(server: Server, key: dict[str, str], function: str) -> str:
    """``lambdad logs FUNCTION`` as a user with ``key`` in their environment runs it."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "logs", function, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout


def test_logs_and_async_events_stay_in_their_account(
    two: tuple[Server, Any, Any, dict],
) -> None:
    """An async event runs the function of the account that sent it, and ``lambdad logs`` shows
    each account only its own function's log group."""
    server, alice, bob, creds = two
    alice.invoke(FunctionName=NAME, InvocationType="Event", Payload=b'{"async": "from-alice"}')
    bob.invoke(FunctionName=NAME, InvocationType="Event", Payload=b'{"async": "from-bob"}')
    wait_until(lambda: "from-alice" in _logs(server, creds["alice"], NAME), timeout=30)
    wait_until(lambda: "from-bob" in _logs(server, creds["bob"], NAME), timeout=30)
    alice_logs = _logs(server, creds["alice"], NAME)
    bob_logs = _logs(server, creds["bob"], NAME)
    assert "ran alice" in alice_logs
    assert "ran bob" not in alice_logs
    assert "from-bob" not in alice_logs
    assert "ran bob" in bob_logs
    assert "from-alice" not in bob_logs


def test_log_groups_are_per_account(two: tuple[Server, Any, Any, dict]) -> None:
    """Through the CloudWatch Logs API each account sees only its own log groups: the
    same-named function's group of the other account is not found, as on AWS."""
    server, alice, _, creds = two
    alice.invoke(FunctionName=NAME, Payload=b"{}")
    group = f"/aws/lambda/{NAME}"
    alice_logs, bob_logs = (
        boto3.client(
            "logs",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        for key in (creds["alice"], creds["bob"])
    )
    try:
        wait_until(lambda: alice_logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"])
        arn = alice_logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["arn"]
        assert f":{ALICE}:log-group:" in arn
        bob_logs.create_log_group(logGroupName="/bob/only")
        names = [g["logGroupName"] for g in alice_logs.describe_log_groups()["logGroups"]]
        assert "/bob/only" not in names
        bobs = bob_logs.describe_log_groups()["logGroups"]
        assert "/bob/only" in [g["logGroupName"] for g in bobs]
        assert all(f":{BOB}:log-group:" in g["arn"] for g in bobs)
        with pytest.raises(ClientError) as excinfo:
            bob_logs.filter_log_events(logGroupIdentifier=arn[:-2])
        assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        alice_logs.close()
        bob_logs.close()


def test_layers_are_per_account(two: tuple[Server, Any, Any, dict]) -> None:
    """A layer is listed in its own account only; another account's layer version is refused
    with AWS's AccessDeniedException (no layer version permission grants it)."""
    _, alice, bob, _ = two
    layer = alice.publish_layer_version(
        LayerName="shared-name", Content={"ZipFile": make_zip({"python/x.py": "X = 1\n"})}
    )
    assert layer["LayerVersionArn"].startswith(f"arn:aws:lambda:us-east-1:{ALICE}:layer:")
    assert [x["LayerName"] for x in alice.list_layers()["Layers"]] == ["shared-name"]
    assert bob.list_layers()["Layers"] == []
    with refused("AccessDeniedException", 403) as error:
        create_function(bob, Layers=[layer["LayerVersionArn"]])
    assert error["Message"] == (
        f"User: arn:aws:iam::{BOB}:user/bob is not authorized to perform: lambda:GetLayerVersion "
        f"on resource: {layer['LayerVersionArn']} because no resource-based policy allows the "
        "lambda:GetLayerVersion action"
    )
    arn = layer["LayerVersionArn"]
    with refused("AccessDeniedException", 403) as error:
        bob.get_layer_version_by_arn(Arn=arn)
    assert f"lambda:GetLayerVersion on resource: {arn} because" in error["Message"]
    with refused("AccessDeniedException", 403) as error:
        bob.get_layer_version(LayerName=arn.rsplit(":", 1)[0], VersionNumber=layer["Version"])
    assert f"lambda:GetLayerVersion on resource: {arn} because" in error["Message"]


@pytest.mark.no_cluster("it rewrites one process's SQLite file into the layout before accounts")
def test_an_old_data_dir_is_served_as_the_default_account(
    start_server: Callable[..., Server],
) -> None:
    """Rows written before accounts, keyed (region, ...), are moved under the configured
    default account when lambdad opens the data dir: the function is listed and invoked."""
    # The old layout is written into the SQLite file itself (also under ``--store postgres``).
    settings = {"LAMBDAD_ACCOUNT_ID": "333333333333", "LAMBDAD_STORE_URL": ""}
    server = start_server(settings)
    created = create_function(server.client(), CODE, name="old-one", env={"OWNER": "old"})
    assert ":333333333333:" in created["FunctionArn"]
    shutdown(server)
    asyncio.run(_to_old_layout(server.data_dir / "lambdad.db"))
    _queue_an_old_event(server.data_dir / "queue.db", "old-one", b'{"queued": "before"}')
    legacy_log = server.data_dir / "logs" / "us-east-1__aws__lambda__old-one.jsonl"
    row = {"r": "us-east-1", "g": "/aws/lambda/old-one", "s": "s", "t": 1, "m": "legacy line"}
    legacy_log.write_text(json.dumps(row) + "\n")

    again = start_server(settings, data_dir=server.data_dir)
    client = again.client()
    assert [f["FunctionName"] for f in client.list_functions()["Functions"]] == ["old-one"]
    assert invoke_json(client, "old-one", {"x": 1})[1]["owner"] == "old"
    wait_until(lambda: "before" in _open_logs(again, "old-one"), timeout=30)
    assert "legacy line" in _open_logs(again, "old-one")
    shutdown(again)
    assert asyncio.run(_first_keys(server.data_dir / "lambdad.db")) == {"333333333333"}


def _queue_an_old_event(path: Path, function: str, payload: bytes) -> None:
    """An async event as a queue from before accounts holds it (no account column)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE events DROP COLUMN account_id")
        db.execute(
            "INSERT INTO events (id, function_name, qualifier, payload, region, enqueued_at,"
            " attempt, not_before, attributes) VALUES (?, ?, NULL, ?, 'us-east-1', ?, 0, 0, '{}')",
            (str(uuid.uuid4()), function, payload, time.time()),
        )
        db.execute("PRAGMA user_version=1")
        db.commit()


def _open_logs(server: Server, function: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "logs", function, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


async def _to_old_layout(path: Path) -> None:
    """Rewrite every row the way lambdad wrote it before accounts: keys without the account."""
    store = SqliteStore(path)
    await store.open()
    try:
        for table in Table:
            for key, doc in await store.scan(table):
                await store.delete(table, key)
                await store.put(table, key[1:], doc)
        rows = await store.scan(Table.FUNCTIONS)
        assert rows
        assert all(key[0] == "us-east-1" for key, _ in rows)
    finally:
        await store.close()


async def _first_keys(path: Path) -> set[str]:
    store = SqliteStore(path)
    await store.open()
    try:
        return {key[0] for table in Table for key, _ in await store.scan(table)}
    finally:
        await store.close()


def test_doctor_names_the_mode(two: tuple[Server, Any, Any, dict]) -> None:
    """``lambdad doctor`` says which auth mode is on."""
    server, _, _, creds = two
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": creds["alice"]["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["alice"]["SecretAccessKey"],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    done = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "doctor", "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "mode: sigv4" in done.stdout


def test_aws_cli_with_a_key_sees_its_account(two: tuple[Server, Any, Any, dict]) -> None:
    """``aws lambda list-functions`` with bob's key lists bob's function, by bob's ARN; with a
    key lambdad does not know, the CLI reports AWS's UnrecognizedClientException."""
    server, _, _, creds = two

    def aws(key_id: str, secret: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        argv = ["aws", "lambda", "list-functions", "--endpoint-url", server.endpoint]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    done = aws(creds["bob"]["AccessKeyId"], creds["bob"]["SecretAccessKey"])
    assert done.returncode == 0, done.stderr
    arns = [f["FunctionArn"] for f in json.loads(done.stdout)["Functions"]]
    assert f"arn:aws:lambda:us-east-1:{BOB}:function:{NAME}" in arns
    assert all(f":{BOB}:" in arn for arn in arns)
    refused_run = aws("AKIANOTAKEYATALL0000", "x" * 40)
    assert refused_run.returncode != 0
    assert "UnrecognizedClientException" in refused_run.stderr
