"""Powertools for AWS Lambda (Python) in a real handler, deployed as a layer built from the
``aws-lambda-powertools`` package installed with the test extras: its Logger's structured
line found through CloudWatch Logs' FilterLogEvents with a JSON filter pattern, its
Metrics' EMF metric read back through CloudWatch's GetMetricData (docs/metrics.md), and its
Tracer's segments found in the invocation's trace and in the OTLP export (docs/tracing.md)."""

from __future__ import annotations

import datetime
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import Server, create_function, invoke_json, make_zip, unique, wait_until
from tests.test_cloudwatch_logs import logs_client
from tests.test_tracing import OtlpReceiver

#: The packages the layer carries: Powertools and what its Logger, Metrics and Tracer import
#: (Tracer: the AWS X-Ray SDK for Python and wrapt).
LAYER_PACKAGES = ("aws_lambda_powertools", "jmespath", "typing_extensions", "aws_xray_sdk", "wrapt")

HANDLER = """\
import aws_lambda_powertools
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()  # service from POWERTOOLS_SERVICE_NAME
metrics = Metrics()  # namespace from POWERTOOLS_METRICS_NAMESPACE


@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
def handler(event, context):
    logger.info("order placed", extra={"order": event["order"]})
    metrics.add_dimension(name="environment", value="test")
    metrics.add_metric(name="OrdersPlaced", unit=MetricUnit.Count, value=event["count"])
    return {"order": event["order"], "from": aws_lambda_powertools.__file__}
"""


def _layer_zip() -> bytes:
    """``python/`` holding the installed packages' files, as a Lambda layer for Python."""
    files: dict[str, str | bytes] = {}
    for package in LAYER_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            root = origin.parent
            for path in sorted(root.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    rel = path.relative_to(root.parent).as_posix()
                    files[f"python/{rel}"] = path.read_bytes()
        else:
            files[f"python/{origin.name}"] = origin.read_bytes()
    return make_zip(files)


def publish_layer(client: Any) -> str:
    """The Powertools layer published through ``client``: its version ARN."""
    published = client.publish_layer_version(
        LayerName=unique("powertools"),
        Content={"ZipFile": _layer_zip()},
        CompatibleRuntimes=["python3.11"],
    )
    return str(published["LayerVersionArn"])


@pytest.fixture(scope="module")
def powertools_layer(server: Server) -> str:
    """The Powertools layer published once for this module: its version ARN."""
    client = server.client()
    try:
        return publish_layer(client)
    finally:
        client.close()


@pytest.fixture
def cw(server: Server) -> Iterator[Any]:
    client = boto3.client(
        "cloudwatch",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield client
    client.close()


@pytest.fixture
def logs(server: Server) -> Iterator[Any]:
    client = logs_client(server)
    yield client
    client.close()


def test_powertools_logger_and_metrics_in_a_layer(
    server: Server, lam: Any, logs: Any, cw: Any, powertools_layer: str
) -> None:
    """A handler using Powertools' Logger and Metrics from a layer runs; its structured log line
    is found by FilterLogEvents with a JSON filter pattern and its EMF metrics (its own with the
    service and a custom dimension, and ColdStart) by GetMetricData, as on AWS where
    Powertools' EMF lines printed to the function's log become CloudWatch metrics."""
    service = unique("orders")
    namespace = unique("Shop")
    name = create_function(
        lam,
        HANDLER,
        Layers=[powertools_layer],
        Timeout=30,
        env={"POWERTOOLS_SERVICE_NAME": service, "POWERTOOLS_METRICS_NAMESPACE": namespace},
    )["FunctionName"]
    response, body = invoke_json(lam, name, {"order": "o-1", "count": 3})
    assert "FunctionError" not in response, body
    assert body["order"] == "o-1"
    assert body["from"] == "/opt/python/aws_lambda_powertools/__init__.py"  # the layer's

    group = f"/aws/lambda/{name}"
    pattern = f'{{ $.level = "INFO" && $.service = "{service}" }}'

    def found() -> list[dict[str, Any]]:
        return list(logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"])

    events = wait_until(found, timeout=20)
    line = json.loads(events[0]["message"])
    assert line["message"] == "order placed"
    assert line["order"] == "o-1"
    assert line["function_name"] == name
    assert line["cold_start"] is True

    no_match = f'{{ $.level = "ERROR" && $.service = "{service}" }}'
    assert logs.filter_log_events(logGroupName=group, filterPattern=no_match)["events"] == []

    now = datetime.datetime.now(datetime.UTC)
    query = {
        "Id": "orders",
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": "OrdersPlaced",
                "Dimensions": [
                    {"Name": "service", "Value": service},
                    {"Name": "environment", "Value": "test"},
                ],
            },
            "Period": 60,
            "Stat": "Sum",
            "Unit": "Count",
        },
    }

    def total() -> float:
        answer = cw.get_metric_data(
            MetricDataQueries=[query],
            StartTime=now - datetime.timedelta(minutes=10),
            EndTime=now + datetime.timedelta(minutes=10),
        )
        return float(sum(answer["MetricDataResults"][0]["Values"]))

    assert wait_until(lambda: total() == 3, timeout=20)
    # the cold start metric Powertools prints as an EMF line of its own
    query["MetricStat"]["Metric"] = {
        "Namespace": namespace,
        "MetricName": "ColdStart",
        "Dimensions": [
            {"Name": "function_name", "Value": name},
            {"Name": "service", "Value": service},
        ],
    }
    assert wait_until(lambda: total() == 1, timeout=20)
    listed = cw.list_metrics(Namespace=namespace)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["ColdStart", "OrdersPlaced"]


TRACED_HANDLER = """\
import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()
tracer = Tracer()  # service from POWERTOOLS_SERVICE_NAME; patches boto3 if present


@tracer.capture_method
def place_order(order):
    tracer.put_annotation(key="order", value=order)
    tracer.put_metadata(key="detail", value={"lines": 2})
    return order.upper()


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):
    placed = place_order(event["order"])
    logger.info("order traced", extra={"placed": placed})
    metrics.add_metric(name="OrdersTraced", unit=MetricUnit.Count, value=1)
    return {"placed": placed, "trace": os.environ.get("_X_AMZN_TRACE_ID", "")}
"""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.close()


def test_powertools_tracer_segments_join_lambdad_trace(
    start_server: Any, receiver: OtlpReceiver
) -> None:
    """A handler traced with Powertools' Tracer (``capture_lambda_handler``, a
    ``capture_method`` subsegment with an annotation) in an Active function sends its
    subsegments to ``AWS_XRAY_DAEMON_ADDRESS`` as on Lambda: they hang under the invocation's
    ``AWS::Lambda::Function`` segment beside lambdad's own spans in one trace whose id is the
    X-Ray root, read through ``/_lambdad/traces`` and received over OTLP."""
    server = start_server({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    client = server.client()
    service = unique("checkout")
    name = create_function(
        client,
        TRACED_HANDLER,
        Layers=[publish_layer(client)],
        Timeout=30,
        TracingConfig={"Mode": "Active"},
        env={"POWERTOOLS_SERVICE_NAME": service, "POWERTOOLS_METRICS_NAMESPACE": "Shop"},
    )["FunctionName"]
    response, body = invoke_json(client, name, {"order": "o-7"})
    assert "FunctionError" not in response, body
    assert body["placed"] == "O-7"
    fields = dict(p.split("=", 1) for p in body["trace"].split(";") if "=" in p)
    assert fields["Sampled"] == "1"
    root, parent = fields["Root"], fields["Parent"]

    wanted = {"## handler", "## app.place_order", "Invocation"}

    def trace() -> Any:
        try:
            found = server.get_json(f"/_lambdad/traces/{root}")
        except OSError:
            return None
        return found if wanted <= {s["Name"] for s in found["Spans"]} else None

    found = wait_until(trace, timeout=20)
    assert found["TraceId"] == root
    by_name = {s["Name"]: s for s in found["Spans"]}
    by_id = {s["Id"]: s for s in found["Spans"]}
    assert by_name["## handler"]["ParentId"] == parent
    assert by_id[parent]["Attributes"]["aws.xray.origin"] == "AWS::Lambda::Function"
    assert by_name["## app.place_order"]["ParentId"] == by_name["## handler"]["Id"]
    place = by_name["## app.place_order"]["Attributes"]
    assert place["aws.xray.annotation.order"] == "o-7"
    handler = by_name["## handler"]["Attributes"]
    assert handler["aws.xray.annotation.ColdStart"] is True
    assert handler["aws.xray.annotation.Service"] == service
    assert by_name["## handler"]["Service"] == name
    assert by_name["Invocation"]["ParentId"] == parent

    trace_id = root[2:].replace("-", "")

    def exported() -> Any:
        spans = [s for s in receiver.spans if s["trace_id"] == trace_id]
        return spans if wanted <= {s["name"] for s in spans} else None

    spans = {s["name"]: s for s in wait_until(exported, timeout=20)}
    assert spans["## handler"]["parent_id"] == parent
    assert spans["## app.place_order"]["parent_id"] == spans["## handler"]["span_id"]
    assert spans["## app.place_order"]["attributes"]["aws.xray.annotation.order"] == b"o-7"
    assert {s["service"] for s in spans.values()} == {name}

    # Logger stamps the trace id on its lines: the log line is found by it
    logs = logs_client(server)
    pattern = f'{{ $.xray_trace_id = "{root}" }}'

    def logged() -> list[dict[str, Any]]:
        group = f"/aws/lambda/{name}"
        return list(logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"])

    assert json.loads(wait_until(logged, timeout=20)[0]["message"])["placed"] == "O-7"
    logs.close()
    client.close()
