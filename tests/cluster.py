"""A three-node lambdad cluster for tests: real PostgreSQL and NATS servers, one ``lambdad
serve --role api`` and two ``--role worker`` on the same store and NATS URLs (docs/cluster.md,
"The test cluster").

As root, every node runs in a network namespace of its own, like a separate host: its own
loopback, an ``eth0`` with a private address, and a default route through a bridge in the
test's namespace that joins them all. PostgreSQL and NATS listen on the bridge's address; the
test reaches each node at its own address. Without root (or with ``LAMBDAD_TEST_CLUSTER_NETNS=0``)
the same cluster runs on loopback, every node on a port of its own; ``Cluster.describe()`` says
which, and the failure tests print it.

Names never clash with the Linux sandbox's own (docs/sandbox.md): its cells' bridges are
``lbd<hash>`` with a ``/22`` of ``10.222.0.0/16``, and their namespaces have no names; here the
bridge is ``lcb<tag>``, the node's namespaces ``lcn<tag><n>`` (``ip netns list``), the host ends
of their veths ``lcv<tag><n>``, and the subnet a free ``/24`` of ``10.229.0.0/16``. Every node
listens on a port no other node uses, so that ``tests/url_client.py`` finds a node by the port a
function URL names (``url_client.HOSTS``). A node's own cells get their bridge and nftables
table inside the node's namespace, where they are removed with it; one more table there
(``ip lambdad_test_relay``) relays the cells' connections on ``RELAYED_PORTS`` to the test's
services (``service_listener`` in tests/conftest.py binds one of those under ``--cluster``).

``Cluster.close()`` stops every process and removes every namespace, veth and the bridge,
also when a test failed (the fixtures call it; an ``atexit`` hook catches an interrupted run).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.error
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import url_client
from tests.conftest import (
    Server,
    free_port,
    shutdown_all,
    spawn_server,
    wait_healthy,
    wait_until,
)
from tests.nats_server import NatsServer
from tests.nats_server import unavailable_reason as nats_unavailable
from tests.postgres_server import PostgresServer
from tests.postgres_server import unavailable_reason as postgres_unavailable

#: Where the test networks' ``/24``s come from (the cells' pool is ``10.222.0.0/16``).
POOL = ipaddress.IPv4Network("10.229.0.0/16")
#: The ports each namespaced node relays from its cells to the test's namespace: what a
#: function connects to at its cells' gateway on these ports reaches the test's service
#: (``service_listener`` binds one of them under ``--cluster``). Below Linux's ephemeral range,
#: where lambdad's own sockets (the Runtime API's, the node's port) are.
RELAYED_PORTS = range(20000, 21000)
#: The cells' pool (docs/sandbox.md), whose gateways the relay takes connections to.
CELLS_POOL = "10.222.0.0/16"
#: How long a node's heartbeat counts (``LAMBDAD_NODE_LEASE``): short, so a killed node is
#: listed as gone within seconds.
LEASE = "1.5"


def unavailable_reason() -> str | None:
    """None when a cluster can be started here (PostgreSQL and NATS installed); else why not."""
    return postgres_unavailable() or nats_unavailable()


def namespaces_unavailable_reason() -> str | None:
    """None when nodes can have network namespaces of their own; else why they share loopback."""
    if os.environ.get("LAMBDAD_TEST_CLUSTER_NETNS", "1") == "0":
        return "LAMBDAD_TEST_CLUSTER_NETNS=0"
    if os.geteuid() != 0:
        return "not root"
    if _ip() is None:
        return "no ip command (Debian's iproute2)"
    return None


def relay_unavailable_reason() -> str | None:
    """None when namespaced nodes can relay their cells' connections to the test's services."""
    if _nft() is None:
        return "no nft command (Debian's nftables)"
    return None


def _nft() -> str | None:
    return shutil.which("nft", path=os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin")


def _ip() -> str | None:
    return shutil.which("ip", path=os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin")


@dataclass(frozen=True)
class Host:
    """Where one node runs: its address, and its network namespace's file (None: loopback)."""

    address: str
    netns: str | None = None
    name: str = "loopback"


class Network:
    """The bridge and the nodes' namespaces (or loopback, where namespaces cannot be made)."""

    def __init__(self) -> None:
        self.reason = namespaces_unavailable_reason()
        self.tag = uuid.uuid4().hex[:6]
        self.bridge = f"lcb{self.tag}"
        self.subnet: ipaddress.IPv4Network | None = None
        #: The test's own address as the nodes see it (the bridge's), where the databases are.
        self.gateway = "127.0.0.1"
        #: The live hosts' namespaces, by number (address ``.1 + number``, name ``lcn<tag><n>``).
        self._namespaces: dict[int, str] = {}
        self._closed = False

    @property
    def isolated(self) -> bool:
        return self.subnet is not None

    def describe(self) -> str:
        if self.subnet is None:
            return f"loopback, every node on 127.0.0.1 (no network namespaces: {self.reason})"
        return (
            f"network namespaces lcn{self.tag}<n>, on bridge {self.bridge} "
            f"{self.gateway}/{self.subnet.prefixlen}"
        )

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [_ip() or "ip", *args], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def open(self) -> None:
        """Make the bridge (as root); on any error, say why and fall back to loopback."""
        if self.reason is not None:
            return
        subnet = _free_subnet()
        gateway = str(subnet.network_address + 1)
        try:
            self._run("link", "add", self.bridge, "type", "bridge")
            self._run("addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", self.bridge)
            self._run("link", "set", self.bridge, "up")
        except OSError as exc:
            self.reason = str(exc)
            self.close()
            return
        self.subnet, self.gateway = subnet, gateway
        atexit.register(self.close)

    def host(self) -> Host:
        """A new host for a node: a namespace on the bridge with the next address."""
        if self.subnet is None:
            return Host("127.0.0.1")
        number = min(set(range(1, self.subnet.num_addresses - 2)) - set(self._namespaces))
        name, veth = f"lcn{self.tag}{number}", f"lcv{self.tag}{number}"
        address = str(self.subnet.network_address + 1 + number)
        self._namespaces[number] = name
        self._run("netns", "add", name)
        self._run("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        self._run("link", "set", veth, "master", self.bridge, "up")
        self._run("-n", name, "link", "set", "lo", "up")
        self._run("-n", name, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        self._run("-n", name, "link", "set", "eth0", "up")
        self._run("-n", name, "route", "add", "default", "via", self.gateway)
        if relay_unavailable_reason() is None:
            self._relay(name)
        return Host(address, f"/run/netns/{name}", name)

    def _relay(self, name: str) -> None:
        """In namespace ``name``: connections from the node's cells to their gateway on one of
        ``RELAYED_PORTS`` go to the test's namespace instead (DNAT; the node's own cells' table
        then forwards and masquerades them as any outbound connection of a cell)."""
        first, last = RELAYED_PORTS[0], RELAYED_PORTS[-1]
        rules = (
            "table ip lambdad_test_relay {\n"
            "  chain prerouting {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            f'    iifname "lbd*" ip daddr {CELLS_POOL} tcp dport {first}-{last} '
            f"dnat to {self.gateway}\n"
            "  }\n"
            "}\n"
        )
        done = subprocess.run(
            [_ip() or "ip", "netns", "exec", name, _nft() or "nft", "-f", "-"],
            input=rules,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise OSError(f"nft in {name}: {done.stderr.strip()}")

    def release(self, host: Host) -> None:
        """Remove ``host``'s veth pair and namespace once its node has ended (its number and
        address are then free for another host)."""
        number = next((n for n, name in self._namespaces.items() if name == host.name), None)
        if number is not None:
            del self._namespaces[number]
            for args in (("link", "del", f"lcv{self.tag}{number}"), ("netns", "del", host.name)):
                with contextlib.suppress(OSError):
                    self._run(*args)

    def close(self) -> None:
        """Remove the namespaces (their veths go with them) and the bridge; idempotent. The
        nodes must have ended first: a live process keeps its namespace alive."""
        if self._closed:
            return
        self._closed = True
        for name in self._namespaces.values():
            with contextlib.suppress(OSError):
                self._run("netns", "del", name)
        if self.reason is None or self.subnet is not None:
            with contextlib.suppress(OSError):
                self._run("link", "del", self.bridge)


def _free_subnet() -> ipaddress.IPv4Network:
    """A ``/24`` of ``POOL`` that no interface or route of the host uses."""
    done = subprocess.run(
        [_ip() or "ip", "-4", "route"], capture_output=True, text=True, timeout=30, check=False
    )
    used = []
    for line in done.stdout.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            used.append(ipaddress.IPv4Network(line.split()[0], strict=False))
    candidates = [
        net for net in POOL.subnets(new_prefix=24) if not any(net.overlaps(u) for u in used)
    ]
    return random.choice(candidates)


@dataclass
class Node:
    """One lambdad of the cluster: its name (``api``, ``worker1``, ...), role and host."""

    name: str
    role: str
    host: Host
    server: Server


class Cluster:
    """PostgreSQL, NATS and lambdad nodes (one api node, ``workers`` workers) on one network.

    ``postgres`` / ``network``: shared ones to use (``--cluster`` runs share them across the
    session); by default the cluster starts and closes its own. ``database``: the store's URL
    (by default a new database). ``nats``: a NATS server of an earlier cluster on the same data
    (started again on its port and JetStream store, and only stopped at the close: what the
    earlier cluster's nodes sent, their last log lines and queued events, is still there, as
    with a real cluster restarted under its NATS); by default a new one, closed with the
    cluster. ``api_data_dir``: the api node's data dir (to restart a cluster on the data of an
    earlier one).
    """

    def __init__(
        self,
        home: Path,
        settings: Mapping[str, str] | None = None,
        *,
        workers: int = 2,
        network: Network | None = None,
        postgres: PostgresServer | None = None,
        database: str | None = None,
        nats: NatsServer | None = None,
        api_data_dir: Path | None = None,
    ) -> None:
        self.home = home
        self.settings = dict(settings or {})
        self.workers = workers
        self.network = network or Network()
        self._own_network = network is None
        self.postgres = postgres
        self._own_postgres = postgres is None
        self.database = database
        self.api_data_dir = api_data_dir
        self.nats = nats
        self._own_nats = nats is None
        self.nodes: dict[str, Node] = {}
        self._closed = False

    # -- starting -------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start everything; returns once every node is listed as up by the api node."""
        atexit.register(self.close)
        try:
            self._start()
        except BaseException:
            self.close(check=False)
            raise
        return self

    def _start(self) -> None:
        if self._own_network:
            self.network.open()
        if self.postgres is None:
            self.postgres = PostgresServer(
                host=self.network.gateway, clients=_clients(self.network)
            )
            self.postgres.start()
        self.database = self.database or self.postgres.database()
        if self.nats is None:
            self.nats = NatsServer(self.network.gateway, monitor=True)
        self.nats.start()
        self._share_test_clock()
        # The workers first: one of them runs the schedules, whose test clock starts now. The
        # nodes start side by side (the store's migrations serialise them, as on real hosts
        # started together); each is waited for once all are on their way.
        for number in range(1, self.workers + 1):
            self.add(f"worker{number}", "worker", wait=False)
        self.add("api", "api", data_dir=self.api_data_dir, wait=False)
        self.nodes = {"api": self.nodes.pop("api"), **self.nodes}  # the api node first
        for node in self.nodes.values():
            wait_healthy(node.server)
        self.wait_until(self._formed, 30)

    def _share_test_clock(self) -> None:
        """A test clock (``LAMBDAD_SCHEDULER_CLOCK=<instant>,<speed>``) starts when lambdad
        starts; the cluster's nodes start one after another, so they are given the start of
        the first worker (the first node able to run the schedules, which it does at once) as
        the clock's origin (its third field, docs/schedules.md): one clock for all, whichever
        node holds the schedules, read as a single lambdad's from its start."""
        clock = self.settings.get("LAMBDAD_SCHEDULER_CLOCK", "")
        if clock.strip() and clock.count(",") < 2:
            instant, _, speed = clock.partition(",")
            origin = f"{time.time():.3f}"
            self.settings["LAMBDAD_SCHEDULER_CLOCK"] = f"{instant},{speed or 1},{origin}"

    def _formed(self) -> bool:
        """Whether the api node lists every node as up (or refuses to say: SigV4 mode)."""
        try:
            listed = {i for i, n in self.listing().items() if n["Health"] == "up"}
        except urllib.error.HTTPError as exc:
            return exc.code in (401, 403)
        except OSError:
            return False
        return listed == set(self.node_ids())

    def node_settings(self, role: str) -> dict[str, str]:
        """The test's settings for a node of ``role``, the URLs of a service on the test's
        loopback (``http://127.0.0.1:<port>``, moto) naming the test's address on the bridge."""
        assert self.nats is not None
        assert self.database is not None
        settings = {k: self.reaching(v) for k, v in self.settings.items()}
        return {
            "LAMBDAD_NODE_LEASE": LEASE,
            **settings,
            "LAMBDAD_STORE_URL": self.database,
            "LAMBDAD_NATS_URL": self.nats.url,
            "LAMBDAD_ROLE": role,
        }

    def reaching(self, url: str) -> str:
        """A URL of the test's loopback (``http://127.0.0.1:<port>``, ``amqp://...``) as the
        nodes reach it."""
        return url.replace("://127.0.0.1:", f"://{self.network.gateway}:")

    def add(
        self, name: str, role: str, *, data_dir: Path | None = None, wait: bool = True
    ) -> Server:
        """Start a node ``name`` of ``role`` on a new host (``api2``: a second api node);
        ``wait=False``: return before it answers (``wait_healthy``)."""
        home = self.home / name
        home.mkdir(parents=True, exist_ok=True)
        host = self.network.host()
        server = self._spawn(home, role, host, data_dir or home / "data", wait=wait)
        self.nodes[name] = Node(name, role, host, server)
        return server

    def _spawn(
        self,
        home: Path,
        role: str,
        host: Host,
        data_dir: Path,
        port: int | None = None,
        *,
        wait: bool = True,
    ) -> Server:
        if port is None and host.netns is not None:
            port = _unused_port()
            url_client.HOSTS[port] = host.address
        settings = self.node_settings(role)
        return spawn_server(
            home, settings, data_dir, host=host.address, netns=host.netns, port=port, wait=wait
        )

    # -- what tests use -------------------------------------------------------------------

    @property
    def api(self) -> Server:
        return self.nodes["api"].server

    def server(self, name: str) -> Server:
        return self.nodes[name].server

    def describe(self) -> str:
        nodes = ", ".join(f"{n.name} {n.server.endpoint}" for n in self.nodes.values())
        return f"cluster on {self.network.describe()}: {nodes}"

    def node_ids(self) -> dict[str, str]:
        """Node id -> node name, from each node's data dir."""
        return {
            (n.server.data_dir / "node-id").read_text().strip(): n.name
            for n in self.nodes.values()
            if (n.server.data_dir / "node-id").exists()
        }

    def listing(self, via: str = "api") -> dict[str, dict[str, Any]]:
        """``/_lambdad/cluster`` asked of node ``via``: node id -> record."""
        nodes = self.server(via).get_json("/_lambdad/cluster")["Nodes"]
        return {n["Id"]: n for n in nodes}

    def listed_up(self, via: str = "api") -> set[str]:
        """The ids node ``via`` lists as up (empty while it cannot answer)."""
        try:
            return {i for i, n in self.listing(via).items() if n["Health"] == "up"}
        except OSError:
            return set()

    def logs(self, tail: int = 4000) -> str:
        """Every node's log (the last ``tail`` characters of each), for failure messages."""
        parts = []
        for node in self.nodes.values():
            text = node.server.log()[-tail:]
            parts.append(f"==== {node.name} ({node.role}, {node.server.endpoint}) ====\n{text}")
        return "\n".join(parts)

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """``wait_until``, failing with the cluster's description and every node's log."""
        try:
            return wait_until(predicate, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}\n{self.logs()}") from None

    # -- faults ---------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL node ``name`` (as a machine that dies)."""
        self.server(name).stop(signal.SIGKILL)

    def terminate(self, name: str) -> int:
        """SIGTERM node ``name`` (a clean stop); its exit status."""
        return self.server(name).stop(signal.SIGTERM)

    def restart(self, name: str) -> Server:
        """Start node ``name`` again on its host, port and data dir (stopping it first if
        alive)."""
        node = self.nodes[name]
        if node.server.process.poll() is None:
            node.server.stop(signal.SIGTERM)
        home = node.server.log_path.parent
        old = node.server
        node.server = self._spawn(home, node.role, node.host, old.data_dir, old.port)
        return node.server

    def restart_postgres(self) -> None:
        """Stop PostgreSQL (a fast shutdown: every connection is cut) and start it again on
        its data and port."""
        assert self.postgres is not None
        self.postgres.stop()
        self.postgres.start()

    def restart_nats(self, sig: int = signal.SIGTERM) -> None:
        """Stop NATS with ``sig`` (SIGKILL: a crash) and start it again on its port and store."""
        assert self.nats is not None
        self.nats.stop(sig)
        self.nats.start()

    # -- stopping -------------------------------------------------------------------------

    def close(self, check: bool = True) -> None:
        """Stop every node (``check``: as ``shutdown`` does, failing on a node that exits
        badly or leaves processes behind, after everything is torn down), NATS, PostgreSQL
        when it is the cluster's own, and the network; idempotent."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        live = []
        for node in reversed(list(self.nodes.values())):
            node.server.cluster = None  # shutdown() of the api node would close us again
            if node.server.process.poll() is None:
                live.append(node)
        try:  # side by side, as ``shutdown`` of each would (every node is stopped and checked)
            if check:
                shutdown_all([node.server for node in live])
            else:
                for node in live:
                    node.server.stop(signal.SIGKILL)
        except AssertionError as exc:
            errors.append(str(exc))
        except Exception as exc:  # teardown goes on; reported below
            errors.append(repr(exc))
        if self.nats is not None:
            if self._own_nats:
                self.nats.close()
            else:
                self.nats.stop()
        if self._own_postgres and self.postgres is not None:
            self.postgres.close()
        if self._own_network:
            self.network.close()
        else:
            for node in self.nodes.values():
                self.network.release(node.host)
        if errors and check:
            raise AssertionError("cluster teardown:\n" + "\n".join(errors))


def _unused_port() -> int:
    """A port for a namespaced node: free on the test's loopback and used by no other node
    (``url_client`` finds a node by its port, as function URLs name only the port)."""
    while True:
        port = free_port()
        if port not in url_client.HOSTS:
            return port


def _clients(network: Network) -> str | None:
    return None if network.subnet is None else str(network.subnet)


# -- ``--cluster``: every launch_server is a cluster of its own, on shared servers --------------

_SHARED: dict[str, Any] = {}


def _shared() -> tuple[Network, PostgresServer]:
    """The session's network and PostgreSQL server for ``--cluster`` runs."""
    if not _SHARED:
        reason = unavailable_reason()
        if reason is not None:
            import pytest

            pytest.skip(f"no cluster can run here: {reason}")
        network = Network()
        network.open()
        _SHARED["network"] = network
        postgres = PostgresServer(host=network.gateway, clients=_clients(network))
        _SHARED["postgres"] = postgres
        postgres.start()
        _SHARED["databases"] = {}
        _SHARED["nats"] = {}
        _SHARED["clusters"] = {}
    return _SHARED["network"], _SHARED["postgres"]


def launch_cluster(
    tmp: Path, settings: Mapping[str, str] | None = None, data_dir: Path | None = None
) -> Server:
    """What ``launch_server`` returns under ``--cluster``: the api node of a new cluster
    (its own NATS and nodes, a database of its own on the session's PostgreSQL). A
    ``data_dir`` given again restarts on the same database, NATS server (its JetStream store)
    and nodes' data dirs."""
    network, postgres = _shared()
    data_dir = data_dir or tmp / "data"
    databases: dict[Path, str] = _SHARED["databases"]
    if data_dir not in databases:
        databases[data_dir] = postgres.database()
    servers: dict[Path, NatsServer] = _SHARED["nats"]
    if data_dir not in servers:
        servers[data_dir] = NatsServer(network.gateway, monitor=True)
    earlier: Cluster | None = _SHARED["clusters"].get(data_dir)
    if earlier is not None:  # its api node was stopped alone: the restart is the cluster's
        earlier.close()
    cluster = Cluster(
        data_dir.parent / f"cluster-of-{data_dir.name}",  # never under a prefix of data_dir
        settings,
        network=network,
        postgres=postgres,
        database=databases[data_dir],
        nats=servers[data_dir],
        api_data_dir=data_dir,
    ).start()
    cluster.api.cluster = cluster
    _SHARED["clusters"][data_dir] = cluster
    return cluster.api


def close_shared() -> None:
    """Close the session's ``--cluster`` servers and network (pytest's unconfigure)."""
    if _SHARED:
        for cluster in _SHARED["clusters"].values():
            cluster.close(check=False)
        for nats in _SHARED["nats"].values():
            nats.close()
        _SHARED["postgres"].close()
        _SHARED["network"].close()
        _SHARED.clear()
