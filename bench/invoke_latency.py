"""Warm and cold invoke latency of a real ``lambdad serve``, beside the floors of this machine.

Run: ``python bench/invoke_latency.py [--warm 3000] [--cold 30] [--sandbox linux|process]
[--runtime python3.12]``. It
starts its own lambdad on a free port with a temporary data dir (``--sandbox`` is passed to it as
``LAMBDAD_SANDBOX``; ``linux`` needs root and cgroups), and prints a Markdown table for
docs/benchmarks.md.

Every function has ``MemorySize`` 1,769 MB: one full vCPU, as on Lambda, so that the Linux
sandbox's CPU share (in proportion to memory) does not slow the handler and the figures
compare isolation, not CPU quotas.

- warm: synchronous invoke of a Python echo function, over HTTP/1.1 with one keep-alive
  connection (``http.client``), after a warm-up; beside the same client's round trip to a
  bare aiohttp server that answers a fixed body (the loopback floor).
- cold: the first invoke of a newly created Python function (client-observed, and the
  ``Init Duration`` lambdad reports); beside a bare ``python3 -c pass`` spawn of the
  interpreter the runtime resolves to (the floor). Every function has ``--runtime`` (default
  python3.11); the very first invoke of that runtime (the warm-up's, which in the Linux sandbox
  also starts the runtime's zygote when it is not lambdad's own interpreter) is reported
  apart, as ``first_invoke_of_runtime``.
"""

from __future__ import annotations

import argparse
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
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

ROLE = "arn:aws:iam::000000000000:role/bench"
ECHO = "def handler(event, context):\n    return event\n"
#: One full vCPU on Lambda (and in lambdad's Linux sandbox).
MEMORY_MB = 1769

BARE_SERVER = """
import sys
from aiohttp import web

async def handle(request):
    await request.read()
    return web.Response(body=b'{"hello": "world"}', content_type="application/json")

app = web.Application()
app.router.add_post("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def start_lambdad(port: int, data_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A ``lambdad serve`` of the benchmark's own on ``port``, quiet unless something fails."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lambdad.cli.main",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env={**os.environ, "LAMBDAD_LOG_LEVEL": "WARNING", **env},
    )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> dict[str, float] | None:
    """n, p50, p99 and mean; None without samples (``--cold 0``)."""
    if not samples:
        return None
    return {
        "n": len(samples),
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "mean_ms": statistics.fmean(samples),
    }


def post_loop(port: int, path: str, body: bytes, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        response.read()
        samples.append((time.perf_counter() - began) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}")
    conn.close()
    return samples


def zip_of(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", source)
    return buf.getvalue()


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    headers = {k.lower(): v for k, v in response.getheaders()}
    conn.close()
    return response.status, headers, payload


def create(port: int, name: str, source: str, runtime: str, **extra: Any) -> None:
    """Create function ``name`` (``extra``: more of CreateFunction's members)."""
    status, _, payload = api(
        port,
        "POST",
        "/2015-03-31/functions",
        {
            "FunctionName": name,
            "Runtime": runtime,
            "Role": ROLE,
            "Handler": "app.handler",
            "MemorySize": MEMORY_MB,
            "Code": {"ZipFile": base64.b64encode(zip_of(source)).decode()},
            **extra,
        },
    )
    if status != 201:
        raise RuntimeError(payload.decode())


def doctor(port: int) -> Any:
    """What the server says about itself (which sandbox it really runs)."""
    status, _, payload = api(port, "GET", "/_lambdad/doctor")
    if status != 200:
        raise RuntimeError(payload.decode())
    return json.loads(payload)


def wait_made_ahead(port: int, timeout: float = 60.0) -> str:
    """Wait (with a deadline) until the sandbox has made what it makes ahead of need (spare
    cells, cells' networks: ``made ahead`` in ``lambdad doctor``); what it says it holds."""
    deadline = time.monotonic() + timeout
    said = ""
    while time.monotonic() < deadline:
        said = str(doctor(port)["sandbox"].get("made ahead", ""))
        if "making" not in said:
            return said
        time.sleep(0.1)
    return said


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (its children not included)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_warm(
    port: int, count: int, runtime: str, pid: int
) -> tuple[list[float], list[float], float]:
    """Warm invokes, (apart) the warm-up's first: the runtime's first cold start, and
    lambdad's own CPU per warm invoke in microseconds (a load-proof figure: CPU time does
    not stretch when the machine is busy, wall time does)."""
    create(port, "echo", ECHO, runtime)
    path = "/2015-03-31/functions/echo/invocations"
    first = post_loop(port, path, b'{"hello": "world"}', 1)
    post_loop(port, path, b'{"hello": "world"}', 200)  # warm-up
    cpu = cpu_seconds(pid)
    warm = post_loop(port, path, b'{"hello": "world"}', count)
    return warm, first, (cpu_seconds(pid) - cpu) / count * 1e6


def measure_cold(port: int, count: int, runtime: str) -> tuple[list[float], list[float]]:
    observed, reported = [], []
    for index in range(count):
        name = f"cold-{index}"
        create(port, name, ECHO, runtime)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        began = time.perf_counter()
        conn.request(
            "POST", f"/2015-03-31/functions/{name}/invocations", b"{}", {"X-Amz-Log-Type": "Tail"}
        )
        response = conn.getresponse()
        response.read()
        observed.append((time.perf_counter() - began) * 1000)
        log = base64.b64decode(response.getheader("X-Amz-Log-Result") or "").decode()
        for field in log.splitlines()[-1].split("\t"):
            if field.startswith("Init Duration: "):
                reported.append(float(field.split()[2]))
        conn.close()
    return observed, reported


def measure_spawn(count: int, python: str) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=3000)
    parser.add_argument("--cold", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--sandbox",
        choices=("linux", "process"),
        help="the sandbox lambdad uses (LAMBDAD_SANDBOX); default: lambdad's own choice",
    )
    parser.add_argument(
        "--runtime",
        default="python3.11",
        help="the Runtime of the functions measured (default: python3.11)",
    )
    args = parser.parse_args()

    bare_port, lambdad_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
        server = start_lambdad(
            lambdad_port,
            Path(tmp) / "data",
            {"LAMBDAD_SANDBOX": args.sandbox} if args.sandbox else {},
        )
        try:
            wait_http(f"http://127.0.0.1:{lambdad_port}/_lambdad/health")
            report = doctor(lambdad_port)
            sandbox = report["sandbox"]["kind"]
            python = str(report["runtimes"][args.runtime]).split(" (")[0]
            time.sleep(0.5)  # let the bare server finish starting too
            # The spare cells and the cells' networks made ahead, as on a server up for a while.
            wait_made_ahead(lambdad_port)
            floor = post_loop(bare_port, "/floor", b'{"hello": "world"}', 200)
            floor = post_loop(bare_port, "/floor", b'{"hello": "world"}', args.warm)
            warm, first, cpu_us = measure_warm(lambdad_port, args.warm, args.runtime, server.pid)
            cold, init = measure_cold(lambdad_port, args.cold, args.runtime)
            spawn = measure_spawn(args.cold, python)
        finally:
            for proc in (server, bare):
                proc.terminate()
                proc.wait(30)

    results = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "sandbox": sandbox,
        "runtime": f"{args.runtime} on {python}",
        "loopback_floor": summary(floor),
        "warm_invoke": summary(warm),
        "first_invoke_of_runtime": summary(first),
        "lambdad_cpu_us_per_warm_invoke": cpu_us,
        "cold_invoke_observed": summary(cold),
        "cold_init_duration_reported": summary(init) if init else None,
        "bare_python_spawn": summary(spawn),
    }
    print(f"# {results['machine']}, {results['date']}, {sandbox} sandbox, {results['runtime']}\n")
    print("| measure | n | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|")
    print(f"lambdad's own CPU per warm invoke: {cpu_us:.0f} µs\n")
    for key, value in results.items():
        if isinstance(value, dict):
            print(
                f"| {key} | {value['n']} | {value['p50_ms']:.3f} | {value['p99_ms']:.3f} "
                f"| {value['mean_ms']:.3f} |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
