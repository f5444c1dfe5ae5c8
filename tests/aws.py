"""moto's server as the AWS-compatible endpoint of destinations and DLQs, and what tests read
from it: SQS queues (also subscribed to SNS topics and targeted by EventBridge rules)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
from typing import Any

from tests.conftest import (
    LoopbackService,
    Moto,
    Rendezvous,
    Server,
    create_function,
    unique,
    wait_until,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"

#: A function that reports each run to the test's ``Recorder`` (its request id and
#: ``event["seq"]``), then does what ``event["do"]`` says: "ok" returns ``{"echo": event}``,
#: "raise" raises ``ValueError(event["message"])``, "sleep" outlives its timeout, "exit" crashes,
#: "hold" waits until the test lets the ``Rendezvous`` on port ``event["gate"]`` answer.
BEHAVING = """
import os, socket, time


def handler(event, context):
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{context.aws_request_id} {event.get('seq', -1)}\\n".encode())
        connection.recv(1)
    action = event.get("do", "ok")
    if action == "hold":
        host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
        with socket.create_connection((host, event["gate"]), timeout=60) as gate:
            gate.recv(16)
    if action == "raise":
        raise ValueError(event.get("message", "it failed"))
    if action == "sleep":
        time.sleep(30)
    if action == "exit":
        os._exit(3)
    return {"echo": event}
"""


class Inbox:
    """An SQS queue of moto that a test reads everything from."""

    def __init__(self, moto: Moto) -> None:
        self.sqs = moto.client("sqs")
        self.url = self.sqs.create_queue(QueueName=unique("inbox"))["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        self.arn = str(attributes["Attributes"]["QueueArn"])
        self.messages: list[dict[str, Any]] = []

    def _receive(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        for message in answer.get("Messages", []):
            self.messages.append(message)
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return self.messages

    def wait(self, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """The first ``count`` messages, once that many have arrived."""
        wait_until(lambda: len(self._receive()) >= count, timeout=timeout, interval=0.1)
        return self.messages[:count]

    def bodies(self, count: int = 1, timeout: float = 30) -> list[Any]:
        return [json.loads(m["Body"]) for m in self.wait(count, timeout)]

    def allow_from(self, source_arn: str) -> None:
        """A queue policy that lets ``source_arn`` (a topic or rule) send to the queue."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "sqs:SendMessage",
                    "Resource": self.arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
                }
            ],
        }
        self.sqs.set_queue_attributes(QueueUrl=self.url, Attributes={"Policy": json.dumps(policy)})


def topic_into(moto: Moto, inbox: Inbox, *, raw: bool) -> str:
    """A new SNS topic delivering to ``inbox`` (raw: the message itself, with its attributes)."""
    sns = moto.client("sns")
    topic = str(sns.create_topic(Name=unique("topic"))["TopicArn"])
    inbox.allow_from(topic)
    attributes = {"RawMessageDelivery": "true"} if raw else {}
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox.arn, Attributes=attributes)
    return topic


def bus_into(moto: Moto, inbox: Inbox) -> str:
    """A new EventBridge bus whose one rule (every ``lambda`` event) targets ``inbox``."""
    events = moto.client("events")
    name = unique("bus")
    bus = str(events.create_event_bus(Name=name)["EventBusArn"])
    rule = events.put_rule(
        Name=unique("rule"), EventBusName=name, EventPattern=json.dumps({"source": ["lambda"]})
    )
    inbox.allow_from(str(rule["RuleArn"]))
    events.put_targets(
        Rule=rule["RuleArn"].rsplit("/", 1)[-1],
        EventBusName=name,
        Targets=[{"Id": "inbox", "Arn": inbox.arn}],
    )
    return bus


def function_of(client: Any, code: str, **kwargs: Any) -> str:
    """Create a Python function of ``code`` (keyword arguments go to CreateFunction)."""
    options: dict[str, Any] = {"Timeout": 30, **kwargs}
    return str(create_function(client, code, name=unique("deliver"), **options)["FunctionName"])


def behaving_function(client: Any, recorder_port: int, **kwargs: Any) -> str:
    """Create a ``BEHAVING`` function (keyword arguments go to CreateFunction)."""
    variables = {"Variables": {"RECORDER_PORT": str(recorder_port)}}
    return function_of(client, BEHAVING, Environment=variables, **kwargs)


def release(gate: Rendezvous) -> None:
    """Be the second party of ``gate``: the function holding it goes on."""
    with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as connection:
        connection.recv(16)


def fire(client: Any, name: str, event: dict[str, Any], **kwargs: Any) -> str:
    """An ``Event`` invoke of ``event``; its request id."""
    response = client.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode(), **kwargs
    )
    assert response["StatusCode"] == 202
    return str(response["ResponseMetadata"]["RequestId"])


def queued(srv: Server, request_id: str) -> tuple[int, dict[str, str]] | None:
    """The queue row of an event, read from lambdad's queue database (a cluster's: its
    JetStream stream): its attempt count and attributes, or None once it is gone
    (acknowledged)."""
    if srv.cluster is not None:
        return asyncio.run(_queued_in_jetstream(srv.cluster.nats.url, request_id))
    with contextlib.closing(sqlite3.connect(srv.data_dir / "queue.db", timeout=10)) as db:
        row = db.execute(
            "SELECT attempt, attributes FROM events WHERE id = ?", (request_id,)
        ).fetchone()
    return None if row is None else (int(row[0]), json.loads(row[1]))


async def _queued_in_jetstream(url: str, request_id: str) -> tuple[int, dict[str, str]] | None:
    """``queued`` of a cluster: the event's message in the stream ``LAMBDAD_EVENTS``
    (docs/cluster.md, "The async queue on JetStream"), read with a client of the test's own."""
    import nats
    import nats.js.errors

    from lambdad.store.nats_queue import EVENT_SUBJECT, EVENTS, HEADER, subject_key

    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        subject = f"{EVENT_SUBJECT}.{subject_key(request_id)}"
        try:
            msg = await client.jetstream().get_last_msg(EVENTS, subject)
        except nats.js.errors.NotFoundError:
            return None
        fields = json.loads((msg.headers or {})[HEADER])
        return int(fields["attempt"]), dict(fields["attributes"])
    finally:
        await client.close()


#: A function that sends the event it got, as JSON, to the test's ``Collector``.
FORWARDING = """
import json, os, socket


def handler(event, context):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    address = (host, int(os.environ["COLLECTOR_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(json.dumps(event).encode())
        connection.shutdown(socket.SHUT_WR)
        connection.recv(1)
"""


class Collector(LoopbackService):
    """A loopback service keeping the JSON document each connection sends (until EOF)."""

    name = "collector"

    def __init__(self) -> None:
        self.documents: list[Any] = []
        super().__init__(backlog=128)

    def handle(self, connection: socket.socket) -> None:
        self.documents.append(json.loads(connection.makefile("rb").read()))

    def wait(self, count: int = 1, timeout: float = 30) -> list[Any]:
        wait_until(lambda: len(self.documents) >= count, timeout=timeout)
        return list(self.documents[:count])


def forwarding_function(client: Any, collector: Collector) -> str:
    """A ``FORWARDING`` function: a destination whose events the test reads."""
    env = {"COLLECTOR_PORT": str(collector.port)}
    created = create_function(client, FORWARDING, name=unique("dest"), env=env)
    return str(
        client.get_function_configuration(FunctionName=created["FunctionName"])["FunctionArn"]
    )
