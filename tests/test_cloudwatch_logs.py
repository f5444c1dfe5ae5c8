"""The CloudWatch Logs API on lambdad's endpoint: boto3's ``logs`` client and the AWS CLI's
``aws logs`` after real invocations, and the log store's bound and retention."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Server, create_function, invoke_json, unique, wait_until

PRINTER = (
    "def handler(event, context):\n"
    "    for line in event.get('lines', []):\n"
    "        print(line)\n"
    "    return 'ok'\n"
)
LOGGER = (
    "import logging\n"
    "logger = logging.getLogger()\n"
    "def handler(event, context):\n"
    "    logger.info('info %s', event['tag'])\n"
    "    logger.warning('warn %s', event['tag'])\n"
    "    logger.error('error %s', event['tag'])\n"
    "    return 'ok'\n"
)


def logs_client(server: Server, region: str = "us-east-1") -> Any:
    return boto3.client(
        "logs",
        endpoint_url=server.endpoint,
        region_name=region,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )


@pytest.fixture
def logs(server: Server) -> Iterator[Any]:
    client = logs_client(server)
    yield client
    client.close()


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def invoked(lam: Any, lines: list[str], code: str = PRINTER, **kwargs: Any) -> str:
    """A new function, invoked once with ``lines`` to print; its name."""
    name = str(create_function(lam, code, name=unique("cwl"), **kwargs)["FunctionName"])
    invoke_json(lam, name, {"lines": lines})
    return name


def group_events(logs: Any, group: str, **kwargs: Any) -> list[dict[str, Any]]:
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group, **kwargs)
    return [e for page in pages for e in page["events"]]


def until_reported(logs: Any, group: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The group's events once a REPORT line is among them (with ``kwargs``' filter: once
    any event matches). Asked again until then: CloudWatch Logs delivers a function's lines
    with a delay (writes are buffered here, and a cluster's worker sends them to the api
    node within about 0.1 s), and the group exists only once its first line arrived."""

    def reported() -> list[dict[str, Any]] | None:
        try:
            events = group_events(logs, group, **kwargs)
        except ClientError:
            return None
        if kwargs:
            return events or None
        return events if any(e["message"].startswith("REPORT") for e in events) else None

    found: list[dict[str, Any]] = wait_until(reported)
    return found


# ------------------------------------------------------------------ functions' groups


def test_function_group_and_stream_are_described(server: Server, lam: Any, logs: Any) -> None:
    """A function's ``/aws/lambda/NAME`` group appears once it logs, with AWS's members
    (arn ending ``:*``, creationTime, storedBytes, STANDARD class); its stream has first and
    last event times and storedBytes 0, as AWS reports it now."""
    name = invoked(lam, ["hello stream"])
    group = f"/aws/lambda/{name}"
    until_reported(logs, group)
    found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in found] == [group]
    described = found[0]
    assert described["arn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:{group}:*"
    assert described["logGroupArn"] == described["arn"][:-2]
    assert described["logGroupClass"] == "STANDARD"
    assert described["storedBytes"] > 0
    assert described["creationTime"] <= int(time.time() * 1000)
    assert "retentionInDays" not in described
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert len(streams) == 1
    stream = streams[0]
    assert stream["storedBytes"] == 0
    assert stream["firstEventTimestamp"] <= stream["lastEventTimestamp"]
    assert stream["lastIngestionTime"] >= stream["lastEventTimestamp"]
    assert stream["arn"] == f"{described['logGroupArn']}:log-stream:{stream['logStreamName']}"


def test_a_function_logs_to_the_group_its_logging_config_names(
    server: Server, lam: Any, logs: Any
) -> None:
    """A function with ``LoggingConfig.LogGroup`` writes there, not to ``/aws/lambda/NAME``,
    as on AWS; ``lambdad logs NAME`` reads that group too."""
    custom = f"/custom/{unique('lg')}"
    name = invoked(
        lam, ["to my own group"], LoggingConfig={"LogFormat": "Text", "LogGroup": custom}
    )
    messages = [e["message"] for e in until_reported(logs, custom)]
    assert "to my own group" in messages
    assert logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"] == []
    printed = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "logs", name, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[-1].split(" ", 1)[1].startswith("REPORT RequestId:")
    assert any(line.endswith(" to my own group") for line in printed.stdout.splitlines())


def test_get_log_events_reads_a_function_stream(server: Server, lam: Any, logs: Any) -> None:
    """GetLogEvents from the head gives START, the printed lines, END and REPORT in order."""
    name = invoked(lam, ["first line", "second line"])
    group = f"/aws/lambda/{name}"
    until_reported(logs, group)
    stream = logs.describe_log_streams(logGroupName=group)["logStreams"][0]["logStreamName"]
    got = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    messages = [e["message"] for e in got["events"]]
    start = next(i for i, m in enumerate(messages) if m.startswith("START RequestId:"))
    assert messages[start + 1 : start + 3] == ["first line", "second line"]
    assert messages[-1].startswith("REPORT RequestId:")


def test_application_log_level_filters_json_logs(server: Server, lam: Any, logs: Any) -> None:
    """With LogFormat JSON and ApplicationLogLevel WARN, INFO records are not logged (as on
    AWS) and FilterLogEvents' JSON patterns select records by level (read once the REPORT
    arrived: CloudWatch Logs is eventually consistent, ``until_reported``)."""
    name = str(
        create_function(
            lam,
            LOGGER,
            name=unique("cwl"),
            LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"},
        )["FunctionName"]
    )
    invoke_json(lam, name, {"tag": "t1"})
    group = f"/aws/lambda/{name}"
    until_reported(logs, group, filterPattern='{ $.type = "platform.report" }')
    assert group_events(logs, group, filterPattern='{ $.level = "INFO" }') == []
    warned = group_events(logs, group, filterPattern='{ $.level = "WARNING" }')
    assert [json.loads(e["message"])["message"] for e in warned] == ["warn t1"]
    either = group_events(logs, group, filterPattern='{ $.level = "WARN*" || $.level = "ERROR" }')
    assert len(either) == 2


PRINTS_LEVELS = (
    "def handler(event, context):\n"
    '    print(\'{"level": "debug", "msg": "noise \' + event[\'n\'] + \'"}\')\n'
    "    print('plain text ' + event['n'])\n"
    '    print(\'{"level": "error", "msg": "kept \' + event[\'n\'] + \'"}\')\n'
    "    return 'ok'\n"
)


def test_log_levels_filter_printed_json_and_platform_lines(
    server: Server, lam: Any, logs: Any
) -> None:
    """Lambda filters JSON logs by level itself, whatever printed them: with
    ApplicationLogLevel WARN a printed ``{"level": "debug"}`` line is left out, an ``error``
    one kept (a plain text line is not filtered); SystemLogLevel WARN leaves out Lambda's INFO
    lines (START, REPORT), as AWS documents."""
    name = str(
        create_function(
            lam,
            PRINTS_LEVELS,
            name=unique("cwl"),
            LoggingConfig={
                "LogFormat": "JSON",
                "ApplicationLogLevel": "WARN",
                "SystemLogLevel": "WARN",
            },
        )["FunctionName"]
    )
    invoke_json(lam, name, {"n": "1"})
    invoke_json(lam, name, {"n": "2"})
    group = f"/aws/lambda/{name}"

    def both() -> list[str] | None:
        try:
            found = [e["message"] for e in group_events(logs, group)]
        except ClientError:
            return None
        return found if any("kept 2" in m for m in found) else None

    messages = wait_until(both)
    assert messages == [
        "plain text 1",
        '{"level": "error", "msg": "kept 1"}',
        "plain text 2",
        '{"level": "error", "msg": "kept 2"}',
    ]


# ------------------------------------------------------------------ users' groups


def test_create_describe_delete_log_group(logs: Any) -> None:
    """CreateLogGroup makes a group (twice: ResourceAlreadyExistsException), DeleteLogGroup
    removes it (an unknown one: ResourceNotFoundException "The specified log group does not
    exist.", AWS's words)."""
    group = f"/app/{unique('grp')}"
    logs.create_log_group(logGroupName=group, tags={"team": "a"})
    with pytest.raises(ClientError) as excinfo:
        logs.create_log_group(logGroupName=group)
    assert error_of(excinfo)[0] == "ResourceAlreadyExistsException"
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"team": "a"}
    arn = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["logGroupArn"]
    logs.tag_resource(resourceArn=arn, tags={"env": "dev"})
    logs.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"env": "dev"}
    logs.delete_log_group(logGroupName=group)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []
    with pytest.raises(ClientError) as excinfo:
        logs.delete_log_group(logGroupName=group)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
    with pytest.raises(ClientError) as excinfo:
        logs.filter_log_events(logGroupName=group)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_describe_log_groups_pages_and_patterns(logs: Any) -> None:
    """DescribeLogGroups pages by ``limit`` and ``nextToken`` in name order, matches a name
    prefix or (case-insensitively) a pattern, and refuses both at once."""
    base = unique("pg")
    names = [f"/pages/{base}/{i}" for i in range(5)]
    for name in names:
        logs.create_log_group(logGroupName=name)
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = logs.describe_log_groups(logGroupNamePrefix=f"/pages/{base}/", limit=2, **token)
        assert len(page["logGroups"]) <= 2
        seen += [g["logGroupName"] for g in page["logGroups"]]
        if "nextToken" not in page:
            break
        token = {"nextToken": page["nextToken"]}
    assert seen == names
    matched = logs.describe_log_groups(logGroupNamePattern=base.upper())["logGroups"]
    assert [g["logGroupName"] for g in matched] == names
    with pytest.raises(ClientError) as excinfo:
        logs.describe_log_groups(logGroupNamePrefix="/pages", logGroupNamePattern="x")
    assert error_of(excinfo)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as excinfo:
        logs.describe_log_groups(limit=51)
    code, message = error_of(excinfo)
    assert code == "InvalidParameterException"
    assert "Member must have value less than or equal to 50" in message


def test_groups_are_per_region(server: Server, logs: Any) -> None:
    """A group of one region is not seen from another (groups are keyed by scope)."""
    group = f"/regional/{unique('r')}"
    logs.create_log_group(logGroupName=group)
    other = logs_client(server, "eu-west-1")
    try:
        assert other.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []
        other.create_log_group(logGroupName=group)  # a group of its own
        other.delete_log_group(logGroupName=group)
    finally:
        other.close()
    assert len(logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]) == 1


def _stream_with(logs: Any, count: int, base_ms: int) -> tuple[str, str]:
    group, stream = f"/events/{unique('ev')}", "s1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = [{"timestamp": base_ms + i, "message": f"event {i}"} for i in range(count)]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    return group, stream


def test_get_log_events_tokens_both_ways(logs: Any) -> None:
    """GetLogEvents reads the tail by default and the head with startFromHead, moves forwards
    with ``nextForwardToken`` and backwards with ``nextBackwardToken`` (AWS's ``f/``+56 digits
    and ``b/`` forms), and gives the same token back when there is nothing more."""
    now = int(time.time() * 1000)
    group, stream = _stream_with(logs, 10, now - 10_000)
    args = {"logGroupName": group, "logStreamName": stream, "limit": 4}

    def messages(page: dict[str, Any]) -> list[str]:
        return [e["message"] for e in page["events"]]

    tail = logs.get_log_events(**args)
    assert messages(tail) == ["event 6", "event 7", "event 8", "event 9"]
    assert tail["nextForwardToken"].startswith("f/")
    assert len(tail["nextForwardToken"]) == 58
    back = logs.get_log_events(**args, nextToken=tail["nextBackwardToken"])
    assert messages(back) == ["event 2", "event 3", "event 4", "event 5"]
    head = logs.get_log_events(**args, startFromHead=True)
    assert messages(head) == ["event 0", "event 1", "event 2", "event 3"]
    ahead = logs.get_log_events(**args, nextToken=head["nextForwardToken"])
    assert messages(ahead) == ["event 4", "event 5", "event 6", "event 7"]
    end = logs.get_log_events(**args, nextToken=tail["nextForwardToken"])
    assert end["events"] == []
    assert end["nextForwardToken"] == tail["nextForwardToken"]
    window = logs.get_log_events(
        logGroupName=group,
        logStreamName=stream,
        startTime=now - 10_000 + 3,
        endTime=now - 10_000 + 5,
        startFromHead=True,
    )
    assert messages(window) == ["event 3", "event 4"]  # endTime is exclusive
    with pytest.raises(ClientError) as excinfo:
        logs.get_log_events(logGroupName=group, logStreamName="never")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )


def test_filter_log_events_pages_streams_and_times(logs: Any) -> None:
    """FilterLogEvents pages with ``limit``/``nextToken``, selects streams by name or prefix
    and time (both ends inclusive), answers ``searchedLogStreams`` as an empty list as AWS
    does now, and refuses a malformed pattern with InvalidParameterException."""
    now = int(time.time() * 1000)
    group, _ = _stream_with(logs, 25, now - 60_000)
    logs.create_log_stream(logGroupName=group, logStreamName="other")
    logs.put_log_events(
        logGroupName=group,
        logStreamName="other",
        logEvents=[{"timestamp": now - 1000, "message": "event other ERROR"}],
    )
    first = logs.filter_log_events(logGroupName=group, limit=10)
    assert len(first["events"]) == 10
    assert first["searchedLogStreams"] == []
    assert set(first["events"][0]) == {
        "logStreamName", "timestamp", "message", "ingestionTime", "eventId",
    }  # fmt: skip
    every = group_events(logs, group, PaginationConfig={"PageSize": 7})
    assert len(every) == 26
    assert [e["message"] for e in group_events(logs, group, logStreamNames=["other"])] == [
        "event other ERROR"
    ]
    assert len(group_events(logs, group, logStreamNamePrefix="s")) == 25
    timed = group_events(logs, group, startTime=now - 60_000 + 5, endTime=now - 60_000 + 7)
    assert [e["message"] for e in timed] == ["event 5", "event 6", "event 7"]
    terms = group_events(logs, group, filterPattern='?ERROR ?"event 1"')
    assert len(terms) == 12  # event 1, 10-19, and the ERROR
    assert group_events(logs, group, filterPattern="event -other") != []
    assert len(group_events(logs, group, filterPattern="event -other")) == 25
    for bad in ['"unclosed', "{ $.a = }", "{ $.a = 1", "[a,,b]"]:
        with pytest.raises(ClientError) as excinfo:
            logs.filter_log_events(logGroupName=group, filterPattern=bad)
        assert error_of(excinfo) == ("InvalidParameterException", "Invalid filter pattern")


def test_describe_log_streams_orders(logs: Any) -> None:
    """DescribeLogStreams orders by name or by last event time, descending if asked, pages,
    and refuses LastEventTime ordering with a prefix (AWS's rule); DeleteLogStream removes a
    stream with its events."""
    group = f"/streams/{unique('st')}"
    logs.create_log_group(logGroupName=group)
    now = int(time.time() * 1000)
    for name, offset in [("b", 3), ("a", 1), ("c", 2)]:
        logs.create_log_stream(logGroupName=group, logStreamName=name)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=name,
            logEvents=[{"timestamp": now - 10_000 + offset, "message": name}],
        )

    def names(**kwargs: Any) -> list[str]:
        pages = logs.get_paginator("describe_log_streams").paginate(
            logGroupName=group, PaginationConfig={"PageSize": 2}, **kwargs
        )
        return [s["logStreamName"] for page in pages for s in page["logStreams"]]

    assert names() == ["a", "b", "c"]
    assert names(descending=True) == ["c", "b", "a"]
    assert names(orderBy="LastEventTime") == ["a", "c", "b"]
    assert names(orderBy="LastEventTime", descending=True) == ["b", "c", "a"]
    with pytest.raises(ClientError) as excinfo:
        logs.describe_log_streams(
            logGroupName=group, orderBy="LastEventTime", logStreamNamePrefix="a"
        )
    assert error_of(excinfo)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as excinfo:
        logs.create_log_stream(logGroupName=group, logStreamName="a")
    assert error_of(excinfo)[0] == "ResourceAlreadyExistsException"
    logs.delete_log_stream(logGroupName=group, logStreamName="a")
    assert names() == ["b", "c"]
    assert [e["message"] for e in group_events(logs, group)] == ["b", "c"]
    with pytest.raises(ClientError) as excinfo:
        logs.delete_log_stream(logGroupName=group, logStreamName="a")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )


def test_put_log_events_rules(logs: Any) -> None:
    """PutLogEvents refuses events out of order and batches over 24 hours
    (InvalidParameterException), reports events too old or too new in
    ``rejectedLogEventsInfo`` and needs an existing stream, as AWS does."""
    group = f"/put/{unique('p')}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    args = {"logGroupName": group, "logStreamName": "s"}
    with pytest.raises(ClientError) as excinfo:
        logs.put_log_events(
            **args,
            logEvents=[{"timestamp": now, "message": "b"}, {"timestamp": now - 5, "message": "a"}],
        )
    assert error_of(excinfo)[0] == "InvalidParameterException"
    old = logs.put_log_events(
        **args, logEvents=[{"timestamp": now - 15 * 86_400_000, "message": "old"}]
    )
    assert old["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}
    answer = logs.put_log_events(
        **args,
        logEvents=[
            {"timestamp": now, "message": "kept"},
            {"timestamp": now + 3 * 3_600_000, "message": "future"},
        ],
    )
    assert answer["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 1}
    with pytest.raises(ClientError) as excinfo:
        logs.put_log_events(
            **args,
            logEvents=[
                {"timestamp": now - 2 * 86_400_000, "message": "a"},
                {"timestamp": now, "message": "b"},
            ],
        )
    assert error_of(excinfo)[0] == "InvalidParameterException"
    assert [e["message"] for e in group_events(logs, group)] == ["kept"]
    with pytest.raises(ClientError) as excinfo:
        logs.put_log_events(
            logGroupName=group,
            logStreamName="never",
            logEvents=[{"timestamp": now, "message": "x"}],
        )
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def _segment_text(server: Server) -> str:
    """Every segment file's text (a file deleted while listed is left out)."""
    texts = []
    for path in (server.data_dir / "logs" / "segments").glob("*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            texts.append(path.read_text(errors="replace"))
    return "".join(texts)


def test_retention_drops_old_events_from_reads_and_disk(server: Server, logs: Any) -> None:
    """PutRetentionPolicy shows as ``retentionInDays``; events older than it are no longer
    read and their segment is removed from disk (AWS deletes expired events); an unknown
    retention value is InvalidParameterException."""
    group, stream = f"/ret/{unique('old')}", "s"
    marker = unique("expired")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    two_days_ago = int(time.time() * 1000) - 2 * 86_400_000
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": two_days_ago, "message": marker}],
    )
    wait_until(lambda: marker in _segment_text(server))
    logs.put_retention_policy(logGroupName=group, retentionInDays=1)
    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert described["retentionInDays"] == 1
    assert group_events(logs, group) == []
    wait_until(lambda: marker not in _segment_text(server))
    with pytest.raises(ClientError) as excinfo:
        logs.put_retention_policy(logGroupName=group, retentionInDays=2)
    assert error_of(excinfo)[0] == "InvalidParameterException"
    logs.delete_retention_policy(logGroupName=group)
    assert (
        "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    )


@pytest.mark.slow
def test_store_is_bounded_and_survives_a_restart(start_server: Any) -> None:
    """Past ``LAMBDAD_LOG_MAX_BYTES`` the oldest events are dropped (memory and disk), the
    newest kept; groups, retention and events are read back after a restart."""
    bound = 200_000
    srv = start_server({"LAMBDAD_LOG_MAX_BYTES": str(bound)})
    logs = logs_client(srv)
    group = "/bounded/app"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    now = int(time.time() * 1000)
    for batch in range(20):
        events = [
            {"timestamp": now + batch * 100 + i, "message": f"b{batch:02d} {i:03d} " + "x" * 100}
            for i in range(100)
        ]
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=events)
    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    assert described["storedBytes"] <= bound
    kept = group_events(logs, group)
    assert kept[-1]["message"].startswith("b19 099")
    assert not any(e["message"].startswith("b00 ") for e in kept)
    root = srv.data_dir / "logs" / "segments"

    def disk_bytes() -> int:
        total = 0
        for path in root.glob("*.jsonl"):
            with contextlib.suppress(FileNotFoundError):  # deleted while listed
                total += path.stat().st_size
        return total

    wait_until(lambda: "b19 099" in _segment_text(srv))
    assert disk_bytes() < 2 * bound  # lines carry their group and stream besides the message
    logs.close()
    srv.stop()
    again = start_server({"LAMBDAD_LOG_MAX_BYTES": str(bound)}, data_dir=srv.data_dir)
    logs = logs_client(again)
    try:
        described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
        assert described["retentionInDays"] == 7
        assert group_events(logs, group) == kept
    finally:
        logs.close()


# ------------------------------------------------------------------ the AWS CLI


@pytest.mark.slow
def test_aws_cli_reads_a_function_log(server: Server, lam: Any, tmp_path: Path) -> None:
    """The AWS CLI's ``aws logs describe-log-groups``, ``get-log-events`` and
    ``filter-log-events`` read a function's log as against AWS. (``aws logs tail`` is the CLI
    v2's; it pages FilterLogEvents from ``--since`` as the boto3 tests above do.)"""
    marker = unique("cli")
    name = invoked(lam, [f"{marker} printed"])
    group = f"/aws/lambda/{name}"
    logs = logs_client(server)
    try:
        until_reported(logs, group)
    finally:
        logs.close()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }

    def aws(*args: str) -> str:
        done = subprocess.run(
            ["aws", "logs", *args, "--endpoint-url", server.endpoint],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    described = json.loads(aws("describe-log-groups", "--log-group-name-prefix", group))
    assert [g["logGroupName"] for g in described["logGroups"]] == [group]
    stream = json.loads(aws("describe-log-streams", "--log-group-name", group))["logStreams"][0]
    got = json.loads(
        aws(
            "get-log-events", "--log-group-name", group,
            "--log-stream-name", stream["logStreamName"], "--start-from-head",
        )
    )  # fmt: skip
    assert f"{marker} printed" in [e["message"] for e in got["events"]]
    found = json.loads(
        aws("filter-log-events", "--log-group-name", group, "--filter-pattern", marker)
    )
    assert [e["message"] for e in found["events"]] == [f"{marker} printed"]


# ------------------------------------------------------------------ live tail


def test_start_live_tail_streams_new_events(server: Server, lam: Any) -> None:
    """StartLiveTail (boto3 with ``inject_host_prefix=False``: botocore sends it to the
    ``stream-`` host otherwise) answers an event stream: ``sessionStart``, then
    ``sessionUpdate``s with the new events its filter pattern matches, as AWS does."""
    name = invoked(lam, ["before the tail"])
    group = f"/aws/lambda/{name}"
    logs = boto3.client(
        "logs",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30, inject_host_prefix=False),
    )
    try:
        until_reported(logs, group)
        arn = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["logGroupArn"]
        answer = logs.start_live_tail(logGroupIdentifiers=[arn], logEventFilterPattern="tailed")
        stream = answer["responseStream"]
        events = iter(stream)
        start = next(events)["sessionStart"]
        assert start["logGroupIdentifiers"] == [arn]
        assert start["logEventFilterPattern"] == "tailed"
        invoke_json(lam, name, {"lines": ["tailed one", "not this"]})
        seen: list[str] = []
        for event in events:
            update = event["sessionUpdate"]
            assert update["sessionMetadata"] == {"sampled": False}
            seen += [r["message"] for r in update["sessionResults"]]
            if seen:
                break
        assert seen == ["tailed one"]
        stream.close()
        with pytest.raises(ClientError) as excinfo:
            logs.start_live_tail(logGroupIdentifiers=[arn + "-never"])
        assert error_of(excinfo)[0] == "ResourceNotFoundException"
        with pytest.raises(ClientError) as excinfo:
            logs.start_live_tail(logGroupIdentifiers=[arn], logEventFilterPattern='"open')
        assert error_of(excinfo) == ("InvalidParameterException", "Invalid filter pattern")
    finally:
        logs.close()


@pytest.mark.slow
def test_an_open_live_tail_does_not_hold_up_a_stop(start_server: Any) -> None:
    """A server asked to stop ends its live tail sessions rather than wait for their clients."""
    srv = start_server()
    logs = logs_client(srv)
    tail = boto3.client(
        "logs",
        endpoint_url=srv.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30, inject_host_prefix=False),
    )
    try:
        logs.create_log_group(logGroupName="/tailed")
        stream = tail.start_live_tail(logGroupIdentifiers=["/tailed"])["responseStream"]
        assert "sessionStart" in next(iter(stream))
        assert srv.stop(timeout=15) == 0
        stream.close()
    finally:
        logs.close()
        tail.close()


@pytest.mark.slow
def test_aws_cli_manages_a_log_group(server: Server, tmp_path: Path) -> None:
    """``aws logs create-log-group``, ``put-retention-policy``, ``describe-log-groups`` (showing
    ``retentionInDays``), ``delete-retention-policy`` and ``delete-log-group`` work as against
    AWS; an unknown group is ``ResourceNotFoundException`` and a retention CloudWatch does
    not offer is ``InvalidParameterException``, as the CLI reports them."""
    group = f"/custom/{unique('cli')}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }

    def aws(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["aws", "logs", *args, "--endpoint-url", server.endpoint],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert (done.returncode == 0) is ok, (done.stdout, done.stderr)
        return done

    def described() -> list[dict[str, Any]]:
        out = aws("describe-log-groups", "--log-group-name-prefix", group).stdout
        return list(json.loads(out)["logGroups"])

    aws("create-log-group", "--log-group-name", group)
    assert (
        "ResourceAlreadyExistsException"
        in aws("create-log-group", "--log-group-name", group, ok=False).stderr
    )
    aws("put-retention-policy", "--log-group-name", group, "--retention-in-days", "7")
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in described()] == [(group, 7)]
    refused_days = aws(
        "put-retention-policy", "--log-group-name", group, "--retention-in-days", "8", ok=False
    )
    assert "InvalidParameterException" in refused_days.stderr
    aws("delete-retention-policy", "--log-group-name", group)
    assert "retentionInDays" not in described()[0]
    aws("delete-log-group", "--log-group-name", group)
    assert described() == []
    gone = aws("delete-log-group", "--log-group-name", group, ok=False)
    assert "ResourceNotFoundException" in gone.stderr


def test_the_calls_of_aws_logs_tail(server: Server, lam: Any, logs: Any) -> None:
    """``aws logs tail GROUP --since 1h [--filter-pattern P] --follow`` (the AWS CLI v2's; not
    on PyPI, so its calls are made here as its ``awscli/customizations/logs/tail.py`` makes
    them): FilterLogEvents pages with ``interleaved=True`` and ``startTime``, then, to
    follow, the same call again from the newest event's timestamp, dropping the event ids it
    has seen; new events come through, old ones once."""
    marker = unique("tail")
    name = invoked(lam, [f"{marker} one", f"{marker} two"])
    group = f"/aws/lambda/{name}"
    until_reported(logs, group)
    since = int((time.time() - 3600) * 1000)
    kwargs: dict[str, Any] = {
        "logGroupName": group,
        "interleaved": True,
        "startTime": since,
        "filterPattern": marker,
    }
    pages = logs.get_paginator("filter_log_events").paginate(**kwargs)
    first = [e for page in pages for e in page["events"]]
    assert [e["message"] for e in first] == [f"{marker} one", f"{marker} two"]

    seen = {e["eventId"] for e in first}
    kwargs["startTime"] = max(e["timestamp"] for e in first)  # --follow: from the newest
    invoke_json(lam, name, {"lines": [f"{marker} three", "unmatched"]})

    def followed() -> list[str]:
        answer = logs.filter_log_events(**kwargs)
        return [e["message"] for e in answer["events"] if e["eventId"] not in seen]

    assert wait_until(followed, timeout=20) == [f"{marker} three"]
