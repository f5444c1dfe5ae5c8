"""Schedule fire accuracy: the delay from an occurrence's due time to its function's start.

Run: ``python bench/schedules.py [--schedules 1000] [--speed 10] [--minutes 3]``. It starts its
own ``lambdad serve`` (plain-process sandbox) whose schedulers' clock starts at 2030-01-01 and
runs ``--speed`` times faster (``LAMBDAD_SCHEDULER_CLOCK``), a Python function that reports
``time.time()`` at the start of its handler to a TCP listener of this script, and
``--schedules`` schedules ``rate(1 minute)`` targeting it, in two layouts:

- spread: schedule ``i`` starts ``i/N`` of a minute after the others, as a user's schedules
  fall (one fire every 60/N clock seconds);
- aligned: every schedule starts on the same minute, so all N fire at the same instant (the
  worst burst).

Eight environments of the function are made first (eight invokes held at once), so cold
starts of the first fires do not count as the scheduler's delay; more are made as the
dispatcher needs them (an aligned burst does).

The due time of occurrence ``k`` of schedule ``i`` is ``StartDate_i + k`` minutes of the clock,
converted to real time through the clock's reading (a schedule's ``CreationDate`` is stamped by
it). The delay covers the engine's timing, the durable fire record, the queue's durable put, the
dispatcher and the runtime's hand-off, up to the first line of the handler. Prints a Markdown
table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from invoke_latency import free_port, percentile, start_lambdad, wait_http, zip_of

ROLE = "arn:aws:iam::000000000000:role/bench"
START = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
REPORTING = """
import json, os, socket, time


def handler(event, context):
    began = time.time()
    if "warm" in event:
        time.sleep(event["warm"])
        return None
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    line = {
        "n": event["n"], "g": event["g"], "t": event["t"], "began": began,
        "id": context.aws_request_id,
    }
    for attempt in range(50):  # a burst of a thousand connects may overflow the backlog
        try:
            address = (host, int(os.environ["BENCH_PORT"]))
            with socket.create_connection(address, timeout=30) as conn:
                conn.sendall(json.dumps(line).encode() + b"\\n")
            return None
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the benchmark's listener could not be reached")
"""


class CpuSampler:
    """Every 0.1 s: lambdad's CPU seconds (user + system, from ``/proc``) and the machine's
    busy CPU seconds, so each burst's figures say how much CPU lambdad got while the machine
    is shared (the context a fire delay needs: the floor is the CPU it is given)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float, float]] = []
        self._tick = os.sysconf("SC_CLK_TCK")
        threading.Thread(target=self._run, daemon=True).start()

    def _process(self) -> float:
        with open(f"/proc/{self.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick

    def _machine(self) -> float:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return (sum(values) - values[3] - values[4]) / self._tick

    def _run(self) -> None:
        while True:
            try:
                self.samples.append((time.time(), self._process(), self._machine()))
            except (OSError, IndexError, ValueError):
                return
            time.sleep(0.1)

    def between(self, start: float, end: float) -> tuple[float, float]:
        """(lambdad's CPU seconds, the machine's average busy CPUs) from ``start`` to ``end``."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return 0.0, 0.0
        first, last = inside[0], inside[-1]
        return last[1] - first[1], (last[2] - first[2]) / max(last[0] - first[0], 1e-9)


class Listener:
    """Keeps every line the function sends (one per connection)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.port = int(self.sock.getsockname()[1])
        self.lines: list[dict[str, Any]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = conn.makefile("rb").readline()
                if data:
                    self.lines.append(json.loads(data))


def clients(port: int) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
        "config": Config(retries={"total_max_attempts": 1}, max_pool_connections=4),
    }
    return boto3.client("lambda", **kwargs), boto3.client("scheduler", **kwargs)


def warm_up(lam: Any, count: int) -> None:
    """``count`` environments of the function made before measuring (held at once), so the
    figures are the scheduler's, not cold starts'."""
    payload = json.dumps({"warm": 1.0}).encode()
    threads = [
        threading.Thread(target=lambda: lam.invoke(FunctionName="reporting", Payload=payload))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def clock_reading(sched: Any) -> tuple[float, float]:
    """(clock time, real time) of one moment of the server's schedulers' clock: a schedule's
    CreationDate is stamped by it during the create call, taken as the call's midpoint (the
    error bound is half the call)."""
    before = time.time()
    sched.create_schedule(
        Name="probe",
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:lambda:us-east-1:000000000000:function:x", "RoleArn": ROLE},
        State="DISABLED",
    )
    after = time.time()
    created = sched.get_schedule(Name="probe")["CreationDate"].timestamp()
    sched.delete_schedule(Name="probe")
    print(f"clock read within ±{(after - before) / 2 * 1000:.1f} ms", file=sys.stderr)
    return created, (before + after) / 2


def run_layout(
    sched: Any,
    listener: Listener,
    layout: str,
    count: int,
    speed: float,
    minutes: int,
    cpu: CpuSampler,
) -> list[float]:
    clock, real = clock_reading(sched)
    group = f"bench-{layout}"
    sched.create_schedule_group(Name=group)
    creating = count * 0.01 + 5  # real seconds the creates may take, generously
    first = (clock + creating * speed) // 60 * 60 + 60
    starts: dict[int, float] = {}
    for index in range(count):
        offset = index * 60 / count if layout == "spread" else 0.0
        starts[index] = first + offset
        sched.create_schedule(
            Name=f"s{index}",
            GroupName=group,
            ScheduleExpression="rate(1 minute)",
            FlexibleTimeWindow={"Mode": "OFF"},
            StartDate=datetime.datetime.fromtimestamp(starts[index], datetime.UTC),
            Target={
                "Arn": "arn:aws:lambda:us-east-1:000000000000:function:reporting",
                "RoleArn": ROLE,
                "Input": json.dumps(
                    {"n": index, "g": layout, "t": "<aws.scheduler.scheduled-time>"}
                ),
            },
        )
    if time.time() > real + (first - clock) / speed:
        raise RuntimeError("creating the schedules took longer than planned: lower --schedules")
    end_real = real + (first + (minutes + 1) * 60 - clock) / speed
    while time.time() < end_real + 2:
        time.sleep(0.5)
    sched.delete_schedule_group(Name=group)
    delays = []
    by_minute: dict[int, list[float]] = {}
    first_runs: dict[tuple[int, str], dict[str, Any]] = {}
    for line in [x for x in list(listener.lines) if x["g"] == layout]:
        key = (line["n"], line["t"])
        if key not in first_runs or line["began"] < first_runs[key]["began"]:
            first_runs[key] = line
    runs = [x for x in listener.lines if x["g"] == layout]
    repeated = len(runs) - len(first_runs)
    ids = {(x["n"], x["t"], x["id"]) for x in runs}
    if repeated:
        print(
            f"{layout}: {repeated} run(s) repeated an occurrence; distinct invocations per"
            f" occurrence: {len(ids) - len(first_runs)} extra (0: every repeat was the same"
            " event run again by the async path's retries)",
            file=sys.stderr,
        )
    for line in first_runs.values():
        index = line["n"]
        nominal = datetime.datetime.fromisoformat(line["t"].replace("Z", "+00:00")).timestamp()
        k = round((nominal - starts[index]) / 60)
        due_clock = starts[index] + k * 60
        due_real = real + (due_clock - clock) / speed
        delays.append((line["began"] - due_real) * 1000)
        by_minute.setdefault(k, []).append(delays[-1])
    for k, found in sorted(by_minute.items()):
        due_real = real + (first + k * 60 - clock) / speed
        used, busy = cpu.between(due_real - 0.05, due_real + max(found) / 1000 + 0.05)
        print(
            f"  minute {k}: {len(found)} fires, p50 {percentile(found, 50):.0f} ms,"
            f" p99 {percentile(found, 99):.0f} ms; lambdad used {used:.2f} CPU s,"
            f" the machine {busy:.2f} of {os.cpu_count()} CPUs busy",
            file=sys.stderr,
        )
    expected = count * (minutes + 1)
    print(f"{layout}: {len(delays)} fires (about {expected} expected)", file=sys.stderr)
    return delays


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--layouts", default="spread,aligned")
    args = parser.parse_args()
    listener = Listener()
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {
            "LAMBDAD_SANDBOX": "process",
            "LAMBDAD_SCHEDULER_CLOCK": f"{START.isoformat()},{args.speed}",
        }
        server = start_lambdad(port, Path(home) / "data", env)
        try:
            wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            lam, sched = clients(port)
            lam.create_function(
                FunctionName="reporting",
                Runtime="python3.12",
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": zip_of(REPORTING)},
                Timeout=30,
                Environment={"Variables": {"BENCH_PORT": str(listener.port)}},
            )
            warm_up(lam, 8)
            cpu = CpuSampler(server.pid)
            rows = []
            for layout in args.layouts.split(","):
                delays = run_layout(
                    sched, listener, layout, args.schedules, args.speed, args.minutes, cpu
                )
                rows.append((layout, delays))
        finally:
            server.terminate()
            server.wait(30)
    print(f"{platform.node()} {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"| layout ({args.schedules} x rate(1 minute), clock x{args.speed:g}) | fires | "
        "p50 | p99 | max |"
    )
    print("|---|---|---|---|---|")
    for layout, delays in rows:
        print(
            f"| {layout} | {len(delays)} | {percentile(delays, 50):.0f} ms | "
            f"{percentile(delays, 99):.0f} ms | {max(delays):.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
