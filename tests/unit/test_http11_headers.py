"""The Runtime API's HTTP/1.1 writer never lets a header value end its line."""

from __future__ import annotations

import httptools

from lambdad.runtime.http11 import Response


class _Collector:
    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.messages = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.bodies.append(body)

    def on_message_complete(self) -> None:
        self.messages += 1


def _parse(data: bytes) -> _Collector:
    collector = _Collector()
    httptools.HttpResponseParser(collector).feed_data(data)
    return collector


def test_a_header_value_with_cr_or_lf_cannot_split_the_answer() -> None:
    """A trace id (or any value) carrying CR/LF is written percent-encoded: no forged header,
    no second response, the body intact."""
    forged = "Root=1-abc\r\nX-Forged: yes\r\n\r\nHTTP/1.1 200 OK"
    response = Response(
        200,
        b'{"k": 1}',
        (
            ("Lambda-Runtime-Trace-Id", forged),
            ("Lambda-Runtime-Client-Context", '{\n  "a": 1\n}'),
            ("Lambda-Runtime-Aws-Tenant-Id", "t\x00nul"),
        ),
    )
    for data in (response.encode(True), response.head(True) + response.body):
        parsed = _parse(data)
        names = [name.lower() for name, _ in parsed.headers]
        assert "x-forged" not in names
        assert parsed.messages == 1
        assert b"".join(parsed.bodies) == b'{"k": 1}'
        values = dict(parsed.headers)
        assert values["Lambda-Runtime-Trace-Id"] == (
            "Root=1-abc%0D%0AX-Forged: yes%0D%0A%0D%0AHTTP/1.1 200 OK"
        )
        assert values["Lambda-Runtime-Client-Context"] == '{%0A  "a": 1%0A}'
        assert values["Lambda-Runtime-Aws-Tenant-Id"] == "t%00nul"


def test_plain_headers_are_written_as_they_are() -> None:
    """Ordinary values pass unchanged; a value outside Latin-1 is written as UTF-8."""
    response = Response(202, b"", (("Lambda-Runtime-Aws-Request-Id", "id-1"), ("X-Name", "日本")))
    parsed = _parse(response.head(False))
    values = dict(parsed.headers)
    assert values["Lambda-Runtime-Aws-Request-Id"] == "id-1"
    assert values["X-Name"].encode("latin-1").decode("utf-8") == "日本"
    assert values["Connection"] == "close"
