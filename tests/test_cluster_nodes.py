"""Roles and the node registry (docs/cluster.md, issue 16 part 1): lambdads on one PostgreSQL
database register themselves, heartbeat, and are listed by ``lambdad cluster`` from any of
them; a killed node is gone after the lease, a restarted one rejoins under its id, a stopped
one leaves at once; a worker serves no API, and a role other than ``all`` needs the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    FAST_SETTINGS,
    Server,
    shutdown,
    shutdown_all,
    spawn_server,
    wait_healthy,
    wait_until,
)
from tests.postgres_server import PostgresServer

LAMBDAD = [sys.executable, "-m", "lambdad.cli.main"]
#: A short lease, so a killed node is gone within seconds (it beats every third of it).
LEASE = "1.5"


def cluster_of(server: Server) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = server.get_json("/_lambdad/cluster")["Nodes"]
    return nodes


def by_id(server: Server) -> dict[str, dict[str, Any]]:
    return {n["Id"]: n for n in cluster_of(server)}


def node_id_of(server: Server) -> str:
    return (server.data_dir / "node-id").read_text().strip()


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAMBDAD, *args, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        env=server.env,
        check=False,
    )


def start_node(start: Callable[..., Server], url: str, role: str, **kw: Any) -> Server:
    settings = {"LAMBDAD_STORE_URL": url, "LAMBDAD_ROLE": role, "LAMBDAD_NODE_LEASE": LEASE}
    return start(settings, **kw)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[tuple[Server, Server]]:
    """An api node and a worker on a database of their own, for the tests that only look at
    them (one pair for the module: each start and stop is a second or two)."""
    url = postgres.database()
    tmp = tmp_path_factory.mktemp("pair")
    started: list[Server] = []

    def start(settings: dict[str, str]) -> Server:
        home = tmp / f"srv{len(started)}"
        home.mkdir()
        started.append(spawn_server(home, settings, wait=False))
        return started[-1]

    try:
        api, worker = start_node(start, url, "api"), start_node(start, url, "worker")
        for server in (api, worker):  # started side by side
            wait_healthy(server)
        yield api, worker
    finally:
        shutdown_all(started)


def test_an_api_node_and_a_worker_list_each_other(pair: tuple[Server, Server]) -> None:
    """Two lambdads on one database, an api node and a worker, are both listed as up with
    their role, address, capacity and load by ``lambdad cluster`` run against either."""
    api, worker = pair
    ids = {node_id_of(api): "api", node_id_of(worker): "worker"}
    for server in (api, worker):
        nodes = wait_until(lambda s=server: len(cluster_of(s)) == 2 and cluster_of(s))
        assert {n["Id"]: n["Role"] for n in nodes} == ids
        assert all(n["Health"] == "up" for n in nodes)
        assert [n["Self"] for n in nodes] == [True, False]  # the node asked comes first
        for n in nodes:
            assert n["Capacity"]["Cpus"] >= 1
            assert n["Capacity"]["MemoryMB"] > 0
            assert "python3.12" in n["Capacity"]["Runtimes"]
            assert set(n["Load"]) == {"Environments", "QueueDepth"}
        addresses = {n["Id"]: n["Address"] for n in nodes}
        assert addresses[node_id_of(api)] == api.endpoint
        assert addresses[node_id_of(worker)] == worker.endpoint
        listed = cli(server, "cluster")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:3] == ["ID", "ROLE", "HEALTH"]
        rows = {line.split()[0].rstrip("*"): line.split() for line in lines[1:]}
        assert {i: row[1] for i, row in rows.items()} == ids
        assert all(row[2] == "up" for row in rows.values())
    doctor = cli(worker, "doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert f"  id: {node_id_of(worker)}" in doctor.stdout
    assert "  role: worker" in doctor.stdout


def test_a_worker_serves_no_api_and_an_api_node_serves_it(pair: tuple[Server, Server]) -> None:
    """A worker answers health, doctor, the node list and Prometheus' ``/metrics`` (its own
    figures: the invocations run there), and refuses the Lambda API with 421 Misdirected
    Request naming the roles that serve it; an api node serves the API."""
    api, worker = pair
    assert worker.get_json("/_lambdad/health") == {"status": "ok"}
    assert worker.get_json("/_lambdad/doctor")["node"]["role"] == "worker"
    with urllib.request.urlopen(f"{worker.endpoint}/metrics", timeout=10) as scraped:
        assert b"lambdad_environments" in scraped.read()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{worker.endpoint}/2015-03-31/functions/", timeout=10)
    assert refused.value.code == 421
    assert b"worker" in refused.value.read()
    lam = api.client()
    try:
        assert lam.list_functions()["Functions"] == []
    finally:
        lam.close()


def test_a_killed_node_is_gone_after_the_lease_and_rejoins_under_its_id(
    start_server: Callable[..., Server], postgres: PostgresServer
) -> None:
    """A SIGKILLed node stays listed but as gone once its heartbeat is older than the lease;
    restarted on its data dir it registers again under the same id and is up."""
    url = postgres.database()
    api = start_node(start_server, url, "api", wait=False)
    worker = start_node(start_server, url, "worker", wait=False)
    for server in (api, worker):  # started side by side
        wait_healthy(server)
    worker_id = node_id_of(worker)
    wait_until(lambda: by_id(api).get(worker_id, {}).get("Health") == "up")
    worker.stop(signal.SIGKILL)
    gone = wait_until(lambda: by_id(api)[worker_id]["Health"] == "gone" and by_id(api), 15)
    assert gone[worker_id]["HeartbeatAge"] > float(LEASE)
    assert gone[node_id_of(api)]["Health"] == "up"  # its own heartbeat keeps going
    listed = cli(api, "cluster")
    assert "gone (" in listed.stdout

    again = start_node(start_server, url, "worker", data_dir=worker.data_dir)
    assert node_id_of(again) == worker_id
    back = wait_until(lambda: by_id(api)[worker_id]["Health"] == "up" and by_id(api), 15)
    assert set(back) == {node_id_of(api), worker_id}
    assert back[worker_id]["Address"] == again.endpoint


def test_a_stopped_node_leaves_at_once(
    start_server: Callable[..., Server], postgres: PostgresServer
) -> None:
    """A SIGTERMed node deregisters as it stops: the next listing no longer has it."""
    url = postgres.database()
    api = start_node(start_server, url, "api", wait=False)
    worker = start_node(start_server, url, "worker", wait=False)
    for server in (api, worker):  # started side by side
        wait_healthy(server)
    worker_id = node_id_of(worker)
    wait_until(lambda: worker_id in by_id(api))
    shutdown(worker)
    assert set(by_id(api)) == {node_id_of(api)}


@pytest.mark.parametrize("role", ["worker", "api"])
def test_a_cluster_role_without_a_store_url_is_refused(tmp_path: Path, role: str) -> None:
    """``lambdad serve --role worker`` (or api) with no store URL exits at once with a message
    naming the setting it needs, and starts nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAD_")}
    env.update(FAST_SETTINGS)
    done = subprocess.run(
        [*LAMBDAD, "serve", "--role", role, "--port", "0", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert f"role {role} needs a shared store" in done.stderr
    assert "LAMBDAD_STORE_URL" in done.stderr
    assert not (tmp_path / "d").exists()


def test_a_single_node_lists_itself(server: Server) -> None:
    """With no cluster settings, lambdad is one node of role all, listed alone and up, and
    doctor names its id and role."""
    (node,) = cluster_of(server)
    assert (node["Role"], node["Health"], node["Self"]) == ("all", "up", True)
    assert node["Id"] == node_id_of(server)
    assert server.get_json("/_lambdad/doctor")["node"]["role"] == "all"
