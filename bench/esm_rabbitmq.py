"""Amazon MQ for RabbitMQ event source throughput: a pre-filled queue through a no-op function,
beside a plain aio-pika consumer of the same broker, measured in the same run.

Run as root (or wherever ``rabbitmq-server`` is installed): ``python bench/esm_rabbitmq.py
[--messages 20000] [--batch 100] [--rounds 3]``. It starts a RabbitMQ node of its own on free
ports (``tests/rabbitmq_broker.py``), builds a lambdad in this process (plain-process sandbox,
time scale 1) with a no-op Python function, and prints a Markdown table for
docs/benchmarks.md. Each round fills two queues alike with ``--messages`` messages of 100
bytes, then measures, one after the other:

- plain consumer: aio-pika consuming with the poller's prefetch (two batches), acknowledging every
  ``--batch`` messages at once (``multiple``), no function: what the broker and the client
  give;
- poller: a ``RabbitPoller`` (batch ``--batch``, MQ's default 500 ms window) invoking the no-op
  function synchronously with each batch's ``aws:rmq`` event and acknowledging it after.

Both clocks run from the start of consuming until the last message is acknowledged. The
table gives the median round of each.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import resource
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import aio_pika
import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.rabbitmq_broker import Broker, unavailable_reason

from lambdad.app import Lambdad
from lambdad.config import load_settings
from lambdad.control.arns import Scope
from lambdad.events.rabbitmq import DEFAULT_WINDOW, RabbitPoller, RabbitSource

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/bench"
BROKER_ARN = f"arn:aws:mq:{REGION}:{ACCOUNT}:broker:bench:b-bench"
NOOP = "def handler(event, context):\n    return None\n"
BODY = b"x" * 100
#: Mean messages per invoke of each poller round.
BATCHES: list[float] = []
#: This process's CPU time per message (µs) of each round, by measure: load-independent,
#: unlike the rates (the function's own process is not counted).
CPU: dict[str, list[float]] = {"plain": [], "poller": []}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def fill(url: str, count: int) -> str:
    """A new queue holding ``count`` messages (confirmed by the broker)."""
    name = f"bench-{time.monotonic_ns()}"
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name)
        for start in range(0, count, 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(aio_pika.Message(BODY), routing_key=name)
                    for _ in range(min(500, count - start))
                )
            )
    return name


async def plain_consumer(url: str, queue: str, count: int, batch: int) -> float:
    """Messages per second a bare aio-pika consumer takes out of ``queue``."""
    done = asyncio.Event()
    seen = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        seen += 1
        if seen % batch == 0 or seen == count:
            await message.ack(multiple=True)
        if seen == count:
            done.set()

    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2 * batch)
        declared = await channel.get_queue(queue)
        began = time.perf_counter()
        await declared.consume(on_message)
        await done.wait()
        return count / (time.perf_counter() - began)


async def through_poller(app: Lambdad, url: str, queue: str, count: int, batch: int) -> float:
    """Messages per second the poller invokes the no-op function with and acknowledges."""
    done = asyncio.Event()
    seen = 0
    batches: list[int] = []

    def counted(_record: dict[str, Any]) -> bool:
        nonlocal seen
        seen += 1
        return True

    def on_result(_text: str) -> None:  # after each batch's acknowledgement
        batches.append(seen)
        if seen >= count:
            done.set()

    source = RabbitSource(
        scope=Scope(ACCOUNT, REGION),
        function_name="noop",
        qualifier=None,
        broker_arn=BROKER_ARN,
        url=url,
        queue=queue,
        username="guest",
        password="guest",
        batch_size=batch,
        batching_window=DEFAULT_WINDOW,
        record_filter=counted,
    )
    poller = RabbitPoller(source, app.invoker, on_result)
    began = time.perf_counter()
    await poller.start()
    await done.wait()
    rate = count / (time.perf_counter() - began)
    await poller.close()
    BATCHES.append(count / max(len(batches), 1))
    return rate


async def bench(args: argparse.Namespace, broker: Broker, data: Path) -> dict[str, list[float]]:
    settings = load_settings(
        {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": data,
            "sandbox": "process",
            "account_id": ACCOUNT,
            "log_level": "WARNING",
        },
        environ={},
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
        results: dict[str, list[float]] = {"plain": [], "poller": []}
        for _ in range(args.rounds):
            queue = await fill(broker.url, args.messages)
            began = cpu_seconds()
            rate = await plain_consumer(broker.url, queue, args.messages, args.batch)
            CPU["plain"].append((cpu_seconds() - began) / args.messages * 1e6)
            results["plain"].append(rate)
            queue = await fill(broker.url, args.messages)
            began = cpu_seconds()
            rate = await through_poller(app, broker.url, queue, args.messages, args.batch)
            CPU["poller"].append((cpu_seconds() - began) / args.messages * 1e6)
            results["poller"].append(rate)
        return results
    finally:
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(reason)
    with tempfile.TemporaryDirectory() as home:
        broker = Broker(Path(home) / "broker")
        broker.start()
        try:
            result = asyncio.run(bench(args, broker, Path(home) / "data"))
        finally:
            broker.stop()
    plain = statistics.median(result["plain"])
    poller = statistics.median(result["poller"])
    print(
        f"{platform.node()}, RabbitMQ (Debian rabbitmq-server), {args.messages} messages of "
        f"{len(BODY)} bytes, batch {args.batch}, median of {args.rounds} rounds\n"
    )
    print("| measure | value |\n|---|---|")
    print(
        f"| plain aio-pika consumer (prefetch {2 * args.batch}, ack per {args.batch}) | "
        f"{plain:.0f} msg/s |"
    )
    print(
        f"| poller, no-op function, batch {args.batch}, MQ's default 500 ms window | "
        f"{poller:.0f} msg/s ({poller / plain:.0%} of the plain consumer's; "
        f"{statistics.mean(BATCHES):.0f} messages per invoke) |"
    )
    print(
        f"| CPU of this process per message, median (plain / poller) | "
        f"{statistics.median(CPU['plain']):.0f} / {statistics.median(CPU['poller']):.0f} µs |"
    )
    print(
        f"| rounds (plain / poller) | {', '.join(f'{r:.0f}' for r in result['plain'])} / "
        f"{', '.join(f'{r:.0f}' for r in result['poller'])} |"
    )


if __name__ == "__main__":
    main()
