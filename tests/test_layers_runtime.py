"""Layers at run time: a function sees its layers merged in order, where Lambda puts them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import ROLE, Server, invoke_json, make_zip, unique

APP = """
import os, subprocess
import shared, from_site

def handler(event, context):
    tool = subprocess.run(["tool"], capture_output=True, text=True).stdout.strip()
    return {
        "shared": shared.WHO,
        "site": from_site.WHO,
        "tool": tool,
        "only_first": open(os.path.join(OPT, "data/only-first.txt")).read(),
        "winner": open(os.path.join(OPT, "data/both.txt")).read(),
    }

OPT = os.environ.get("_LAMBDAD_OPT", "/opt")
"""


@pytest.fixture(params=["auto", "process"])
def lambdad(
    request: pytest.FixtureRequest, server: Server, start_server: Callable[..., Server]
) -> Iterator[Any]:
    """The shared lambdad (the Linux sandbox as root), or one on plain processes."""
    srv = server if request.param == "auto" else start_server({"LAMBDAD_SANDBOX": "process"})
    client = srv.client()
    yield client
    client.close()


def _layer(client: Any, files: dict[str, str], modes: dict[str, int] | None = None) -> str:
    published = client.publish_layer_version(
        LayerName=unique("layer"), Content={"ZipFile": make_zip(files, modes)}
    )
    return str(published["LayerVersionArn"])


def test_layers_are_merged_in_order_and_wired_like_lambda(lambdad: Any) -> None:
    """python/ and python/lib/pythonX.Y/site-packages import, bin/ is on PATH, later layers win."""
    first = _layer(
        lambdad,
        {
            "python/shared.py": "WHO = 'first'\n",
            "data/only-first.txt": "from the first layer",
            "data/both.txt": "first",
        },
    )
    second = _layer(
        lambdad,
        {
            "python/shared.py": "WHO = 'second'\n",
            "python/lib/python3.11/site-packages/from_site.py": "WHO = 'site-packages'\n",
            "bin/tool": "#!/bin/sh\necho tool from a layer\n",
            "data/both.txt": "second",
        },
        {"bin/tool": 0o755},
    )
    name = unique()
    lambdad.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": APP})},
        Layers=[first, second],
    )
    response, body = invoke_json(lambdad, name, {})
    assert "FunctionError" not in response, body
    assert body == {
        "shared": "second",
        "site": "site-packages",
        "tool": "tool from a layer",
        "only_first": "from the first layer",
        "winner": "second",
    }


def test_a_layer_can_carry_the_bootstrap(lambdad: Any) -> None:
    """A provided runtime finds its bootstrap in /opt when the code has none, as on Lambda."""
    bootstrap = (
        "#!/bin/sh\n"
        "api=$AWS_LAMBDA_RUNTIME_API\n"
        "while true; do\n"
        "  headers=$(mktemp)\n"
        '  curl -sS -D "$headers" -o /dev/null "http://$api/2018-06-01/runtime/invocation/next"\n'
        "  id=$(grep -i lambda-runtime-aws-request-id \"$headers\" | tr -d '\\r' | cut -d' ' -f2)\n"
        "  curl -sS -o /dev/null -d '\"from the layer bootstrap\"' "
        '"http://$api/2018-06-01/runtime/invocation/$id/response"\n'
        "done\n"
    )
    arn = _layer(lambdad, {"bootstrap": bootstrap}, {"bootstrap": 0o755})
    name = unique()
    lambdad.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="none",
        Code={"ZipFile": make_zip({"README": "code without a bootstrap"})},
        Layers=[arn],
    )
    response, body = invoke_json(lambdad, name, {})
    assert "FunctionError" not in response, body
    assert body == "from the layer bootstrap"
