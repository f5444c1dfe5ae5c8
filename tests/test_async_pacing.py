"""A burst of queued (``Event``) invocations starts a function's environments a few at a time
(``pool.PACED_STARTS``), the rest waiting for one to come back (docs/async-delivery.md)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from lambdad.runtime.pool import PACED_STARTS
from tests.conftest import MEET, Rendezvous, Server, invoke_json, wait_until

#: Pacing guards one host's CPU: each worker of a cluster paces its own starts, and which worker
#: takes each queued event is the queue's choice (docs/async-delivery.md, "Bursts start
#: environments a few at a time"; docs/cluster.md, "Limits across nodes").
PER_HOST = pytest.mark.no_cluster(
    "pacing counts one host's environment starts (PACED_STARTS is that host's CPU count); on a "
    "cluster each worker paces its own, and which worker takes each queued event varies"
)

#: Each environment's init meets the test's rendezvous and keeps the connection's number.
MEETING_AT_INIT = MEET + "\n\nNUMBER = meet()\n\ndef handler(event, context):\n    return NUMBER\n"


@PER_HOST
def test_a_burst_of_events_starts_paced_environments_and_a_sync_invoke_is_not_held(
    server: Server, lam: Any, new_function: Any
) -> None:
    """More Event invokes than PACED_STARTS, of a function with no environment, start only
    PACED_STARTS environments while those are starting; a synchronous invoke meanwhile starts
    one of its own at once (AWS starts an environment for each concurrent synchronous
    request; how its async pollers scale up is not documented)."""
    rendezvous = Rendezvous(parties=PACED_STARTS + 1)
    try:
        name = str(new_function(MEETING_AT_INIT, env=rendezvous.env, Timeout=30)["FunctionName"])
        for _ in range(PACED_STARTS + 8):
            assert lam.invoke(FunctionName=name, InvocationType="Event")["StatusCode"] == 202
        # The paced starts are in their init, waiting at the rendezvous.
        wait_until(lambda: rendezvous.count >= PACED_STARTS, timeout=30)
        # The synchronous invoke's own environment is the next to arrive: the queued events
        # started no more while those were starting.
        _, number = invoke_json(lam, name)
        assert number == PACED_STARTS + 1
    finally:
        rendezvous.parties = 1  # let any later start through
        host, port = "127.0.0.1", rendezvous.port
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.recv(16)
        rendezvous.close()


#: Init and handler each meet a rendezvous of their own: one counts starts, the other runs.
#: The init also takes two seconds (a slow-init function, not a synchronisation): a start is
#: then clearly longer than the wait for the warm environment, even on a loaded machine.
COUNTING = """
import os, socket, time


def meet(variable):
    host = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    with socket.create_connection((host, int(os.environ[variable])), timeout=30) as connection:
        return int(connection.recv(16) or 0)


meet("STARTS_PORT")
time.sleep(2.0)


def handler(event, context):
    meet("RUNS_PORT")
    return None
"""


@PER_HOST
def test_a_burst_of_short_events_is_served_by_the_warm_environment(
    lam: Any, new_function: Any, rendezvous: Any
) -> None:
    """Twenty Event invokes of a quick, slow-to-start function with one warm environment run
    in it, each waiting for it to come back (sooner than a start would take), rather than
    start runtimes of their own (before this, PACED_STARTS more started while it served them).
    How AWS's async pollers scale up is not documented."""
    starts, runs = rendezvous(), rendezvous()
    variables = {"STARTS_PORT": str(starts.port), "RUNS_PORT": str(runs.port)}
    name = str(new_function(COUNTING, env=variables, Timeout=30)["FunctionName"])
    invoke_json(lam, name)
    assert (starts.count, runs.count) == (1, 1)
    for _ in range(20):
        assert lam.invoke(FunctionName=name, InvocationType="Event")["StatusCode"] == 202
    wait_until(lambda: runs.count >= 21, timeout=60)
    assert starts.count == 1
