"""A worker SIGKILLed under sync and async load (docs/cluster.md, issue 16 part 6): one api
node and two workers (``tests/cluster.py``: as root each in a network namespace of its own) on
real PostgreSQL and NATS servers, a function with reserved concurrency 4 invoked through the
api node by client threads and by Event invokes while one worker is killed.

One cluster for the module, with a short node lease (1.5 s, the harness's) and a short queue
ack wait (3 s), so that the dead worker's concurrency grants and events come back within
seconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests import conftest
from tests.cluster import RELAYED_PORTS, Cluster, relay_unavailable_reason, unavailable_reason
from tests.conftest import MEET, Recorder, Rendezvous, create_function, unique

pytestmark = [
    pytest.mark.slow,
    pytest.mark.no_cluster("starts a cluster of its own"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

#: Reserved concurrency of the function under load.
RESERVED = 4

#: Sleeps a little, then reports its event's ``id`` to the test's ``Recorder`` (so a run is
#: recorded only once it has finished); ``meet`` waits at the test's ``Rendezvous`` instead;
#: ``hold`` first waits until the test closes its ``HOLD_PORT`` service (or refuses it).
FUNCTION = (
    MEET
    + """
import os, socket, time


def record(run_id):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    address = (host, int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{run_id} 1\\n".encode())
        connection.recv(1)


def hold():
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    try:
        with socket.create_connection((host, int(os.environ["HOLD_PORT"])), timeout=60) as c:
            c.recv(16)
    except OSError:
        pass


def handler(event, context):
    print("ran", event["id"])
    if event.get("meet"):
        return {"met": meet()}
    if event.get("hold"):
        hold()
    time.sleep(0.2)
    record(event["id"])
    return {"id": event["id"]}
"""
)

#: What a sync caller may get while a worker dies: the answer, Lambda's error for an
#: environment lost with its worker (or no worker to try), or a throttle while the dead
#: worker's concurrency grant has not expired yet.
ALLOWED = {"ok", "ServiceException 500", "TooManyRequestsException 429"}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Cluster]:
    settings = {
        "LAMBDAD_QUEUE_ACK_WAIT": "3",  # a dead worker's events are delivered again after 3 s
        "LAMBDAD_TIME_SCALE": "0.02",  # throttled events: put back 0.02 s, doubling, 6 s at most
    }
    started = Cluster(tmp_path_factory.mktemp("cluster"), settings).start()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the test output says which network
        print(f"\n{started.describe()}")
    relayed = started.network.isolated and RELAYED_PORTS not in conftest.SERVICE_PORTS
    if relayed:  # the nodes' cells reach the test's services on the relayed ports only
        if relay_unavailable_reason() is not None:
            started.close()
            pytest.skip(f"functions cannot reach the test: {relay_unavailable_reason()}")
        conftest.SERVICE_PORTS.append(RELAYED_PORTS)
    try:
        yield started
    finally:
        if relayed:
            conftest.SERVICE_PORTS.remove(RELAYED_PORTS)
        started.close()


def logs_of(cluster: Cluster, name: str) -> str:
    """The function log lines kept in node ``name``'s own log store (what ran there)."""
    segments = cluster.server(name).data_dir / "logs" / "segments"
    texts = []
    for path in sorted(segments.glob("*.jsonl")) if segments.is_dir() else []:
        try:
            texts.append(path.read_text(errors="replace"))
        except FileNotFoundError:  # dropped meanwhile
            continue
    return "".join(texts)


def node_id(cluster: Cluster, name: str) -> str:
    return (cluster.server(name).data_dir / "node-id").read_text().strip()


def health(cluster: Cluster, name: str) -> str:
    return str(cluster.listing().get(node_id(cluster, name), {}).get("Health", "missing"))


def outcome_of(lam: Any, name: str, run_id: str) -> str:
    """Invoke ``name`` with the event ``{"id": run_id}``: ``ok`` for a 200 answering it,
    ``<Code> <status>`` for an error answer."""
    try:
        response = lam.invoke(FunctionName=name, Payload=json.dumps({"id": run_id}).encode())
    except ClientError as exc:
        error = exc.response
        return f"{error['Error']['Code']} {error['ResponseMetadata']['HTTPStatusCode']}"
    except BotoCoreError as exc:
        return f"no answer: {exc!r}"
    body = response["Payload"].read()
    answered = response["StatusCode"] == 200 and "FunctionError" not in response
    if answered and json.loads(body) == {"id": run_id}:
        return "ok"
    return f"wrong answer: {response['StatusCode']} {body!r}"


class Load:
    """Client threads invoking ``name`` through the api node until ``stop()``: ``sync``
    threads calling RequestResponse one after another, one thread sending Event invokes."""

    def __init__(self, cluster: Cluster, name: str, sync: int) -> None:
        self.cluster, self.name = cluster, name
        self.prefix = unique("run")
        self.outcomes: list[tuple[str, str]] = []  # (id, outcome) of every sync call
        self.accepted: list[str] = []  # ids of the events answered 202
        self.refused: list[str] = []  # anything else an Event invoke got
        self._stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._calls, args=(n,), daemon=True) for n in range(sync)
        ]
        self.threads.append(threading.Thread(target=self._events, daemon=True))

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def _calls(self, number: int) -> None:
        lam = self.cluster.api.client()
        count = 0
        while not self._stop.is_set():
            run_id = f"{self.prefix}-sync{number}-{count}"
            count += 1
            self.outcomes.append((run_id, outcome_of(lam, self.name, run_id)))
        lam.close()

    def _events(self) -> None:
        lam = self.cluster.api.client()
        count = 0
        while not self._stop.wait(0.05):  # about 15 events a second, paced, not synchronised
            run_id = f"{self.prefix}-event-{count}"
            count += 1
            try:
                response = lam.invoke(
                    FunctionName=self.name,
                    InvocationType="Event",
                    Payload=json.dumps({"id": run_id}).encode(),
                )
            except (ClientError, BotoCoreError) as exc:
                self.refused.append(f"{run_id}: {exc!r}")
                continue
            if response["StatusCode"] == 202:
                self.accepted.append(run_id)
            else:
                self.refused.append(f"{run_id}: {response['StatusCode']}")
        lam.close()

    def succeeded(self) -> int:
        """How many sync calls have been answered with their result so far."""
        return sum(1 for _, outcome in list(self.outcomes) if outcome == "ok")

    def stop(self, timeout: float) -> None:
        """Stop the load; every thread must end within ``timeout`` (no call hangs)."""
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout)
        assert not any(thread.is_alive() for thread in self.threads), "a call hangs"


def test_a_worker_killed_under_sync_and_async_load(cluster: Cluster) -> None:
    """A worker SIGKILLed while sync callers and Event invokes load a function of reserved
    concurrency 4 through the api node: the sync call running on it gets Lambda's
    ServiceException 500 for a lost environment, every other sync call is answered (its
    result, that error, or a 429 throttle while the dead worker's grant lasts), none hangs;
    the event running on it runs again on the survivor, and every event acknowledged 202 runs
    at least once (the queue delivers a dead worker's events again); once the dead worker's
    lease has run out, all 4 reserved slots run at once on the survivor (nothing of the dead
    worker is still counted); restarted on its data dir, the worker is listed up and runs
    invocations again.
    (AWS: a sync invoke that Lambda fails to run is ServiceException; async events are
    delivered at least once.)"""
    recorder, meeting = Recorder(), Rendezvous(parties=RESERVED)
    holding = Rendezvous(parties=1000)  # nobody is let through: closed after the kill
    lam = cluster.api.client()
    try:
        env = {
            **meeting.env,
            "RECORDER_PORT": str(recorder.port),
            "HOLD_PORT": str(holding.port),
        }
        name = create_function(lam, FUNCTION, env=env, Timeout=60)["FunctionName"]
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=RESERVED)
        # The calls that wait are of a function of their own, outside the reservation: they
        # never wait for a slot, and take none of the load's.
        holder = create_function(lam, FUNCTION, env=env, Timeout=60)["FunctionName"]
        for function in (name, holder):
            cluster.wait_until(
                lambda function=function: (
                    lam.get_function(FunctionName=function)["Configuration"]["State"] == "Active"
                ),
                30,
            )
        load = Load(cluster, name, sync=2).start()
        helds: list[Held] = []
        try:
            # Both workers run the load; one also runs an event and a sync call that wait in
            # the function: that worker dies under them.
            cluster.wait_until(
                lambda: all(f"ran {load.prefix}" in logs_of(cluster, w) for w in WORKERS), 30
            )
            held_event = f"{load.prefix}-held-event"
            response = lam.invoke(
                FunctionName=holder,
                InvocationType="Event",
                Payload=json.dumps({"id": held_event, "hold": 1}).encode(),
            )
            assert response["StatusCode"] == 202
            (dead,) = cluster.wait_until(lambda: ran_on(cluster, held_event), 30)
            (alive,) = set(WORKERS) - {dead}
            # The api node sends a call to the worker with the fewest calls of its own in
            # flight (the load's included): held calls until one runs there (those on the
            # survivor are let go after the kill).
            for number in range(4):
                helds.append(Held(cluster, holder, f"{load.prefix}-held{number}"))
                helds[-1].start()
                where = cluster.wait_until(lambda: ran_on(cluster, helds[-1].run_id), 30)
                if where == [dead]:
                    break
            assert where == [dead], f"no held call ran on {dead}"
            victim = node_id(cluster, dead)
            cluster.kill(dead)
            holding.close()  # the held calls on the survivor go on (and later holds at once)
            ran_at_kill, ok_at_kill = len(recorder.runs), load.succeeded()
            # The load goes on through the dead worker's lease and on the survivor, until
            # both sync calls and events have run there.
            cluster.wait_until(lambda: health(cluster, dead) == "gone", 30)
            cluster.wait_until(lambda: load.succeeded() >= ok_at_kill + 4, 30)
            cluster.wait_until(lambda: len(recorder.runs) >= ran_at_kill + 10, 30)
        finally:
            load.stop(timeout=30)
            for held in helds:
                held.join(timeout=30)

        # The call running on the dead worker: Lambda's error for a lost environment; those
        # held on the survivor are answered.
        *survived, cut = helds
        assert cut.error.get("Code") == "ServiceException", cut.error
        assert "execution environment was lost" in cut.error.get("Message", ""), cut.error
        assert all(held.answered for held in survived), [h.error for h in survived]
        # The event running on the dead worker is delivered again, and runs.
        cluster.wait_until(lambda: held_event in recorder.ids(), 30)
        assert load.refused == []
        wrong = [(run_id, o) for run_id, o in load.outcomes if o not in ALLOWED]
        assert wrong == [], wrong
        succeeded = {run_id for run_id, o in load.outcomes if o == "ok"}
        assert succeeded <= recorder.ids()
        assert len(load.accepted) >= 10
        cluster.wait_until(lambda: set(load.accepted) <= recorder.ids(), 45)

        # Nothing is left running or queued: the survivor's queue is empty (events are
        # acknowledged; one run twice would still hold a slot).
        survivor = node_id(cluster, alive)
        cluster.wait_until(lambda: cluster.listing()[survivor]["Load"].get("QueueDepth") == 0, 30)
        assert victim not in cluster.listed_up()

        # The reservation is whole again: 4 invocations at once, all on the survivor.
        answers = at_once(cluster, name, RESERVED)
        assert sorted(answers) == [f"met {n}" for n in range(1, RESERVED + 1)], answers

        # The killed worker, restarted on its data dir, rejoins and takes invocations again:
        # two invocations at once of a new function run one on each worker.
        cluster.restart(dead)
        cluster.wait_until(lambda: health(cluster, dead) == "up", 30)
        assert node_id(cluster, dead) == victim
        pair = Rendezvous(parties=2)
        try:
            # The api node reads the registry every second, and a worker that is just
            # starting may not listen yet: the first pair after the restart may go to the
            # survivor alone. Each round is a new function (no warm environment anywhere).
            env = {**pair.env, "RECORDER_PORT": str(recorder.port)}
            cluster.wait_until(lambda: ran_on_rejoined(cluster, lam, env, dead), 30)
        finally:
            pair.close()
    finally:
        lam.close()
        meeting.close()
        holding.close()
        recorder.close()
    assert set(cluster.listed_up()) == set(cluster.node_ids())


def ran_on_rejoined(cluster: Cluster, lam: Any, env: dict[str, str], rejoined: str) -> bool:
    """Two invocations at once of a new function (each waits for the other, so the api node
    sends the second to the least loaded worker, the one not running the first); whether
    one ran on the worker ``rejoined``."""
    name = create_function(lam, FUNCTION, env=env, Timeout=60)["FunctionName"]
    cluster.wait_until(
        lambda: lam.get_function(FunctionName=name)["Configuration"]["State"] == "Active", 30
    )
    answers = at_once(cluster, name, 2, prefix=name)
    assert len(answers) == 2
    assert all(a.startswith("met ") for a in answers), answers
    lines = [f"ran {name}-{n}" for n in range(2)]
    cluster.wait_until(  # each line is in the log store of the worker that ran it
        lambda: all(any(line in logs_of(cluster, w) for w in WORKERS) for line in lines), 30
    )
    return any(line in logs_of(cluster, rejoined) for line in lines)


def ran_on(cluster: Cluster, run_id: str) -> list[str]:
    """The workers whose log store says they ran ``run_id``."""
    return [w for w in WORKERS if f"ran {run_id}" in logs_of(cluster, w)]


class Held:
    """One sync call of ``name`` through the api node that waits (``hold``) in the function
    until the test's holding service closes (tried again while throttled); the error it got,
    if any, in ``error``."""

    def __init__(self, cluster: Cluster, name: str, run_id: str) -> None:
        self.cluster, self.name, self.run_id = cluster, name, run_id
        self.error: dict[str, str] = {}
        self.answered = False
        self._thread = threading.Thread(target=self._call, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _call(self) -> None:
        lam = self.cluster.api.client()
        payload = json.dumps({"id": self.run_id, "hold": 1}).encode()
        try:
            while True:  # until it runs: the load may hold all the slots
                try:
                    lam.invoke(FunctionName=self.name, Payload=payload)
                    self.answered = True
                except ClientError as exc:
                    if exc.response["Error"]["Code"] == "TooManyRequestsException":
                        threading.Event().wait(0.05)  # paced retries, as a client backs off
                        continue
                    self.error.update(exc.response["Error"])
                except BotoCoreError as exc:
                    self.error["Code"] = repr(exc)
                return
        finally:
            lam.close()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the held call hangs"


#: The workers of the module's cluster.
WORKERS = ("worker1", "worker2")


def at_once(cluster: Cluster, name: str, count: int, prefix: str = "meet") -> list[str]:
    """``count`` invocations of ``name`` at once that meet at its ``Rendezvous``: each one's
    ``met <number>``, or its error outcome."""
    answers: list[str] = []

    def call(number: int) -> None:
        client = cluster.api.client()
        try:
            payload = json.dumps({"id": f"{prefix}-{number}", "meet": 1}).encode()
            response = client.invoke(FunctionName=name, Payload=payload)
            body = json.loads(response["Payload"].read())
            answers.append(f"met {body['met']}" if "met" in body else f"wrong {body}")
        except (ClientError, BotoCoreError) as exc:
            answers.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=call, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers
