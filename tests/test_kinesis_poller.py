"""Kinesis event source mappings polled by a real lambdad from the suite's moto server.

Each test creates a Kinesis stream on moto, a function on lambdad (whose account id is moto's)
and a mapping through the API, puts records with boto3 and reads what the function was given
from a ``Collector``: a service the function reports every batch to and asks how to answer
(return a value, or raise), so a test can fail a batch and clear the fault later. The failure
sink test builds a lambdad in this process to give the poller a recording ``FailureSink``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import itertools
import json
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lambdad.app import Lambdad
from lambdad.config import load_settings
from lambdad.control.arns import Scope
from lambdad.events.checkpoints import Checkpoints
from lambdad.events.kinesis import KinesisReader, record_of
from lambdad.events.shards import Page, Position, PositionKind, Shard, StreamRecord
from lambdad.events.stream_mapping import stream_factory
from lambdad.events.stream_poller import BatchFailure, StreamPoller, StreamSource, lane_of
from tests.aws import ACCOUNT
from tests.conftest import (
    ROLE,
    Moto,
    Server,
    create_function,
    launch_server,
    service_listener,
    shutdown,
    unique,
    wait_until,
)

pytestmark = pytest.mark.slow

#: Reports its batch to the collector (one JSON line) and does what the collector answers:
#: ``{"raise": message}`` fails the invoke, ``{"return": value}`` returns ``value``.
HANDLER = """
import json, os, socket

def handler(event, context):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    address = (host, int(os.environ["COLLECTOR_PORT"]))
    with socket.create_connection(address, timeout=60) as connection:
        stream = connection.makefile("rwb")
        line = {"request_id": context.aws_request_id, "event": event}
        stream.write(json.dumps(line).encode() + b"\\n")
        stream.flush()
        answer = json.loads(stream.readline())
    if "raise" in answer:
        raise RuntimeError(answer["raise"])
    return answer.get("return")
"""

Answer = Callable[[list[dict[str, Any]]], dict[str, Any]]


class Collector:
    """Keeps every batch functions report (a thread per connection, so batches run side by
    side) and answers each by ``answer(records)`` (default: return null)."""

    def __init__(self) -> None:
        self._listener = service_listener()
        self.port = int(self._listener.getsockname()[1])
        self.batches: list[list[dict[str, Any]]] = []
        #: Every event, whole.
        self.events: list[dict[str, Any]] = []
        self.answer: Answer = lambda records: {}
        #: When set, answers from the whole event instead of ``answer``.
        self.answer_event: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="collector", daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {"COLLECTOR_PORT": str(self.port)}

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError, ValueError):
            stream = connection.makefile("rwb")
            line = json.loads(stream.readline())
            records = line["event"]["Records"]
            with self._lock:
                self.batches.append(records)
                self.events.append(line["event"])
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                if self.answer_event is not None:
                    answer = self.answer_event(line["event"])
                else:
                    answer = self.answer(records)
            finally:
                with self._lock:
                    self.in_flight -= 1
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()

    def datas(self) -> list[str]:
        """Every record's data, once per delivery, in delivery order."""
        return [data_of(r) for batch in list(self.batches) for r in batch]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(10)


def data_of(record: dict[str, Any]) -> str:
    return base64.b64decode(record["kinesis"]["data"]).decode()


@pytest.fixture
def collector() -> Iterator[Collector]:
    service = Collector()
    yield service
    service.close()


def settings_of(moto: Moto) -> dict[str, str]:
    return {"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, "LAMBDAD_ACCOUNT_ID": ACCOUNT}


@pytest.fixture(scope="module")
def esm_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad of moto's account whose streams are moto's."""
    srv = launch_server(tmp_path_factory.mktemp("lambdad-kinesis"), settings_of(moto))
    yield srv
    shutdown(srv)


@pytest.fixture
def client(esm_server: Server) -> Iterator[Any]:
    lam = esm_server.client()
    yield lam
    lam.close()


class Stream:
    """A Kinesis stream of moto."""

    def __init__(self, moto: Moto, shards: int = 1) -> None:
        self.kinesis = moto.client("kinesis")
        self.name = unique("s")
        self.kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        summary = self.kinesis.describe_stream_summary(StreamName=self.name)
        self.arn = str(summary["StreamDescriptionSummary"]["StreamARN"])

    def put(self, datas: list[str], key: Callable[[int], str] = str) -> list[str]:
        """Put each data (partition key ``key(n)``); the shard each went to."""
        return [
            self.kinesis.put_record(StreamARN=self.arn, Data=d.encode(), PartitionKey=key(n))[
                "ShardId"
            ]
            for n, d in enumerate(datas)
        ]


def mapping(client: Any, function: str, stream: Stream, **options: Any) -> str:
    """A mapping of ``stream`` to ``function``, once it reads ``Enabled``."""
    options.setdefault("StartingPosition", "TRIM_HORIZON")
    made = client.create_event_source_mapping(
        EventSourceArn=stream.arn, FunctionName=function, **options
    )
    uuid = str(made["UUID"])
    wait_until(lambda: client.get_event_source_mapping(UUID=uuid)["State"] == "Enabled")
    return uuid


def function(client: Any, collector: Collector) -> str:
    return str(create_function(client, HANDLER, env=collector.env, Timeout=60)["FunctionName"])


def per_shard_sequences(batches: list[list[dict[str, Any]]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for batch in batches:
        for record in batch:
            shard = record["eventID"].split(":")[0]
            found.setdefault(shard, []).append(int(record["kinesis"]["sequenceNumber"]))
    return found


def test_every_shard_is_delivered_in_order_in_lambdas_record_shape(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """Lambda reads every shard of the stream in order and hands the function batches of at
    most BatchSize Kinesis records (data in base64, eventID ``shard:sequence``, the function's
    role as invokeIdentityArn); LastProcessingResult reads OK."""
    stream = Stream(moto, shards=3)
    datas = [f"r{n}" for n in range(40)]
    shards = stream.put(datas)
    uuid = mapping(client, function(client, collector), stream, BatchSize=5)
    wait_until(lambda: set(collector.datas()) == set(datas), timeout=60)
    assert all(len(b) <= 5 for b in collector.batches)
    sequences = per_shard_sequences(collector.batches)
    assert set(sequences) == set(shards)
    for seqs in sequences.values():
        assert seqs == sorted(seqs)
    record = collector.batches[0][0]
    assert set(record) == {
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    }
    inner = record["kinesis"]
    assert set(inner) == {
        "kinesisSchemaVersion",
        "partitionKey",
        "sequenceNumber",
        "data",
        "approximateArrivalTimestamp",
    }
    assert inner["kinesisSchemaVersion"] == "1.0"
    assert isinstance(inner["approximateArrivalTimestamp"], float)
    assert abs(inner["approximateArrivalTimestamp"] - time.time()) < 600
    assert record["eventID"] == f"{record['eventID'].split(':')[0]}:{inner['sequenceNumber']}"
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventName"] == "aws:kinesis:record"
    assert record["eventVersion"] == "1.0"
    assert record["invokeIdentityArn"] == ROLE
    assert record["eventSourceARN"] == stream.arn
    assert record["awsRegion"] == "us-east-1"
    wait_until(lambda: client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK")


def test_latest_starts_after_what_the_stream_held_and_trim_horizon_reads_it(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """A mapping starting at LATEST delivers only records put after it began reading; one at
    TRIM_HORIZON delivers the stream's oldest records too."""
    stream = Stream(moto)
    stream.put(["old-0", "old-1"])
    latest = function(client, collector)
    mapping(client, latest, stream, StartingPosition="LATEST")
    count = 0

    def fresh_seen() -> bool:
        nonlocal count
        stream.put([f"new-{count}"])
        count += 1
        return any(d.startswith("new-") for d in collector.datas())

    wait_until(fresh_seen, timeout=60, interval=0.3)
    assert not [d for d in collector.datas() if d.startswith("old-")]
    other = Collector()
    try:
        mapping(client, function(client, other), stream)
        wait_until(lambda: {"old-0", "old-1", "new-0"} <= set(other.datas()), timeout=60)
        assert other.datas()[:2] == ["old-0", "old-1"]
    finally:
        other.close()


def test_a_failing_batch_is_retried_until_the_fault_clears_and_order_holds(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """A function error makes Lambda retry the same batch (MaximumRetryAttempts -1: until it
    succeeds); the records after it wait, and are delivered in order once it has."""
    stream = Stream(moto)
    failures = 0

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal failures
        if "bad" in [data_of(r) for r in records] and failures < 3:
            failures += 1
            return {"raise": "not yet"}
        return {}

    collector.answer = answer
    stream.put(["a", "bad", "c"])
    mapping(client, function(client, collector), stream, BatchSize=3)
    wait_until(lambda: len(collector.batches) >= 4, timeout=60)
    stream.put(["d", "e"])
    wait_until(lambda: "e" in collector.datas(), timeout=60)
    batches = [[data_of(r) for r in b] for b in collector.batches]
    assert batches[:4] == [["a", "bad", "c"]] * 4
    assert [d for b in batches[4:] for d in b] == ["d", "e"]


def test_bisect_splits_a_failing_batch_until_the_bad_record_is_alone(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With BisectBatchOnFunctionError Lambda splits a failing batch in two and retries each
    half (the split costs no retry); the bad record alone exhausts MaximumRetryAttempts and is
    given up on, and every other record is delivered."""
    stream = Stream(moto)
    collector.answer = lambda records: (
        {"raise": "poison"} if "poison" in [data_of(r) for r in records] else {}
    )
    stream.put(["a", "b", "poison", "d"])
    mapping(
        client,
        function(client, collector),
        stream,
        BatchSize=4,
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=1,
    )
    wait_until(lambda: "d" in collector.datas(), timeout=60)
    stream.put(["after"])
    wait_until(lambda: "after" in collector.datas(), timeout=60)
    batches = [[data_of(r) for r in b] for b in collector.batches]
    assert batches == [
        ["a", "b", "poison", "d"],
        ["a", "b"],
        ["poison", "d"],
        ["poison"],
        ["poison"],
        ["d"],
        ["after"],
    ]


def test_report_batch_item_failures_restarts_at_the_lowest_failed_sequence_number(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With ReportBatchItemFailures Lambda checkpoints before the lowest sequence number the
    function reports, and the retry starts there: the records before it are not sent again."""
    stream = Stream(moto)
    reported = False

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal reported
        failed = [r["kinesis"]["sequenceNumber"] for r in records if data_of(r) in ("c", "e")]
        if reported or not failed:
            return {"return": {"batchItemFailures": []}}
        reported = True
        return {"return": {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}}

    collector.answer = answer
    stream.put(["a", "b", "c", "d", "e"])
    mapping(
        client,
        function(client, collector),
        stream,
        BatchSize=5,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    wait_until(lambda: len(collector.batches) >= 2, timeout=60)
    batches = [[data_of(r) for r in b] for b in collector.batches]
    assert batches == [["a", "b", "c", "d", "e"], ["c", "d", "e"]]


def test_parallelization_runs_batches_side_by_side_and_keeps_each_keys_order(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With ParallelizationFactor above 1 Lambda runs several batches of one shard at a time,
    each partition key's records in one of them at a time and in order."""
    stream = Stream(moto)
    keys = ["k0", "k1", "k2", "k3", "k4", "k5"]
    datas = [f"{keys[n % 6]}-{n // 6}" for n in range(60)]
    stream.put(datas, key=lambda n: keys[n % 6])
    both = threading.Event()

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        if collector.in_flight >= 2:
            both.set()
        both.wait(10)  # the first batch waits (at most 10 s) for a second beside it
        return {}

    collector.answer = answer
    mapping(client, function(client, collector), stream, BatchSize=5, ParallelizationFactor=4)
    wait_until(lambda: set(collector.datas()) == set(datas), timeout=60)
    assert collector.most_in_flight >= 2
    for key in keys:
        mine = [int(d.split("-")[1]) for d in collector.datas() if d.startswith(key + "-")]
        assert mine == sorted(mine)
        assert len(mine) == len(set(mine)) == 10


def test_a_retrying_key_does_not_hold_back_the_keys_of_other_lanes(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With ParallelizationFactor above 1 each lane of a shard proceeds on its own (AWS's
    concurrent batches per shard): while one key's batch keeps failing and is retried, the
    records of a key in another lane, put after it, are delivered; once the fault clears the
    failing key's records follow, in order."""
    stream = Stream(moto)
    bad = "key-bad"
    good = next(f"key-{n}" for n in itertools.count() if lane_of(f"key-{n}", 2) != lane_of(bad, 2))
    release = threading.Event()
    collector.answer = lambda records: (
        {"raise": "not yet"}
        if not release.is_set() and any(data_of(r).startswith("bad") for r in records)
        else {}
    )
    stream.put(["bad-0", "bad-1"], key=lambda n: bad)
    stream.put([f"good-{n}" for n in range(6)], key=lambda n: good)
    mapping(client, function(client, collector), stream, BatchSize=2, ParallelizationFactor=2)
    wait_until(lambda: "good-5" in collector.datas(), timeout=60)
    assert "bad-0" in collector.datas()  # tried, failing, while the other lane ran on
    release.set()
    stream.put(["bad-2"], key=lambda n: bad)
    wait_until(lambda: "bad-2" in collector.datas(), timeout=60)
    goods = [d for d in collector.datas() if d.startswith("good-")]
    assert goods == [f"good-{n}" for n in range(6)]
    bads = list(dict.fromkeys(d for d in collector.datas() if d.startswith("bad-")))
    assert bads == ["bad-0", "bad-1", "bad-2"]
    last_bad = max(i for i, d in enumerate(collector.datas()) if d in ("bad-0", "bad-1"))
    assert collector.datas().index("good-5") < last_bad


def test_disabling_stops_delivery_and_enabling_resumes_from_the_checkpoint(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """Once a mapping reads Disabled nothing more is delivered through it; enabled again, it
    resumes after the last record it processed, skipping none."""
    stream = Stream(moto)
    stream.put(["one"])
    uuid = mapping(client, function(client, collector), stream)
    wait_until(lambda: collector.datas() == ["one"], timeout=60)
    client.update_event_source_mapping(UUID=uuid, Enabled=False)
    wait_until(lambda: client.get_event_source_mapping(UUID=uuid)["State"] == "Disabled")
    stream.put(["two", "three"])
    witness = Collector()
    try:
        mapping(client, function(client, witness), stream)
        wait_until(lambda: witness.datas() == ["one", "two", "three"], timeout=60)
        assert collector.datas() == ["one"]
    finally:
        witness.close()
    client.update_event_source_mapping(UUID=uuid, Enabled=True)
    wait_until(lambda: collector.datas() == ["one", "two", "three"], timeout=60)


def test_a_restart_resumes_from_the_durable_checkpoint_skipping_nothing(
    moto: Moto, collector: Collector, tmp_path: Path
) -> None:
    """Lambda keeps each shard's checkpoint: after lambdad stops and starts again on its data,
    the mapping resumes after the last record done: nothing skipped, nothing repeated (a stop
    lets an invoke under way finish and write its checkpoint)."""
    home = tmp_path / "one"
    home.mkdir()
    srv = launch_server(home, settings_of(moto))
    stream = Stream(moto, shards=2)
    first = [f"a{n}" for n in range(10)]
    stream.put(first)
    try:
        lam = srv.client()
        uuid = mapping(lam, function(lam, collector), stream, BatchSize=3)
        wait_until(lambda: set(collector.datas()) == set(first), timeout=60)
        wait_until(lambda: lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK")
    finally:
        shutdown(srv)
    second = [f"b{n}" for n in range(10)]
    stream.put(second)
    again = tmp_path / "two"
    again.mkdir()
    srv = launch_server(again, settings_of(moto), data_dir=srv.data_dir)
    try:
        wait_until(lambda: set(collector.datas()) == set(first + second), timeout=60)
        assert sorted(collector.datas()) == sorted(first + second)
    finally:
        shutdown(srv, signal.SIGTERM)


def test_a_kill_of_lambdad_loses_no_record_and_repeats_at_most_a_batch_a_shard(
    start_server: Callable[..., Server], moto: Moto, collector: Collector
) -> None:
    """After a SIGKILL with batches done, running and unread, a restart delivers every record
    (at-least-once) and repeats at most the batch each shard had under way."""
    slow = threading.Event()

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        slow.wait(0.05)  # batches take a moment: the kill finds one under way
        return {}

    collector.answer = answer
    srv = start_server(settings_of(moto))
    stream = Stream(moto, shards=2)
    datas = [f"r{n}" for n in range(60)]
    stream.put(datas)
    lam = srv.client()
    mapping(lam, function(lam, collector), stream, BatchSize=3)
    wait_until(lambda: len(collector.datas()) >= 12, timeout=60)
    srv.stop(signal.SIGKILL)
    assert len(set(collector.datas())) < len(datas), "the kill should find records unread"
    start_server(settings_of(moto), data_dir=srv.data_dir)
    wait_until(lambda: set(collector.datas()) == set(datas), timeout=120)
    counts = {d: collector.datas().count(d) for d in datas}
    assert max(counts.values()) <= 2
    assert sum(counts.values()) - len(datas) <= 2 * 3


def test_a_kill_with_lanes_running_on_loses_no_record_and_keeps_each_keys_order(
    start_server: Callable[..., Server], moto: Moto, collector: Collector
) -> None:
    """With ParallelizationFactor above 1 the shard checkpoint passes only records every lane
    has finished: after a SIGKILL with lanes at different points, a restart delivers every
    record (at-least-once), each key's first deliveries in order."""
    slow = threading.Event()

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        slow.wait(0.05)
        return {}

    collector.answer = answer
    srv = start_server(settings_of(moto))
    stream = Stream(moto)
    keys = [f"k{n}" for n in range(5)]
    datas = [f"{keys[n % 5]}-{n // 5}" for n in range(80)]
    stream.put(datas, key=lambda n: keys[n % 5])
    lam = srv.client()
    mapping(lam, function(lam, collector), stream, BatchSize=2, ParallelizationFactor=3)
    wait_until(lambda: len(collector.datas()) >= 16, timeout=60)
    srv.stop(signal.SIGKILL)
    assert len(set(collector.datas())) < len(datas), "the kill should find records unread"
    start_server(settings_of(moto), data_dir=srv.data_dir)
    wait_until(lambda: set(collector.datas()) == set(datas), timeout=120)
    for key in keys:
        firsts = list(dict.fromkeys(d for d in collector.datas() if d.startswith(key + "-")))
        assert firsts == [f"{key}-{n}" for n in range(16)]


@contextlib.asynccontextmanager
async def in_process(
    tmp_path: Path, moto: Moto, collector: Collector, sink: Any = None
) -> AsyncIterator[tuple[Lambdad, Any, str]]:
    """A lambdad built in this process (time scale 0.01) whose kinesis pollers send what
    they give up on to ``sink``, a boto3 client of it and a function reporting to
    ``collector``."""
    settings = load_settings(
        {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / "data",
            "account_id": ACCOUNT,
            "aws_endpoint_url": moto.endpoint,
        },
        environ={"LAMBDAD_TIME_SCALE": "0.01"},
    )
    app = Lambdad(settings)
    app.pollers.register(
        "kinesis",
        stream_factory(
            store=app.store,
            role_of=app.role_of,
            reader_of=KinesisReader,
            sink_of=lambda mapping, ctx: sink,
            time_scale=settings.time_scale,
        ),
    )
    await app.start()
    try:
        lam = boto3.client(
            "lambda",
            endpoint_url=f"http://127.0.0.1:{app.port}",
            region_name="us-east-1",
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="secret",
            config=Config(retries={"total_max_attempts": 1}),
        )
        name = await asyncio.to_thread(function, lam, collector)
        yield app, lam, name
    finally:
        await app.close()


async def eventually(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


class Sink:
    """A ``FailureSink`` that keeps what it is sent."""

    def __init__(self) -> None:
        self.failures: list[BatchFailure] = []

    async def send(self, failure: BatchFailure) -> None:
        self.failures.append(failure)


def test_retry_exhaustion_sends_the_batch_to_the_failure_sink_and_the_shard_moves_on(
    tmp_path: Path, moto: Moto, collector: Collector
) -> None:
    """After MaximumRetryAttempts retries Lambda gives the batch up: its on-failure record says
    RetryAttemptsExhausted with the invoke count, the last invoke's request id, status 200,
    function error Unhandled and the KinesisBatchInfo of the shard, and the next records are
    delivered."""
    sink = Sink()
    collector.answer = lambda records: (
        {"raise": "bad"} if "bad" in [data_of(r) for r in records] else {}
    )

    async def scenario() -> None:
        async with in_process(tmp_path, moto, collector, sink) as (_, lam, name):
            stream = Stream(moto)
            stream.put(["x", "bad"])
            await asyncio.to_thread(mapping, lam, name, stream, BatchSize=2, MaximumRetryAttempts=2)
            await eventually(lambda: sink.failures)
            await asyncio.to_thread(stream.put, ["next"])
            await eventually(lambda: "next" in collector.datas())

    asyncio.run(scenario())
    (failure,) = sink.failures
    assert failure.condition == "RetryAttemptsExhausted"
    assert failure.invoke_count == 3
    assert [r.event["kinesis"]["data"] for r in failure.records] == [
        base64.b64encode(b"x").decode(),
        base64.b64encode(b"bad").decode(),
    ]
    assert failure.batch_info_key == "KinesisBatchInfo"
    assert failure.shard_id == "shardId-000000000000"
    assert (failure.status_code, failure.function_error) == (200, "Unhandled")
    assert failure.executed_version == "$LATEST"
    assert failure.request_id
    assert [[data_of(r) for r in b] for b in collector.batches] == [["x", "bad"]] * 3 + [["next"]]


def test_a_record_older_than_the_maximum_age_is_given_up_on(
    tmp_path: Path, moto: Moto, collector: Collector
) -> None:
    """With MaximumRecordAgeInSeconds (60 s, here scaled to 0.6 s) and retries unlimited,
    Lambda retries a failing batch until its records are too old, then gives it up with the
    condition RecordAgeExceeded and reads on."""
    sink = Sink()
    collector.answer = lambda records: (
        {"raise": "bad"} if "bad" in [data_of(r) for r in records] else {}
    )

    async def scenario() -> None:
        async with in_process(tmp_path, moto, collector, sink) as (_, lam, name):
            stream = Stream(moto)
            stream.put(["bad"])
            await asyncio.to_thread(mapping, lam, name, stream, MaximumRecordAgeInSeconds=60)
            await eventually(lambda: sink.failures)
            await asyncio.to_thread(stream.put, ["next"])
            await eventually(lambda: "next" in collector.datas())

    asyncio.run(scenario())
    (failure,) = sink.failures
    assert failure.condition == "RecordAgeExceeded"
    assert [data_of(r.event) for r in failure.records] == ["bad"]
    # "bad" was delivered until it grew too old (or not at all, had it been by its first
    # invoke), never after "next".
    assert collector.datas()[-1] == "next"
    assert set(collector.datas()[:-1]) <= {"bad"}


class ScriptedStream:
    """A ``StreamReader`` of a stream whose shards a test lays out (split and merged ones
    among them): each shard's records, closed or open. Iterators are ``shard:index``."""

    batch_info_key = "KinesisBatchInfo"

    def __init__(self, arn: str) -> None:
        self.arn = arn
        self.layout: dict[str, tuple[Shard, list[StreamRecord]]] = {}
        self.next_sequence = 1

    def shard(self, name: str, datas: list[str], *parents: str, closed: bool = False) -> None:
        records = []
        for data in datas:
            raw = {
                "SequenceNumber": str(self.next_sequence),
                "Data": data.encode(),
                "PartitionKey": "k",
                "ApproximateArrivalTimestamp": time.time(),
            }
            records.append(record_of(raw, name, self.arn, ROLE))
            self.next_sequence += 1
        ending = records[-1].sequence_number if closed and records else None
        first = records[0].sequence_number if records else str(self.next_sequence)
        parent = parents[0] if parents else None
        adjacent = parents[1] if len(parents) > 1 else None
        self.layout[name] = (Shard(name, parent, adjacent, first, ending), records)

    async def shards(self) -> list[Shard]:
        return [shard for shard, _ in self.layout.values()]

    async def iterator(self, shard_id: str, position: Position) -> str:
        _, records = self.layout[shard_id]
        start = 0
        if position.kind is PositionKind.AFTER_SEQUENCE_NUMBER:
            start = 1 + [r.sequence_number for r in records].index(str(position.sequence_number))
        return f"{shard_id}:{start}"

    async def read(self, iterator: str, limit: int) -> Page:
        name, index = iterator.rsplit(":", 1)
        shard, records = self.layout[name]
        start = int(index)
        page = records[start : start + limit]
        end = start + len(page)
        closed = shard.ending_sequence_number is not None
        following = None if closed and end == len(records) else f"{name}:{end}"
        return Page(page, following, 0)

    async def anchor(self, shard_id: str) -> Position:
        return Position(PositionKind.TRIM_HORIZON)  # this script's LATEST is its start too

    async def close(self) -> None:
        return None


def test_split_and_merged_shards_are_read_after_their_parents(
    tmp_path: Path, moto: Moto, collector: Collector
) -> None:
    """Lambda reads a shard made by a split or a merge only once its parents (both, for a
    merge) are read to their end; a child starts at its first record whatever the mapping's
    StartingPosition, and every shard is read."""
    slow = {"parent": 2}

    def answer(records: list[dict[str, Any]]) -> dict[str, Any]:
        if "p0" in [data_of(r) for r in records] and slow["parent"] > 0:
            slow["parent"] -= 1  # the parent's first batch fails twice: its children wait
            return {"raise": "later"}
        return {}

    collector.answer = answer
    arn = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/scripted"
    script = ScriptedStream(arn)
    script.shard("shardId-0", ["p0", "p1", "p2"], closed=True)
    script.shard("shardId-1", ["c1-0", "c1-1"], "shardId-0", closed=True)
    script.shard("shardId-2", ["c2-0"], "shardId-0", closed=True)
    script.shard("shardId-3", ["m0", "m1"], "shardId-1", "shardId-2")

    async def scenario() -> None:
        async with in_process(tmp_path, moto, collector) as (app, _, name):
            scope = Scope(ACCOUNT, "us-east-1")
            source = StreamSource(
                scope=scope,
                mapping_uuid="scripted",
                function_name=name,
                qualifier=None,
                stream_arn=arn,
                starting_position=Position(PositionKind.LATEST),
                batch_size=2,
            )
            poller = StreamPoller(
                source,
                script,
                app.invoker,
                Checkpoints(app.store, scope, "scripted"),
                lambda result: None,
                time_scale=0.01,
                discovery_interval=0.05,
            )
            await poller.start()
            try:
                await eventually(lambda: "m1" in collector.datas())
            finally:
                await poller.close()

    asyncio.run(scenario())
    order = collector.datas()
    done = list(dict.fromkeys(order))
    parent_end = max(order.index(d) for d in ("p0", "p1", "p2"))
    children = [order.index(d) for d in ("c1-0", "c1-1", "c2-0")]
    assert min(children) > parent_end
    assert min(order.index(d) for d in ("m0", "m1")) > max(children)
    assert set(done) == {"p0", "p1", "p2", "c1-0", "c1-1", "c2-0", "m0", "m1"}


def test_a_tumbling_window_passes_state_between_invokes_and_ends_with_a_final_invoke(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With TumblingWindowInSeconds Lambda groups records by the window their arrival falls
    in: each invoke carries the window's bounds, the state the function returned last in it
    (``{}`` first), shardId and eventSourceARN; once the window ends the function is invoked
    with no records and isFinalInvokeForWindow true, holding the window's whole state."""

    def answer(event: dict[str, Any]) -> dict[str, Any]:
        seen = list(event["state"].get("seen", []))
        seen += [data_of(r) for r in event["Records"]]
        return {"return": {"state": {"seen": seen}}}

    collector.answer_event = answer
    stream = Stream(moto)
    datas = [f"r{n}" for n in range(6)]
    stream.put(datas)
    mapping(
        client,
        function(client, collector),
        stream,
        BatchSize=2,
        TumblingWindowInSeconds=60,  # 0.6 s at the tests' time scale
    )

    def finals() -> list[dict[str, Any]]:
        return [e for e in list(collector.events) if e["isFinalInvokeForWindow"]]

    wait_until(lambda: sorted(d for e in finals() for d in e["state"]["seen"]) == datas, timeout=60)
    shard = "shardId-000000000000"
    by_window: dict[str, list[dict[str, Any]]] = {}
    for event in collector.events:
        assert event["shardId"] == shard
        assert event["eventSourceARN"] == stream.arn
        assert event["isWindowTerminatedEarly"] is False
        bounds = [datetime.datetime.fromisoformat(event["window"][k]) for k in ("start", "end")]
        assert bounds[0] < bounds[1]
        assert event["window"]["end"].endswith("Z")
        by_window.setdefault(event["window"]["start"], []).append(event)
    for events in by_window.values():
        assert events[0]["state"] == {}
        for before, after in itertools.pairwise(events):
            returned = before["state"].get("seen", []) + [data_of(r) for r in before["Records"]]
            assert after["state"] == {"seen": returned}
        assert events[-1]["isFinalInvokeForWindow"] is True
        assert events[-1]["Records"] == []
        assert not any(e["isFinalInvokeForWindow"] for e in events[:-1])


def test_a_malformed_partial_batch_response_fails_the_whole_batch(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """AWS treats a batchItemFailures entry naming no record of the batch as a failure of the
    whole batch: it is retried from its first record."""
    stream = Stream(moto)
    answers = [{"return": {"batchItemFailures": [{"itemIdentifier": "not-a-sequence"}]}}]
    collector.answer = lambda records: answers.pop() if answers else {}
    stream.put(["a", "b"])
    mapping(
        client,
        function(client, collector),
        stream,
        BatchSize=2,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    wait_until(lambda: len(collector.batches) >= 2, timeout=60)
    assert [[data_of(r) for r in b] for b in collector.batches] == [["a", "b"], ["a", "b"]]


def test_at_timestamp_starts_at_the_first_record_put_from_then(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """A mapping starting AT_TIMESTAMP delivers the records that arrived at or after
    StartingPositionTimestamp, not those before."""
    stream = Stream(moto)
    stream.put(["before"])
    moment = time.time() + 0.5  # the clock passes it between the two puts
    wait_until(lambda: time.time() > moment + 0.1, timeout=5)
    stream.put(["after-0", "after-1"])
    mapping(
        client,
        function(client, collector),
        stream,
        StartingPosition="AT_TIMESTAMP",
        StartingPositionTimestamp=moment,
    )
    wait_until(lambda: "after-1" in collector.datas(), timeout=60)
    assert collector.datas() == ["after-0", "after-1"]


def test_throttled_invokes_are_retried_without_losing_a_record(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """A throttled invoke (here reserved concurrency 0) is retried, not counted as a failure:
    LastProcessingResult says the call is throttled, and once the function may run every
    record is delivered, in order, though MaximumRetryAttempts is 0."""
    stream = Stream(moto)
    name = function(client, collector)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    stream.put(["a", "b", "c"])
    uuid = mapping(client, name, stream, BatchSize=2, MaximumRetryAttempts=0)
    wait_until(
        lambda: (
            client.get_event_source_mapping(UUID=uuid)["LastProcessingResult"]
            == "PROBLEM: Function call throttled"
        ),
        timeout=60,
    )
    client.delete_function_concurrency(FunctionName=name)
    wait_until(lambda: collector.datas() == ["a", "b", "c"], timeout=60)


def test_records_the_filter_drops_are_skipped(
    client: Any, moto: Moto, collector: Collector
) -> None:
    """With FilterCriteria Lambda invokes only with the records whose decoded JSON data
    matches, skipping the others (the shard reads on past them)."""
    stream = Stream(moto)
    datas = [json.dumps({"kind": kind, "n": n}) for n, kind in enumerate("kdkddk")]
    stream.put(datas)
    pattern = json.dumps({"data": {"kind": ["k"]}})
    mapping(
        client,
        function(client, collector),
        stream,
        BatchSize=10,
        FilterCriteria={"Filters": [{"Pattern": pattern}]},
    )
    wait_until(lambda: len(collector.datas()) >= 3, timeout=60)
    stream.put([json.dumps({"kind": "k", "n": 6})])
    wait_until(lambda: len(collector.datas()) >= 4, timeout=60)
    assert [json.loads(d)["n"] for d in collector.datas()] == [0, 2, 5, 6]
