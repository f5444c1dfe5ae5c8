"""A storage failure under a running lambdad reaches clients as an AWS-shaped error, never as a
driver's exception (``FileNotFoundError``, ``sqlite3.Error``) or a plain-text 500."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, Server, make_zip, unique


def _delete_code(server: Server, code_sha256: str) -> None:
    """Remove a function's zip (and any unpacked copy) from the code directory, and from the
    database of a PostgreSQL store (where the code directory is only a cache of it)."""
    key = base64.b64decode(code_sha256).hex()
    code = server.data_dir / "code"
    (code / f"{key}.zip").unlink()
    shutil.rmtree(code / key, ignore_errors=True)
    url = server.env.get("LAMBDAD_STORE_URL")
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM blobs WHERE key = %s", (key,))
            conn.execute("DELETE FROM blob_chunks WHERE key = %s", (key,))


def test_a_function_whose_code_went_missing_answers_aws_errors(
    start_server: Callable[..., Server],
) -> None:
    """With its zip deleted from disk behind lambdad's back, invoking the function answers
    Lambda's ServiceException (500, ``Type: Service``, as AWS answers an internal failure),
    its code download answers ResourceNotFoundException (404), and the server stays healthy."""
    server = start_server()
    lam = server.client()
    name = unique()
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})},
    )
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    _delete_code(server, created["CodeSha256"])

    with pytest.raises(ClientError) as raised:
        lam.invoke(FunctionName=name, Payload=b"{}")
    error: Any = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert error["Error"]["Code"] == "ServiceException"
    assert "FileNotFound" not in json.dumps(error)
    assert "No such file" not in json.dumps(error)

    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(location, timeout=30)
    assert missing.value.code == 404
    assert missing.value.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert json.loads(missing.value.read()) == {"Type": "User", "Message": "Code not found"}

    assert server.get_json("/_lambdad/health") == {"status": "ok"}
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    assert "FileNotFoundError" not in server.log()
