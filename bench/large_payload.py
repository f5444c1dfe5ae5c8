"""Warm invoke latency while another client sends 6 MB payloads, beside the same without them.

Run: ``python bench/large_payload.py [--warm 3000] [--size-mb 6] [--sandbox linux|process]``.
It starts its own lambdad on a free port with a temporary data dir (as
``bench/invoke_latency.py`` does) and prints a Markdown table for docs/benchmarks.md.

- **floor**: synchronous invokes of a small Python echo function (``MemorySize`` 1,769 MB),
  one keep-alive HTTP/1.1 connection, after a warm-up, with no other traffic.
- **with_large_invokes**: the same, while a second client (a thread with its own connection)
  invokes another function back to back with a payload of about ``--size-mb`` MB: a JSON array
  of small objects, the costliest shape to parse per byte. That function returns a short
  constant, so the traffic is the request's way in (read, check, hand to the runtime).
- **with_large_dryruns**: the same with ``DryRun`` invocations of the large payload: only
  lambdad's own request path (read and check), no runtime.

Every stall of lambdad's event loop while it handles a large payload shows in the small
function's p99 and max. The large function's runtime parses each payload in its own process,
so on a machine with few CPUs part of the difference is CPU contention, not the loop.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from invoke_latency import (
    ECHO,
    create,
    free_port,
    post_loop,
    start_lambdad,
    summary,
    wait_http,
)

SINK = "def handler(event, context):\n    return 'ok'\n"


def large_payload(size_mb: float) -> bytes:
    """A JSON array of small objects, about ``size_mb`` MB (under the 6 MB invoke limit)."""
    item = {"id": 123456, "name": "item-123456", "ok": True, "v": 1.5}
    one = len(json.dumps(item)) + 2
    count = int(size_mb * 1024 * 1024 * 0.98) // one
    return json.dumps([item] * count).encode()


class LargeSender(threading.Thread):
    """Sends the large payload back to back on its own connection until stopped."""

    def __init__(self, port: int, name: str, payload: bytes, kind: str) -> None:
        super().__init__(daemon=True)
        self.port, self.payload = port, payload
        self.path = f"/2015-03-31/functions/{name}/invocations"
        self.headers = {"X-Amz-Invocation-Type": kind}
        self.expected = 204 if kind == "DryRun" else 200
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while not self.stop.is_set():
            began = time.perf_counter()
            conn.request("POST", self.path, body=self.payload, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != self.expected:
                self.error = f"HTTP {response.status}: {body[:200]!r}"
                return
            self.samples.append((time.perf_counter() - began) * 1000)
        conn.close()


def measure(port: int, count: int, sender: LargeSender | None) -> dict[str, object]:
    path = "/2015-03-31/functions/echo/invocations"
    if sender is not None:
        sender.start()
        deadline = time.monotonic() + 120
        while not sender.samples and sender.error is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the benchmark's own pacing: wait until the large traffic flows
        if sender.error:
            raise RuntimeError(sender.error)
    warm = post_loop(port, path, b'{"hello": "world"}', count)
    result: dict[str, object] = {**summary(warm), "max_ms": max(warm)}
    if sender is not None:
        sender.stop.set()
        sender.join(120)
        if sender.error:
            raise RuntimeError(sender.error)
        result["large"] = summary(sender.samples)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=3000)
    parser.add_argument("--size-mb", type=float, default=5.9)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--sandbox", choices=("linux", "process"))
    parser.add_argument("--runtime", default="python3.11")
    args = parser.parse_args()

    payload = large_payload(args.size_mb)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        server = start_lambdad(
            port, Path(tmp) / "data", {"LAMBDAD_SANDBOX": args.sandbox} if args.sandbox else {}
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            create(port, "echo", ECHO, args.runtime)
            create(port, "sink", SINK, args.runtime)
            post_loop(port, "/2015-03-31/functions/echo/invocations", b"{}", 300)  # warm-up
            post_loop(port, "/2015-03-31/functions/sink/invocations", payload, 2)
            results = {
                "floor": measure(port, args.warm, None),
                "with_large_invokes": measure(
                    port, args.warm, LargeSender(port, "sink", payload, "RequestResponse")
                ),
                "with_large_dryruns": measure(
                    port, args.warm, LargeSender(port, "sink", payload, "DryRun")
                ),
            }
        finally:
            server.terminate()
            server.wait(30)

    machine = (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}"
    )
    print(f"# {machine}, {time.strftime('%Y-%m-%d %H:%M')}, payload {len(payload)} bytes\n")
    print("| measure | n | warm p50 ms | warm p99 ms | warm max ms | large n | large p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for key, value in results.items():
        large = value.get("large")
        extra = "| | |"
        if isinstance(large, dict):
            extra = f"| {large['n']} | {large['p50_ms']:.1f} |"
        print(
            f"| {key} | {value['n']} | {value['p50_ms']:.3f} | {value['p99_ms']:.3f} "
            f"| {value['max_ms']:.1f} {extra}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
