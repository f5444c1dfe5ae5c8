"""Model-driven robustness of the CloudWatch Logs API (JSON 1.1, ``Logs_20140328.*``).

The twin of ``tests/test_event_rules_robustness.py`` for the ``logs`` model: for every
``Logs_20140328.*`` target lambdad serves, a valid request is varied one body member at a time
(to depth 3) with ``tests/wire_model.py``'s mutations, and raw malformations are sent. Every
answer must come in time, be below 500, carry ``x-amzn-RequestId`` and, for an error, be JSON
1.1's shape; a request the model forbids must not be accepted. Afterwards every group, stream
list and tag list read back must satisfy the model's output shapes, and the log must hold no
traceback (the harness: ``tests/service_robustness.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from lambdad.api import live_tail, logs_api  # noqa: F401  (registers the Logs_20140328.* targets)
from tests.conftest import Server
from tests.service_robustness import JsonTargets, assert_quiet, check, with_body
from tests.test_robustness import SETTINGS, RawClient

LOGS = JsonTargets("logs", "Logs_20140328")
GROUP = "/robust/group"  # exists, with a stream: reads, tags, events
GROUP_ARN = f"arn:aws:logs:us-east-1:000000000000:log-group:{GROUP}"
NOW = int(time.time() * 1000)

#: A valid request of each operation (members as in the model).
BASE: dict[str, dict[str, Any]] = {
    "CreateLogGroup": {
        "logGroupName": "/robust/created",
        "tags": {"k": "v"},
        "logGroupClass": "STANDARD",
    },
    "DeleteLogGroup": {"logGroupName": "/robust/doomed"},
    "DescribeLogGroups": {"logGroupNamePrefix": "/robust", "limit": 10},
    "PutRetentionPolicy": {"logGroupName": GROUP, "retentionInDays": 30},
    "DeleteRetentionPolicy": {"logGroupName": GROUP},
    "TagLogGroup": {"logGroupName": GROUP, "tags": {"k": "v"}},
    "ListTagsLogGroup": {"logGroupName": GROUP},
    "TagResource": {"resourceArn": GROUP_ARN, "tags": {"k2": "v"}},
    "UntagResource": {"resourceArn": GROUP_ARN, "tagKeys": ["never"]},
    "ListTagsForResource": {"resourceArn": GROUP_ARN},
    "CreateLogStream": {"logGroupName": GROUP, "logStreamName": "made"},
    "DeleteLogStream": {"logGroupName": GROUP, "logStreamName": "doomed"},
    "DescribeLogStreams": {"logGroupName": GROUP, "orderBy": "LogStreamName", "limit": 5},
    "GetLogEvents": {
        "logGroupName": GROUP,
        "logStreamName": "s",
        "startTime": 0,
        "endTime": NOW + 3_600_000,
        "limit": 5,
        "startFromHead": True,
    },
    "FilterLogEvents": {
        "logGroupName": GROUP,
        "logStreamNames": ["s"],
        "startTime": 0,
        "endTime": NOW + 3_600_000,
        "filterPattern": "robust",
        "limit": 5,
    },
    "PutLogEvents": {
        "logGroupName": GROUP,
        "logStreamName": "s",
        "logEvents": [{"timestamp": NOW, "message": "robust put"}],
    },
}


@pytest.fixture
def robust(start_server: Callable[..., Server]) -> Server:
    server = start_server(SETTINGS)
    client = RawClient(server.port)
    for name, values in [
        ("CreateLogGroup", {"logGroupName": GROUP}),
        ("CreateLogGroup", {"logGroupName": "/robust/doomed"}),
        ("CreateLogStream", {"logGroupName": GROUP, "logStreamName": "s"}),
        ("CreateLogStream", {"logGroupName": GROUP, "logStreamName": "doomed"}),
        ("PutLogEvents", BASE["PutLogEvents"]),
    ]:
        answer = client.send(LOGS.build(name, values))
        assert answer.status == 200, answer
    client.close()
    return server


#: Answered with an event stream that lasts until the client leaves: its valid mutations would
#: never end, so it is left to ``test_cloudwatch_logs.py``'s live tail test.
STREAMING = {"StartLiveTail"}


def test_every_target_is_covered() -> None:
    """Every Logs_20140328.* target lambdad serves has a valid base request here."""
    assert LOGS.served() == set(BASE) | STREAMING


def test_mutations_get_timely_json11_answers(robust: Server) -> None:
    """Each mutated or malformed request of each Logs operation gets a timely, non-5xx answer
    in JSON 1.1's shape, a request the model forbids is refused, and what is stored
    afterwards satisfies the model."""
    client = RawClient(robust.port)
    findings = LOGS.sweep(client, BASE, "logGroupName")
    findings += read_back(client)
    assert_quiet(robust.log())
    assert not findings, "\n".join(findings[:40])


def test_live_tail_refusals_are_timely_json11_answers(robust: Server) -> None:
    """Each StartLiveTail request the model forbids, and each malformed body, is refused in
    time in JSON 1.1's shape before any event stream starts (valid ones would stream until the
    client leaves, so only refusals are sent here)."""
    name = "StartLiveTail"
    base = {"logGroupIdentifiers": [GROUP_ARN], "logEventFilterPattern": "robust"}
    client = RawClient(robust.port)
    findings: list[str] = []
    try:
        for what, values, invalid in LOGS.mutations(name, base):
            if invalid:
                findings += check(client.send(LOGS.build(name, values)), f"{name} {what}", True)
        for what, body in [("not JSON", b"{nope"), ("array", b"[]"), ("string", b'"x"')]:
            request = with_body(LOGS.build(name, {}), body)
            findings += check(client.send(request), f"{name} {what}", True)
        for what, values in [
            ("unknown group", {"logGroupIdentifiers": [GROUP_ARN + "-never"]}),
            ("malformed pattern", {**base, "logEventFilterPattern": '"open'}),
        ]:
            findings += check(client.send(LOGS.build(name, values)), f"{name} {what}", True)
    finally:
        client.close()
    assert_quiet(robust.log())
    assert not findings, "\n".join(findings[:40])


def read_back(client: RawClient) -> list[str]:
    """Every group, its streams and tags satisfy the model's output shapes."""
    found: list[str] = []
    call = LOGS.reader(client, found)
    token: dict[str, str] = {}
    while True:
        page = call("DescribeLogGroups", token)
        for group in page["logGroups"]:
            call("DescribeLogStreams", {"logGroupName": group["logGroupName"]})
            call("ListTagsLogGroup", {"logGroupName": group["logGroupName"]})
            call("FilterLogEvents", {"logGroupName": group["logGroupName"]})
        if "nextToken" not in page:
            return found
        token = {"nextToken": page["nextToken"]}
