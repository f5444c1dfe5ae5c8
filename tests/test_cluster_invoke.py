"""Invocations across nodes (docs/cluster.md, issue 16 part 4): an api node routes every
invocation to a worker over NATS (a warm environment of the version first, else the least
loaded worker), passes streamed chunks, Tail logs, function errors and the trace through,
and answers a worker lost mid-invocation promptly with Lambda's ServiceException.

One PostgreSQL database, one NATS server, one api node and two workers for the module, as
separate ``lambdad serve`` processes on loopback; the last test kills a worker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdad.store.nats_link import NatsLink
from tests.conftest import (
    MEET,
    Rendezvous,
    Server,
    create_function,
    invoke_json,
    launch_server,
    refused,
    shutdown_all,
    spawn_server,
    wait_healthy,
    wait_until,
)
from tests.nats_server import NatsServer
from tests.nats_server import unavailable_reason as nats_unavailable
from tests.postgres_server import PostgresServer
from tests.test_cluster_logs import client as logs_client
from tests.test_cluster_logs import has
from tests.test_response_streaming import STREAMING_BOOTSTRAP, events, meet
from tests.url_client import call_url, make_public

#: Who ran an invocation: a line only the function prints, found in that node's log store.
WHO = """
import os, uuid
BOOT = uuid.uuid4().hex  # one per environment


def handler(event, context):
    print("ran", event.get("marker") or event.get("rawPath", "").lstrip("/"))
    if event.get("fail"):
        raise ValueError("failed on purpose")
    if event.get("meet"):
        meet()
    if event.get("big"):
        return {"x": "x" * event["big"], "pad": len(event.get("pad", ""))}
    return {"boot": BOOT, "pid": os.getpid()}
"""


class Cluster:
    def __init__(
        self, api: Server, workers: list[Server], settings: dict[str, str], nats: NatsServer
    ) -> None:
        self.api = api
        self.workers = workers
        self.nats = nats
        #: What every node of the cluster is started with (and a worker restarted with).
        self.settings = settings

    def registered(self) -> set[str]:
        """The ids of the nodes up in the api node's registry."""
        nodes = self.api.get_json("/_lambdad/cluster")["Nodes"]
        return {n["Id"] for n in nodes if n["Health"] == "up"}

    def ran_on(self, marker: str) -> list[Server]:
        """The workers whose log store holds the line ``ran <marker>`` (a worker keeps the
        lines of what it ran; the api node holds every worker's, replicated: docs/cluster.md)."""
        return [n for n in self.workers if f"ran {marker}" in _logs_of(n)]


def _logs_of(server: Server) -> str:
    segments = server.data_dir / "logs" / "segments"
    texts = []
    for path in sorted(segments.glob("*.jsonl")) if segments.is_dir() else []:
        try:
            texts.append(path.read_text(errors="replace"))
        except FileNotFoundError:  # dropped meanwhile
            continue
    return "".join(texts)


def _environments(server: Server) -> list[Path]:
    """The node's live environments (``run/envs/<id>``; cells are ``<id>-<n>``)."""
    return [p for p in _runs(server) if "-" not in p.name]


def _runs(server: Server) -> list[Path]:
    """Everything under ``run/envs``: environments, their cells, cell networks made ahead."""
    runs = server.data_dir / "run" / "envs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[Cluster]:
    reason = nats_unavailable()
    if reason is not None:
        pytest.skip(reason)
    nats = NatsServer()
    nats.start()
    common = {
        "LAMBDAD_STORE_URL": postgres.database(),
        "LAMBDAD_NATS_URL": nats.url,
        "LAMBDAD_NODE_LEASE": "1.5",
        "LAMBDAD_KEEP_ALIVE": "60000",  # warm environments stay for the module
    }
    started: list[Server] = []
    workers: list[Server] = []
    try:
        for role in ("worker", "worker", "api"):  # side by side
            home = tmp_path_factory.mktemp(role)
            started.append(spawn_server(home, {**common, "LAMBDAD_ROLE": role}, wait=False))
        for server in started:
            wait_healthy(server)
        *workers, api = started
        cluster = Cluster(api, workers, {**common, "LAMBDAD_ROLE": "worker"}, nats)
        ids = {(w.data_dir / "node-id").read_text().strip() for w in workers}
        wait_until(lambda: ids <= cluster.registered(), timeout=20)
        yield cluster
    finally:
        live = {id(s): s for s in [*started, *workers]}.values()
        shutdown_all([server for server in live if server.process.poll() is None])
        nats.close()


def _who(cluster: Cluster, *, meeting: Rendezvous | None = None, **kwargs: Any) -> str:
    lam = cluster.api.client()
    try:
        env = meeting.env if meeting is not None else {}
        fn = create_function(lam, MEET + WHO, env=env, **kwargs)
        return str(fn["FunctionName"])
    finally:
        lam.close()


def test_an_invoke_through_the_api_node_runs_on_a_worker_and_warm_again(cluster: Cluster) -> None:
    """boto3's Invoke through the api node runs on one worker, with its Tail log passed
    through; the next invoke runs in the same warm environment there; the api node runs
    no environment of its own; ``lambdad doctor`` says where each node's invocations run."""
    name = _who(cluster)
    lam = cluster.api.client()
    try:
        first, body = invoke_json(lam, name, {"marker": "first-" + name}, LogType="Tail")
        assert first["StatusCode"] == 200
        assert "FunctionError" not in first
        log = base64.b64decode(first["LogResult"]).decode()
        assert f"ran first-{name}" in log
        assert "REPORT RequestId:" in log
        again = invoke_json(lam, name, {"marker": "again-" + name})[1]
    finally:
        lam.close()
    assert again["boot"] == body["boot"]  # the same environment, warm
    (ran,) = wait_until(lambda: cluster.ran_on("first-" + name))
    assert ran in cluster.workers
    assert wait_until(lambda: cluster.ran_on("again-" + name)) == [ran]
    assert _environments(cluster.api) == []
    assert _environments(ran) != []
    # The worker's log lines reach the api node's log store (JetStream), so the Logs API
    # through the api node finds what ran elsewhere.
    logs = logs_client(cluster.api, "logs")
    try:
        assert wait_until(lambda: has(logs, f"/aws/lambda/{name}", f"ran first-{name}"), timeout=30)
    finally:
        logs.close()
    doctor = cluster.api.get_json("/_lambdad/doctor")["node"]
    assert doctor["invocations"] == "routed to workers over NATS"
    doctor = ran.get_json("/_lambdad/doctor")["node"]
    assert doctor["invocations"] == "run here, and routed here by api nodes"


CALLER = """
import json, os
import boto3

client = boto3.client("lambda")


def handler(event, context):
    answer = client.invoke(FunctionName=os.environ["CALLEE"], Payload=json.dumps(event).encode())
    return {"callee": json.loads(answer["Payload"].read()), "status": answer["StatusCode"]}
"""


def test_a_function_on_a_worker_reaches_the_lambda_api(cluster: Cluster) -> None:
    """A handler's own boto3 ``invoke`` of another function, made on a worker, is served:
    the worker's public listener refuses the API, but its functions reach an API of their
    own (as on AWS, where a function's SDK calls Lambda from inside the fleet)."""
    from tests.test_recursion import boto3_layer

    lam = cluster.api.client()
    try:
        layer = lam.publish_layer_version(
            LayerName="boto3-" + os.urandom(4).hex(),
            Content={"ZipFile": boto3_layer()},
            CompatibleRuntimes=["python3.11"],
        )["LayerVersionArn"]
        callee = create_function(lam)["FunctionName"]
        caller = create_function(lam, CALLER, env={"CALLEE": callee}, Layers=[layer], Timeout=30)[
            "FunctionName"
        ]
        answer, body = invoke_json(lam, caller, {"hello": "from a worker"})
    finally:
        lam.close()
    assert "FunctionError" not in answer, body
    assert body == {"callee": {"hello": "from a worker"}, "status": 200}


def test_a_function_error_passes_through(cluster: Cluster) -> None:
    """A function's own error is the caller's 200 with ``X-Amz-Function-Error: Unhandled`` and
    the runtime's error body, as a single node answers it."""
    name = _who(cluster)
    lam = cluster.api.client()
    try:
        response, body = invoke_json(lam, name, {"fail": True})
    finally:
        lam.close()
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "failed on purpose"


def test_a_large_response_and_a_worker_throttle_pass_through(cluster: Cluster) -> None:
    """A 3 MB request and a 3 MB response (each larger than one NATS message by default) reach
    the function and the caller whole; a function whose reserved concurrency is 0 is refused by
    its worker with 429 ReservedFunctionConcurrentInvocationLimitExceeded, as AWS refuses it,
    through the api node."""
    name = _who(cluster)
    lam = cluster.api.client()
    try:
        size = 3 * 1024 * 1024
        response, body = invoke_json(lam, name, {"big": size, "pad": "y" * size})
        assert response["StatusCode"] == 200
        assert body == {"x": "x" * size, "pad": size}
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)

        def refused() -> dict[str, Any] | None:
            try:
                invoke_json(lam, name, {})
            except ClientError as exc:
                return dict(exc.response)
            return None  # the worker has not heard of the change yet

        answer = wait_until(refused)
    finally:
        lam.close()
    assert answer["Error"]["Code"] == "TooManyRequestsException"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert answer["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_an_event_invoke_through_the_api_node_runs_on_a_worker(cluster: Cluster) -> None:
    """An ``Event`` invoke accepted by the api node (202) is run by its async dispatcher on a
    worker, not on the api node."""
    name = _who(cluster)
    lam = cluster.api.client()
    try:
        marker = json.dumps({"marker": "event-" + name}).encode()
        accepted = lam.invoke(FunctionName=name, InvocationType="Event", Payload=marker)
    finally:
        lam.close()
    assert accepted["StatusCode"] == 202
    (ran,) = wait_until(lambda: cluster.ran_on("event-" + name), timeout=30)
    assert ran in cluster.workers


def test_a_routed_sampled_invocation_is_one_trace_on_the_api_node(cluster: Cluster) -> None:
    """A sampled invoke through the api node runs on a worker with the caller's trace id; the
    api node's ``/_lambdad/traces`` holds one trace of its own spans (``AWS::Lambda``, the
    function segment, ``Invocation``) and the segment the function sent to the worker's X-Ray
    listener, under the function's service, and ``lambdad doctor`` there counts the worker's
    dropped datagram. Polled: the worker's spans reach the api node through the trace stream
    (docs/tracing.md, "In a cluster"), as X-Ray's traces too appear after the invoke."""
    from tests.test_tracing import TRACED, fresh_root, invoke, names, trace_of

    lam = cluster.api.client()
    try:
        name = create_function(lam, TRACED, TracingConfig={"Mode": "Active"})["FunctionName"]
    finally:
        lam.close()
    api = cluster.api
    before = api.get_json("/_lambdad/doctor")["tracing"]["datagrams dropped"]
    root = fresh_root()
    caller = f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"
    fields = invoke(api, name, {"send": True, "garbage": ["not a segment"]}, caller)["fields"]
    assert (fields["Root"], fields["Sampled"]) == (root, "1")
    trace = trace_of(api, root, lambda s: {"work", "inner", "Invocation"} <= names(s))
    by_id = {s["Id"]: s for s in trace["Spans"]}
    work = next(s for s in trace["Spans"] if s["Name"] == "work")
    assert work["ParentId"] == fields["Parent"]
    assert work["Service"] == name
    function_segment = by_id[fields["Parent"]]
    assert function_segment["Attributes"]["aws.xray.origin"] == "AWS::Lambda::Function"
    service = by_id[function_segment["ParentId"]]
    assert service["ParentId"] == "53995c3f42cd8ad8"
    listed = api.get_json(f"/_lambdad/traces?function={name}")["Traces"]
    assert [t["TraceId"] for t in listed] == [root]
    tracing = api.get_json("/_lambdad/doctor")["tracing"]
    assert tracing["datagrams dropped"] - before >= 1
    assert tracing["other nodes' spans"] == "JetStream stream LAMBDAD_TRACES, sent and read here"
    worker = cluster.workers[0].get_json("/_lambdad/doctor")["tracing"]
    assert worker["other nodes' spans"].endswith("sent only (role worker)")


def test_a_function_url_on_the_api_node_runs_on_a_worker(cluster: Cluster) -> None:
    """A request to a function URL served by the api node runs the function on a worker and
    answers its result, as a single node does."""
    name = _who(cluster)
    lam = cluster.api.client()
    try:
        config = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
        make_public(lam, name)
    finally:
        lam.close()
    answer = call_url(config["FunctionUrl"], f"/url-{name}", port=cluster.api.port)
    assert answer.status == 200
    assert set(answer.json()) == {"boot", "pid"}
    (ran,) = wait_until(lambda: cluster.ran_on("url-" + name))
    assert ran in cluster.workers


def test_concurrent_invokes_use_both_workers(cluster: Cluster) -> None:
    """Two invokes at once, each waiting for the other, run on the two workers: the second
    goes to the least loaded one, as the first one's environment is busy."""
    meeting = Rendezvous(parties=2)
    name = _who(cluster, meeting=meeting)
    results: list[Any] = []

    def invoke(marker: str) -> None:
        lam = cluster.api.client()
        try:
            results.append(invoke_json(lam, name, {"marker": marker, "meet": True})[1])
        finally:
            lam.close()

    threads = [threading.Thread(target=invoke, args=(f"{m}-{name}",)) for m in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2
    assert results[0]["boot"] != results[1]["boot"]
    on_a = wait_until(lambda: cluster.ran_on(f"a-{name}"))
    on_b = wait_until(lambda: cluster.ran_on(f"b-{name}"))
    assert {s.port for s in [*on_a, *on_b]} == {w.port for w in cluster.workers}


def test_streamed_chunks_pass_through_the_api_node_in_order(cluster: Cluster) -> None:
    """InvokeWithResponseStream through the api node: the first chunk reaches the caller
    while the function still runs on its worker, the rest follow in order, then
    InvokeComplete."""
    meeting = Rendezvous(parties=2)
    lam = cluster.api.client()
    try:
        python = os.path.realpath(sys.executable)
        fn = create_function(
            lam,
            files={"bootstrap": STREAMING_BOOTSTRAP.format(python=python)},
            modes={"bootstrap": 0o755},
            runtime="provided.al2023",
            handler="function.handler",
            env=meeting.env,
            Timeout=30,
        )
        chunks = ["one ", "two ", "three ", "four"]
        payload = json.dumps({"chunks": chunks, "meet": True}).encode()
        response = lam.invoke_with_response_stream(FunctionName=fn["FunctionName"], Payload=payload)
        received = events(response)
        assert next(received) == ("PayloadChunk", b"one ")
        meet(meeting.port)  # the function goes on only now
        rest = list(received)
    finally:
        lam.close()
    assert rest == [*(("PayloadChunk", c.encode()) for c in chunks[1:]), ("InvokeComplete", {})]


def test_a_call_a_worker_cannot_read_is_answered_with_a_service_error(cluster: Cluster) -> None:
    """A message on a worker's invoke subject that is not a call (a node of another version)
    is answered at once with an error, not left to the caller's keep-alive bound."""
    worker = (cluster.workers[0].data_dir / "node-id").read_text().strip()

    async def ask() -> bytes:
        link = NatsLink(cluster.nats.url, "test")
        await link.open()
        try:
            replies = await link.listen("test.replies")
            await link.publish(f"lambdad.invoke.{worker}", b"not a call", reply="test.replies")
            return (await replies.next(10)).data
        finally:
            await link.close()

    answer = asyncio.run(ask())
    assert answer[:1] == b"e"
    assert b"ServiceException" in answer
    assert b"could not read the invocation" in answer


def test_invokes_run_again_once_nats_is_back(cluster: Cluster) -> None:
    """The NATS server restarted under the cluster (killed, then started on its port): once
    it is back, invokes through the api node run on the workers again, with no node
    restarted."""
    name = _who(cluster)
    cluster.nats.kill()
    cluster.nats.start()

    def runs() -> bool:
        lam = cluster.api.client()
        try:
            return invoke_json(lam, name, {"marker": "back-" + name})[0]["StatusCode"] == 200
        except ClientError:  # not reconnected yet: ServiceException
            return False
        finally:
            lam.close()

    wait_until(runs, timeout=30)
    assert cluster.api.process.poll() is None
    assert all(w.process.poll() is None for w in cluster.workers)


def test_a_stopped_worker_finishes_what_it_runs_and_takes_no_more(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A worker stopped with SIGTERM while it runs an invocation leaves the registry, takes no
    new invocation (they run on the other worker) and answers the one it runs before it
    exits; restarted on its data dir, it rejoins."""
    meeting = Rendezvous(parties=2)
    name = _who(cluster, meeting=meeting)
    answer: dict[str, Any] = {}

    def invoke() -> None:
        lam = cluster.api.client()
        try:
            answer.update(invoke_json(lam, name, {"marker": "drained-" + name, "meet": 1})[0])
        finally:
            lam.close()

    thread = threading.Thread(target=invoke)
    thread.start()
    (stopping,) = wait_until(lambda: cluster.ran_on("drained-" + name), timeout=30)
    index = cluster.workers.index(stopping)
    node = (stopping.data_dir / "node-id").read_text().strip()
    stopping.process.send_signal(signal.SIGTERM)
    wait_until(lambda: node not in cluster.registered(), timeout=20)
    other = _who(cluster)
    lam = cluster.api.client()
    try:
        assert invoke_json(lam, other, {"marker": "meanwhile-" + other})[0]["StatusCode"] == 200
    finally:
        lam.close()
    (ran,) = wait_until(lambda: cluster.ran_on("meanwhile-" + other))
    assert ran is not stopping
    meet(meeting.port)  # the function running on the stopping worker goes on only now
    thread.join(60)
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert stopping.process.wait(30) == 0

    again = launch_server(tmp_path, cluster.settings, stopping.data_dir)
    cluster.workers[index] = again
    wait_until(lambda: node in cluster.registered(), timeout=20)


def test_a_worker_killed_mid_invocation_is_a_prompt_service_error(cluster: Cluster) -> None:
    """A worker SIGKILLed while it runs an invocation: the caller gets ServiceException (500,
    AWS's answer when Lambda fails to run an invocation) once the worker's keep-alives stop,
    long before the function's timeout; later invokes run on the other worker; once that one
    is killed too, an invoke is ServiceException naming that no worker is up."""
    meeting = Rendezvous(parties=2)  # the function waits there: nobody else ever comes
    name = _who(cluster, meeting=meeting, Timeout=600)
    answer: dict[str, Any] = {}

    def invoke() -> None:
        lam = cluster.api.client()
        try:
            lam.invoke(FunctionName=name, Payload=json.dumps({"marker": "slow-" + name, "meet": 1}))
        except ClientError as exc:
            answer.update(exc.response)
        finally:
            lam.close()

    thread = threading.Thread(target=invoke)
    thread.start()
    (victim,) = wait_until(lambda: cluster.ran_on("slow-" + name), timeout=30)
    victim.stop(signal.SIGKILL)
    thread.join(60)  # the function's timeout is 600 s: the answer comes long before
    assert not thread.is_alive()
    assert answer["Error"]["Code"] == "ServiceException"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "lost" in answer["Error"]["Message"]

    (survivor,) = [w for w in cluster.workers if w is not victim]
    other = _who(cluster)
    lam = cluster.api.client()
    try:
        for i in range(3):
            response, _ = invoke_json(lam, other, {"marker": f"after{i}-{other}"})
            assert response["StatusCode"] == 200
    finally:
        lam.close()
    for i in range(3):
        assert wait_until(lambda i=i: cluster.ran_on(f"after{i}-{other}")) == [survivor]
    assert _environments(cluster.api) == []

    # The last worker, idle with a warm environment of ``other``, is killed too: nobody
    # listens for it any more, and there is no other worker to try.
    survivor.stop(signal.SIGKILL)
    lam = cluster.api.client()
    try:
        with refused("ServiceException", 500) as error:
            lam.invoke(FunctionName=other, Payload=b"{}")
    finally:
        lam.close()
    assert "no worker node" in error["Message"]
