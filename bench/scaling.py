"""Scaling of a real ``lambdad serve`` (issue 4 item 5), each measure beside its floor.

Run as root: ``python bench/scaling.py [--burst 100] [--seconds 10] [--threads 8]``. It starts its
own lambdad (Linux sandbox, default settings) on a free port with a temporary data dir, and a
bare aiohttp server for the floors, and prints a Markdown table for docs/benchmarks.md.

- burst: one Python echo function (``MemorySize`` 256), then ``--burst`` synchronous invokes
  at once (one thread and one connected ``http.client`` connection each, released together by a
  ``threading.Barrier``, ``X-Amz-Log-Type: Tail``): the time until the last answer, p50/p99 of
  the latencies, how many distinct environments answered (the handler returns a token made at
  import) and how many invokes reported an ``Init Duration``. Floor: the same client pattern
  against the bare aiohttp server.
- idle PSS: after the burst, once the cells' process count is stable, the sum of ``Pss:`` in
  ``/proc/<pid>/smaps_rollup`` over every process of this lambdad's cells (cgroup v1 ``pids``
  hierarchy, cells whose processes descend from this server), divided by the number of
  environments. Floor: one bare ``python3 -c "import time; time.sleep(30)"``.
- sustained: ``--threads`` client threads, each with a keep-alive connection, invoking an echo
  function (``MemorySize`` 1,769, one vCPU) back to back for ``--seconds``: invokes per second
  and p50/p99. Floor: the same against the bare aiohttp server.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from invoke_latency import (
    BARE_SERVER,
    ROLE,
    api,
    doctor,
    free_port,
    percentile,
    start_lambdad,
    wait_http,
    wait_made_ahead,
    zip_of,
)

TOKEN_ECHO = (
    "import os, uuid\n"
    "TOKEN = uuid.uuid4().hex\n"
    "def handler(event, context):\n"
    "    return {'token': TOKEN, 'pid': os.getpid()}\n"
)
BODY = b'{"hello": "world"}'
PIDS_ROOT = Path("/sys/fs/cgroup/pids/lambdad")


def create(port: int, name: str, memory_mb: int) -> None:
    status, _, payload = api(
        port,
        "POST",
        "/2015-03-31/functions",
        {
            "FunctionName": name,
            "Runtime": f"python{sys.version_info[0]}.{sys.version_info[1]}",
            "Role": ROLE,
            "Handler": "app.handler",
            "MemorySize": memory_mb,
            "Timeout": 60,
            "Code": {"ZipFile": base64.b64encode(zip_of(TOKEN_ECHO)).decode()},
        },
    )
    if status != 201:
        raise RuntimeError(payload.decode())


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def burst(port: int, path: str, count: int) -> tuple[float, list[float], list[dict[str, str]]]:
    """``count`` invokes released at once; (ms until the last answer, latencies, answers)."""
    conns = [connect(port) for _ in range(count)]
    barrier = threading.Barrier(count + 1)
    latencies: list[float] = [0.0] * count
    answers: list[dict[str, str]] = [{} for _ in range(count)]
    ends: list[float] = [0.0] * count
    errors: list[str] = []

    def one(index: int) -> None:
        conn = conns[index]
        barrier.wait()
        began = time.perf_counter()
        try:
            conn.request("POST", path, body=BODY, headers={"X-Amz-Log-Type": "Tail"})
            response = conn.getresponse()
            payload = response.read()
            ends[index] = time.perf_counter()
            latencies[index] = (ends[index] - began) * 1000
            if response.status != 200:
                errors.append(f"HTTP {response.status}: {payload[:200]!r}")
                return
            answers[index] = {
                "body": payload.decode(),
                "log": base64.b64decode(response.getheader("X-Amz-Log-Result") or "").decode(),
                "error": response.getheader("X-Amz-Function-Error") or "",
            }
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    released = time.perf_counter()
    for thread in threads:
        thread.join()
    for conn in conns:
        conn.close()
    if errors:
        raise RuntimeError(f"{len(errors)} of {count} failed, first: {errors[0]}")
    return (max(ends) - released) * 1000, latencies, answers


def sustained(port: int, path: str, threads: int, seconds: float) -> tuple[int, list[float]]:
    """Back-to-back invokes from ``threads`` keep-alive clients for ``seconds``."""
    samples: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    stop_at = [0.0]
    errors: list[str] = []

    def loop(index: int) -> None:
        conn = connect(port)
        mine = samples[index]
        barrier.wait()
        end = stop_at[0]
        try:
            while True:
                began = time.perf_counter()
                if began >= end:
                    break
                conn.request("POST", path, body=BODY)
                response = conn.getresponse()
                response.read()
                mine.append((time.perf_counter() - began) * 1000)
                if response.status != 200:
                    errors.append(f"HTTP {response.status}")
                    break
        except Exception as exc:
            errors.append(repr(exc))
        conn.close()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    stop_at[0] = time.perf_counter() + seconds
    barrier.wait()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(f"sustained: {errors[0]}")
    flat = [s for mine in samples for s in mine]
    return len(flat), flat


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        pid = parent_of(pid)
    return False


def our_cells(server_pid: int) -> dict[str, list[int]]:
    """This server's cells (cgroup v1 pids hierarchy): cell directory -> its processes."""
    cells: dict[str, list[int]] = {}
    instances = [p for p in PIDS_ROOT.iterdir() if p.is_dir()] if PIDS_ROOT.is_dir() else []
    try:
        found = [procs for instance in instances for procs in instance.glob("*/cgroup.procs")]
    except FileNotFoundError:  # another lambdad on this host removed its instance meanwhile
        return our_cells(server_pid)
    for procs in found:
        try:
            pids = [int(p) for p in procs.read_text().split()]
        except OSError:
            continue
        if pids and any(descends_from(p, server_pid) for p in pids):
            cells[str(procs.parent)] = pids
    return cells


def wait_idle(server_pid: int, stable_for: float = 1.0, timeout: float = 30.0) -> None:
    """Poll until the cells' process set has not changed for ``stable_for`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        now = sorted((k, tuple(sorted(v))) for k, v in our_cells(server_pid).items())
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= stable_for:
            return
        time.sleep(0.1)
    raise RuntimeError("the cells did not settle")


def bare_python_pss() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)  # past start-up, into the sleep
        return pss_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)


def row(name: str, n: object, samples: list[float] | None, extra: str) -> str:
    if samples:
        p50, p99 = f"{percentile(samples, 50):.2f}", f"{percentile(samples, 99):.2f}"
    else:
        p50 = p99 = ""
    return f"| {name} | {n} | {p50} | {p99} | {extra} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (the Linux sandbox)")

    bare_port, lambdad_port = free_port(), free_port()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        server = start_lambdad(lambdad_port, Path(tmp) / "data", {"LAMBDAD_SANDBOX": "linux"})
        try:
            wait_http(f"http://127.0.0.1:{lambdad_port}/_lambdad/health")
            results["sandbox"] = doctor(lambdad_port)["sandbox"]["kind"]
            time.sleep(0.5)  # let the bare server finish starting too
            # The spare cells and the cells' networks made ahead, as on a server up for a while.
            results["made_ahead"] = wait_made_ahead(lambdad_port)

            # 1. burst of cold invokes, beside the same burst against the bare server
            burst(bare_port, "/floor", args.burst)  # warm-up of the floor server
            floor_total, floor_lat, _ = burst(bare_port, "/floor", args.burst)
            create(lambdad_port, "burst", 256)
            total, lat, answers = burst(
                lambdad_port, "/2015-03-31/functions/burst/invocations", args.burst
            )
            tokens = {json.loads(a["body"])["token"] for a in answers}
            inits = sum("Init Duration:" in a["log"] for a in answers)
            failed = sum(bool(a["error"]) for a in answers)
            results["burst"] = {
                "n": args.burst,
                "last_answer_ms": total,
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
                "environments": len(tokens),
                "init_durations": inits,
                "function_errors": failed,
                "latencies_ms": sorted(round(x, 2) for x in lat),
                "init_durations_ms": sorted(
                    float(a["log"].split("Init Duration: ")[1].split(" ms")[0])
                    for a in answers
                    if "Init Duration: " in a["log"]
                ),
            }
            results["burst_floor"] = {
                "n": args.burst,
                "last_answer_ms": floor_total,
                "p50_ms": percentile(floor_lat, 50),
                "p99_ms": percentile(floor_lat, 99),
            }

            # 2. memory per idle environment
            wait_idle(server.pid)
            cells = our_cells(server.pid)
            total_kb = sum(pss_kb(p) for pids in cells.values() for p in pids)
            runtime_cells = {k: v for k, v in cells.items() if len(v) > 1}
            results["idle_pss"] = {
                "cells": len(cells),
                "cells_with_runtime": len(runtime_cells),
                "processes": sum(len(v) for v in cells.values()),
                "environments": len(tokens),
                "total_kb": total_kb,
                "per_environment_kb": total_kb / max(1, len(tokens)),
            }
            results["idle_pss_floor_kb"] = bare_python_pss()

            # 3. sustained warm invokes
            create(lambdad_port, "warm", 1769)
            warm_path = "/2015-03-31/functions/warm/invocations"
            sustained(lambdad_port, warm_path, args.threads, 1.0)  # environments up, warm
            sustained(bare_port, "/floor", args.threads, 1.0)
            n_floor, floor_s = sustained(bare_port, "/floor", args.threads, args.seconds)
            n_warm, warm_s = sustained(lambdad_port, warm_path, args.threads, args.seconds)
            results["sustained"] = {
                "n": n_warm,
                "per_second": n_warm / args.seconds,
                "p50_ms": percentile(warm_s, 50),
                "p99_ms": percentile(warm_s, 99),
            }
            results["sustained_floor"] = {
                "n": n_floor,
                "per_second": n_floor / args.seconds,
                "p50_ms": percentile(floor_s, 50),
                "p99_ms": percentile(floor_s, 99),
            }
        finally:
            for proc in (server, bare):
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)

    machine = (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}"
    )
    b, bf = results["burst"], results["burst_floor"]
    pss, s, sf = results["idle_pss"], results["sustained"], results["sustained_floor"]
    print(f"# {machine}, {time.strftime('%Y-%m-%d')}, {results['sandbox']} sandbox")
    print(f"# made ahead: {results['made_ahead'] or 'n/a'}; load {os.getloadavg()[0]:.2f}\n")
    print("| measure | n | p50 ms | p99 ms | result |")
    print("|---|---|---|---|---|")
    print(
        f"| burst_cold_invokes | {b['n']} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} "
        f"| last answer {b['last_answer_ms']:.0f} ms; {b['environments']} environments, "
        f"{b['init_durations']} Init Duration |"
    )
    print(
        f"| burst_floor_bare_aiohttp | {bf['n']} | {bf['p50_ms']:.2f} | {bf['p99_ms']:.2f} "
        f"| last answer {bf['last_answer_ms']:.0f} ms |"
    )
    print(
        f"| idle_pss_per_environment | {pss['environments']} | | "
        f"| {pss['per_environment_kb'] / 1024:.2f} MB ({pss['total_kb'] / 1024:.1f} MB over "
        f"{pss['cells']} cells, {pss['processes']} processes) |"
    )
    print(
        f"| idle_pss_floor_bare_python | 1 | | "
        f"| {int(results['idle_pss_floor_kb']) / 1024:.2f} MB |"
    )
    print(
        f"| sustained_warm_invokes | {s['n']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} "
        f"| {s['per_second']:,.0f} /s ({args.threads} threads) |"
    )
    print(
        f"| sustained_floor_bare_aiohttp | {sf['n']} | {sf['p50_ms']:.2f} | {sf['p99_ms']:.2f} "
        f"| {sf['per_second']:,.0f} /s ({args.threads} threads) |"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
