"""Kinesis event source latency: the delay from ``PutRecord`` to the function's invocation,
beside the endpoint's own ``GetRecords`` latency, measured in the same run.

Run: ``python bench/esm_kinesis.py [--samples 50] [--time-scale 1]``. It starts a
``moto.server`` on a free port (the Kinesis endpoint), builds a lambdad in this process
(plain-process sandbox) with a no-op Python function, and prints a Markdown table for
docs/benchmarks.md:

- endpoint: ``GetRecords`` at the tip of a one-shard stream through the same aiobotocore
  client code the poller uses, p50 and p99 of ``--samples`` calls: the floor of one read.
- poller: a ``StreamPoller`` (batch size 1, no window, LATEST) on a one-shard stream that is
  idle between puts; each sample puts one record and takes the time from just before
  ``PutRecord`` to the poller's call of the invoker with that record (the invocation
  starting). The poller reads an idle shard once a second (``POLL_INTERVAL``), scaled by
  ``--time-scale``: the delay is that wait plus one read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import platform
import random
import statistics
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
from esm_sqs import ACCOUNT, NOOP, REGION, ROLE, start_moto

from lambdad.app import Lambdad
from lambdad.config import load_settings
from lambdad.control.arns import Scope
from lambdad.events.checkpoints import Checkpoints
from lambdad.events.kinesis import KinesisReader
from lambdad.events.shards import Position, PositionKind
from lambdad.events.stream_poller import POLL_INTERVAL, StreamPoller, StreamSource
from lambdad.invoke.aws_clients import AwsClients, AwsEndpoint
from lambdad.invoke.service import Invoker, InvokeRequest


class TimedInvoker:
    """The app's invoker, noting when each record's invocation starts."""

    def __init__(self, inner: Invoker) -> None:
        self._inner = inner
        self.started: dict[str, float] = {}
        self.seen = asyncio.Event()

    async def invoke(self, scope: Scope, request: InvokeRequest) -> Any:
        now = time.perf_counter()
        for record in json.loads(request.payload)["Records"]:
            self.started.setdefault(record["kinesis"]["partitionKey"], now)
        self.seen.set()
        return await self._inner.invoke(scope, request)


def stream(kinesis: Any) -> str:
    name = f"bench-{time.monotonic_ns()}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    summary = kinesis.describe_stream_summary(StreamName=name)
    return str(summary["StreamDescriptionSummary"]["StreamARN"])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def read_latency(client: Any, arn: str, samples: int) -> list[float]:
    """Seconds each ``GetRecords`` at the tip of an idle shard takes."""
    shard = (await client.list_shards(StreamARN=arn))["Shards"][0]["ShardId"]
    answer = await client.get_shard_iterator(
        StreamARN=arn, ShardId=shard, ShardIteratorType="LATEST"
    )
    iterator = answer["ShardIterator"]
    took = []
    for _ in range(samples):
        began = time.perf_counter()
        page = await client.get_records(ShardIterator=iterator, StreamARN=arn, Limit=100)
        took.append(time.perf_counter() - began)
        iterator = page["NextShardIterator"]
    return took


async def bench(args: argparse.Namespace, endpoint: str, data: Path) -> dict[str, Any]:
    settings = load_settings(
        {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": data,
            "sandbox": "process",
            "account_id": ACCOUNT,
            "aws_endpoint_url": endpoint,
            "log_level": "WARNING",
        },
        environ={},
    )
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    clients = AwsClients.of(AwsEndpoint(endpoint, "bench", "bench"))
    app = Lambdad(settings)
    await app.start()
    try:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("app.py", NOOP)
        lam = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{app.port}",
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        await asyncio.to_thread(
            lam.create_function,
            FunctionName="noop",
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": buffer.getvalue()},
        )
        client = await clients.client("kinesis", REGION)
        reads = await read_latency(client, await asyncio.to_thread(stream, kinesis), args.samples)
        arn = await asyncio.to_thread(stream, kinesis)
        scope = Scope(ACCOUNT, REGION)
        source = StreamSource(
            scope, "bench", "noop", None, arn, Position(PositionKind.LATEST), batch_size=1
        )
        invoker = TimedInvoker(app.invoker)
        poller = StreamPoller(
            source,
            KinesisReader(client, arn, ROLE),
            invoker,  # type: ignore[arg-type]
            Checkpoints(app.store, scope, "bench"),
            lambda _: None,
            time_scale=args.time_scale,
        )
        await poller.start()
        for n in range(1000):  # warm up: until a put reaches the function
            await asyncio.to_thread(
                kinesis.put_record, StreamARN=arn, Data=b"w", PartitionKey=f"warm{n}"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(invoker.seen.wait(), 2 * args.time_scale + 0.5)
            if invoker.started:
                break
        delays = []
        for n in range(args.samples):
            key = f"k{n}"
            began = time.perf_counter()
            await asyncio.to_thread(kinesis.put_record, StreamARN=arn, Data=b"x", PartitionKey=key)
            while key not in invoker.started:
                invoker.seen.clear()
                await invoker.seen.wait()
            delays.append(invoker.started[key] - began)
            # Puts land at random points of the poller's read cycle.
            await asyncio.sleep(random.uniform(0.0, args.time_scale * POLL_INTERVAL))
        await poller.close()
        return {"reads": reads, "delays": delays}
    finally:
        await clients.close()
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        process, endpoint = start_moto(Path(home))
        try:
            result = asyncio.run(bench(args, endpoint, Path(home) / "data"))
        finally:
            process.terminate()
            process.wait(10)
    reads, delays = result["reads"], result["delays"]
    print(
        f"{platform.node()}, {args.samples} samples, time scale {args.time_scale}, "
        f"moto {endpoint}\n"
    )
    print("| measure | p50 ms | p99 ms |\n|---|---|---|")
    print(
        f"| moto GetRecords at the tip (the endpoint's read) | "
        f"{statistics.median(reads) * 1000:.1f} | {percentile(reads, 0.99) * 1000:.1f} |"
    )
    print(
        f"| PutRecord to the function's invocation | "
        f"{statistics.median(delays) * 1000:.1f} | {percentile(delays, 0.99) * 1000:.1f} |"
    )


if __name__ == "__main__":
    main()
