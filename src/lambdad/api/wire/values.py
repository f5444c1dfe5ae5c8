"""JSON values against botocore shapes, in the order AWS's Lambda front end checks them.

First the types (:func:`typed`): a value of the wrong JSON type is an
``InvalidRequestContentException`` worded as Lambda's Jackson-based parser words it, and stops
everything else. Then the model's constraints (:func:`check`): each violation is one clause of a
``ValidationException`` (``Value '…' at 'memberPath' failed to satisfy constraint: …``), all
clauses reported together. Paths follow AWS: lowerCamel member names joined by dots
(``environment.variables``), structures inside lists as ``fileSystemConfigs.1.member.arn``; a
list or map of scalars is reported as a whole (``Member must satisfy constraint: [...]``,
``Map keys must satisfy constraint: [...]``). Sensitive members never show their value.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from typing import Any

from lambdad import errors
from lambdad.control.validation import constraint
from lambdad.invoke import json_check

INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_JAVA_TYPES = {
    "string": "java.lang.String",
    "integer": "java.lang.Integer",
    "long": "java.lang.Long",
    "boolean": "java.lang.Boolean",
    "double": "java.lang.Double",
    "float": "java.lang.Float",
    "blob": "java.nio.ByteBuffer",
    "timestamp": "java.util.Date",
    "list": "java.util.ArrayList",
    "map": "java.util.HashMap",
}
#: Java's ``\p{Z}`` (Unicode separators) as character-class contents for Python's ``re``.
_SEPARATORS = "\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def parse_error(detail: str) -> errors.InvalidRequestContentException:
    """The exception Lambda answers for a body it cannot read into the request type."""
    return errors.InvalidRequestContentException(json_check.PARSE_PREFIX + detail)


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def token(value: Any) -> str:
    if isinstance(value, bool):
        return f"Boolean value (token `JsonToken.VALUE_{str(value).upper()}`)"
    if isinstance(value, int):
        return "Integer value (token `JsonToken.VALUE_NUMBER_INT`)"
    if isinstance(value, float):
        return "Floating-point value (token `JsonToken.VALUE_NUMBER_FLOAT`)"
    if isinstance(value, str):
        return f'String "{value[:64]}"'
    if isinstance(value, list):
        return "Array value (token `JsonToken.START_ARRAY`)"
    return "Object value (token `JsonToken.START_OBJECT`)"


def _mismatch(shape: Any, value: Any, where: str) -> errors.InvalidRequestContentException:
    java = _JAVA_TYPES.get(shape.type_name, shape.name)
    return parse_error(
        f"Cannot deserialize value of type `{java}` from {token(value)}"
        f" (through reference chain: {where})"
    )


# ---------------------------------------------------------------------------- types


def typed(shape: Any, value: Any, where: str) -> Any:
    """``value`` (decoded JSON, never None) as the Python value of ``shape``'s type.

    Structures become dicts of their known members (unknown members and JSON nulls dropped),
    blobs become bytes (base64 decoded), doubles floats. Raises InvalidRequestContentException
    on the first value of the wrong type; ``where`` names it as Jackson's reference chain does.
    """
    kind = shape.type_name
    reader = _READERS.get(kind)
    if reader is None:
        return value
    return reader(shape, value, where)


def _structure(shape: Any, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _mismatch(shape, value, where)
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        item = value.get(name)
        if item is not None:
            out[name] = typed(member, item, f'{where}["{name}"]')
    return out


def _list(shape: Any, value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _mismatch(shape, value, where)
    return [
        None if item is None else typed(shape.member, item, f"{where}[{index}]")
        for index, item in enumerate(value)
    ]


def _map(shape: Any, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _mismatch(shape, value, where)
    return {
        key: None if item is None else typed(shape.value, item, f'{where}["{key}"]')
        for key, item in value.items()
    }


def _string(shape: Any, value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _mismatch(shape, value, where)
    return value


def _integer(shape: Any, value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _mismatch(shape, value, where)
    low, high = INT_RANGE[shape.type_name]
    if not low <= value <= high:
        java = "int" if shape.type_name == "integer" else "long"
        raise parse_error(
            f"Numeric value ({value}) out of range of {java} ({low} - {high})"
            f" (through reference chain: {where})"
        )
    return value


def _double(shape: Any, value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _mismatch(shape, value, where)
    return float(value)


def _boolean(shape: Any, value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _mismatch(shape, value, where)
    return value


#: A blob's base64 is decoded this many characters at a time (a multiple of 4): one call holds
#: the GIL, so a 70 MB ZipFile decoded at once in the decoding thread would stall the event
#: loop for ~0.2 s; in slices the thread lets the loop run between them.
_B64_SLICE = 1 << 20


def _b64decode(text: str) -> bytes:
    """Strict base64 (the alphabet, padding only at the end), in slices when it is long."""
    if len(text) <= _B64_SLICE:
        return base64.b64decode(text, validate=True)
    if len(text) % 4:
        raise binascii.Error("incorrect padding")
    out = bytearray()
    for start in range(0, len(text), _B64_SLICE):
        out += binascii.a2b_base64(text[start : start + _B64_SLICE], strict_mode=True)
    return bytes(out)


def _blob(shape: Any, value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise _mismatch(shape, value, where)
    try:
        return _b64decode(value)
    except (binascii.Error, ValueError):
        raise parse_error(
            "Cannot access contents of TextNode as binary due to broken Base64 encoding"
            f" (through reference chain: {where})"
        ) from None


def _timestamp(shape: Any, value: Any, where: str) -> float | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _mismatch(shape, value, where)
    return value


_READERS: dict[str, Callable[[Any, Any, str], Any]] = {
    "structure": _structure,
    "list": _list,
    "map": _map,
    "string": _string,
    "integer": _integer,
    "long": _integer,
    "double": _double,
    "float": _double,
    "boolean": _boolean,
    "blob": _blob,
    "timestamp": _timestamp,
}


# ---------------------------------------------------------------------------- constraints


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    """A model pattern (Java syntax) compiled for Python's ``re``."""
    # The model uses \p{...} only inside classes that also allow "_", so \w (letters, digits
    # and "_") stands for \p{L} and \p{N} there.
    python = (
        pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\d").replace(r"\p{Z}", _SEPARATORS)
    )
    return re.compile(python)


def prepare(shape: Any) -> None:
    """Compile the pattern of a string ``shape`` now rather than at its first check."""
    pattern = shape.metadata.get("pattern") if shape.type_name == "string" else None
    if pattern is not None:
        _regex(pattern)


def java_length(text: str) -> int:
    """A string's length as Java counts it (UTF-16 code units)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def rules_of(shape: Any) -> list[str]:
    """Every constraint of a scalar shape, worded and ordered as AWS lists them."""
    meta = shape.metadata
    rules: list[str] = []
    unit = "length" if shape.type_name in ("string", "list", "map", "blob") else "value"
    if "max" in meta:
        rules.append(f"Member must have {unit} less than or equal to {_bound(shape, meta['max'])}")
    if "min" in meta:
        rules.append(
            f"Member must have {unit} greater than or equal to {_bound(shape, meta['min'])}"
        )
    if "pattern" in meta:
        rules.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    if "enum" in meta:
        rules.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    return rules


def _bound(shape: Any, bound: float) -> str:
    return str(float(bound)) if shape.type_name in ("double", "float") else str(int(bound))


def violations(shape: Any, value: Any) -> list[str]:
    """The rules of a scalar ``shape`` that ``value`` breaks, in AWS's order."""
    meta = shape.metadata
    kind = shape.type_name
    broken: list[str] = []
    if kind == "string":
        size: float = java_length(value)
    elif kind in ("integer", "long", "double", "float"):
        size = value
    else:
        return broken
    unit = "length" if kind == "string" else "value"
    if "max" in meta and size > meta["max"]:
        broken.append(f"Member must have {unit} less than or equal to {_bound(shape, meta['max'])}")
    if "min" in meta and size < meta["min"]:
        broken.append(
            f"Member must have {unit} greater than or equal to {_bound(shape, meta['min'])}"
        )
    if kind == "string":
        pattern = meta.get("pattern")
        if pattern is not None and _regex(pattern).fullmatch(value) is None:
            broken.append(f"Member must satisfy regular expression pattern: {pattern}")
        if "enum" in meta and value not in meta["enum"]:
            broken.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    return broken


def shown(value: Any) -> str:
    """A value as AWS's (Java) messages print it."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return f"[{', '.join(shown(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes):
        return "java.nio.HeapByteBuffer"
    return str(value)


def _clause(shape: Any, value: Any, path: str, rule: str) -> str:
    if shape.metadata.get("sensitive"):
        return f"Value at '{path}' failed to satisfy constraint: {rule}"
    return constraint(shown(value), path, rule)


def null_clause(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


#: Member paths (``runtime``) whose model constraints the service checks itself, with its own
#: message (see ``lambdad.control.validation``): the member is still type-checked.
ServiceChecked = frozenset[str]


def check(
    shape: Any,
    value: Any,
    path: str,
    clauses: list[str],
    *,
    skip: ServiceChecked = frozenset(),
    optional: frozenset[str] = frozenset(),
) -> None:
    """Append a clause to ``clauses`` for each constraint ``value`` (typed, not None) breaks.

    ``skip`` names member paths (``runtime``) whose constraints are left to the service;
    ``optional`` names members of this structure that may be absent although the model
    requires them.
    """
    if path in skip:
        return
    kind = shape.type_name
    if kind == "structure":
        _check_structure(shape, value, path, clauses, skip, optional)
    elif kind == "list":
        _check_list(shape, value, path, clauses, skip)
    elif kind == "map":
        _check_map(shape, value, path, clauses)
    else:
        clauses.extend(_clause(shape, value, path, rule) for rule in violations(shape, value))


def _check_structure(
    shape: Any,
    value: dict[str, Any],
    path: str,
    clauses: list[str],
    skip: ServiceChecked,
    optional: frozenset[str] = frozenset(),
) -> None:
    for name, member, camel, required in _members(shape):
        where = f"{path}.{camel}" if path else camel
        item = value.get(name)
        if item is None:
            if required and name not in optional:
                clauses.append(null_clause(where))
            continue
        check(member, item, where, clauses, skip=skip)


_Members = tuple[tuple[str, Any, str, bool], ...]
#: Each structure's members, read once (the entry keeps its shape, so an id is never reused).
_MEMBERS: dict[int, tuple[Any, _Members]] = {}


def _members(shape: Any) -> _Members:
    """(name, shape, path name, required) of each member of the structure ``shape``."""
    entry = _MEMBERS.get(id(shape))
    if entry is None or entry[0] is not shape:
        required = set(shape.required_members)
        found = tuple(
            (name, member, lower_camel(name), name in required)
            for name, member in shape.members.items()
        )
        entry = _MEMBERS[id(shape)] = (shape, found)
    return entry[1]


def _size_clauses(shape: Any, value: Any, path: str) -> list[str]:
    meta, size = shape.metadata, len(value)
    if "max" in meta and size > meta["max"]:
        rule = f"Member must have length less than or equal to {meta['max']}"
    elif "min" in meta and size < meta["min"]:
        rule = f"Member must have length greater than or equal to {meta['min']}"
    else:
        return []
    return [_clause(shape, value, path, rule)]


def _check_list(
    shape: Any, value: list[Any], path: str, clauses: list[str], skip: ServiceChecked
) -> None:
    clauses.extend(_size_clauses(shape, value, path))
    member = shape.member
    if member.type_name in ("structure", "list", "map"):
        for index, item in enumerate(value, start=1):
            where = f"{path}.{index}.member"
            if item is None:
                clauses.append(null_clause(where))
            else:
                check(member, item, where, clauses, skip=skip)
        return
    if any(item is None or violations(member, item) for item in value):
        rules = ", ".join([*rules_of(member), "Member must not be null"])
        clauses.append(_clause(shape, value, path, f"Member must satisfy constraint: [{rules}]"))


def _check_map(shape: Any, value: dict[str, Any], path: str, clauses: list[str]) -> None:
    clauses.extend(_size_clauses(shape, value, path))
    if any(violations(shape.key, key) for key in value):
        rules = ", ".join(rules_of(shape.key))
        clauses.append(_clause(shape, value, path, f"Map keys must satisfy constraint: [{rules}]"))
    scalar = shape.value.type_name not in ("structure", "list", "map")
    if any(item is None or (scalar and violations(shape.value, item)) for item in value.values()):
        rules = ", ".join([*rules_of(shape.value), "Member must not be null"])
        clauses.append(_clause(shape, value, path, f"Map value must satisfy constraint: [{rules}]"))
