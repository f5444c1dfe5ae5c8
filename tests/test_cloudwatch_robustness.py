"""Model-driven robustness of CloudWatch's metrics API (RPC v2 CBOR and JSON 1.0).

The twin of ``tests/test_event_rules_robustness.py`` for ``lambdad.api.cloudwatch_front``: for
every operation lambdad serves, a valid request is varied one body member at a time (to depth
3: wrong type, null, empty, oversized, out of range, control characters, lone surrogates,
unknown members, enum misses) with the mutations of ``tests/wire_model.py``, sent as CBOR (what
botocore speaks) and as JSON 1.0 (what the AWS CLI v1 speaks), and raw malformations are sent
(not CBOR, truncated, a CBOR array, an undefined item, a huge declared ``Content-Length``).
Every answer must come in time, be below 500, carry ``x-amzn-RequestId`` and, for an error, be
CloudWatch's shape (``__type`` and ``message``); a request the model forbids must not be
accepted. Afterwards ListMetrics' answers must satisfy the model's output shape, and the
server log must hold no traceback (the harness: ``tests/service_robustness.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import cbor2
import pytest
from botocore.model import ServiceModel

from lambdad.api import cloudwatch_api  # noqa: F401  (registers the operations)
from lambdad.api.cloudwatch_front import operations
from tests import wire_model
from tests.conftest import Server
from tests.service_robustness import (
    JSON,
    Encoding,
    Mutation,
    assert_quiet,
    body_mutations,
    check,
    fields_within,
    huge_content_length,
    with_body,
)
from tests.test_robustness import SETTINGS, Answer, RawClient
from tests.wire_model import HttpRequest

PATH = "/service/GraniteServiceVersion20100801/operation/"
NOW = time.time()
DIMS = [{"Name": "FunctionName", "Value": "robust"}]
METRIC = {"Namespace": "AWS/Lambda", "MetricName": "Invocations", "Dimensions": DIMS}

#: A valid request of each operation (members as in the model).
BASE: dict[str, dict[str, Any]] = {
    "GetMetricData": {
        "MetricDataQueries": [
            {
                "Id": "m1",
                "MetricStat": {"Metric": METRIC, "Period": 60, "Stat": "p99", "Unit": "Count"},
                "Label": "l",
                "ReturnData": True,
            }
        ],
        "StartTime": NOW - 3600,
        "EndTime": NOW + 60,
        "ScanBy": "TimestampAscending",
        "MaxDatapoints": 100,
    },
    "GetMetricStatistics": {
        **METRIC,
        "StartTime": NOW - 3600,
        "EndTime": NOW + 60,
        "Period": 60,
        "Statistics": ["Sum"],
        "Unit": "Count",
    },
    "ListMetrics": {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "Dimensions": [{"Name": "FunctionName", "Value": "robust"}],
        "RecentlyActive": "PT3H",
    },
    "PutMetricData": {
        "Namespace": "Robust",
        "MetricData": [
            {
                "MetricName": "Orders",
                "Dimensions": [{"Name": "service", "Value": "s"}],
                "Timestamp": NOW,
                "Values": [1.0, 2.0],
                "Counts": [1.0, 3.0],
                "Unit": "Count",
                "StorageResolution": 60,
            }
        ],
    },
}


def model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("cloudwatch")


def _cbor(values: dict[str, Any]) -> bytes:
    """``values`` in CBOR; a lone surrogate (which CBOR text cannot hold) as invalid UTF-8 of
    the same length."""
    marker = wire_model.SURROGATE.encode()
    return cbor2.dumps(values).replace(marker, b"\xed\xa0\x80" + b"x" * (len(marker) - 3))


def build(name: str, values: dict[str, Any], protocol: str = "cbor") -> HttpRequest:
    if protocol == "cbor":
        headers = {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"}
        return HttpRequest("POST", PATH + name, headers, _cbor(values))
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"GraniteServiceVersion20100801.{name}",
    }
    return HttpRequest("POST", "/", headers, wire_model.dump_json(values))


def mutations(name: str) -> Iterator[Mutation]:
    """(what changed, the request's values, whether the model forbids them)."""
    return body_mutations(model().operation_model(name).input_shape, name, BASE[name])


CBOR = Encoding("cbor", cbor2.loads, (ValueError, cbor2.CBORDecodeError))
ENCODINGS = {"cbor": CBOR, "json": dataclasses.replace(JSON, name="json")}


def answered(answer: Answer, what: str, invalid: bool, protocol: str) -> list[str]:
    """``check``'s findings, errors in CloudWatch's shape in ``protocol``'s encoding."""
    return check(answer, what, invalid, ENCODINGS[protocol], "CloudWatch's")


@pytest.fixture
def robust(start_server: Callable[..., Server]) -> Server:
    return start_server(SETTINGS)


def test_every_operation_is_covered() -> None:
    """Every CloudWatch operation lambdad serves has a valid base request here."""
    assert set(operations()) == set(BASE)


def test_every_struct_field_is_a_member_of_its_operation() -> None:
    """Each operation's request Struct names only members of its input shape, nested Structs
    (MetricDataQuery, MetricStat, Metric, Dimension, MetricDatum, StatisticSet) included."""
    for name, kind in operations().items():
        fields_within(kind, model().operation_model(name).input_shape, name)


def test_mutations_get_timely_cloudwatch_answers(robust: Server) -> None:
    """Each mutated or malformed request of each operation, in CBOR and in JSON 1.0, gets a
    timely, non-5xx answer in CloudWatch's error shape, and a request the model forbids is
    refused."""
    client = RawClient(robust.port)
    findings: list[str] = []
    for name in BASE:
        for protocol in ("cbor", "json"):
            answer = client.send(build(name, BASE[name], protocol))
            if answer.status != 200:
                findings.append(f"{name} {protocol} valid request refused: {answer.status}")
            for what, values, invalid in mutations(name):
                findings += answered(
                    client.send(build(name, values, protocol)),
                    f"{name} {protocol} {what}",
                    invalid,
                    protocol,
                )
        for what, body in [
            ("not CBOR", b"\xff\xfe\xfd"),
            ("truncated", _cbor(BASE[name])[:-1]),
            ("array", cbor2.dumps([])),
            ("string", cbor2.dumps("x")),
            ("undefined", cbor2.dumps({"Namespace": cbor2.undefined})),
            ("tagged", cbor2.dumps({"Namespace": cbor2.CBORTag(99, "x")})),
            ("int key", cbor2.dumps({1: "x"})),
            ("deep", b"\x81" * 5000 + b"\x00"),
            ("bytes", cbor2.dumps({"Namespace": b"x"})),
        ]:
            request = with_body(build(name, {}), body)
            findings += answered(client.send(request), f"{name} {what}", True, "cbor")
        head = f"POST {PATH}{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        findings += huge_content_length(client, name, head, start="\xa0")
        client.close()
    findings += read_back(client)
    assert_quiet(robust.log())
    assert not findings, "\n".join(findings[:40])


def read_back(client: RawClient) -> list[str]:
    """ListMetrics' answers (every metric the mutations put) satisfy the model's output."""
    shape = model().operation_model("ListMetrics").output_shape
    found: list[str] = []
    token: dict[str, str] = {}
    while True:
        answer = client.send(build("ListMetrics", token))
        assert answer.status == 200, answer
        document = cbor2.loads(answer.body)
        found += [f"ListMetrics answer: {p}" for p in wire_model.problems(shape, document)]
        if "NextToken" not in document:
            return found
        token = {"NextToken": document["NextToken"]}
