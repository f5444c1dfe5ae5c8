"""The network walls of the Linux sandbox's cells (issue 11, items 1, 3 and 4), tried from inside.

Each test runs a real function in a real cell and has it try an escape: accept a connection
from the host, reach a host loopback service or lambdad's API on the host's loopback, send
mail, open a raw socket, reach a destination the egress policy denies. What Lambda allows must
keep working: outbound TCP and UDP to another host (a server in a network namespace of its
own, standing in for a host of the user's LAN), DNS, lambdad's endpoint as lambdad hands it to
the cell, extensions listening on a port of their own. Skipped where the walls are not built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cells import Host, parent_of
from tests.conftest import (
    MEET,
    Rendezvous,
    Server,
    create_function,
    invoke_json,
    make_zip,
    unique,
    wait_until,
)

pytestmark = pytest.mark.root

LINUX = {"LAMBDAD_SANDBOX": "linux"}

#: One function for every probe: ``event["do"]`` says which.
PROBE = """
import errno, json, os, socket, urllib.request

LISTENER = None


def gateway():
    return os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]


def outcome(error):
    return "refused" if isinstance(error, OSError) else "error"


def tcp(host, port):
    try:
        with socket.create_connection((host, port), timeout=5) as connection:
            return "ok " + connection.recv(64).decode()
    except OSError as error:
        return f"failed {error.errno}"


def udp(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        try:
            sock.sendto(b"ping", (host, port))
            return "ok " + sock.recv(64).decode()
        except OSError as error:
            return f"failed {error.errno}"


def own_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((gateway(), 9))
        return sock.getsockname()[0]


def handler(event, context):
    global LISTENER
    action = event["do"]
    if action == "listen":
        LISTENER = socket.create_server(("0.0.0.0", 0))
        LISTENER.setblocking(False)
        return {"ip": own_address(), "port": LISTENER.getsockname()[1]}
    if action == "accepted":
        try:
            LISTENER.accept()
        except BlockingIOError:
            return False
        return True
    if action == "tcp":
        return {label: tcp(gateway() if host == "GATEWAY" else host, port)
                for label, host, port in event["targets"]}
    if action == "udp":
        return udp(event["host"], event["port"])
    if action == "raw":
        try:
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        except PermissionError:
            return "EPERM"
        return "created"
    if action == "endpoint":
        url = os.environ["AWS_ENDPOINT_URL_LAMBDA"] + "/_lambdad/health"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return {"url": url, "health": json.loads(reply.read())}
    if action == "read":
        return open(event["path"]).read()
    if action == "ipv6":
        lines = open("/proc/net/if_inet6").read().splitlines()
        return sorted([line.split()[0], line.split()[-1]] for line in lines)
    if action == "arp":
        with urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL_LAMBDA"] + "/_lambdad/health"):
            pass
        for line in open("/proc/net/arp").read().splitlines()[1:]:
            fields = line.split()
            if fields[0] == gateway():
                return fields[3]
        return None
    if action == "dns":
        return socket.gethostbyname(event["name"])
    raise ValueError(action)
"""

#: An external extension that binds ``EXTENSION_PORT`` on the cell's loopback and says whether
#: it could, in ``/tmp/bound`` (read by ``BOUND_APP``).
BINDING = f"""#!{os.path.realpath(sys.executable)}
import json, os, socket, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
try:
    held = socket.create_server(("127.0.0.1", int(os.environ["EXTENSION_PORT"])))
    result = "bound"
except OSError as error:
    result = f"failed {{error.errno}}"
with open("/tmp/bound", "w") as handle:
    handle.write(result)
request = urllib.request.Request(api + "/register", json.dumps({{"events": []}}).encode(),
                                 {{"Lambda-Extension-Name": "binding"}}, method="POST")
ext_id = urllib.request.urlopen(request).headers["Lambda-Extension-Identifier"]
urllib.request.urlopen(urllib.request.Request(
    api + "/event/next", headers={{"Lambda-Extension-Identifier": ext_id}}))
"""
BOUND_APP = """
def handler(event, context):
    with open("/tmp/bound") as handle:
        return handle.read()
"""

#: The server of the stand-in LAN host: TCP on ``PORT``, ``PORT + 1000`` and 25 says hello,
#: UDP on ``PORT`` echoes.
LAN_SERVER = """
import socket, sys, threading
port = int(sys.argv[1])
def tcp(listener):
    while True:
        connection, _ = listener.accept()
        connection.sendall(b"hello from the lan")
        connection.close()
for number in (port, port + 1000, 25):
    listener = socket.create_server(("0.0.0.0", number))
    threading.Thread(target=tcp, args=(listener,), daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", port))
print("ready", flush=True)
while True:
    data, peer = udp.recvfrom(64)
    udp.sendto(b"echo " + data, peer)
"""


@dataclasses.dataclass
class LanHost:
    """A server in a network namespace of its own, reached from the host through a veth."""

    address: str
    port: int


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def lan_host() -> Iterator[LanHost]:
    """A stand-in for another host of the user's network: ``ip netns add`` plus a veth."""
    if shutil.which("ip") is None:
        pytest.skip("no ip command")
    tag = uuid.uuid4().hex[:8]
    namespace, near = f"lbdlan{tag}", f"lbdl{tag}"
    octet = int(tag[:2], 16)
    host_side, lan_side = f"10.223.{octet}.1", f"10.223.{octet}.2"
    port = 7000 + int(tag[2:4], 16)
    _ip("netns", "add", namespace)
    server = None
    try:
        _ip("link", "add", near, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("addr", "add", f"{host_side}/30", "dev", near)
        _ip("link", "set", near, "up")
        for command in (
            ("link", "set", "lo", "up"),
            ("addr", "add", f"{lan_side}/30", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
            ("route", "add", "default", "via", host_side),
        ):
            _ip("-n", namespace, *command)
        server = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", LAN_SERVER, str(port)],
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        yield LanHost(lan_side, port)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", near)
        _ip("netns", "del", namespace)


def walls_of(server: Server) -> dict[str, str]:
    sandbox: dict[str, str] = server.get_json("/_lambdad/doctor")["sandbox"]
    return sandbox


def require_walls(server: Server) -> None:
    sandbox = walls_of(server)
    if sandbox["kind"] != "linux":
        pytest.skip(f"the shared lambdad runs the {sandbox['kind']!r} sandbox")
    if not sandbox.get("network namespace", "").startswith("active"):
        pytest.skip(f"no network walls here: {sandbox.get('network namespace')}")


@pytest.fixture
def probe(server: Server, lam: Any) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """A ``PROBE`` function on the shared server: call it with an event, get its answer."""
    require_walls(server)
    name = create_function(
        lam, PROBE, env={"AWS_ENDPOINT_URL_LAMBDA": server.endpoint}, Timeout=30
    )["FunctionName"]

    def call(event: dict[str, Any]) -> Any:
        response, body = invoke_json(lam, name, event)
        assert "FunctionError" not in response, body
        return body

    yield call
    lam.delete_function(FunctionName=name)


def connects(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), 5):
            return True
    except OSError:
        return False


def failed(answer: str) -> bool:
    return answer.startswith("failed ")


# ------------------------------------------------------------------------------------ tests


def test_doctor_shows_the_walls(server: Server) -> None:
    """``lambdad doctor`` lists the cells' network namespace, port 25 and the egress policy."""
    require_walls(server)
    sandbox = walls_of(server)
    assert "inbound refused" in sandbox["network namespace"]
    assert sandbox["outbound port 25"] == "blocked"
    assert sandbox["egress policy"].startswith("active")


def test_nothing_outside_the_cell_can_connect_to_a_function_listening(
    probe: Callable[[dict[str, Any]], Any],
) -> None:
    """A function listening on 0.0.0.0 accepts nothing from the host (Lambda: inbound
    connections are blocked)."""
    where = probe({"do": "listen"})
    for address in (where["ip"], "127.0.0.1"):
        assert not connects(address, where["port"]), address
    assert probe({"do": "accepted"}) is False


def test_host_loopback_services_and_lambdads_own_port_are_out_of_reach(
    probe: Callable[[dict[str, Any]], Any], server: Server
) -> None:
    """A service on the host's loopback, one on every host address and lambdad's API on its
    host address are all refused to a function; the endpoint lambdad hands the cell works."""
    with (
        socket.create_server(("127.0.0.1", 0)) as loopback,
        socket.create_server(("0.0.0.0", 0)) as everywhere,
    ):
        targets = [
            ["loopback service", "127.0.0.1", loopback.getsockname()[1]],
            ["service at the gateway", "GATEWAY", everywhere.getsockname()[1]],
            ["lambdad on loopback", "127.0.0.1", server.port],
        ]
        answers = probe({"do": "tcp", "targets": targets})
    assert all(failed(answer) for answer in answers.values()), answers
    reached = probe({"do": "endpoint"})
    assert reached["health"]["status"] == "ok"
    assert "127.0.0.1" not in reached["url"]


def test_outbound_tcp_and_udp_reach_another_host(
    probe: Callable[[dict[str, Any]], Any], lan_host: LanHost
) -> None:
    """TCP and UDP to another host of the network work, as on Lambda."""
    answers = probe({"do": "tcp", "targets": [["lan", lan_host.address, lan_host.port]]})
    assert answers == {"lan": "ok hello from the lan"}
    assert probe({"do": "udp", "host": lan_host.address, "port": lan_host.port}) == "ok echo ping"


def test_outbound_port_25_is_blocked(
    probe: Callable[[dict[str, Any]], Any], lan_host: LanHost
) -> None:
    """TCP port 25 is blocked (Lambda blocks it), though the host itself reaches that server."""
    with socket.create_connection((lan_host.address, 25), 5) as direct:
        assert direct.recv(64) == b"hello from the lan"
    answers = probe({"do": "tcp", "targets": [["smtp", lan_host.address, 25]]})
    assert answers == {"smtp": f"failed {errno.EHOSTUNREACH}"}


def test_raw_sockets_are_refused(probe: Callable[[dict[str, Any]], Any]) -> None:
    """A raw socket cannot be opened (Lambda: ``ping`` does not work)."""
    assert probe({"do": "raw"}) == "EPERM"


def test_cells_have_no_ipv6_address_but_loopbacks(
    server: Server, probe: Callable[[dict[str, Any]], Any]
) -> None:
    """A cell's only IPv6 address is its loopback's ``::1`` (Lambda gives IPv6 only to
    dual-stack VPC functions), and the host ends of the cells' veth pairs have none either."""
    assert probe({"do": "ipv6"}) == [["00000000000000000000000000000001", "lo"]]
    bridge = walls_of(server)["network namespace"].split("bridge ")[1].split()[0]
    ports = {path.name for path in Path(f"/sys/class/net/{bridge}/brif").iterdir()}
    assert ports
    with open("/proc/net/if_inet6") as handle:
        addressed = {line.split()[-1] for line in handle.read().splitlines()}
    assert not ports & addressed


def test_dns_resolves_as_on_the_host(probe: Callable[[dict[str, Any]], Any]) -> None:
    """A name the host resolves, the function resolves to the same address."""
    try:
        expected = socket.gethostbyname("pypi.org")
    except OSError:
        pytest.skip("the host itself cannot resolve names")
    assert probe({"do": "dns", "name": "pypi.org"}) == expected


def test_egress_deny_rule_is_enforced(
    start_server: Callable[..., Server], lan_host: LanHost
) -> None:
    """``LAMBDAD_EGRESS_DENY`` refuses its destination (TCP and UDP) to every cell; other
    destinations stay reachable."""
    srv = start_server({**LINUX, "LAMBDAD_EGRESS_DENY": f"{lan_host.address}/32:{lan_host.port}"})
    require_walls(srv)
    assert f"deny {lan_host.address}/32:{lan_host.port}" in walls_of(srv)["egress policy"]
    client = srv.client()
    name = create_function(client, PROBE, Timeout=30)["FunctionName"]
    other = lan_host.port + 1000
    targets = [["named", lan_host.address, lan_host.port], ["other", lan_host.address, other]]
    _, answers = invoke_json(client, name, {"do": "tcp", "targets": targets})
    assert answers == {
        "named": f"failed {errno.EHOSTUNREACH}",
        "other": "ok hello from the lan",
    }
    _, udp = invoke_json(
        client, name, {"do": "udp", "host": lan_host.address, "port": lan_host.port}
    )
    assert failed(udp)


def test_cells_read_the_resolv_conf_lambdad_is_given(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """With ``LAMBDAD_CELL_RESOLV_CONF`` a function reads that file as ``/etc/resolv.conf``
    (how a host whose own resolver is on loopback gives cells one they can reach), and
    ``lambdad doctor`` says so."""
    upstream = [s for s in Path("/etc/resolv.conf").read_text().split() if s[:1].isdigit()]
    resolv = tmp_path / "resolv.conf"
    text = f"nameserver {upstream[0] if upstream else '192.0.2.53'}\noptions ndots:3\n"
    resolv.write_text(text)
    srv = start_server({**LINUX, "LAMBDAD_CELL_RESOLV_CONF": str(resolv)})
    require_walls(srv)
    assert walls_of(srv)["dns"].startswith(f"cells read {resolv} as their /etc/resolv.conf")
    client = srv.client()
    name = create_function(client, PROBE, Timeout=30)["FunctionName"]
    _, answer = invoke_json(client, name, {"do": "read", "path": "/etc/resolv.conf"})
    assert answer == text


def test_egress_allow_list_is_all_a_cell_reaches(
    start_server: Callable[..., Server], lan_host: LanHost
) -> None:
    """With ``LAMBDAD_EGRESS_ALLOW`` a cell reaches only what it names (port 25 stays blocked)."""
    srv = start_server({**LINUX, "LAMBDAD_EGRESS_ALLOW": f"{lan_host.address}/32:{lan_host.port}"})
    require_walls(srv)
    client = srv.client()
    name = create_function(client, PROBE, Timeout=30)["FunctionName"]
    other = lan_host.port + 1000
    targets = [["named", lan_host.address, lan_host.port], ["other", lan_host.address, other]]
    _, answers = invoke_json(client, name, {"do": "tcp", "targets": targets})
    assert answers == {
        "named": "ok hello from the lan",
        "other": f"failed {errno.EHOSTUNREACH}",
    }


def test_two_cells_extensions_listen_on_the_same_port(server: Server, lam: Any) -> None:
    """Extensions of two environments bind the same loopback port: each cell has its own
    loopback (as each Lambda environment has), so neither fails."""
    require_walls(server)
    layer = lam.publish_layer_version(
        LayerName=unique("binding"),
        Content={
            "ZipFile": make_zip({"extensions/binding": BINDING}, {"extensions/binding": 0o755}),
        },
    )["LayerVersionArn"]
    port = 20000 + uuid.uuid4().int % 20000
    names = [
        create_function(
            lam, BOUND_APP, Layers=[layer], env={"EXTENSION_PORT": str(port)}, Timeout=30
        )["FunctionName"]
        for _ in range(2)
    ]
    try:
        for name in names:  # the first environment stays warm, its extension holding the port
            response, body = invoke_json(lam, name, {})
            assert "FunctionError" not in response, body
            assert body == "bound"
    finally:
        for name in names:
            lam.delete_function(FunctionName=name)


def test_without_the_nft_command_cells_share_the_network_and_doctor_says_so(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """Where the walls cannot be built (no ``nft``), lambdad starts anyway, cells share the
    host's network, and ``lambdad doctor`` and the log say why."""
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("no ip command")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "ip").symlink_to(ip)
    kept = [d for d in os.environ["PATH"].split(":") if d and not (Path(d) / "nft").exists()]
    srv = start_server({**LINUX, "PATH": ":".join([str(tools), *kept])})
    if walls_of(srv)["kind"] != "linux":
        pytest.skip("the Linux sandbox cannot run here")
    line = walls_of(srv)["network namespace"]
    assert line.startswith("not active: cells share the host's network")
    assert "nft" in line
    wait_until(lambda: "no network walls" in srv.log())
    client = srv.client()
    name = create_function(client, PROBE, Timeout=30)["FunctionName"]
    _, where = invoke_json(client, name, {"do": "listen"})
    assert where["ip"] == "127.0.0.1"


def test_a_warm_cell_keeps_its_gateway_while_other_cells_come_and_go(
    probe: Callable[[dict[str, Any]], Any], server: Server, lam: Any
) -> None:
    """The bridge keeps one hardware address while cells' veths are added and removed, so a
    warm cell's ARP entry for its gateway never goes stale (it would stall for ~30 s)."""
    first = probe({"do": "arp"})
    churn = create_function(lam, PROBE, Timeout=30)["FunctionName"]
    try:
        for _ in range(6):
            lam.update_function_configuration(FunctionName=churn, Description=uuid.uuid4().hex)
            wait_until(
                lambda: (
                    lam.get_function(FunctionName=churn)["Configuration"]["LastUpdateStatus"]
                    == "Successful"
                )
            )
            invoke_json(lam, churn, {"do": "raw"})
    finally:
        lam.delete_function(FunctionName=churn)
    bridge = walls_of(server)["network namespace"].split("bridge ")[1].split()[0]
    shown = subprocess.run(["ip", "-o", "link", "show", bridge], capture_output=True, text=True)
    assert first in shown.stdout
    assert probe({"do": "arp"}) == first


def test_a_function_narrows_the_egress_policy_for_its_own_cells(
    server: Server, lam: Any, lan_host: LanHost
) -> None:
    """A function's ``LAMBDAD_EGRESS_DENY`` variable refuses its destination to that
    function's cells only; the rules go when its environments do."""
    require_walls(server)
    denied = {"LAMBDAD_EGRESS_DENY": f"{lan_host.address}/32:{lan_host.port}"}
    narrowed = create_function(lam, PROBE, env=denied, Timeout=30)["FunctionName"]
    other = create_function(lam, PROBE, Timeout=30)["FunctionName"]
    targets = [["lan", lan_host.address, lan_host.port]]
    table = walls_of(server)["network namespace"].split("table inet ")[1].rstrip(")")

    def own_chains() -> int:
        listed = subprocess.run(
            ["nft", "list", "table", "inet", table], capture_output=True, text=True
        ).stdout
        return listed.count("chain fn_")

    try:
        _, answers = invoke_json(lam, narrowed, {"do": "tcp", "targets": targets})
        assert answers == {"lan": f"failed {errno.EHOSTUNREACH}"}
        _, answers = invoke_json(lam, other, {"do": "tcp", "targets": targets})
        assert answers == {"lan": "ok hello from the lan"}
        assert own_chains() == 1
    finally:
        lam.delete_function(FunctionName=narrowed)
        lam.delete_function(FunctionName=other)
    wait_until(lambda: own_chains() == 0)


def test_the_plain_sandbox_says_it_builds_no_network_walls(
    start_server: Callable[..., Server],
) -> None:
    """The plain-process sandbox names every network wall it cannot build in ``lambdad
    doctor``: functions there share the host's network."""
    sandbox = walls_of(start_server({"LAMBDAD_SANDBOX": "process"}))
    assert sandbox["kind"] == "process"
    assert sandbox["network namespace"].startswith("not active: needs the Linux sandbox")
    assert sandbox["outbound port 25"].startswith("not blocked")
    assert sandbox["egress policy"].startswith("not active")


def bridge_and_table(srv: Server) -> tuple[str, str]:
    line = walls_of(srv)["network namespace"]
    return line.split("bridge ")[1].split()[0], line.split("table inet ")[1].rstrip(")")


def present(bridge: str, table: str) -> tuple[bool, bool]:
    link = subprocess.run(["ip", "link", "show", bridge], capture_output=True)
    listed = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True)
    return link.returncode == 0, listed.returncode == 0


def test_a_restart_removes_what_a_killed_lambdad_and_its_helper_left(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    """With lambdad and its sandbox helper both SIGKILLed, the cells' bridge and table stay
    until the next lambdad on the same data dir starts, which removes them."""
    srv = start_server(LINUX, data_dir=tmp_path / "kept")
    require_walls(srv)
    bridge, table = bridge_and_table(srv)
    os.kill(Host(srv).spawner(), signal.SIGKILL)
    srv.stop(signal.SIGKILL)
    assert present(bridge, table) == (True, True)
    again = start_server(LINUX, data_dir=tmp_path / "kept")
    assert present(bridge, table) == (False, False)
    assert bridge_and_table(again)[0] != bridge


def test_a_killed_lambdad_leaves_no_bridge_or_table_behind(
    start_server: Callable[..., Server],
) -> None:
    """When lambdad is killed (SIGKILL), its sandbox helper removes the cells' bridge and
    firewall table as it ends the cells."""
    srv = start_server(LINUX)
    require_walls(srv)
    bridge, table = bridge_and_table(srv)
    assert present(bridge, table) == (True, True)
    srv.stop(signal.SIGKILL)
    wait_until(lambda: present(bridge, table) == (False, False), timeout=30)


#: Waits until all its runs are up at once, then tries a host service and the LAN host.
BURST_PROBE = (
    MEET
    + """
import json, socket


def handler(event, context):
    meet()
    gateway = _os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    answers = {}
    for name, host, port in event["targets"]:
        try:
            with socket.create_connection((gateway if host == "GATEWAY" else host, port), 5):
                answers[name] = "ok"
        except OSError as error:
            answers[name] = f"failed {error.errno}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((gateway, 9))
        return {"address": sock.getsockname()[0], "answers": answers}
"""
)


def test_cells_made_in_a_burst_join_networks_made_ahead_one_each(
    start_server: Callable[..., Server], lan_host: LanHost
) -> None:
    """Cells made beyond the spares join network namespaces lambdad made ahead of need: each
    live cell still has a namespace and an address of its own, and the walls hold in it."""
    srv = start_server({**LINUX, "LAMBDAD_CELL_NETWORKS_AHEAD": "4"})
    require_walls(srv)
    host = Host(srv)
    wait_until(lambda: "4 of 4 cells' networks" in host.made_ahead() and host.settled(), 30)
    client = srv.client()
    service = Rendezvous(6)
    with socket.create_server(("0.0.0.0", 0)) as unmarked:
        targets = [
            ["service at the gateway", "GATEWAY", unmarked.getsockname()[1]],
            ["lan", lan_host.address, lan_host.port],
        ]
        try:
            name = create_function(
                client, BURST_PROBE, env=service.env, Timeout=60, MemorySize=128
            )["FunctionName"]
            event = {"targets": targets}
            with ThreadPoolExecutor(6) as pool:
                runs = list(pool.map(lambda _: invoke_json(client, name, event), range(6)))
            cells = {path.name for path in host.cell_dirs()}
            bridge = walls_of(srv)["network namespace"].split("bridge ")[1].split()[0]
            ports = {entry.name for entry in Path(f"/sys/class/net/{bridge}/brif").iterdir()}
            spawners = set(host.spawners())
            inits = [pid for pid in host.inits() if parent_of(pid) in spawners]
            namespaces = [namespace_of(pid) for pid in inits]
        finally:
            service.close()
            client.close()
    assert all("FunctionError" not in response for response, _ in runs), runs
    answers = [body for _, body in runs]
    assert len({answer["address"] for answer in answers}) == 6
    for answer in answers:
        assert failed(answer["answers"]["service at the gateway"]), answer
        assert answer["answers"]["lan"] == "ok", answer
    namespaces = [namespace for namespace in namespaces if namespace]
    assert len(set(namespaces)) == len(namespaces) >= 6
    assert os.readlink("/proc/self/ns/net") not in namespaces
    # A cell that made its own network named its host end after itself; the others joined one
    # made ahead (the two spares made at start found none ready yet).
    made_own = {cell for cell in cells if f"lv{cell[:12]}" in ports}
    assert len(cells - made_own) >= 4, (cells, ports)


def namespace_of(pid: int) -> str:
    """The network namespace of process ``pid`` (empty if it has gone)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""
