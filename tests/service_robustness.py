"""The harness of the model-driven robustness tests of the services lambdad serves beside
Lambda's own API (``tests/test_event_rules_robustness.py``, ``test_logs_robustness.py``,
``test_cloudwatch_robustness.py``; docs/robustness-test.md).

A valid request of an operation is varied one body member at a time (to depth 3: wrong type,
null, empty, oversized, out of range, control characters, lone surrogates, unknown members,
enum misses) with the values of ``tests/wire_model.py``; raw malformed bodies and a huge
declared ``Content-Length`` are sent. ``check`` turns an answer into findings: none when it
came in time, below 500, with ``x-amzn-RequestId``, in the service's error shape when it is an
error, and refused when the model forbids the request. ``JsonTargets`` runs the whole sweep for
a JSON service routed by ``X-Amz-Target`` (EventBridge, CloudWatch Logs).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import msgspec
from botocore.model import ServiceModel, Shape

from lambdad.api.target_front import targets
from tests import wire_model
from tests.test_robustness import Answer, RawClient
from tests.wire_model import HttpRequest

#: (what changed, the request's values, whether the model forbids them).
Mutation = tuple[str, dict[str, Any], bool]


def body_mutations(
    shape: Shape, name: str, base: dict[str, Any], depth: int = 3
) -> Iterator[Mutation]:
    """``base`` (a request of operation ``name`` with input ``shape``) with an unknown member,
    then each member, to ``depth``, set to each of ``wire_model``'s values."""

    def judged(label: str, values: dict[str, Any]) -> Mutation:
        return label, values, bool(wire_model.problems(shape, values, name))

    yield judged("unknown member", {**base, "NoSuchMember": "x"})
    for member, member_shape in shape.members.items():
        yield from _member(member_shape, [member], base, judged, depth)


def _member(
    shape: Any,
    path: list[str | int],
    base: dict[str, Any],
    judged: Callable[[str, dict[str, Any]], Mutation],
    depth: int,
) -> Iterator[Mutation]:
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


@dataclasses.dataclass(frozen=True, slots=True)
class Encoding:
    """How a protocol's answers read: its name in findings, its decoder, and what the decoder
    raises on bytes that are not in it."""

    name: str
    decode: Callable[[bytes], Any]
    fails: tuple[type[Exception], ...]


JSON = Encoding("JSON", json.loads, (ValueError,))


def check(
    answer: Answer,
    what: str,
    invalid: bool,
    encoding: Encoding = JSON,
    error_shape: str = "JSON 1.1's",
) -> list[str]:
    """The findings of ``answer`` to the request ``what`` (``invalid``: the model forbids it):
    an error must decode and carry ``__type`` and ``message``."""
    if answer.status is None:
        return [f"{what}: {answer.problem}"]
    if answer.status >= 500:
        return [f"{what}: 5xx {answer.body[:300]!r}"]
    if "x-amzn-requestid" not in answer.headers:
        return [f"{what}: no request id"]
    if answer.status >= 400:
        try:
            document = encoding.decode(answer.body)
        except encoding.fails:
            return [f"{what}: not {encoding.name} {answer.body[:200]!r}"]
        if not isinstance(document, dict) or not {"__type", "message"} <= set(document):
            return [f"{what}: not {error_shape} error shape {answer.body[:200]!r}"]
    elif invalid:
        return [f"{what}: accepted invalid ({answer.status})"]
    return []


def with_body(request: HttpRequest, body: bytes) -> HttpRequest:
    """``request`` carrying ``body`` as it is."""
    return HttpRequest(request.method, request.target, request.headers, body)


def json_malformations(base: dict[str, Any], member: str) -> list[tuple[str, bytes, bool]]:
    """(what, body, whether it must be refused) of raw bodies that are not a valid JSON
    request: ``member`` holds the lone surrogate; an empty body is ``{}``."""
    return [
        ("not JSON", b"{nope", True),
        ("truncated", wire_model.dump_json(base)[:-1], True),
        ("array", b"[]", True),
        ("string", b'"x"', True),
        ("lone surrogate", f'{{"{member}": "\\ud800"}}'.encode(), True),
        ("empty", b"", False),
    ]


def huge_content_length(client: RawClient, what: str, head: str, start: str = "{") -> list[str]:
    """Findings of a request whose ``head`` (request line and headers) declares a body of
    10^12 bytes, of which only ``start`` comes: it must be 413 at once."""
    raw = f"{head}Content-Length: 1000000000000\r\n\r\n{start}".encode()
    huge = client.exchange(raw, "POST")
    if huge.status != 413:
        return [f"{what} huge Content-Length: {huge.status} {huge.body[:200]!r}"]
    return []


def assert_quiet(log: str) -> None:
    """The server's log holds no traceback and no unhandled error."""
    assert "Traceback" not in log, log[-3000:]
    assert "unhandled error" not in log, log[-3000:]


def fields_within(struct: Any, shape: Any, where: str) -> None:
    """``struct`` (a request Struct) names only members of ``shape``, nested Structs too."""
    for field in msgspec.structs.fields(struct):
        assert field.encode_name in shape.members, (where, field.encode_name)
        member = shape.members[field.encode_name]
        union = typing.get_origin(field.type) in (typing.Union, types.UnionType)
        for arg in typing.get_args(field.type) if union else (field.type,):
            if typing.get_origin(arg) is list:
                (item,) = typing.get_args(arg)
                if _is_struct(item):
                    fields_within(item, member.member, f"{where}.{field.encode_name}[]")
            elif _is_struct(arg):
                fields_within(arg, member, f"{where}.{field.encode_name}")


def _is_struct(kind: Any) -> bool:
    return (
        typing.get_origin(kind) is None
        and isinstance(kind, type)
        and (issubclass(kind, msgspec.Struct))
    )


@dataclasses.dataclass(frozen=True)
class JsonTargets:
    """A JSON 1.1 service routed by ``X-Amz-Target: <prefix>.<operation>`` on ``POST /``."""

    #: botocore's name of the service's model ("events").
    service: str
    #: The targets' prefix ("AWSEvents").
    prefix: str

    def model(self) -> ServiceModel:
        return botocore.session.get_session().get_service_model(self.service)

    def served(self) -> set[str]:
        """The operations of the prefix lambdad serves."""
        start = f"{self.prefix}."
        return {op for key, (_, op, _) in targets().items() if key.startswith(start)}

    def build(self, name: str, values: dict[str, Any]) -> HttpRequest:
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"{self.prefix}.{name}",
        }
        return HttpRequest("POST", "/", headers, wire_model.dump_json(values))

    def mutations(self, name: str, base: dict[str, Any]) -> Iterator[Mutation]:
        shape = self.model().operation_model(name).input_shape
        return body_mutations(shape, name, base)

    def sweep(self, client: RawClient, bases: dict[str, dict[str, Any]], member: str) -> list[str]:
        """The findings of each operation's valid request (``bases``), its mutations, the raw
        malformations (``member`` holds the lone surrogate) and a huge declared body."""
        findings: list[str] = []
        for name, base in bases.items():
            answer = client.send(self.build(name, base))
            if answer.status != 200:
                findings.append(f"{name} valid request refused: {answer.status} {answer.body!r}")
            for what, values, invalid in self.mutations(name, base):
                findings += check(client.send(self.build(name, values)), f"{name} {what}", invalid)
            for what, body, invalid in json_malformations(base, member):
                request = with_body(self.build(name, {}), body)
                findings += check(client.send(request), f"{name} {what}", invalid)
            head = f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {self.prefix}.{name}\r\n"
            findings += huge_content_length(client, name, head)
            client.close()
        return findings

    def reader(self, client: RawClient, found: list[str]) -> Callable[[str, dict[str, Any]], Any]:
        """A call of an operation that must succeed; what its answer breaks of the model's
        output shape goes to ``found``."""
        service = self.model()

        def call(name: str, values: dict[str, Any]) -> Any:
            answer = client.send(self.build(name, values))
            assert answer.status == 200, (name, values, answer)
            document = json.loads(answer.body)
            output = service.operation_model(name).output_shape
            found.extend(f"{name} answer: {p}" for p in wire_model.problems(output, document))
            return document

        return call
