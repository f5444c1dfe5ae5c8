"""Logs and metrics of every node in one place (docs/cluster.md, issue 16 part 5): lambdads on
one PostgreSQL database and one NATS server, functions invoked on two of them, read through a
third that ran nothing: its CloudWatch Logs API, live tail and CloudWatch metrics answer for
all of them, and a reader restarted on its data dir catches up on what it missed."""

from __future__ import annotations

import datetime
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import (
    Server,
    create_function,
    invoke_json,
    shutdown,
    unique,
    wait_healthy,
    wait_until,
)
from tests.nats_server import NatsServer
from tests.nats_server import unavailable_reason as nats_unavailable
from tests.postgres_server import PostgresServer
from tests.test_cli import read_until

pytestmark = pytest.mark.skipif(nats_unavailable() is not None, reason=str(nats_unavailable()))

PRINTER = (
    "def handler(event, context):\n"
    "    for line in event.get('lines', []):\n"
    "        print(line)\n"
    "    return 'ok'\n"
)


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    """A NATS server for one test. Ask for it before ``start_server``: fixtures stop in the
    reverse order, so the lambdads stop while it still runs."""
    server = NatsServer()
    server.start()
    yield server
    server.close()


def start_node(
    start: Callable[..., Server], db: str, nats: NatsServer, role: str, **kw: Any
) -> Server:
    settings = {
        "LAMBDAD_STORE_URL": db,
        "LAMBDAD_NATS_URL": nats.url,
        "LAMBDAD_ROLE": role,
    }
    return start(settings, **kw)


def client(server: Server, service: str, **config: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30, **config),
    )


def messages(logs: Any, group: str, **kwargs: Any) -> list[str] | None:
    """The group's messages on the node ``logs`` talks to (None: no such group there yet)."""
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group, **kwargs)
        return [e["message"].rstrip("\n") for page in pages for e in page["events"]]
    except ClientError:
        return None


def has(logs: Any, group: str, *wanted: str) -> bool:
    found = messages(logs, group) or []
    return all(w in found for w in wanted)


def follow(server: Server, name: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """``lambdad logs --follow`` against ``server``; its lines arrive on the queue."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # the child gets the default SIGINT even when this run ignores it
        process = subprocess.Popen(
            [sys.executable, "-m", "lambdad.cli.main", "logs", "--follow", name,
             "--endpoint", server.endpoint],
            stdout=subprocess.PIPE, text=True, env=server.env,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def invocations(cw: Any, name: str) -> float:
    now = datetime.datetime.now(datetime.UTC)
    answer = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "n",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Invocations",
                        "Dimensions": [{"Name": "FunctionName", "Value": name}],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=now - datetime.timedelta(hours=1),
        EndTime=now + datetime.timedelta(minutes=2),
    )
    return float(sum(answer["MetricDataResults"][0]["Values"]))


def test_a_reader_node_answers_for_the_logs_and_metrics_of_two_others(
    nats: NatsServer, postgres: PostgresServer, start_server: Callable[..., Server]
) -> None:
    """A function invoked on two nodes has both nodes' lines found by FilterLogEvents on a
    third (an api node that ran nothing), its live tail sees a line printed on another node,
    GetMetricData's Invocations there sums both nodes (the rows of two nodes for one minute
    both count, not the last flushed), ListMetrics lists it, and a log group made with a
    retention and events through the third node is seen on the others (CloudWatch Logs is
    one service however many hosts answer it)."""
    db = postgres.database()
    one = start_node(start_server, db, nats, "all", wait=False)
    two = start_node(start_server, db, nats, "all", wait=False)
    reader = start_node(start_server, db, nats, "api", wait=False)
    for server in (one, two, reader):  # started side by side
        wait_healthy(server)
    lam_one, lam_two = client(one, "lambda"), client(two, "lambda")
    logs = client(reader, "logs")
    tail = client(reader, "logs", inject_host_prefix=False)
    cw = client(reader, "cloudwatch")
    logs_two = client(two, "logs")
    try:
        name = unique("clog")
        create_function(lam_one, PRINTER, name=name)
        group = f"/aws/lambda/{name}"
        invoke_json(lam_one, name, {"lines": ["printed on one"]})
        invoke_json(lam_two, name, {"lines": ["printed on two"]})
        invoke_json(lam_two, name, {"lines": ["two again"]})
        wait_until(lambda: has(logs, group, "printed on one", "printed on two", "two again"))
        found = messages(logs, group) or []
        assert sum(m.startswith("REPORT") for m in found) == 3
        assert messages(logs, group, filterPattern='"on two"') == ["printed on two"]
        streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
        assert len(streams) == 2  # one environment on each node

        arn = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["logGroupArn"]
        answer = tail.start_live_tail(logGroupIdentifiers=[arn], logEventFilterPattern="tailed")
        stream = answer["responseStream"]
        events = iter(stream)
        assert "sessionStart" in next(events)
        invoke_json(lam_one, name, {"lines": ["tailed from one", "not this"]})
        seen: list[str] = []
        for event in events:
            seen += [r["message"].rstrip("\n") for r in event["sessionUpdate"]["sessionResults"]]
            if seen:
                break
        assert seen == ["tailed from one"]
        stream.close()

        wait_until(lambda: invocations(cw, name) == 4.0)
        listed = cw.list_metrics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            Dimensions=[{"Name": "FunctionName", "Value": name}],
        )["Metrics"]
        assert sorted(len(m["Dimensions"]) for m in listed) == [1, 2]  # and with Resource

        custom = unique("/custom/shared")
        logs.create_log_group(logGroupName=custom)
        logs.put_retention_policy(logGroupName=custom, retentionInDays=7)
        logs.create_log_stream(logGroupName=custom, logStreamName="s")
        now_ms = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
        logs.put_log_events(
            logGroupName=custom,
            logStreamName="s",
            logEvents=[{"timestamp": now_ms, "message": "put through the reader"}],
        )
        wait_until(lambda: has(logs_two, custom, "put through the reader"))
        described = logs_two.describe_log_groups(logGroupNamePrefix=custom)["logGroups"]
        assert [g["retentionInDays"] for g in described] == [7]
        logs.delete_log_group(logGroupName=custom)
        wait_until(lambda: not logs_two.describe_log_groups(logGroupNamePrefix=custom)["logGroups"])
    finally:
        for c in (lam_one, lam_two, logs, tail, cw, logs_two):
            c.close()


def test_a_restarted_reader_catches_up_on_what_it_missed(
    nats: NatsServer, postgres: PostgresServer, start_server: Callable[..., Server]
) -> None:
    """An api node stopped while another node's function prints, started again on its data
    dir, finds the lines printed while it was away (its consumer of the log stream is
    durable) and those it had before, each once; ``lambdad logs --follow`` against it prints
    a line printed on the other node after it began; after NATS itself is killed and
    restarted, lines flow again; a worker node (which only sends) runs and stops cleanly."""
    db = postgres.database()
    runner = start_node(start_server, db, nats, "all", wait=False)
    reader = start_node(start_server, db, nats, "api", wait=False)
    worker = start_node(start_server, db, nats, "worker", wait=False)  # sends, reads nothing
    for server in (runner, reader, worker):  # started side by side
        wait_healthy(server)
    lam = client(runner, "lambda")
    try:
        name = unique("clog")
        create_function(lam, PRINTER, name=name)
        group = f"/aws/lambda/{name}"
        invoke_json(lam, name, {"lines": ["before the stop"]})
        logs = client(reader, "logs")
        try:
            wait_until(lambda: has(logs, group, "before the stop"))
        finally:
            logs.close()
        shutdown(reader)
        invoke_json(lam, name, {"lines": ["while it was away"]})
        again = start_node(start_server, db, nats, "api", data_dir=reader.data_dir)
        logs = client(again, "logs")
        try:
            wait_until(lambda: has(logs, group, "before the stop", "while it was away"))
            process, lines = follow(again, name)
            try:
                read_until(lines, "while it was away")
                invoke_json(lam, name, {"lines": ["after it came back"]})
                read_until(lines, "after it came back")
            finally:
                process.send_signal(signal.SIGINT)
                assert process.wait(10) == 0
            wait_until(lambda: has(logs, group, "after it came back"))
            nats.kill()  # and back on the same port and store: both nodes reconnect
            nats.start()
            invoke_json(lam, name, {"lines": ["after NATS restarted"]})
            wait_until(lambda: has(logs, group, "after NATS restarted"))
            found = messages(logs, group) or []
            lines = ("before the stop", "while it was away", "after it came back")
            for line in (*lines, "after NATS restarted"):
                assert found.count(line) == 1
            assert sum(m.startswith("REPORT") for m in found) == 4
            shutdown(worker)  # a worker's log stream closes cleanly too (exit status 0)
        finally:
            logs.close()
    finally:
        lam.close()
