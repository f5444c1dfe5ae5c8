"""The Scheduler API under bad input: every member of every routed ``scheduler`` operation
mutated (wrong types, nulls, empty, oversized, bad patterns, odd path segments and query
values), and malformed bodies: no 5xx, no hang, every error in Scheduler's shape, nothing the
model refuses accepted. The same machinery as tests/test_robustness.py (Lambda's model), on
botocore's ``scheduler`` model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from lambdad.api import scheduler_api
from lambdad.api.wire.decode import routed_operations
from tests import wire_model
from tests.conftest import Server, launch_server, shutdown
from tests.test_robustness import (
    SETTINGS,
    Finding,
    Fresh,
    RawClient,
    check_answer,
    materialise,
    summary,
)

ROLE = "arn:aws:iam::000000000000:role/scheduler"
TARGET = {
    "Arn": "arn:aws:lambda:us-east-1:000000000000:function:robust",
    "RoleArn": ROLE,
    "Input": '{"a": 1}',
    "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600},
    "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:000000000000:dlq"},
}
GROUP = "robust-group"
GROUP_ARN = f"arn:aws:scheduler:us-east-1:000000000000:schedule-group/{GROUP}"
SCHEDULE = {
    "ScheduleExpression": "rate(1 hour)",
    "FlexibleTimeWindow": {"Mode": "OFF"},
    "Target": TARGET,
    "State": "DISABLED",
    "Description": "d",
    "ActionAfterCompletion": "NONE",
    "ScheduleExpressionTimezone": "UTC",
    "KmsKeyArn": "arn:aws:kms:us-east-1:000000000000:key/abc",
    "ClientToken": "token-1",
}

#: Valid requests of every Scheduler operation (disabled schedules: nothing fires).
BASE: dict[str, dict[str, Any]] = {
    "CreateSchedule": {"Name": Fresh("robust-new"), **SCHEDULE},
    "UpdateSchedule": {"Name": "robust-schedule", **SCHEDULE},
    "GetSchedule": {"Name": "robust-schedule", "GroupName": "default"},
    "DeleteSchedule": {"Name": Fresh("robust-absent"), "ClientToken": "t"},
    "ListSchedules": {
        "GroupName": "default",
        "NamePrefix": "r",
        "State": "ENABLED",
        "MaxResults": 5,
    },
    "CreateScheduleGroup": {"Name": Fresh("robust-g"), "Tags": [{"Key": "k", "Value": "v"}]},
    "GetScheduleGroup": {"Name": GROUP},
    "DeleteScheduleGroup": {"Name": Fresh("robust-absent-g"), "ClientToken": "t"},
    "ListScheduleGroups": {"NamePrefix": "r", "MaxResults": 5},
    "TagResource": {"ResourceArn": GROUP_ARN, "Tags": [{"Key": "k", "Value": "v"}]},
    "UntagResource": {"ResourceArn": GROUP_ARN, "TagKeys": ["k"]},
    "ListTagsForResource": {"ResourceArn": GROUP_ARN},
}


def qualified(name: str) -> str:
    return f"scheduler:{name}"


@pytest.fixture(scope="module")
def robust_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch_server(tmp_path_factory.mktemp("robust-scheduler"), SETTINGS)
    client = RawClient(srv.port, srv.host)
    for name, values in [
        ("CreateScheduleGroup", {"Name": GROUP}),
        ("CreateSchedule", {"Name": "robust-schedule", **SCHEDULE}),
    ]:
        answer = client.send(wire_model.build(qualified(name), values))
        assert answer.status == 200, answer.body
    client.close()
    yield srv
    shutdown(srv)


def test_every_scheduler_operation_is_routed_and_has_a_base_request() -> None:
    """Every operation of botocore's ``scheduler`` model is routed and sent here."""
    names = set(wire_model.model("scheduler").operation_names)
    assert len(scheduler_api.routes) == len(names)
    assert routed_operations("scheduler") == names == set(BASE)


def test_valid_requests_succeed(robust_scheduler: Server) -> None:
    """Each base request is answered 200 (or, for an absent schedule or group, 404)."""
    client = RawClient(robust_scheduler.port, robust_scheduler.host)
    for name, values in BASE.items():
        answer = client.send(wire_model.build(qualified(name), materialise(values)))
        expected = 404 if name.startswith("Delete") else 200
        assert answer.status == expected, (name, answer.body)
    client.close()


def test_mutations_of_every_member(robust_scheduler: Server) -> None:
    """Every mutation of every member is answered without a 5xx or a hang, errors in
    Scheduler's shape (``x-amzn-ErrorType``, ``{"Message"}``), nothing invalid accepted.

    AWS answers what its model refuses with ValidationException (400)."""
    client = RawClient(robust_scheduler.port, robust_scheduler.host)
    findings: list[Finding] = []
    for name, base in BASE.items():
        for mutation in wire_model.mutations(qualified(name), base):
            if mutation.kind == "non-UTF-8" and name == "UntagResource":
                # A tag key has no pattern: its bytes are decoded leniently (U+FFFD), as Java
                # front ends do, and untagging a key that is not there is a no-op.
                mutation = dataclasses.replace(mutation, invalid=None)
            values = materialise(mutation.values)
            answer = client.send(wire_model.build(qualified(name), values))
            findings += check_answer(answer, name, mutation)
            shaped = b'"Message"' in answer.body and b'"Type"' not in answer.body
            # A request line that does not parse is refused before any route (or service) is
            # known: in the HTTP edge's one shape (docs/http-edge.md).
            unparsed = b"Could not parse request:" in answer.body
            if answer.status is not None and answer.status >= 400 and not (shaped or unparsed):
                findings.append(
                        Finding("not Scheduler's", name, mutation.member, mutation.kind,
                                answer.status, answer.body.decode("utf-8", "replace"))
                    )  # fmt: skip
    client.close()
    print("\n".join(f.line() for f in findings))
    assert not findings, summary(findings)
    assert "Traceback" not in robust_scheduler.log(), robust_scheduler.log()[-3000:]


def test_malformed_bodies(robust_scheduler: Server) -> None:
    """Non-JSON, truncated and non-object bodies are Scheduler's ValidationException (400)."""
    client = RawClient(robust_scheduler.port, robust_scheduler.host)
    findings: list[Finding] = []
    for name in ("CreateSchedule", "UpdateSchedule", "CreateScheduleGroup", "TagResource"):
        request = wire_model.build(qualified(name), materialise(BASE[name]))
        for kind, body in [
            ("non-JSON body", b"{not json"),
            ("truncated body", request.body[: len(request.body) // 2]),
            ("JSON array body", b"[1, 2]"),
            ("lone surrogate body", b'{"a": "\\ud800"}'),
            ("deeply nested body", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ]:
            answer = client.send(dataclasses.replace(request, body=body))
            findings += check_answer(answer, name, None, kind)
            if answer.headers.get("x-amzn-errortype") != "ValidationException":
                findings.append(
                    Finding("not validation", name, "-", kind, answer.status, str(answer.body))
                )
    client.close()
    assert not findings, summary(findings)
