"""Wrongly typed, null and malformed members against a real server: 400s, never 500s, and
nothing invalid is stored (regression tests of issue 9's typed wire parsing)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.conftest import ROLE, Server, make_zip, refused, unique

CODE = base64.b64encode(make_zip({"app.py": "def handler(e, c):\n    return e\n"})).decode()


def call(server: Server, method: str, path: str, body: bytes | dict[str, Any] | None = None) -> Any:
    """``(status, JSON body or None)`` of one raw HTTP request; an error body gets the
    ``x-amzn-ErrorType`` header's code as ``"code"``."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(server.endpoint + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        found = json.loads(raw) if raw else {}
        found["code"] = (error.headers.get("x-amzn-ErrorType") or "").split(":")[0]
        return error.code, found


def message(error: dict[str, Any]) -> str:
    """An error body's message (``message`` or ``Message``, by error shape)."""
    return str(error.get("message", error.get("Message")))


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "FunctionName": unique(),
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": CODE},
    }
    body.update(overrides)
    return body


def exists(server: Server, name: str) -> bool:
    status, _ = call(server, "GET", f"/2015-03-31/functions/{name}")
    assert status in (200, 404)
    return status == 200


WRONG_TYPES = [
    pytest.param({"MemorySize": "abc"}, id="memory-string"),
    pytest.param({"Timeout": [1]}, id="timeout-list"),
    pytest.param({"Environment": {"Variables": ["A", "B"]}}, id="variables-list"),
    pytest.param({"Tags": ["a", "b"]}, id="tags-list"),
    pytest.param({"KMSKeyArn": 42}, id="kms-number"),
    pytest.param({"KMSKeyArn": ["arn:aws:kms:us-east-1:123456789012:key/x"]}, id="kms-list"),
    pytest.param({"DeadLetterConfig": 7}, id="dlq-number"),
    pytest.param({"DeadLetterConfig": {"TargetArn": ["x"]}}, id="dlq-target-list"),
    pytest.param({"LoggingConfig": {"LogGroup": 12}}, id="log-group-number"),
    pytest.param({"LoggingConfig": {"LogGroup": ["g"]}}, id="log-group-list"),
    pytest.param({"Publish": "yes"}, id="publish-string"),
]


@pytest.mark.parametrize("overrides", WRONG_TYPES)
def test_create_with_a_wrongly_typed_member_is_400_and_creates_nothing(
    server: Server, overrides: dict[str, Any]
) -> None:
    """AWS answers a member its (Jackson) parser cannot read into the model's type with 400
    InvalidRequestContentException "Could not parse request body into json: ..."; nothing is
    created."""
    body = create_body(**overrides)
    status, error = call(server, "POST", "/2015-03-31/functions", body)
    assert (status, error["code"]) == (400, "InvalidRequestContentException"), error
    assert message(error).startswith("Could not parse request body into json: "), error
    assert not exists(server, body["FunctionName"])


@pytest.mark.parametrize(
    "overrides", [p for p in WRONG_TYPES if p.id not in ("tags-list", "publish-string")]
)
def test_update_with_a_wrongly_typed_member_is_400_and_changes_nothing(
    server: Server, overrides: dict[str, Any]
) -> None:
    """UpdateFunctionConfiguration refuses the same wrongly typed members with a 400 and
    leaves the configuration as it was."""
    body = create_body()
    name = body["FunctionName"]
    assert call(server, "POST", "/2015-03-31/functions", body)[0] == 201
    before = call(server, "GET", f"/2015-03-31/functions/{name}/configuration")[1]
    status, _ = call(server, "PUT", f"/2015-03-31/functions/{name}/configuration", overrides)
    assert status == 400
    after = call(server, "GET", f"/2015-03-31/functions/{name}/configuration")[1]
    assert after == before


def test_wrong_types_through_boto3_are_400(unchecked: Any) -> None:
    """The same refusal reaches an SDK that skips its own checks, as a ClientError of 400."""
    name = unique()
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64decode(CODE)},
    }
    for bad in ({"MemorySize": "abc"}, {"Timeout": [1]}, {"Description": 5}):
        with refused("InvalidRequestContentException", 400):
            unchecked.create_function(**params, **bad)
    with refused("ResourceNotFoundException", 404):
        unchecked.get_function(FunctionName=name)


def test_null_description_is_not_stored_as_none(server: Server) -> None:
    """A JSON null member is "not given" (AWS's parser reads null as absent): a null
    Description creates the default empty one and leaves an existing one unchanged."""
    body = create_body(Description=None)
    name = body["FunctionName"]
    status, created = call(server, "POST", "/2015-03-31/functions", body)
    assert status == 201, created
    assert created["Description"] == ""
    path = f"/2015-03-31/functions/{name}/configuration"
    assert call(server, "PUT", path, {"Description": "kept"})[0] == 200
    status, updated = call(server, "PUT", path, {"Description": None, "Timeout": 5})
    assert status == 200
    assert (updated["Description"], updated["Timeout"]) == ("kept", 5)


def test_null_function_name_creates_nothing(server: Server) -> None:
    """``FunctionName: null`` is a missing required member: AWS's ValidationException
    "Value null at 'functionName' failed to satisfy constraint: Member must not be null"."""
    status, error = call(server, "POST", "/2015-03-31/functions", create_body(FunctionName=None))
    assert (status, error["code"]) == (400, "ValidationException")
    assert message(error) == (
        "1 validation error detected: Value null at 'functionName' failed to satisfy "
        "constraint: Member must not be null"
    )
    assert not exists(server, "None")


@pytest.mark.parametrize(
    "raw",
    [
        b'"Description": "bad \\ud800 text"',
        b'"Environment": {"Variables": {"KEY": "\\udfff"}}',
        b'"Handler": "app.\\ud83d"',
    ],
)
def test_a_lone_surrogate_is_refused_and_nothing_stored(server: Server, raw: bytes) -> None:
    """A string that is not valid Unicode (a lone UTF-16 surrogate escape) cannot be parsed:
    a 4xx, and no function is created."""
    name = unique()
    body = json.dumps(create_body(FunctionName=name)).encode()
    body = body[:-1] + b", " + raw + b"}"
    status, _ = call(server, "POST", "/2015-03-31/functions", body)
    assert 400 <= status < 500
    assert not exists(server, name)


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b"null", b'"text"', b"\xff\xfe\x00", b'{"FunctionName": "x",}'],
)
def test_a_body_that_is_not_a_json_object_is_400(server: Server, body: bytes) -> None:
    """AWS answers a body it cannot read as the request object with 400
    InvalidRequestContentException."""
    status, error = call(server, "POST", "/2015-03-31/functions", body)
    assert (status, error["code"]) == (400, "InvalidRequestContentException"), error
    assert message(error).startswith("Could not parse request body into json: ")


def test_delete_with_an_empty_qualifier_deletes_nothing(server: Server) -> None:
    """``DeleteFunction?Qualifier=`` breaks the model's Qualifier constraints (length 1-128,
    pattern): AWS's ValidationException, and the function and its versions stay."""
    body = create_body(Publish=True)
    name = body["FunctionName"]
    assert call(server, "POST", "/2015-03-31/functions", body)[0] == 201
    status, error = call(server, "DELETE", f"/2015-03-31/functions/{name}?Qualifier=")
    assert (status, error["code"]) == (400, "ValidationException")
    assert message(error).startswith(
        "2 validation errors detected: Value '' at 'qualifier' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
    )
    assert exists(server, name)
    versions = call(server, "GET", f"/2015-03-31/functions/{name}/versions")[1]
    assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "1"]


def test_query_and_label_members_are_checked(server: Server) -> None:
    """Query members are validated too: MaxItems out of range or not a number, and a bad alias
    label, are ValidationExceptions."""
    status, error = call(server, "GET", "/2015-03-31/functions?MaxItems=0")
    assert status == 400
    assert message(error) == (
        "1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    status, error = call(server, "GET", "/2015-03-31/functions?MaxItems=lots")
    assert (status, message(error)) == (
        400,
        "1 validation error detected: Value 'lots' at 'maxItems' failed to satisfy constraint: "
        "Member must be a number",
    )
    status, error = call(server, "GET", "/2015-03-31/functions/fn/aliases/bad%20alias")
    assert status == 400
    assert "at 'name' failed to satisfy constraint" in message(error)


@pytest.mark.parametrize(
    "label", ["%ED%A0%80", "%00", "%FF%FE", "a%0Ab", "x" * 300, "fn:1:2", "%24LATEST"]
)
def test_odd_function_name_labels_are_4xx(server: Server, label: str) -> None:
    """A label outside the model's FunctionName pattern (bytes that are not UTF-8, control
    characters, too long) is a 4xx from every call that takes one, never a 5xx."""
    for method, path in (
        ("GET", f"/2015-03-31/functions/{label}"),
        ("GET", f"/2015-03-31/functions/{label}/configuration"),
        ("DELETE", f"/2015-03-31/functions/{label}"),
        ("POST", f"/2015-03-31/functions/{label}/invocations"),
    ):
        status, _ = call(server, method, path, b"{}" if method == "POST" else None)
        assert 400 <= status < 500, (method, path, status)


def test_a_dotted_name_is_not_found_where_the_model_allows_dots(lam: Any) -> None:
    """GetFunction and Invoke take the model's NamespacedFunctionName (dots allowed): AWS
    answers an unknown dotted name with ResourceNotFoundException, not a ValidationException."""
    with refused("ResourceNotFoundException", 404):
        lam.get_function(FunctionName="no.such.function")
    with refused("ResourceNotFoundException", 404):
        lam.invoke(FunctionName="no.such.function", Payload=b"{}")
    with refused("ValidationException", 400):
        lam.update_function_configuration(FunctionName="no.such.function", Timeout=5)
