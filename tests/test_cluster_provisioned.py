"""Provisioned environments spread over the nodes of a cluster (docs/cluster.md, issue 16 part
4): a config put through one node is provisioned by every node that runs environments, each
its share, summing to the config; either node reports the whole config READY; a node gone,
the other takes up its share. AWS spreads a config's environments over its fleet unseen."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from tests.conftest import Server, invoke_json, wait_healthy, wait_until
from tests.postgres_server import PostgresServer
from tests.test_provisioned_concurrency import PROVISIONED, published

#: A short lease, so a killed node is gone within seconds.
LEASE = "1.5"


def environments(server: Server) -> int:
    """The environments ``server`` runs, from its own record in the registry."""
    nodes = server.get_json("/_lambdad/cluster")["Nodes"]
    return int(next(n for n in nodes if n["Self"])["Load"]["Environments"])


def status(client: Any, name: str) -> tuple[str, int]:
    got = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    return got["Status"], got["AllocatedProvisionedConcurrentExecutions"]


def test_a_config_is_spread_over_two_nodes_and_the_survivor_takes_up_a_dead_nodes_share(
    start_server: Callable[..., Server], postgres: PostgresServer, new_function: Any
) -> None:
    """Provisioned concurrency 2 on version 1, put through one node: each of the two nodes
    initialises one environment and serves the version from it, both report the config READY
    with 2 allocated; the second node SIGKILLed, the first initialises the second environment
    once the dead node's lease has run out, and reports 2 allocated."""
    url = postgres.database()
    env = {"LAMBDAD_STORE_URL": url, "LAMBDAD_NODE_LEASE": LEASE}
    one, two = start_server(env, wait=False), start_server(env, wait=False)
    for server in (one, two):  # started side by side
        wait_healthy(server)
    clients = [one.client(), two.client()]
    wait_until(lambda: len(one.get_json("/_lambdad/cluster")["Nodes"]) == 2)
    name = published(clients[0], new_function)
    clients[0].put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    wait_until(lambda: environments(one) == 1 and environments(two) == 1, timeout=60)
    for client in clients:
        wait_until(lambda c=client: status(c, name) == ("READY", 2), timeout=30)
        assert invoke_json(client, name, {}, Qualifier="1")[1]["init"] == PROVISIONED

    two.stop(signal.SIGKILL)
    wait_until(lambda: environments(one) == 2, timeout=60)
    assert status(clients[0], name) == ("READY", 2)
