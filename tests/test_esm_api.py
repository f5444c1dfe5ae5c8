"""Event source mappings through the API: Create/Get/Update/Delete/ListEventSourceMapping(s),
their states, defaults, validation and tags, against real SQS queues, Kinesis streams and
DynamoDB streams of a moto server (lambdad's account id is moto's)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.aws import ACCOUNT
from tests.conftest import (
    MEET,
    Moto,
    Recorder,
    Rendezvous,
    Server,
    create_function,
    launch_server,
    refused,
    shutdown,
    unique,
    wait_until,
)

NO_POLLER = "PROBLEM: no poller is available for {} event sources yet"


@pytest.fixture(scope="module")
def esm_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad of moto's account whose sources are moto's."""
    srv = launch_server(tmp_path_factory.mktemp("lambdad-esm"), settings_of(moto))
    yield srv
    shutdown(srv)


def settings_of(moto: Moto) -> dict[str, str]:
    return {"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, "LAMBDAD_ACCOUNT_ID": ACCOUNT}


@pytest.fixture
def client(esm_server: Server) -> Iterator[Any]:
    lam = esm_server.client()
    yield lam
    lam.close()


@pytest.fixture
def unchecked_client(esm_server: Server) -> Iterator[Any]:
    lam = esm_server.client(parameter_validation=False)
    yield lam
    lam.close()


def queue_arn(moto: Moto, *, fifo: bool = False) -> str:
    sqs = moto.client("sqs")
    name = unique("q") + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(found["Attributes"]["QueueArn"])


def stream_arn(moto: Moto) -> str:
    kinesis = moto.client("kinesis")
    name = unique("s")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    return str(
        kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    )


def table_stream_arn(moto: Moto) -> str:
    table = moto.client("dynamodb").create_table(
        TableName=unique("t"),
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str(table["TableDescription"]["LatestStreamArn"])


def state_of(client: Any, uuid: str) -> str:
    return str(client.get_event_source_mapping(UUID=uuid)["State"])


def settled(client: Any, uuid: str, state: str) -> dict[str, Any]:
    wait_until(lambda: state_of(client, uuid) == state)
    return dict(client.get_event_source_mapping(UUID=uuid))


def test_an_sqs_mapping_is_created_then_enabled_with_sqs_defaults(client: Any, moto: Moto) -> None:
    """AWS answers CreateEventSourceMapping 202 ``Creating`` with the queue's defaults (batch
    10, no window), ``USER_INITIATED``, ``No records processed`` and the mapping's ARN; a
    moment later Get shows ``Enabled``."""
    fn = create_function(client)
    source = queue_arn(moto)
    made = client.create_event_source_mapping(
        EventSourceArn=source, FunctionName=fn["FunctionName"]
    )
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 202
    uuid = made["UUID"]
    assert len(uuid) == 36
    assert made["State"] == "Creating"
    assert (made["BatchSize"], made["MaximumBatchingWindowInSeconds"]) == (10, 0)
    assert made["StateTransitionReason"] == "USER_INITIATED"
    assert made["LastProcessingResult"] == "No records processed"
    assert made["EventSourceArn"] == source
    assert made["FunctionArn"] == fn["FunctionArn"]
    assert made["EventSourceMappingArn"] == (
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:{uuid}"
    )
    assert "StartingPosition" not in made
    assert made["FunctionResponseTypes"] == []
    assert "MaximumRetryAttempts" not in made
    got = settled(client, uuid, "Enabled")
    assert got["LastModified"] == made["LastModified"]
    assert got["LastProcessingResult"] == "No records processed"  # an empty queue


def test_a_kinesis_mapping_has_the_stream_defaults(client: Any, moto: Moto) -> None:
    """AWS gives a Kinesis mapping batch 100, retries -1 (forever), record age -1,
    no bisecting, parallelization 1, no tumbling window, an empty OnFailure destination and
    the streams' StateTransitionReason ``User action``."""
    fn = create_function(client)
    source = stream_arn(moto)
    made = client.create_event_source_mapping(
        EventSourceArn=source, FunctionName=fn["FunctionName"], StartingPosition="LATEST"
    )
    assert made["BatchSize"] == 100
    assert made["StartingPosition"] == "LATEST"
    assert made["MaximumRetryAttempts"] == -1
    assert made["MaximumRecordAgeInSeconds"] == -1
    assert made["BisectBatchOnFunctionError"] is False
    assert made["ParallelizationFactor"] == 1
    assert made["DestinationConfig"] == {"OnFailure": {}}
    assert made["TumblingWindowInSeconds"] == 0
    assert made["FunctionResponseTypes"] == []
    assert made["StateTransitionReason"] == "User action"
    settled(client, made["UUID"], "Enabled")


def test_stream_settings_are_stored_as_given(client: Any, moto: Moto) -> None:
    """Every stream setting given at create comes back from Get as given."""
    fn = create_function(client)
    failures = queue_arn(moto)
    made = client.create_event_source_mapping(
        EventSourceArn=stream_arn(moto),
        FunctionName=fn["FunctionName"],
        StartingPosition="AT_TIMESTAMP",
        StartingPositionTimestamp=1_700_000_000,
        BatchSize=500,
        MaximumBatchingWindowInSeconds=5,
        ParallelizationFactor=4,
        MaximumRetryAttempts=3,
        MaximumRecordAgeInSeconds=3600,
        BisectBatchOnFunctionError=True,
        TumblingWindowInSeconds=60,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        DestinationConfig={"OnFailure": {"Destination": failures}},
        FilterCriteria={"Filters": [{"Pattern": '{"data": {"a": [1]}}'}]},
    )
    got = client.get_event_source_mapping(UUID=made["UUID"])
    assert got["StartingPositionTimestamp"].timestamp() == 1_700_000_000
    assert (got["BatchSize"], got["MaximumBatchingWindowInSeconds"]) == (500, 5)
    assert (got["ParallelizationFactor"], got["MaximumRetryAttempts"]) == (4, 3)
    assert (got["MaximumRecordAgeInSeconds"], got["TumblingWindowInSeconds"]) == (3600, 60)
    assert got["BisectBatchOnFunctionError"] is True
    assert got["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert got["DestinationConfig"] == {"OnFailure": {"Destination": failures}}
    assert got["FilterCriteria"] == {"Filters": [{"Pattern": '{"data": {"a": [1]}}'}]}


def test_an_sqs_mapping_takes_a_large_batch_with_a_window_and_a_concurrency(
    client: Any, moto: Moto
) -> None:
    """AWS takes SQS batches up to 10,000 with a batching window, and ScalingConfig."""
    fn = create_function(client)
    made = client.create_event_source_mapping(
        EventSourceArn=queue_arn(moto),
        FunctionName=fn["FunctionName"],
        BatchSize=10_000,
        MaximumBatchingWindowInSeconds=1,
        ScalingConfig={"MaximumConcurrency": 2},
    )
    assert made["BatchSize"] == 10_000
    assert made["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_a_dynamodb_stream_mapping_needs_a_starting_position_and_refuses_at_timestamp(
    client: Any, moto: Moto
) -> None:
    """AWS refuses a stream mapping without StartingPosition ("Value null at
    'startingPosition'"), and AT_TIMESTAMP on DynamoDB ("Unsupported starting position for arn
    type: <arn>"), both InvalidParameterValueException."""
    fn = create_function(client)["FunctionName"]
    source = table_stream_arn(moto)
    message = (
        "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
        "constraint: Member must not be null."
    )
    with refused("InvalidParameterValueException", 400, message):
        client.create_event_source_mapping(EventSourceArn=source, FunctionName=fn)
    with refused(
        "InvalidParameterValueException",
        400,
        f"Unsupported starting position for arn type: {source}",
    ):
        client.create_event_source_mapping(
            EventSourceArn=source,
            FunctionName=fn,
            StartingPosition="AT_TIMESTAMP",
            StartingPositionTimestamp=1_700_000_000,
        )
    made = client.create_event_source_mapping(
        EventSourceArn=source, FunctionName=fn, StartingPosition="TRIM_HORIZON"
    )
    assert (made["BatchSize"], made["StartingPosition"]) == (100, "TRIM_HORIZON")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("ParallelizationFactor", 2),
        ("MaximumRetryAttempts", 1),
        ("MaximumRecordAgeInSeconds", 60),
        ("BisectBatchOnFunctionError", True),
        ("TumblingWindowInSeconds", 10),
        ("StartingPosition", "LATEST"),
    ],
)
def test_a_stream_only_parameter_is_refused_on_an_sqs_mapping(
    client: Any, moto: Moto, member: str, value: Any
) -> None:
    """AWS refuses stream settings on a queue: "Unsupported <member> parameter for given event
    source mapping type." (InvalidParameterValueException)."""
    fn = create_function(client)["FunctionName"]
    with refused(
        "InvalidParameterValueException",
        400,
        f"Unsupported {member} parameter for given event source mapping type.",
    ):
        client.create_event_source_mapping(
            EventSourceArn=queue_arn(moto), FunctionName=fn, **{member: value}
        )


def test_wrong_combinations_get_aws_errors(client: Any, moto: Moto) -> None:
    """AWS's InvalidParameterValueException for an SQS batch above 10 without a window, an
    OnSuccess destination, a source of another service, a function that does not exist, too
    many filters and a filter that is not a JSON object."""
    fn = create_function(client)["FunctionName"]
    queue = queue_arn(moto)
    bad = "InvalidParameterValueException"
    with refused(
        bad,
        400,
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
        "greater than 10",
    ):
        client.create_event_source_mapping(EventSourceArn=queue, FunctionName=fn, BatchSize=11)
    with refused(
        bad, 400, "Unsupported DestinationConfig parameter for given event source mapping type."
    ):
        client.create_event_source_mapping(
            EventSourceArn=stream_arn(moto),
            FunctionName=fn,
            StartingPosition="LATEST",
            DestinationConfig={"OnSuccess": {"Destination": queue}},
        )
    with refused(bad, 400, "Unrecognized event source."):
        client.create_event_source_mapping(
            EventSourceArn=f"arn:aws:sns:us-east-1:{ACCOUNT}:topic", FunctionName=fn
        )
    with refused(bad, 400, "Function does not exist"):
        client.create_event_source_mapping(EventSourceArn=queue, FunctionName=unique())
    six = [{"Pattern": json.dumps({"body": {"n": [i]}})} for i in range(6)]
    with refused(bad, 400):
        client.create_event_source_mapping(
            EventSourceArn=queue, FunctionName=fn, FilterCriteria={"Filters": six}
        )
    with refused(bad, 400, "Invalid filter pattern definition."):
        client.create_event_source_mapping(
            EventSourceArn=queue, FunctionName=fn, FilterCriteria={"Filters": [{"Pattern": "[1]"}]}
        )
    with refused(bad, 400):
        client.create_event_source_mapping(
            EventSourceArn=queue_arn(moto, fifo=True),
            FunctionName=fn,
            BatchSize=20,
            MaximumBatchingWindowInSeconds=1,
        )
    with refused(bad, 400):
        client.create_event_source_mapping(
            EventSourceArn=stream_arn(moto),
            FunctionName=fn,
            StartingPosition="LATEST",
            MaximumRecordAgeInSeconds=30,
        )


def test_model_ranges_are_refused_with_a_validation_exception(
    unchecked_client: Any, moto: Moto
) -> None:
    """The model's ranges (ScalingConfig 2-1000, retries -1..10000, parallelization 1-10,
    tumbling window 0-900) are AWS's ValidationException clauses."""
    client = unchecked_client
    fn = create_function(client)["FunctionName"]
    with refused("ValidationException", 400) as error:
        client.create_event_source_mapping(
            EventSourceArn=queue_arn(moto),
            FunctionName=fn,
            ScalingConfig={"MaximumConcurrency": 1},
        )
    assert "scalingConfig.maximumConcurrency" in error["Message"]
    with refused("ValidationException", 400) as error:
        client.create_event_source_mapping(
            EventSourceArn=stream_arn(moto),
            FunctionName=fn,
            StartingPosition="LATEST",
            ParallelizationFactor=11,
            MaximumRetryAttempts=10_001,
            TumblingWindowInSeconds=901,
        )
    assert error["Message"].startswith("3 validation errors detected")


def test_a_second_mapping_of_the_same_queue_and_function_is_a_conflict(
    client: Any, moto: Moto
) -> None:
    """AWS refuses a duplicate SQS mapping with ResourceConflictException naming the existing
    mapping's UUID."""
    fn = create_function(client)["FunctionName"]
    queue = queue_arn(moto)
    first = client.create_event_source_mapping(EventSourceArn=queue, FunctionName=fn)
    message = (
        f'An event source mapping with SQS arn (" {queue} ") and function (" {fn} ") already '
        f"exists. Please update or delete the existing mapping with UUID {first['UUID']}"
    )
    with refused("ResourceConflictException", 409, message):
        client.create_event_source_mapping(EventSourceArn=queue, FunctionName=fn)


def test_enabled_false_creates_a_disabled_mapping_and_update_toggles_it(
    client: Any, moto: Moto
) -> None:
    """AWS answers ``Creating`` then settles ``Disabled`` for ``Enabled: false``; Update with
    ``Enabled`` answers ``Enabling`` / ``Disabling`` and settles ``Enabled`` / ``Disabled``;
    any other update answers ``Updating``."""
    fn = create_function(client)["FunctionName"]
    made = client.create_event_source_mapping(
        EventSourceArn=queue_arn(moto), FunctionName=fn, Enabled=False
    )
    uuid = made["UUID"]
    assert made["State"] == "Creating"
    settled(client, uuid, "Disabled")
    assert client.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"
    settled(client, uuid, "Enabled")
    updated = client.update_event_source_mapping(UUID=uuid, BatchSize=5)
    assert (updated["State"], updated["BatchSize"]) == ("Updating", 5)
    settled(client, uuid, "Enabled")
    assert client.update_event_source_mapping(UUID=uuid, Enabled=False)["State"] == "Disabling"
    got = settled(client, uuid, "Disabled")
    assert got["BatchSize"] == 5
    assert client.update_event_source_mapping(UUID=uuid, BatchSize=7)["State"] == "Updating"
    settled(client, uuid, "Disabled")


def test_update_keeps_the_source_rules(client: Any, moto: Moto) -> None:
    """An update is checked against the source's rules as a create is: a batch above 10
    needs a window on a queue, and stream settings stay refused."""
    fn = create_function(client)["FunctionName"]
    uuid = client.create_event_source_mapping(EventSourceArn=queue_arn(moto), FunctionName=fn)[
        "UUID"
    ]
    settled(client, uuid, "Enabled")
    with refused("InvalidParameterValueException", 400):
        client.update_event_source_mapping(UUID=uuid, BatchSize=100)
    with refused("InvalidParameterValueException", 400):
        client.update_event_source_mapping(UUID=uuid, ParallelizationFactor=2)
    updated = client.update_event_source_mapping(
        UUID=uuid, BatchSize=100, MaximumBatchingWindowInSeconds=2
    )
    assert (updated["BatchSize"], updated["MaximumBatchingWindowInSeconds"]) == (100, 2)


def test_delete_answers_deleting_then_the_mapping_is_gone(client: Any, moto: Moto) -> None:
    """AWS answers DeleteEventSourceMapping 202 ``Deleting``; then Get is
    ResourceNotFoundException "The resource you requested does not exist."."""
    fn = create_function(client)["FunctionName"]
    uuid = client.create_event_source_mapping(EventSourceArn=queue_arn(moto), FunctionName=fn)[
        "UUID"
    ]
    deleted = client.delete_event_source_mapping(UUID=uuid)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert deleted["State"] == "Deleting"

    def gone() -> bool:
        try:
            client.get_event_source_mapping(UUID=uuid)
        except client.exceptions.ResourceNotFoundException as exc:
            return bool(
                exc.response["Error"]["Message"] == "The resource you requested does not exist."
            )
        return False

    wait_until(gone)
    missing = "00000000-0000-0000-0000-000000000000"
    for call in (client.get_event_source_mapping, client.delete_event_source_mapping):
        with refused(
            "ResourceNotFoundException", 404, "The resource you requested does not exist."
        ):
            call(UUID=missing)
    with refused("ResourceNotFoundException", 404):
        client.update_event_source_mapping(UUID=missing, Enabled=False)


def test_list_filters_by_function_and_source_and_pages(client: Any, moto: Moto) -> None:
    """ListEventSourceMappings filters by FunctionName and EventSourceArn and pages with
    MaxItems and NextMarker."""
    fn = create_function(client)["FunctionName"]
    other = create_function(client)["FunctionName"]
    queues = [queue_arn(moto) for _ in range(3)]
    mine = {
        client.create_event_source_mapping(EventSourceArn=q, FunctionName=fn)["UUID"]
        for q in queues
    }
    theirs = client.create_event_source_mapping(EventSourceArn=queues[0], FunctionName=other)
    listed = client.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    assert {m["UUID"] for m in listed} == mine
    by_source = client.list_event_source_mappings(EventSourceArn=queues[0])["EventSourceMappings"]
    assert len(by_source) == 2
    assert theirs["UUID"] in {m["UUID"] for m in by_source}
    both = client.list_event_source_mappings(EventSourceArn=queues[0], FunctionName=other)
    assert [m["UUID"] for m in both["EventSourceMappings"]] == [theirs["UUID"]]
    first = client.list_event_source_mappings(FunctionName=fn, MaxItems=2)
    assert len(first["EventSourceMappings"]) == 2
    assert first["NextMarker"]
    rest = client.list_event_source_mappings(
        FunctionName=fn, MaxItems=2, Marker=first["NextMarker"]
    )
    assert "NextMarker" not in rest
    seen = {m["UUID"] for m in first["EventSourceMappings"] + rest["EventSourceMappings"]}
    assert seen == mine
    pages = client.get_paginator("list_event_source_mappings").paginate(
        FunctionName=fn, PaginationConfig={"PageSize": 1}
    )
    assert {m["UUID"] for page in pages for m in page["EventSourceMappings"]} == mine


def test_tags_of_a_mapping(client: Any, moto: Moto) -> None:
    """Tags given at create, and TagResource / ListTags / UntagResource on the mapping's ARN,
    as AWS keeps them; an unknown mapping's ARN is "Event source mapping not found"."""
    fn = create_function(client)["FunctionName"]
    made = client.create_event_source_mapping(
        EventSourceArn=queue_arn(moto), FunctionName=fn, Tags={"team": "a"}
    )
    arn = made["EventSourceMappingArn"]
    assert client.list_tags(Resource=arn)["Tags"] == {"team": "a"}
    client.tag_resource(Resource=arn, Tags={"env": "dev"})
    assert client.list_tags(Resource=arn)["Tags"] == {"team": "a", "env": "dev"}
    client.untag_resource(Resource=arn, TagKeys=["team"])
    assert client.list_tags(Resource=arn)["Tags"] == {"env": "dev"}
    nobody = "00000000-0000-0000-0000-000000000000"
    missing = f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:{nobody}"
    with refused("ResourceNotFoundException", 404, f"Event source mapping not found: {missing}"):
        client.list_tags(Resource=missing)


def test_a_mapping_outlives_its_function(client: Any, moto: Moto) -> None:
    """Deleting a function leaves its mappings, as on AWS: Get still answers."""
    fn = create_function(client)["FunctionName"]
    uuid = client.create_event_source_mapping(EventSourceArn=queue_arn(moto), FunctionName=fn)[
        "UUID"
    ]
    settled(client, uuid, "Enabled")
    client.delete_function(FunctionName=fn)
    assert client.get_event_source_mapping(UUID=uuid)["EventSourceArn"]
    listed = client.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]


def test_a_qualified_function_is_mapped_at_its_qualifier(client: Any, moto: Moto) -> None:
    """A mapping to an alias keeps the alias in its FunctionArn."""
    fn = create_function(client, Publish=True)
    client.create_alias(FunctionName=fn["FunctionName"], Name="live", FunctionVersion="1")
    made = client.create_event_source_mapping(
        EventSourceArn=queue_arn(moto), FunctionName=f"{fn['FunctionName']}:live"
    )
    assert made["FunctionArn"] == fn["FunctionArn"] + ":live"


@pytest.mark.slow
def test_mappings_survive_a_restart(start_server: Any, moto: Moto) -> None:
    """Mappings, their settings and their states are durable across a restart."""
    settings = settings_of(moto)
    first = start_server(settings)
    client = first.client()
    fn = create_function(client)["FunctionName"]
    on = client.create_event_source_mapping(
        EventSourceArn=queue_arn(moto), FunctionName=fn, BatchSize=3
    )["UUID"]
    off = client.create_event_source_mapping(
        EventSourceArn=queue_arn(moto), FunctionName=fn, Enabled=False
    )["UUID"]
    settled(client, on, "Enabled")
    settled(client, off, "Disabled")
    first.stop()
    second = start_server(settings, data_dir=first.data_dir)
    client = second.client()
    assert client.get_event_source_mapping(UUID=on)["BatchSize"] == 3
    assert state_of(client, on) == "Enabled"
    assert state_of(client, off) == "Disabled"
    assert len(client.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]) == 2


@pytest.mark.slow
def test_a_mapping_in_transition_cannot_be_updated(start_server: Any, moto: Moto) -> None:
    """While a mapping is ``Creating`` (for the settle delay) Get shows it so, and AWS refuses
    an update with ResourceInUseException; once ``Enabled`` it can be updated."""
    srv = start_server({**settings_of(moto), "LAMBDAD_FUNCTION_SETTLE_DELAY": "2"})
    client = srv.client()
    fn = create_function(client)["FunctionName"]
    wait_until(lambda: client.get_function(FunctionName=fn)["Configuration"]["State"] == "Active")
    uuid = client.create_event_source_mapping(EventSourceArn=queue_arn(moto), FunctionName=fn)[
        "UUID"
    ]
    assert state_of(client, uuid) == "Creating"
    with refused("ResourceInUseException", 400):
        client.update_event_source_mapping(UUID=uuid, BatchSize=5)
    settled(client, uuid, "Enabled")
    assert client.update_event_source_mapping(UUID=uuid, BatchSize=5)["State"] == "Updating"


def esm_status(server: Server, function: str | None = None) -> dict[str, dict[str, Any]]:
    """``/_lambdad/esm`` (the default region's mappings) by UUID."""
    query = f"?function={function}" if function else ""
    found = server.get_json(f"/_lambdad/esm{query}")["EventSourceMappings"]
    return {m["UUID"]: m for m in found}


def polling(server: Server, uuid: str) -> bool:
    return bool(esm_status(server).get(uuid, {}).get("Polling"))


def test_lambdad_esm_lists_mappings_and_doctor_shows_the_pollers(
    esm_server: Server, client: Any, moto: Moto
) -> None:
    """``lambdad esm`` prints each mapping's UUID, state, source, function, lag and last
    result; ``lambdad doctor`` says which source kinds have pollers and where sources are
    reached, and shows each mapping of the caller's region."""
    fn = create_function(client)["FunctionName"]
    source = queue_arn(moto)
    uuid = client.create_event_source_mapping(EventSourceArn=source, FunctionName=fn)["UUID"]
    settled(client, uuid, "Enabled")
    wait_until(lambda: polling(esm_server, uuid))
    cli = [sys.executable, "-m", "lambdad.cli.main"]
    done = subprocess.run(
        [*cli, "esm", "--endpoint", esm_server.endpoint, "--function", fn],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    header, line = done.stdout.splitlines()
    assert header.split() == ["UUID", "STATE", "SOURCE", "FUNCTION", "LAG", "LAST", "RESULT"]
    assert line.split()[:4] == [uuid, "Enabled", source, fn]
    assert line.split()[4].startswith("waiting=")
    report = esm_server.get_json("/_lambdad/doctor")["event sources"]
    assert report["endpoint sqs"] == esm_server.reaching(moto.endpoint)
    assert {"sqs", "kinesis", "dynamodb", "mq"} <= set(report["pollers"].split(", "))
    doctor = subprocess.run(
        [*cli, "doctor", "--endpoint", esm_server.endpoint],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "event sources:" in doctor.stdout.splitlines()
    assert "event source mappings:" in doctor.stdout.splitlines()
    (mine,) = [line for line in doctor.stdout.splitlines() if line.strip().startswith(uuid)]
    assert "Enabled, polling, lag waiting=" in mine
    assert source in mine


def test_a_source_that_does_not_exist_is_refused(client: Any, moto: Moto) -> None:
    """AWS refuses a mapping of a queue that does not exist ("Error occurred while
    ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. ...") and of a
    Kinesis or DynamoDB stream that does not exist ("Stream not found: <arn>"), both
    InvalidParameterValueException."""
    fn = create_function(client)["FunctionName"]
    queue = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{unique('nowhere')}"
    message = (
        "Error occurred while ReceiveMessage. SQS Error Code: "
        "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does "
        "not exist."
    )
    with refused("InvalidParameterValueException", 400, message):
        client.create_event_source_mapping(EventSourceArn=queue, FunctionName=fn)
    streams = [
        f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{unique('nowhere')}",
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{unique('t')}/stream/2025-01-01T00:00:00.000",
    ]
    for stream in streams:
        with refused("InvalidParameterValueException", 400, f"Stream not found: {stream}"):
            client.create_event_source_mapping(
                EventSourceArn=stream, FunctionName=fn, StartingPosition="LATEST"
            )


def test_update_clears_filters_and_moves_to_another_function(client: Any, moto: Moto) -> None:
    """An update with empty FilterCriteria removes the filters; one naming another function
    moves the mapping, unless that function already has a mapping of the same source
    (ResourceConflictException)."""
    first = create_function(client)["FunctionName"]
    second = create_function(client)
    third = create_function(client)["FunctionName"]
    queue = queue_arn(moto)
    uuid = client.create_event_source_mapping(
        EventSourceArn=queue,
        FunctionName=first,
        FilterCriteria={"Filters": [{"Pattern": '{"body": {"a": [1]}}'}]},
    )["UUID"]
    client.create_event_source_mapping(EventSourceArn=queue, FunctionName=third)
    settled(client, uuid, "Enabled")
    cleared = client.update_event_source_mapping(UUID=uuid, FilterCriteria={})
    assert "FilterCriteria" not in cleared
    settled(client, uuid, "Enabled")
    moved = client.update_event_source_mapping(UUID=uuid, FunctionName=second["FunctionName"])
    assert moved["FunctionArn"] == second["FunctionArn"]
    settled(client, uuid, "Enabled")
    with refused("ResourceConflictException", 409):
        client.update_event_source_mapping(UUID=uuid, FunctionName=third)


@pytest.mark.slow
def test_each_source_service_is_reached_at_its_own_endpoint(start_server: Any, moto: Moto) -> None:
    """``LAMBDAD_AWS_ENDPOINT_URL_SQS`` alone makes queues reachable (a missing queue is
    refused) while streams, with no endpoint, are not asked and are accepted."""
    srv = start_server(
        {"LAMBDAD_AWS_ENDPOINT_URL_SQS": moto.endpoint, "LAMBDAD_ACCOUNT_ID": ACCOUNT}
    )
    client = srv.client()
    fn = create_function(client)["FunctionName"]
    with refused("InvalidParameterValueException", 400):
        client.create_event_source_mapping(
            EventSourceArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:{unique('nowhere')}", FunctionName=fn
        )
    made = client.create_event_source_mapping(
        EventSourceArn=f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{unique('unasked')}",
        FunctionName=fn,
        StartingPosition="TRIM_HORIZON",
    )
    assert made["State"] == "Creating"
    report = srv.get_json("/_lambdad/doctor")["event sources"]
    assert (report["endpoint sqs"], report["endpoint kinesis"]) == (
        srv.reaching(moto.endpoint),
        "none",
    )


def test_a_mapping_of_a_deleted_function_says_so(client: Any, moto: Moto) -> None:
    """Once its function is deleted a mapping stays (as on AWS), consumes nothing and says in
    LastProcessingResult that the function is not found; re-creating the function brings it
    back to its poller (here a Kinesis mapping: a record put then is processed, OK)."""
    fn = create_function(client)
    name = fn["FunctionName"]
    stream = stream_arn(moto)
    uuid = client.create_event_source_mapping(
        EventSourceArn=stream, FunctionName=name, StartingPosition="TRIM_HORIZON"
    )["UUID"]
    settled(client, uuid, "Enabled")
    kinesis = moto.client("kinesis")

    def result() -> str:
        return str(client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"])

    kinesis.put_record(StreamARN=stream, Data=b"before", PartitionKey="k")
    wait_until(lambda: result() == "OK", timeout=30)
    client.delete_function(FunctionName=name)
    wait_until(lambda: result() == f"PROBLEM: Function not found: {fn['FunctionArn']}")
    assert state_of(client, uuid) == "Enabled"
    create_function(client, name=name)
    kinesis.put_record(StreamARN=stream, Data=b"after", PartitionKey="k")
    wait_until(lambda: result() == "OK", timeout=30)


def test_filter_patterns_are_checked_by_the_filter_language(client: Any, moto: Moto) -> None:
    """AWS: a FilterCriteria pattern the filter language refuses (a leaf that is not an array,
    an unknown operator, a plain pattern on a stream's data) is InvalidParameterValueException
    "Invalid filter pattern definition." at create and at update; a valid one is kept."""
    fn = create_function(client)["FunctionName"]
    queue = queue_arn(moto)
    for bad in ('{"body": {"a": 1}}', '{"body": {"a": [{"shiny": 1}]}}'):
        with refused("InvalidParameterValueException", 400) as error:
            client.create_event_source_mapping(
                EventSourceArn=queue,
                FunctionName=fn,
                FilterCriteria={"Filters": [{"Pattern": bad}]},
            )
        assert error["Message"] == "Invalid filter pattern definition."
    good = '{"body": {"a": [{"numeric": [">", 1]}]}}'
    created = client.create_event_source_mapping(
        EventSourceArn=queue, FunctionName=fn, FilterCriteria={"Filters": [{"Pattern": good}]}
    )
    assert created["FilterCriteria"] == {"Filters": [{"Pattern": good}]}
    settled(client, created["UUID"], "Enabled")
    with refused("InvalidParameterValueException", 400):
        client.update_event_source_mapping(
            UUID=created["UUID"], FilterCriteria={"Filters": [{"Pattern": '{"x": "y"}'}]}
        )


#: Reports each SQS record's body to the test's recorder, then fails on a body "fail".
SQS_REPORTER = """
import os, socket

def handler(event, context):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs"
        with socket.create_connection((host, int(os.environ["RECORDER_PORT"]))) as s:
            s.sendall(f"{record['body']} {len(event['Records'])}\\n".encode())
            s.recv(1)
        if record["body"] == "fail":
            raise RuntimeError("failed on purpose")
"""


def test_an_sqs_mapping_delivers_the_queue_to_its_function(
    client: Any, moto: Moto, recorder: Recorder
) -> None:
    """AWS: an enabled SQS mapping long-polls the queue, invokes the function with batches of
    Lambda's SQS records, deletes what succeeded, and reports OK as LastProcessingResult; its
    FilterCriteria drop what does not match (deleted unseen); once Disabled it takes nothing."""
    fn = create_function(client, SQS_REPORTER, env={"RECORDER_PORT": str(recorder.port)})
    arn = queue_arn(moto)
    sqs = moto.client("sqs")
    url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
    uuid = client.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName=fn["FunctionName"],
        BatchSize=5,
        FilterCriteria={"Filters": [{"Pattern": '{"body": [{"prefix": "m"}]}'}]},
    )["UUID"]
    settled(client, uuid, "Enabled")
    for i in range(7):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=url, MessageBody="skipped")
    wait_until(lambda: len({body for body, _ in recorder.runs}) >= 7, timeout=60)
    assert {body for body, _ in recorder.runs} == {f"m{i}" for i in range(7)}
    assert all(size <= 5 for _, size in recorder.runs)

    def drained() -> bool:
        counts = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return all(int(v) == 0 for v in counts.values())

    wait_until(drained, timeout=60)
    wait_until(
        lambda: client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK",
        timeout=30,
    )
    client.update_event_source_mapping(UUID=uuid, Enabled=False)
    settled(client, uuid, "Disabled")
    seen = len(recorder.runs)
    sqs.send_message(QueueUrl=url, MessageBody="m-late")
    # A long poll already waiting on the queue when the poller stopped may still be handed the
    # message (the endpoint does not know its client went away): the poller gives it back at
    # once, so it ends visible, and it is never delivered to the function.
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

    def counts() -> list[int]:
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return [int(found[n]) for n in names]

    wait_until(lambda: counts() == [1, 0], timeout=60)
    assert client.get_event_source_mapping(UUID=uuid)["State"] == "Disabled"
    assert len(recorder.runs) == seen


#: Holds every batch at the test's rendezvous (released when it closes), so that messages
#: stay in flight while the test reads the queue's backlog.
HOLDING = (
    MEET
    + """

def handler(event, context):
    meet()
"""
)


def test_lambdad_esm_shows_an_sqs_mappings_backlog(
    esm_server: Server,
    client: Any,
    moto: Moto,
    rendezvous: Callable[[int], Rendezvous],
) -> None:
    """An SQS mapping's lag is its queue's backlog, asked of the endpoint: messages waiting
    (ApproximateNumberOfMessages) and in flight (ApproximateNumberOfMessagesNotVisible), in
    ``/_lambdad/esm`` and ``lambdad esm``; a Disabled mapping has no poller and no lag."""
    gate = rendezvous(1000)
    fn = create_function(client, HOLDING, env=gate.env, Timeout=60)["FunctionName"]
    sqs = moto.client("sqs")
    name = unique("backlog")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    uuid = client.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=fn, BatchSize=1, ScalingConfig={"MaximumConcurrency": 2}
    )["UUID"]
    held = {"waiting": 3, "in flight": 2}
    wait_until(lambda: esm_status(esm_server, fn)[uuid]["Backlog"] == held, timeout=60)
    status = esm_status(esm_server, fn)[uuid]
    assert status["Lag"] == "waiting=3,inflight=2"
    assert status["Polling"] is True
    assert status["MillisBehind"] is None
    cli = [sys.executable, "-m", "lambdad.cli.main", "esm", "--endpoint", esm_server.endpoint]
    done = subprocess.run(
        [*cli, "--function", fn], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[4] == "waiting=3,inflight=2"
    client.update_event_source_mapping(UUID=uuid, Enabled=False)
    settled(client, uuid, "Disabled")
    gate.close()
    off = esm_status(esm_server, fn)[uuid]
    assert off["Polling"] is False
    assert off["Lag"] == "-"
    assert off["State"] == "Disabled"
