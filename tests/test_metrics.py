"""Lambda's metrics, EMF custom metrics and ``/metrics``: what a real ``lambdad serve`` records
for boto3 invokes (sync, async, failing, throttled, provisioned), read back through its
platform query path and through Prometheus' own text parser (docs/metrics.md)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    MEET,
    Rendezvous,
    Server,
    create_function,
    function_log,
    invoke_json,
    refused,
    wait_until,
)
from tests.test_sigv4 import client_of, keys
from tests.url_client import call_url, make_public

FAILS_ON_ASK = """
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
"""

MEETS = (
    MEET
    + """

def handler(event, context):
    return meet()
"""
)

#: What Powertools' ``Metrics`` prints for ``add_metric(name="Orders", unit="Count", value=n)``
#: with ``namespace="Shop"``, ``service="checkout"`` (one line of JSON, ``_aws`` first).
EMF = """
import json
import time


def handler(event, context):
    line = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": event["namespace"],
                    "Dimensions": [["service"]],
                    "Metrics": [
                        {"Name": "Orders", "Unit": "Count"},
                        {"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 60},
                    ],
                }
            ],
        },
        "service": "checkout",
        "Orders": [1.0, 2.0],
        "Latency": event["latency"],
    }
    print(json.dumps(line))
    print('{"_aws": "not a metric", "note": "a line that only looks like EMF"}')
    return "ok"
"""


#: The ``lambdad`` command, as the tests run it.
CLI = [sys.executable, "-m", "lambdad.cli.main"]


def query(
    server: Server,
    metric: str,
    dimensions: dict[str, str],
    stats: Sequence[str] = ("Sum",),
    namespace: str = "AWS/Lambda",
) -> dict[str, float]:
    """The metric's statistics over the last hour, in one period (summed over datapoints
    when the hour's boundary splits them)."""
    now = time.time()
    params: list[tuple[str, str]] = [
        ("namespace", namespace),
        ("metric", metric),
        ("start", str(now - 3600)),
        ("end", str(now + 120)),
        ("period", "3720"),
    ]
    params += [("dimension", f"{k}={v}") for k, v in dimensions.items()]
    params += [("stat", s) for s in stats]
    points = server.get_json("/_lambdad/metrics/query?" + urllib.parse.urlencode(params))[
        "datapoints"
    ]
    assert len(points) <= 1, points
    return points[0] if points else {}


def settled(
    server: Server,
    metric: str,
    dimensions: dict[str, str],
    want: Callable[[dict[str, float]], bool],
    stats: Sequence[str] = ("Sum",),
) -> dict[str, float]:
    """``query``, asked again until ``want`` holds of its answer: CloudWatch's metrics are
    eventually consistent (AWS publishes a datapoint a minute or so after the invoke), and
    through a cluster's api node the worker's figures arrive within about a second
    (docs/metrics.md, "In a cluster"); on one process at once."""
    return wait_until(  # type: ignore[no-any-return]
        lambda: (found := query(server, metric, dimensions, stats)) and want(found) and found,
        timeout=30,
    )


def counted(server: Server, metric: str, dimensions: dict[str, str], total: float) -> None:
    """Wait until ``metric``'s Sum is ``total`` (``settled``)."""
    settled(server, metric, dimensions, lambda found: found["Sum"] == total)


def scrape(server: Server) -> dict[str, list[Any]]:
    """``/metrics`` parsed by prometheus_client's parser: family name -> samples. Of a
    cluster, every node's (each node shows its own figures, as Prometheus scrapes a fleet:
    ``sample`` sums them)."""
    nodes = (
        [server] if server.cluster is None else [n.server for n in server.cluster.nodes.values()]
    )
    families: dict[str, list[Any]] = {}
    for node in nodes:
        with urllib.request.urlopen(node.endpoint + "/metrics", timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, []).extend(family.samples)
    return families


def sample(families: dict[str, list[Any]], name: str, **labels: str) -> float | None:
    """The sum of the samples ``name`` with ``labels`` (one per node scraped), or None."""
    found = [
        float(s.value)
        for samples in families.values()
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None


def fn_dims(name: str) -> dict[str, str]:
    return {"FunctionName": name}


def test_sync_invocations_errors_and_durations(server: Server, lam: Any) -> None:
    """Each synchronous invoke counts once in Invocations (function, Resource and account
    level), a function error also in Errors (AWS: Errors counts invocations that end in a
    function error, and Errors' Average is the error rate), and its run time in Duration with
    CloudWatch's statistics and percentiles; ``/metrics`` shows the same as counters and a
    histogram (read once they arrived: CloudWatch's metrics are eventually consistent,
    ``settled``)."""
    name = create_function(lam, FAILS_ON_ASK)["FunctionName"]
    for event in ({}, {"sleep": 0.05}, {"sleep": 0.1}, {"fail": True}):
        invoke_json(lam, name, event)
    stats = ["SampleCount", "Sum", "Minimum", "Maximum", "Average", "p50", "p99", "p99.9"]
    counted(server, "Invocations", fn_dims(name), 4)  # each invoke's figures arrive with it
    invocations = query(server, "Invocations", fn_dims(name))
    assert invocations["Sum"] == 4
    assert invocations["unit"] == "Count"
    resource = {"FunctionName": name, "Resource": name}
    assert query(server, "Invocations", resource)["Sum"] == 4
    assert query(server, "Invocations", {})["Sum"] >= 4
    errors = query(server, "Errors", fn_dims(name), ["Sum", "Average", "SampleCount"])
    assert (errors["Sum"], errors["Average"], errors["SampleCount"]) == (1, 0.25, 4)
    duration = query(server, "Duration", fn_dims(name), stats)
    assert duration["unit"] == "Milliseconds"
    assert duration["SampleCount"] == 4
    assert duration["Maximum"] >= 100
    assert duration["Minimum"] <= duration["p50"] <= duration["p99"] <= duration["Maximum"]
    assert duration["p99.9"] == pytest.approx(duration["Maximum"], rel=0.02)
    assert duration["Average"] == pytest.approx(duration["Sum"] / 4)

    families = scrape(server)
    labels = {"function": name, "resource": name, "region": "us-east-1"}
    assert sample(families, "lambdad_invocations_total", **labels) == 4
    assert sample(families, "lambdad_errors_total", **labels) == 1
    assert sample(families, "lambdad_duration_seconds_count", **labels) == 4
    assert sample(families, "lambdad_duration_seconds_bucket", le="+Inf", **labels) == 4
    assert sample(families, "lambdad_duration_seconds_bucket", le="0.025", **labels) in (1, 2)
    assert sample(families, "lambdad_environments") is not None
    assert sample(families, "lambdad_queue_depth") is not None


def test_an_alias_counts_under_its_resource_and_executed_version(server: Server, lam: Any) -> None:
    """An invoke through an alias counts under ``Resource=function:alias`` and, with
    ``ExecutedVersion``, under the version that ran (AWS: the ExecutedVersion dimension tells
    a weighted alias's versions apart); the unqualified function's series sums both."""
    name = create_function(lam, FAILS_ON_ASK)["FunctionName"]
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    invoke_json(lam, name, {}, Qualifier="live")
    invoke_json(lam, name, {}, Qualifier="live")
    invoke_json(lam, name, {}, Qualifier="1")
    counted(server, "Invocations", fn_dims(name), 3)
    live = {"FunctionName": name, "Resource": f"{name}:live"}
    assert query(server, "Invocations", live)["Sum"] == 2
    assert query(server, "Invocations", {**live, "ExecutedVersion": "1"})["Sum"] == 2
    assert query(server, "Invocations", {"FunctionName": name, "Resource": f"{name}:1"}) == {
        "timestamp": pytest.approx(time.time(), abs=7200),
        "unit": "Count",
        "Sum": 1,
    }
    assert query(server, "Invocations", fn_dims(name))["Sum"] == 3
    listed = server.get_json(
        "/_lambdad/metrics/list?metric=Invocations&dimension=FunctionName=" + name
    )["metrics"]
    sets = sorted(tuple(d["name"] for d in m["dimensions"]) for m in listed)
    assert sets == [
        ("ExecutedVersion", "FunctionName", "Resource"),
        ("FunctionName",),
        ("FunctionName", "Resource"),
        ("FunctionName", "Resource"),
    ]


def test_throttled_invokes_count_as_throttles_not_invocations(server: Server, lam: Any) -> None:
    """An invoke refused for a reserved concurrency of 0 counts in Throttles and not in
    Invocations (AWS: throttled requests are not invocations), in a cluster once, where the
    throttle was decided (read once they arrived, ``settled``)."""
    name = create_function(lam, FAILS_ON_ASK)["FunctionName"]
    invoke_json(lam, name, {})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(2):
        with refused("TooManyRequestsException", 429):
            lam.invoke(FunctionName=name)
    counted(server, "Throttles", fn_dims(name), 2)
    counted(server, "Invocations", fn_dims(name), 1)
    labels = {"function": name, "resource": name}
    assert sample(scrape(server), "lambdad_throttles_total", **labels) == 2


def test_concurrent_executions_is_the_most_running_at_once(
    server: Server, lam: Any, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """Two invokes held together make ConcurrentExecutions' Maximum 2 for the function (AWS:
    the number of instances processing events at the same time), also when a cluster ran
    them on two workers (read once they arrived, ``settled``)."""
    service = rendezvous(2)
    name = create_function(lam, MEETS, env=service.env)["FunctionName"]
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(invoke_json, lam, name, {}) for _ in range(2)]:
            future.result(timeout=60)
    counted(server, "Invocations", fn_dims(name), 2)
    stats = ["Maximum", "Minimum"]
    assert query(server, "ConcurrentExecutions", fn_dims(name), stats)["Maximum"] == 2
    resource = {"FunctionName": name, "Resource": name}
    assert query(server, "ConcurrentExecutions", resource, stats)["Maximum"] == 2
    assert query(server, "ConcurrentExecutions", {}, stats)["Maximum"] >= 2
    assert query(server, "UnreservedConcurrentExecutions", {}, stats)["Maximum"] >= 2
    assert query(server, "ClaimedAccountConcurrency", {}, stats)["Maximum"] >= 2


def test_async_events_received_aged_dropped_and_undelivered(server: Server, lam: Any) -> None:
    """An ``Event`` invoke counts in AsyncEventsReceived, its wait in AsyncEventAge; failing
    with no retry left it counts in AsyncEventsDropped, and its failure record and dead letter
    that cannot be delivered (no AWS endpoint here) in DestinationDeliveryFailures and
    DeadLetterErrors."""
    nowhere = "arn:aws:sqs:us-east-1:000000000000:nowhere"
    name = create_function(lam, FAILS_ON_ASK, DeadLetterConfig={"TargetArn": nowhere})[
        "FunctionName"
    ]
    lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": nowhere}},
    )
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"fail": true}')
    assert query(server, "AsyncEventsReceived", fn_dims(name))["Sum"] == 1

    def undelivered() -> bool:
        return bool(query(server, "DeadLetterErrors", fn_dims(name)))

    wait_until(undelivered, timeout=30)
    wait_until(lambda: query(server, "DestinationDeliveryFailures", fn_dims(name)), timeout=30)
    assert query(server, "AsyncEventsDropped", fn_dims(name))["Sum"] == 1
    assert query(server, "DeadLetterErrors", fn_dims(name))["Sum"] == 1
    assert query(server, "DestinationDeliveryFailures", fn_dims(name))["Sum"] == 1
    age = query(server, "AsyncEventAge", fn_dims(name), ["SampleCount", "Minimum"])
    assert (age["SampleCount"], age["unit"]) == (1, "Milliseconds")
    assert age["Minimum"] >= 0
    assert query(server, "Errors", fn_dims(name))["Sum"] == 1


def test_provisioned_invocations_and_spillover(
    server: Server, lam: Any, rendezvous: Callable[[int], Rendezvous]
) -> None:
    """With one provisioned environment, two invokes held together run one on it
    (ProvisionedConcurrencyInvocations, ProvisionedConcurrentExecutions 1, utilization 1.0)
    and one on demand (ProvisionedConcurrencySpilloverInvocations); read once they arrived
    (``settled``)."""
    service = rendezvous(2)
    name = create_function(lam, MEETS, env=service.env)["FunctionName"]
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )

    def ready() -> bool:
        got = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        assert got["Status"] != "FAILED", got
        return bool(got["Status"] == "READY")

    wait_until(ready, timeout=60)
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(invoke_json, lam, name, {}, Qualifier="1") for _ in range(2)]
            for future in futures:
                future.result(timeout=60)
        resource = {"FunctionName": name, "Resource": f"{name}:1"}
        counted(server, "Invocations", resource, 2)
        assert query(server, "ProvisionedConcurrencyInvocations", resource)["Sum"] == 1
        assert query(server, "ProvisionedConcurrencySpilloverInvocations", resource)["Sum"] == 1
        assert query(server, "Invocations", resource)["Sum"] == 2
        most = ["Maximum"]
        assert query(server, "ProvisionedConcurrentExecutions", resource, most)["Maximum"] == 1
        utilization = query(server, "ProvisionedConcurrencyUtilization", resource, most)
        assert utilization["Maximum"] == 1.0
        assert query(server, "ConcurrentExecutions", fn_dims(name), most)["Maximum"] == 2
    finally:
        lam.delete_function(FunctionName=name)


def test_emf_lines_become_custom_metrics(server: Server, lam: Any) -> None:
    """A JSON line in CloudWatch's embedded metric format (as Powertools' Metrics prints it)
    becomes metrics in its own namespace with its dimensions, each array value one sample;
    a line that only names ``_aws`` yields nothing and stays in the log."""
    namespace = f"Shop-{time.time_ns()}"
    name = create_function(lam, EMF)["FunctionName"]
    invoke_json(lam, name, {"namespace": namespace, "latency": 40})
    invoke_json(lam, name, {"namespace": namespace, "latency": 80})
    dims = {"service": "checkout"}

    def parsed() -> dict[str, float]:
        return query(server, "Orders", dims, ["Sum", "SampleCount"], namespace=namespace)

    orders = wait_until(lambda: parsed().get("SampleCount") == 4 and parsed(), timeout=10)
    assert (orders["Sum"], orders["unit"]) == (6, "Count")
    latency = query(server, "Latency", dims, ["Average", "Maximum", "p50"], namespace=namespace)
    assert (latency["Average"], latency["Maximum"], latency["unit"]) == (60, 80, "Milliseconds")
    listed = server.get_json("/_lambdad/metrics/list?namespace=" + namespace)["metrics"]
    assert sorted(m["metric"] for m in listed) == ["Latency", "Orders"]
    assert all(m["dimensions"] == [{"name": "service", "value": "checkout"}] for m in listed)
    assert query(server, "Orders", {}, namespace=namespace) == {}
    # The log's lines are read once there (a cluster's api node has a worker's up to 0.1 s later).
    function_log(
        server,
        name,
        until=lambda lines: any('"note": "a line that only looks like EMF"' in m for m in lines),
    )


@pytest.mark.slow
def test_metrics_survive_a_restart(start_server: Callable[..., Server]) -> None:
    """What was recorded before a clean stop is read back after the restart (metrics are
    written at close and every ``metrics_flush_interval``)."""
    first = start_server({"LAMBDAD_METRICS_FLUSH_INTERVAL": "3600"})
    client = first.client()
    name = create_function(client, FAILS_ON_ASK)["FunctionName"]
    invoke_json(client, name, {})
    invoke_json(client, name, {"fail": True})
    first.stop()
    again = start_server(data_dir=first.data_dir)
    assert query(again, "Invocations", fn_dims(name))["Sum"] == 2
    assert query(again, "Errors", fn_dims(name))["Sum"] == 1
    assert query(again, "Duration", fn_dims(name), ["SampleCount"])["SampleCount"] == 2


def test_a_query_for_what_cloudwatch_refuses_is_a_400(server: Server) -> None:
    """A period that is not a multiple of 60, an end before the start, an unknown statistic
    or a missing metric name is answered 400 InvalidParameterValueException (CloudWatch
    refuses them too); a query for a metric nobody recorded is empty."""
    now = time.time()
    bad = [
        {"metric": "Invocations", "period": "61"},
        {"metric": "Invocations", "start": str(now), "end": str(now - 60)},
        {"metric": "Invocations", "stat": "Median"},
        {"metric": "Invocations", "start": "nan"},
        {"metric": "Invocations", "dimension": "=x"},
        {"period": "60"},
    ]
    for params in bad:
        path = "/_lambdad/metrics/query?" + urllib.parse.urlencode(params)
        with pytest.raises(urllib.error.HTTPError) as info:
            server.get_json(path)
        assert info.value.code == 400, params
        error_type = info.value.headers.get("x-amzn-ErrorType", "")
        assert error_type.startswith("InvalidParameterValueException"), (params, error_type)
    assert query(server, "NoSuchMetric", {"FunctionName": "nobody"}) == {}


def test_the_cli_prints_a_line_per_minute(server: Server, lam: Any) -> None:
    """``lambdad metrics FUNCTION`` prints a header and a line per minute with data, the
    invocations and errors counted; a metric asked with ``--metric`` gets its own column
    (asked once the invocations arrived, ``settled``)."""
    name = create_function(lam, FAILS_ON_ASK)["FunctionName"]
    invoke_json(lam, name, {})
    invoke_json(lam, name, {"fail": True})
    counted(server, "Invocations", fn_dims(name), 2)
    base = [*CLI, "metrics", name]
    done = subprocess.run(
        [*base, "--endpoint", server.endpoint], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "TIME", "(UTC)", "Invocations:Sum", "Errors:Sum", "Throttles:Sum", "Duration:p50",
        "Duration:p99", "ConcurrentExecutions:Maximum",
    ]  # fmt: skip
    rows = [line.split() for line in lines[1:]]
    assert sum(int(row[1]) for row in rows) == 2
    assert sum(int(row[2]) for row in rows) == 1
    asked = subprocess.run(
        [*base, "--metric", "Invocations", "--endpoint", server.endpoint, "--period", "61"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert asked.returncode == 1
    assert "Period must be a multiple of 60" in asked.stderr


def test_a_function_url_keeps_its_own_metrics_path(server: Server, lam: Any) -> None:
    """``/metrics`` on a function URL's host is the function's own path (the URL is told apart
    by its Host before any of lambdad's routes), while lambdad's host serves Prometheus."""
    name = create_function(lam, "def handler(e, c):\n    return {'path': e['rawPath']}\n")[
        "FunctionName"
    ]
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    make_public(lam, name)
    answer = call_url(url, "/metrics", port=server.port)
    assert (answer.status, answer.json()) == (200, {"path": "/metrics"})
    assert "lambdad_invocations" in scrape(server)


def test_a_stopped_recursive_loop_counts_in_recursive_invocations_dropped(
    server: Server, lam: Any
) -> None:
    """An invoke whose trace header already shows 16 invocations of the function is stopped
    and counts in RecursiveInvocationsDropped, not in Invocations (AWS: the number of times
    Lambda stopped an invocation as part of a recursive loop)."""
    name = create_function(lam, FAILS_ON_ASK)["FunctionName"]
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    key = hashlib.sha256(arn.encode()).hexdigest()[:8]
    header = f"Root=1-5759e988-bd862e3fe1be46a994272793;Lineage={key}:16"

    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = header

    lam.meta.events.register("before-sign.lambda.Invoke", add_header)
    try:
        with refused("RecursiveInvocationException", 400):
            lam.invoke(FunctionName=name)
    finally:
        lam.meta.events.unregister("before-sign.lambda.Invoke", add_header)
    assert query(server, "RecursiveInvocationsDropped", fn_dims(name))["Sum"] == 1
    assert query(server, "Invocations", fn_dims(name)) == {}


def _cli_invocations(server: Server, key: dict[str, str], function: str) -> int:
    """The Invocations ``lambdad metrics`` shows a user holding ``key``, summed."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    env.pop("AWS_SESSION_TOKEN", None)
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [*CLI, "metrics", function, "--metric", "Invocations", "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return sum(int(line.split()[1]) for line in done.stdout.splitlines()[1:])


@pytest.mark.slow
def test_each_account_sees_its_own_metrics(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """Two accounts' same-named functions are two metric series: each account's query sees
    only its own invocations (in SigV4 mode, where ``/metrics`` is signed like the API)."""
    data = tmp_path / "data"
    alice_key = keys(data, "create", "--account-id", "111111111111", "--name", "alice")
    bob_key = keys(data, "create", "--account-id", "222222222222", "--name", "bob")
    server = start_server({"LAMBDAD_AUTH": "sigv4"}, data_dir=data)
    alice, bob = client_of(server, alice_key), client_of(server, bob_key)
    for client in (alice, bob):
        create_function(client, FAILS_ON_ASK, name="same-name")
    for client in (alice, alice, bob):
        invoke_json(client, "same-name", {})
    # Asked until they arrived (``settled``); then neither account sees the other's.
    wait_until(lambda: _cli_invocations(server, alice_key, "same-name") == 2, timeout=30)
    wait_until(lambda: _cli_invocations(server, bob_key, "same-name") == 1, timeout=30)
    assert _cli_invocations(server, alice_key, "same-name") == 2
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.endpoint + "/metrics", timeout=30)
    assert info.value.code == 403


def _stored_invocations(data_dir: Path, name: str) -> int:
    """Invocations of ``name`` in the metrics rows lambdad has written to its store."""
    with contextlib.closing(
        sqlite3.connect(f"file:{data_dir / 'lambdad.db'}?mode=ro", uri=True)
    ) as db:
        rows = db.execute("SELECT doc FROM docs WHERE tbl = 'metrics'").fetchall()
    return sum(
        cell[3][0] for (doc,) in rows for cell in json.loads(doc)["cells"] if cell[0] == name
    )


@pytest.mark.slow
@pytest.mark.no_cluster("it reads the metrics back from one process's SQLite file")
def test_metrics_flushed_before_a_sigkill_survive_it(start_server: Callable[..., Server]) -> None:
    """Metrics are written to the store every ``metrics_flush_interval``: once written, a
    SIGKILL does not lose them (what came after the last write is lost, docs/metrics.md)."""
    # The stored rows are read from the SQLite file itself (also under ``--store postgres``).
    sqlite = {"LAMBDAD_STORE_URL": ""}
    first = start_server({"LAMBDAD_METRICS_FLUSH_INTERVAL": "0.2", **sqlite})
    client = first.client()
    name = create_function(client, FAILS_ON_ASK)["FunctionName"]
    for _ in range(3):
        invoke_json(client, name, {})
    wait_until(lambda: _stored_invocations(first.data_dir, name) == 3, timeout=30)
    first.stop(signal.SIGKILL)
    again = start_server(sqlite, data_dir=first.data_dir)
    assert query(again, "Invocations", fn_dims(name))["Sum"] == 3
