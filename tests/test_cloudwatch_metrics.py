"""CloudWatch's metrics API (boto3's ``cloudwatch`` client, the AWS CLI) against a real
``lambdad serve`` after real invokes: GetMetricData, GetMetricStatistics, ListMetrics and
PutMetricData in the protocol the installed botocore speaks (RPC v2 CBOR) and in JSON 1.0 (the
CLI's), with CloudWatch's error codes (docs/metrics.md)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import cbor2
import pytest
from botocore.config import Config

from tests.conftest import Server, create_function, invoke_json, refused, unique, wait_until
from tests.test_metrics import EMF, FAILS_ON_ASK
from tests.test_sigv4 import keys as sigv4_keys

REGION = "us-east-1"
UTC = datetime.UTC
CBOR_PATH = "/service/GraniteServiceVersion20100801/operation/"


def _client(server: Server, key: str = "AKIDTEST", secret: str = "secret", **config: Any) -> Any:
    return boto3.client(
        "cloudwatch",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


@pytest.fixture
def cw(server: Server) -> Iterator[Any]:
    client = _client(server)
    yield client
    client.close()


@pytest.fixture
def cw_unchecked(server: Server) -> Iterator[Any]:
    """A client without botocore's own checks, so the server's answer is what the test sees."""
    client = _client(server, parameter_validation=False)
    yield client
    client.close()


def _window() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(UTC)
    return now - datetime.timedelta(hours=1), now + datetime.timedelta(minutes=2)


def _invoked(lam: Any) -> str:
    """A function invoked three times successfully and once with a function error."""
    name = create_function(lam, FAILS_ON_ASK)["FunctionName"]
    for _ in range(3):
        invoke_json(lam, name, {})
    response, _ = invoke_json(lam, name, {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    return name


def _stat_query(query_id: str, name: str, metric: str, stat: str) -> dict[str, Any]:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Lambda",
                "MetricName": metric,
                "Dimensions": [{"Name": "FunctionName", "Value": name}],
            },
            "Period": 60,
            "Stat": stat,
        },
    }


def test_get_metric_data_reads_lambdas_metrics(cw: Any, lam: Any) -> None:
    """GetMetricData answers Invocations, Errors and Duration p50 of a function per period,
    newest first (CloudWatch's default ScanBy TimestampDescending), each result ``Complete``
    with its Id and Label (the metric name unless a Label is given); ReturnData false
    leaves a query out."""
    name = _invoked(lam)
    start, end = _window()
    queries = [
        _stat_query("inv", name, "Invocations", "Sum"),
        _stat_query("err", name, "Errors", "Sum") | {"Label": "errors"},
        _stat_query("dur", name, "Duration", "p50"),
        _stat_query("hidden", name, "Invocations", "SampleCount") | {"ReturnData": False},
    ]

    def results() -> dict[str, Any]:
        answer = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
        return {r["Id"]: r for r in answer["MetricDataResults"]}

    found = wait_until(lambda: sum(results().get("inv", {}).get("Values", [])) == 4 and results())
    assert set(found) == {"inv", "err", "dur"}
    assert (found["inv"]["Label"], found["err"]["Label"]) == ("Invocations", "errors")
    assert sum(found["err"]["Values"]) == 1
    assert all(r["StatusCode"] == "Complete" for r in found.values())
    assert found["dur"]["Values"]
    assert all(v > 0 for v in found["dur"]["Values"])
    stamps = found["inv"]["Timestamps"]
    assert len(stamps) == len(found["inv"]["Values"])
    assert all(isinstance(t, datetime.datetime) and t.second == 0 for t in stamps)
    assert stamps == sorted(stamps, reverse=True)


def test_get_metric_data_pages_by_max_datapoints(cw: Any, lam: Any) -> None:
    """MaxDatapoints bounds a page: a result cut short is ``PartialData`` and NextToken gets
    the rest (as CloudWatch paginates)."""
    name = _invoked(lam)
    start, end = _window()
    queries = [
        _stat_query("a", name, "Invocations", "Sum"),
        _stat_query("b", name, "Errors", "Sum"),
    ]
    wait_until(
        lambda: cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)[
            "MetricDataResults"
        ][1]["Values"]
    )
    whole = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
    total = sum(len(r["Values"]) for r in whole["MetricDataResults"])
    assert "NextToken" not in whole
    kwargs: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": start,
        "EndTime": end,
        "MaxDatapoints": 1,
        "ScanBy": "TimestampAscending",
    }
    first = cw.get_metric_data(**kwargs)
    assert first["MetricDataResults"][0]["StatusCode"] == (
        "PartialData" if len(whole["MetricDataResults"][0]["Values"]) > 1 else "Complete"
    )
    seen = sum(len(r["Values"]) for r in first["MetricDataResults"])
    token = first.get("NextToken")
    while token:
        page = cw.get_metric_data(**kwargs, NextToken=token)
        seen += sum(len(r["Values"]) for r in page["MetricDataResults"])
        token = page.get("NextToken")
    assert seen == total


def test_get_metric_statistics(cw: Any, lam: Any) -> None:
    """GetMetricStatistics answers Statistics or ExtendedStatistics (percentiles) per period,
    each datapoint with its Timestamp and Unit; a Unit that is not the metric's finds
    nothing, as on CloudWatch."""
    name = _invoked(lam)
    start, end = _window()
    common: dict[str, Any] = {
        "Namespace": "AWS/Lambda",
        "Dimensions": [{"Name": "FunctionName", "Value": name}],
        "StartTime": start,
        "EndTime": end,
        "Period": 3720,
    }

    def points(metric: str, **kwargs: Any) -> list[dict[str, Any]]:
        return list(cw.get_metric_statistics(MetricName=metric, **common, **kwargs)["Datapoints"])

    counted = wait_until(
        lambda: (
            sum(p["Sum"] for p in points("Invocations", Statistics=["Sum"])) == 4
            and points("Invocations", Statistics=["Sum", "SampleCount", "Average"])
        )
    )
    assert {p["Unit"] for p in counted} == {"Count"}
    assert sum(p["SampleCount"] for p in counted) == 4
    errors = points("Errors", Statistics=["Sum", "Average"])
    assert sum(p["Sum"] for p in errors) == 1
    durations = points("Duration", ExtendedStatistics=["p50", "p99.9"])
    assert durations
    assert {p["Unit"] for p in durations} == {"Milliseconds"}
    assert all(
        0 < p["ExtendedStatistics"]["p50"] <= p["ExtendedStatistics"]["p99.9"] for p in durations
    )
    assert points("Invocations", Statistics=["Sum"], Unit="Seconds") == []
    answer = cw.get_metric_statistics(MetricName="Invocations", Statistics=["Sum"], **common)
    assert answer["Label"] == "Invocations"


def test_list_metrics_finds_lambdas_metrics(cw: Any, lam: Any) -> None:
    """ListMetrics finds AWS/Lambda's metrics with the FunctionName dimension (filtered by
    namespace, name and dimension, which as on CloudWatch also matches metrics with more
    dimensions; RecentlyActive PT3H keeps them) and pages with NextToken."""
    name = _invoked(lam)
    dims = [{"Name": "FunctionName", "Value": name}]

    def listed(**kwargs: Any) -> list[dict[str, Any]]:
        return list(cw.list_metrics(Namespace="AWS/Lambda", Dimensions=dims, **kwargs)["Metrics"])

    # Listed once recorded: a cluster's worker shares its minutes within about a second.
    found = wait_until(
        lambda: (
            {"Invocations", "Errors", "Duration"} <= {m["MetricName"] for m in listed()}
            and listed()
        )
    )
    assert {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": dims} in found
    # A filter matches every metric that has the dimension, with more dimensions too.
    resource = [*dims, {"Name": "Resource", "Value": name}]
    recent = listed(MetricName="Duration", RecentlyActive="PT3H")
    assert sorted(recent, key=lambda m: len(m["Dimensions"])) == [
        {"Namespace": "AWS/Lambda", "MetricName": "Duration", "Dimensions": dims},
        {"Namespace": "AWS/Lambda", "MetricName": "Duration", "Dimensions": resource},
    ]
    paginated = [
        m
        for page in cw.get_paginator("list_metrics").paginate(Namespace="AWS/Lambda")
        for m in page["Metrics"]
    ]
    assert {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": dims} in paginated


def test_put_metric_data_is_read_back(cw: Any) -> None:
    """PutMetricData's Value, Values with Counts, and StatisticValues become one custom metric
    (count, sum, minimum and maximum kept exactly), listed in its namespace with its unit."""
    namespace = unique("Shop")
    dims = [{"Name": "service", "Value": "checkout"}]
    now = datetime.datetime.now(UTC)
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Orders", "Dimensions": dims, "Value": 5, "Unit": "Count"},
            {
                "MetricName": "Orders",
                "Dimensions": dims,
                "Values": [1, 2],
                "Counts": [2, 1],
                "Unit": "Count",
                "Timestamp": now,
            },
            {
                "MetricName": "Orders",
                "Dimensions": dims,
                "StatisticValues": {"SampleCount": 4, "Sum": 20, "Minimum": 2, "Maximum": 10},
                "Unit": "Count",
            },
        ],
    )
    start, end = _window()
    answer = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName="Orders",
        Dimensions=dims,
        StartTime=start,
        EndTime=end,
        Period=3720,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"],
    )
    (point,) = answer["Datapoints"]
    assert (point["SampleCount"], point["Sum"], point["Minimum"], point["Maximum"]) == (
        8,
        29,
        1,
        10,
    )
    assert point["Unit"] == "Count"
    assert cw.list_metrics(Namespace=namespace)["Metrics"] == [
        {"Namespace": namespace, "MetricName": "Orders", "Dimensions": dims}
    ]


def test_emf_metric_through_get_metric_data(cw: Any, lam: Any) -> None:
    """A metric a function prints in the embedded metric format is read back through
    GetMetricData in its own namespace, as CloudWatch makes EMF lines metrics."""
    namespace = unique("Emf")
    name = create_function(lam, EMF)["FunctionName"]
    invoke_json(lam, name, {"namespace": namespace, "latency": 40})
    start, end = _window()
    query = {
        "Id": "orders",
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": "Orders",
                "Dimensions": [{"Name": "service", "Value": "checkout"}],
            },
            "Period": 3720,
            "Stat": "Sum",
        },
    }

    def total() -> float:
        answer = cw.get_metric_data(MetricDataQueries=[query], StartTime=start, EndTime=end)
        return float(sum(answer["MetricDataResults"][0]["Values"]))

    assert wait_until(lambda: total() == 3)


def test_aws_cli_get_metric_statistics(server: Server, lam: Any) -> None:
    """``aws cloudwatch get-metric-statistics`` (the CLI speaks JSON 1.0 to CloudWatch) reads
    a function's Invocations."""
    name = _invoked(lam)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDTEST",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    start, end = _window()
    argv = [
        "aws",
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AWS/Lambda",
        "--metric-name",
        "Invocations",
        "--dimensions",
        f"Name=FunctionName,Value={name}",
        "--start-time",
        start.isoformat(),
        "--end-time",
        end.isoformat(),
        "--period",
        "3720",
        "--statistics",
        "Sum",
        "--endpoint-url",
        server.endpoint,
    ]

    def read() -> dict[str, Any] | None:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        # Read again until all four are counted: CloudWatch's figures arrive with a delay
        # (a cluster's worker shares its minutes within about a second).
        return answer if sum(p["Sum"] for p in answer["Datapoints"]) == 4 else None

    answer = wait_until(read, timeout=20, interval=0.5)
    assert answer["Label"] == "Invocations"
    bad = subprocess.run(
        [*argv[:-6], "--period", "90", "--statistics", "Sum", "--endpoint-url", server.endpoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode != 0
    assert "InvalidParameterValue" in bad.stderr, bad.stderr


def test_bad_queries_get_cloudwatchs_answers(cw_unchecked: Any) -> None:
    """Bad input answers CloudWatch's error codes (the query protocol's, as botocore reports
    them) with HTTP 400: a start not before the end, a period not a multiple of 60, no
    statistic, Statistics with ExtendedStatistics, more than 1,440 datapoints, a metric math
    expression or a trimmed mean (not supported), a statistic CloudWatch does not know
    (ValidationError "... is not a valid statistic."), missing required parameters
    (MissingParameter "The parameter X is required.", one line each, as CloudWatch words it),
    more than 500 queries, a token lambdad did not hand out."""
    cw = cw_unchecked
    start, end = _window()
    common: dict[str, Any] = {"Namespace": "AWS/Lambda", "MetricName": "Invocations"}
    with refused(
        "InvalidParameterValue",
        400,
        "The parameter StartTime must be less than the parameter EndTime.",
    ):
        cw.get_metric_statistics(
            **common, StartTime=end, EndTime=start, Period=60, Statistics=["Sum"]
        )
    with refused("InvalidParameterValue", 400, "The parameter Period must be a multiple of 60."):
        cw.get_metric_statistics(
            **common, StartTime=start, EndTime=end, Period=90, Statistics=["Sum"]
        )
    with refused("MissingParameter", 400):
        cw.get_metric_statistics(**common, StartTime=start, EndTime=end, Period=60)
    with refused("InvalidParameterCombination", 400):
        cw.get_metric_statistics(
            **common,
            StartTime=start,
            EndTime=end,
            Period=60,
            Statistics=["Sum"],
            ExtendedStatistics=["p99"],
        )
    with refused("InvalidParameterCombination", 400):
        cw.get_metric_statistics(
            **common,
            StartTime=start - datetime.timedelta(days=2),
            EndTime=end,
            Period=60,
            Statistics=["Sum"],
        )
    with refused("InvalidParameterValue", 400):
        cw.get_metric_statistics(
            **common, StartTime=start, EndTime=end, Period=60, ExtendedStatistics=["median"]
        )
    with refused("InvalidParameterValue", 400) as error:
        cw.get_metric_data(
            MetricDataQueries=[{"Id": "e1", "Expression": "SUM(METRICS())"}],
            StartTime=start,
            EndTime=end,
        )
    assert "not supported" in error["Message"]
    with refused("InvalidParameterValue", 400):
        cw.get_metric_data(
            MetricDataQueries=[_stat_query("m", "f", "Invocations", "TM(10%:90%)")],
            StartTime=start,
            EndTime=end,
        )
    with refused("InvalidParameterValue", 400):
        cw.get_metric_data(
            MetricDataQueries=[_stat_query(f"m{i}", "f", "Invocations", "Sum") for i in range(501)],
            StartTime=start,
            EndTime=end,
        )
    with refused(
        "ValidationError",
        400,
        "The value Median for parameter MetricDataQueries.member.1.MetricStat.Stat is not a"
        " valid statistic.",
    ):
        cw.get_metric_data(
            MetricDataQueries=[_stat_query("m", "f", "Invocations", "Median")],
            StartTime=start,
            EndTime=end,
        )
    with refused(
        "MissingParameter",
        400,
        "The parameter StartTime is required.\nThe parameter EndTime is required.",
    ):
        cw.get_metric_statistics(**common, Period=60, Statistics=["Sum"])
    with refused(
        "MissingParameter",
        400,
        "The parameter MetricDataQueries.member.2.Id is required.",
    ):
        cw.get_metric_data(
            MetricDataQueries=[
                _stat_query("m", "f", "Invocations", "Sum"),
                {"MetricStat": _stat_query("x", "f", "Errors", "Sum")["MetricStat"]},
            ],
            StartTime=start,
            EndTime=end,
        )
    with refused("InvalidNextToken", 400):
        cw.list_metrics(NextToken="not-a-token")
    with refused("ValidationError", 400):
        cw.list_metrics(RecentlyActive="PT1H")


def test_bad_metric_data_is_refused_whole(cw_unchecked: Any) -> None:
    """PutMetricData refuses an ``AWS/`` namespace, Value with StatisticValues, a datum without
    a value, Values and Counts of different lengths, and a timestamp over two weeks old;
    nothing of a refused request is kept."""
    cw = cw_unchecked
    namespace = unique("Bad")
    good = {"MetricName": "Kept", "Value": 1}
    with refused("InvalidParameterValue", 400):
        cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[good])
    with refused("InvalidParameterCombination", 400):
        cw.put_metric_data(
            Namespace=namespace,
            MetricData=[
                good,
                {
                    "MetricName": "x",
                    "Value": 1,
                    "StatisticValues": {"SampleCount": 1, "Sum": 1, "Minimum": 1, "Maximum": 1},
                },
            ],
        )
    with refused("MissingParameter", 400):
        cw.put_metric_data(Namespace=namespace, MetricData=[good, {"MetricName": "x"}])
    with refused("InvalidParameterValue", 400):
        cw.put_metric_data(
            Namespace=namespace,
            MetricData=[good, {"MetricName": "x", "Values": [1, 2], "Counts": [1]}],
        )
    old = datetime.datetime.now(UTC) - datetime.timedelta(days=15)
    with refused("InvalidParameterValue", 400):
        cw.put_metric_data(
            Namespace=namespace,
            MetricData=[good, {"MetricName": "x", "Value": 1, "Timestamp": old}],
        )
    assert cw.list_metrics(Namespace=namespace)["Metrics"] == []


def _post(server: Server, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(server.endpoint + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, cbor2.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, cbor2.loads(error.read())


def test_garbage_cbor_and_unknown_operations(server: Server) -> None:
    """A body that is not a CBOR map is a 400 SerializationException, an operation lambdad
    does not serve a 404, an absurd time range a 400, all in CBOR with ``__type`` (what
    botocore's RPC v2 parser reads)."""
    headers = {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"}
    for body in (b"\xff\xff", cbor2.dumps([1, 2]), cbor2.dumps({"Namespace": b"bytes"})):
        status, document = _post(server, CBOR_PATH + "ListMetrics", body, headers)
        assert status == 400, document
        assert document["__type"].endswith("#SerializationException")
    status, document = _post(server, CBOR_PATH + "PutMetricAlarm", cbor2.dumps({}), headers)
    assert status == 404
    assert "PutMetricAlarm" in document["message"]
    absurd = {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "StartTime": -1e308,
        "EndTime": 1e308,
        "Period": 60,
        "Statistics": ["Sum"],
    }
    status, document = _post(
        server, CBOR_PATH + "GetMetricStatistics", cbor2.dumps(absurd), headers
    )
    assert status == 400
    assert document["__type"].endswith("#InvalidParameterValueException")
    status, document = _post(server, CBOR_PATH + "ListMetrics", b"", headers)
    assert status == 200
    assert "Metrics" in document


@pytest.mark.slow
def test_sigv4_mode_scopes_metrics_by_account(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """In SigV4 mode a cloudwatch call signed for ``monitoring`` with a known key reads and
    writes the key's account's metrics only; a wrong secret is AWS's 403 signature mismatch,
    in CloudWatch's error shape."""
    data = tmp_path / "data"
    alice = sigv4_keys(data, "create", "--account-id", "111122223333", "--name", "alice")
    bob = sigv4_keys(data, "create", "--account-id", "444455556666", "--name", "bob")
    secured = start_server({"LAMBDAD_AUTH": "sigv4"}, data_dir=data)
    first = _client(secured, alice["AccessKeyId"], alice["SecretAccessKey"])
    second = _client(secured, bob["AccessKeyId"], bob["SecretAccessKey"])
    wrong = _client(secured, alice["AccessKeyId"], "x" * 40)
    namespace = unique("Signed")
    first.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "Hits", "Value": 1}])
    listed = first.list_metrics(Namespace=namespace)["Metrics"]
    assert listed == [{"Namespace": namespace, "MetricName": "Hits", "Dimensions": []}]
    assert second.list_metrics(Namespace=namespace)["Metrics"] == []
    with refused("InvalidSignatureException", 403):
        wrong.list_metrics()
    for client in (first, second, wrong):
        client.close()


def test_aws_cli_get_metric_data_and_list_metrics(server: Server, lam: Any) -> None:
    """``aws cloudwatch get-metric-data`` (with ``--metric-data-queries`` as JSON, as users
    paste them) and ``aws cloudwatch list-metrics`` read a function's metrics as against AWS."""
    name = _invoked(lam)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDTEST",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }

    def aws(*args: str) -> Any:
        argv = ["aws", "cloudwatch", *args, "--endpoint-url", server.endpoint]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    start, end = _window()
    queries = [_stat_query("calls", name, "Invocations", "Sum")]
    queries.append(_stat_query("errors", name, "Errors", "Sum"))

    def answered() -> Any:
        found = aws(
            "get-metric-data",
            "--metric-data-queries",
            json.dumps(queries),
            "--start-time",
            start.isoformat(),
            "--end-time",
            end.isoformat(),
        )
        results = {r["Id"]: r for r in found["MetricDataResults"]}
        return results if sum(results["calls"]["Values"]) == 4 else None

    results = wait_until(answered, timeout=20)
    assert sum(results["errors"]["Values"]) == 1
    assert results["calls"]["StatusCode"] == "Complete"
    listed = aws(
        "list-metrics",
        "--namespace",
        "AWS/Lambda",
        "--dimensions",
        f"Name=FunctionName,Value={name}",
    )["Metrics"]
    assert {"Invocations", "Errors", "Duration"} <= {m["MetricName"] for m in listed}
