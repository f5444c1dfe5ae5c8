"""Failures of a real three-node cluster (docs/cluster.md, issue 16 part 6): one api node and
two workers, as root each in a network namespace of its own (``tests/cluster.py``), on real
PostgreSQL and NATS servers. The api node killed (clients go on through another api node),
PostgreSQL restarted (writes and invokes work again, nothing acknowledged is lost), NATS
restarted (every node reconnects), a killed worker restarted on its data dir (it rejoins).

One cluster serves the whole module: every test leaves it whole (all nodes up) for the next.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.cluster import Cluster, unavailable_reason
from tests.conftest import create_function, invoke_json, unique
from tests.forkserver import enter_network

pytestmark = [
    pytest.mark.slow,
    pytest.mark.no_cluster("starts a cluster of its own"),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

#: Answers its event, wrapped.
ECHO = "def handler(event, context):\n    return {'echo': event}\n"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("cluster")).start()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the test output says which network
        print(f"\n{started.describe()}")
    try:
        yield started
    finally:
        started.close()


def attempt(call: Callable[[], Any]) -> Any:
    """``call()``, or None when the cluster refused or could not answer it (yet)."""
    try:
        return call() or True
    except (ClientError, BotoCoreError):
        return None


def functions_of(lam: Any) -> set[str]:
    pages = lam.get_paginator("list_functions").paginate()
    return {f["FunctionName"] for page in pages for f in page["Functions"]}


def echoes(lam: Any, name: str) -> bool:
    """Whether ``name`` answers an invoke with its event."""
    marker = unique("event")
    response, body = invoke_json(lam, name, {"m": marker})
    return response["StatusCode"] == 200 and body == {"echo": {"m": marker}}


def make_function(cluster: Cluster, lam: Any) -> str:
    name: str = create_function(lam, ECHO)["FunctionName"]
    cluster.wait_until(
        lambda: lam.get_function(FunctionName=name)["Configuration"]["State"] == "Active", 30
    )
    return name


def all_up(cluster: Cluster) -> None:
    """Wait until the api node lists every node of the cluster as up."""
    cluster.wait_until(lambda: cluster.listed_up() == set(cluster.node_ids()), 30)


def test_clients_go_on_through_another_api_node_when_one_is_killed(cluster: Cluster) -> None:
    """With the api node SIGKILLed, a client retrying on a second api node is answered: it
    sees the functions made through the first, invokes them and makes new ones; the killed
    node restarted on its data dir serves again. (AWS: one endpoint over a fleet; here the
    client, or a load balancer, picks another api node.)"""
    second = cluster.add("api2", "api")
    first = cluster.api
    lam, other = first.client(), second.client()
    made = [make_function(cluster, lam) for _ in range(2)]
    cluster.kill("api")
    with pytest.raises(BotoCoreError):  # the node is gone: no answer at all
        lam.list_functions()
    assert set(made) <= functions_of(other)
    assert all(echoes(other, name) for name in made)
    later = make_function(cluster, other)
    assert echoes(other, later)

    again = cluster.restart("api").client()
    assert {*made, later} <= functions_of(again)
    assert echoes(again, later)
    all_up(cluster)


def test_postgres_restarted_under_the_cluster_recovers_without_losing_writes(
    cluster: Cluster,
) -> None:
    """PostgreSQL stopped and started again under running nodes: creates and invokes work
    again through the api node, every write acknowledged before the restart is still there
    (a function, its concurrency setting), and every node heartbeats again."""
    lam = cluster.api.client()
    before = make_function(cluster, lam)
    lam.put_function_concurrency(FunctionName=before, ReservedConcurrentExecutions=3)
    assert echoes(lam, before)

    cluster.restart_postgres()

    after = cluster.wait_until(lambda: attempt(lambda: make_function(cluster, lam)), 60)
    assert echoes(lam, after)
    assert echoes(lam, before)
    assert {before, after} <= functions_of(lam)
    concurrency = lam.get_function_concurrency(FunctionName=before)
    assert concurrency["ReservedConcurrentExecutions"] == 3
    all_up(cluster)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "crashed"])
def test_nats_restarted_every_node_reconnects(cluster: Cluster, sig: signal.Signals) -> None:
    """NATS stopped (or killed) and started again on its port: every node's connection comes
    back (the NATS server lists one client per node, from the node's own address when nodes
    have namespaces of their own), and the cluster still serves and lists everyone."""
    assert cluster.nats is not None
    expected = connected_nodes(cluster)
    cluster.wait_until(lambda: clients_of(cluster) == expected, 30)

    cluster.restart_nats(sig)

    cluster.wait_until(lambda: clients_of(cluster) == expected, 30)
    lam = cluster.api.client()
    assert echoes(lam, make_function(cluster, lam))
    all_up(cluster)


def connected_nodes(cluster: Cluster) -> list[tuple[str, str]]:
    """(connection name, address) of every live node, sorted: what NATS should list."""
    return sorted(
        (f"lambdad-{node.role}", node.host.address)
        for node in cluster.nodes.values()
        if node.server.process.poll() is None
    )


def clients_of(cluster: Cluster) -> list[tuple[str, str]]:
    assert cluster.nats is not None
    try:
        found = cluster.nats.connections()
    except OSError:  # restarting
        return []
    return sorted((c.get("name", ""), c["ip"]) for c in found)


def test_a_stopped_worker_leaves_at_once_and_rejoins(cluster: Cluster) -> None:
    """A SIGTERMed worker exits cleanly and is missing from the very next listing and from
    NATS's clients; started again on its data dir it is listed up and connected again."""
    worker_id = (cluster.server("worker2").data_dir / "node-id").read_text().strip()
    assert cluster.terminate("worker2") == 0
    assert worker_id not in cluster.listing()
    expected = connected_nodes(cluster)
    cluster.wait_until(lambda: clients_of(cluster) == expected, 30)

    cluster.restart("worker2")
    cluster.wait_until(lambda: cluster.listing().get(worker_id, {}).get("Health") == "up", 30)
    expected = connected_nodes(cluster)
    cluster.wait_until(lambda: clients_of(cluster) == expected, 30)


def test_a_killed_worker_restarted_on_its_data_dir_rejoins(cluster: Cluster) -> None:
    """A SIGKILLed worker is listed as gone once its lease has passed; started again on its
    data dir and host it rejoins under the same id, up, at the same address, and reconnects
    to NATS."""
    worker = cluster.server("worker1")
    worker_id = (worker.data_dir / "node-id").read_text().strip()
    address = cluster.listing()[worker_id]["Address"]
    cluster.kill("worker1")
    cluster.wait_until(lambda: cluster.listing()[worker_id]["Health"] == "gone", 30)

    again = cluster.restart("worker1")
    assert (again.data_dir / "node-id").read_text().strip() == worker_id
    cluster.wait_until(lambda: cluster.listing()[worker_id]["Health"] == "up", 30)
    assert cluster.listing()[worker_id]["Address"] == address
    expected = connected_nodes(cluster)
    cluster.wait_until(lambda: clients_of(cluster) == expected, 30)
    all_up(cluster)


def test_nodes_reach_each_other_and_the_harness_leaves_nothing_behind(tmp_path: Path) -> None:
    """From the api node's host, a worker answers at the address it registered (as routing
    between nodes will need); a cluster closed removes its nodes' processes, namespaces, veths
    and bridge."""
    small = Cluster(tmp_path, workers=1).start()
    api, worker = small.nodes["api"], small.nodes["worker1"]
    script = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read())"
    done = subprocess.run(
        [sys.executable, "-c", script, f"{worker.server.endpoint}/_lambdad/health"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=None if api.host.netns is None else partial(enter_network, api.host.netns),
    )
    assert done.returncode == 0, done.stderr
    assert '"ok"' in done.stdout
    names = [node.host.name for node in small.nodes.values() if node.host.netns]
    bridge = small.network.bridge if small.network.isolated else None
    small.close()
    assert all(not Path(f"/run/netns/{name}").exists() for name in names)
    if bridge is not None:
        assert not Path(f"/sys/class/net/{bridge}").exists()
    assert all(node.server.process.poll() is not None for node in small.nodes.values())
