"""The event-stream encoder of InvokeWithResponseStream (``lambdad.api.eventstream``), checked
by botocore's own decoder and its parser of the ``lambda`` model's event stream."""

from __future__ import annotations

import zlib

import botocore.session
import pytest
from botocore.eventstream import EventStreamBuffer, InvalidPayloadLength
from botocore.parsers import EventStreamJSONParser

from lambdad.api import eventstream

MODEL = botocore.session.get_session().get_service_model("lambda")
EVENTS = MODEL.operation_model("InvokeWithResponseStream").output_shape.members["EventStream"]


def decoded(data: bytes) -> list[dict[str, object]]:
    """What boto3 yields for ``data``: one dict per event, parsed against the model."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    parser = EventStreamJSONParser()
    return [parser.parse(message.to_response_dict(), EVENTS) for message in buffer]


def test_payload_chunk_round_trips_through_botocore() -> None:
    """A PayloadChunk carries its bytes unchanged, empty and binary ones included."""
    for payload in (b"hello", b"", bytes(range(256)) * 10):
        assert decoded(eventstream.payload_chunk(payload)) == [
            {"PayloadChunk": {"Payload": payload}}
        ]


def test_invoke_complete_members() -> None:
    """InvokeComplete has only the members given: none, an error, or a log tail."""
    assert decoded(eventstream.invoke_complete()) == [{"InvokeComplete": {}}]
    assert decoded(eventstream.invoke_complete("Custom.Error", "went wrong", "bG9n")) == [
        {
            "InvokeComplete": {
                "ErrorCode": "Custom.Error",
                "ErrorDetails": "went wrong",
                "LogResult": "bG9n",
            }
        }
    ]


def test_messages_decode_in_order_across_any_split() -> None:
    """A sequence of messages decodes the same however the bytes are split on the wire."""
    data = (
        eventstream.payload_chunk(b"a")
        + eventstream.payload_chunk(b"b" * 1000)
        + eventstream.invoke_complete("E", "d")
    )
    buffer = EventStreamBuffer()
    messages = []
    for i in range(0, len(data), 7):
        buffer.add_data(data[i : i + 7])
        messages.extend(buffer)
    assert [m.headers[":event-type"] for m in messages] == [
        "PayloadChunk",
        "PayloadChunk",
        "InvokeComplete",
    ]
    assert messages[1].payload == b"b" * 1000


def test_framing_and_checksums() -> None:
    """The prelude carries the total and header lengths and its CRC32; the last four bytes are
    the CRC32 of everything before them; headers are strings (type 7)."""
    message = eventstream.payload_chunk(b"xyz")
    total = int.from_bytes(message[0:4], "big")
    headers = int.from_bytes(message[4:8], "big")
    assert total == len(message)
    assert int.from_bytes(message[8:12], "big") == zlib.crc32(message[:8])
    assert int.from_bytes(message[-4:], "big") == zlib.crc32(message[:-4])
    assert message[12 + headers : -4] == b"xyz"
    assert b"\x0b:event-type\x07\x00\x0cPayloadChunk" in message


def test_oversized_payload_is_refused_by_botocore() -> None:
    """botocore refuses a payload over 24 MiB: callers cut larger responses into chunks."""
    buffer = EventStreamBuffer()
    buffer.add_data(eventstream.payload_chunk(b"x" * (24 * 1024 * 1024 + 1)))
    with pytest.raises(InvalidPayloadLength):
        list(buffer)
