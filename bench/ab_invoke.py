"""Two lambdads side by side, warm invokes sent to each in turn: a paired comparison that holds
up on a loaded machine.

Run: ``python bench/ab_invoke.py --a-src OLD/src --b-src NEW/src [--b-env LAMBDAD_METRICS=0]
[--warm 1500] [--rounds 5] [--sandbox linux]``. Both servers run at the same time, each with
its own data directory and an echo function (``MemorySize`` 1,769 MB, as in
``invoke_latency.py``); one client sends A, B, A, B, ... over a keep-alive connection to each,
so that whatever else the machine does at a moment slows both alike. Printed per round and
over all: warm invoke p50 and p99 for each side, B / A, and each lambdad's own CPU per invoke
(``/proc/<pid>/stat``). Sides swap which goes first every round.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from invoke_latency import (
    ECHO,
    cpu_seconds,
    create,
    free_port,
    percentile,
    start_lambdad,
    wait_http,
)

PATH = "/2015-03-31/functions/echo/invocations"


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def one(conn: http.client.HTTPConnection) -> float:
    began = time.perf_counter()
    conn.request("POST", PATH, body=b'{"hello": "world"}')
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
    args = parser.parse_args()

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
                create(ports[side], "echo", ECHO, args.runtime)
            conns = {side: connect(ports[side]) for side in "AB"}
            for _ in range(300):  # warm-up, both
                one(conns["A"])
                one(conns["B"])
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
                        samples[side].append(one(conns[side]))
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
