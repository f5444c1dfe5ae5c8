"""Cold starts of a SnapStart version whose init takes 1 s, beside the zygote fork and the floor.

Run as root: ``python bench/snapstart.py [--cold 50] [--sandbox linux|process]``. It starts its
own lambdad (keep-alive 0.05 s, so each measured invoke finds no warm environment and is a
cold start) and prints a Markdown table.

- snapstart: a ``python3.12`` function (``MemorySize`` 1,769) whose init sleeps 1 s, with
  ``SnapStart.ApplyOn=PublishedVersions``; published once (the template runs the init), then
  ``--cold`` invokes of the version, each after its last environment was reaped: the
  client-observed round trip and the ``Restore Duration`` lambdad reports.
- zygote: the same number of cold starts of an echo function on lambdad's own interpreter
  (forked from the cell init's zygote), observed and ``Init Duration``.
- warm: the same request (a new connection, ``X-Amz-Log-Type: Tail``) on a warm environment
  of the version: the part of a cold start that is not the restore.
- floor: a bare ``os.fork()`` of this benchmark process, the child exiting at once, reaped.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from invoke_latency import (
    ECHO,
    MEMORY_MB,
    ROLE,
    api,
    create,
    doctor,
    free_port,
    start_lambdad,
    summary,
    wait_http,
    zip_of,
)

SLOW_INIT = "import time\ntime.sleep(1.0)\ndef handler(event, context):\n    return event\n"
KEEP_ALIVE = 0.05


def create_snapstart(port: int, name: str) -> str:
    """The function, published with SnapStart; the version once it is Active."""
    status, _, payload = api(
        port,
        "POST",
        "/2015-03-31/functions",
        {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "MemorySize": MEMORY_MB,
            "SnapStart": {"ApplyOn": "PublishedVersions"},
            "Code": {"ZipFile": base64.b64encode(zip_of(SLOW_INIT)).decode()},
        },
    )
    if status != 201:
        raise RuntimeError(payload.decode())
    status, _, payload = api(port, "POST", f"/2015-03-31/functions/{name}/versions", {})
    if status != 201:
        raise RuntimeError(payload.decode())
    version = str(json.loads(payload)["Version"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, _, payload = api(
            port, "GET", f"/2015-03-31/functions/{name}/configuration?Qualifier={version}"
        )
        state = json.loads(payload)["State"]
        if state == "Active":
            return version
        if state == "Failed":
            raise RuntimeError(payload.decode())
        time.sleep(0.1)
    raise RuntimeError("the SnapStart version never became Active")


def cold_starts(port: int, path: str, count: int, field: str) -> tuple[list[float], list[float]]:
    """``count`` invokes, each once the previous environment was reaped (a cold start)."""
    observed: list[float] = []
    reported: list[float] = []
    while len(observed) < count:
        time.sleep(KEEP_ALIVE * 6)  # reaped: idle longer than the keep-alive, reaper ran
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        began = time.perf_counter()
        conn.request("POST", path, b"{}", {"X-Amz-Log-Type": "Tail"})
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - began) * 1000
        conn.close()
        log = base64.b64decode(response.getheader("X-Amz-Log-Result") or "").decode()
        fields = log.splitlines()[-1].split("\t") if log else []
        values = [float(f.split()[2]) for f in fields if f.startswith(field + ": ")]
        if values:  # a warm invoke (not reaped in time) is not a cold start: not counted
            observed.append(elapsed)
            reported.append(values[0])
    return observed, reported


def warm_invokes(port: int, path: str, count: int) -> list[float]:
    """The same request on a warm environment: what a cold start adds is above this."""
    samples = []
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        began = time.perf_counter()
        conn.request("POST", path, b"{}", {"X-Amz-Log-Type": "Tail"})
        conn.getresponse().read()
        samples.append((time.perf_counter() - began) * 1000)
        conn.close()
    return samples


def bare_forks(count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", type=int, default=50)
    parser.add_argument("--sandbox", choices=("linux", "process"))
    args = parser.parse_args()
    port = free_port()
    env = {"LAMBDAD_KEEP_ALIVE": str(KEEP_ALIVE)}
    if args.sandbox:
        env["LAMBDAD_SANDBOX"] = args.sandbox
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        server = start_lambdad(port, Path(tmp) / "data", env)
        try:
            wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            sandbox = doctor(port)["sandbox"]["kind"]
            version = create_snapstart(port, "snap")
            snap_path = f"/2015-03-31/functions/snap/invocations?Qualifier={version}"
            snap, restore = cold_starts(port, snap_path, args.cold, "Restore Duration")
            warm = warm_invokes(port, snap_path, args.cold)
            create(port, "echo", ECHO, "python3.12")
            echo_path = "/2015-03-31/functions/echo/invocations"
            zygote, init = cold_starts(port, echo_path, args.cold, "Init Duration")
            floor = bare_forks(args.cold)
        finally:
            server.terminate()
            server.wait(30)
    # The zygote exists in the Linux sandbox only; plain processes start an interpreter.
    fresh = "zygote" if sandbox == "linux" else "fresh interpreter"
    rows = {
        "snapstart cold start, observed (1 s init)": summary(snap),
        "snapstart Restore Duration, reported": summary(restore),
        "warm invoke of the version, same request (new connection, Tail)": summary(warm),
        f"{fresh} cold start, observed (python3.12 echo)": (summary(zygote)),
        f"{fresh} Init Duration, reported": summary(init),
        "bare fork() + exit + wait (floor)": summary(floor),
    }
    print(
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{sandbox} sandbox, load {os.getloadavg()[0]:.2f}\n"
    )
    print("| measure | n | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|")
    for label, value in rows.items():
        print(
            f"| {label} | {value['n']} | {value['p50_ms']:.3f} | {value['p99_ms']:.3f} "
            f"| {value['mean_ms']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
