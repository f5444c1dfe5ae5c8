"""Model-driven robustness of the EventBridge rules API (JSON 1.1, ``X-Amz-Target``).

The JSON 1.1 twin of ``tests/test_robustness.py``: for every ``AWSEvents.*`` target lambdad
serves, a valid request is varied one body member at a time (to depth 3: wrong JSON type,
null, empty, oversized, out of range, control characters, lone surrogates, unknown members,
enum misses) with the mutations of ``tests/wire_model.py``, and raw malformations are sent
(non-JSON, truncated, array and string bodies, a huge declared ``Content-Length``). Every
answer must come in time, be below 500, carry ``x-amzn-RequestId`` and, for an error, be JSON
1.1's shape (``__type`` and ``message``); a request the model forbids must not be accepted.
Afterwards every rule and target read back must satisfy the model's output shapes, and the
server log must hold no traceback.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import msgspec
import pytest
from botocore.model import ServiceModel

from lambdad.api import events_api  # noqa: F401  (registers the AWSEvents.* targets)
from lambdad.api.target_front import targets
from tests import wire_model
from tests.conftest import Server
from tests.test_robustness import SETTINGS, Answer, RawClient
from tests.wire_model import HttpRequest

ARN = "arn:aws:lambda:us-east-1:000000000000:function:robust-target"
RULE = "robust-rule"  # exists, with a target: reads, targets, tags
RULE_ARN = f"arn:aws:events:us-east-1:000000000000:rule/{RULE}"

#: A valid request of each operation (members as in the model).
BASE: dict[str, dict[str, Any]] = {
    "PutRule": {
        "Name": "robust-put",
        "ScheduleExpression": "rate(5 minutes)",
        "State": "ENABLED",
        "Description": "d",
        "RoleArn": "arn:aws:iam::000000000000:role/r",
        "Tags": [{"Key": "k", "Value": "v"}],
        "EventBusName": "default",
    },
    "DescribeRule": {"Name": RULE, "EventBusName": "default"},
    "EnableRule": {"Name": RULE},
    "DisableRule": {"Name": "robust-put"},
    "DeleteRule": {"Name": "robust-never", "Force": False},
    "ListRules": {"NamePrefix": "robust", "Limit": 10},
    "PutTargets": {
        "Rule": RULE,
        "Targets": [
            {
                "Id": "t1",
                "Arn": ARN,
                "Input": '{"a": 1}',
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 600},
                "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:000000000000:dlq"},
            }
        ],
    },
    "RemoveTargets": {"Rule": RULE, "Ids": ["never"]},
    "ListTargetsByRule": {"Rule": RULE, "Limit": 5},
    "TagResource": {"ResourceARN": RULE_ARN, "Tags": [{"Key": "k", "Value": "v"}]},
    "UntagResource": {"ResourceARN": RULE_ARN, "TagKeys": ["never"]},
    "ListTagsForResource": {"ResourceARN": RULE_ARN},
}


def model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("events")


def build(name: str, values: dict[str, Any]) -> HttpRequest:
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AWSEvents.{name}",
    }
    return HttpRequest("POST", "/", headers, wire_model.dump_json(values))


def mutations(name: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(what changed, the request's values, whether the model forbids them)."""
    shape = model().operation_model(name).input_shape
    base = BASE[name]

    def judged(label: str, values: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
        return label, values, bool(wire_model.problems(shape, values, name))

    yield judged("unknown member", {**base, "NoSuchMember": "x"})
    for member, member_shape in shape.members.items():
        yield from _member(member_shape, [member], base, judged, 3)


def _member(
    shape: Any,
    path: list[str | int],
    base: dict[str, Any],
    judged: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any], bool]],
    depth: int,
) -> Iterator[tuple[str, dict[str, Any], bool]]:
    label = ".".join(str(p) for p in path)
    for kind, value in wire_model._body_values(shape):
        yield judged(f"{label}: {kind}", wire_model._set(base, path, value))
    if depth <= 1:
        return
    current = wire_model._value_at(base, path)
    if shape.type_name == "structure":
        seeded = base if current else wire_model._set(base, path, wire_model._example(shape))
        for member, member_shape in shape.members.items():
            yield from _member(member_shape, [*path, member], seeded, judged, depth - 1)
    elif shape.type_name == "list":
        if not current:
            seeded = wire_model._set(base, path, [wire_model._example(shape.member)])
        else:
            seeded = base
        yield from _member(shape.member, [*path, 0], seeded, judged, depth - 1)


def check(answer: Answer, what: str, invalid: bool) -> list[str]:
    if answer.status is None:
        return [f"{what}: {answer.problem}"]
    if answer.status >= 500:
        return [f"{what}: 5xx {answer.body[:300]!r}"]
    if "x-amzn-requestid" not in answer.headers:
        return [f"{what}: no request id"]
    if answer.status >= 400:
        try:
            document = json.loads(answer.body)
        except ValueError:
            return [f"{what}: not JSON {answer.body[:200]!r}"]
        if not isinstance(document, dict) or not {"__type", "message"} <= set(document):
            return [f"{what}: not JSON 1.1's error shape {answer.body[:200]!r}"]
    elif invalid:
        return [f"{what}: accepted invalid ({answer.status})"]
    return []


@pytest.fixture
def robust(start_server: Callable[..., Server]) -> Server:
    server = start_server(SETTINGS)
    client = RawClient(server.port)
    for name, values in [
        ("PutRule", {"Name": RULE, "ScheduleExpression": "rate(1 hour)"}),
        ("PutTargets", {"Rule": RULE, "Targets": [{"Id": "keep", "Arn": ARN}]}),
    ]:
        answer = client.send(build(name, values))
        assert answer.status == 200, answer
    client.close()
    return server


def test_every_target_is_covered() -> None:
    """Every AWSEvents.* target lambdad serves has a valid base request here."""
    served = {op for key, (_, op, _) in targets().items() if key.startswith("AWSEvents.")}
    assert served == set(BASE)


def test_every_struct_field_is_a_member_of_its_operation() -> None:
    """Each target's request Struct names only members of its operation's input shape, nested
    Structs (Target, Tag, RetryPolicy, DeadLetterConfig) included."""
    for service, name, kind in targets().values():
        shape = botocore.session.get_session().get_service_model(service)
        _fields_within(kind, shape.operation_model(name).input_shape, name)


def _fields_within(struct: Any, shape: Any, where: str) -> None:
    for field in msgspec.structs.fields(struct):
        assert field.encode_name in shape.members, (where, field.encode_name)
        member = shape.members[field.encode_name]
        union = typing.get_origin(field.type) in (typing.Union, types.UnionType)
        for arg in typing.get_args(field.type) if union else (field.type,):
            if typing.get_origin(arg) is list:
                (item,) = typing.get_args(arg)
                if _is_struct(item):
                    _fields_within(item, member.member, f"{where}.{field.encode_name}[]")
            elif _is_struct(arg):
                _fields_within(arg, member, f"{where}.{field.encode_name}")


def _is_struct(kind: Any) -> bool:
    return (
        typing.get_origin(kind) is None
        and isinstance(kind, type)
        and (issubclass(kind, msgspec.Struct))
    )


def test_mutations_get_timely_json11_answers(robust: Server) -> None:
    """Each mutated or malformed request of each operation gets a timely, non-5xx answer in
    JSON 1.1's shape, a request the model forbids is refused, and what is stored afterwards
    satisfies the model."""
    client = RawClient(robust.port)
    findings: list[str] = []
    for name in BASE:
        answer = client.send(build(name, BASE[name]))
        if answer.status != 200:
            findings.append(f"{name} valid request refused: {answer.status} {answer.body!r}")
        for what, values, invalid in mutations(name):
            findings += check(client.send(build(name, values)), f"{name} {what}", invalid)
        for what, body in [
            ("not JSON", b"{nope"),
            ("truncated", wire_model.dump_json(BASE[name])[:-1]),
            ("array", b"[]"),
            ("string", b'"x"'),
            ("lone surrogate", b'{"Name": "\\ud800"}'),
            ("empty", b""),
        ]:
            request = build(name, {})
            request = HttpRequest(request.method, request.target, request.headers, body)
            findings += check(client.send(request), f"{name} {what}", what != "empty")
        head = (
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AWSEvents.{name}\r\n"
            "Content-Length: 1000000000000\r\n\r\n{"
        ).encode()
        huge = client.exchange(head, "POST")
        if huge.status != 413:
            findings.append(f"{name} huge Content-Length: {huge.status} {huge.body[:200]!r}")
        client.close()
    findings += read_back(client)
    log = robust.log()
    assert "Traceback" not in log, log[-3000:]
    assert "unhandled error" not in log, log[-3000:]
    assert not findings, "\n".join(findings[:40])


def read_back(client: RawClient) -> list[str]:
    """Every rule and target lambdad answers satisfies the model's output shapes."""
    service = model()
    found: list[str] = []

    def call(name: str, values: dict[str, Any]) -> Any:
        answer = client.send(build(name, values))
        assert answer.status == 200, (name, values, answer)
        document = json.loads(answer.body)
        found.extend(
            f"{name} answer: {p}"
            for p in wire_model.problems(service.operation_model(name).output_shape, document)
        )
        return document

    token: dict[str, str] = {}
    while True:
        page = call("ListRules", token)
        for rule in page["Rules"]:
            call("DescribeRule", {"Name": rule["Name"]})
            call("ListTargetsByRule", {"Rule": rule["Name"]})
            call("ListTagsForResource", {"ResourceARN": rule["Arn"]})
        if "NextToken" not in page:
            return found
        token = {"NextToken": page["NextToken"]}
