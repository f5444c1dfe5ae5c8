"""EventBridge scheduled rules (boto3's ``events`` client) against a real ``lambdad serve``.

What AWS does, as these tests pin it: PutRule creates or replaces a rule and answers its ARN;
DescribeRule of a missing rule is ``ResourceNotFoundException`` "Rule <name> does not exist on
EventBus default."; DeleteRule of a missing rule succeeds, of a rule with targets is a
``ValidationException``; a bad schedule is "Parameter ScheduleExpression is not valid.";
PutTargets reports per-target failures in ``FailedEntries``; a rule has at most five targets.
"""

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
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdad.control.rule_model import Rule, RuleTarget
from lambdad.control.scheduled_event import scheduled_event
from tests.conftest import Server, unique
from tests.test_sigv4 import keys as sigv4_keys

REGION = "us-east-1"
ACCOUNT = "000000000000"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:scheduled-fn"


@pytest.fixture
def events(server: Server) -> Iterator[Any]:
    client = boto3.client(
        "events",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
    )
    yield client
    client.close()


def error_of(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_rule_lifecycle(events: Any) -> None:
    """PutRule, DescribeRule, Disable/EnableRule, a second PutRule replacing the rule, and
    DeleteRule, as AWS answers them (ARN ``arn:aws:events:<region>:<account>:rule/<name>``)."""
    name = unique("rule")
    arn = events.put_rule(Name=name, ScheduleExpression="rate(5 minutes)", Description="d")[
        "RuleArn"
    ]
    assert arn == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
    described = events.describe_rule(Name=name)
    assert {k: described[k] for k in ("Name", "Arn", "State", "ScheduleExpression")} == {
        "Name": name,
        "Arn": arn,
        "State": "ENABLED",
        "ScheduleExpression": "rate(5 minutes)",
    }
    assert (described["Description"], described["EventBusName"]) == ("d", "default")
    events.disable_rule(Name=name)
    assert events.describe_rule(Name=name)["State"] == "DISABLED"
    events.enable_rule(Name=name)
    assert events.describe_rule(Name=name)["State"] == "ENABLED"
    events.put_rule(Name=name, ScheduleExpression="cron(0 12 ? * MON-FRI *)", State="DISABLED")
    replaced = events.describe_rule(Name=name)
    assert (replaced["ScheduleExpression"], replaced["State"]) == (
        "cron(0 12 ? * MON-FRI *)",
        "DISABLED",
    )
    assert "Description" not in replaced  # PutRule replaces: omitted members are not kept
    events.delete_rule(Name=name)
    with pytest.raises(ClientError) as info:
        events.describe_rule(Name=name)
    assert error_of(info) == (
        "ResourceNotFoundException",
        400,
        f"Rule {name} does not exist on EventBus default.",
    )
    events.delete_rule(Name=name)  # deleting what is gone succeeds, as on AWS


def test_missing_rules_are_not_found(events: Any) -> None:
    """Enable/DisableRule, PutTargets and ListTargetsByRule of a missing rule are
    ResourceNotFoundException, as on AWS."""
    name = unique("absent")
    calls = [
        lambda: events.enable_rule(Name=name),
        lambda: events.disable_rule(Name=name),
        lambda: events.list_targets_by_rule(Rule=name),
        lambda: events.put_targets(Rule=name, Targets=[{"Id": "a", "Arn": FUNCTION_ARN}]),
        lambda: events.remove_targets(Rule=name, Ids=["a"]),
    ]
    for call in calls:
        with pytest.raises(ClientError) as info:
            call()
        assert error_of(info)[:2] == ("ResourceNotFoundException", 400)


def test_list_rules_by_prefix_and_pages(events: Any) -> None:
    """ListRules filters by NamePrefix and pages with Limit and NextToken."""
    prefix = unique("page")
    names = [f"{prefix}-{i}" for i in range(5)]
    for name in names:
        events.put_rule(Name=name, ScheduleExpression="rate(1 hour)")
    seen: list[str] = []
    token: dict[str, str] = {}
    for _ in range(10):
        page = events.list_rules(NamePrefix=prefix, Limit=2, **token)
        assert len(page["Rules"]) <= 2
        seen += [rule["Name"] for rule in page["Rules"]]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert seen == names
    assert all(rule["State"] == "ENABLED" for rule in events.list_rules(NamePrefix=prefix)["Rules"])
    with pytest.raises(ClientError) as info:
        events.list_rules(NextToken="not-a-token")
    assert error_of(info)[:2] == ("ValidationException", 400)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 12 * * * *)",  # both day fields given
        "cron(0 12 * *)",
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "at(2030-01-01T00:00:00)",  # one-time schedules are Scheduler's, not rules'
        "every day",
    ],
)
def test_invalid_schedule_expressions(events: Any, expression: str) -> None:
    """AWS refuses a bad expression with ValidationException "Parameter ScheduleExpression is
    not valid."."""
    with pytest.raises(ClientError) as info:
        events.put_rule(Name=unique("bad"), ScheduleExpression=expression)
    assert error_of(info) == (
        "ValidationException",
        400,
        "Parameter ScheduleExpression is not valid.",
    )


def test_model_validation_answers(events: Any) -> None:
    """A name breaking the model's pattern is AWS's "1 validation error detected" clause; a
    member of the wrong JSON type is a SerializationException."""
    with pytest.raises(ClientError) as info:
        events.put_rule(Name="bad name!", ScheduleExpression="rate(1 hour)")
    code, status, message = error_of(info)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("1 validation error detected: Value 'bad name!' at 'name'")
    with pytest.raises(ClientError) as info:
        events.put_rule(Name=unique("typed"), ScheduleExpression=5)
    assert error_of(info)[:2] == ("SerializationException", 400)


def test_unsupported_features_say_so(events: Any) -> None:
    """An EventPattern is refused with a ValidationException naming it; a bus other than
    ``default`` does not exist (AWS's ResourceNotFoundException for a bus never created);
    a rule with neither schedule nor pattern is refused."""
    with pytest.raises(ClientError) as info:
        events.put_rule(Name=unique("pattern"), EventPattern='{"source": ["aws.ec2"]}')
    code, status, message = error_of(info)
    assert (code, status) == ("ValidationException", 400)
    assert "EventPattern is not supported" in message
    with pytest.raises(ClientError) as info:
        events.put_rule(Name=unique("bus"), ScheduleExpression="rate(1 hour)", EventBusName="mine")
    assert error_of(info)[:2] == ("ResourceNotFoundException", 400)
    assert "Event bus mine does not exist" in error_of(info)[2]
    name = unique("default-bus")
    events.put_rule(
        Name=name,
        ScheduleExpression="rate(1 hour)",
        EventBusName=f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
    )
    assert events.describe_rule(Name=name, EventBusName="default")["Name"] == name
    with pytest.raises(ClientError) as info:
        events.put_rule(Name=unique("nothing"))
    assert error_of(info)[:2] == ("ValidationException", 400)


def test_targets(events: Any) -> None:
    """PutTargets takes Lambda function targets (Input or InputPath), replaces by Id and lists
    them back; other kinds of target fail one by one in FailedEntries; RemoveTargets removes."""
    name = unique("targets")
    events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")
    answer = events.put_targets(
        Rule=name,
        Targets=[
            {"Id": "plain", "Arn": FUNCTION_ARN},
            {"Id": "input", "Arn": FUNCTION_ARN + ":live", "Input": '{"job": "nightly"}'},
            {"Id": "path", "Arn": FUNCTION_ARN, "InputPath": "$.detail"},
            {"Id": "queue", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"},
            {"Id": "both", "Arn": FUNCTION_ARN, "Input": "{}", "InputPath": "$"},
            {"Id": "notjson", "Arn": FUNCTION_ARN, "Input": "{nope"},
            {
                "Id": "transform",
                "Arn": FUNCTION_ARN,
                "InputTransformer": {"InputTemplate": '"<time>"'},
            },
        ],
    )
    assert answer["FailedEntryCount"] == 4
    assert [e["TargetId"] for e in answer["FailedEntries"]] == [
        "queue",
        "both",
        "notjson",
        "transform",
    ]
    assert "Lambda functions only" in answer["FailedEntries"][0]["ErrorMessage"]
    listed = events.list_targets_by_rule(Rule=name)["Targets"]
    assert listed == [
        {"Id": "plain", "Arn": FUNCTION_ARN},
        {"Id": "input", "Arn": FUNCTION_ARN + ":live", "Input": '{"job": "nightly"}'},
        {"Id": "path", "Arn": FUNCTION_ARN, "InputPath": "$.detail"},
    ]
    events.put_targets(Rule=name, Targets=[{"Id": "plain", "Arn": FUNCTION_ARN, "Input": "1"}])
    assert events.list_targets_by_rule(Rule=name, Limit=1)["Targets"][0]["Input"] == "1"
    with pytest.raises(ClientError) as info:
        events.delete_rule(Name=name)
    assert error_of(info) == (
        "ValidationException",
        400,
        "Rule can't be deleted since it has targets.",
    )
    removed = events.remove_targets(Rule=name, Ids=["plain", "input", "path", "never"])
    assert removed["FailedEntryCount"] == 0
    # The model's list of targets has at least one member: none is no list at all.
    assert "Targets" not in events.list_targets_by_rule(Rule=name)
    events.delete_rule(Name=name)


def test_at_most_five_targets(events: Any) -> None:
    """A rule takes five targets; a sixth is AWS's LimitExceededException, nothing stored."""
    name = unique("five")
    events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=name, Targets=[{"Id": str(i), "Arn": FUNCTION_ARN} for i in range(5)])
    with pytest.raises(ClientError) as info:
        events.put_targets(Rule=name, Targets=[{"Id": "6", "Arn": FUNCTION_ARN}])
    assert error_of(info)[:2] == ("LimitExceededException", 400)
    assert len(events.list_targets_by_rule(Rule=name)["Targets"]) == 5


def test_tags(events: Any) -> None:
    """Tags given at creation and by TagResource are listed; UntagResource removes them; a
    rule that does not exist is ResourceNotFoundException."""
    name = unique("tagged")
    arn = events.put_rule(
        Name=name, ScheduleExpression="rate(1 day)", Tags=[{"Key": "team", "Value": "a"}]
    )["RuleArn"]
    events.tag_resource(ResourceARN=arn, Tags=[{"Key": "env", "Value": "prod"}])
    tags = events.list_tags_for_resource(ResourceARN=arn)["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "a")]
    events.untag_resource(ResourceARN=arn, TagKeys=["team"])
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "env", "Value": "prod"}
    ]
    with pytest.raises(ClientError) as info:
        events.list_tags_for_resource(ResourceARN=arn + "-gone")
    assert error_of(info)[:2] == ("ResourceNotFoundException", 400)


def test_rules_are_per_account_and_region(server: Server, events: Any) -> None:
    """A rule belongs to its region: another region's client does not see it."""
    name = unique("regional")
    events.put_rule(Name=name, ScheduleExpression="rate(1 hour)")
    other = boto3.client(
        "events",
        endpoint_url=server.endpoint,
        region_name="eu-west-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
    )
    try:
        assert other.list_rules(NamePrefix=name)["Rules"] == []
    finally:
        other.close()


def post(server: Server, body: bytes, target: str | None) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of a raw ``POST /``."""
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(server.endpoint + "/", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_raw_json11_answers(server: Server) -> None:
    """An unknown X-Amz-Target is JSON 1.1's 400 UnknownOperationException and a body that is
    not JSON a SerializationException, in JSON 1.1's error shape with a request id; a POST /
    without a target keeps Lambda's 404 UnknownOperationException."""
    status, headers, body = post(server, b"{}", "AWSEvents.Nope")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    assert "x-amzn-RequestId" in headers
    status, _, body = post(server, b"{not json", "AWSEvents.ListRules")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, headers, body = post(server, b"{}", None)
    assert (status, headers["x-amzn-ErrorType"]) == (404, "UnknownOperationException")


@pytest.mark.slow
def test_aws_cli_put_rule(server: Server) -> None:
    """``aws events put-rule`` and ``describe-rule`` work against lambdad as against AWS."""
    name = unique("cli")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDTEST",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }

    def aws(*args: str) -> dict[str, Any]:
        argv = ["aws", "events", *args, "--endpoint-url", server.endpoint]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    created = aws("put-rule", "--name", name, "--schedule-expression", "cron(0 8 1 * ? *)")
    assert created["RuleArn"].endswith(f":rule/{name}")
    assert aws("describe-rule", "--name", name)["ScheduleExpression"] == "cron(0 8 1 * ? *)"


def test_scheduled_event_payload() -> None:
    """The function receives EventBridge's Scheduled Event with the occurrence's time (the same
    id whenever the same occurrence is sent), or the target's Input, or what its InputPath
    selects."""
    rule = Rule(ACCOUNT, REGION, "nightly", "cron(0 2 * * ? *)")
    at = datetime.datetime(2026, 12, 5, 2, 0, tzinfo=datetime.UTC)
    event = json.loads(scheduled_event(rule, at, ACCOUNT, REGION))
    assert {k: v for k, v in event.items() if k != "id"} == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2026-12-05T02:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/nightly"],
        "detail": {},
    }
    assert json.loads(scheduled_event(rule, at, ACCOUNT, REGION))["id"] == event["id"]
    later = at + datetime.timedelta(days=1)
    assert json.loads(scheduled_event(rule, later, ACCOUNT, REGION))["id"] != event["id"]
    with_input = RuleTarget("t", FUNCTION_ARN, input='{"job": 1}')
    assert scheduled_event(rule, at, ACCOUNT, REGION, with_input) == b'{"job": 1}'
    for path, expected in [
        ("$.detail", {}),
        ("$.time", "2026-12-05T02:00:00Z"),
        ("$.resources[0]", rule.arn),
        ("$['detail-type']", "Scheduled Event"),
        ("$.missing", None),
        ("$", event),
    ]:
        target = RuleTarget("t", FUNCTION_ARN, input_path=path)
        assert json.loads(scheduled_event(rule, at, ACCOUNT, REGION, target)) == expected


@pytest.mark.slow
def test_sigv4_mode_verifies_and_scopes_events_calls(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """In SigV4 mode an events call signed for ``events`` with a known key is served in the
    key's account; a wrong secret is AWS's 403 signature mismatch."""
    data = tmp_path / "data"
    key = sigv4_keys(data, "create", "--account-id", "111122223333", "--name", "ops")
    secured = start_server({"LAMBDAD_AUTH": "sigv4"}, data_dir=data)

    def client(secret: str) -> Any:
        return boto3.client(
            "events",
            endpoint_url=secured.endpoint,
            region_name=REGION,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1}),
        )

    good = client(key["SecretAccessKey"])
    arn = good.put_rule(Name="signed", ScheduleExpression="rate(1 hour)")["RuleArn"]
    assert arn == f"arn:aws:events:{REGION}:111122223333:rule/signed"
    bad = client("x" * 40)
    with pytest.raises(ClientError) as info:
        bad.list_rules()
    assert error_of(info)[:2] == ("InvalidSignatureException", 403)
    good.close()
    bad.close()


@pytest.mark.slow
def test_rules_survive_a_restart(start_server: Callable[..., Server]) -> None:
    """A rule, its state, targets and tags are still there after lambdad restarts on its
    data, as what AWS acknowledged is never lost."""
    first = start_server()

    def client(server: Server) -> Any:
        return boto3.client(
            "events",
            endpoint_url=server.endpoint,
            region_name=REGION,
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="secret",
        )

    before = client(first)
    arn = before.put_rule(
        Name="kept",
        ScheduleExpression="cron(0 6 ? * MON *)",
        State="DISABLED",
        Tags=[{"Key": "k", "Value": "v"}],
    )["RuleArn"]
    before.put_targets(Rule="kept", Targets=[{"Id": "t", "Arn": FUNCTION_ARN, "Input": "{}"}])
    before.close()
    first.stop()
    second = start_server(data_dir=first.data_dir)
    after = client(second)
    described = after.describe_rule(Name="kept")
    assert (described["State"], described["ScheduleExpression"]) == (
        "DISABLED",
        "cron(0 6 ? * MON *)",
    )
    assert after.list_targets_by_rule(Rule="kept")["Targets"] == [
        {"Id": "t", "Arn": FUNCTION_ARN, "Input": "{}"}
    ]
    assert after.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    after.close()
