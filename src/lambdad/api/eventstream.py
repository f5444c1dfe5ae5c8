"""The ``application/vnd.amazon.eventstream`` framing of ``InvokeWithResponseStream``.

botocore only decodes event streams (``botocore.eventstream``); this is the encoder. A message
is, big-endian::

    total_len:u32 | headers_len:u32 | prelude_crc:u32 | headers | payload | message_crc:u32

where the prelude CRC is the CRC32 of the first 8 bytes and the message CRC that of every byte
before it; a header is ``name_len:u8 | name | 7 | value_len:u16 | value`` (type 7: string).
"""

from __future__ import annotations

import json
import struct
import zlib

_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        bytes((len(raw_name),)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value
    )


#: One string header (for other event streams than Invoke's: CloudWatch Logs' live tail).
header = _header


def _event_headers(event_type: str, content_type: str) -> bytes:
    return (
        _header(":event-type", event_type)
        + _header(":content-type", content_type)
        + _header(":message-type", "event")
    )


_PAYLOAD_CHUNK = _event_headers("PayloadChunk", "application/octet-stream")
_INVOKE_COMPLETE = _event_headers("InvokeComplete", "application/json")


def message(headers: bytes, payload: bytes) -> bytes:
    """One event-stream message of already encoded ``headers`` and ``payload``."""
    total = _PRELUDE.size + _CRC.size + len(headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(headers))
    head = prelude + _CRC.pack(zlib.crc32(prelude)) + headers
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + payload + _CRC.pack(crc)


def payload_chunk(payload: bytes) -> bytes:
    """A ``PayloadChunk`` event carrying ``payload`` (at most botocore's 24 MiB: callers cut)."""
    return message(_PAYLOAD_CHUNK, payload)


def invoke_complete(
    error_code: str | None = None, error_details: str | None = None, log_result: str | None = None
) -> bytes:
    """The ``InvokeComplete`` event: members that are None are left out."""
    document = {
        key: value
        for key, value in (
            ("ErrorCode", error_code),
            ("ErrorDetails", error_details),
            ("LogResult", log_result),
        )
        if value is not None
    }
    return message(_INVOKE_COMPLETE, json.dumps(document, separators=(",", ":")).encode())
