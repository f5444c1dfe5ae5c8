"""Unit tests of the shard poller's pure parts: lanes, the checkpoint a block allows, tumbling
window bounds and state, the Kinesis record, and checkpoints in a store (the in-memory one
behind the ``Store`` seam)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import time

from lambdad.control.arns import Scope
from lambdad.control.mapping_model import EventSourceMapping
from lambdad.events.checkpoints import Checkpoint, Checkpoints
from lambdad.events.kinesis import record_of
from lambdad.events.shards import Page, Position, PositionKind, StreamRecord
from lambdad.events.stream_mapping import OnFailureSink
from lambdad.events.stream_poller import BatchFailure, _behind, _Block, lane_of
from lambdad.events.tumbling import MAX_STATE, Window, iso, window_start
from lambdad.store.memory import MemoryStore

ARN = "arn:aws:kinesis:us-east-2:123456789012:stream/s"


def records(*sequences: str) -> list[StreamRecord]:
    return [StreamRecord(s, 0.0, "k", 1, {}) for s in sequences]


def test_a_partition_key_always_falls_in_the_same_lane() -> None:
    """A key's lane depends on the key alone (so its records stay in order, across
    restarts too), every lane is used, and one lane takes everything without parallelism."""
    lanes = {lane_of(f"key-{n}", 4) for n in range(200)}
    assert lanes == {0, 1, 2, 3}
    assert lane_of("key-7", 4) == lane_of("key-7", 4)
    assert {lane_of(f"key-{n}", 1) for n in range(20)} == {0}


def test_a_block_checkpoints_only_past_records_every_lane_has_finished() -> None:
    """The checkpoint moves past the longest run of done records from the block's start:
    a later lane finishing first moves nothing."""
    block = _Block(records("1", "2", "3", "4"))
    assert block.finish(records("3", "4")) is None
    assert block.finish(records("1")) == "1"
    assert block.finish(records("2")) == "4"
    assert block.pending() == 0


def test_a_growing_block_lets_go_of_what_the_checkpoint_passed() -> None:
    """Records read later join the block behind the ones held; the block holds only records
    from the first one not done, so a lane running ahead of a retrying one is bounded by what
    the shard reader lets in."""
    block = _Block(records("1", "2"))
    block.extend(records("3", "4"))
    assert block.finish(records("2", "3")) is None
    assert block.pending() == 4
    assert block.finish(records("1")) == "3"
    assert block.pending() == 1
    assert block.finish(records("1")) is None  # done before: nothing moves


def test_windows_are_aligned_on_their_length_and_written_like_aws() -> None:
    """A record's window starts at the multiple of the window length its arrival falls
    after; bounds are ISO 8601 in UTC with Z (milliseconds only for a fraction)."""
    assert window_start(1_000_123.4, 60) == 1_000_080
    window = Window.of(1_000_123.4, 60)
    assert (window.start, window.end) == (1_000_080, 1_000_140)
    stamp = datetime.datetime(2020, 7, 30, 17, 0, tzinfo=datetime.UTC).timestamp()
    assert iso(stamp) == "2020-07-30T17:00:00Z"
    assert iso(stamp + 0.25) == "2020-07-30T17:00:00.250Z"


def test_a_window_keeps_the_state_the_function_returned() -> None:
    """An object ``state`` in the function's answer becomes the window's state; any other
    answer leaves it; a state above 1 MB is too big (the window ends early)."""
    window = Window.of(0.0, 60)
    window.absorb(b'{"state": {"n": 1}, "batchItemFailures": []}')
    assert window.state == {"n": 1}
    for answer in (b"", b"null", b"not json", b'{"state": 3}', b"[1]"):
        window.absorb(answer)
        assert window.state == {"n": 1}
    assert not window.too_big()
    window.state = {"big": "x" * MAX_STATE}
    assert window.too_big()
    fields = window.fields("shardId-1", ARN, final=True, early=False)
    assert fields["window"] == {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:01:00Z"}
    assert fields["isFinalInvokeForWindow"] is True
    assert fields["shardId"] == "shardId-1"


def test_a_kinesis_record_is_lambdas_shape() -> None:
    """GetRecords' record becomes Lambda's: data in base64, arrival in epoch seconds with
    milliseconds, eventID ``shard:sequence``, the function's role, the stream's region."""
    arrival = datetime.datetime(2018, 12, 17, 22, 10, 50, 987654, tzinfo=datetime.UTC)
    raw = {
        "SequenceNumber": "4959",
        "ApproximateArrivalTimestamp": arrival,
        "Data": b"hello",
        "PartitionKey": "1",
    }
    record = record_of(raw, "shardId-000000000006", ARN, "arn:aws:iam::1:role/r")
    assert record.event == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": "4959",
            "data": base64.b64encode(b"hello").decode(),
            "approximateArrivalTimestamp": 1545084650.988,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": "shardId-000000000006:4959",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::1:role/r",
        "awsRegion": "us-east-2",
        "eventSourceARN": ARN,
    }
    assert (record.sequence_number, record.partition_key) == ("4959", "1")


def test_checkpoints_are_kept_per_mapping_and_shard_and_forgotten_with_the_mapping() -> None:
    """A mapping's checkpoints are keyed by account, region, mapping and shard (a LATEST
    mapping's pinned start kept with them); forgetting the mapping's removes them all and no
    other mapping's."""

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        scope = Scope("123456789012", "us-east-1")
        one, two = Checkpoints(store, scope, "m1"), Checkpoints(store, scope, "m2")
        await one.put("shard-a", Checkpoint("5"))
        await one.put("shard-b", Checkpoint("9", finished=True))
        await two.put("shard-a", Checkpoint("1"))
        assert await one.get("shard-a") == Checkpoint("5")
        assert await one.get("shard-b") == Checkpoint("9", finished=True)
        assert await one.get("shard-c") is None
        start = Position(PositionKind.AT_TIMESTAMP, timestamp=1700000000.25)
        await one.put("shard-d", Checkpoint(None, start=start))
        assert await one.get("shard-d") == Checkpoint(None, start=start)
        assert await one.forget() == 3
        assert await one.get("shard-a") is None
        assert await two.get("shard-a") == Checkpoint("1")

    asyncio.run(scenario())


def test_a_failure_goes_to_the_mappings_on_failure_destination_with_the_function_arn() -> None:
    """A batch given up on is sent to the mapping's DestinationConfig.OnFailure with what the
    on-failure record needs, the mapping's function ARN among it; no destination, no send."""
    sent: list[dict[str, object]] = []

    class Destination:
        async def send(self, **fields: object) -> None:
            sent.append(fields)

    mapping = EventSourceMapping(
        uuid="u",
        account_id="123456789012",
        region="us-east-2",
        source_arn=ARN,
        kind="kinesis",
        function_name="f",
        qualifier="live",
        state="Enabled",
        on_failure="arn:aws:sqs:us-east-2:123456789012:dlq",
    )
    failure = BatchFailure(
        stream_arn=ARN,
        batch_info_key="KinesisBatchInfo",
        shard_id="shardId-1",
        records=tuple(records("1", "2")),
        condition="RetryAttemptsExhausted",
        request_id=None,
        invoke_count=3,
        status_code=None,
        executed_version=None,
        function_error="ResourceNotFoundException",
    )
    asyncio.run(OnFailureSink(Destination(), mapping).send(failure))
    (fields,) = sent
    assert fields["destination_arn"] == "arn:aws:sqs:us-east-2:123456789012:dlq"
    assert fields["function_arn"] == "arn:aws:lambda:us-east-2:123456789012:function:f:live"
    assert fields["condition"] == "RetryAttemptsExhausted"
    assert len(str(fields["request_id"])) == 36  # one of its own: no invoke answered
    assert (fields["invoke_count"], fields["shard_id"]) == (3, "shardId-1")
    none = dataclasses.replace(mapping, on_failure=None)
    asyncio.run(OnFailureSink(Destination(), none).send(failure))
    assert len(sent) == 1


def test_lag_is_what_the_service_says_else_the_newest_records_age() -> None:
    """A shard's lag is Kinesis's MillisBehindLatest when the read carries it; for a service
    that does not say, the age of the newest record read, and 0 after an empty read."""
    assert _behind(Page([], "it", 1200)) == 1200
    assert _behind(Page([], "it", None)) == 0
    old = StreamRecord("1", time.time() - 5, "k", 1, {})
    assert 4000 <= _behind(Page([old], "it", None)) <= 60_000
