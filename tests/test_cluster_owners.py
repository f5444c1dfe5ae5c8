"""Pollers and schedules in a cluster (docs/cluster.md, issue 16 part 5): two lambdads of role
``all`` (and an ``api`` node, which runs neither) on one PostgreSQL database and one NATS server run
each event source mapping's poller and the time triggers on exactly one of them, and the other takes
over when that one is killed: a schedule's occurrences fire once each, none twice and none lost, and
an SQS mapping is polled by one node, then by the survivor."""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lambdad.events.owned_durable import shard_of
from tests.aws import ACCOUNT
from tests.conftest import (
    Moto,
    Recorder,
    Server,
    create_function,
    unique,
    wait_healthy,
    wait_until,
)
from tests.nats_server import NatsServer, unavailable_reason
from tests.postgres_server import PostgresServer
from tests.test_cluster_logs import client as aws_client
from tests.test_durable import REPORT, _has_event, durable_function, sdk_files, steps_run

__all__ = ["sdk_files"]  # the durable SDK's files, a session fixture of tests/test_durable.py

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

#: The claims' lease (the node lease): a killed node's work moves within seconds.
LEASE = "1.5"
#: The schedulers' test clock runs 30 times faster: a minute's rate fires every 2 s.
SPEED = 30
CLOCK_START = 1893456000.0  # 2030-01-01T00:00:00Z

#: Reports ``<request id> <scheduled time>`` (a schedule; plus 10**10 for a scheduled rule's
#: event) or ``<body> 0`` per record (SQS).
RECORDING = """
import datetime, os, socket


def report(line):
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(line.encode())
        connection.recv(1)


def handler(event, context):
    if "Records" in event:
        for record in event["Records"]:
            report(f"{record['body']} 0\\n")
        return {}
    rule = event.get("detail-type") == "Scheduled Event"
    text = event["time"] if rule else event["t"]
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    report(f"{context.aws_request_id} {int(rule) * 10**10 + int(when)}\\n")
    return event
"""


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.close()


def node_settings(db: str, nats: NatsServer, moto: Moto, origin: float) -> dict[str, str]:
    return {
        "LAMBDAD_STORE_URL": db,
        "LAMBDAD_NATS_URL": nats.url,
        "LAMBDAD_ROLE": "all",
        "LAMBDAD_NODE_LEASE": LEASE,
        "LAMBDAD_ACCOUNT_ID": ACCOUNT,
        "LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint,
        # One test clock for both nodes: it read 2030-01-01 at ``origin`` (real time).
        "LAMBDAD_SCHEDULER_CLOCK": f"2030-01-01T00:00:00Z,{SPEED},{origin}",
        "LAMBDAD_CONSOLE_PORT": "-1",
    }


def cluster(
    start_server: Callable[..., Server], postgres: PostgresServer, nats: NatsServer, moto: Moto
) -> tuple[Server, list[Server], dict[str, str]]:
    """An ``api`` node (through which the test makes everything) and two nodes of role
    ``all`` that share the pollers and schedules; and the settings of one more."""
    settings = node_settings(postgres.database(), nats, moto, time.time())
    api = start_server({**settings, "LAMBDAD_ROLE": "api"}, wait=False)
    nodes = [start_server(settings, wait=False), start_server(settings, wait=False)]
    for server in (api, *nodes):  # started side by side
        wait_healthy(server)
    return api, nodes, settings


def claims_of(server: Server) -> set[str]:
    """What the node holds, as ``lambdad doctor`` says."""
    held = str(server.get_json("/_lambdad/doctor")["node"]["claims"])
    return set() if held.startswith("none") else set(held.split(", "))


def holder(nodes: list[Server], key: str) -> Server:
    """The one node holding ``key``, once exactly one does."""
    found = wait_until(lambda: [n for n in nodes if key in claims_of(n)] or None, timeout=30)
    assert len(found) == 1, f"{key} held by {len(found)} nodes"
    return found[0]


def occurrences(recorder: Recorder, rule: bool = False) -> list[int]:
    """Scheduled times (minutes of the test clock) of every run reported for the schedule (or
    the scheduled rule), in order of time."""
    found = [at - int(rule) * 10**10 for _, at in list(recorder.runs) if at // 10**10 == rule]
    return sorted((at - int(CLOCK_START)) // 60 for at in found if at > 0)


def minute_schedule(api: Server, fn: dict[str, Any]) -> None:
    """A ``rate(1 minute)`` Scheduler schedule whose target is ``fn``, given its scheduled time."""
    sched = aws_client(api, "scheduler")
    sched.create_schedule(
        Name=unique("tick"),
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": fn["FunctionArn"],
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler",
            "Input": json.dumps({"t": "<aws.scheduler.scheduled-time>"}),
        },
    )
    sched.close()


def test_a_schedule_fires_each_occurrence_once_across_nodes_and_after_its_owner_dies(
    start_server: Callable[..., Server],
    postgres: PostgresServer,
    nats: NatsServer,
    moto: Moto,
    recorder: Recorder,
) -> None:
    """A ``rate(1 minute)`` schedule and a scheduled rule created through an api node (which
    fires nothing) fire on the one of two nodes that holds the time triggers, each occurrence
    once; that node SIGKILLed, the other takes over after the lease and fires the next
    occurrences, including any that came due meanwhile, none twice and none lost; then that one
    stopped cleanly (SIGTERM) hands them to a third node, again none twice and none lost (AWS:
    Scheduler and EventBridge invoke the target once per occurrence)."""
    api, nodes, settings = cluster(start_server, postgres, nats, moto)
    lam = api.client()
    fn = create_function(lam, RECORDING, env={"RECORDER_PORT": str(recorder.port)})
    minute_schedule(api, fn)  # the nodes that fire hear of it through the store's feed
    events = aws_client(api, "events")
    rule_name = unique("tick")
    events.put_rule(Name=rule_name, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=rule_name, Targets=[{"Id": "t", "Arn": fn["FunctionArn"]}])
    owner = holder(nodes, "triggers")
    assert claims_of(api) == set()
    survivor = next(n for n in nodes if n is not owner)
    wait_until(lambda: len(occurrences(recorder)) >= 3, timeout=60)
    # Kill the owner just after an occurrence ran, two real seconds before the next is due.
    seen = len(occurrences(recorder))
    wait_until(lambda: len(occurrences(recorder)) > seen, timeout=30)
    before = occurrences(recorder)
    owner.stop(signal.SIGKILL)
    assert holder([survivor], "triggers") is survivor
    wait_until(lambda: len(occurrences(recorder)) >= len(before) + 3, timeout=60)
    wait_until(lambda: len(occurrences(recorder, rule=True)) >= len(before) + 3, timeout=60)
    # A third node joins; the survivor stops cleanly just after an occurrence: the third
    # takes the triggers over at once (the stopped node released them) and fires on.
    third = start_server(settings)
    seen = len(occurrences(recorder))
    wait_until(lambda: len(occurrences(recorder)) > seen, timeout=30)
    before = occurrences(recorder)
    survivor.stop(signal.SIGTERM)
    assert holder([third], "triggers") is third
    wait_until(lambda: len(occurrences(recorder)) >= len(before) + 3, timeout=60)
    wait_until(lambda: len(occurrences(recorder, rule=True)) >= len(before) + 3, timeout=60)
    for rule in (False, True):
        fired = occurrences(recorder, rule)
        counts = Counter(fired)
        assert [minute for minute, n in counts.items() if n > 1] == [], f"fired twice ({rule})"
        assert fired == list(range(fired[0], fired[0] + len(fired))), f"one lost ({rule})"
    events.close()
    lam.close()


def test_occurrences_due_while_no_node_held_the_schedules_each_fire_on_takeover(
    start_server: Callable[..., Server],
    postgres: PostgresServer,
    nats: NatsServer,
    moto: Moto,
    recorder: Recorder,
) -> None:
    """The node holding the time triggers SIGKILLed while the other is frozen (SIGSTOP) for
    some minutes of the clock, the other, resumed, takes the triggers over and fires every
    occurrence that came due meanwhile, each once, none lost (AWS: Scheduler delivers each
    occurrence at least once while it is younger than the target's maximum event age; a
    single lambdad started again fires only the latest, docs/schedules.md)."""
    origin = time.time()
    api, nodes, _ = cluster(start_server, postgres, nats, moto)
    lam = api.client()
    fn = create_function(lam, RECORDING, env={"RECORDER_PORT": str(recorder.port)})
    minute_schedule(api, fn)
    owner = holder(nodes, "triggers")
    survivor = next(n for n in nodes if n is not owner)
    wait_until(lambda: len(occurrences(recorder)) >= 2, timeout=60)
    # Just after an occurrence ran, two real seconds before the next is due.
    seen = len(occurrences(recorder))
    wait_until(lambda: len(occurrences(recorder)) > seen, timeout=30)
    survivor.process.send_signal(signal.SIGSTOP)
    try:
        owner.stop(signal.SIGKILL)
        last = occurrences(recorder)[-1]

        def minute() -> float:  # of the nodes' test clock, which started at about ``origin``
            return (time.time() - origin) * SPEED / 60

        wait_until(lambda: minute() >= last + 5, timeout=60)  # four or more came due, unheld
    finally:
        survivor.process.send_signal(signal.SIGCONT)
    assert holder([survivor], "triggers") is survivor
    wait_until(lambda: occurrences(recorder)[-1] >= last + 6, timeout=60)
    fired = occurrences(recorder)
    # ``last`` itself may run again: the kill can come between its run and its ack.
    twice = [m for m, n in Counter(fired).items() if n > 1 and m > last]
    assert twice == [], fired
    assert sorted(set(fired)) == list(range(fired[0], fired[-1] + 1)), fired  # none lost
    lam.close()


def test_an_sqs_mapping_is_polled_by_one_node_then_by_the_survivor(
    start_server: Callable[..., Server],
    postgres: PostgresServer,
    nats: NatsServer,
    moto: Moto,
    recorder: Recorder,
) -> None:
    """An SQS mapping made through an api node is polled by exactly one of the two other nodes
    (every node's ``/_lambdad/esm`` names that one, asked of it), every message is delivered;
    its node SIGKILLed, the other polls it and delivers what comes next (AWS: one mapping's
    pollers share the queue; each message is delivered at least once); the function deleted
    through the api node, the survivor stops polling and says why."""
    api, nodes, _ = cluster(start_server, postgres, nats, moto)
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("owned"), Attributes={"VisibilityTimeout": "5"})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    lam = api.client()
    fn = create_function(lam, RECORDING, env={"RECORDER_PORT": str(recorder.port)})
    uuid = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=fn["FunctionName"], BatchSize=10
    )["UUID"]
    poller = holder(nodes, f"esm.{uuid}")
    other = next(n for n in nodes if n is not poller)

    def polling(server: Server) -> str | None:
        """The id of the node polling the mapping, as ``server`` says (None: no node)."""
        found = server.get_json("/_lambdad/esm")["EventSourceMappings"]
        return next((m["Node"] for m in found if m["UUID"] == uuid and m["Polling"]), None)

    def id_of(server: Server) -> str:
        return (server.data_dir / "node-id").read_text().strip()

    wait_until(lambda: polling(poller) == id_of(poller), timeout=30)
    assert polling(other) == polling(api) == id_of(poller)
    assert "role api" in str(api.get_json("/_lambdad/doctor")["node"]["claims"])

    def send(names: list[str]) -> None:
        entries = [{"Id": str(n), "MessageBody": name} for n, name in enumerate(names)]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")

    def delivered() -> set[str]:
        return {body for body, _ in list(recorder.runs)}

    first = [f"a{n}" for n in range(10)]
    send(first)
    wait_until(lambda: set(first) <= delivered(), timeout=60)
    assert polling(other) == id_of(poller)
    poller.stop(signal.SIGKILL)
    assert holder([other], f"esm.{uuid}") is other
    wait_until(lambda: polling(other) == polling(api) == id_of(other), timeout=30)
    second = [f"b{n}" for n in range(10)]
    send(second)
    wait_until(lambda: set(second) <= delivered(), timeout=60)
    # The function deleted through the api node: the poller stops (AWS: a mapping of a
    # missing function consumes nothing, and its LastProcessingResult says so).
    lam.delete_function(FunctionName=fn["FunctionName"])
    wait_until(lambda: polling(other) is None and polling(api) is None, timeout=30)

    def result() -> str:
        return str(lam.get_event_source_mapping(UUID=uuid).get("LastProcessingResult", ""))

    wait_until(lambda: "Function not found" in result(), timeout=30)
    lam.close()


def test_a_durable_execution_is_driven_by_one_node_and_resumed_by_another_when_it_dies(
    start_server: Callable[..., Server],
    postgres: PostgresServer,
    nats: NatsServer,
    moto: Moto,
    recorder: Recorder,
    sdk_files: dict[str, bytes],
) -> None:
    """A durable execution started through the api node is driven by the node holding its
    shard; that node SIGKILLed during the execution's wait, the other resumes it after the
    lease: the wait ends, the handler is replayed and the execution succeeds, each step run
    once (AWS: executions survive any failure of the service)."""
    api, nodes, _ = cluster(start_server, postgres, nats, moto)
    client = api.client()
    name = durable_function(client, recorder, sdk_files)
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    arn = client.invoke(
        FunctionName=name, InvocationType="Event", Payload=b'{"wait": 4, "tag": "c"}'
    )["DurableExecutionArn"]
    found = re.fullmatch(r".*:function:([^:]+):[^/]+/durable-execution/([^/]+)/.*", arn)
    assert found is not None
    shard = shard_of((ACCOUNT, "us-east-1", found[1], found[2]))
    driver = holder(nodes, f"durable.{shard}")
    survivor = next(n for n in nodes if n is not driver)
    assert claims_of(api) == set()
    wait_until(lambda: steps_run(recorder) == ["one"], timeout=60)
    wait_until(lambda: _has_event(client, arn, "WaitStarted"), timeout=30)
    driver.stop(signal.SIGKILL)
    assert holder([survivor], f"durable.{shard}") is survivor
    wait_until(
        lambda: client.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING",
        timeout=90,
    )
    execution = client.get_durable_execution(DurableExecutionArn=arn)
    assert execution["Status"] == "SUCCEEDED"
    assert json.loads(execution["Result"]) == {"sum": 3, "input": "c"}
    assert steps_run(recorder) == ["one", "two"]
    client.close()


#: Steps in a loop, as fast as the SDK checkpoints them, each reporting ``<tag> <step>``.
LOOPING = (
    REPORT
    + """

@durable_execution
def handler(event, context: DurableContext):
    for n in range(100000):
        context.step(lambda _, n=n: report(event["tag"], n), name=f"s{n}")
    return {}
"""
)


def test_a_stop_through_the_api_node_is_never_undone_by_the_node_running_the_execution(
    start_server: Callable[..., Server],
    postgres: PostgresServer,
    nats: NatsServer,
    moto: Moto,
    recorder: Recorder,
    sdk_files: dict[str, bytes],
) -> None:
    """An execution checkpointing steps in a loop on one node, stopped through the api node
    (six times, each at another point of the loop), ends STOPPED and stays STOPPED: the
    running invocation's next checkpoint is refused, at most the step in flight at the stop's
    answer runs after it, no step event follows the stop and the invocation ends (AWS: a
    stopped execution takes no more checkpoints)."""
    api, _, _ = cluster(start_server, postgres, nats, moto)
    client = api.client()
    name = durable_function(client, recorder, sdk_files, LOOPING)
    client.get_waiter("function_active_v2").wait(FunctionName=name)

    def steps(tag: str) -> int:
        return sum(1 for run_tag, _ in list(recorder.runs) if run_tag == tag)

    def newest_events(arn: str) -> list[dict[str, Any]]:
        found = client.get_durable_execution_history(DurableExecutionArn=arn, ReverseOrder=True)
        return list(found["Events"])[::-1]

    stopped: list[str] = []
    for round_, before in enumerate((3, 6, 10, 15, 20, 30)):
        tag = f"r{round_}"
        arn = client.invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"tag": tag}).encode()
        )["DurableExecutionArn"]
        wait_until(lambda tag=tag, before=before: steps(tag) >= before, timeout=60)
        client.stop_durable_execution(DurableExecutionArn=arn)
        answered = steps(tag)

        def ended(arn: str = arn) -> list[dict[str, Any]] | None:
            events = newest_events(arn)
            kinds = [e["EventType"] for e in events]
            if "ExecutionStopped" not in kinds:
                return events  # overwritten: fails below
            after = kinds[kinds.index("ExecutionStopped") :]
            return events if "InvocationCompleted" in after else None

        events = wait_until(ended, timeout=60)
        kinds = [e["EventType"] for e in events]
        assert "ExecutionStopped" in kinds, kinds[-10:]
        after = kinds[kinds.index("ExecutionStopped") + 1 :]
        assert not [kind for kind in after if kind.startswith("Step")], after
        assert client.get_durable_execution(DurableExecutionArn=arn)["Status"] == "STOPPED"
        assert steps(tag) <= answered + 1
        stopped.append(arn)
    for arn in stopped:  # still, after the later rounds' steps and stops
        assert client.get_durable_execution(DurableExecutionArn=arn)["Status"] == "STOPPED"
    client.close()
