"""Event source mappings lose nothing when lambdad is killed: a real ``lambdad serve`` polling a
moto source is SIGKILLed mid-stream and started again on the same home, and every record is
counted (issue 12: "a crash of lambdad loses no record (at-least-once) and repeats as few as
possible")."""

from __future__ import annotations

import collections
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.aws import ACCOUNT
from tests.conftest import (
    Moto,
    Recorder,
    Server,
    create_function,
    descendants,
    unique,
    wait_until,
)

pytestmark = pytest.mark.slow

#: Reports every record's body to the test's ``Recorder`` (with the batch's size), then
#: lingers a little, so that a kill finds batches delivered but not yet deleted.
RECORDING = """
import base64, os, socket, time


def body_of(record):
    if "body" in record:
        return record["body"]
    return base64.b64decode(record["kinesis"]["data"]).decode()


def handler(event, context):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    for record in event["Records"]:
        with socket.create_connection((host, int(os.environ["RECORDER_PORT"])), timeout=30) as s:
            s.sendall(f"{body_of(record)} {len(event['Records'])}\\n".encode())
            s.recv(1)
    time.sleep(float(os.environ.get("LINGER", "0.2")))
"""

#: Enough for the kill to find batches done, in flight and not yet read (300 added only time).
TOTAL = 200
BATCH = 10
#: ScalingConfig.MaximumConcurrency: at most this many batches are in flight at the kill.
CONCURRENCY = 2
#: The queue's visibility timeout (seconds, real: never scaled). Longer than any batch takes,
#: so no message reappears while its batch still runs.
VISIBILITY = 5


def settings_of(moto: Moto) -> dict[str, str]:
    return {"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint, "LAMBDAD_ACCOUNT_ID": ACCOUNT}


def filled_queue(moto: Moto) -> tuple[str, str]:
    """A queue holding ``TOTAL`` numbered messages: ``(url, arn)``."""
    sqs = moto.client("sqs")
    attributes = {"VisibilityTimeout": str(VISIBILITY)}
    url = sqs.create_queue(QueueName=unique("restart"), Attributes=attributes)["QueueUrl"]
    for start in range(0, TOTAL, 10):
        entries = [{"Id": str(n), "MessageBody": f"m{n}"} for n in range(start, start + 10)]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, str(arn["Attributes"]["QueueArn"])


def left_in(moto: Moto, url: str) -> int:
    """Messages still in the queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = moto.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=names)
    return sum(int(found["Attributes"][n]) for n in names)


def bodies(recorder: Recorder) -> list[str]:
    return [body for body, _ in list(recorder.runs)]


def kill(server: Server) -> None:
    """SIGKILL ``server`` (a cluster: every node of it at once, as a power cut would: the
    poller runs on one node, its batches on any) and wait until every process they had
    started is gone too, so that nothing of them reports to the recorder afterwards."""
    nodes = server.nodes()
    children = [pid for node in nodes for pid in descendants(node.process.pid)]
    for node in nodes:
        node.stop(signal.SIGKILL)

    def gone() -> bool:
        return not [pid for pid in children if _alive(pid)]

    wait_until(gone, timeout=30)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_a_killed_lambdad_loses_no_sqs_message(
    start_server: Callable[..., Server], moto: Moto, recorder: Recorder
) -> None:
    """AWS: an SQS mapping deletes a message only after its batch succeeded, so a poller that
    dies loses nothing: what it held reappears after the queue's visibility timeout. lambdad
    killed with SIGKILL mid-stream and started again on its home delivers every message at
    least once, repeats only messages delivered before the kill (at most the batches then in
    flight), and drains the queue."""
    url, arn = filled_queue(moto)
    srv = start_server(settings_of(moto))
    lam = srv.client()
    fn = create_function(lam, RECORDING, env={"RECORDER_PORT": str(recorder.port)})
    lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName=fn["FunctionName"],
        BatchSize=BATCH,
        ScalingConfig={"MaximumConcurrency": CONCURRENCY},
    )
    wait_until(lambda: len(set(bodies(recorder))) >= TOTAL // 4, timeout=120, interval=0.05)
    kill(srv)
    recorder.settle()  # what the dead functions sent before the kill is counted as before it
    before = collections.Counter(bodies(recorder))
    assert len(before) < TOTAL, "the kill should find messages not yet delivered"

    again = start_server(settings_of(moto), data_dir=srv.data_dir)
    expected = {f"m{n}" for n in range(TOTAL)}
    wait_until(lambda: set(bodies(recorder)) >= expected, timeout=180, interval=0.1)
    wait_until(lambda: left_in(moto, url) == 0, timeout=60, interval=0.2)

    delivered = collections.Counter(bodies(recorder))
    assert set(delivered) == expected
    repeated = {body for body, count in delivered.items() if count > 1}
    # Only what was delivered before the kill comes again (its batch had not been deleted)...
    assert repeated <= set(before), sorted(repeated - set(before))
    # ...and no more than the batches in flight then.
    assert len(repeated) <= CONCURRENCY * BATCH, sorted(repeated)
    assert all(size <= BATCH for _, size in list(recorder.runs))
    mapping = again.client().list_event_source_mappings(FunctionName=fn["FunctionName"])
    (only,) = mapping["EventSourceMappings"]
    assert only["State"] == "Enabled"


def kinesis_stream(moto: Moto) -> str:
    """A one-shard Kinesis stream holding ``TOTAL`` numbered records: its ARN."""
    kinesis = moto.client("kinesis")
    name = unique("restart")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_until(
        lambda: (
            kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
                "StreamStatus"
            ]
            == "ACTIVE"
        )
    )
    for start in range(0, TOTAL, 100):
        entries: list[dict[str, Any]] = [
            {"Data": f"m{n}".encode(), "PartitionKey": "p"} for n in range(start, start + 100)
        ]
        assert not kinesis.put_records(StreamName=name, Records=entries).get("FailedRecordCount")
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return str(summary["StreamARN"])


def test_a_killed_lambdad_loses_no_kinesis_record(
    start_server: Callable[..., Server], moto: Moto, recorder: Recorder
) -> None:
    """AWS: a stream mapping checkpoints a shard only past records whose batch succeeded, so
    a poller that dies resumes from the checkpoint. lambdad killed with SIGKILL mid-stream and
    started again on its home delivers every record at least once, in order per shard,
    repeating only records delivered before the kill (at most the one batch in flight on the
    shard)."""
    arn = kinesis_stream(moto)
    srv = start_server(settings_of(moto))
    lam = srv.client()
    fn = create_function(lam, RECORDING, env={"RECORDER_PORT": str(recorder.port)})
    lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName=fn["FunctionName"],
        BatchSize=BATCH,
        StartingPosition="TRIM_HORIZON",
    )
    wait_until(lambda: len(set(bodies(recorder))) >= TOTAL // 4, timeout=120, interval=0.05)
    kill(srv)
    recorder.settle()  # what the dead functions sent before the kill is counted as before it
    before = collections.Counter(bodies(recorder))
    assert len(before) < TOTAL, "the kill should find records not yet delivered"

    start_server(settings_of(moto), data_dir=srv.data_dir)
    expected = {f"m{n}" for n in range(TOTAL)}
    wait_until(lambda: set(bodies(recorder)) >= expected, timeout=180, interval=0.1)

    delivered = collections.Counter(bodies(recorder))
    assert set(delivered) == expected
    repeated = {body for body, count in delivered.items() if count > 1}
    assert repeated <= set(before), sorted(repeated - set(before))
    assert len(repeated) <= BATCH, sorted(repeated)
    # One shard, one batch in flight: the records arrive in order, each run restarting at
    # the checkpoint.
    order = [int(body[1:]) for body in bodies(recorder)]
    restarts = [i for i in range(1, len(order)) if order[i] <= order[i - 1]]
    assert len(restarts) <= 1
