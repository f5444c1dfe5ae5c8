"""Durable ``Event`` accepts of a real ``lambdad serve``, beside this machine's HTTP floor.

Run: ``python bench/async_accepts.py [--events 20000] [--connections 64]``. It starts its own
lambdad on a free port with a temporary data dir (the durable SQLite queue, ``synchronous=FULL``,
group commit) and a bare aiohttp server that answers every POST with an empty 202, and prints a
Markdown table for docs/benchmarks.md.

The client is one asyncio process keeping ``--connections`` HTTP/1.1 keep-alive connections
busy, each sending its next request as soon as the previous answer arrived (a closed loop), with
a minimal hand-written HTTP/1.1 exchange so the client costs little of the two CPUs.

- floor: the client against the bare server (what this client and loopback allow).
- accept, held: the same client against a lambdad whose dispatcher is not started (a patch in
  this script), so the accept path (HTTP, resolve, durable put) has the CPUs to itself.
- accept, running: after a warm-up of 20 events per connection (all run, so the environments exist),
  ``Invoke`` with ``X-Amz-Invocation-Type: Event`` of a no-op Python function; every
  202 means the event was committed to the queue's database first. Latency p50/p99 and
  accepted events per second.
- queue alone: ``SqliteQueue.put`` in this process from as many concurrent tasks as there are
  connections (the same durability, no HTTP): what the queue itself allows.
- end to end: events per second from the first request until every event has run (counted by
  the REPORT lines of the function's log, read through ``/_lambdad/logs``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from invoke_latency import free_port, percentile, wait_http

ROLE = "arn:aws:iam::000000000000:role/bench"
NOOP = "def handler(event, context):\n    return None\n"
INVOKE = "/2015-03-31/functions/noop/invocations"

#: ``lambdad serve`` with the dispatcher's start replaced by nothing (accepts only).
HELD_SERVE = """
import sys
from lambdad.invoke.dispatcher import Dispatcher
from lambdad.cli.main import main

async def held(self):
    pass

Dispatcher.start = held
sys.exit(main())
"""

BARE_SERVER = """
import sys
from aiohttp import web

async def handle(request):
    await request.read()
    return web.Response(status=202)

app = web.Application()
app.router.add_post("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


def create_noop(port: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", NOOP)
    status, payload = api(
        port,
        "POST",
        "/2015-03-31/functions",
        {
            "FunctionName": "noop",
            "Runtime": f"python{sys.version_info[0]}.{sys.version_info[1]}",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()},
        },
    )
    if status != 201:
        raise RuntimeError(payload.decode())
    status, payload = api(port, "POST", INVOKE, {})  # the first environment, made ahead
    if status != 200:
        raise RuntimeError(payload.decode())


def request_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Amz-Invocation-Type: Event\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def connection_loop(
    port: int, request: bytes, remaining: list[int], samples: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while remaining[0] > 0:
        remaining[0] -= 1
        began = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        samples.append((time.perf_counter() - began) * 1000)
        if status != 202:
            raise RuntimeError(f"HTTP {status}: {head!r}")
    writer.close()
    await writer.wait_closed()


async def fire(port: int, path: str, count: int, connections: int) -> tuple[list[float], float]:
    """Send ``count`` requests over ``connections`` connections: (latencies ms, seconds)."""
    remaining, samples = [count], []
    request = request_bytes(path, b'{"hello": "world"}')
    began = time.perf_counter()
    await asyncio.gather(
        *(connection_loop(port, request, remaining, samples) for _ in range(connections))
    )
    return samples, time.perf_counter() - began


async def queue_alone(directory: Path, count: int, producers: int) -> tuple[list[float], float]:
    """``count`` durable puts from ``producers`` tasks: (latencies ms, seconds)."""
    from lambdad.store.base import QueuedEvent
    from lambdad.store.sqlite_queue import SqliteQueue

    queue = SqliteQueue(directory / "queue.db")
    await queue.open()
    remaining, samples = [count], []

    async def producer() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            event = QueuedEvent(str(remaining[0]), "noop", None, b'{"hello": "world"}', "r", 0.0)
            began = time.perf_counter()
            await queue.put(event)
            samples.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(producers)))
    seconds = time.perf_counter() - began
    await queue.close()
    return samples, seconds


def start_lambdad(port: int, data_dir: Path, *, held: bool = False) -> subprocess.Popen[bytes]:
    """``lambdad serve``; ``held``: with its dispatcher never started, so nothing runs."""
    entry = (
        HELD_SERVE if held else "import sys; from lambdad.cli.main import main; sys.exit(main())"
    )
    return subprocess.Popen(
        [sys.executable, "-c", entry, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env={**os.environ, "LAMBDAD_LOG_LEVEL": "WARNING"},
    )


def measure_held(data_dir: Path, events: int, connections: int) -> tuple[list[float], float]:
    """Accepts alone: the same requests to a lambdad whose dispatcher does not run them."""
    port = free_port()
    server = start_lambdad(port, data_dir, held=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
        create_noop(port)
        asyncio.run(fire(port, INVOKE, 2000, connections))  # warm-up
        return asyncio.run(fire(port, INVOKE, events, connections))
    finally:
        server.terminate()
        server.wait(30)


def count_reports(port: int, expected: int, timeout: float, after: int = 0) -> tuple[int, int]:
    """Poll the function's log (from position ``after``) until ``expected`` REPORT lines (runs)
    are there: (how many were, the log position reached)."""
    reports = 0
    deadline = time.monotonic() + timeout
    while reports < expected and time.monotonic() < deadline:
        url = f"http://127.0.0.1:{port}/_lambdad/logs?function=noop&after={after}&wait=1"
        with urllib.request.urlopen(url, timeout=30) as response:
            page = json.loads(response.read())
        reports += sum(e["message"].startswith("REPORT ") for e in page["events"])
        after = page["next"]
    return reports, after


def row(name: str, samples: list[float], seconds: float) -> dict[str, Any]:
    return {
        "measure": name,
        "n": len(samples),
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "mean_ms": statistics.fmean(samples),
        "per_s": len(samples) / seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    bare_port, lambdad_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        alone, alone_s = asyncio.run(queue_alone(Path(tmp), args.events, args.connections))
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        held, held_s = measure_held(Path(tmp) / "held", args.events, args.connections)
        server = start_lambdad(lambdad_port, Path(tmp) / "data")
        try:
            wait_http(f"http://127.0.0.1:{lambdad_port}/_lambdad/health")
            create_noop(lambdad_port)
            # Warm-up: enough events that the dispatcher's environments all exist (cold starts
            # are not what this measures), all run before the measured phase.
            warm = 20 * args.connections
            asyncio.run(fire(lambdad_port, INVOKE, warm, args.connections))
            _, position = count_reports(lambdad_port, 1 + warm, 600)
            wait_port(bare_port)
            asyncio.run(fire(bare_port, "/floor", 2000, args.connections))  # warm-up
            floor, floor_s = asyncio.run(fire(bare_port, "/floor", args.events, args.connections))
            ran: list[int] = []
            counter = threading.Thread(
                target=lambda: ran.append(
                    count_reports(lambdad_port, args.events, 600, position)[0]
                )
            )
            began = time.perf_counter()
            counter.start()
            accepts, accept_s = asyncio.run(
                fire(lambdad_port, INVOKE, args.events, args.connections)
            )
            counter.join()
            all_ran_s = time.perf_counter() - began
        finally:
            for proc in (server, bare):
                proc.terminate()
                proc.wait(30)

    rows = [
        row("floor_bare_202", floor, floor_s),
        row("event_accept_durable_held", held, held_s),
        row("event_accept_durable_running", accepts, accept_s),
        row("queue_put_alone", alone, alone_s),
    ]
    results = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "connections": args.connections,
        "rows": rows,
        "end_to_end": {"events": args.events, "ran": ran[0], "seconds": all_ran_s},
    }
    print(f"# {results['machine']}, {results['date']}, {args.connections} connections\n")
    print("| measure | n | p50 ms | p99 ms | mean ms | per second |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['measure']} | {r['n']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['mean_ms']:.3f} | {r['per_s']:,.0f} |"
        )
    print(f"| end_to_end (accepted and ran) | {ran[0]} | | | | {(ran[0]) / all_ran_s:,.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
