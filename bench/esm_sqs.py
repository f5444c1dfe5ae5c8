"""SQS event source throughput: a pre-filled queue through a no-op function, beside the
endpoint's own read rate, measured in the same run.

Run: ``python bench/esm_sqs.py [--messages 1000] [--readers 8]``. It starts a ``moto.server``
on a free port (the SQS endpoint), builds a lambdad in this process (plain-process sandbox,
time scale 1) with a no-op Python function, and prints a Markdown table for
docs/benchmarks.md:

- endpoint read rate: ``--readers`` concurrent loops of ``ReceiveMessage`` (10 at a time) and
  ``DeleteMessageBatch`` through the same aiobotocore client code the poller uses, until the
  pre-filled queue is empty: what the endpoint (and this client) can give, with no function.
- poller: an ``SqsPoller`` (batch size 10, no window, default maximum concurrency) on another
  queue filled alike, from its start until the queue is empty (every message invoked, then
  deleted).
- idle latency: on an idle queue the poller is long-polling; a message is sent and the time
  until it is deleted (so after its invocation returned) is taken, p50 of ``--samples``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
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

import boto3

from lambdad.app import Lambdad
from lambdad.config import load_settings
from lambdad.control.arns import Scope
from lambdad.events.sqs import SqsPoller, SqsSource
from lambdad.invoke.aws_clients import AwsClients, AwsEndpoint

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/bench"
NOOP = "def handler(event, context):\n    return None\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (home / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto.server did not start")


def filled_queue(sqs: Any, count: int) -> tuple[str, str]:
    name = f"bench-{time.monotonic_ns()}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    for start in range(0, count, 10):
        entries = [{"Id": str(n), "MessageBody": f"m{start + n}"} for n in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries[: count - start])
    return url, arn["Attributes"]["QueueArn"]


def remaining(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(found[n]) for n in names)


async def read_rate(endpoint: str, url: str, count: int, readers: int) -> float:
    """Messages per second that receive + delete alone take out of a queue of ``count``."""
    clients = AwsClients(AwsEndpoint(endpoint, "bench", "bench"))
    client = await clients.client("sqs", REGION)
    taken = 0

    async def reader() -> None:
        nonlocal taken
        while taken < count:
            answer = await client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            messages = answer.get("Messages", [])
            if not messages:
                return
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
            ]
            await client.delete_message_batch(QueueUrl=url, Entries=entries)
            taken += len(messages)

    began = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(readers)))
    elapsed = time.perf_counter() - began
    await clients.close()
    return taken / elapsed


async def until_empty(sqs: Any, url: str) -> None:
    # Polled: the count lives in the endpoint, nothing here can be awaited for it.
    for _ in range(1_000_000):
        if not await asyncio.to_thread(remaining, sqs, url):
            return
        await asyncio.sleep(0.05)


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
    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
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
        url, _ = await asyncio.to_thread(filled_queue, sqs, args.messages)
        endpoint_rate = await read_rate(endpoint, url, args.messages, args.readers)
        url, arn = await asyncio.to_thread(filled_queue, sqs, args.messages)
        source = SqsSource(
            Scope(ACCOUNT, REGION),
            "noop",
            None,
            arn,
            url,
            AwsEndpoint(endpoint, "bench", "bench"),
            batch_size=10,
        )
        workers: list[int] = []
        poller = SqsPoller(source, app.invoker, lambda _: workers.append(poller.workers))
        began = time.perf_counter()
        await poller.start()
        await until_empty(sqs, url)
        poller_rate = args.messages / (time.perf_counter() - began)
        await poller.close()
        idle_url, idle_arn = await asyncio.to_thread(filled_queue, sqs, 0)
        source = SqsSource(
            Scope(ACCOUNT, REGION),
            "noop",
            None,
            idle_arn,
            idle_url,
            AwsEndpoint(endpoint, "bench", "bench"),
            batch_size=10,
        )
        idle = SqsPoller(source, app.invoker, lambda _: None)
        await idle.start()
        await asyncio.sleep(1)  # the poller is in its long poll
        delays = []
        for n in range(args.samples):
            began = time.perf_counter()
            await asyncio.to_thread(sqs.send_message, QueueUrl=idle_url, MessageBody=f"i{n}")
            await until_empty(sqs, idle_url)
            delays.append(time.perf_counter() - began)
            await asyncio.sleep(0.2)
        await idle.close()
        return {
            "endpoint": endpoint_rate,
            "poller": poller_rate,
            "workers": max(workers, default=0),
            "idle_p50": statistics.median(delays),
        }
    finally:
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        process, endpoint = start_moto(Path(home))
        try:
            result = asyncio.run(bench(args, endpoint, Path(home) / "data"))
        finally:
            process.terminate()
            process.wait(10)
    print(f"{platform.node()}, {args.messages} messages, batch 10, moto {endpoint}\n")
    print("| measure | value |\n|---|---|")
    print(
        f"| endpoint read rate ({args.readers} readers: receive 10 + delete batch) | "
        f"{result['endpoint']:.0f} msg/s |"
    )
    print(
        f"| poller, no-op function, batch 10 | {result['poller']:.0f} msg/s "
        f"({result['poller'] / result['endpoint']:.0%} of the endpoint's; "
        f"up to {result['workers']} workers) |"
    )
    print(
        f"| idle queue: send to deleted after its invocation, p50 | "
        f"{result['idle_p50'] * 1000:.0f} ms |"
    )


if __name__ == "__main__":
    main()
