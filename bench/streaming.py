"""Time to first byte of a streamed response: ``InvokeWithResponseStream`` of a function that
writes a chunk and then works for a second.

Run: ``python bench/streaming.py [--count 10] [--work 1.0]``. It starts its own lambdad on a
free port with a temporary data dir (as ``bench/invoke_latency.py`` does) and prints a
Markdown table for docs/benchmarks.md.

Two functions, each warmed once first:

- **node**: a Node.js handler wrapped in ``awslambda.streamifyResponse`` (lambdad's Node
  runtime client), ``responseStream.write('first')``, then ``--work`` seconds before ``end()``;
- **custom**: a ``provided.al2023`` ``bootstrap`` in Python that posts its ``/response`` with
  ``Lambda-Runtime-Function-Response-Mode: streaming`` and chunked encoding, the same way.

"First byte" is the first complete ``PayloadChunk`` event read by a client on one keep-alive
HTTP/1.1 connection, from the moment it sent the request; "total" is until the end of the
stream (the work is a sleep: the figure is lambdad's latency, not the CPU's). The bar is a
first byte under 20 ms.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import socket
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from invoke_latency import ROLE, api, free_port, start_lambdad, summary, wait_http

NODE = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('first');
  await new Promise((resolve) => setTimeout(resolve, event.work * 1000));
  responseStream.end('done');
});
"""

CUSTOM = """#!{python}
import http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
api = "/2018-06-01/runtime/invocation"
connection = http.client.HTTPConnection(host, int(port))
while True:
    connection.request("GET", api + "/next")
    answer = connection.getresponse()
    request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
    event = json.loads(answer.read())
    connection.putrequest("POST", api + "/" + request_id + "/response")
    connection.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"5\\r\\nfirst\\r\\n")
    time.sleep(event["work"])
    connection.send(b"4\\r\\ndone\\r\\n0\\r\\n\\r\\n")
    connection.getresponse().read()
"""


def zipped(files: dict[str, tuple[str, int]]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, (text, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, text)
    return base64.b64encode(buf.getvalue()).decode()


def create(port: int, name: str, runtime: str, handler: str, files: dict[str, Any]) -> None:
    document = {
        "FunctionName": name,
        "Runtime": runtime,
        "Role": ROLE,
        "Handler": handler,
        "MemorySize": 1769,
        "Timeout": 30,
        "Code": {"ZipFile": zipped(files)},
    }
    status, _, payload = api(port, "POST", "/2015-03-31/functions", document)
    if status != 201:
        raise RuntimeError(payload.decode())


def first_event_length(data: bytes) -> int | None:
    """The length of the first event-stream message, once its prelude is in ``data``."""
    return int.from_bytes(data[:4], "big") if len(data) >= 4 else None


def measure(port: int, name: str, count: int, work: float) -> tuple[list[float], list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    path = f"/2021-11-15/functions/{name}/response-streaming-invocations"
    body = json.dumps({"work": work}).encode()
    firsts, totals = [], []
    for _ in range(count + 1):  # the first one warms the function up
        began = time.perf_counter()
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{name}: HTTP {response.status} {response.read()!r}")
        data = b""
        while (size := first_event_length(data)) is None or len(data) < size:
            data += response.read1(65536)
        first = (time.perf_counter() - began) * 1000
        if b"PayloadChunk" not in data[:size]:
            raise RuntimeError(f"{name}: the first event is not a PayloadChunk: {data!r}")
        response.read()
        firsts.append(first)
        totals.append((time.perf_counter() - began) * 1000)
    conn.close()
    return firsts[1:], totals[1:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--work", type=float, default=1.0)
    args = parser.parse_args()
    port = free_port()
    python = os.path.realpath(sys.executable)
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        server = start_lambdad(port, Path(tmp), {})
        try:
            wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            create(port, "node", "nodejs20.x", "index.handler", {"index.js": (NODE, 0o644)})
            custom = {"bootstrap": (CUSTOM.format(python=python), 0o755)}
            create(port, "custom", "provided.al2023", "function.handler", custom)
            rows = {name: measure(port, name, args.count, args.work) for name in ("node", "custom")}
        finally:
            server.terminate()
            server.wait(30)
    print(f"{platform.node()} {platform.python_version()} count={args.count} work={args.work}s")
    print("| function | first byte p50 ms | first byte p99 ms | total p50 ms |")
    print("|---|---|---|---|")
    for name, (firsts, totals) in rows.items():
        first, total = summary(firsts), summary(totals)
        print(f"| {name} | {first['p50_ms']:.2f} | {first['p99_ms']:.2f} | {total['p50_ms']:.1f} |")


if __name__ == "__main__":
    main()
