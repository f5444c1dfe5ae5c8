"""Amazon MQ for RabbitMQ event source mappings against a real RabbitMQ broker
(tests/rabbitmq_broker.py: Debian's rabbitmq-server on ports of its own): the mapping API's
answers and checks through boto3's ``lambda`` client, and delivery through a real ``lambdad
serve`` to real functions. Messages are published and inspected with aio-pika; nothing on the
broker side is mocked. Skipped, saying why, where no broker can be started (not root and the
package missing)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.conftest import (
    LoopbackService,
    Server,
    create_function,
    launch_server,
    refused,
    shutdown,
    unique,
    wait_until,
)
from tests.rabbitmq_broker import Broker, unavailable_reason

pytestmark = pytest.mark.slow

BROKER_ARN = (
    "arn:aws:mq:us-east-1:000000000000:broker:test-broker:b-1234a5b6-78cd-901e-2fgh-3i45j6k178l9"
)
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:broker-guest"
#: A user of the ``tenant`` virtual host only (made by ``test_a_virtual_host_...``).
TENANT_SECRET = "arn:aws:secretsmanager:us-east-1:000000000000:secret:tenant"
MISSING_SECRET = "arn:aws:secretsmanager:us-east-1:000000000000:secret:not-given"
AUTH = [{"Type": "BASIC_AUTH", "URI": SECRET_ARN}]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One RabbitMQ node for the module's tests."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    node = Broker(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    yield node
    node.stop()


def mq_settings(broker: Broker) -> dict[str, str]:
    return {
        "LAMBDAD_MQ_BROKERS": json.dumps({BROKER_ARN: broker.url}),
        "LAMBDAD_SECRETS": json.dumps(
            {
                SECRET_ARN: {"username": "guest", "password": "guest"},
                TENANT_SECRET: {"username": "tenant-user", "password": "tenant-pass"},
            }
        ),
    }


@pytest.fixture(scope="module")
def mq_server(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad that knows the module's broker and its guest secret."""
    srv = launch_server(tmp_path_factory.mktemp("lambdad-mq"), mq_settings(broker))
    yield srv
    shutdown(srv)


@pytest.fixture
def client(mq_server: Server) -> Iterator[Any]:
    lam = mq_server.client()
    yield lam
    lam.close()


class EventSink(LoopbackService):
    """Keeps every event a function sends it (its JSON, one per connection)."""

    name = "event-sink"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        self.events.append(json.loads(connection.makefile("rb").read()))

    def messages(self) -> list[dict[str, Any]]:
        """Every message of every event, in the order received."""
        return [m for e in self.events for ms in e["rmqMessagesByQueue"].values() for m in ms]

    def bodies(self) -> list[bytes]:
        return [base64.b64decode(m["data"]) for m in self.messages()]


@pytest.fixture
def sink() -> Iterator[EventSink]:
    service = EventSink()
    yield service
    service.close()


#: Sends its event to the test's sink, then fails on a body ``fail`` not yet redelivered and on
#: every body ``crash``.
FORWARDER = """
import base64, json, os, socket

def handler(event, context):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    with socket.create_connection((host, int(os.environ["SINK_PORT"]))) as s:
        s.sendall(json.dumps(event).encode())
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    for messages in event["rmqMessagesByQueue"].values():
        for message in messages:
            body = base64.b64decode(message["data"])
            if body == b"fail" and not message["redelivered"]:
                raise RuntimeError("fails until redelivered")
            if body == b"crash":
                raise RuntimeError("always fails")
"""


def forwarder(client: Any, sink: EventSink) -> str:
    return str(
        create_function(client, FORWARDER, env={"SINK_PORT": str(sink.port)})["FunctionName"]
    )


def _at(url: str, vhost: str) -> str:
    """The broker's URL with a virtual host (``/`` is ``%2F``)."""
    return f"{url}/{urllib.parse.quote(vhost, safe='')}"


async def _declare(url: str, queue: str, vhost: str = "/") -> None:
    async with await aio_pika.connect(_at(url, vhost)) as connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)


def declare(broker: Broker, vhost: str = "/") -> str:
    """A new durable queue's name."""
    name = unique("q")
    asyncio.run(_declare(broker.url, name, vhost))
    return name


async def _publish(url: str, queue: str, messages: list[aio_pika.Message], vhost: str) -> None:
    async with await aio_pika.connect(_at(url, vhost)) as connection:
        channel = await connection.channel(publisher_confirms=True)
        for message in messages:
            await channel.default_exchange.publish(message, routing_key=queue)


def publish(
    broker: Broker, queue: str, *bodies: bytes | aio_pika.Message, vhost: str = "/"
) -> None:
    messages = [b if isinstance(b, aio_pika.Message) else aio_pika.Message(b) for b in bodies]
    asyncio.run(_publish(broker.url, queue, messages, vhost))


async def _depth(url: str, queue: str) -> int:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


def depth(broker: Broker, queue: str) -> int:
    """Messages ready in ``queue`` (not those a consumer holds unacknowledged)."""
    return asyncio.run(_depth(broker.url, queue))


def settled(client: Any, uuid: str, state: str) -> dict[str, Any]:
    return dict(
        wait_until(
            lambda: (m := client.get_event_source_mapping(UUID=uuid))["State"] == state and m,
            timeout=30,
        )
    )


def create_mapping(client: Any, function: str, queue: str, **extra: Any) -> str:
    answer = client.create_event_source_mapping(
        EventSourceArn=BROKER_ARN,
        FunctionName=function,
        Queues=[queue],
        SourceAccessConfigurations=extra.pop("SourceAccessConfigurations", AUTH),
        **extra,
    )
    settled(client, answer["UUID"], "Enabled")
    return str(answer["UUID"])


def result_of(client: Any, uuid: str) -> str:
    return str(client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"])


# ---------------------------------------------------------------------------- the API


def test_an_mq_mapping_is_created_with_mq_defaults_and_listed(client: Any, broker: Broker) -> None:
    """AWS: an Amazon MQ mapping answers Creating then settles Enabled, with BatchSize 100, its
    Queues and SourceAccessConfigurations as given, no stream settings and no
    DestinationConfig; List finds it by broker ARN; Delete answers Deleting and it goes."""
    fn = create_function(client)["FunctionName"]
    queue = declare(broker)
    vhost = {"Type": "VIRTUAL_HOST", "URI": "/"}
    created = client.create_event_source_mapping(
        EventSourceArn=BROKER_ARN,
        FunctionName=fn,
        Queues=[queue],
        SourceAccessConfigurations=[*AUTH, vhost],
    )
    assert created["State"] == "Creating"
    got = settled(client, created["UUID"], "Enabled")
    assert got["BatchSize"] == 100
    assert got["Queues"] == [queue]
    assert got["SourceAccessConfigurations"] == [*AUTH, vhost]
    assert got["EventSourceArn"] == BROKER_ARN
    assert got["StateTransitionReason"] == "USER_INITIATED"
    for member in ("StartingPosition", "DestinationConfig", "MaximumRetryAttempts"):
        assert member not in got
    listed = client.list_event_source_mappings(EventSourceArn=BROKER_ARN)["EventSourceMappings"]
    assert created["UUID"] in [m["UUID"] for m in listed]
    assert client.delete_event_source_mapping(UUID=created["UUID"])["State"] == "Deleting"
    wait_until(
        lambda: (
            created["UUID"]
            not in [
                m["UUID"]
                for m in client.list_event_source_mappings(EventSourceArn=BROKER_ARN)[
                    "EventSourceMappings"
                ]
            ]
        ),
        timeout=30,
    )


def test_an_unconfigured_broker_is_refused_naming_it(client: Any) -> None:
    """A broker ARN lambdad is not told of (LAMBDAD_MQ_BROKERS) is refused at create with
    InvalidParameterValueException naming the broker (AWS refuses a broker it cannot find)."""
    fn = create_function(client)["FunctionName"]
    other = BROKER_ARN.replace("test-broker", "elsewhere")
    with refused("InvalidParameterValueException", 400) as error:
        client.create_event_source_mapping(
            EventSourceArn=other, FunctionName=fn, Queues=["q"], SourceAccessConfigurations=AUTH
        )
    assert other in error["Message"]


def test_wrong_mq_combinations_get_aws_errors(client: Any) -> None:
    """AWS refuses an MQ mapping without a queue or a BASIC_AUTH secret, with two secrets, a
    type MQ does not take, stream or SQS-scaling parameters, a batch over 10,000 (the
    model's range), a VIRTUAL_HOST in an update, and Queues on another kind of source."""
    fn = create_function(client)["FunctionName"]
    base = {"EventSourceArn": BROKER_ARN, "FunctionName": fn}
    bad: list[tuple[str, dict[str, Any]]] = [
        ("InvalidParameterValueException", {"SourceAccessConfigurations": AUTH}),
        ("InvalidParameterValueException", {"Queues": ["q"]}),
        (
            "InvalidParameterValueException",
            {"Queues": ["q"], "SourceAccessConfigurations": AUTH + AUTH},
        ),
        (
            "InvalidParameterValueException",
            {
                "Queues": ["q"],
                "SourceAccessConfigurations": [*AUTH, {"Type": "VPC_SUBNET", "URI": "subnet:x"}],
            },
        ),
        (
            "InvalidParameterValueException",
            {"Queues": ["q"], "SourceAccessConfigurations": AUTH, "StartingPosition": "LATEST"},
        ),
        (
            "InvalidParameterValueException",
            {"Queues": ["q"], "SourceAccessConfigurations": AUTH, "MaximumRetryAttempts": 3},
        ),
        (
            "InvalidParameterValueException",
            {
                "Queues": ["q"],
                "SourceAccessConfigurations": AUTH,
                "ScalingConfig": {"MaximumConcurrency": 5},
            },
        ),
        (
            "ValidationException",
            {"Queues": ["q"], "SourceAccessConfigurations": AUTH, "BatchSize": 10_001},
        ),
    ]
    for code, extra in bad:
        with refused(code, 400):
            client.create_event_source_mapping(**base, **extra)
    with refused(
        "InvalidParameterValueException",
        400,
        "Unsupported Queues parameter for given event source mapping type.",
    ):
        client.create_event_source_mapping(
            EventSourceArn="arn:aws:sqs:us-east-1:000000000000:some-queue",
            FunctionName=fn,
            Queues=["q"],
        )
    uuid = client.create_event_source_mapping(
        **base, Queues=["q"], SourceAccessConfigurations=AUTH, Enabled=False
    )["UUID"]
    settled(client, uuid, "Disabled")
    with refused("InvalidParameterValueException", 400):
        client.update_event_source_mapping(
            UUID=uuid, SourceAccessConfigurations=[*AUTH, {"Type": "VIRTUAL_HOST", "URI": "/x"}]
        )
    client.update_event_source_mapping(UUID=uuid, BatchSize=7, MaximumBatchingWindowInSeconds=2)
    got = settled(client, uuid, "Disabled")
    assert (got["BatchSize"], got["MaximumBatchingWindowInSeconds"]) == (7, 2)
    assert got["SourceAccessConfigurations"] == AUTH
    client.delete_event_source_mapping(UUID=uuid)


def test_doctor_shows_the_brokers_without_passwords(broker: Broker, tmp_path: Path) -> None:
    """``lambdad doctor`` lists the configured brokers' URLs with any password masked."""
    settings = {
        "LAMBDAD_MQ_BROKERS": json.dumps({BROKER_ARN: "amqp://admin:s3cret@broker.example:5672"}),
    }
    srv = launch_server(tmp_path, settings)
    try:
        report = srv.get_json("/_lambdad/doctor")
    finally:
        shutdown(srv)
    assert report["mq brokers"] == {BROKER_ARN: "amqp://admin:***@broker.example:5672"}
    assert "s3cret" not in json.dumps(report)


# ---------------------------------------------------------------------------- delivery


def test_messages_reach_the_function_in_the_aws_rmq_shape(
    client: Any, broker: Broker, sink: EventSink
) -> None:
    """AWS: the function gets ``aws:rmq`` events: ``eventSourceArn`` the broker, messages
    under ``queue::vhost``, each with ``basicProperties`` (Java client's names, string
    headers as ``{"bytes": [...]}``, absent properties null, ``bodySize``), ``redelivered``
    and the body in base64 as ``data``; acknowledged messages leave the queue."""
    fn = forwarder(client, sink)
    queue = declare(broker)
    uuid = create_mapping(client, fn, queue)
    stamp = datetime.datetime(1970, 1, 1, 0, 33, 41, tzinfo=datetime.UTC)
    publish(
        broker,
        queue,
        aio_pika.Message(
            b'{"hello": "world"}',
            content_type="application/json",
            headers={"header1": "value1", "numberInHeader": 10},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=3,
            correlation_id="c-1",
            message_id="m-1",
            timestamp=stamp,
            expiration=60,
            app_id="tests",
        ),
    )
    wait_until(lambda: sink.events, timeout=60)
    event = sink.events[0]
    assert event["eventSource"] == "aws:rmq"
    assert event["eventSourceArn"] == BROKER_ARN
    assert list(event["rmqMessagesByQueue"]) == [f"{queue}::/"]
    [message] = event["rmqMessagesByQueue"][f"{queue}::/"]
    assert message["redelivered"] is False
    assert base64.b64decode(message["data"]) == b'{"hello": "world"}'
    assert message["basicProperties"] == {
        "contentType": "application/json",
        "contentEncoding": None,
        "headers": {"header1": {"bytes": list(b"value1")}, "numberInHeader": 10},
        "deliveryMode": 2,
        "priority": 3,
        "correlationId": "c-1",
        "replyTo": None,
        "expiration": "60000",
        "messageId": "m-1",
        "timestamp": "Jan 1, 1970, 12:33:41 AM",
        "type": None,
        "userId": None,
        "appId": "tests",
        "clusterId": None,
        "bodySize": 18,
    }
    wait_until(lambda: result_of(client, uuid) == "OK", timeout=30)
    assert depth(broker, queue) == 0


def test_batches_hold_at_most_batch_size_messages(
    client: Any, broker: Broker, sink: EventSink
) -> None:
    """AWS: a batch holds at most BatchSize messages, gathered within the batching window;
    every message is delivered."""
    fn = forwarder(client, sink)
    queue = declare(broker)
    publish(broker, queue, *[f"m{i}".encode() for i in range(23)])
    create_mapping(client, fn, queue, BatchSize=5, MaximumBatchingWindowInSeconds=1)
    wait_until(lambda: len(sink.messages()) >= 23, timeout=60)
    assert sorted(sink.bodies()) == sorted(f"m{i}".encode() for i in range(23))
    sizes = [len(ms) for e in sink.events for ms in e["rmqMessagesByQueue"].values()]
    assert max(sizes) == 5
    assert depth(broker, queue) == 0


def test_a_function_error_requeues_the_batch_and_it_is_redelivered(
    client: Any, broker: Broker, sink: EventSink
) -> None:
    """AWS: a function error acknowledges nothing: the batch goes back to the queue and is
    delivered again with ``redelivered: true`` (then succeeds here)."""
    fn = forwarder(client, sink)
    queue = declare(broker)
    uuid = create_mapping(client, fn, queue, BatchSize=1)
    publish(broker, queue, b"fail")
    wait_until(lambda: len(sink.messages()) >= 2, timeout=60)
    first, second = sink.messages()[:2]
    assert (first["redelivered"], second["redelivered"]) == (False, True)
    assert base64.b64decode(second["data"]) == b"fail"
    wait_until(lambda: result_of(client, uuid) == "OK", timeout=30)
    assert depth(broker, queue) == 0


def test_a_failing_message_stays_in_the_queue(client: Any, broker: Broker, sink: EventSink) -> None:
    """AWS: a message whose batch always fails is never acknowledged; the mapping reports
    ``PROBLEM: Function call failed``, and once disabled the message is back in the queue."""
    fn = forwarder(client, sink)
    queue = declare(broker)
    uuid = create_mapping(client, fn, queue, BatchSize=1)
    publish(broker, queue, b"crash")
    wait_until(lambda: len(sink.messages()) >= 2, timeout=60)
    wait_until(lambda: result_of(client, uuid) == "PROBLEM: Function call failed", timeout=30)
    client.update_event_source_mapping(UUID=uuid, Enabled=False)
    settled(client, uuid, "Disabled")
    wait_until(lambda: depth(broker, queue) == 1, timeout=30)


def test_filtered_out_messages_are_acknowledged_unseen(
    client: Any, broker: Broker, sink: EventSink
) -> None:
    """AWS: with FilterCriteria on ``data`` (a JSON body is matched as JSON), messages that do
    not match never reach the function and are acknowledged (they leave the queue)."""
    fn = forwarder(client, sink)
    queue = declare(broker)
    pattern = json.dumps({"data": {"kind": ["keep"]}})
    create_mapping(client, fn, queue, FilterCriteria={"Filters": [{"Pattern": pattern}]})
    bodies = [
        json.dumps({"kind": k, "n": n}).encode()
        for n, k in enumerate(["keep", "drop", "keep", "x"])
    ]
    publish(broker, queue, *bodies, b"not json")
    wait_until(lambda: depth(broker, queue) == 0 and len(sink.messages()) >= 2, timeout=60)
    assert sorted(json.loads(b)["n"] for b in sink.bodies()) == [0, 2]


def test_disabling_stops_delivery(client: Any, broker: Broker, sink: EventSink) -> None:
    """AWS: a Disabled mapping consumes nothing: messages published then stay in the queue,
    and are delivered once it is enabled again."""
    fn = forwarder(client, sink)
    queue = declare(broker)
    uuid = create_mapping(client, fn, queue)
    publish(broker, queue, b"one")
    wait_until(lambda: sink.bodies() == [b"one"], timeout=60)
    client.update_event_source_mapping(UUID=uuid, Enabled=False)
    settled(client, uuid, "Disabled")
    publish(broker, queue, b"two")
    wait_until(lambda: depth(broker, queue) == 1, timeout=30)
    assert sink.bodies() == [b"one"]
    client.update_event_source_mapping(UUID=uuid, Enabled=True)
    settled(client, uuid, "Enabled")
    wait_until(lambda: sink.bodies() == [b"one", b"two"], timeout=60)


def test_a_virtual_host_and_its_own_user_are_used(
    client: Any, broker: Broker, sink: EventSink
) -> None:
    """AWS: with VIRTUAL_HOST the mapping consumes the queue of that virtual host, logging in
    with the BASIC_AUTH secret's user, and the messages are keyed ``queue::vhost``."""
    vhost = unique("tenant")
    broker.ctl("add_vhost", vhost)
    with contextlib.suppress(RuntimeError):  # made by an earlier run of the module
        broker.ctl("add_user", "tenant-user", "tenant-pass")
    broker.ctl("set_permissions", "-p", vhost, "tenant-user", ".*", ".*", ".*")
    broker.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    fn = forwarder(client, sink)
    queue = declare(broker, vhost)
    access = [
        {"Type": "BASIC_AUTH", "URI": TENANT_SECRET},
        {"Type": "VIRTUAL_HOST", "URI": vhost},
    ]
    uuid = create_mapping(client, fn, queue, SourceAccessConfigurations=access)
    publish(broker, queue, b"in the tenant", vhost=vhost)
    wait_until(lambda: sink.events, timeout=60)
    assert list(sink.events[0]["rmqMessagesByQueue"]) == [f"{queue}::{vhost}"]
    assert sink.bodies() == [b"in the tenant"]
    wait_until(lambda: result_of(client, uuid) == "OK", timeout=30)


def test_a_throttled_batch_waits_and_is_delivered_later(
    client: Any, broker: Broker, sink: EventSink
) -> None:
    """AWS retries a batch whose invoke is throttled, holding its messages: with reserved
    concurrency 0 the mapping reports the throttling and delivers nothing; once the
    function may run again the held batch is delivered."""
    fn = forwarder(client, sink)
    client.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=0)
    queue = declare(broker)
    uuid = create_mapping(client, fn, queue)
    publish(broker, queue, b"held")
    wait_until(lambda: result_of(client, uuid) == "PROBLEM: Function call throttled", timeout=60)
    assert sink.events == []
    client.delete_function_concurrency(FunctionName=fn)
    wait_until(lambda: sink.bodies() == [b"held"], timeout=60)
    wait_until(lambda: result_of(client, uuid) == "OK", timeout=30)


def test_an_update_takes_effect_on_the_running_mapping(
    client: Any, broker: Broker, sink: EventSink
) -> None:
    """AWS: an update (here BatchSize and the window) applies to what is consumed next: a
    full batch goes at once, without waiting for the window (300 s, scaled to 3 s here)."""
    fn = forwarder(client, sink)
    queue = declare(broker)
    uuid = create_mapping(client, fn, queue, BatchSize=1)
    publish(broker, queue, b"single")
    wait_until(lambda: sink.bodies() == [b"single"], timeout=60)
    client.update_event_source_mapping(UUID=uuid, BatchSize=4, MaximumBatchingWindowInSeconds=300)
    settled(client, uuid, "Enabled")
    publish(broker, queue, *[f"b{i}".encode() for i in range(4)])
    wait_until(lambda: len(sink.messages()) == 5, timeout=60)
    assert [len(ms) for ms in sink.events[-1]["rmqMessagesByQueue"].values()] == [4]


def test_a_secret_lambdad_does_not_have_is_reported(client: Any, broker: Broker) -> None:
    """AWS accepts any secret ARN at create and reports one it cannot read on the mapping;
    lambdad says so in LastProcessingResult and consumes nothing."""
    fn = create_function(client)["FunctionName"]
    queue = declare(broker)
    uuid = create_mapping(
        client,
        fn,
        queue,
        SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": MISSING_SECRET}],
    )
    wait_until(lambda: MISSING_SECRET in result_of(client, uuid), timeout=30)
    assert result_of(client, uuid).startswith("PROBLEM: ")


def test_a_queue_that_does_not_exist_is_reported(client: Any, broker: Broker) -> None:
    """A queue the broker does not have is reported in LastProcessingResult (AWS's poller
    reports it likewise), and consumed once it is declared."""
    fn = create_function(client)["FunctionName"]
    queue = unique("missing")
    uuid = create_mapping(client, fn, queue)
    wait_until(lambda: result_of(client, uuid).startswith("PROBLEM: Cannot consume"), timeout=30)
    asyncio.run(_declare(broker.url, queue))
    publish(broker, queue, b"late")
    wait_until(lambda: result_of(client, uuid) == "OK", timeout=60)


# ---------------------------------------------------------------------------- broker restarts


def test_the_mapping_reconnects_after_a_broker_restart(
    tmp_path_factory: pytest.TempPathFactory, sink: EventSink
) -> None:
    """When the broker goes away the mapping reports it in LastProcessingResult and keeps
    trying (with backoff); once the broker is back it consumes again."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    node = Broker(tmp_path_factory.mktemp("rabbitmq-restart"))
    node.start()
    srv = launch_server(tmp_path_factory.mktemp("lambdad-mq-restart"), mq_settings(node))
    client = srv.client()
    try:
        fn = forwarder(client, sink)
        queue = declare(node)
        uuid = create_mapping(client, fn, queue)
        publish(node, queue, b"before")
        wait_until(lambda: sink.bodies() == [b"before"], timeout=60)
        node.stop()
        wait_until(
            lambda: result_of(client, uuid).startswith("PROBLEM: Cannot consume"), timeout=60
        )
        node.start()
        publish(node, queue, b"after")
        wait_until(lambda: sink.bodies() == [b"before", b"after"], timeout=90)
        wait_until(lambda: result_of(client, uuid) == "OK", timeout=30)
    finally:
        client.close()
        shutdown(srv)
        node.stop()
