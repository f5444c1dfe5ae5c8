"""FilterLogEvents over a million stored log lines covering an hour, through a real
``lambdad serve`` and boto3's ``logs`` client.

Run: ``python bench/logs_filter.py [--lines 1000000] [--rounds 5]``. Puts ``--lines`` lines
(about 100 bytes each, Lambda-like: START/END/REPORT and application lines over 50 streams,
one timestamp per 3.6 ms) into one group with PutLogEvents, then times (best and median of
``--rounds``) FilterLogEvents calls: a rare term over the whole hour (every line is scanned;
the bar is under 1 s), a common term's first page (10,000 events), a rare term in a 5-minute
window, a rare term in one stream, a JSON pattern that no line matches, and, after a restart,
how long the server took to load the store. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

GROUP = "/aws/lambda/bench"
STREAMS = 50
BATCH = 8000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdad.cli.main", "serve", "--port", str(port),
         "--data-dir", str(data_dir)],
        env={**os.environ, "LAMBDAD_LOG_LEVEL": "WARNING", "LAMBDAD_SANDBOX": "process"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_lambdad/health", timeout=1):
                return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("lambdad did not come up")


def client(port: int) -> Any:
    return boto3.client(
        "logs",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=300),
    )


def line(i: int) -> str:
    request = f"{i // 10:08d}-aaaa-bbbb-cccc-{i % 997:012d}"
    kind = i % 10
    if kind == 0:
        return f"START RequestId: {request} Version: $LATEST"
    if kind == 9:
        return f"REPORT RequestId: {request}\tDuration: 1.23 ms\tBilled Duration: 2 ms"
    if i % 100_000 == 5:
        return f"[ERROR] {request} Failed to connect: needle-{i}"
    return f"[INFO] {request} processed item {i} of batch {i // 1000} status ok"


def fill(logs: Any, lines: int, start_ms: int) -> None:
    step = 3_600_000 / lines
    for s in range(STREAMS):
        logs.create_log_stream(logGroupName=GROUP, logStreamName=f"stream-{s:02d}")
    for first in range(0, lines, BATCH):
        stream = f"stream-{(first // BATCH) % STREAMS:02d}"
        events = [
            {"timestamp": start_ms + int(i * step), "message": line(i)}
            for i in range(first, min(lines, first + BATCH))
        ]
        logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=events)


def timed(work: Any, rounds: int) -> tuple[float, float, Any]:
    samples, result = [], None
    for _ in range(rounds):
        began = time.perf_counter()
        result = work()
        samples.append((time.perf_counter() - began) * 1000)
    return min(samples), statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start(port, Path(tmp))
        try:
            logs = client(port)
            logs.create_log_group(logGroupName=GROUP)
            start_ms = int(time.time() * 1000) - 3_700_000
            began = time.perf_counter()
            fill(logs, args.lines, start_ms)
            filled = time.perf_counter() - began
            hour = {"startTime": start_ms, "endTime": start_ms + 3_600_000}
            needle = {"filterPattern": "needle"}
            window = {"startTime": start_ms, "endTime": start_ms + 300_000}
            json_pattern = {"filterPattern": '{ $.level = "ERROR" }'}
            cases = [
                ("rare term, whole hour (full scan)", {**needle, **hour}),
                ("common term, first page of 10,000", {"filterPattern": "INFO", **hour}),
                ("rare term, 5-minute window", {**needle, **window}),
                ("rare term, one stream", {**needle, "logStreamNames": ["stream-00"], **hour}),
                ('JSON pattern { $.level = "ERROR" }, no JSON lines', {**json_pattern, **hour}),
            ]
            rows = []
            for name, params in cases:
                best, median, page = timed(
                    lambda p=params: logs.filter_log_events(logGroupName=GROUP, **p), args.rounds
                )
                rows.append((name, best, median, len(page["events"])))
            logs.close()
        finally:
            server.terminate()
            server.wait(60)
        began = time.perf_counter()
        server = start(port, Path(tmp))
        loaded = (time.perf_counter() - began) * 1000
        server.terminate()
        server.wait(60)
    print(f"{args.lines:,} lines put in {filled:.1f} s ({args.lines / filled:,.0f} lines/s)\n")
    print("| FilterLogEvents | best ms | median ms | events |\n|---|---:|---:|---:|")
    for name, best, median, count in rows:
        print(f"| {name} | {best:.0f} | {median:.0f} | {count:,} |")
    print(f"| (restart: serving again after loading the store) | {loaded:.0f} | | |")


if __name__ == "__main__":
    main()
