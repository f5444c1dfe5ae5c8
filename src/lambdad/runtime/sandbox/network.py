"""The cells' network (Linux sandbox): one bridge per lambdad, one veth pair per cell, nftables.

Every cell gets a network namespace of its own with its own loopback and one interface,
``eth0``, the far end of a veth pair whose near end is a port of a bridge lambdad owns
(``lbd<hash>``, isolated ports: cells never reach each other). The bridge has
the cells' gateway address; the cells' traffic to anything else is masqueraded out of the
host's own interfaces. One nftables table per lambdad (``inet lambdad_<hash>``) builds the
walls:

- nothing from outside (the host or the network) opens a connection into a cell (lambdad's
  Telemetry API pushes to an extension through a socket made in the cell: ``CellSockets``);
- a cell opens connections to the host only to sockets of lambdad that carry ``MARK`` (each
  environment's Runtime, Extensions and Telemetry API port, and the relay to lambdad's own
  AWS endpoint); every other host address and port is refused, and the host's loopback is
  not even in the cell's namespace;
- outbound TCP and UDP to other hosts works, except port 25 and what the egress policy
  (``egress_deny``, ``egress_allow``, narrowed per function by its ``LAMBDAD_EGRESS_DENY``
  and ``LAMBDAD_EGRESS_ALLOW`` variables) refuses; no IPv6 (the cells have none).

The cell's side (veth, address, route) is set up by the cell's init while the cell waits as
a spare (``cellinit.py``), never on a cold start's path. Where the walls cannot be built (no
``nft``, no bridge support) cells share the host's network as before: ``reason`` says why,
``lambdad doctor`` shows it, and lambdad logs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import enum
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: The firewall mark of lambdad's own sockets that cells may talk to (and that may talk to
#: cells): "lamb".
MARK = 0x6C616D62
#: Where every lambdad's cell subnet is taken from, one ``/22`` (1,022 cells) each.
POOL = ipaddress.IPv4Network("10.222.0.0/16")
SUBNET_PREFIX = 22
#: Outbound TCP port refused to every cell, as on Lambda (SMTP).
BLOCKED_PORTS = (25,)
#: Function environment variables that narrow the egress policy for that function's cells
#: (same syntax as the settings; they can only take away, never add).
FUNCTION_DENY = "LAMBDAD_EGRESS_DENY"
FUNCTION_ALLOW = "LAMBDAD_EGRESS_ALLOW"


class NetworkState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    SHARED = "shared"
    CLOSED = "closed"


@dataclasses.dataclass(frozen=True, slots=True)
class EgressRule:
    """Destinations by network, and optionally one port (TCP and UDP)."""

    network: ipaddress.IPv4Network
    port: int | None = None

    def __str__(self) -> str:
        return f"{self.network}:{self.port}" if self.port is not None else str(self.network)

    def nft(self) -> str:
        match = f"ip daddr {self.network}"
        if self.port is not None:
            match += f" meta l4proto {{ tcp, udp }} th dport {self.port}"
        return match


def parse_rules(text: str) -> tuple[EgressRule, ...]:
    """``"10.0.0.0/8, 192.168.1.7:443"`` as rules; ``ValueError`` saying which entry is wrong."""
    rules = []
    for raw in text.replace(";", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        address, _, port = entry.partition(":")
        try:
            network = ipaddress.IPv4Network(address, strict=False)
            number = int(port) if port else None
        except ValueError as exc:
            raise ValueError(f"egress rule {entry!r}: expected CIDR[:port] ({exc})") from exc
        if number is not None and not 1 <= number <= 65535:
            raise ValueError(f"egress rule {entry!r}: port must be 1-65535")
        rules.append(EgressRule(network, number))
    return tuple(rules)


@dataclasses.dataclass(frozen=True, slots=True)
class CellLink:
    """One cell's end of the network: what its init sets up, and how lambdad knows it."""

    address: str
    prefix: int
    gateway: str
    bridge: str
    host_if: str

    def request(self) -> dict[str, object]:
        """The ``net`` part of the cell's spawn request (``cellinit.py``)."""
        return {
            "address": self.address,
            "prefix": self.prefix,
            "gateway": self.gateway,
            "bridge": self.bridge,
            "host_if": self.host_if,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Narrowing:
    """One function's own egress rules, applied to its cells on top of lambdad's."""

    deny: tuple[EgressRule, ...]
    allow: tuple[EgressRule, ...]


def function_narrowing(env: Mapping[str, str]) -> Narrowing | None:
    """The function's ``LAMBDAD_EGRESS_DENY``/``_ALLOW`` variables; None without either.
    ``OSError`` (the function's init fails, saying why) when one cannot be read."""
    deny, allow = env.get(FUNCTION_DENY, ""), env.get(FUNCTION_ALLOW, "")
    if not deny.strip() and not allow.strip():
        return None
    try:
        return Narrowing(parse_rules(deny), parse_rules(allow))
    except ValueError as exc:
        raise OSError(f"the function's {FUNCTION_DENY}/{FUNCTION_ALLOW}: {exc}") from exc


HOST_RESOLV_CONF = Path("/etc/resolv.conf")
#: systemd-resolved's list of the upstream servers its loopback stub forwards to.
UPSTREAM_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")


def _loopback(server: str) -> bool:
    return server.startswith("127.") or server == "::1"


def cells_resolv_conf(
    setting: str, host: Path = HOST_RESOLV_CONF, upstream: Path = UPSTREAM_RESOLV_CONF
) -> Path | None:
    """The file to bind over a cell's ``/etc/resolv.conf``, or None for the host's own: the
    setting when given; else, where the host's names only loopback resolvers (unreachable
    from a cell), the upstream servers' file when it names one a cell can reach."""
    if setting:
        return Path(setting)
    servers = nameservers(host)
    if not servers or not all(_loopback(s) for s in servers):
        return None
    if any(not _loopback(s) for s in nameservers(upstream)):
        return upstream
    return None


def nameservers(path: Path = HOST_RESOLV_CONF) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            found.append(parts[1])
    return found


class CellNetwork:
    """The bridge, the cells' addresses and the nftables table of one lambdad."""

    def __init__(
        self,
        runs_dir: Path,
        *,
        enabled: bool = True,
        allow: Sequence[EgressRule] = (),
        deny: Sequence[EgressRule] = (),
        resolv_conf: str = "",
    ) -> None:
        # Per lambdad process, not per data dir: a killed lambdad's helper removes its bridge
        # and table after ending its cells, maybe after a new lambdad on the same data dir
        # has made its own.
        tag = f"{zlib.crc32(f'{runs_dir}:{os.getpid()}:{time.time_ns()}'.encode()):08x}"
        #: Written as the bridge's alias, with lambdad's pid: a later lambdad on this data
        #: dir removes what one killed with its helper left (``_reclaim``).
        self._owner = f"lambdad {zlib.crc32(str(runs_dir).encode()):08x}"
        self.bridge = f"lbd{tag}"
        self.table = f"lambdad_{tag}"
        self._slot = int(tag, 16)
        self._enabled = enabled
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        #: What the cells read as ``/etc/resolv.conf`` when it is not the host's own.
        self.resolv_conf = cells_resolv_conf(resolv_conf)
        self.subnet: ipaddress.IPv4Network | None = None
        self.gateway = ""
        self._ip = shutil.which("ip") or ""
        self._nft = shutil.which("nft") or ""
        self._used: set[int] = set()
        self._next = 2
        #: Why the walls are not built (cells then share the host's network).
        self.reason: str | None = None
        self.state = NetworkState.NEW

    @property
    def active(self) -> bool:
        return self.state is NetworkState.RUNNING

    def nameservers(self) -> list[str]:
        """The nameservers the cells are given."""
        return nameservers(self.resolv_conf or HOST_RESOLV_CONF)

    def resolv_conf_bind(self) -> dict[str, str] | None:
        """The bind that puts ``resolv_conf`` where a cell reads ``/etc/resolv.conf`` (where
        the host's is a link, at the path it leads to: a bind follows the link); None when
        cells read the host's own, or share the host's network."""
        if self.resolv_conf is None or not self.active:
            return None
        target = os.path.realpath(HOST_RESOLV_CONF)
        if target.startswith("/etc/") and not os.path.exists(target):
            return None  # a dangling link into the read-only /etc: nothing to bind over
        return {"source": str(self.resolv_conf), "target": target}

    async def open(self) -> None:
        """Build the bridge and the walls; where they cannot be built, say why and go on."""
        if not self._enabled:
            self.reason = "off (LAMBDAD_CELL_NETWORK=0)"
        elif not self._ip:
            self.reason = "the `ip` command (iproute2) is not installed"
        elif not self._nft:
            self.reason = "the `nft` command is not installed (Debian: apt-get install nftables)"
        if self.reason is None:
            try:
                await asyncio.to_thread(self._build)
            except (OSError, subprocess.SubprocessError) as exc:
                self.reason = f"cannot build the cells' network: {exc}"
                await asyncio.to_thread(self._tear_down)
        if self.reason is not None:
            self.state = NetworkState.SHARED
            if self._enabled:
                log.warning("cells share the host's network (no network walls): %s", self.reason)
            return
        self.state = NetworkState.RUNNING

    async def close(self) -> None:
        """Remove the table and the bridge (cells' veths go with their namespaces)."""
        if self.state is NetworkState.CLOSED:
            return
        was_running = self.state is NetworkState.RUNNING
        self.state = NetworkState.CLOSED
        if was_running:
            await asyncio.to_thread(self._tear_down)

    # ------------------------------------------------------------------ cells

    def allocate(self, cell_id: str) -> CellLink | None:
        """An address for a new cell; None when cells share the host's network."""
        if self.state is not NetworkState.RUNNING or self.subnet is None:
            return None
        size = self.subnet.num_addresses - 2
        for _ in range(size):
            host = self._next
            self._next = 2 + (self._next - 1) % (size - 1)
            if host not in self._used:
                self._used.add(host)
                address = str(self.subnet.network_address + host)
                name = f"lv{cell_id[:12]}"
                return CellLink(address, SUBNET_PREFIX, self.gateway, self.bridge, name)
        raise OSError("no free cell addresses")

    def release(self, link: CellLink | None) -> None:
        if link is not None and self.subnet is not None:
            address = ipaddress.IPv4Address(link.address)
            self._used.discard(int(address) - int(self.subnet.network_address))

    def narrow(self, link: CellLink, rules: Narrowing) -> None:
        """Apply a function's own rules to one cell (a chain of its own, reached from the
        ``functions`` map by the cell's address). Blocking: one ``nft`` run."""
        chain = f"fn_{link.host_if}"
        reject = "reject with icmpx admin-prohibited"
        lines = [f"add chain inet {self.table} {chain}"]
        rule = f"add rule inet {self.table} {chain}"
        lines += [f"{rule} {r.nft()} {reject}" for r in rules.deny]
        if rules.allow:
            lines += [f"{rule} {r.nft()} return" for r in rules.allow]
            lines += [
                f"{rule} ip daddr {server} meta l4proto {{ tcp, udp }} th dport 53 return"
                for server in self.nameservers()
                if _is_ipv4(server)
            ]
            lines.append(f"{rule} {reject}")
        element = f"{{ {link.address} : jump {chain} }}"
        lines.append(f"add element inet {self.table} functions {element}")
        self._run([self._nft, "-f", "-"], "\n".join(lines) + "\n")

    def widen(self, link: CellLink) -> None:
        """Remove a cell's own rules (it is gone). Blocking: one ``nft`` run."""
        chain = f"fn_{link.host_if}"
        commands = (
            f"delete element inet {self.table} functions {{ {link.address} }}\n"
            f"flush chain inet {self.table} {chain}\n"
            f"delete chain inet {self.table} {chain}\n"
        )
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self._run([self._nft, "-f", "-"], commands)

    def listener(self, port: int = 0) -> socket.socket:
        """A listening socket on the gateway, marked: cells may connect to it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
            sock.bind((self.gateway, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    # ------------------------------------------------------------------ host side

    def _run(self, argv: list[str], stdin: str | None = None) -> None:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise OSError(f"{' '.join(argv[:3])}: {done.stderr.strip() or done.returncode}")

    def _build(self) -> None:
        self._reclaim()
        self.subnet = self._free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        # A fixed address: a bridge otherwise takes the lowest of its ports' (the veths come and
        # go), and every cell would keep sending to a stale gateway address until its ARP
        # entry expires (a stall of half a minute, found by making hundreds of cells).
        tag = f"{self._slot:08x}"
        mac = "02:6c:" + ":".join(tag[i : i + 2] for i in range(0, 8, 2))
        batch = (
            f"link add {self.bridge} address {mac} type bridge\n"
            f"addr add {self.gateway}/{SUBNET_PREFIX} dev {self.bridge}\n"
            f'link set {self.bridge} alias "{self._owner} {os.getpid()}"\n'
            f"link set {self.bridge} up\n"
        )
        self._run([self._ip, "-batch", "-"], batch)
        # Forwarding is what NAT needs (as for Docker); the walls are in our own table.
        with open("/proc/sys/net/ipv4/ip_forward", "w") as handle:
            handle.write("1")
        self._run([self._nft, "-f", "-"], self.ruleset())

    def tear_down_commands(self) -> list[list[str]]:
        """What removes the table and the bridge (also run by the main sandbox helper when
        it ends, so that a killed lambdad leaves neither behind)."""
        return [
            [self._nft, "delete", "table", "inet", self.table],
            [self._ip, "link", "del", self.bridge],
        ]

    def _reclaim(self) -> None:
        """Remove the bridges and tables of earlier lambdads on this data dir that are gone
        (killed together with their helper, which would otherwise have removed them)."""
        for entry in Path("/sys/class/net").glob("lbd*"):
            try:
                owner, _, pid = (entry / "ifalias").read_text().strip().rpartition(" ")
            except OSError:
                continue
            if owner != self._owner or not pid.isdigit() or _alive(int(pid)):
                continue
            tag = entry.name.removeprefix("lbd")
            for argv in (
                [self._nft, "delete", "table", "inet", f"lambdad_{tag}"],
                [self._ip, "link", "del", entry.name],
            ):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(argv, capture_output=True, timeout=30)

    def _tear_down(self) -> None:
        for argv in self.tear_down_commands():
            if argv[0]:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(argv, capture_output=True, timeout=30)

    def _free_subnet(self) -> ipaddress.IPv4Network:
        """Ours by the data dir's hash, or the next one no interface of the host uses."""
        taken = _host_networks()
        subnets = list(POOL.subnets(new_prefix=SUBNET_PREFIX))
        for index in range(len(subnets)):
            candidate = subnets[(self._slot + index) % len(subnets)]
            if not any(candidate.overlaps(net) for net in taken):
                return candidate
        raise OSError(f"no free /{SUBNET_PREFIX} left in {POOL}")

    def ruleset(self) -> str:
        """The nftables table: the walls described in the module docstring."""
        assert self.subnet is not None
        br, mark = self.bridge, f"0x{MARK:x}"
        reject = "reject with icmpx admin-prohibited"
        egress = [f"meta l4proto tcp th dport {port} {reject}" for port in BLOCKED_PORTS]
        egress += [f"{rule.nft()} {reject}" for rule in self.deny]
        egress.append("ip saddr vmap @functions")  # a function's own rules, where it has some
        if self.allow:
            egress += [f"{rule.nft()} accept" for rule in self.allow]
            egress += [
                f"ip daddr {server} meta l4proto {{ tcp, udp }} th dport 53 accept"
                for server in self.nameservers()
                if _is_ipv4(server)
            ]
            egress.append(reject)
        return "\n".join(
            [
                f"table inet {self.table} {{",
                "  map functions {",
                "    type ipv4_addr : verdict;",
                "  }",
                "  chain input {",
                "    type filter hook input priority filter - 5; policy accept;",
                f'    iifname "{br}" ct state established,related accept',
                f'    iifname "{br}" socket mark {mark} accept',
                f'    iifname "{br}" {reject}',
                "  }",
                "  chain output {",
                "    type filter hook output priority filter - 5; policy accept;",
                f'    oifname "{br}" ct state established,related accept',
                f'    oifname "{br}" {reject}',
                "  }",
                "  chain forward {",
                "    type filter hook forward priority filter - 5; policy accept;",
                f'    oifname "{br}" ct state established,related accept',
                f'    oifname "{br}" drop',
                f'    iifname "{br}" meta nfproto ipv6 drop',
                f'    iifname "{br}" jump egress',
                "  }",
                "  chain egress {",
                *(f"    {line}" for line in egress),
                "  }",
                "  chain postrouting {",
                "    type nat hook postrouting priority srcnat; policy accept;",
                f'    ip saddr {self.subnet} oifname != "{br}" masquerade',
                "  }",
                "}",
                "",
            ]
        )

    def protections(self) -> dict[str, str]:
        """``lambdad doctor``'s lines about the cells' network."""
        if self.state is not NetworkState.RUNNING:
            why = self.reason or "not built"
            return {
                "network namespace": f"not active: cells share the host's network ({why})",
                "egress policy": "not active (needs the network namespace)",
            }
        policy = "deny " + (", ".join(str(r) for r in self.deny) or "nothing")
        policy += "; allow " + (
            ", ".join(str(r) for r in self.allow) + " (and the nameservers), nothing else"
            if self.allow
            else "everything else"
        )
        lines = {
            "network namespace": (
                f"active (own loopback; eth0 on bridge {self.bridge} {self.subnet}, NAT out; "
                "inbound refused; host addresses refused except lambdad's Runtime API and "
                "AWS endpoint relay at the gateway "
                f"{self.gateway}; no IPv6; nftables table inet {self.table})"
            ),
            "outbound port 25": "blocked",
            "egress policy": f"active (nftables: {policy}; a function narrows it for its own "
            f"cells with its {FUNCTION_DENY} and {FUNCTION_ALLOW} variables)",
        }
        loopback = [s for s in self.nameservers() if _loopback(s)]
        if self.resolv_conf is not None:
            lines["dns"] = f"cells read {self.resolv_conf} as their /etc/resolv.conf" + (
                f" (NOT REACHABLE from cells: {', '.join(loopback)} is on loopback)"
                if loopback
                else ""
            )
        elif loopback:
            lines["dns"] = (
                f"NOT REACHABLE from cells: the host's resolver is on loopback "
                f"({', '.join(loopback)}); docs/sandbox.md says what to do"
            )
        return lines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _host_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the host's interfaces and routes (``ip -4 route``)."""
    ip = shutil.which("ip")
    if ip is None:
        return []
    done = subprocess.run(
        [ip, "-4", "route", "show", "table", "all"], capture_output=True, text=True, timeout=30
    )
    found = []
    for line in done.stdout.splitlines():
        for word in line.split():
            if "/" in word or word[:1].isdigit():
                with contextlib.suppress(ValueError):
                    net = ipaddress.IPv4Network(word, strict=False)
                    if net.prefixlen >= 8 and not net.is_loopback:
                        found.append(net)
    return found


def relay_target(host: str) -> str:
    """Where the relay connects to reach lambdad's API listening on ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class EndpointRelay:
    """lambdad's AWS endpoint as the cells reach it: a marked socket on the gateway whose
    connections are piped to the API's own address (which is on the host's loopback)."""

    def __init__(self, network: CellNetwork, host: str, port: int) -> None:
        self._network = network
        self._target = (relay_target(host), port)
        self._port = port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    async def start(self) -> None:
        try:
            sock = self._network.listener(self._port)
        except OSError:
            # lambdad listens on every address (--host 0.0.0.0): the gateway's port is taken
            # by its own unmarked socket, so the relay takes another port.
            sock = self._network.listener(0)
        self.port = int(sock.getsockname()[1])
        self._server = await asyncio.start_server(self._serve, sock=sock)

    def hand_over(self) -> socket.socket | None:
        """Stop relaying and return the listening socket (a duplicate: the relay's own
        closes), for lambdad's API to serve at the gateway itself, when the relay listens at
        the API's own port (else the API would see another local port than its own: None).
        Connections relayed already stay relayed until they end."""
        server = self._server
        if server is None or self.port != self._port or not server.sockets:
            return None
        sock = server.sockets[0]
        taken = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
        taken.setblocking(False)
        server.close()
        self._server = None
        return taken

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for pipe in list(self._pipes):
            pipe.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                end.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if sink.can_write_eof():
                sink.write_eof()


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


class CellSockets:
    """Sockets made inside a cell's network namespace, for lambdad to reach what the cell
    listens on at its own loopback (the Telemetry API's pushes to an extension).

    ``setns`` moves only the calling thread; it goes back to its own namespace before
    returning, with no other work in between, so the event loop's thread can call it.
    """

    def __init__(self, init_pid: int) -> None:
        self._pid = init_pid
        self._fd: int | None = None

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        if self._fd is None:
            self._fd = os.open(f"/proc/{self._pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self._fd)
            try:
                return socket.socket(family, kind, proto)
            finally:
                _setns(home)
        finally:
            os.close(home)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
