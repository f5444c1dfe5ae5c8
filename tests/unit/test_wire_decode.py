"""Unit tests of the model-driven request decoder in ``lambdad.api.wire``."""

from __future__ import annotations

import inspect
import json
from typing import Any

import msgspec
import pytest
from multidict import CIMultiDict, MultiDict

from lambdad.api import (
    durable_api,
    durable_callbacks_api,
    event_config_api,
    lambda_api,
    layers_api,
    mappings_api,
    policy_api,
    provisioned_api,
    runtime_management_api,
    stream_api,
    urls_api,
)
from lambdad.api.wire import headers, values
from lambdad.api.wire.decode import DISPATCHING, HANDLED, decode_values, routed_operations
from lambdad.api.wire.model import operation
from lambdad.control import requests
from lambdad.errors import (
    InvalidParameterValueException,
    InvalidRequestContentException,
    LambdaError,
    ValidationException,
)
from lambdad.invoke.service import InvocationType

ROLE = "arn:aws:iam::123456789012:role/lambda"
CREATE = {"FunctionName": "fn", "Role": ROLE, "Code": {"ZipFile": "UEs="}}
PARSE = "Could not parse request body into json: Could not parse payload into json: "


def decoded(
    name: str,
    body: Any = None,
    *,
    labels: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    header: dict[str, str] | None = None,
) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return decode_values(
        operation(name), labels or {}, MultiDict(query or {}), CIMultiDict(header or {}), raw
    )


def refused(kind: type[LambdaError], name: str, body: Any = None, **where: Any) -> str:
    with pytest.raises(kind) as info:
        decoded(name, body, **where)
    assert type(info.value) is kind
    return info.value.message


# ---------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("member", "value", "detail"),
    [
        (
            "MemorySize",
            "abc",
            'Cannot deserialize value of type `java.lang.Integer` from String "abc"',
        ),
        ("Timeout", [1], "Cannot deserialize value of type `java.lang.Integer` from Array value"),
        ("Timeout", 1.5, "from Floating-point value"),
        ("Timeout", True, "from Boolean value"),
        ("Timeout", 2**31, "Numeric value (2147483648) out of range of int"),
        ("Tags", ["a"], "Cannot deserialize value of type `java.util.HashMap` from Array value"),
        ("Environment", {"Variables": ["a"]}, '["Environment"]["Variables"]'),
        ("KMSKeyArn", 5, "Cannot deserialize value of type `java.lang.String` from Integer value"),
        ("DeadLetterConfig", [1], "`DeadLetterConfig` from Array value"),
        ("LoggingConfig", {"LogGroup": []}, '["LoggingConfig"]["LogGroup"]'),
        ("Publish", "yes", "`java.lang.Boolean`"),
        ("Code", {"ZipFile": "***"}, "broken Base64 encoding"),
    ],
)
def test_wrong_json_types_are_invalid_request_content(member: str, value: Any, detail: str) -> None:
    """A member of the wrong JSON type is AWS's InvalidRequestContentException, Jackson-worded."""
    message = refused(InvalidRequestContentException, "CreateFunction", {**CREATE, member: value})
    assert message.startswith(PARSE)
    assert detail in message


@pytest.mark.parametrize(
    "body",
    [b"{", b"[1]", b'"text"', b"not json", b'{"FunctionName": "\\ud800"}', b"\xff\xfe"],
)
def test_bodies_that_are_not_json_objects_are_refused(body: bytes) -> None:
    """Malformed JSON, a non-object body and lone surrogates are InvalidRequestContent."""
    assert refused(InvalidRequestContentException, "CreateFunction", body).startswith(PARSE)


def test_null_means_not_given_and_unknown_members_are_ignored() -> None:
    """JSON null drops a member (as AWS does), unknown members are ignored, blobs are decoded."""
    found = decoded("CreateFunction", {**CREATE, "Description": None, "Bogus": [1]})
    assert found == {"FunctionName": "fn", "Role": ROLE, "Code": {"ZipFile": b"PK"}}
    request = msgspec.convert(found, requests.CreateFunctionRequest)
    assert request.description is None
    assert request.code.zip_file == b"PK"


def test_a_null_required_member_is_a_validation_error() -> None:
    """``FunctionName: null`` is "Member must not be null", as a missing one is."""
    message = refused(ValidationException, "CreateFunction", {**CREATE, "FunctionName": None})
    assert message == (
        "1 validation error detected: Value null at 'functionName' failed to satisfy "
        "constraint: Member must not be null"
    )


# ---------------------------------------------------------------------------- constraints


def test_every_broken_constraint_is_listed_with_aws_paths() -> None:
    """Clauses use lowerCamel paths, nested with dots; lists and maps of scalars as a whole."""
    body = {
        **CREATE,
        "MemorySize": 64,
        "Environment": {"Variables": {"_HANDLER": "secret"}},
        "Architectures": ["sparc"],
        "EphemeralStorage": {},
    }
    message = refused(ValidationException, "CreateFunction", body)
    assert message.startswith("4 validation errors detected: ")
    clauses = message.removeprefix("4 validation errors detected: ").split("; ")
    assert clauses == [
        "Value '64' at 'memorySize' failed to satisfy constraint: Member must have value "
        "greater than or equal to 128",
        "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy "
        "constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
        "Value '[sparc]' at 'architectures' failed to satisfy constraint: Member must satisfy "
        "constraint: [Member must satisfy enum value set: [x86_64, arm64], Member must not be "
        "null]",
        "Value null at 'ephemeralStorage.size' failed to satisfy constraint: Member must not be "
        "null",
    ]
    assert "secret" not in message


@pytest.mark.parametrize(
    ("body", "clause"),
    [
        (
            {"Handler": ""},
            "Value '' at 'handler' failed to satisfy constraint: Member must "
            "satisfy regular expression pattern: [^\\s]+",
        ),
        (
            {"Handler": "h" * 129},
            "at 'handler' failed to satisfy constraint: Member must have "
            "length less than or equal to 128",
        ),
        ({"Description": "d" * 257}, "Member must have length less than or equal to 256"),
        (
            {"Role": "my-role"},
            "Value 'my-role' at 'role' failed to satisfy constraint: Member "
            "must satisfy regular expression pattern: "
            "arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        ),
        (
            {"Architectures": ["x86_64", "arm64"]},
            "Value '[x86_64, arm64]' at 'architectures' "
            "failed to satisfy constraint: Member must have length less than or equal to 1",
        ),
        (
            {"LoggingConfig": {"LogFormat": "XML"}},
            "Value 'XML' at 'loggingConfig.logFormat' "
            "failed to satisfy constraint: Member must satisfy enum value set: [JSON, Text]",
        ),
        ({"LoggingConfig": {"LogGroup": "bad group"}}, "at 'loggingConfig.logGroup'"),
        ({"KMSKeyArn": "key"}, "at 'kMSKeyArn' failed to satisfy constraint"),
        ({"PackageType": "Jar"}, "Member must satisfy enum value set: [Zip, Image]"),
        ({"MemorySize": 40000}, "Member must have value less than or equal to 32768"),
    ],
)
def test_model_constraints_of_create_function(body: dict[str, Any], clause: str) -> None:
    """Each model constraint of CreateFunction is one ValidationException clause."""
    message = refused(ValidationException, "CreateFunction", {**CREATE, **body})
    assert message.startswith("1 validation error detected: ")
    assert clause in message


def test_unknown_runtime_is_left_to_the_service() -> None:
    """``Runtime`` is type-checked only: the service words unknown and deprecated runtimes."""
    assert decoded("CreateFunction", {**CREATE, "Runtime": "python9.9"})["Runtime"] == "python9.9"


def test_current_model_enums_are_quoted() -> None:
    """Enum messages quote the installed model's values (the 2025-26 runtimes included)."""
    message = refused(
        ValidationException,
        "PublishLayerVersion",
        {"Content": {}, "CompatibleRuntimes": ["x"]},
        labels={"LayerName": "layer"},
    )
    for runtime in ("nodejs24.x", "python3.15", "nodejs26.x"):
        assert runtime in message


def test_alias_rules_come_from_the_model() -> None:
    """An all-digit alias name, a bad version and out-of-range weights are all reported."""
    body = {
        "Name": "123",
        "FunctionVersion": "x",
        "RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}},
    }
    message = refused(ValidationException, "CreateAlias", body, labels={"FunctionName": "fn"})
    assert message.startswith("3 validation errors detected: ")
    assert (
        "Value '123' at 'name' failed to satisfy constraint: Member must satisfy regular "
        "expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
    ) in message
    assert (
        "Value '{2=1.5}' at 'routingConfig.additionalVersionWeights' failed to satisfy "
        "constraint: Map value must satisfy constraint: [Member must have value less than or "
        "equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be "
        "null]"
    ) in message


def test_query_members_are_typed_and_checked() -> None:
    """An empty Qualifier breaks the model's length and pattern; MaxItems must be a number in
    range; a list query member collects every value."""
    message = refused(
        ValidationException,
        "DeleteFunction",
        labels={"FunctionName": "fn"},
        query={"Qualifier": ""},
    )
    assert message.startswith("2 validation errors detected: Value '' at 'qualifier' failed")
    assert "Member must have length greater than or equal to 1" in message
    assert refused(ValidationException, "ListFunctions", query={"MaxItems": "abc"}).endswith(
        "Value 'abc' at 'maxItems' failed to satisfy constraint: Member must be a number"
    )
    assert "less than or equal to 50" in refused(
        ValidationException, "ListLayers", query={"MaxItems": "51"}
    )
    assert decoded("ListFunctions", query={"MaxItems": "7"}) == {"MaxItems": 7}
    for odd in ("1_0", " 7", "+7", "9" * 30):
        assert refused(ValidationException, "ListFunctions", query={"MaxItems": odd}).endswith(
            "Member must be a number"
        )
    layer = {"LayerName": "layer", "VersionNumber": "9" * 19}
    assert refused(ValidationException, "GetLayerVersion", labels=layer).endswith(
        "Member must be a number"
    )
    found = decoded(
        "UntagResource",
        labels={"Resource": "arn:aws:lambda:us-east-1:123456789012:function:fn"},
        query=MultiDict([("tagKeys", "a"), ("tagKeys", "b")]),  # type: ignore[arg-type]
    )
    assert found["TagKeys"] == ["a", "b"]


def test_non_ascii_tag_keys_match_the_unicode_pattern() -> None:
    """The model's ``\\p{L}`` classes accept letters of any script and refuse control bytes."""
    arn = {"Resource": "arn:aws:lambda:us-east-1:123456789012:function:fn"}
    assert decoded("TagResource", {"Tags": {"clé ü": "v"}}, labels=arn)["Tags"] == {"clé ü": "v"}
    assert "Map keys must satisfy constraint" in refused(
        ValidationException, "TagResource", {"Tags": {"a\nb": "v"}}, labels=arn
    )


def test_lengths_count_utf16_units_as_java_does() -> None:
    """A character outside the BMP counts twice towards a length limit."""
    assert values.java_length("😀") == 2
    assert values.java_length("abc") == 3


# ---------------------------------------------------------------------------- headers


def test_invoke_headers() -> None:
    """The invocation type keeps AWS's InvalidParameterValue wording; the client context is
    base64 JSON re-serialised compactly; LogType is checked against the model."""
    assert headers.invocation_type(None) is InvocationType.REQUEST_RESPONSE
    with pytest.raises(InvalidParameterValueException):
        headers.invocation_type("Sometimes")
    assert headers.client_context("eyJhIjogWzEsIDJdfQ==") == '{"a":[1,2]}'
    with pytest.raises(InvalidRequestContentException):
        headers.client_context("not base64!")
    message = refused(
        ValidationException,
        "Invoke",
        labels={"FunctionName": "fn"},
        header={"X-Amz-Log-Type": "All"},
    )
    assert "at 'logType' failed to satisfy constraint: Member must satisfy enum value set" in (
        message
    )


# ---------------------------------------------------------------------------- coherence


def _modules() -> list[Any]:
    return [
        lambda_api,
        layers_api,
        event_config_api,
        provisioned_api,
        runtime_management_api,
        policy_api,
        urls_api,
        stream_api,
        mappings_api,
        durable_api,
        durable_callbacks_api,
    ]


def test_every_struct_field_is_a_member_of_its_operation() -> None:
    """Each handler's request Struct names only members of its operation's input shape."""
    checked = 0
    for handler, op in HANDLED.items():
        kind = inspect.signature(inspect.unwrap(handler), eval_str=True).parameters["req"]
        struct = kind.annotation
        name, shape = op.name, op.shape
        members = set(shape.members) if shape is not None else set()
        fields = {f.encode_name for f in msgspec.structs.fields(struct)}
        assert fields <= members, (name, fields - members)
        checked += 1
    assert checked >= 30


def test_every_route_decodes_its_operation() -> None:
    """Every route of the Lambda API decodes its request, through ``handles`` or (a path of
    several operations) by calling ``decode`` for each operation it names."""
    for module in _modules():
        for route in module.routes:
            handler = route.handler  # type: ignore[attr-defined]
            if handler in HANDLED:
                continue
            source = inspect.getsource(handler)
            assert "await decode(" in source, handler
            for name in DISPATCHING[handler]:
                assert f'"{name}"' in source, name
    assert (
        len(routed_operations()) == 74
    )  # 45, InvokeWithResponseStream, five URL config calls, six policy calls, five mapping
    # calls, nine durable execution calls, three durable callback calls
    assert {"CreateFunction", "Invoke", "ListLayers", "GetLayerVersionByArn"} <= (
        routed_operations()
    )


def _variants(shape: Any, depth: int = 0) -> list[Any]:
    """Valid-looking and broken values for ``shape``: every JSON type, nulls, edges."""
    broken: list[Any] = [None, "", "x" * 300, "\x00\n", -1, 0, 2**40, 1.5, True, [], [None], {}]
    if depth > 2:
        return broken
    kind = shape.type_name
    if kind == "structure":
        return [*broken, dict.fromkeys(shape.members)] + [
            {name: value}
            for name, member in shape.members.items()
            for value in _variants(member, depth + 1)[:6]
        ]
    if kind == "list":
        return [*broken, *([v] for v in _variants(shape.member, depth + 1)[:6])]
    if kind == "map":
        return [*broken, {"k": None}, {"": "v"}, {"k": {"a": 1}}, {"1": 0.5}]
    return broken


def test_no_input_makes_the_decoder_fail_other_than_as_aws_does() -> None:
    """For every routed operation and member, any value is either refused with an AWS error or
    converted into the handler's Struct: never an unexpected exception (a 500)."""
    structs = {
        op: inspect.signature(inspect.unwrap(h), eval_str=True).parameters["req"].annotation
        for h, op in HANDLED.items()
    }
    tried = 0
    for op, struct in structs.items():
        base = {m.wire_name: "fn" for m in op.members if m.location == "uri"}
        for member in op.members:
            for value in _variants(member.shape):
                body: dict[str, Any] = {}
                labels, query = dict(base), {}
                if member.location == "body":
                    body[member.name] = value
                elif member.location == "uri":
                    labels[member.wire_name] = str(value)
                elif member.location == "querystring":
                    query[member.wire_name] = str(value)
                try:
                    found = decode_values(
                        op, labels, MultiDict(query), CIMultiDict(), json.dumps(body).encode()
                    )
                except LambdaError:
                    continue
                msgspec.convert(found, struct)
                tried += 1
    assert tried > 100


def test_a_long_blob_decodes_in_slices_as_it_would_at_once() -> None:
    """A blob longer than one decoding slice gives the same bytes as one strict decode, and
    broken base64 anywhere in it (a bad character, padding in the middle, a short tail) is
    refused as it would be in a short blob."""
    import base64
    import binascii
    import random

    from lambdad.api.wire import values

    text = base64.b64encode(random.Random(7).randbytes(3_000_001)).decode()
    assert len(text) > values._B64_SLICE
    assert values._b64decode(text) == base64.b64decode(text)
    middle = values._B64_SLICE
    for broken in (
        text[:-1],
        text[:2_000_000] + "!" + text[2_000_001:],
        text[:middle] + "==" + text[middle + 2 :],
    ):
        with pytest.raises((binascii.Error, ValueError)):
            values._b64decode(broken)
