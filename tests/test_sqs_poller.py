"""The SQS poller (``lambdad.events.sqs``) against a real moto queue and real functions.

The poller is not yet reachable through the mapping API, so each test builds a whole lambdad in
this process with the composition root (as ``test_dispatch_loop.py`` does), creates a real
function with boto3, fills a real queue on the suite's moto server and runs an ``SqsPoller``
with the app's own ``Invoker``. The function's effects (one file per batch it was given) and
the queue's remaining messages are what the tests assert on. SQS delivers at least once,
and moto's receives race under concurrency, so tests count a message delivered twice as
delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lambdad.app import Lambdad
from lambdad.config import load_settings
from lambdad.control.arns import Scope
from lambdad.events.sqs import FUNCTION_FAILED, OK, THROTTLED, SqsPoller, SqsSource
from lambdad.invoke.aws_clients import AwsEndpoint
from tests.conftest import ROLE, Moto, make_zip, unique

pytestmark = pytest.mark.slow

#: moto's account: the queues' and (so that ARNs agree) lambdad's.
ACCOUNT = "123456789012"
REGION = "us-east-1"

#: Writes every batch it is given to ``OUT_DIR`` (before failing, so failed deliveries count),
#: appends each FIFO record's body to its group's file, and counts the batches running with it.
#: A body ``fail-once...`` fails the batch the first time it is seen, ``crash...`` every time;
#: ``poison...`` is always reported as a batch item failure; ``ANSWER`` replaces the answer.
HANDLER = """
import json, os, time

def handler(event, context):
    out = os.environ["OUT_DIR"]
    mark = os.path.join(out, "running-" + context.aws_request_id)
    open(mark, "w").close()
    running = len([n for n in os.listdir(out) if n.startswith("running-")])
    time.sleep(float(os.environ.get("SLEEP", "0")))
    os.remove(mark)
    with open(os.path.join(out, "batch-" + context.aws_request_id), "w") as handle:
        json.dump({"records": event["Records"], "running": running}, handle)
    failures = []
    for record in event["Records"]:
        body = record["body"]
        group = record["attributes"].get("MessageGroupId")
        if group:
            with open(os.path.join(out, "group-" + group), "a") as handle:
                handle.write(body + "\\n")
        if body.startswith("fail-once"):
            marker = os.path.join(out, "failed-" + body)
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("fails once: " + body)
        if body.startswith("crash"):
            raise RuntimeError("always fails: " + body)
        if body.startswith("poison"):
            failures.append({"itemIdentifier": record["messageId"]})
    if "ANSWER" in os.environ:
        return json.loads(os.environ["ANSWER"])
    return {"batchItemFailures": failures}
"""


class Harness:
    """A lambdad built in this process, one function of it, one queue, and the batches seen."""

    def __init__(self, app: Lambdad, moto: Moto, out: Path, function: str) -> None:
        self.app = app
        self.moto = moto
        self.sqs = moto.client("sqs")
        self.out = out
        self.function = function
        self.results: list[str] = []
        self.pollers: list[SqsPoller] = []

    def queue(self, fifo: bool = False, **attributes: str) -> tuple[str, str]:
        """A new queue's ``(url, arn)``."""
        name = unique("q") + (".fifo" if fifo else "")
        if fifo:
            attributes["FifoQueue"] = "true"
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    def send(self, url: str, bodies: list[str], **extra: Any) -> None:
        for start in range(0, len(bodies), 10):
            entries = [
                {"Id": str(n), "MessageBody": body, **extra}
                for n, body in enumerate(bodies[start : start + 10])
            ]
            answer = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
            assert not answer.get("Failed"), answer

    async def poll(self, url: str, arn: str, **options: Any) -> SqsPoller:
        source = SqsSource(
            scope=Scope(ACCOUNT, REGION),
            function_name=self.function,
            qualifier=None,
            queue_arn=arn,
            queue_url=url,
            endpoint=AwsEndpoint(self.moto.endpoint, "testing", "testing"),
            **options,
        )
        poller = SqsPoller(
            source, self.app.invoker, self.results.append, time_scale=self.app.settings.time_scale
        )
        self.pollers.append(poller)
        await poller.start()
        return poller

    def batches(self) -> list[dict[str, Any]]:
        """Every batch the function was given (its records and how many ran beside it)."""
        found = []
        for path in self.out.glob("batch-*"):
            with contextlib.suppress(ValueError):  # one being written
                found.append(json.loads(path.read_text()))
        return found

    def delivered(self) -> list[str]:
        """The bodies of every record delivered, once per delivery."""
        return [r["body"] for b in self.batches() for r in b["records"]]

    def left(self, url: str) -> int:
        """Messages still in the queue, visible or in flight."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return sum(int(attributes["Attributes"][n]) for n in names)


async def _eventually(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    """Wait until predicate() (run off the loop) holds."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path, moto: Moto, env: dict[str, str] | None = None
) -> AsyncIterator[Harness]:
    """A lambdad in this process (plain-process sandbox, time scale 0.01) and its function."""
    settings = load_settings(
        {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / "data",
            "sandbox": "process",
            "account_id": ACCOUNT,
            "aws_endpoint_url": moto.endpoint,
        },
        environ={"LAMBDAD_TIME_SCALE": "0.01"},
    )
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    app = Lambdad(settings)
    await app.start()
    try:
        assert app.port is not None
        client = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{app.port}",
            region_name=REGION,
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="secret",
            config=Config(retries={"total_max_attempts": 1}),
        )
        name = unique("sqsfn")
        await asyncio.to_thread(
            client.create_function,
            FunctionName=name,
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": HANDLER})},
            Environment={"Variables": {"OUT_DIR": str(out), **(env or {})}},
        )
        test = Harness(app, moto, out, name)
        test.lambda_client = client  # type: ignore[attr-defined]
        try:
            yield test
        finally:
            for poller in test.pollers:
                await poller.close()
    finally:
        await app.close()


def test_standard_queue_is_delivered_in_batches_in_lambdas_record_shape(
    tmp_path: Path, moto: Moto
) -> None:
    """Every message reaches the function once, in batches of at most BatchSize, as Lambda's
    SQS record (string attributes, messageAttributes in camel case, md5OfMessageAttributes only
    with attributes, eventSource aws:sqs), and is deleted after success (LastProcessingResult
    OK)."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue()
            bodies = [f"m{n}" for n in range(23)]
            test.send(url, bodies[:-1])
            test.sqs.send_message(
                QueueUrl=url,
                MessageBody=bodies[-1],
                MessageAttributes={
                    "colour": {"DataType": "String", "StringValue": "blue"},
                    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
                },
            )
            await test.poll(url, arn, batch_size=10)
            await _eventually(lambda: set(test.delivered()) == set(bodies))
            await _eventually(lambda: test.left(url) == 0)
            assert all(len(b["records"]) <= 10 for b in test.batches())
            records = {r["body"]: r for b in test.batches() for r in b["records"]}
            plain, rich = records["m0"], records[bodies[-1]]
            assert set(plain) == {
                "messageId",
                "receiptHandle",
                "body",
                "attributes",
                "messageAttributes",
                "md5OfBody",
                "eventSource",
                "eventSourceARN",
                "awsRegion",
            }
            assert plain["eventSource"] == "aws:sqs"
            assert plain["eventSourceARN"] == arn
            assert plain["awsRegion"] == REGION
            assert plain["messageAttributes"] == {}
            assert plain["attributes"]["ApproximateReceiveCount"] == "1"
            for key in ("SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"):
                assert isinstance(plain["attributes"][key], str), key
            assert rich["md5OfMessageAttributes"]
            assert rich["messageAttributes"]["colour"] == {
                "stringValue": "blue",
                "binaryValue": None,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
            assert rich["messageAttributes"]["blob"]["binaryValue"] == "AAE="
            assert test.results
            assert set(test.results) == {OK}

    asyncio.run(scenario())


def test_fifo_queue_keeps_order_within_each_message_group(tmp_path: Path, moto: Moto) -> None:
    """On a FIFO queue each message group's messages reach the function in the order they were
    sent, with FIFO's MessageGroupId and MessageDeduplicationId attributes (as Lambda
    delivers FIFO queues)."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue(fifo=True, ContentBasedDeduplication="true")
            groups = ["a", "b", "c"]
            for n in range(12):
                for group in groups:
                    test.sqs.send_message(
                        QueueUrl=url, MessageBody=f"{group}{n}", MessageGroupId=group
                    )
            # One batch at a time: moto's ReceiveMessage is not atomic under concurrent
            # receives (two may hand out one message, or a group's next message while its
            # previous one is in flight), which SQS guarantees and the poller relies on.
            await test.poll(url, arn, batch_size=3, maximum_concurrency=1)
            await _eventually(lambda: len(test.delivered()) == 36)
            await _eventually(lambda: test.left(url) == 0)
            for group in groups:
                lines = (test.out / f"group-{group}").read_text().split()
                assert lines == [f"{group}{n}" for n in range(12)]
            record = test.batches()[0]["records"][0]
            # moto gives no SequenceNumber; the poller passes it on where the queue gives it.
            for key in ("MessageGroupId", "MessageDeduplicationId"):
                assert isinstance(record["attributes"][key], str), key

    asyncio.run(scenario())


def test_partial_batch_response_deletes_all_but_the_reported_messages(
    tmp_path: Path, moto: Moto
) -> None:
    """With ReportBatchItemFailures, the messages the function names in batchItemFailures stay
    in the queue (in flight until their visibility timeout) and the others are deleted, as
    Lambda does; a poison message never holds back the rest."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue(VisibilityTimeout="600")
            bodies = [f"ok{n}" for n in range(8)] + ["poison1", "poison2"]
            test.send(url, bodies)
            await test.poll(url, arn, batch_size=10, report_batch_item_failures=True)
            await _eventually(lambda: set(test.delivered()) == set(bodies))
            await _eventually(lambda: test.left(url) == 2)
            attributes = test.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            assert attributes["ApproximateNumberOfMessagesNotVisible"] == "2"
            assert OK in test.results

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "answer",
    [
        '{"batchItemFailures": [{"itemIdentifier": ""}]}',
        '{"batchItemFailures": [{"itemIdentifier": null}]}',
        '{"batchItemFailures": [{"messageId": "x"}]}',
        '{"batchItemFailures": [{"itemIdentifier": "no-such-message"}]}',
    ],
)
def test_a_malformed_partial_batch_response_fails_the_whole_batch(
    tmp_path: Path, moto: Moto, answer: str
) -> None:
    """A partial batch response with an empty or null itemIdentifier, a
    wrong key or an unknown id fails the whole batch: AWS deletes nothing of it. (Invalid JSON,
    which a Python handler cannot return, is pinned in tests/unit/test_sqs_records.py.)"""

    async def scenario() -> None:
        async with harness(tmp_path, moto, {"ANSWER": answer}) as test:
            url, arn = test.queue(VisibilityTimeout="600")
            test.send(url, ["x1", "x2"])
            await test.poll(url, arn, batch_size=10, report_batch_item_failures=True)
            await _eventually(lambda: FUNCTION_FAILED in test.results or OK in test.results)
            assert test.results[0] == FUNCTION_FAILED
            assert await asyncio.to_thread(test.left, url) == 2

    asyncio.run(scenario())


def test_a_failed_batch_reappears_and_is_delivered_again(tmp_path: Path, moto: Moto) -> None:
    """A function error deletes nothing: the batch reappears after the queue's visibility
    timeout and is delivered again (LastProcessingResult "PROBLEM: Function call failed")."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue(VisibilityTimeout="1")
            test.send(url, ["fail-once-1", "fine-1"])
            await test.poll(url, arn, batch_size=10)
            await _eventually(lambda: test.left(url) == 0)
            delivered = test.delivered()
            assert delivered.count("fail-once-1") >= 2
            assert FUNCTION_FAILED in test.results
            assert test.results[-1] == OK

    asyncio.run(scenario())


def test_a_poison_message_goes_to_the_dead_letter_queue_and_blocks_nothing(
    tmp_path: Path, moto: Moto
) -> None:
    """A message whose batch always fails reappears until the queue's redrive policy moves it
    to its dead-letter queue (maxReceiveCount), while the messages behind it are delivered:
    as on AWS, the queue's redrive policy, not Lambda, ends a poison message."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            dlq_url, dlq_arn = test.queue()
            policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
            url, arn = test.queue(VisibilityTimeout="1", RedrivePolicy=policy)
            bodies = ["crash-1"] + [f"ok{n}" for n in range(6)]
            test.send(url, bodies)
            await test.poll(url, arn, batch_size=1)
            await _eventually(lambda: test.left(url) == 0)
            await _eventually(lambda: test.left(dlq_url) == 1)
            delivered = test.delivered()
            assert sorted(b for b in delivered if b.startswith("ok")) == bodies[1:]
            assert delivered.count("crash-1") >= 2

    asyncio.run(scenario())


def test_batching_window_gathers_more_than_one_receive(tmp_path: Path, moto: Moto) -> None:
    """With a batching window, a batch grows past SQS's 10 messages per receive up to
    BatchSize (AWS: up to 10,000 with MaximumBatchingWindowInSeconds)."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue()
            bodies = [f"m{n}" for n in range(25)]
            test.send(url, bodies)
            # 100 s at the tests' time scale (0.01): a 1 s window.
            await test.poll(url, arn, batch_size=25, batching_window=100)
            await _eventually(lambda: set(test.delivered()) == set(bodies))
            assert max(len(b["records"]) for b in test.batches()) > 10

    asyncio.run(scenario())


def test_a_deleted_function_consumes_nothing(tmp_path: Path, moto: Moto) -> None:
    """Once its function is deleted the poller deletes no message and says why in its
    processing result (AWS keeps the mapping and consumes nothing)."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            client = test.lambda_client  # type: ignore[attr-defined]
            await asyncio.to_thread(client.delete_function, FunctionName=test.function)
            url, arn = test.queue(VisibilityTimeout="1")
            test.send(url, ["d1"])
            await test.poll(url, arn)
            await _eventually(lambda: any("Function not found" in r for r in test.results))
            assert test.results[-1].startswith("PROBLEM: ")
            assert await asyncio.to_thread(test.left, url) == 1

    asyncio.run(scenario())


def test_filtered_out_messages_are_deleted_without_invoking(tmp_path: Path, moto: Moto) -> None:
    """Messages the mapping's filter rejects are deleted and never reach the function (AWS
    deletes filtered-out SQS messages)."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue()
            test.send(url, ["keep1", "skip1", "keep2", "skip2", "skip3"])
            await test.poll(url, arn, record_filter=lambda r: r["body"].startswith("keep"))
            await _eventually(lambda: test.left(url) == 0)
            await _eventually(lambda: set(test.delivered()) == {"keep1", "keep2"})

    asyncio.run(scenario())


def test_concurrency_scales_up_and_stays_under_maximum_concurrency(
    tmp_path: Path, moto: Moto
) -> None:
    """While the queue has messages the poller runs batches side by side, never more than
    ScalingConfig.MaximumConcurrency at once."""

    async def scenario() -> None:
        async with harness(tmp_path, moto, {"SLEEP": "0.3"}) as test:
            url, arn = test.queue()
            test.send(url, [f"m{n}" for n in range(24)])
            await test.poll(url, arn, batch_size=1, maximum_concurrency=3)
            await _eventually(lambda: test.left(url) == 0, timeout=90)
            running = [b["running"] for b in test.batches()]
            assert set(test.delivered()) == {f"m{n}" for n in range(24)}
            assert max(running) <= 3
            assert max(running) >= 2

    asyncio.run(scenario())


def test_throttled_batches_are_retried_without_loss(tmp_path: Path, moto: Moto) -> None:
    """A batch refused with TooManyRequestsException (reserved concurrency 0) is not deleted:
    once the function may run again every message is delivered."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            client = test.lambda_client  # type: ignore[attr-defined]
            await asyncio.to_thread(
                client.put_function_concurrency,
                FunctionName=test.function,
                ReservedConcurrentExecutions=0,
            )
            url, arn = test.queue(VisibilityTimeout="1")
            test.send(url, ["t1", "t2", "t3"])
            await test.poll(url, arn, batch_size=10)
            await _eventually(lambda: THROTTLED in test.results)
            assert test.delivered() == []
            assert await asyncio.to_thread(test.left, url) == 3
            await asyncio.to_thread(client.delete_function_concurrency, FunctionName=test.function)
            await _eventually(lambda: test.left(url) == 0)
            assert set(test.delivered()) == {"t1", "t2", "t3"}

    asyncio.run(scenario())


def test_close_cancels_a_long_poll(tmp_path: Path, moto: Moto) -> None:
    """close() does not wait out a 20 s long poll on an empty queue, and a poller refuses to
    start again once closed."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue()
            poller = await test.poll(url, arn)
            await _eventually(lambda: poller._receiving > 0)
            await asyncio.wait_for(poller.close(), timeout=10)
            await poller.close()
            with pytest.raises(RuntimeError):
                await poller.start()

    asyncio.run(scenario())


def test_what_a_long_poll_under_way_at_close_takes_goes_back_to_the_queue(
    tmp_path: Path, moto: Moto
) -> None:
    """A long poll already waiting on the queue when the poller closes may still be handed a
    message (the endpoint does not know its client is going): the poller lets that poll
    finish, never delivers what it brings, and makes it visible again at once rather than
    after the queue's visibility timeout (issue 12: "messages a poll in flight took go back
    to the queue")."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            url, arn = test.queue(VisibilityTimeout="600")
            poller = await test.poll(url, arn)
            await _eventually(lambda: poller._receiving > 0)
            await asyncio.wait_for(poller.close(), timeout=10)
            await asyncio.to_thread(test.send, url, ["late"])
            await asyncio.wait_for(poller.released(), timeout=60)
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            found = await asyncio.to_thread(
                test.sqs.get_queue_attributes, QueueUrl=url, AttributeNames=names
            )
            assert [int(found["Attributes"][n]) for n in names] == [1, 0]
            assert test.batches() == []
            # The closing poll did take it: this is its second receive.
            again = await asyncio.to_thread(
                test.sqs.receive_message, QueueUrl=url, MessageSystemAttributeNames=["All"]
            )
            (message,) = again["Messages"]
            assert message["Attributes"]["ApproximateReceiveCount"] == "2"

    asyncio.run(scenario())


def test_close_returns_the_messages_of_a_batch_under_way(tmp_path: Path, moto: Moto) -> None:
    """Closing the poller while its function runs makes the batch's messages visible again at
    once instead of after the queue's visibility timeout (a disabled mapping gives back what
    it held; delivery stays at-least-once)."""

    async def scenario() -> None:
        async with harness(tmp_path, moto, {"SLEEP": "2"}) as test:
            url, arn = test.queue(VisibilityTimeout="600")
            test.send(url, ["held"])
            poller = await test.poll(url, arn)
            await _eventually(lambda: any(test.out.glob("running-*")))
            await poller.close()
            names = ["ApproximateNumberOfMessages"]

            def visible() -> int:
                found = test.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
                return int(found["Attributes"][names[0]])

            await _eventually(lambda: visible() == 1)

    asyncio.run(scenario())


def test_a_missing_queue_is_reported_and_polled_again(tmp_path: Path, moto: Moto) -> None:
    """A queue that does not exist (yet) is reported in the processing result and polled
    again with backoff: once it exists its messages are delivered (AWS: the mapping reports
    the problem and keeps retrying)."""

    async def scenario() -> None:
        async with harness(tmp_path, moto) as test:
            name = unique("late")
            url = f"{moto.endpoint}/{ACCOUNT}/{name}"
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
            await test.poll(url, arn)
            await _eventually(lambda: any("Cannot read from the queue" in r for r in test.results))
            created = test.sqs.create_queue(QueueName=name)["QueueUrl"]
            test.send(created, ["late1"])
            await _eventually(lambda: test.delivered() == ["late1"])

    asyncio.run(scenario())
