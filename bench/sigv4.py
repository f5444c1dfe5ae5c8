"""What SigV4 verification adds per request: in process, and end to end on a real lambdad.

Run: ``python bench/sigv4.py [--calls 20000] [--invokes 2000]``. Prints a Markdown table for
docs/benchmarks.md.

- in process: ``SigV4Verifier.verify`` of a warm Invoke as botocore signs it (the key file's
  ``stat`` included, the body hash included), timed per call; and the ``stat`` alone.
- end to end: two lambdads started by the benchmark, one open (``LAMBDAD_AUTH=open``), one
  verifying (``sigv4``), each with the same Python echo function; warm synchronous invokes over
  one keep-alive connection, signed by botocore before the clock starts, the two servers
  taking turns in blocks so that drift of the machine hits both alike. The added cost is the
  difference of the p50s.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from invoke_latency import ECHO, create, free_port, percentile, start_lambdad, wait_http

from lambdad.api.sigv4 import SigV4Verifier, payload_sha256
from lambdad.store.access_keys import KeyFile, KeyRing

PATH = "/2015-03-31/functions/echo/invocations"
BODY = b'{"hello": "world"}'


def signed_headers(port: int, key_id: str, secret: str) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=f"http://127.0.0.1:{port}{PATH}",
        data=BODY,
        headers={"X-Amz-Invocation-Type": "RequestResponse", "Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(key_id, secret), "lambda", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def in_process(calls: int) -> tuple[list[float], list[float]]:
    """Per-call times (µs) of verify, and of the key file's stat alone."""
    with tempfile.TemporaryDirectory() as tmp:
        key = KeyFile(Path(tmp)).create("111122223333", "bench")
        verifier = SigV4Verifier(KeyRing(Path(tmp)))
        headers = CIMultiDict(signed_headers(9000, key.access_key_id, key.secret_access_key))
        headers["Host"] = "127.0.0.1:9000"
        verify, stat = [], []
        for _ in range(calls):
            began = time.perf_counter()
            verifier.verify("POST", PATH, "", headers, payload_sha256(BODY))
            verify.append((time.perf_counter() - began) * 1e6)
            began = time.perf_counter()
            os.stat(Path(tmp) / "access-keys.json")
            stat.append((time.perf_counter() - began) * 1e6)
        return verify, stat


def invoke_block(conn: http.client.HTTPConnection, headers: list[dict[str, str]]) -> list[float]:
    samples = []
    for head in headers:
        began = time.perf_counter()
        conn.request("POST", PATH, body=BODY, headers=head)
        response = conn.getresponse()
        response.read()
        samples.append((time.perf_counter() - began) * 1000)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    return samples


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def end_to_end(invokes: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        open_port, signed_port = free_port(), free_port()
        data = Path(tmp) / "signed"
        key = KeyFile(data).create("111122223333", "bench")
        servers = [
            start_lambdad(open_port, Path(tmp) / "open", {"LAMBDAD_AUTH": "open"}),
            start_lambdad(signed_port, data, {"LAMBDAD_AUTH": "sigv4"}),
        ]
        try:
            for port in (open_port, signed_port):
                wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            create(open_port, "echo", ECHO, "python3.11")
            _create_signed(signed_port, key.access_key_id, key.secret_access_key)
            open_conn, signed_conn = connect(open_port), connect(signed_port)
            plain = {"X-Amz-Invocation-Type": "RequestResponse", "Content-Type": "application/json"}
            opened: list[float] = []
            verified: list[float] = []
            block = 100
            invoke_block(open_conn, [plain] * block)  # warm-up
            warm = [signed_headers(signed_port, key.access_key_id, key.secret_access_key)]
            invoke_block(signed_conn, warm * block)
            for _ in range(max(1, invokes // block)):
                heads = [
                    signed_headers(signed_port, key.access_key_id, key.secret_access_key)
                    for _ in range(block)
                ]
                opened += invoke_block(open_conn, [plain] * block)
                verified += invoke_block(signed_conn, heads)
            return opened, verified
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)


def _create_signed(port: int, key_id: str, secret: str) -> None:
    """CreateFunction of the echo function on the verifying server, through boto3."""
    import boto3

    client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    from invoke_latency import MEMORY_MB, ROLE, zip_of

    client.create_function(
        FunctionName="echo",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        MemorySize=MEMORY_MB,
        Code={"ZipFile": zip_of(ECHO)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--invokes", type=int, default=2000)
    args = parser.parse_args()
    verify, stat = in_process(args.calls)
    opened, verified = end_to_end(args.invokes)
    rows = [
        ("verify() in process (µs)", verify, 1),
        ("key file stat alone (µs)", stat, 2),
        ("warm invoke, open (ms)", opened, 3),
        ("warm invoke, sigv4 (ms)", verified, 3),
    ]
    print("| measure | p50 | p99 |")
    print("|---|---|---|")
    for label, samples, digits in rows:
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(f"| {label} | {p50:.{digits}f} | {p99:.{digits}f} |")
    added = percentile(verified, 50) - percentile(opened, 50)
    print(f"| added by verification, p50 (ms) | {added:.3f} | |")


if __name__ == "__main__":
    main()
