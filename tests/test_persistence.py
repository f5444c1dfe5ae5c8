"""What lambdad keeps across a restart on the same data dir, and how it stops on SIGTERM."""

from __future__ import annotations

import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import (
    IDENTITY,
    ROLE,
    Server,
    assert_environment_gone,
    environment_pids,
    invoke_json,
    make_zip,
    shutdown,
    unique,
)

CODE = """
import os
TAG = {tag!r}

def handler(event, context):
    greeting = os.environ.get("GREETING")
    return {{"tag": TAG, "greeting": greeting, "identity": environment_identity()}}
"""


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """boto3 clients to close when the test ends (their pooled sockets, not left to the GC)."""
    clients: list[Any] = []
    yield clients
    for client in clients:
        client.close()


def package(tag: str) -> bytes:
    return make_zip({"app.py": IDENTITY + CODE.format(tag=tag)})


def run(client: Any, name: str, **kwargs: Any) -> tuple[str, str, str | None]:
    """(tag, ExecutedVersion, GREETING) of one invoke."""
    response, body = invoke_json(client, name, {}, **kwargs)
    assert "FunctionError" not in response, body
    return body["tag"], response["ExecutedVersion"], body["greeting"]


def test_functions_versions_aliases_and_tags_survive_a_restart(
    start_server: Callable[..., Server], closing: list[Any]
) -> None:
    """After SIGTERM and a restart on the same data dir, everything is there and invocable."""
    first = start_server()
    lam = first.client()
    closing.append(lam)
    name = unique()
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": package("v1")},
        Environment={"Variables": {"GREETING": "hi"}},
        Tags={"team": "blue"},
        Publish=True,
    )
    lam.update_function_code(FunctionName=name, ZipFile=package("v2"), Publish=True)
    lam.update_function_code(FunctionName=name, ZipFile=package("v3"))
    lam.update_function_configuration(FunctionName=name, MemorySize=256, Timeout=20)
    lam.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    lam.tag_resource(
        Resource=lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"],
        Tags={"env": "dev"},
    )
    before = lam.get_function(FunctionName=name)
    alias_before = lam.get_alias(FunctionName=name, Name="live")
    assert run(lam, name) == ("v3", "$LATEST", "hi")
    shutdown(first)

    second = start_server(data_dir=first.data_dir)
    lam = second.client()
    closing.append(lam)
    after = lam.get_function(FunctionName=name)
    assert after["Configuration"] == before["Configuration"]
    assert after["Tags"] == {"team": "blue", "env": "dev"}
    with urllib.request.urlopen(after["Code"]["Location"], timeout=30) as download:
        assert download.read() == package("v3")
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    alias = lam.get_alias(FunctionName=name, Name="live")
    assert {k: v for k, v in alias.items() if k != "ResponseMetadata"} == {
        k: v for k, v in alias_before.items() if k != "ResponseMetadata"
    }
    assert run(lam, name) == ("v3", "$LATEST", "hi")
    assert run(lam, name, Qualifier="1") == ("v1", "1", "hi")
    assert run(lam, name, Qualifier="2") == ("v2", "2", "hi")
    split = Counter(run(lam, f"{name}:live")[1] for _ in range(40))
    assert set(split) == {"1", "2"}, split
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
    assert name in {f["FunctionName"] for f in lam.list_functions()["Functions"]}


def test_sigterm_stops_cleanly_with_runtimes_running(
    start_server: Callable[..., Server], closing: list[Any]
) -> None:
    """SIGTERM with warm environments exits 0 and leaves no process behind."""
    srv = start_server()
    lam = srv.client()
    closing.append(lam)
    identities = []
    for tag in ("a", "b"):
        name = unique()
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": package(tag)},
        )
        identities.append(invoke_json(lam, name, {})[1]["identity"])
    assert len({identity["token"] for identity in identities}) == 2
    assert all(environment_pids(identity) for identity in identities)
    shutdown(srv)
    assert srv.process.returncode == 0
    for identity in identities:
        assert_environment_gone(identity, timeout=0)


@pytest.mark.no_cluster(
    "the warm environment's keep-alive (3 s at the suite's time scale) is shorter than a whole "
    "second cluster's start and stop"
)
def test_a_second_lambdad_leaves_the_first_ones_environments_alone(
    server: Server, lam: Any, start_server: Callable[..., Server]
) -> None:
    """Another lambdad starting on the host (its own data dir) leaves our warm environments be."""
    name = unique()
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": package("warm")},
    )
    before = invoke_json(lam, name, {})[1]["identity"]
    other = start_server()
    shutdown(other)
    assert environment_pids(before), "the first lambdad's environment is still running"
    after = invoke_json(lam, name, {})[1]["identity"]
    assert after["token"] == before["token"], "and still warm"
