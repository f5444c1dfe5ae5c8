"""Asynchronous invocations are durable: what got a 202 runs, even across a SIGKILL of lambdad."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import ROLE, Server, make_zip, unique, wait_until

#: A function that sleeps ``event["sleep"]`` seconds, then reports its request id (the event
#: id) and ``event["seq"]`` to the test's ``Recorder`` (so a run counts once it has finished).
RECORDING = """
import os, socket, time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    address = ("127.0.0.1", int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{context.aws_request_id} {event.get('seq', -1)}\\n".encode())
        connection.recv(1)
"""


class Recorder:
    """A loopback service that keeps every line functions send it, one line per connection."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="recorder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection, contextlib.suppress(OSError):
                connection.settimeout(10)
                line = connection.makefile("rb").readline().decode().split()
                if len(line) == 2:
                    self.runs.append((line[0], int(line[1])))
                connection.sendall(b"k")

    def ids(self) -> set[str]:
        return {request_id for request_id, _ in list(self.runs)}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(10)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    service = Recorder()
    yield service
    service.close()


def recording_function(client: Any, recorder: Recorder) -> str:
    name = unique("async")
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": RECORDING})},
        Timeout=60,
        Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
    )
    return name


def test_an_event_invoke_runs(server: Server, lam: Any, recorder: Recorder) -> None:
    """An Event invoke answers 202 with a request id, and the function then runs with that id."""
    name = recording_function(lam, recorder)
    response = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps({"seq": 1}).encode()
    )
    assert response["StatusCode"] == 202
    request_id = response["ResponseMetadata"]["RequestId"]
    wait_until(lambda: request_id in recorder.ids(), timeout=30)
    assert (request_id, 1) in recorder.runs


def test_legacy_invoke_async_is_accepted_and_runs(
    server: Server, lam: Any, recorder: Recorder
) -> None:
    """InvokeAsync answers 202 ``{"Status": 202}`` and the function runs."""
    name = recording_function(lam, recorder)
    response = lam.invoke_async(FunctionName=name, InvokeArgs=json.dumps({"seq": 7}).encode())
    assert response["Status"] == 202
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 202
    wait_until(lambda: any(seq == 7 for _, seq in list(recorder.runs)), timeout=30)


def test_no_accepted_event_is_lost_when_lambdad_is_killed(
    start_server: Callable[..., Server], recorder: Recorder
) -> None:
    """After a SIGKILL with events queued and running, a restart runs every accepted one."""
    total = 300
    srv = start_server()
    setup = srv.client()
    name = recording_function(setup, recorder)
    clients = threading.local()

    def fire(seq: int) -> str:
        if not hasattr(clients, "lam"):
            clients.lam = srv.client(max_pool_connections=4)
        payload = json.dumps({"seq": seq, "sleep": 0.5}).encode()
        response = clients.lam.invoke(FunctionName=name, InvocationType="Event", Payload=payload)
        assert response["StatusCode"] == 202
        return str(response["ResponseMetadata"]["RequestId"])

    with ThreadPoolExecutor(16) as pool:
        accepted = dict(zip(pool.map(fire, range(total)), range(total), strict=True))
    assert len(accepted) == total
    # Kill with some events done, some running and most still queued.
    wait_until(lambda: len(recorder.ids()) >= 20, timeout=60)
    srv.stop(signal.SIGKILL)
    ran_before_kill = recorder.ids()
    assert len(ran_before_kill & set(accepted)) < total, "the kill should find events unrun"

    again = start_server(data_dir=srv.data_dir)
    wait_until(lambda: set(accepted) <= recorder.ids(), timeout=120, interval=0.1)
    seqs = {seq for request_id, seq in list(recorder.runs) if request_id in accepted}
    assert seqs == set(range(total))
    assert all(accepted[request_id] == seq for request_id, seq in list(recorder.runs))
    wait_until(lambda: again.get_json("/_lambdad/health")["status"] == "ok")
