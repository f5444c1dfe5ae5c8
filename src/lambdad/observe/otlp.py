"""OpenTelemetry spans as OTLP/HTTP protobuf (``ExportTraceServiceRequest``), encoded directly.

The message is small and fixed (opentelemetry-proto's ``trace/v1/trace.proto``), so lambdad
writes its protobuf wire format itself rather than import protobuf and the generated classes
(docs/tracing.md: start-up time and a binary dependency for a few dozen lines).
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from collections.abc import Iterable

#: ``Span.SpanKind``: SERVER for lambdad's ``AWS::Lambda`` segment, INTERNAL otherwise.
KIND_INTERNAL = 1
KIND_SERVER = 2
#: ``Status.StatusCode``.
STATUS_UNSET = 0
STATUS_ERROR = 2

Attribute = tuple[str, str | int | float | bool]


@dataclasses.dataclass(slots=True)
class Span:
    """One span: ids in hex (trace 32 digits, span and parent 16), times in epoch seconds.
    Not frozen (a frozen dataclass's ``__init__`` costs twice as much, on the invoke path);
    nothing changes a span once it is made."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: float
    end: float
    service: str
    kind: int = KIND_INTERNAL
    error: bool = False
    attributes: tuple[Attribute, ...] = ()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _field(number, text.encode()) if text else b""


def _fixed64(number: int, value: int) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<Q", value)


def _uint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _any_value(value: str | int | float | bool) -> bytes:
    if isinstance(value, bool):
        return _varint(2 << 3) + _varint(int(value))
    if isinstance(value, int):
        return _varint(3 << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return _varint(4 << 3 | 1) + struct.pack("<d", value)
    return _field(1, value.encode())


def _key_value(key: str, value: str | int | float | bool) -> bytes:
    return _string(1, key) + _field(2, _any_value(value))


#: The largest time a fixed64 of nanoseconds holds (a segment's times are checked when
#: parsed; this keeps the encoder total whatever it is given).
_MAX_NANOS = 2**64 - 1


def _nanos(seconds: float) -> int:
    return min(max(0, round(seconds * 1e9)), _MAX_NANOS)


#: The fixed-size fields' tags and lengths: trace id (1, 16 bytes), span id (2, 8 bytes),
#: parent span id (4, 8 bytes), kind (6, varint), start and end times (7 and 8, fixed64).
_TRACE_ID = b"\x0a\x10"
_SPAN_ID = b"\x12\x08"
_PARENT_ID = b"\x22\x08"
_KIND = b"\x30"
_TIMES = struct.Struct("<BQBQ")
_ERROR_STATUS = _field(15, _uint(3, STATUS_ERROR))


@functools.lru_cache(maxsize=4096)
def _name(name: str) -> bytes:
    return _string(5, name)


@functools.lru_cache(maxsize=4096, typed=True)
def _attribute(key: str, value: str | int | float | bool) -> bytes:
    """An attribute's field (most are a few constants, encoded once)."""
    return _field(9, _key_value(key, value))


def encode_span(span: Span) -> bytes:
    """One ``Span`` message."""
    parts = [_TRACE_ID, bytes.fromhex(span.trace_id), _SPAN_ID, bytes.fromhex(span.span_id)]
    if span.parent_id:
        parts += (_PARENT_ID, bytes.fromhex(span.parent_id))
    parts += (_name(span.name), _KIND, bytes((span.kind,)))
    parts.append(_TIMES.pack(0x39, _nanos(span.start), 0x41, _nanos(span.end)))
    for key, value in span.attributes:
        parts.append(_attribute(key, value))
    if span.error:
        parts.append(_ERROR_STATUS)
    return b"".join(parts)


def encode_request(spans: Iterable[Span], scope_name: str, version: str) -> bytes:
    """An ``ExportTraceServiceRequest``: one ``ResourceSpans`` per service (``service.name``)."""
    by_service: dict[str, list[bytes]] = {}
    for span in spans:
        by_service.setdefault(span.service, []).append(encode_span(span))
    scope = _string(1, scope_name) + _string(2, version)
    out = b""
    for service, encoded in by_service.items():
        resource = _field(1, _key_value("service.name", service))
        resource += _field(1, _key_value("cloud.provider", "aws"))
        scope_spans = _field(1, scope) + b"".join(_field(2, s) for s in encoded)
        out += _field(1, _field(1, resource) + _field(2, scope_spans))
    return out


def valid_ids(trace_id: str, span_id: str, parent_id: str | None) -> bool:
    """Whether the ids are hex of the right lengths (32, 16, 16)."""
    return _hex(trace_id, 32) and _hex(span_id, 16) and (parent_id is None or _hex(parent_id, 16))


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _hex(text: str, digits: int) -> bool:
    """Exactly ``digits`` hex digits (``int(text, 16)`` would also take ``0x``, a sign,
    ``_`` and spaces, which ``bytes.fromhex`` then refuses)."""
    return len(text) == digits and _HEX_DIGITS.issuperset(text)
