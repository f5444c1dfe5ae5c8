"""A burst of queued (``Event``) invocations starts a function's environments a few at a time
(``pool.PACED_STARTS``), the rest waiting for one to come back (docs/async-delivery.md)."""

from __future__ import annotations

import socket
from typing import Any

from lambdad.runtime.pool import PACED_STARTS
from tests.conftest import MEET, Rendezvous, Server, invoke_json, wait_until

#: Each environment's init meets the test's rendezvous and keeps the connection's number.
MEETING_AT_INIT = MEET + "\n\nNUMBER = meet()\n\ndef handler(event, context):\n    return NUMBER\n"


def test_a_burst_of_events_starts_paced_environments_and_a_sync_invoke_is_not_held(
    server: Server, lam: Any, new_function: Any
) -> None:
    """Ten Event invokes of a function with no environment start only PACED_STARTS of them
    while those are starting; a synchronous invoke meanwhile starts one of its own at once
    (AWS starts an environment for each concurrent synchronous request; how its async pollers
    scale up is not documented)."""
    rendezvous = Rendezvous(parties=PACED_STARTS + 1)
    try:
        name = str(new_function(MEETING_AT_INIT, env=rendezvous.env, Timeout=30)["FunctionName"])
        for _ in range(10):
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
