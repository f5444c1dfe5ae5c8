"""The async dispatcher never dies quietly: a queue whose ``take``, ``ack`` and ``retry`` fail
for a while (behind the ``Queue`` seam) delays delivery but loses no event. The rest is real: a
whole lambdad built by the composition root in this process, boto3, real runtime processes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from lambdad.app import Lambdad
from lambdad.config import load_settings
from lambdad.store.base import QueuedEvent
from lambdad.store.memory import MemoryQueue
from tests.conftest import ROLE, make_zip

HANDLER = """
import json, os

def handler(event, context):
    # The first run of event 2 fails, so the dispatcher retries it (through Queue.retry).
    marker = os.path.join(event["dir"], "failed-once")
    if event["n"] == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first run fails")
    with open(os.path.join(event["dir"], "ran-%d" % event["n"]), "w") as handle:
        handle.write(context.aws_request_id)
    return event["n"]
"""


class FlakyQueue(MemoryQueue):
    """The in-memory queue, whose ``take``, ``ack`` and ``retry`` each fail their first calls."""

    def __init__(self, *, takes: int, acks: int, retries: int) -> None:
        super().__init__()
        self.failures = {"take": takes, "ack": acks, "retry": retries}
        self.failed = {"take": 0, "ack": 0, "retry": 0}

    def _maybe_fail(self, verb: str) -> None:
        if self.failures[verb] > 0:
            self.failures[verb] -= 1
            self.failed[verb] += 1
            raise OSError(5, f"{verb} failed on purpose")

    async def take(self) -> QueuedEvent:
        self._maybe_fail("take")
        return await super().take()

    async def ack(self, event_id: str) -> None:
        self._maybe_fail("ack")
        await super().ack(event_id)

    async def retry(self, event: QueuedEvent, not_before: float) -> None:
        self._maybe_fail("retry")
        await super().retry(event, not_before)


async def _eventually(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _client(port: int) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_events_are_delivered_although_take_ack_and_retry_fail_for_a_while(
    tmp_path: Path,
) -> None:
    """Every accepted event runs (a failed one is retried, as Lambda retries function errors)
    although the queue's take failed 5 times, its ack 3 times and its retry twice."""
    settings = load_settings(
        {"host": "127.0.0.1", "port": 0, "data_dir": tmp_path / "data", "sandbox": "process"},
        environ={"LAMBDAD_TIME_SCALE": "0.01"},
    )
    queue = FlakyQueue(takes=5, acks=3, retries=2)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)

    async def scenario() -> None:
        app = Lambdad(settings, queue=queue)
        await app.start()
        try:
            assert app.port is not None
            client = _client(app.port)
            await asyncio.to_thread(
                client.create_function,
                FunctionName="flaky",
                Runtime="python3.11",
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": make_zip({"app.py": HANDLER})},
            )
            for n in range(5):
                payload = json.dumps({"n": n, "dir": str(out)}).encode()
                answer = await asyncio.to_thread(
                    client.invoke, FunctionName="flaky", InvocationType="Event", Payload=payload
                )
                assert answer["StatusCode"] == 202
            await _eventually(lambda: all((out / f"ran-{n}").exists() for n in range(5)))
            await _eventually(lambda: queue.pending() == 0)
        finally:
            await app.close()

    asyncio.run(scenario())
    assert queue.failed == {"take": 5, "ack": 3, "retry": 2}
    assert (out / "failed-once").exists()
