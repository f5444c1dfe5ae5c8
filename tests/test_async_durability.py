"""Asynchronous invocations are durable: what got a 202 runs, even across a SIGKILL of lambdad."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import Recorder, Server, create_function, unique, wait_until

#: A function that sleeps ``event["sleep"]`` seconds, then reports its request id (the event
#: id) and ``event["seq"]`` to the test's ``Recorder`` (so a run counts once it has finished).
RECORDING = """
import os, socket, time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    address = (os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0], int(os.environ["RECORDER_PORT"]))
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(f"{context.aws_request_id} {event.get('seq', -1)}\\n".encode())
        connection.recv(1)
"""


def recording_function(client: Any, recorder: Recorder) -> str:
    env = {"RECORDER_PORT": str(recorder.port)}
    created = create_function(client, RECORDING, name=unique("async"), Timeout=60, env=env)
    return str(created["FunctionName"])


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


@pytest.mark.slow
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
