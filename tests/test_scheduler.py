"""EventBridge Scheduler on lambdad: the ``scheduler`` API (boto3 and the AWS CLI) and schedules
firing their Lambda targets, exactly once per occurrence, on a fast test clock."""

from __future__ import annotations

import datetime
import itertools
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import (
    Moto,
    Recorder,
    Server,
    create_function,
    kill_every_node,
    launch_server,
    refused,
    shutdown,
    unique,
    wait_until,
)

#: The test clock: 2030-01-01T00:00:00Z when lambdad starts, two minutes per real second.
CLOCK_START = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
FAST_CLOCK = {"LAMBDAD_SCHEDULER_CLOCK": "2030-01-01T00:00:00Z,120"}
#: The same clock at one minute per real second, for the tests that measure real time (the
#: flexible window's offsets) or bound a stop's length in clock minutes.
MINUTE_CLOCK = {"LAMBDAD_SCHEDULER_CLOCK": "2030-01-01T00:00:00Z,60"}
SCHEDULER_ROLE = "arn:aws:iam::000000000000:role/scheduler-role"
OFF = {"Mode": "OFF"}

#: Reports ``<request id> <schedule number * 10**10 + scheduled time>`` to the test's
#: ``Recorder``: the Input carries ``<aws.scheduler.scheduled-time>`` and a schedule number.
RECORDING = """
import datetime, os, socket


def handler(event, context):
    when = datetime.datetime.fromisoformat(event["t"].replace("Z", "+00:00")).timestamp()
    number = int(event.get("n", 0)) * 10**10 + int(when)
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{context.aws_request_id} {number}\\n".encode())
        connection.recv(1)
    return event
"""


def scheduler_client(server: Server) -> Any:
    return boto3.client(
        "scheduler",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def target(arn: str, **extra: Any) -> dict[str, Any]:
    return {"Arn": arn, "RoleArn": SCHEDULER_ROLE, **extra}


def fn_arn(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def input_of(number: int) -> str:
    return json.dumps({"t": "<aws.scheduler.scheduled-time>", "n": number})


def fires(recorder: Recorder, number: int) -> list[tuple[str, int]]:
    """(request id, scheduled time) of every run reported for schedule ``number``."""
    return sorted(
        (
            (run_id, value - number * 10**10)
            for run_id, value in list(recorder.runs)
            if value // 10**10 == number
        ),
        key=lambda run: (run[1], run[0]),
    )


def minutes(at: int) -> float:
    return (at - CLOCK_START.timestamp()) / 60


@pytest.fixture
def sched(server: Server) -> Iterator[Any]:
    client = scheduler_client(server)
    yield client
    client.close()


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad whose schedulers' clock starts at 2030-01-01 and runs 120 times faster."""
    srv = launch_server(tmp_path_factory.mktemp("clocked"), FAST_CLOCK)
    yield srv
    shutdown(srv)


@pytest.fixture
def fast(clocked: Server) -> Iterator[tuple[Any, Any]]:
    lam, sched = clocked.client(), scheduler_client(clocked)
    yield lam, sched
    lam.close()
    sched.close()


def recording(lam: Any, recorder: Recorder) -> str:
    env = {"RECORDER_PORT": str(recorder.port)}
    return str(
        create_function(lam, RECORDING, name=unique("sched"), Timeout=30, env=env)["FunctionName"]
    )


# ----------------------------------------------------------------------------- the API


def test_create_get_update_delete_schedule(sched: Any) -> None:
    """CreateSchedule answers the ARN; GetSchedule answers every setting with the group, dates
    and AWS's defaults (RetryPolicy 185 attempts / 86400 s, State ENABLED, NONE); UpdateSchedule
    replaces the settings; DeleteSchedule removes it (then ResourceNotFoundException)."""
    name = unique("s")
    created = sched.create_schedule(
        Name=name,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow=OFF,
        Target=target(fn_arn("nobody"), Input='{"a": 1}'),
        Description="five",
    )
    arn = f"arn:aws:scheduler:us-east-1:000000000000:schedule/default/{name}"
    assert created["ScheduleArn"] == arn
    got = sched.get_schedule(Name=name)
    assert got["Arn"] == arn
    assert got["GroupName"] == "default"
    assert got["State"] == "ENABLED"
    assert got["Target"]["RetryPolicy"] == {
        "MaximumEventAgeInSeconds": 86400,
        "MaximumRetryAttempts": 185,
    }
    assert got["Target"]["Input"] == '{"a": 1}'
    assert got["Description"] == "five"
    assert got["ActionAfterCompletion"] == "NONE"
    assert got["ScheduleExpressionTimezone"] == "UTC"
    assert isinstance(got["CreationDate"], datetime.datetime)
    sched.update_schedule(
        Name=name,
        ScheduleExpression="rate(1 hour)",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10},
        Target=target(fn_arn("nobody")),
        State="DISABLED",
    )
    got = sched.get_schedule(Name=name)
    assert got["ScheduleExpression"] == "rate(1 hour)"
    assert got["State"] == "DISABLED"
    assert got["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10}
    assert "Input" not in got["Target"]
    assert "Description" not in got
    sched.delete_schedule(Name=name)
    with refused("ResourceNotFoundException", 404, f"Schedule {name} does not exist."):
        sched.get_schedule(Name=name)


def test_schedule_errors_have_schedulers_shape(sched: Any, server: Server) -> None:
    """A duplicate name is ConflictException, a missing group ResourceNotFoundException, a bad
    expression, time zone, retry policy, window or dates ValidationException, each as
    ``{"Message": ...}``.

    AWS answers these with Scheduler's codes and the ``Message`` member."""
    name = unique("s")
    args: dict[str, Any] = {
        "ScheduleExpression": "rate(1 minute)",
        "FlexibleTimeWindow": OFF,
        "Target": target(fn_arn("x")),
    }
    sched.create_schedule(Name=name, **args)
    with refused("ConflictException", 409, f"Schedule {name} already exists."):
        sched.create_schedule(Name=name, **args)
    with refused("ResourceNotFoundException", 404, "Schedule group nope does not exist."):
        sched.create_schedule(Name=unique("s"), GroupName="nope", **args)
    with refused("ValidationException", 400, "Invalid Schedule Expression rate(1 minutes)"):
        sched.create_schedule(Name=unique("s"), **{**args, "ScheduleExpression": "rate(1 minutes)"})
    with refused("ValidationException", 400, "Invalid Schedule Expression Timezone Mars/Olympus"):
        sched.create_schedule(Name=unique("s"), ScheduleExpressionTimezone="Mars/Olympus", **args)
    with refused("ValidationException", 400) as error:
        sched.create_schedule(
            Name=unique("s"),
            **{**args, "Target": target(fn_arn("x"), RetryPolicy={"MaximumRetryAttempts": 186})},
        )
    assert "Member must have value less than or equal to 185" in error["Message"]
    with refused("ValidationException", 400):
        sched.create_schedule(
            Name=unique("s"), **{**args, "FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}
        )
    now = datetime.datetime.now(datetime.UTC)
    too_early = (
        "The StartDate you specify cannot be earlier than 5 minutes prior to the current time."
    )
    with refused("ValidationException", 400, too_early):
        sched.create_schedule(
            Name=unique("s"), StartDate=now - datetime.timedelta(minutes=10), **args
        )
    with refused("ValidationException", 400, "The StartDate must come before the EndDate."):
        sched.create_schedule(
            Name=unique("s"),
            StartDate=now + datetime.timedelta(hours=2),
            EndDate=now + datetime.timedelta(hours=1),
            **args,
        )
    # The body of an error is Scheduler's: the message member only.
    request = urllib.request.Request(server.endpoint + f"/schedules/{unique('s')}", method="GET")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 404
    assert info.value.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert set(json.loads(info.value.read())) == {"Message"}


def test_a_create_repeated_with_its_client_token_answers_as_the_first(sched: Any) -> None:
    """CreateSchedule sent again with the same ClientToken and the same request (an SDK's
    retry) answers with the same ScheduleArn and creates nothing more; another token, or the
    same token with another request, is ConflictException (AWS: ClientToken makes the create
    idempotent)."""
    name = unique("token")
    request: dict[str, Any] = {
        "Name": name,
        "ScheduleExpression": "rate(1 day)",
        "FlexibleTimeWindow": OFF,
        "Target": target(fn_arn("x")),
        "State": "DISABLED",
    }
    first = sched.create_schedule(ClientToken="token-1", **request)
    again = sched.create_schedule(ClientToken="token-1", **request)
    assert again["ScheduleArn"] == first["ScheduleArn"]
    assert [s["Name"] for s in sched.list_schedules(NamePrefix=name)["Schedules"]] == [name]
    with refused("ConflictException", 409, f"Schedule {name} already exists."):
        sched.create_schedule(ClientToken="token-2", **request)
    with refused("ConflictException", 409, f"Schedule {name} already exists."):
        sched.create_schedule(ClientToken="token-1", **{**request, "Description": "other"})
    sched.delete_schedule(Name=name)


def test_groups_tags_and_deleting_a_group_deletes_its_schedules(sched: Any) -> None:
    """``default`` is always listed and cannot be deleted; a group takes tags; deleting a group
    deletes its schedules (as AWS does)."""
    group = unique("g")
    arn = sched.create_schedule_group(Name=group, Tags=[{"Key": "team", "Value": "a"}])[
        "ScheduleGroupArn"
    ]
    assert arn == f"arn:aws:scheduler:us-east-1:000000000000:schedule-group/{group}"
    names = {g["Name"] for g in sched.list_schedule_groups()["ScheduleGroups"]}
    assert {"default", group} <= names
    assert sched.get_schedule_group(Name=group)["State"] == "ACTIVE"
    with refused("ConflictException", 409, f"Schedule group {group} already exists."):
        sched.create_schedule_group(Name=group)
    sched.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"}])
    tags = {t["Key"]: t["Value"] for t in sched.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "a", "env": "dev"}
    sched.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert sched.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"}]
    name = unique("s")
    sched.create_schedule(
        Name=name,
        GroupName=group,
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow=OFF,
        Target=target(fn_arn("x")),
    )
    assert sched.get_schedule(Name=name, GroupName=group)["GroupName"] == group
    with refused("ResourceNotFoundException", 404):
        sched.get_schedule(Name=name)  # in the default group: not there
    with refused("ValidationException", 400):
        sched.delete_schedule_group(Name="default")
    sched.delete_schedule_group(Name=group)
    with refused("ResourceNotFoundException", 404, f"Schedule group {group} does not exist."):
        sched.get_schedule_group(Name=group)
    with refused("ResourceNotFoundException", 404):
        sched.get_schedule(Name=name, GroupName=group)


def test_list_schedules_filters_and_pages(sched: Any) -> None:
    """ListSchedules filters by group, name prefix and state, and pages with NextToken."""
    group = unique("g")
    sched.create_schedule_group(Name=group)
    for index in range(5):
        sched.create_schedule(
            Name=f"p{index}",
            GroupName=group,
            ScheduleExpression="rate(1 day)",
            FlexibleTimeWindow=OFF,
            Target=target(fn_arn("x")),
            State="DISABLED" if index == 4 else "ENABLED",
        )
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = sched.list_schedules(GroupName=group, MaxResults=2, **token)
        assert len(page["Schedules"]) <= 2
        seen += [s["Name"] for s in page["Schedules"]]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert sorted(seen) == [f"p{i}" for i in range(5)]
    enabled = sched.list_schedules(GroupName=group, State="ENABLED")["Schedules"]
    assert len(enabled) == 4
    assert enabled[0]["Target"] == {"Arn": fn_arn("x")}
    assert [
        s["Name"] for s in sched.list_schedules(GroupName=group, NamePrefix="p3")["Schedules"]
    ] == ["p3"]
    with refused("ValidationException", 400):
        sched.list_schedules(NextToken="garbage!")


def test_aws_cli_create_schedule(server: Server, tmp_path: Path) -> None:
    """``aws scheduler create-schedule`` against lambdad answers the schedule's ARN."""
    name = unique("cli")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    done = subprocess.run(
        [
            "aws", "scheduler", "create-schedule", "--endpoint-url", server.endpoint,
            "--name", name, "--schedule-expression", "rate(1 hour)",
            "--flexible-time-window", "Mode=OFF",
            "--target", json.dumps({"Arn": fn_arn("x"), "RoleArn": SCHEDULER_ROLE}),
        ],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ScheduleArn"].endswith(f":schedule/default/{name}")


# ----------------------------------------------------------------------------- firing


@pytest.mark.slow
def test_a_rate_schedule_fires_repeatedly_with_its_input(
    fast: tuple[Any, Any], recorder: Recorder
) -> None:
    """rate(1 minute) invokes the function once a minute (of the test clock) with the Input,
    the scheduled time filled in; a DISABLED schedule never fires."""
    lam, sched = fast
    function = recording(lam, recorder)
    for number, state in ((1, "ENABLED"), (2, "DISABLED")):
        sched.create_schedule(
            Name=unique("rate"),
            ScheduleExpression="rate(1 minute)",
            FlexibleTimeWindow=OFF,
            Target=target(fn_arn(function), Input=input_of(number)),
            State=state,
        )
    wait_until(lambda: len(fires(recorder, 1)) >= 4, timeout=60)
    times = [at for _, at in fires(recorder, 1)][:4]
    assert [b - a for a, b in itertools.pairwise(times)] == [60, 60, 60]
    assert fires(recorder, 2) == []


@pytest.mark.slow
def test_an_at_schedule_fires_once_and_is_deleted(
    fast: tuple[Any, Any], recorder: Recorder
) -> None:
    """at(...) fires once at its time; with ActionAfterCompletion DELETE the schedule is then
    gone, as on AWS."""
    lam, sched = fast
    function = recording(lam, recorder)
    # Six minutes of the test clock ahead (3 s), on a whole minute.
    at = clock_now(sched).replace(second=0, microsecond=0) + datetime.timedelta(minutes=6)
    name = unique("once")
    sched.create_schedule(
        Name=name,
        ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
        FlexibleTimeWindow=OFF,
        Target=target(fn_arn(function), Input=input_of(3)),
        ActionAfterCompletion="DELETE",
    )
    wait_until(lambda: fires(recorder, 3), timeout=60)

    def deleted() -> bool:
        try:
            sched.get_schedule(Name=name)
        except sched.exceptions.ResourceNotFoundException:
            return True
        return False

    wait_until(deleted, timeout=30)
    assert [at_ for _, at_ in fires(recorder, 3)] == [int(at.timestamp())]


def clock_now(sched: Any) -> datetime.datetime:
    """The schedulers' clock now: a schedule's CreationDate is stamped by it."""
    name = unique("probe")
    sched.create_schedule(
        Name=name,
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow=OFF,
        Target=target(fn_arn("x")),
        State="DISABLED",
    )
    created: datetime.datetime = sched.get_schedule(Name=name)["CreationDate"]
    sched.delete_schedule(Name=name)
    return created.astimezone(datetime.UTC)


@pytest.mark.slow
def test_start_and_end_dates_bound_the_occurrences(
    fast: tuple[Any, Any], recorder: Recorder
) -> None:
    """A rate schedule fires only between its StartDate and EndDate."""
    lam, sched = fast
    function = recording(lam, recorder)
    start = clock_now(sched).replace(second=0, microsecond=0) + datetime.timedelta(minutes=4)
    end = start + datetime.timedelta(minutes=4)
    sched.create_schedule(
        Name=unique("dated"),
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=OFF,
        Target=target(fn_arn(function), Input=input_of(4)),
        StartDate=start,
        EndDate=end,
    )
    wait_until(lambda: len(fires(recorder, 4)) >= 3, timeout=60)
    # Two clock minutes past the end date (1 s): nothing fired after it.
    wait_until(lambda: clock_now(sched) > end + datetime.timedelta(minutes=2), timeout=30)
    times = [at for _, at in fires(recorder, 4)]
    assert all(start.timestamp() <= at <= end.timestamp() for at in times), times


@pytest.mark.slow
def test_a_schedule_whose_function_is_missing_goes_to_its_dlq(
    moto: Moto, start_server: Any
) -> None:
    """A target that cannot be invoked (no such function) is sent to the schedule's
    dead-letter queue with Scheduler's attributes (ERROR_CODE, SCHEDULE_ARN, TARGET_ARN, ...).

    AWS does not retry a ResourceNotFound answer; it dead-letters the event."""
    srv = start_server({"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, **FAST_CLOCK})
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=unique("sched-dlq"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sched = scheduler_client(srv)
    name = unique("lost")
    missing = fn_arn(unique("gone"))
    sched.create_schedule(
        Name=name,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=OFF,
        Target=target(missing, Input='{"x": 1}', DeadLetterConfig={"Arn": queue_arn}),
    )

    def received() -> list[dict[str, Any]]:
        answer = sqs.receive_message(
            QueueUrl=url, MessageAttributeNames=["All"], MaxNumberOfMessages=10
        )
        return list(answer.get("Messages", []))

    messages = wait_until(received, timeout=60)
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "ResourceNotFoundException"
    assert attributes["SCHEDULE_ARN"].endswith(f":schedule/default/{name}")
    assert attributes["TARGET_ARN"] == missing
    assert {"ERROR_MESSAGE", "EXECUTION_ID"} <= set(attributes)
    assert messages[0]["Body"] == '{"x": 1}'
    sched.close()


@pytest.mark.slow
def test_no_occurrence_is_missed_or_doubled_across_sigkill(
    start_server: Any, recorder: Recorder
) -> None:
    """SIGKILL lambdad while schedules fire on a fast clock, restart it on the same data: from
    the function's own record, every occurrence up to the last ran with one id, none skipped.

    (The restart's clock starts at the same instant again, so it replays the minutes already
    fired: they are recorded as fired and are not fired twice; the rest follow.)"""
    srv = start_server(FAST_CLOCK)
    lam, sched = srv.client(), scheduler_client(srv)
    function = recording(lam, recorder)
    count = 4
    for number in range(10, 10 + count):
        sched.create_schedule(
            Name=f"kill-{number}",
            ScheduleExpression="rate(1 minute)",
            FlexibleTimeWindow=OFF,
            Target=target(fn_arn(function), Input=input_of(number)),
        )
    wait_until(lambda: all(len(fires(recorder, n)) >= 3 for n in range(10, 10 + count)), 60)
    kill_every_node(srv)
    lam.close()
    sched.close()
    before = {n: max(at for _, at in fires(recorder, n)) for n in range(10, 10 + count)}
    again = start_server(FAST_CLOCK, data_dir=srv.data_dir)

    def caught_up() -> bool:
        return all(
            max(at for _, at in fires(recorder, n)) >= before[n] + 5 * 60
            for n in range(10, 10 + count)
        )

    wait_until(caught_up, timeout=90)
    for number in range(10, 10 + count):
        runs = fires(recorder, number)
        ids_by_time: dict[int, set[str]] = {}
        for run_id, at in runs:
            ids_by_time.setdefault(at, set()).add(run_id)
        times = sorted(ids_by_time)
        assert all(len(ids) == 1 for ids in ids_by_time.values()), ids_by_time  # none doubled
        assert [b - a for a, b in itertools.pairwise(times)] == [60] * (len(times) - 1)
    shutdown(again)


@pytest.mark.slow
def test_occurrences_missed_while_stopped_fire_once(start_server: Any, recorder: Recorder) -> None:
    """Of the occurrences that came due while lambdad was stopped, only the most recent fires
    (once, at start); the schedule then goes on (docs/schedules.md: AWS is never down, so this
    is lambdad's rule, after Scheduler's event age)."""
    srv = start_server(MINUTE_CLOCK)
    lam, sched = srv.client(), scheduler_client(srv)
    function = recording(lam, recorder)
    # The occurrences fall at half past each minute of the clock: the function sees whole
    # seconds, so none may fall within the second after the restarted clock's 00:30.
    half_past = clock_now(sched).replace(second=30, microsecond=0)
    sched.create_schedule(
        Name="missed",
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=OFF,
        StartDate=half_past - datetime.timedelta(minutes=1),
        Target=target(fn_arn(function), Input=input_of(20)),
    )
    wait_until(lambda: len(fires(recorder, 20)) >= 2, timeout=60)
    stopping = clock_now(sched).timestamp()
    shutdown(srv)
    lam.close()
    sched.close()
    # An occurrence queued before the stop may run only after the restart (an accepted event
    # is run, as on AWS): occurrences up to five clock minutes (five real seconds for the
    # stop) after the reading are the first lambdad's, not missed ones.
    last_before = stopping + 5 * 60
    # Thirty minutes of the clock later: some 25 occurrences were missed meanwhile.
    later = {"LAMBDAD_SCHEDULER_CLOCK": "2030-01-01T00:30:00Z,60"}
    again = start_server(later, data_dir=srv.data_dir)
    # The clock began again at 00:30: every occurrence after it fires, however long lambdad
    # (or a cluster's node holding the schedules) takes to start its triggers.
    resumed = CLOCK_START.timestamp() + 30 * 60

    def after_stop() -> list[int]:
        return sorted({at for _, at in fires(recorder, 20) if at > last_before})

    # The caught-up occurrence and the next ones run at once (each in an environment of its
    # own): under load the caught-up one may report last, so both are waited for.
    wait_until(
        lambda: (
            any(at <= resumed for at in after_stop())
            and len([at for at in after_stop() if at > resumed]) >= 2
        ),
        60,
    )
    after = after_stop()
    caught_up = [at for at in after if at <= resumed]
    assert len(caught_up) == 1, after  # the latest missed only
    assert resumed - caught_up[0] < 60, after
    assert [b - a for a, b in itertools.pairwise(after)] == [60] * (len(after) - 1)
    shutdown(again)


#: Reports ``<scheduled time>/<real start time> <n>`` to the test's ``Recorder``.
FLEX_RECORDING = """
import datetime, os, socket, time


def handler(event, context):
    began = time.time()
    when = datetime.datetime.fromisoformat(event["t"].replace("Z", "+00:00")).timestamp()
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{int(when)}/{began:.3f} {event['n']}\\n".encode())
        connection.recv(1)
    return event
"""
#: A flexible schedule of a fixed name (its fire times are a function of its identity and its
#: occurrence), five minutes apart from 00:10 of the test clock, in a four-minute window.
FLEX_NAME = "flexible"
FLEX_WINDOW = 4 * 60
FLEX_START = CLOCK_START + datetime.timedelta(minutes=10)
#: The test clock started four minutes before FLEX_START: nine minutes (real seconds) before the
#: first occurrence (one period after the StartDate), and a StartDate is refused once more than
#: five minutes past: a cluster's api node, made after its workers, with the function, may take
#: over five real seconds from the clock's origin under load.
FLEX_CLOCK = {"LAMBDAD_SCHEDULER_CLOCK": "2030-01-01T00:06:00Z,60"}


def clock_reading(sched: Any) -> tuple[float, float]:
    """(clock time, real time) of one moment of the schedulers' clock (the probe's midpoint)."""
    before = time.time()
    at = clock_now(sched).timestamp()
    return at, (before + time.time()) / 2


def flexible_schedule(server: Server, recorder: Recorder, number: int) -> tuple[float, float]:
    """Create FLEX_NAME on ``server`` (its function reporting ``number``); the clock reading."""
    lam, sched = server.client(), scheduler_client(server)
    env = {"RECORDER_PORT": str(recorder.port)}
    function = create_function(lam, FLEX_RECORDING, name=unique("flex"), Timeout=30, env=env)
    reading = clock_reading(sched)
    sched.create_schedule(
        Name=FLEX_NAME,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": FLEX_WINDOW // 60},
        StartDate=FLEX_START,
        Target=target(
            function["FunctionArn"],
            Input=json.dumps({"t": "<aws.scheduler.scheduled-time>", "n": number}),
        ),
    )
    lam.close()
    sched.close()
    return reading


def flexible_offsets(
    recorder: Recorder, number: int, reading: tuple[float, float]
) -> dict[int, float]:
    """Clock seconds from each occurrence's nominal time to its function's start."""
    clock, real = reading
    offsets: dict[int, float] = {}
    for times, n in list(recorder.runs):
        if n == number:
            nominal, began = times.split("/")
            offsets[int(nominal)] = clock + (float(began) - real) * 60 - int(nominal)
    return offsets


@pytest.mark.slow
def test_a_flexible_window_spreads_each_occurrence_stably_across_a_restart(
    start_server: Any, recorder: Recorder
) -> None:
    """Each occurrence of a schedule with a FlexibleTimeWindow fires at a point of
    [due, due + window) other than its nominal time, and that point is the same on a lambdad
    that was restarted before the occurrence (AWS: Scheduler invokes the target within the
    window after the scheduled time; lambdad draws the point from the schedule and the
    occurrence, docs/schedules.md)."""
    # The lambdad to restart first, on the clock that starts at 00:00: it makes its schedule,
    # then stops before the first occurrence (00:15 of its clock) and starts again on its data
    # with the clock at 00:06, so every occurrence is planned by the new process. The steady
    # one starts on that clock too: nine real seconds before the first occurrence, not fifteen.
    restarted = start_server(MINUTE_CLOCK)
    flexible_schedule(restarted, recorder, 2)
    shutdown(restarted)
    steady = start_server(FLEX_CLOCK)
    steady_reading = flexible_schedule(steady, recorder, 1)
    again = start_server(FLEX_CLOCK, data_dir=restarted.data_dir)
    again_reading = clock_reading(scheduler_client(again))

    def common() -> set[int]:
        steady_seen = flexible_offsets(recorder, 1, steady_reading)
        return set(steady_seen) & set(flexible_offsets(recorder, 2, again_reading))

    wait_until(lambda: len(common()) >= 3, timeout=90)
    steady_offsets = flexible_offsets(recorder, 1, steady_reading)
    again_offsets = flexible_offsets(recorder, 2, again_reading)
    nominals = sorted(set(steady_offsets) & set(again_offsets))[:3]
    assert len(nominals) == 3, (steady_offsets, again_offsets)
    assert nominals[0] >= FLEX_START.timestamp()
    assert [b - a for a, b in itertools.pairwise(nominals)] == [300, 300]
    # Slack of the measure: the clock reading (a probe's round trip) and the fire's own delay,
    # a minute of the test clock (one real second).
    slack = 60.0
    for nominal in nominals:
        assert -slack < steady_offsets[nominal] < FLEX_WINDOW + slack, steady_offsets
        assert abs(steady_offsets[nominal] - again_offsets[nominal]) < slack, (
            steady_offsets,
            again_offsets,
        )
    assert max(steady_offsets[n] for n in nominals) > slack, steady_offsets  # not at due
