"""Durable functions (issue 15): the cost of a checkpointed step, how late a replay starts after
its wait, and executions per second of a three-step workflow, beside a plain warm invoke.

Run: ``PYTHONPATH=src python bench/durable.py [--steps 100] [--runs 5] [--waits 20]
[--executions 200] [--concurrency 4] [--sandbox linux|process]``. It installs the official
``aws-durable-execution-sdk-python`` from PyPI once (``pip install --target`` into
``--sdk-dir``, default ``~/.cache/lambdad-bench/durable-sdk``), starts its own lambdad on a free
port with a temporary data dir and prints a Markdown table for docs/benchmarks.md.

- plain: synchronous warm invokes of a plain Python echo function (one keep-alive connection),
  the floor every durable figure stands on.
- step: a durable handler runs ``--steps`` steps that do nothing; the handler times each
  ``context.step`` call itself (``time.perf_counter`` around it: the SDK's checkpoint of the
  step's START and SUCCEED, through botocore and the cell's relay, to lambdad and back) and
  returns the times; p50/p99 over every step of ``--runs`` executions, and the whole
  execution's round trip. Also lambdad's own CPU per step (its process's user+system time
  over the runs, divided by the steps: a figure that load does not stretch).
- floor: the same handler, SDK and botocore in a second durable function that lambdad
  invokes alike, whose checkpoints go instead to a stub server the bench starts (raw asyncio:
  each CheckpointDurableExecution answered with a new token and nothing else, the least the
  SDK accepts); the function's ``AWS_ENDPOINT_URL_LAMBDA`` names the stub. Its step time is
  the floor any service stands on; what lambdad adds is the step's time minus the floor's.
  The rounds interleave ``--steps`` plain warm invokes, a lambdad execution and a floor
  execution (the two in turn first), so load falls on all alike. The stub is reached at the
  cell's gateway directly, not through lambdad's endpoint relay: the relay's hop (0.06-0.2
  ms, measured below) counts in what lambdad adds.
- replay: ``--waits`` executions, started ``Event`` 0.25 s apart, each waiting 1 s (after
  four run at once, to warm the environments they overlap on). The
  replay's start is the handler's entry in the invocation after the wait (the outer handler
  notes ``time.time()`` before the SDK's wrapper runs; the step after the wait returns it);
  its delay is that minus the wait's ``ScheduledEndTimestamp`` (from the history's
  ``WaitStarted``). Also lambdad's side alone: the replaying invocation's ``StartTimestamp``
  (its ``InvocationCompleted``) minus the same end.
- lambdad's share (``--share``): lambdad's own cost of a checkpoint, in process, without a
  function: ``DurableExecutions.checkpoint`` over the SQLite store (the one ``serve`` uses),
  a step's START and its SUCCEED as two checkpoints (the SDK's usual pair), ``--steps`` steps
  per execution, ``--runs`` executions; p50/p99 per checkpoint.
- throughput: ``--executions`` synchronous invokes of a three-step workflow from
  ``--concurrency`` client threads (after one round to warm as many environments); executions
  per second from the first request to the last answer.
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
    ECHO,
    ROLE,
    api,
    cpu_seconds,
    create,
    free_port,
    percentile,
    post_loop,
    start_lambdad,
    wait_http,
)

SDK = "aws-durable-execution-sdk-python==3.0.0"

STEPS = """
import os
import threading
import time

if os.environ.get("BENCH_FLOOR_PORT"):
    # The floor: this function's checkpoints go to the bench's stub server, at the address the
    # function reaches lambdad's Runtime API on (a cell's gateway, or loopback), before the SDK
    # makes its botocore client (on the first invocation).
    HOST = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")[0]
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = f"http://{HOST}:{os.environ['BENCH_FLOOR_PORT']}"

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.lambda_service import LambdaClient

#: Each CheckpointDurableExecution call of the SDK: (its start, botocore's send, the response
#: received, its end), perf_counter seconds; botocore's own events mark the middle two.
CALLS = []
MARKS = threading.local()
ORIGINAL = LambdaClient.checkpoint


def timed(self, *args, **kwargs):
    events = self.client.meta.events
    if not getattr(events, "bench_hooked", False):
        events.register(
            "before-send.lambda.*", lambda **_: setattr(MARKS, "sent", time.perf_counter())
        )
        events.register(
            "response-received.lambda.*", lambda **_: setattr(MARKS, "got", time.perf_counter())
        )
        events.bench_hooked = True
    began = time.perf_counter()
    try:
        return ORIGINAL(self, *args, **kwargs)
    finally:
        CALLS.append((began, MARKS.sent, MARKS.got, time.perf_counter()))


LambdaClient.checkpoint = timed


@durable_execution
def handler(event, context: DurableContext):
    del CALLS[:]
    times = []
    for index in range(event["steps"]):
        began = time.perf_counter()
        context.step(lambda _: None, name=f"s{index}")
        times.append((time.perf_counter() - began) * 1000)
    calls = [
        [(sent - began) * 1000, (got - sent) * 1000, (end - got) * 1000]
        for began, sent, got, end in CALLS
    ]
    return {"times": times, "calls": calls}
"""

REPLAY = """
import time
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration

ENTERED = [0.0]


@durable_execution
def workflow(event, context: DurableContext):
    context.wait(Duration.from_seconds(event["wait"]), name="pause")
    return context.step(lambda _: ENTERED[0], name="entered")


def handler(event, context):
    ENTERED[0] = time.time()
    return workflow(event, context)
"""

THREE_STEPS = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    one = context.step(lambda _: 1, name="one")
    two = context.step(lambda _: one + 1, name="two")
    return context.step(lambda _: {"sum": one + two}, name="three")
"""

#: A plain function that times ``count`` GETs of ``path`` on lambdad's endpoint as the function
#: reaches it (through the cell's relay), over one keep-alive connection, without botocore.
PROBE = """
import http.client, os, time
from urllib.parse import urlsplit


def handler(event, context):
    url = urlsplit(os.environ["AWS_ENDPOINT_URL_LAMBDA"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    times = []
    for _ in range(event["count"]):
        began = time.perf_counter()
        conn.request("GET", event["path"])
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - began) * 1000)
    conn.close()
    return times
"""

#: The floor's checkpoint server: the cheapest answer the SDK accepts to each
#: CheckpointDurableExecution (HTTP 200 and a new ``CheckpointToken``; the SDK reads
#: ``NewExecutionState`` as empty when it is absent), over keep-alive HTTP/1.1 on raw asyncio.
#: It listens on every address with lambdad's cell mark (as root), so a cell reaches it at its
#: gateway, as the test suite's services are reached (docs/sandbox.md); prints its port, then
#: serves until killed. ``GET /count`` answers how many checkpoints it has answered.
FLOOR_SERVER = r"""
import asyncio, socket, sys

MARK = int(sys.argv[1])
COUNT = [0]


class Checkpoints(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            method, path = lines[0].split(b" ")[:2]
            if method == b"POST" and path.endswith(b"/checkpoint"):
                COUNT[0] += 1
                status, body = b"200 OK", b'{"CheckpointToken":"floor-%d"}' % COUNT[0]
            elif method == b"GET" and path == b"/count":
                status, body = b"200 OK", b"%d" % COUNT[0]
            else:
                status, body = b"404 Not Found", b'{"Type":"User","message":"not the floor"}'
            self.transport.write(
                b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body)
            )


async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    except OSError:
        pass  # not root: the process sandbox shares the host's network
    sock.bind(("0.0.0.0", 0))
    sock.listen(128)
    server = await asyncio.get_running_loop().create_server(Checkpoints, sock=sock)
    print(sock.getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
"""

DURABLE = {"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1}


def sdk_files(sdk_dir: Path) -> dict[str, bytes]:
    """The SDK and its dependencies as zip entries (botocore's models other than Lambda's left
    out, as tests/test_durable.py does), installed into ``sdk_dir`` the first time."""
    if not sdk_dir.is_dir():
        staging = sdk_dir.with_name(sdk_dir.name + ".staging")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(staging), SDK],
            check=True,
        )
        sdk_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(sdk_dir)
    files = {}
    for path in sdk_dir.rglob("*"):
        relative = path.relative_to(sdk_dir)
        parts = relative.parts
        if not path.is_file() or "__pycache__" in parts or parts[0] == "bin":
            continue
        if parts[0].endswith(".dist-info"):
            continue
        if parts[:2] == ("botocore", "data") and len(parts) > 3 and parts[2] != "lambda":
            continue
        files[str(relative)] = path.read_bytes()
    return files


def create_durable(
    port: int,
    name: str,
    source: str,
    files: dict[str, bytes],
    *,
    durable: bool = True,
    variables: dict[str, str] | None = None,
) -> None:
    """A Python function of ``source`` (as ``app.py``) beside ``files``: durable unless
    ``durable`` is false; a full vCPU (``MemorySize`` 1,769), a timeout of 300 s; environment
    ``variables``."""
    import base64
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr("app.py", source)
    status, _, payload = api(
        port,
        "POST",
        "/2015-03-31/functions",
        {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "MemorySize": 1769,
            "Timeout": 300,
            "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()},
            **({"DurableConfig": DURABLE} if durable else {}),
            **({"Environment": {"Variables": variables}} if variables else {}),
        },
    )
    if status != 201:
        raise RuntimeError(payload.decode())


def invoke(
    port: int, name: str, event: Any, *, asynchronous: bool = False
) -> tuple[bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"X-Amz-Invocation-Type": "Event"} if asynchronous else {}
    conn.request(
        "POST", f"/2015-03-31/functions/{name}/invocations", json.dumps(event).encode(), headers
    )
    response = conn.getresponse()
    body = response.read()
    got = {k.lower(): v for k, v in response.getheaders()}
    conn.close()
    if response.status not in (200, 202) or "x-amz-function-error" in got:
        raise RuntimeError(f"{name}: HTTP {response.status} {body[:500]!r}")
    return body, got


def history(port: int, arn: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    events: list[dict[str, Any]] = []
    marker = ""
    while True:
        query = "?IncludeExecutionData=true" + (f"&Marker={quote(marker)}" if marker else "")
        status, _, payload = api(
            port, "GET", f"/2025-12-01/durable-executions/{quote(arn, safe='')}/history{query}"
        )
        if status != 200:
            raise RuntimeError(payload.decode())
        body = json.loads(payload)
        events += body["Events"]
        marker = body.get("NextMarker") or ""
        if not marker:
            return events


def execution(port: int, arn: str) -> dict[str, Any]:
    from urllib.parse import quote

    status, _, payload = api(port, "GET", f"/2025-12-01/durable-executions/{quote(arn, safe='')}")
    if status != 200:
        raise RuntimeError(payload.decode())
    result: dict[str, Any] = json.loads(payload)
    return result


def stats(samples: list[float]) -> str:
    return f"{percentile(samples, 50):.2f} / {percentile(samples, 99):.2f}"


def start_floor() -> tuple[subprocess.Popen[str], int]:
    """The floor's checkpoint server (``FLOOR_SERVER``) and its port."""
    from lambdad.runtime.sandbox.network import MARK

    server = subprocess.Popen(
        [sys.executable, "-c", FLOOR_SERVER, str(MARK)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def floor_count(floor_port: int) -> int:
    """How many checkpoints the floor's server has answered."""
    conn = http.client.HTTPConnection("127.0.0.1", floor_port, timeout=30)
    conn.request("GET", "/count")
    count = int(conn.getresponse().read())
    conn.close()
    return count


def measure_steps(port: int, pid: int, floor_port: int, steps: int, runs: int) -> dict[str, Any]:
    """``runs`` rounds, each of: ``steps`` plain warm invokes, an execution of ``steps`` no-op
    steps checkpointed by lambdad, and one by the floor's server (these two in turn first), so
    that load falls on all three alike."""
    for name in ("steps", "floor"):
        invoke(port, name, {"steps": 2})  # a warm environment with the SDK imported
    plain_path = "/2015-03-31/functions/echo/invocations"
    answered = floor_count(floor_port)
    figures: dict[str, dict[str, list[Any]]] = {
        name: {"per_step": [], "whole": [], "calls": []} for name in ("steps", "floor")
    }
    plain: list[float] = []
    lambdad_cpu = 0.0
    for index in range(runs):
        plain += post_loop(port, plain_path, b"{}", steps)
        for name in ("steps", "floor") if index % 2 == 0 else ("floor", "steps"):
            cpu = cpu_seconds(pid)
            began = time.perf_counter()
            body, _ = invoke(port, name, {"steps": steps})
            figures[name]["whole"].append((time.perf_counter() - began) * 1000)
            if name == "steps":
                lambdad_cpu += cpu_seconds(pid) - cpu
            answer = json.loads(body)
            figures[name]["per_step"] += answer["times"]
            figures[name]["calls"] += answer["calls"]
    floor = figures["floor"]
    if floor_count(floor_port) - answered != len(floor["calls"]):
        raise RuntimeError("the floor's checkpoints did not all reach the floor's server")
    empty: list[float] = []
    for _ in range(runs):
        began = time.perf_counter()
        invoke(port, "steps", {"steps": 0})
        empty.append((time.perf_counter() - began) * 1000)
    calls = figures["steps"]["calls"]
    return {
        **figures["steps"],
        "floor": floor,
        "plain": plain,
        "checkpoints_per_step": len(calls) / (steps * runs),
        "empty": empty,
        "lambdad_cpu_ms_per_step": lambdad_cpu / (steps * runs) * 1e3,
    }


def measure_replay(port: int, count: int) -> dict[str, Any]:
    # Warm as many environments as the replays below overlap (about four), so that a replay
    # measures lambdad's timer and a warm invoke, not a cold start.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: invoke(port, "replay", {"wait": 1}), range(4)))
    arns = []
    for _ in range(count):
        _, headers = invoke(port, "replay", {"wait": 1}, asynchronous=True)
        arns.append(headers["x-amz-durable-execution-arn"])
        time.sleep(0.25)  # spread the timers (pacing, not synchronisation)
    handler: list[float] = []
    engine: list[float] = []
    #: The histories of replays more than a second late, kept for --json.
    slow: list[Any] = []
    deadline = time.monotonic() + 120
    for arn in arns:
        while True:
            status = execution(port, arn)["Status"]
            if status != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{arn} still running")
            time.sleep(0.1)
        if status != "SUCCEEDED":
            raise RuntimeError(f"{arn}: {status}")
        events = history(port, arn)
        end = next(
            e["WaitStartedDetails"]["ScheduledEndTimestamp"]
            for e in events
            if e["EventType"] == "WaitStarted"
        )
        entered = next(
            float(json.loads(e["StepSucceededDetails"]["Result"]["Payload"]))
            for e in events
            if e["EventType"] == "StepSucceeded"
        )
        invocations = [e for e in events if e["EventType"] == "InvocationCompleted"]
        replay_start = invocations[1]["InvocationCompletedDetails"]["StartTimestamp"]
        handler.append((entered - _epoch(end)) * 1000)
        engine.append((_epoch(replay_start) - _epoch(end)) * 1000)
        if handler[-1] > 1000:
            slow.append({"arn": arn, "wait_end": _epoch(end), "events": events})
    return {"handler": handler, "engine": engine, "slow": slow}


def _epoch(value: Any) -> float:
    return float(value)


def measure_relay(port: int, arn: str, count: int) -> dict[str, list[float]]:
    """GetDurableExecution of one execution, from inside a function (through the relay) and
    from the host (straight to lambdad), each over one keep-alive connection."""
    from urllib.parse import quote

    path = f"/2025-12-01/durable-executions/{quote(arn, safe='')}"
    invoke(port, "probe", {"path": path, "count": 20})  # warm
    inside: list[float] = json.loads(invoke(port, "probe", {"path": path, "count": count})[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host: list[float] = []
    for _ in range(count):
        began = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        host.append((time.perf_counter() - began) * 1000)
    conn.close()
    return {"inside": inside, "host": host}


def measure_throughput(port: int, count: int, concurrency: int) -> dict[str, float]:
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: invoke(port, "three", {}), range(concurrency)))  # warm
        lock = threading.Lock()
        done = [0]

        def one(_: int) -> None:
            invoke(port, "three", {})
            with lock:
                done[0] += 1

        began = time.perf_counter()
        list(pool.map(one, range(count)))
        elapsed = time.perf_counter() - began
    return {"executions": float(done[0]), "seconds": elapsed, "per_second": done[0] / elapsed}


def measure_share(steps: int, runs: int, conditional: bool = False) -> tuple[list[float], float]:
    """lambdad's own time per checkpoint (ms), in process, over the SQLite store; and its CPU
    per checkpoint (ms, every thread: the database thread's write and fsync included), a
    figure that load stretches less than time."""
    import asyncio

    from lambdad.control.arns import Scope
    from lambdad.control.durable import DurableExecutions, token_of
    from lambdad.control.model import FunctionConfig
    from lambdad.store.sqlite import SqliteStore

    scope = Scope("000000000000", "us-east-1")
    config = FunctionConfig(
        name="steps",
        version="$LATEST",
        runtime="python3.12",
        role=ROLE,
        handler="app.handler",
        code_key="",
        code_sha256="",
        code_size=0,
        durable_execution_timeout=3600,
    )

    async def run(path: Path) -> tuple[list[float], float]:
        store = SqliteStore(path)
        await store.open()
        # As ``serve`` on one process (saves unconditional); ``--conditional``: as on a
        # cluster's shared store (each save expects the revision it read).
        executions = DurableExecutions(store, conditional=conditional)
        samples: list[float] = []
        cpu = time.process_time()
        for index in range(runs):
            doc, _ = await executions.start(scope, config, f"run-{index}", b"{}")
            began = await executions.begin_invocation(scope.key("steps", f"run-{index}"))
            assert began is not None
            token = token_of(began)
            for number in range(steps):
                for action in ("START", "SUCCEED"):
                    update = {"Id": f"s{number}", "Type": "STEP", "Action": action}
                    update["SubType"] = "Step"
                    update["Name"] = f"s{number}"
                    if action == "SUCCEED":
                        update["Payload"] = "null"
                    at = time.perf_counter()
                    answer = await executions.checkpoint(scope, doc["arn"], token, [update], None)
                    samples.append((time.perf_counter() - at) * 1000)
                    token = answer["CheckpointToken"]
        cpu = time.process_time() - cpu
        await store.close()
        return samples, cpu / max(1, len(samples)) * 1000

    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        return asyncio.run(run(Path(tmp) / "store.db"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--waits", type=int, default=20)
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--plain", type=int, default=1000)
    parser.add_argument(
        "--sdk-dir",
        type=Path,
        default=Path.home() / ".cache" / "lambdad-bench" / "durable-sdk-3.0.0",
    )
    parser.add_argument("--sandbox", choices=("linux", "process"))
    parser.add_argument(
        "--share",
        action="store_true",
        help="measure only lambdad's own share of a checkpoint, in process",
    )
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="with --share: saves conditional on the revision read, as on a shared store",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    if args.share:
        share, cpu = measure_share(args.steps, args.runs, args.conditional)
        print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(
            f"| lambdad's share of a checkpoint ({len(share)}; {args.steps} steps "
            f"x {args.runs}) | {stats(share)} |"
        )
        print(f"| lambdad's CPU per checkpoint, in process | {cpu:.3f} ms (mean) |")
        return 0
    files = sdk_files(args.sdk_dir)
    port = free_port()
    env = {"LAMBDAD_SANDBOX": args.sandbox} if args.sandbox else {}
    with tempfile.TemporaryDirectory(prefix="lambdad-bench-") as tmp:
        server = start_lambdad(port, Path(tmp), env)
        floor_server, floor_port = start_floor()
        try:
            wait_http(f"http://127.0.0.1:{port}/_lambdad/health")
            create(port, "echo", ECHO, "python3.12")
            create_durable(port, "steps", STEPS, files)
            create_durable(
                port, "floor", STEPS, files, variables={"BENCH_FLOOR_PORT": str(floor_port)}
            )
            create_durable(port, "replay", REPLAY, files)
            create_durable(port, "three", THREE_STEPS, files)
            create_durable(port, "probe", PROBE, {}, durable=False)
            path = "/2015-03-31/functions/echo/invocations"
            post_loop(port, path, b"{}", 100)
            plain = post_loop(port, path, b"{}", args.plain)
            steps = measure_steps(port, server.pid, floor_port, args.steps, args.runs)
            replay = measure_replay(port, args.waits)
            _, started = invoke(port, "three", {})
            relay = measure_relay(port, started["x-amz-durable-execution-arn"], args.plain)
            throughput = measure_throughput(port, args.executions, args.concurrency)
        finally:
            floor_server.terminate()
            floor_server.wait(30)
            server.terminate()
            server.wait(30)

    floor = steps["floor"]
    step_p50 = percentile(steps["per_step"], 50)
    floor_p50 = percentile(floor["per_step"], 50)
    added_p50 = step_p50 - floor_p50
    added_p99 = percentile(steps["per_step"], 99) - percentile(floor["per_step"], 99)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print("| measure | p50 / p99 (ms) | bar |")
    print("|---|---|---|")
    print(f"| plain warm invoke ({len(plain)}) | {stats(plain)} | |")
    print(
        f"| plain warm invoke, interleaved with the steps below ({len(steps['plain'])}) | "
        f"{stats(steps['plain'])} | |"
    )
    print(
        f"| one no-op step, timed in the handler ({len(steps['per_step'])}) | "
        f"{stats(steps['per_step'])} | |"
    )
    print(
        f"| one no-op step, the floor: same SDK, botocore and function, checkpoints "
        f"answered by a stub server ({len(floor['per_step'])}) | {stats(floor['per_step'])} | |"
    )
    print(
        f"| **what lambdad adds to a step** (step minus floor) | "
        f"{added_p50:.2f} / {added_p99:.2f} | ≤ 2 ms p50: {'yes' if added_p50 <= 2 else 'no'} |"
    )
    print(
        f"| execution of {args.steps} steps, round trip ({args.runs}) | {stats(steps['whole'])} | |"
    )
    print(f"| execution of 0 steps, round trip ({args.runs}) | {stats(steps['empty'])} | |")
    print(f"| lambdad CPU per step | {steps['lambdad_cpu_ms_per_step']:.2f} ms (mean) | |")
    calls = steps["calls"]
    for index, part in enumerate(
        (
            "botocore builds and signs",
            "the wire: cell relay, lambdad, back",
            "botocore parses",
        )
    ):
        print(
            f"| a checkpoint call: {part} ({len(calls)}) | {stats([c[index] for c in calls])} | |"
        )
    print(
        f"| the floor's checkpoint call: the wire, to the stub and back ({len(floor['calls'])}) "
        f"| {stats([c[1] for c in floor['calls']])} | |"
    )
    print(
        f"| GetDurableExecution from inside a function, through the relay ({len(relay['inside'])}) "
        f"| {stats(relay['inside'])} | |"
    )
    print(
        f"| GetDurableExecution from the host, straight ({len(relay['host'])}) "
        f"| {stats(relay['host'])} | |"
    )
    if len(calls) == len(steps["per_step"]):
        # One call per step: the rest of the step is the SDK's own (its batcher's wait for
        # more updates, 1 ms once a caller is blocked; its threads' hand-offs).
        rest = [t - sum(c) for t, c in zip(steps["per_step"], calls, strict=True)]
        print(f"| a step: the SDK's own, outside the call ({len(rest)}) | {stats(rest)} | |")
    print(f"| checkpoint calls per step | {steps['checkpoints_per_step']:.2f} | |")
    replay_p50 = percentile(replay["handler"], 50)
    print(
        f"| replay start after the wait's end, handler entry ({len(replay['handler'])}) | "
        f"{stats(replay['handler'])} | ≤ 50 ms: {'yes' if replay_p50 <= 50 else 'no'} |"
    )
    print(
        f"| replay start after the wait's end, lambdad's invocation start | "
        f"{stats(replay['engine'])} | |"
    )
    print(
        f"| three-step executions, {args.concurrency} clients | "
        f"{throughput['per_second']:.1f} /s ({int(throughput['executions'])} in "
        f"{throughput['seconds']:.1f} s) | |"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "plain": plain,
                    "steps": steps,
                    "replay": replay,
                    "relay": relay,
                    "throughput": throughput,
                }
            )
        )
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(600)
    sys.exit(main())
