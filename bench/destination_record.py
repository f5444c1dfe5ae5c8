"""How long building one destination record holds the event loop, for a 6 MB response.

Run: ``python bench/destination_record.py [--runs 10]``. In one process, with a ticker task
waking every millisecond, it builds the record of an async invocation whose request is about
1 MB and whose response is about 6 MB (``records.record`` with ``PayloadCheck.embedded``, as
the dispatcher does) and prints a Markdown table: the build's wall time, the CPU time lambdad's
process spent on it (the helper process's work is not counted: it is off the loop), and the
longest gap the ticker saw (the loop's stall; the ``idle`` row is the ticker's floor).
``parsed`` is the way records were built before: ``json.loads`` of both payloads and
``json.dumps`` of the whole, on the loop.

Payloads: ``json`` is a JSON array of small objects (the costliest shape to parse per byte);
``text`` is a response that is not JSON (about 6 MB of non-ASCII text), carried as a string.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lambdad.invoke.payloads import PayloadCheck
from lambdad.invoke.records import Condition, Response, record

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"


def dense(size: int) -> bytes:
    """A JSON array of small objects, about ``size`` bytes."""
    item = '{"id":%d,"name":"item-%d","ok":true,"v":1.5}'
    parts, total, i = [], 2, 0
    while total < size:
        parts.append(item % (i, i))
        total += len(parts[-1]) + 1
        i += 1
    return ("[" + ",".join(parts) + "]").encode()


class Ticker:
    """Wakes every millisecond and keeps the longest gap between two wake-ups."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.01)
        self.longest = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def spliced(check: PayloadCheck, request: bytes, response: bytes) -> bytes:
    built = await record(
        request_id="r1",
        function_arn=ARN,
        condition=Condition.SUCCESS,
        invoke_count=1,
        request_payload=request,
        response=Response(200, "$LATEST", None, response),
        now=time.time(),
        embed=check.embedded,
    )
    return built.body


async def parsed(check: PayloadCheck, request: bytes, response: bytes) -> bytes:
    """The record as it was built before: both payloads parsed, the whole dumped."""

    def value(data: bytes) -> Any:
        try:
            return json.loads(data) if data else None
        except ValueError:
            return data.decode("utf-8", "replace")

    document = {
        "version": "1.0",
        "requestContext": {"requestId": "r1", "functionArn": ARN, "condition": "Success"},
        "requestPayload": value(request),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": value(response),
    }
    return json.dumps(document).encode()


async def idle(check: PayloadCheck, request: bytes, response: bytes) -> bytes:
    """No record: the ticker's own floor on this machine (timer slack, other processes)."""
    await asyncio.sleep(0.025)
    return b""


Builder = Callable[[PayloadCheck, bytes, bytes], Awaitable[bytes]]


async def measure(build: Builder, request: bytes, response: bytes, runs: int) -> list[str]:
    check = PayloadCheck()
    walls, cpus, gaps = [], [], []
    try:
        await build(check, request, response)  # starts the helper process
        for _ in range(runs):
            async with Ticker() as ticker:
                start, cpu = time.perf_counter(), time.process_time()
                await build(check, request, response)
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
                await asyncio.sleep(0.005)
            gaps.append(ticker.longest)
    finally:
        await check.close()
    return [
        f"{statistics.median(walls) * 1000:.1f}",
        f"{statistics.median(cpus) * 1000:.1f}",
        f"{statistics.median(gaps) * 1000:.1f}",
        f"{max(gaps) * 1000:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    request = dense(1024 * 1024 - 64)
    payloads = {"json": dense(6 * 1024 * 1024 - 64), "text": ("é" * 3_000_000).encode()}
    print(
        "| builder | response | build wall p50 ms | lambdad CPU p50 ms | loop gap p50 ms "
        "| loop gap max ms |"
    )
    print("|---|---|---|---|---|---|")
    row = asyncio.run(measure(idle, request, b"", args.runs))
    print("| none (idle loop) | - | " + " | ".join(row) + " |")
    for name, build in (("parsed", parsed), ("spliced", spliced)):
        for kind, response in payloads.items():
            row = asyncio.run(measure(build, request, response, args.runs))
            print(f"| {name} | {kind} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
