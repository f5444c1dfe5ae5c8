"""Concurrency exact across the nodes of a cluster (docs/cluster.md, issue 16 part 4): two
lambdads on one PostgreSQL database hold the function's reservation and the account's limit
together, summed over both, and a node killed while holding slots holds them only until its
lease runs out. AWS enforces both limits over its whole fleet with the same 429 and Reason."""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from tests.conftest import Rendezvous, Server, invoke_json, wait_until
from tests.postgres_server import PostgresServer
from tests.test_concurrency import ACCOUNT, RESERVED, WAITER, release, throttle_of

#: The node registry's lease, which the concurrency grants share: long beside the few
#: milliseconds between a kill and the next invoke, short for the test's wait.
LEASE = "4"


def two_nodes(
    start: Callable[..., Server], postgres: PostgresServer, **settings: str
) -> tuple[Server, Server]:
    url = postgres.database()
    env = {"LAMBDAD_STORE_URL": url, "LAMBDAD_NODE_LEASE": LEASE, **settings}
    return start(env), start(env)


def burst(
    clients: list[Any], name: str, service: Rendezvous, each: int
) -> tuple[list[dict[str, Any]], list[Any]]:
    """``each`` concurrent invokes of ``name`` through every client at once; once all but the
    runs have been throttled and the runs wait at ``service``, release them: (throttles, run
    results)."""
    total = each * len(clients)
    with ThreadPoolExecutor(total) as pool:
        futures: list[Future[Any]] = [
            pool.submit(invoke_json, client, name, {}) for client in clients for _ in range(each)
        ]

        def settled() -> bool:
            throttled = sum(f.done() and f.exception() is not None for f in futures)
            return throttled + service.count >= total and service.count >= 1

        wait_until(settled, timeout=90)
        throttles = [throttle_of(f) for f in futures if f.done()]
        release(service)
        ran = [f.result(timeout=60)[1] for f in futures if f.exception(timeout=60) is None]
    return throttles, ran


def test_a_reservation_holds_across_two_nodes_and_a_killed_node_frees_it_after_its_lease(
    start_server: Callable[..., Server],
    postgres: PostgresServer,
    new_function: Any,
    rendezvous: Callable[[int], Rendezvous],
) -> None:
    """Reserved concurrency 2 and four invokes at once, two through each node: exactly two
    run, two get 429 with the reservation's Reason. Then with a reservation of 1 held by an
    invoke on one node, the other node refuses; that node SIGKILLed, the other still refuses
    until the dead node's lease has run out, then runs the function."""
    one, two = two_nodes(start_server, postgres)
    clients = [one.client(), two.client()]
    service = rendezvous(3)
    name = str(
        new_function(WAITER, client=clients[0], Environment={"Variables": service.env})[
            "FunctionName"
        ]
    )
    clients[0].put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    wait_until(
        lambda: (
            clients[1]
            .get_function_concurrency(FunctionName=name)
            .get("ReservedConcurrentExecutions")
            == 2
        )
    )
    throttles, ran = burst(clients, name, service, 2)
    assert [t["reason"] for t in throttles] == [RESERVED] * 2
    assert sorted(r["met"] for r in ran) == [1, 2]

    clients[1].put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    wait_until(
        lambda: (
            clients[0]
            .get_function_concurrency(FunctionName=name)
            .get("ReservedConcurrentExecutions")
            == 1
        )
    )
    service.parties = 2
    with ThreadPoolExecutor(1) as pool:
        # The slots of the burst linger on their nodes for a moment: try until one runs.
        def holding() -> bool:
            before = service.count
            future = pool.submit(invoke_json, clients[0], name, {})
            wait_until(lambda: future.done() or service.count > before, timeout=60)
            if future.done():
                assert throttle_of(future)["reason"] == RESERVED
                return False
            return True

        wait_until(holding, timeout=60)
        with ThreadPoolExecutor(1) as other:
            assert throttle_of(other.submit(clients[1].invoke, FunctionName=name))["reason"] == (
                RESERVED
            )
            one.stop(signal.SIGKILL)
            # The dead node's grant is still live: its slot is not the other node's yet.
            assert throttle_of(other.submit(clients[1].invoke, FunctionName=name))["reason"] == (
                RESERVED
            )
    service.parties = 1

    refusals: list[str | None] = []

    def runs() -> bool:
        try:
            invoke_json(clients[1], name, {})
        except ClientError as exc:
            refusals.append(exc.response.get("Reason"))
            return False
        return True

    wait_until(runs, timeout=60)
    assert set(refusals) <= {RESERVED}


def test_the_account_limit_holds_across_two_nodes(
    start_server: Callable[..., Server],
    postgres: PostgresServer,
    new_function: Any,
    rendezvous: Callable[[int], Rendezvous],
) -> None:
    """An account limit of 2 and four invokes at once of a function with no reservation, two
    through each node: exactly two run, two get 429 with the account's Reason (and doctor
    says the node counts on the shared ledger)."""
    one, two = two_nodes(start_server, postgres, LAMBDAD_CONCURRENCY_LIMIT="2")
    clients = [one.client(), two.client()]
    told = one.get_json("/_lambdad/doctor")["node"]["concurrency"]
    assert told.startswith("shared ledger in the store"), told
    service = rendezvous(3)
    name = str(
        new_function(WAITER, client=clients[0], Environment={"Variables": service.env})[
            "FunctionName"
        ]
    )
    throttles, ran = burst(clients, name, service, 2)
    assert [t["reason"] for t in throttles] == [ACCOUNT] * 2
    assert sorted(r["met"] for r in ran) == [1, 2]
