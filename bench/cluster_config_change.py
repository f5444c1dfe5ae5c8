"""How soon a configuration change made through one lambdad takes effect on another.

Run: ``PYTHONPATH=src python bench/cluster_config_change.py [--changes 200]``. Starts its own
PostgreSQL (tests/postgres_server.py, default durability) and two ``lambdad serve`` on it
(``LAMBDAD_STORE_URL``), each with its own data dir, as two API nodes. Prints a Markdown table
for docs/benchmarks.md.

One function; the second server reads its recursion setting (``GetFunctionRecursionConfig``,
answered from that server's cache) so it is cached there. Then, ``--changes`` times:
``PutFunctionRecursionConfig`` through the first server flips it (Allow / Terminate), and the
second server is asked, over one keep-alive connection and as fast as it answers, until it
answers the new value. Measured from the moment the first server's 200 arrived (the write is
committed) and from the moment the write was sent; the polling's own round trip (shown as
"one read") bounds the resolution.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invoke_latency import ECHO, create, free_port, percentile, start_lambdad, wait_http
from tests.postgres_server import PostgresServer, unavailable_reason

PATH = "/2024-08-31/functions/{name}/recursion-config"


class Connection:
    """One keep-alive HTTP connection to a server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, method: str, path: str, body: dict[str, str] | None = None) -> dict[str, str]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {payload!r}")
        answer: dict[str, str] = json.loads(payload)
        return answer


def measure(one: Connection, two: Connection, name: str, changes: int) -> dict[str, list[float]]:
    path = PATH.format(name=name)
    two.call("GET", path)
    found: dict[str, list[float]] = {"after": [], "from_call": [], "read": [], "polls": []}
    for i in range(changes):
        value = "Allow" if i % 2 == 0 else "Terminate"
        sent = time.perf_counter()
        one.call("PUT", path, {"RecursiveLoop": value})
        answered = time.perf_counter()
        polls = 0
        while True:
            began = time.perf_counter()
            seen = two.call("GET", path)["RecursiveLoop"]
            polls += 1
            found["read"].append((time.perf_counter() - began) * 1000)
            if seen == value:
                break
            if time.perf_counter() - sent > 10:
                raise RuntimeError(f"change {i} not seen within 10 s")
        now = time.perf_counter()
        found["after"].append((now - answered) * 1000)
        found["from_call"].append((now - sent) * 1000)
        found["polls"].append(float(polls))
    return found


def main(changes: int) -> None:
    pg = PostgresServer(durable=True)
    pg.start()
    servers = []
    try:
        url = pg.database()
        with tempfile.TemporaryDirectory() as tmp:
            ports = [free_port(), free_port()]
            env = {"LAMBDAD_STORE_URL": url, "LAMBDAD_CONSOLE_PORT": "-1"}
            for i, port in enumerate(ports):
                servers.append(start_lambdad(port, Path(tmp) / f"node{i}", env))
            for port in ports:
                wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            create(ports[0], "cfg", ECHO, "python3.11")
            found = measure(Connection(ports[0]), Connection(ports[1]), "cfg", changes)
    finally:
        for process in servers:
            process.terminate()
            process.wait(30)
        pg.close()
    print(f"{changes} changes; ms\n")
    print("| what | p50 | p99 | max |")
    print("|---|---|---|---|")
    rows = [
        ("seen on the other server, after the write's 200", found["after"]),
        ("seen on the other server, from the write's call", found["from_call"]),
        ("one read of the other server (the polling's resolution)", found["read"]),
    ]
    for label, samples in rows:
        print(
            f"| {label} | {percentile(samples, 50):.2f} | {percentile(samples, 99):.2f} "
            f"| {max(samples):.2f} |"
        )
    print(
        f"\nreads needed per change: p50 {percentile(found['polls'], 50):.0f}, "
        f"max {max(found['polls']):.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=200)
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"no PostgreSQL here: {reason}")
    main(parser.parse_args().changes)
