"""Warm function URL requests beside a direct Invoke of the same function and a bare loopback
round trip, in one run.

Run: ``python bench/function_url.py [--warm 3000] [--sandbox linux|process]``. It starts its
own lambdad on a free port with a temporary data dir, creates one Python function answering a
fixed ``{"hello": "world"}`` and a URL for it, and measures over HTTP/1.1 with one keep-alive
connection per path (``http.client``), after a warm-up:

- ``loopback_floor``: a bare aiohttp server answering a fixed body;
- ``direct_invoke``: ``POST /2015-03-31/functions/<name>/invocations``;
- ``function_url``: ``POST /`` with the URL's ``Host`` (the event built, the function invoked,
  the response inferred).

Direct and URL requests alternate in blocks of 100 so that drift on a shared machine hits both
alike. It also times, in process, what the URL routing adds to every API request (the
middleware's Host test, with a handler that does nothing). Prints a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from invoke_latency import (
    BARE_SERVER,
    api,
    create,
    free_port,
    post_loop,
    start_lambdad,
    summary,
    wait_http,
)

HELLO = 'def handler(event, context):\n    return {"hello": "world"}\n'
BLOCK = 100


def url_loop(port: int, host: str, count: int) -> list[float]:
    """``count`` URL requests on one keep-alive connection (ms each)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        conn.request("POST", "/", body=b'{"hello": "world"}', headers={"Host": host})
        response = conn.getresponse()
        response.read()
        samples.append((time.perf_counter() - began) * 1000)
        if response.status != 200:
            raise RuntimeError(f"URL: HTTP {response.status}")
    conn.close()
    return samples


def interleaved(port: int, host: str, count: int) -> tuple[list[float], list[float]]:
    direct: list[float] = []
    url: list[float] = []
    path = "/2015-03-31/functions/hello/invocations"
    while len(direct) < count:
        direct += post_loop(port, path, b'{"hello": "world"}', BLOCK)
        url += url_loop(port, host, BLOCK)
    return direct, url


def middleware_cost(count: int = 200_000) -> float:
    """Microseconds the URL middleware adds to one API request (in process)."""
    from aiohttp.test_utils import make_mocked_request
    from aiohttp.web import Response

    from lambdad.api.url_front import url_middleware

    request = make_mocked_request("POST", "/2015-03-31/functions/x/invocations")
    answer = Response()

    async def handler(_: Any) -> Response:
        return answer

    async def run() -> float:
        began = time.perf_counter()
        for _ in range(count):
            await url_middleware(request, handler)
        with_mw = time.perf_counter() - began
        began = time.perf_counter()
        for _ in range(count):
            await handler(request)
        return (with_mw - (time.perf_counter() - began)) / count * 1e6

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=3000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--sandbox", choices=("linux", "process"))
    parser.add_argument("--runtime", default="python3.11")
    args = parser.parse_args()

    bare_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        server = start_lambdad(
            port, Path(tmp) / "data", {"LAMBDAD_SANDBOX": args.sandbox} if args.sandbox else {}
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            create(port, "hello", HELLO, args.runtime)
            status, _, payload = api(
                port, "POST", "/2021-10-31/functions/hello/url", {"AuthType": "NONE"}
            )
            if status != 201:
                raise RuntimeError(payload.decode())
            host = json.loads(payload)["FunctionUrl"].split("//")[1].rstrip("/")
            for sid, action, extra in (
                ("url", "lambda:InvokeFunctionUrl", {"FunctionUrlAuthType": "NONE"}),
                ("invoke", "lambda:InvokeFunction", {}),
            ):  # a public URL needs both grants (as on AWS)
                body = {"StatementId": sid, "Action": action, "Principal": "*", **extra}
                status, _, payload = api(port, "POST", "/2015-03-31/functions/hello/policy", body)
                if status != 201:
                    raise RuntimeError(payload.decode())
            time.sleep(0.5)  # let the bare server finish starting too
            post_loop(bare_port, "/floor", b'{"hello": "world"}', 200)
            floor = post_loop(bare_port, "/floor", b'{"hello": "world"}', args.warm)
            interleaved(port, host, 300)  # warm-up
            direct, url = interleaved(port, host, args.warm)
        finally:
            for proc in (server, bare):
                proc.terminate()
                proc.wait(30)

    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "loopback_floor": summary(floor),
        "direct_invoke": summary(direct),
        "function_url": summary(url),
        "url_minus_direct_p50_ms": summary(url)["p50_ms"] - summary(direct)["p50_ms"],
        "middleware_us_per_api_request": middleware_cost(),
    }
    print(f"# {results['machine']}, {results['date']}, {args.runtime}\n")
    print("| measure | n | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|")
    for key, value in results.items():
        if isinstance(value, dict):
            print(
                f"| {key} | {value['n']} | {value['p50_ms']:.3f} | {value['p99_ms']:.3f} "
                f"| {value['mean_ms']:.3f} |"
            )
    print(f"\nURL p50 minus direct p50: {results['url_minus_direct_p50_ms']:.3f} ms")
    print(f"URL routing per API request: {results['middleware_us_per_api_request']:.3f} µs")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
