"""Model-driven robustness of the EventBridge rules API (JSON 1.1, ``X-Amz-Target``).

The JSON 1.1 twin of ``tests/test_robustness.py``: for every ``AWSEvents.*`` target lambdad
serves, a valid request is varied one body member at a time (to depth 3: wrong JSON type,
null, empty, oversized, out of range, control characters, lone surrogates, unknown members,
enum misses) with the mutations of ``tests/wire_model.py``, and raw malformations are sent
(non-JSON, truncated, array and string bodies, a huge declared ``Content-Length``). Every
answer must come in time, be below 500, carry ``x-amzn-RequestId`` and, for an error, be JSON
1.1's shape (``__type`` and ``message``); a request the model forbids must not be accepted.
Afterwards every rule and target read back must satisfy the model's output shapes, and the
server log must hold no traceback. The harness is ``tests/service_robustness.py``, shared with
the Logs and CloudWatch twins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session
import pytest

from lambdad.api import events_api  # noqa: F401  (registers the AWSEvents.* targets)
from lambdad.api.target_front import targets
from tests.conftest import Server
from tests.service_robustness import JsonTargets, assert_quiet, fields_within
from tests.test_robustness import SETTINGS, RawClient

EVENTS = JsonTargets("events", "AWSEvents")
ARN = "arn:aws:lambda:us-east-1:000000000000:function:robust-target"
RULE = "robust-rule"  # exists, with a target: reads, targets, tags
RULE_ARN = f"arn:aws:events:us-east-1:000000000000:rule/{RULE}"

#: A valid request of each operation (members as in the model).
BASE: dict[str, dict[str, Any]] = {
    "PutRule": {
        "Name": "robust-put",
        "ScheduleExpression": "rate(5 minutes)",
        "State": "ENABLED",
        "Description": "d",
        "RoleArn": "arn:aws:iam::000000000000:role/r",
        "Tags": [{"Key": "k", "Value": "v"}],
        "EventBusName": "default",
    },
    "DescribeRule": {"Name": RULE, "EventBusName": "default"},
    "EnableRule": {"Name": RULE},
    "DisableRule": {"Name": "robust-put"},
    "DeleteRule": {"Name": "robust-never", "Force": False},
    "ListRules": {"NamePrefix": "robust", "Limit": 10},
    "PutTargets": {
        "Rule": RULE,
        "Targets": [
            {
                "Id": "t1",
                "Arn": ARN,
                "Input": '{"a": 1}',
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 600},
                "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:000000000000:dlq"},
            }
        ],
    },
    "RemoveTargets": {"Rule": RULE, "Ids": ["never"]},
    "ListTargetsByRule": {"Rule": RULE, "Limit": 5},
    "TagResource": {"ResourceARN": RULE_ARN, "Tags": [{"Key": "k", "Value": "v"}]},
    "UntagResource": {"ResourceARN": RULE_ARN, "TagKeys": ["never"]},
    "ListTagsForResource": {"ResourceARN": RULE_ARN},
}


@pytest.fixture
def robust(start_server: Callable[..., Server]) -> Server:
    server = start_server(SETTINGS)
    client = RawClient(server.port)
    for name, values in [
        ("PutRule", {"Name": RULE, "ScheduleExpression": "rate(1 hour)"}),
        ("PutTargets", {"Rule": RULE, "Targets": [{"Id": "keep", "Arn": ARN}]}),
    ]:
        answer = client.send(EVENTS.build(name, values))
        assert answer.status == 200, answer
    client.close()
    return server


def test_every_target_is_covered() -> None:
    """Every AWSEvents.* target lambdad serves has a valid base request here."""
    assert EVENTS.served() == set(BASE)


def test_every_struct_field_is_a_member_of_its_operation() -> None:
    """Each target's request Struct names only members of its operation's input shape, nested
    Structs (Target, Tag, RetryPolicy, DeadLetterConfig) included."""
    for service, name, kind in targets().values():
        shape = botocore.session.get_session().get_service_model(service)
        fields_within(kind, shape.operation_model(name).input_shape, name)


def test_mutations_get_timely_json11_answers(robust: Server) -> None:
    """Each mutated or malformed request of each operation gets a timely, non-5xx answer in
    JSON 1.1's shape, a request the model forbids is refused, and what is stored afterwards
    satisfies the model."""
    client = RawClient(robust.port)
    findings = EVENTS.sweep(client, BASE, "Name")
    findings += read_back(client)
    assert_quiet(robust.log())
    assert not findings, "\n".join(findings[:40])


def read_back(client: RawClient) -> list[str]:
    """Every rule and target lambdad answers satisfies the model's output shapes."""
    found: list[str] = []
    call = EVENTS.reader(client, found)
    token: dict[str, str] = {}
    while True:
        page = call("ListRules", token)
        for rule in page["Rules"]:
            call("DescribeRule", {"Name": rule["Name"]})
            call("ListTargetsByRule", {"Rule": rule["Name"]})
            call("ListTagsForResource", {"ResourceARN": rule["Arn"]})
        if "NextToken" not in page:
            return found
        token = {"NextToken": page["NextToken"]}
