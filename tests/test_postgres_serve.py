"""``lambdad serve`` with its metadata in PostgreSQL (``LAMBDAD_STORE_URL``, docs/cluster.md):
the same API end to end through boto3, kept across a restart, shared by a second lambdad; code
and layers uploaded through one lambdad run on another (the blobs live in the same database)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.conftest import (
    IDENTITY,
    ROLE,
    Server,
    assert_environment_gone,
    environment_pids,
    invoke_json,
    launch_server,
    make_zip,
    shutdown,
    unique,
    wait_until,
)
from tests.postgres_server import PostgresServer
from tests.url_client import call_url, make_public

CODE = """
import os

def handler(event, context):
    return {"tag": TAG, "greeting": os.environ.get("GREETING"), "event": event}
"""


WHO = """
def handler(event, context):
    return environment_identity()
"""


def package(tag: str) -> bytes:
    return make_zip({"app.py": f"TAG = {tag!r}\n" + CODE})


def _pair(
    start_server: Callable[..., Server], settings: dict[str, str], closing: list[Any]
) -> tuple[Server, Server, Any, Any]:
    """Two lambdads with ``settings`` (one database) and a Lambda client of each."""
    one, two = start_server(settings), start_server(settings)
    lam_one, lam_two = one.client(), two.client()
    closing.extend([lam_one, lam_two])
    return one, two, lam_one, lam_two


def _create(lam: Any, name: str, code: bytes, **extra: Any) -> None:
    """A Python function ``name`` of ``code`` (``extra``: more CreateFunction members)."""
    lam.create_function(
        **{
            "FunctionName": name,
            "Runtime": "python3.11",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": code},
            **extra,
        }
    )


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """boto3 clients to close when the test ends."""
    clients: list[Any] = []
    yield clients
    for client in clients:
        client.close()


def test_serve_on_postgres_keeps_everything_across_a_restart(
    start_server: Callable[..., Server], postgres: PostgresServer, closing: list[Any]
) -> None:
    """Functions, versions, aliases, configuration and concurrency made through boto3 live in
    PostgreSQL (no SQLite metadata file in the data dir) and are all there after a restart."""
    url = postgres.database()
    first = start_server({"LAMBDAD_STORE_URL": url})
    lam = first.client()
    closing.append(lam)
    name = unique()
    _create(lam, name, package("v1"), Environment={"Variables": {"GREETING": "hi"}}, Publish=True)
    _, body = invoke_json(lam, name, {"n": 1})
    assert body == {"tag": "v1", "greeting": "hi", "event": {"n": 1}}
    lam.update_function_code(FunctionName=name, ZipFile=package("v2"))
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "hello"}}, MemorySize=256
    )
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    before = lam.get_function(FunctionName=name)["Configuration"]
    assert invoke_json(lam, name)[1]["tag"] == "v2"
    assert first.get_json("/_lambdad/doctor")["store"] == {
        "metadata": url,
        "code": f"{url}, cached in {first.data_dir / 'code'}",
    }
    shutdown(first)
    assert not (first.data_dir / "lambdad.db").exists()

    second = start_server({"LAMBDAD_STORE_URL": url}, data_dir=first.data_dir)
    lam = second.client()
    closing.append(lam)
    assert lam.get_function(FunctionName=name)["Configuration"] == before
    listed = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert listed == [name]
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    concurrency = lam.get_function_concurrency(FunctionName=name)
    assert concurrency["ReservedConcurrentExecutions"] == 3
    assert invoke_json(lam, name, {"n": 2})[1] == {
        "tag": "v2",
        "greeting": "hello",
        "event": {"n": 2},
    }
    assert invoke_json(lam, name, Qualifier="live")[1]["tag"] == "v1"
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM docs WHERE tbl = 'versions'").fetchone()
    assert row == (3,)


def test_two_servers_on_one_database_share_the_metadata(
    start_server: Callable[..., Server], postgres: PostgresServer, closing: list[Any]
) -> None:
    """A function created through one lambdad is listed and described by another lambdad on
    the same database, and a delete through the second is seen by the first."""
    url = postgres.database()
    _one, _two, lam_one, lam_two = _pair(start_server, {"LAMBDAD_STORE_URL": url}, closing)
    name = unique()
    _create(lam_one, name, package("v1"))
    assert [f["FunctionName"] for f in lam_two.list_functions()["Functions"]] == [name]
    described = lam_two.get_function_configuration(FunctionName=name)
    assert described["FunctionArn"].endswith(f":function:{name}")
    lam_two.delete_function(FunctionName=name)
    assert lam_one.list_functions()["Functions"] == []


def test_a_change_through_one_server_reaches_the_other_servers_caches(
    start_server: Callable[..., Server], postgres: PostgresServer, closing: list[Any]
) -> None:
    """A configuration update, a reserved concurrency, a recursion setting and a resource
    policy written through one lambdad take effect on another lambdad that had them cached
    (the store's change feed drops the stale entries)."""
    url = postgres.database()
    _one, _two, lam_one, lam_two = _pair(start_server, {"LAMBDAD_STORE_URL": url}, closing)
    name = unique()
    _create(lam_one, name, package("v1"), Environment={"Variables": {"GREETING": "hi"}})
    assert invoke_json(lam_two, name)[1]["greeting"] == "hi"  # now cached by the second
    lam_one.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "hello"}}
    )
    lam_one.get_waiter("function_updated_v2").wait(FunctionName=name)
    wait_until(lambda: invoke_json(lam_two, name)[1]["greeting"] == "hello")

    lam_one.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)

    def throttled() -> bool:
        try:
            invoke_json(lam_two, name)
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "TooManyRequestsException"
        return False

    wait_until(throttled)
    lam_one.delete_function_concurrency(FunctionName=name)
    wait_until(lambda: not throttled())

    recursion = lam_two.get_function_recursion_config(FunctionName=name)["RecursiveLoop"]
    assert recursion == "Terminate"
    lam_one.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    wait_until(
        lambda: lam_two.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Allow"
    )

    def policy_statements() -> int:
        try:
            policy = lam_two.get_policy(FunctionName=name)["Policy"]
        except lam_two.exceptions.ResourceNotFoundException:
            return 0
        return len(json.loads(policy)["Statement"])

    assert policy_statements() == 0
    lam_one.add_permission(
        FunctionName=name,
        StatementId="s1",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
    )
    wait_until(lambda: policy_statements() == 1)


def test_a_function_url_made_through_one_server_is_served_by_the_other(
    start_server: Callable[..., Server], postgres: PostgresServer, closing: list[Any]
) -> None:
    """A function URL created through one lambdad answers on another lambdad of the same
    database; deleted through the first, the other stops serving it."""
    url = postgres.database()
    one = start_server({"LAMBDAD_STORE_URL": url})
    two = start_server({"LAMBDAD_STORE_URL": url})
    lam_one = one.client()
    closing.append(lam_one)
    name = unique()
    _create(lam_one, name, package("v1"), Environment={"Variables": {"GREETING": "hi"}})
    make_public(lam_one, name)
    function_url = lam_one.create_function_url_config(FunctionName=name, AuthType="NONE")[
        "FunctionUrl"
    ]
    wait_until(lambda: call_url(function_url, port=two.port).status == 200)
    assert call_url(function_url, port=two.port).json()["greeting"] == "hi"
    lam_one.delete_function_url_config(FunctionName=name)
    wait_until(lambda: call_url(function_url, port=two.port).status != 200)


def test_a_function_deleted_through_one_server_leaves_no_environment_on_the_other(
    start_server: Callable[..., Server], postgres: PostgresServer, closing: list[Any]
) -> None:
    """A function deleted through one lambdad has its warm environments on another lambdad of
    the same database retired at once (not at the idle timeout), and is not found there."""
    url = postgres.database()
    settings = {"LAMBDAD_STORE_URL": url, "LAMBDAD_KEEP_ALIVE": "100000"}  # no idle reaping
    _one, _two, lam_one, lam_two = _pair(start_server, settings, closing)
    name = unique()
    _create(lam_one, name, make_zip({"app.py": IDENTITY + WHO}))
    identity = invoke_json(lam_two, name)[1]
    assert environment_pids(identity), "warm on the second server"
    lam_one.delete_function(FunctionName=name)
    assert_environment_gone(identity)
    with pytest.raises(lam_two.exceptions.ResourceNotFoundException):
        lam_two.invoke(FunctionName=name)


SNAPPED = """
TEMPLATE = environment_identity()

def handler(event, context):
    return {"template": TEMPLATE, "identity": environment_identity()}
"""


def test_a_version_deleted_through_one_server_leaves_no_template_on_the_other(
    start_server: Callable[..., Server], postgres: PostgresServer, closing: list[Any]
) -> None:
    """A SnapStart version deleted through one lambdad has its template and environments on
    another lambdad of the same database ended at once, as a local delete does; the template
    of the version kept lives on there."""
    url = postgres.database()
    settings = {"LAMBDAD_STORE_URL": url, "LAMBDAD_KEEP_ALIVE": "100000"}  # no idle reaping
    _one, _two, lam_one, lam_two = _pair(start_server, settings, closing)
    name = unique()
    code = make_zip({"app.py": IDENTITY + SNAPPED})
    snap = {"ApplyOn": "PublishedVersions"}
    _create(lam_one, name, code, Runtime="python3.12", SnapStart=snap)
    active = lam_one.get_waiter("published_version_active")
    versions = []
    for tag in ("1", "2"):
        lam_one.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"TAG": tag}}
        )
        lam_one.get_waiter("function_updated_v2").wait(FunctionName=name)
        versions.append(str(lam_one.publish_version(FunctionName=name)["Version"]))
        active.wait(FunctionName=name, Qualifier=versions[-1], WaiterConfig={"Delay": 0.1})
    gone, kept = (invoke_json(lam_two, name, Qualifier=v)[1] for v in versions)
    assert environment_pids(gone["template"]), "the second server made a template of its own"
    lam_one.delete_function(FunctionName=name, Qualifier=versions[0])
    assert_environment_gone(gone["identity"])
    assert_environment_gone(gone["template"])
    assert environment_pids(kept["template"]), "the version kept keeps its template"
    assert invoke_json(lam_two, name, Qualifier=versions[1])[1]["template"] == kept["template"]


LAYERED = """
import layermod

def handler(event, context):
    return {"tag": TAG, "layer": layermod.WORD}
"""


def test_code_and_layers_uploaded_through_one_server_run_on_the_other(
    start_server: Callable[..., Server], postgres: PostgresServer, closing: list[Any]
) -> None:
    """A function's code and a layer uploaded through one lambdad are invoked and downloaded
    through another lambdad of the same database (which never saw the upload): it fetches the
    zips from PostgreSQL into its own data dir once; new code through the first is run by the
    second as soon as the update is done."""
    url = postgres.database()
    one, two, lam_one, lam_two = _pair(start_server, {"LAMBDAD_STORE_URL": url}, closing)
    layer_zip = make_zip({"python/layermod.py": "WORD = 'from the layer'\n"})
    layer = lam_one.publish_layer_version(LayerName=unique(), Content={"ZipFile": layer_zip})
    code = make_zip({"app.py": "TAG = 'v1'\n" + LAYERED})
    name = unique()
    _create(lam_one, name, code, Layers=[layer["LayerVersionArn"]])
    assert not list((two.data_dir / "code").glob("*.zip")), "nothing uploaded to the second"
    assert invoke_json(lam_two, name)[1] == {"tag": "v1", "layer": "from the layer"}
    cached = {p.name for p in (two.data_dir / "code").glob("*.zip")}
    assert cached == {p.name for p in (one.data_dir / "code").glob("*.zip")}
    assert len(cached) == 2

    location = lam_two.get_function(FunctionName=name)["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=30) as download:
        assert download.read() == code
    got = lam_two.get_layer_version_by_arn(Arn=layer["LayerVersionArn"])
    with urllib.request.urlopen(got["Content"]["Location"], timeout=30) as download:
        assert download.read() == layer_zip

    lam_one.update_function_code(
        FunctionName=name, ZipFile=make_zip({"app.py": "TAG = 'v2'\n" + LAYERED})
    )
    lam_one.get_waiter("function_updated_v2").wait(FunctionName=name)
    wait_until(lambda: invoke_json(lam_two, name)[1]["tag"] == "v2")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (3,)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which it may stop and start."""
    server = PostgresServer()
    server.start()
    yield server
    server.close()


def test_two_servers_recover_from_a_postgres_restart(
    own_postgres: PostgresServer, start_server: Callable[..., Server], closing: list[Any]
) -> None:
    """After PostgreSQL restarts under two lambdads, both serve again without a restart of
    their own, and a change through one is again seen by the other (which had the old value
    cached): its change feed reconnected and dropped what it may have missed; new code
    uploaded through one is fetched and run by the other (the code store reconnected too)."""
    url = own_postgres.database()
    _one, _two, lam_one, lam_two = _pair(start_server, {"LAMBDAD_STORE_URL": url}, closing)
    name = unique()
    _create(lam_one, name, package("v1"))
    assert lam_two.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == (
        "Terminate"
    )
    own_postgres.stop()
    own_postgres.start()
    lam_one.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    wait_until(
        lambda: lam_two.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Allow"
    )
    assert [f["FunctionName"] for f in lam_two.list_functions()["Functions"]] == [name]
    lam_one.update_function_code(FunctionName=name, ZipFile=package("v2"))
    lam_one.get_waiter("function_updated_v2").wait(FunctionName=name)
    wait_until(lambda: invoke_json(lam_two, name)[1]["tag"] == "v2")


def test_a_bad_store_url_stops_the_start_with_a_message(tmp_path: Path) -> None:
    """A store URL that is not postgresql:// is refused before anything starts."""
    done = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "serve", "--store-url", "mysql://x/y"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "store_url" in done.stderr


def test_an_unreachable_database_stops_the_start_naming_it(tmp_path: Path) -> None:
    """With no PostgreSQL at the store URL, serve exits 1 saying which database it could not
    reach, without printing the URL's password."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        done = subprocess.run(
            [
                *(sys.executable, "-m", "lambdad.cli.main", "serve", "--port", "0"),
                *("--data-dir", str(tmp_path / "data")),
                *("--store-url", f"postgresql://lambdad:s3cret@127.0.0.1:{port}/meta"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
            env={**os.environ, "LAMBDAD_CONSOLE_PORT": "-1"},
        )
    assert done.returncode == 1, done.stderr
    assert f"127.0.0.1:{port}/meta" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout


def test_a_stop_is_prompt_when_postgres_is_already_down(
    own_postgres: PostgresServer, start_server: Callable[..., Server], closing: list[Any]
) -> None:
    """A lambdad that has invoked functions stops promptly on SIGTERM after its PostgreSQL went
    down: its last writes at close give up after a short bound (and are logged as lost) and the
    change feed stops reconnecting, instead of each waiting out the pool's timeout."""
    url = own_postgres.database()
    server = start_server({"LAMBDAD_STORE_URL": url})
    lam = server.client()
    closing.append(lam)
    name = unique()
    _create(lam, name, package("v1"))
    assert invoke_json(lam, name, {"n": 1})[1]["tag"] == "v1"
    own_postgres.stop()
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: server.process.poll() is not None, timeout=15)
    assert "stopping: not written to" in server.log()


def test_a_functions_credentials_are_honoured_by_every_server_of_the_store(
    tmp_path: Path, postgres: PostgresServer, closing: list[Any]
) -> None:
    """In SigV4 mode, the credentials a function got from one lambdad sign calls another
    lambdad on the same database accepts (AWS: a function's role session is valid at any
    Lambda endpoint of its region): the servers share the secret they derive them with."""
    from tests.test_function_credentials import CALLER, call, session_client
    from tests.test_sigv4 import client_of, keys

    url = postgres.database()
    data_one, data_two = tmp_path / "one" / "data", tmp_path / "two" / "data"
    key = keys(data_one, "create", "--account-id", "111111111111", "--name", "alice")
    data_two.mkdir(parents=True)
    (data_two / "access-keys.json").write_bytes((data_one / "access-keys.json").read_bytes())
    settings = {"LAMBDAD_STORE_URL": url, "LAMBDAD_AUTH": "sigv4"}
    one = launch_server(tmp_path / "one", settings, data_one)
    two = launch_server(tmp_path / "two", settings, data_two)
    try:
        lam = client_of(one, key)
        closing.append(lam)
        _create(lam, "caller", make_zip({"app.py": CALLER}), Timeout=30)
        lam.get_waiter("function_active_v2").wait(FunctionName="caller")
        creds = call(lam, "caller", {"do": "credentials"})
        assert creds["AWS_ACCESS_KEY_ID"].startswith("ASIA")
        on_two = session_client(two, creds)
        closing.append(on_two)
        assert [f["FunctionName"] for f in on_two.list_functions()["Functions"]] == ["caller"]
    finally:
        shutdown(one)
        shutdown(two)
