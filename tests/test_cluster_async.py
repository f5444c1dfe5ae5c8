"""Async invokes in a cluster (docs/cluster.md, issue 16 part 5): an api node puts Event
invokes in the JetStream work queue and a worker runs them, with their retries and
destinations; events accepted while the worker is dead, or running when it is SIGKILLed, run
after it comes back, and a NATS server killed and restarted loses nothing it acknowledged.
Real PostgreSQL, NATS and ``lambdad serve`` processes."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.aws import Collector, behaving_function, fire, forwarding_function, function_of
from tests.conftest import Recorder, Server, wait_healthy, wait_until
from tests.contract.nats_queues import delete_streams
from tests.nats_server import NatsServer, unavailable_reason
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

#: A taken event whose node went silent is handed to another after 2 s.
ACK_WAIT = "2"

#: Reports each run to the test's ``Recorder``, then sleeps ``event["sleep"]`` seconds.
SLOW = """
import os, socket, time


def handler(event, context):
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{context.aws_request_id} {event['seq']}\\n".encode())
        connection.recv(1)
    time.sleep(event.get("sleep", 0))
    return event
"""


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    """One NATS server for the module (tests empty its streams first; one restarts it)."""
    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def cluster(
    start_server: Callable[..., Server], postgres: PostgresServer, nats_server: NatsServer
) -> Callable[..., Server]:
    """Nodes of one new cluster: a database of their own, and empty event streams."""
    asyncio.run(delete_streams(nats_server.url))
    settings = {
        "LAMBDAD_STORE_URL": postgres.database(),
        "LAMBDAD_NATS_URL": nats_server.url,
        "LAMBDAD_QUEUE_ACK_WAIT": ACK_WAIT,
        "LAMBDAD_NODE_LEASE": "1.5",
    }

    def node(role: str, **kw: Any) -> Server:
        return start_server({**settings, "LAMBDAD_ROLE": role}, **kw)

    return node


def together(cluster: Callable[..., Server], *roles: str) -> list[Server]:
    """Nodes of ``roles``, started side by side."""
    nodes = [cluster(role, wait=False) for role in roles]
    for node in nodes:
        wait_healthy(node)
    return nodes


def load_of(server: Server) -> dict[str, dict[str, int]]:
    """Each node's load by role, as the node registry has it."""
    nodes = server.get_json("/_lambdad/cluster")["Nodes"]
    return {n["Role"]: n["Load"] for n in nodes}


def test_an_event_accepted_by_the_api_node_runs_on_the_worker_with_its_retries(
    cluster: Callable[[str], Server], recorder: Recorder
) -> None:
    """An Event invoke through the api node runs on the worker (the api node runs no
    environment, and its doctor says it only puts), a 1 MB one too; a failing one runs 1 +
    MaximumRetryAttempts times, then its on-failure destination gets Lambda's record with the
    attempt count, as on AWS."""
    api, worker = together(cluster, "api", "worker")
    lam = api.client()
    try:
        collector = Collector()
        destination = forwarding_function(lam, collector)
        name = behaving_function(lam, recorder.port)
        lam.put_function_event_invoke_config(
            FunctionName=name,
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": destination}},
        )
        ok = fire(lam, name, {"seq": 1})
        big = fire(lam, name, {"seq": 3, "pad": "x" * 1_000_000})  # kept in chunks
        wait_until(lambda: recorder.runs_of(ok) == 1 and recorder.runs_of(big) == 1, timeout=60)
        failing = fire(lam, name, {"seq": 2, "do": "raise", "message": "no"})
        (record,) = collector.wait(1, timeout=60)
        assert recorder.runs_of(failing) == 2
        assert record["requestContext"]["requestId"] == failing
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 2
        assert record["responsePayload"]["errorMessage"] == "no"
        loads = wait_until(lambda: (seen := load_of(api))["worker"]["QueueDepth"] == 0 and seen)
        assert loads["api"]["Environments"] == 0
        assert loads["worker"]["Environments"] >= 1
        for node, says in ((api, "put only (role api)"), (worker, "put and taken here")):
            queue = node.get_json("/_lambdad/doctor")["node"]["event queue"]
            assert queue == f"JetStream stream LAMBDAD_EVENTS, {says}, ack wait {ACK_WAIT} s"
        collector.close()
    finally:
        lam.close()


def test_events_of_a_killed_worker_run_once_it_is_back(
    cluster: Callable[..., Server], recorder: Recorder
) -> None:
    """Events running on a worker when it is SIGKILLed, and events accepted while it is
    dead, all run after it restarts: every event that got a 202 runs at least once."""
    api, worker = together(cluster, "api", "worker")
    lam = api.client()
    try:
        name = function_of(
            lam, SLOW, Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}}
        )
        running = [fire(lam, name, {"seq": i, "sleep": 20}) for i in range(3)]
        wait_until(lambda: all(recorder.runs_of(r) == 1 for r in running), timeout=60)
        worker.stop(signal.SIGKILL)
        waiting = [fire(lam, name, {"seq": 10 + i}) for i in range(3)]
        cluster("worker", data_dir=worker.data_dir)
        wait_until(lambda: all(recorder.runs_of(r) >= 1 for r in waiting), timeout=60)
        wait_until(lambda: all(recorder.runs_of(r) >= 2 for r in running), timeout=60)
    finally:
        lam.close()


def test_a_killed_nats_server_loses_no_accepted_event(
    cluster: Callable[..., Server], recorder: Recorder, nats_server: NatsServer
) -> None:
    """Events accepted (202) while no worker runs survive a SIGKILL and restart of the NATS
    server, and run once a worker starts; after another restart under both nodes the api node
    accepts events again and the worker runs them."""
    api = cluster("api")
    lam = api.client()
    try:
        name = behaving_function(lam, recorder.port)
        accepted = [fire(lam, name, {"seq": i}) for i in range(5)]
        nats_server.kill()
        nats_server.start()
        cluster("worker")
        wait_until(lambda: all(recorder.runs_of(r) >= 1 for r in accepted), timeout=60)
        nats_server.kill()  # now under both nodes
        nats_server.start()
        after = wait_until(lambda: _fire_or_none(lam, name), timeout=30, interval=0.2)
        wait_until(lambda: recorder.runs_of(after) == 1, timeout=60)
    finally:
        lam.close()


def _fire_or_none(lam: Any, name: str) -> str | None:
    """An Event invoke's request id, or None while the api node cannot queue it yet."""
    try:
        return fire(lam, name, {"seq": 99})
    except Exception:
        return None
