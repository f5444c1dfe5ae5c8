"""Two lambdads side by side, warm invokes sent to each in turn: a paired comparison that holds
up on a loaded machine.

Run: ``python bench/ab_invoke.py --a-src OLD/src --b-src NEW/src [--b-env LAMBDAD_METRICS=0]
[--warm 1500] [--rounds 5] [--sandbox linux] [--b-tracing Active [--b-sampled] [--otlp-sink]]``.
``--b-tracing`` creates B's function with that ``TracingConfig.Mode``; ``--b-sampled`` sends
every B invoke a caller's ``Sampled=1`` trace header (every one traced: the worst case), and
every A invoke one with ``Sampled=0``;
``--otlp-sink`` gives B an OTLP/HTTP receiver (a process of its own) to export to.
``--postgres`` starts a PostgreSQL server (tests/postgres_server.py, its default durability) and
gives each side a database of its own as ``LAMBDAD_STORE_URL`` (cluster mode's store).

Both servers run at the same time, each with its own data directory and an echo function
(``MemorySize`` 1,769 MB, as in ``invoke_latency.py``); one client sends A, B, A, B, ... over
a keep-alive connection to each, so that whatever else the machine does at a moment slows both
alike. Printed per round and over all: warm invoke p50 and p99 for each side, B / A, and each
lambdad's own CPU per invoke (``/proc/<pid>/stat``). Sides swap which goes first every round.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from invoke_latency import (
    ECHO,
    MEMORY_MB,
    ROLE,
    api,
    cpu_seconds,
    free_port,
    percentile,
    start_lambdad,
    wait_http,
    zip_of,
)

PATH = "/2015-03-31/functions/echo/invocations"
#: An OTLP/HTTP receiver that reads each export and answers 200 (``--otlp-sink``), keeping
#: the connection open as collectors do (HTTP/1.1), so lambdad's exporter reuses it.
SINK = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def create(port: int, runtime: str, tracing: str | None) -> None:
    """The echo function, with ``TracingConfig.Mode`` ``tracing`` when given."""
    body: dict[str, object] = {
        "FunctionName": "echo",
        "Runtime": runtime,
        "Role": ROLE,
        "Handler": "app.handler",
        "MemorySize": MEMORY_MB,
        "Code": {"ZipFile": base64.b64encode(zip_of(ECHO)).decode()},
    }
    if tracing:
        body["TracingConfig"] = {"Mode": tracing}
    status, _, payload = api(port, "POST", "/2015-03-31/functions", body)
    if status != 201:
        raise RuntimeError(payload.decode())


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def one(conn: http.client.HTTPConnection, headers: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    conn.request("POST", PATH, body=b'{"hello": "world"}', headers=headers or {})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return (time.perf_counter() - began) * 1000


def env_of(pairs: list[str], src: str, sandbox: str | None) -> dict[str, str]:
    env = {"PYTHONPATH": src}
    if sandbox:
        env["LAMBDAD_SANDBOX"] = sandbox
    for pair in pairs:
        name, _, value = pair.partition("=")
        env[name] = value
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a-src", required=True, help="PYTHONPATH of side A (its src)")
    parser.add_argument("--b-src", required=True, help="PYTHONPATH of side B")
    parser.add_argument("--a-env", action="append", default=[], help="NAME=VALUE for A")
    parser.add_argument("--b-env", action="append", default=[], help="NAME=VALUE for B")
    parser.add_argument("--warm", type=int, default=1500, help="invokes per side and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sandbox", choices=("linux", "process"))
    parser.add_argument("--runtime", default="python3.11")
    parser.add_argument("--b-tracing", choices=("Active", "PassThrough"))
    parser.add_argument("--b-sampled", action="store_true", help="Sampled=1 on every B invoke")
    parser.add_argument("--otlp-sink", action="store_true", help="an OTLP receiver for B")
    parser.add_argument("--postgres", action="store_true", help="each side on a PostgreSQL store")
    args = parser.parse_args()
    pg = None
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).parent.parent))
        from tests.postgres_server import PostgresServer

        pg = PostgresServer(durable=True)
        pg.start()
        args.a_env.append(f"LAMBDAD_STORE_URL={pg.database()}")
        args.b_env.append(f"LAMBDAD_STORE_URL={pg.database()}")
    sink = None
    if args.otlp_sink:
        sink_port = free_port()
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
        args.b_env.append(f"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{sink_port}")
    try:
        return compare(args)
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(30)
        if pg is not None:
            pg.close()


def headers_of(side: str, args: argparse.Namespace) -> dict[str, str]:
    """Under ``--b-sampled``, a new caller's trace header for each invoke: sampled for B, not
    for A (so both parse one, and only B traces)."""
    if not args.b_sampled:
        return {}
    root = f"1-{int(time.time()):08x}-{os.urandom(12).hex()}"
    sampled = 1 if side == "B" else 0
    return {"X-Amzn-Trace-Id": f"Root={root};Parent={os.urandom(8).hex()};Sampled={sampled}"}


def compare(args: argparse.Namespace) -> int:

    ports = {"A": free_port(), "B": free_port()}
    envs = {
        "A": env_of(args.a_env, args.a_src, args.sandbox),
        "B": env_of(args.b_env, args.b_src, args.sandbox),
    }
    with tempfile.TemporaryDirectory(prefix="lambdad-ab-") as tmp:
        servers = {side: start_lambdad(ports[side], Path(tmp) / side, envs[side]) for side in "AB"}
        try:
            for side in "AB":
                wait_http(f"http://127.0.0.1:{ports[side]}/_lambdad/health")
                create(ports[side], args.runtime, args.b_tracing if side == "B" else None)
            conns = {side: connect(ports[side]) for side in "AB"}
            for _ in range(300):  # warm-up, both
                one(conns["A"], headers_of("A", args))
                one(conns["B"], headers_of("B", args))
            everything: dict[str, list[float]] = {"A": [], "B": []}
            cpu_all: dict[str, list[float]] = {"A": [], "B": []}
            print("| round | A p50 | B p50 | B/A p50 | A p99 | B p99 | A CPU µs | B CPU µs |")
            print("|---|---|---|---|---|---|---|---|")
            for round_no in range(args.rounds):
                order = "AB" if round_no % 2 == 0 else "BA"
                samples: dict[str, list[float]] = {"A": [], "B": []}
                cpu = {side: cpu_seconds(servers[side].pid) for side in "AB"}
                for _ in range(args.warm):
                    for side in order:
                        samples[side].append(one(conns[side], headers_of(side, args)))
                for side in "AB":
                    spent = (cpu_seconds(servers[side].pid) - cpu[side]) / args.warm * 1e6
                    cpu_all[side].append(spent)
                    everything[side] += samples[side]
                a50, b50 = percentile(samples["A"], 50), percentile(samples["B"], 50)
                print(
                    f"| {round_no + 1} | {a50:.3f} | {b50:.3f} | {b50 / a50:.3f} "
                    f"| {percentile(samples['A'], 99):.3f} | {percentile(samples['B'], 99):.3f} "
                    f"| {cpu_all['A'][-1]:.0f} | {cpu_all['B'][-1]:.0f} |"
                )
            a50, b50 = percentile(everything["A"], 50), percentile(everything["B"], 50)
            a99, b99 = percentile(everything["A"], 99), percentile(everything["B"], 99)
            print(
                f"| all | {a50:.3f} | {b50:.3f} | {b50 / a50:.3f} | {a99:.3f} | {b99:.3f} "
                f"| {statistics.median(cpu_all['A']):.0f} | {statistics.median(cpu_all['B']):.0f} |"
            )
            print(f"\nB/A p99: {b99 / a99:.3f}; load average {os.getloadavg()[0]:.1f}")
        finally:
            for server in servers.values():
                server.terminate()
                server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
