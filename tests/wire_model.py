"""botocore's ``lambda`` model (others' too, as ``service:Operation``) as a test tool: serialise
requests, check values, derive mutations.

- ``build(operation, values)``: a raw HTTP request (method, target, headers, body) the way
  botocore's rest-json serialiser lays it out (labels, query, headers, JSON body or payload).
- ``problems(shape, value)``: the model constraints ``value`` violates (type, required,
  lengths, ranges, enums, patterns, lone surrogates), ``[]`` when it satisfies them all.
- ``mutations(operation, values)``: deterministic variants of a valid request, one member
  changed each (wrong JSON type, null, empty, oversized, out of range, control characters,
  lone surrogates, unknown members; odd path segments, bad query values and header values).
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import functools
import json
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from botocore.model import OperationModel, ServiceModel, Shape

from lambdad.api.wire import model as wire_model

#: Stands for a JSON ``"\ud800"`` (a lone surrogate escape) in a value; Python's json would
#: refuse to write one.
SURROGATE = "\U0010fffesurrogate"
#: Deletes the member it is assigned to.
ABSENT = object()


@functools.cache
def model(service: str = "lambda") -> ServiceModel:
    """The service model lambdad serves (Lambda's is the copy lambdad ships, newer than the
    installed botocore's)."""
    return wire_model.service(service)


def operation(name: str) -> OperationModel:
    """The operation ``name`` of the ``lambda`` model, or of another service's when named
    ``service:Operation`` (``scheduler:CreateSchedule``): every helper here takes such names."""
    service, _, op = name.rpartition(":")
    return model(service or "lambda").operation_model(op)


class Placeholder:
    """A value the caller fills in when the request is sent (a fresh name); counts as valid."""


@dataclasses.dataclass(frozen=True)
class RawSegment:
    """A URI label value sent exactly as written (already percent-encoded, or not)."""

    text: str


@dataclasses.dataclass(frozen=True)
class RawQuery:
    """A query value sent exactly as written (already percent-encoded, or not)."""

    text: str


@dataclasses.dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


# ------------------------------------------------------------------------- serialising


def _label(value: Any) -> str:
    if isinstance(value, RawSegment):
        return value.text
    return quote(str(value), safe="-._~")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _json_safe(value: Any) -> Any:
    """Blobs as base64, the way botocore puts them in a JSON body."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def dump_json(value: Any) -> bytes:
    text = json.dumps(_json_safe(value))
    return text.replace(json.dumps(SURROGATE)[1:-1], "\\ud800").encode()


def build(name: str, values: Mapping[str, Any]) -> HttpRequest:
    """The raw HTTP request of operation ``name`` with input member ``values``."""
    op = operation(name)
    uri = op.http["requestUri"]
    path, _, fixed_query = uri.partition("?")
    query: list[str] = [fixed_query] if fixed_query else []
    headers: dict[str, str] = {}
    body: dict[str, Any] = {}
    payload: bytes | None = None
    shape = op.input_shape
    payload_member = shape.serialization.get("payload") if shape is not None else None
    for member, value in values.items():
        member_shape = shape.members.get(member) if shape is not None else None
        location = member_shape.serialization.get("location") if member_shape else None
        wire_name = member_shape.serialization.get("name", member) if member_shape else member
        if location == "uri":
            label = _label(value)
            path = re.sub(r"\{" + re.escape(wire_name) + r"\+?\}", lambda _, v=label: v, path)
        elif location == "querystring":
            for item in value if isinstance(value, list) else [value]:
                query.append(_query_item(wire_name, item))
        elif location == "header":
            headers[wire_name] = _scalar(value)
        elif member == payload_member:
            payload = value if isinstance(value, bytes) else dump_json(value)
        else:
            body[member] = value
    target = path + ("?" + "&".join(query) if query else "")
    if payload is not None:
        data = payload
    elif body or (op.http["method"] in ("POST", "PUT") and shape is not None):
        data = dump_json(body)
        headers.setdefault("Content-Type", "application/json")
    else:
        data = b""
    return HttpRequest(op.http["method"], target, headers, data)


# ------------------------------------------------------------------------- checking


@functools.cache
def _pattern(text: str) -> re.Pattern[str] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return re.compile(text)
        except re.error:
            return None


def _has_surrogate(text: str) -> bool:
    return SURROGATE in text or any("\ud800" <= ch <= "\udfff" for ch in text)


def problems(shape: Shape, value: Any, where: str = "", *, json_blob: bool = True) -> list[str]:
    """The constraints of ``shape`` that ``value`` violates. ``None`` is an absent member."""
    if value is None:
        return []
    kind = shape.type_name
    meta = shape.metadata
    found: list[str] = []
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        for member in shape.required_members:
            if value.get(member) is None:
                found.append(f"{where}.{member}: required")
        for member, item in value.items():
            if member in shape.members:
                found += problems(shape.members[member], item, f"{where}.{member}")
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        found += _length(meta, len(value), where)
        for index, item in enumerate(value):
            if item is None:
                found.append(f"{where}[{index}]: null")
            found += problems(shape.member, item, f"{where}[{index}]")
        return found
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: not a map"]
        found += _length(meta, len(value), where)
        for key, item in value.items():
            found += problems(shape.key, key, f"{where} key")
            if item is None:
                found.append(f"{where}.{key}: null")
            found += problems(shape.value, item, f"{where}.{key}")
        return found
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: not a string"]
        if _has_surrogate(value):
            return [f"{where}: lone surrogate"]
        found += _length(meta, len(value), where)
        if shape.enum and value not in shape.enum:
            found.append(f"{where}: not in enum")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and not pattern.fullmatch(value):
            found.append(f"{where}: pattern")
        return found
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{where}: not an integer"]
        if ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"]):
            return [f"{where}: out of range"]
        if not -(2**63) <= value < 2**63 or (kind == "integer" and not -(2**31) <= value < 2**31):
            return [f"{where}: out of the type's range"]
        return []
    if kind in ("float", "double"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return [f"{where}: not a number"]
        if ("min" in meta and value < meta["min"]) or ("max" in meta and value > meta["max"]):
            return [f"{where}: out of range"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: not a boolean"]
    if kind == "blob":
        if isinstance(value, bytes):
            return []
        if not json_blob or not isinstance(value, str):
            return [f"{where}: not a blob"]
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return [f"{where}: not base64"]
        return []
    if kind == "timestamp":
        return [] if isinstance(value, int | float | str) else [f"{where}: not a timestamp"]
    return []


def _length(meta: Mapping[str, Any], size: int, where: str) -> list[str]:
    if ("min" in meta and size < meta["min"]) or ("max" in meta and size > meta["max"]):
        return [f"{where}: length {size}"]
    return []


def segment_problems(shape: Shape, raw: str) -> list[str]:
    """What a raw (percent-encoded) URI label or query value violates once decoded."""
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return ["not UTF-8"]
    if "/" in text:
        return ["a slash in a label"]
    return wire_problems(shape, text, "label")


def query_problems(shape: Shape, raw: str) -> list[str]:
    """What a raw (percent-encoded) query value violates once decoded."""
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return ["not UTF-8"]
    return wire_problems(shape, text, "query")


def wire_problems(shape: Shape, text: str, where: str) -> list[str]:
    """What a string from a URI, query or header violates as a value of ``shape``."""
    if shape.type_name in ("integer", "long"):
        if not re.fullmatch(r"-?\d+", text):
            return [f"{where}: not an integer"]
        return problems(shape, int(text), where)
    if shape.type_name == "boolean":
        return [] if text in ("true", "false") else [f"{where}: not a boolean"]
    if shape.type_name == "list":
        return problems(shape.member, text, where)
    return problems(shape, text, where)


# ------------------------------------------------------------------------- mutating


@dataclasses.dataclass(frozen=True)
class Mutation:
    member: str  # dotted path, e.g. "Environment.Variables"
    kind: str  # what was done, e.g. "wrong type (number)"
    values: dict[str, Any]
    #: The model forbids the resulting request (None: not judged, e.g. an empty path label
    #: makes another operation's URI, an empty header is as good as none).
    invalid: bool | None


def _wrong_types(shape: Shape) -> list[tuple[str, Any]]:
    kind = shape.type_name
    if kind == "string":
        return [("number", 123), ("bool", True), ("list", ["a"]), ("object", {"a": 1})]
    if kind in ("integer", "long", "float", "double"):
        return [("string", "abc"), ("numeric string", "5"), ("list", [1]), ("bool", True)]
    if kind == "boolean":
        return [("string", "yes"), ("number", 1), ("list", [True])]
    if kind in ("list",):
        return [("string", "x"), ("object", {"a": "b"}), ("number", 1)]
    if kind in ("map", "structure"):
        return [("string", "x"), ("list", [{"a": "b"}]), ("number", 1)]
    if kind == "blob":
        return [("number", 123), ("not base64", "!!not base64!!"), ("list", ["a"])]
    return [("string", "x")]


def _body_values(shape: Shape) -> list[tuple[str, Any]]:
    """Every mutated value of a JSON member of ``shape``."""
    meta = shape.metadata
    out = [(f"wrong type ({name})", value) for name, value in _wrong_types(shape)]
    out.append(("null", None))
    kind = shape.type_name
    if kind == "string":
        out += [
            ("empty", ""),
            ("oversized", "a" * (int(meta.get("max", 65536)) + 1)),
            ("control characters", "a\x00b\x01\n\r\t\x1b\x7f"),
            ("lone surrogate", "a" + SURROGATE),
            ("unicode", "é☃\u2028𝄞"),
        ]
        if shape.enum:
            out.append(("not in enum", "NotAnEnumValue"))
    elif kind in ("integer", "long"):
        if "min" in meta:
            out.append(("below min", int(meta["min"]) - 1))
        if "max" in meta:
            out.append(("above max", int(meta["max"]) + 1))
        out += [("negative", -1), ("huge", 2**63), ("float", 1.5)]
    elif kind in ("float", "double"):
        out += [("negative", -1.0), ("huge", 1e308)]
    elif kind == "list":
        out += [("empty", []), ("null element", [None])]
        if "max" in meta:
            out.append(("too many", [_example(shape.member)] * (int(meta["max"]) + 1)))
    elif kind == "map":
        out += [
            ("empty", {}),
            ("null value", {"k": None}),
            ("empty key", {"": _example(shape.value)}),
        ]
        if "max" in meta:
            many = {f"k{i}": _example(shape.value) for i in range(int(meta["max"]) + 1)}
            out.append(("too many", many))
    elif kind == "structure":
        out += [("empty", {}), ("unknown member", {"NoSuchMember": "x"})]
    elif kind == "blob":
        out.append(("empty", ""))
    return out


def _example(shape: Shape) -> Any:
    """A small value of ``shape`` (valid where the model's constraints are simple)."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        return "a" * max(1, int(meta.get("min", 1)))
    if kind in ("integer", "long"):
        return int(meta.get("min", 1))
    if kind in ("float", "double"):
        return float(meta.get("min", 0))
    if kind == "boolean":
        return False
    if kind == "list":
        return [_example(shape.member)] * int(meta.get("min", 1) or 1)
    if kind == "map":
        return {"k": _example(shape.value)}
    if kind == "structure":
        return {m: _example(shape.members[m]) for m in shape.required_members}
    if kind == "blob":
        return b"x"
    return "x"


def example_values(name: str) -> dict[str, Any]:
    """Model-generated values of the required members of operation ``name``."""
    shape = operation(name).input_shape
    if shape is None:
        return {}
    return {m: _example(shape.members[m]) for m in shape.required_members}


_SEGMENTS = [
    ("empty", ""),
    ("very long", "a" * 5000),
    ("NUL", "a%00b"),
    ("encoded slash", "a%2Fb"),
    ("dot-dot", ".."),
    ("dot", "."),
    ("non-UTF-8", "%FF%FE"),
    ("overlong UTF-8", "%C0%AF"),
    ("bad escape", "a%ZZb%"),
    ("unicode", quote("é☃𝄞")),
    ("raw unicode", "é☃"),
    ("newline", "a%0Ab"),
    ("space", "a%20b"),
    ("control", "%01%1B"),
]

_QUERY_VALUES = [
    ("empty", ""),
    ("very long", "a" * 5000),
    ("NUL", "a%00b"),
    ("non-UTF-8", "%FF%FE"),
    ("bad escape", "a%ZZb%"),
    ("unicode", quote("é☃")),
    ("newline", "a%0Ab"),
    ("wrong type", "abc"),
    ("negative", "-1"),
    ("huge", "99999999999999999999"),
    ("float", "1.5"),
]

_HEADER_VALUES = [
    ("empty", ""),
    ("very long", "a" * 7000),
    ("control", "a\x01b"),
    ("not in enum", "NotAnEnumValue"),
    ("latin-1", "caf\xe9"),
    # Spaces around a header value are not part of it (RFC 9110 5.5), so "  a  " is "a":
    # spaces inside the value are what can break a pattern.
    ("spaces", "a  b"),
]


def _set(values: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(values)
    cursor: Any = out
    for step in path[:-1]:
        cursor = cursor.setdefault(step, {}) if isinstance(cursor, dict) else cursor[step]
    if value is ABSENT:
        cursor.pop(path[-1], None)
    else:
        cursor[path[-1]] = value
    return out


def _value_at(values: Any, path: list[str | int]) -> Any:
    for step in path:
        if isinstance(values, dict):
            values = values.get(step)
        elif isinstance(values, list) and isinstance(step, int) and step < len(values):
            values = values[step]
        else:
            return None
    return values


def _request_problems(name: str, values: Mapping[str, Any]) -> list[str]:
    shape = operation(name).input_shape
    if shape is None:
        return []
    found: list[str] = []
    for member in shape.required_members:
        if values.get(member) is None:
            found.append(f"{member}: required")
    for member, value in values.items():
        member_shape = shape.members.get(member)
        if member_shape is None or isinstance(value, Placeholder):
            continue
        location = member_shape.serialization.get("location")
        if isinstance(value, RawSegment):
            found += segment_problems(member_shape, value.text)
        elif isinstance(value, RawQuery):
            found += query_problems(member_shape, value.text)
        elif location in ("uri", "querystring", "header") and isinstance(value, str):
            found += wire_problems(member_shape, value, member)
        elif location in ("uri", "querystring", "header") and isinstance(value, list):
            found += [p for item in value for p in wire_problems(member_shape, item, member)]
        else:
            blob_payload = member == shape.serialization.get("payload")
            found += problems(member_shape, value, member, json_blob=not blob_payload)
    return found


def mutations(name: str, base: Mapping[str, Any], depth: int = 3) -> Iterator[Mutation]:
    """Each variant of ``base`` with one member of operation ``name`` changed."""
    shape = operation(name).input_shape
    if shape is None:
        return
    payload_member = shape.serialization.get("payload")
    yield _mutation(name, base, "(body)", "unknown member", ["NoSuchMember"], "x")
    for member, member_shape in shape.members.items():
        location = member_shape.serialization.get("location")
        if location == "uri":
            for kind, raw in _SEGMENTS:
                found = _mutation(name, base, member, kind, [member], RawSegment(raw))
                yield dataclasses.replace(found, invalid=None) if raw == "" else found
        elif location == "querystring":
            for kind, raw in _QUERY_VALUES:
                values = _set(dict(base), [member], RawQuery(raw))
                yield Mutation(member, kind, values, bool(_request_problems(name, values)))
            if member not in shape.required_members:
                yield _mutation(name, base, member, "absent", [member], ABSENT)
        elif location == "header":
            for kind, raw in _HEADER_VALUES:
                found = _mutation(name, base, member, kind, [member], raw)
                yield dataclasses.replace(found, invalid=None) if raw == "" else found
        elif member == payload_member and member_shape.type_name == "blob":
            for kind, raw in [("empty", b""), ("not JSON", b"{nope"), ("binary", b"\xff\x00")]:
                yield _mutation(name, base, member, kind, [member], raw)
        else:
            yield from _json_mutations(name, base, member_shape, [member], depth)


def _json_mutations(
    name: str,
    base: Mapping[str, Any],
    shape: Shape,
    path: list[str | int],
    depth: int,
    note: str = "",
) -> Iterator[Mutation]:
    """Mutations of the JSON member at ``path``, then of its members (``depth`` levels).

    A member absent from ``base`` gets a model-generated parent first; when that parent does
    not itself satisfy the model (a pattern the generator cannot meet), the mutations under it
    are noted "[generated parent]", since the request is invalid for that reason as well.
    """
    label = ".".join(str(p) for p in path)
    for kind, value in _body_values(shape):
        yield _mutation(name, base, label, kind + note, path, value)
    if depth <= 1:
        return
    current = _value_at(base, path)
    if shape.type_name == "structure":
        seeded, inner = _seeded(name, base, path, current, _example(shape), note)
        for member, member_shape in shape.members.items():
            yield from _json_mutations(
                name, seeded, member_shape, [*path, member], depth - 1, inner
            )
    elif shape.type_name == "list":
        seeded, inner = _seeded(name, base, path, current, [_example(shape.member)], note)
        yield from _json_mutations(name, seeded, shape.member, [*path, 0], depth - 1, inner)
    elif shape.type_name == "map":
        key = next(iter(current)) if isinstance(current, dict) and current else "k"
        seeded, inner = _seeded(name, base, path, current, {key: _example(shape.value)}, note)
        yield from _json_mutations(name, seeded, shape.value, [*path, key], depth - 1, inner)


def _seeded(
    name: str, base: Mapping[str, Any], path: list[str | int], current: Any, example: Any, note: str
) -> tuple[Mapping[str, Any], str]:
    if current:
        return base, note
    seeded = _set(dict(base), path, example)
    if note or _request_problems(name, seeded):
        return seeded, " [generated parent]"
    return seeded, ""


def _mutation(
    name: str, base: Mapping[str, Any], label: str, kind: str, path: list[str | int], value: Any
) -> Mutation:
    values = _set(dict(base), path, value)
    return Mutation(label, kind, values, bool(_request_problems(name, values)))


def _query_item(name: str, value: Any) -> str:
    if isinstance(value, RawQuery):
        return f"{quote(name)}={value.text}"
    return f"{quote(name)}={quote(_scalar(value), safe='-._~')}"
