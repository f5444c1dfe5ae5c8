"""The two small programs behind the Linux sandbox, standard library only.

``spawner``: one long-lived, single-threaded helper started by lambdad (as root). For each new
environment ("cell") it forks a child that enters new mount, PID, IPC and UTS namespaces, joins
the cell's cgroups and forks the cell's init; it answers lambdad with the init's host pid.
Being single-threaded, it can fork safely, and the namespace work never runs inside lambdad.
It is the subreaper of every cell init. When lambdad goes away (its control socket reaches
EOF, also after a SIGKILL) it thaws and kills every cell still alive, reaps them, removes their
cgroups and directories, and exits: a frozen cell cannot notice on its own that lambdad is gone.

``init`` (PID 1 of the cell): builds the cell's root file system (read-only system dirs, the
code at ``/var/task``, layers at ``/opt``, the runtime at ``/var/runtime``, a private tmpfs
``/tmp`` of the cell's size, a fresh ``/proc``, a minimal ``/dev``), pivots into it, then serves
lambdad over a control socket: ``exec`` starts a process as the cell's unprivileged user with
rlimits (with the output pipe sent along, or the cell's), ``signal`` signals one of them,
``kill`` ends every process of the cell; the exit of every process it started is reported.
When lambdad goes away the socket closes, init exits, and the kernel kills everything else in
the cell.

Messages are JSON over ``SOCK_SEQPACKET`` sockets; file descriptors travel with SCM_RIGHTS.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import time
from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SYS_PIVOT_ROOT = 155  # x86_64
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41}

MAX_MESSAGE = 1 << 20
#: A spare cell's /tmp size (MB) until an environment takes it and sets EphemeralStorage.
TMP_DEFAULT_MB = 512
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(None, use_errno=True)
# The calls a cell's init makes, looked up once here (in the spawner) rather than by each init:
# a lookup makes and stores an object, and every page a forked child writes becomes its own.
for _name in ("mount", "umount2", "setns", "unshare", "syscall", "prctl"):
    getattr(_libc, _name)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT.get(os.uname().machine, SYS_PIVOT_ROOT)
    _check(_libc.syscall(number, new_root.encode(), put_old.encode()), "pivot_root")


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 8)
    if not data:
        return None, []
    message: dict[str, Any] = json.loads(data)
    return message, list(fds)


# --------------------------------------------------------------------------- spawner


#: lambdad's Python bootstrap, imported once here when the spawner is a zygote: a Python
#: runtime on this same interpreter then starts as a fork of a cell init (already past
#: interpreter start-up and the bootstrap's imports) instead of a fresh interpreter.
_ZYGOTE: Any = None


def _load_zygote(path: str) -> str | None:
    """Import the bootstrap; why it could not be, or None once it is the zygote."""
    global _ZYGOTE
    import importlib.util
    import site

    try:
        site.ENABLE_USER_SITE = False
        site.main()  # the interpreter's site-packages, as a fresh ``python -s`` would have
        spec = importlib.util.spec_from_file_location("lambdad_bootstrap", path)
        if spec is None or spec.loader is None:
            return f"cannot load {path}"
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "preload"):
            module.preload()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    _ZYGOTE = module
    # Everything imported so far is shared with every cell and runtime forked from here: kept
    # out of the garbage collector's scans, whose reference updates would copy those pages
    # into each of them.
    gc.collect()
    gc.freeze()
    return None


def spawner(control_fd: int, zygote: str | None = None) -> None:
    """Serve lambdad until its control socket closes; first a hello: this interpreter's
    version, and whether the zygote loaded (and if not, why)."""
    global _HOST_NET
    error = _load_zygote(zygote) if zygote else None
    filter_error = _load_filters()
    # The filters and their module too (made after the zygote's imports were frozen): frozen
    # with the zygote only, the cells held 0.03-0.13 MB more each (measured; one collection
    # and freeze after both measured 0.03-0.08 MB more than this).
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError):
        _HOST_NET = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # No parent-death signal: the spawner outlives lambdad just long enough to end its cells.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock = socket.socket(fileno=control_fd)
    hello = {"op": "hello", "seq": 0, "version": list(sys.version_info[:3])}
    _send(
        sock,
        {
            **hello,
            "zygote": _ZYGOTE is not None,
            "error": error,
            "clone": _SYS_CLONE is not None,
            "filter_error": filter_error,
        },
    )
    if not hasattr(socket, "recv_fds"):
        return  # Python < 3.9: lambdad tells from the hello's version and does not use it
    cells: dict[int, dict[str, Any]] = {}
    #: Groups lambdad made itself (SnapStart forks): ended with the cells, by their id.
    tracked: dict[str, dict[str, Any]] = {}
    #: Cells being made, by the read end of their report pipe: many at once, so that one
    #: cell's cgroup joins and forks never hold up the next request.
    making: dict[int, _Making] = {}
    try:
        while True:
            for pid in _reap_all():
                cells.pop(pid, None)
            try:
                ready, _, _ = select.select([sock.fileno(), *making], [], [])
            except InterruptedError:
                continue
            for fd in ready:
                if fd != sock.fileno():
                    reply = making[fd].read()
                    if reply is not None:
                        cell = making.pop(fd)
                        if "pid" in reply:
                            cells[int(reply["pid"])] = cell.spec
                        _send(sock, reply)
                    continue
                message, fds = _recv(sock)
                if message is None:
                    return
                if message.get("op") == "at_exit":
                    _AT_EXIT.append([str(arg) for arg in message["argv"]])
                    _send(sock, {"id": message.get("id"), "seq": message.get("seq"), "ok": True})
                    continue
                if message.get("op") == "networks":
                    _make_networks(sock, message, list(making))
                    continue
                if message.get("op") in ("track", "untrack"):
                    if message["op"] == "track":
                        tracked[message["id"]] = message
                    else:
                        tracked.pop(message["id"], None)
                    _send(sock, {"id": message["id"], "seq": message.get("seq"), "ok": True})
                    continue
                try:
                    cell = _Making(sock, message, fds, list(making))
                except OSError as exc:
                    _send(
                        sock,
                        {"id": message.get("id"), "seq": message.get("seq"), "error": str(exc)},
                    )
                else:
                    making[cell.fd] = cell
                finally:
                    for fd_passed in fds:
                        os.close(fd_passed)
    except OSError:
        pass  # lambdad went away while we answered
    finally:
        for index, cell in enumerate(making.values()):
            cell.abandon()
            cells[-1_000_000 - index] = cell.spec  # its init is ended with its groups
        for index, group in enumerate(tracked.values()):
            cells[-1 - index] = group  # no process of ours to reap: groups and dirs only
        _end_cells(cells)
        _run_at_exit()


#: At most this many network namespaces per ``networks`` request (their descriptors travel in
#: one message; the kernel takes up to 253).
MAX_NETWORKS = 64


def _make_networks(sock: socket.socket, request: dict[str, Any], others: list[int]) -> None:
    """Network namespaces made ahead of need, one per entry of ``nets`` (each with its veth
    pair on the bridge, address, route, and its bridge port forwarding), by a child at the
    lowest CPU priority, which sends their descriptors to lambdad in its reply (lambdad holds
    them until a cell joins one: ``_init``) and exits. The spawner does not wait for it."""
    pid = os.fork()
    if pid != 0:
        return
    made: list[int] = []
    try:
        for other in others:  # the report pipes of the cells being made
            os.close(other)
        os.nice(19)
        for net in request["nets"][:MAX_NETWORKS]:
            _check(_libc.unshare(CLONE_NEWNET), "unshare (network)")
            host = _join_network(net)
            _network_ready(host, net)
            made.append(os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        reply: dict[str, Any] = {"id": request.get("id"), "seq": request.get("seq"), "ok": True}
    except BaseException as exc:
        reply = {
            "id": request.get("id"),
            "seq": request.get("seq"),
            "error": f"{type(exc).__name__}: {exc}",
            "made": len(made),
        }
    try:
        _send(sock, reply, made)
    finally:
        os._exit(0)


#: Commands lambdad asked to be run once its cells are ended (``at_exit``): the removal of
#: the cells' bridge and firewall table, also when lambdad was killed.
_AT_EXIT: list[list[str]] = []


def _run_at_exit() -> None:
    import subprocess

    for argv in _AT_EXIT:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def _reap_all() -> list[int]:
    reaped: list[int] = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


def _end_cells(cells: dict[int, dict[str, Any]], timeout: float = 5.0) -> None:
    """Kill every cell still alive (thawed first), reap it, remove its cgroups and directory."""
    specs = list(cells.values())
    live = {pid: spec for pid, spec in cells.items() if pid > 0}
    for spec in specs:
        for procs in spec.get("cgroups", []):
            _kill_group(os.path.dirname(procs))
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        for spec in live.values():
            for procs in spec.get("cgroups", []):
                _kill_group(os.path.dirname(procs))
        time.sleep(0.005)
        for pid in _reap_all():
            live.pop(pid, None)
    for spec in specs:
        groups = [os.path.dirname(procs) for procs in spec.get("cgroups", [])]
        while groups and time.monotonic() < deadline:
            groups = [g for g in groups if not _removed(g)]
            if groups:
                time.sleep(0.005)
        shutil.rmtree(os.path.dirname(spec["root"]), ignore_errors=True)


def _removed(group: str) -> bool:
    try:
        os.rmdir(group)
    except FileNotFoundError:
        return True
    except OSError:
        _kill_group(group)
        return False
    return True


def _kill_group(group: str) -> None:
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0"), ("cgroup.kill", "1")):
        with contextlib.suppress(OSError), open(os.path.join(group, name), "w") as handle:
            handle.write(value)
    with contextlib.suppress(OSError), open(os.path.join(group, "cgroup.procs")) as handle:
        for pid in handle.read().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


class _Making:
    """One cell being made, watched by the spawner through a pipe until it is ready.

    Where the ``clone`` system call can be made directly (x86_64), the cell's init is cloned
    straight into its new namespaces, joins its cgroups itself and says "ok" when it is ready:
    one process per cell. Elsewhere an outer child enters the namespaces and cgroups, forks the
    init and reports its host pid (a PID namespace is only entered by a new child)."""

    def __init__(
        self, sock: socket.socket, spec: dict[str, Any], fds: list[int], others: list[int]
    ) -> None:
        self.spec = spec
        self._chunks: list[bytes] = []
        read_end, write_end = os.pipe()
        self.direct = _SYS_CLONE is not None
        pid = _clone_cell(_net_flag(spec)) if self.direct else os.fork()
        if pid == 0:
            os.close(read_end)
            sock.close()
            for other in others:  # the report pipes of the other cells being made
                os.close(other)
            if self.direct:
                _run_init(spec, fds, write_end)
            try:
                init_pid = _enter_cell(spec, fds, write_end)
                os.write(write_end, json.dumps({"pid": init_pid}).encode())
                code = 0
            except BaseException as exc:
                report = {"error": f"{type(exc).__name__}: {exc}"}
                os.write(write_end, json.dumps(report).encode())
                code = 1
            os._exit(code)
        os.close(write_end)
        self.fd = read_end
        self.pid = pid

    def read(self) -> dict[str, Any] | None:
        """Take what the child wrote; the reply for lambdad once it has finished."""
        chunk = os.read(self.fd, 65536)
        if chunk:
            self._chunks.append(chunk)
            return None
        os.close(self.fd)
        said = b"".join(self._chunks)
        result: dict[str, Any]
        if self.direct:  # the init itself: "ok" and it lives on, or why it died
            if said == b"ok":
                result = {"pid": self.pid}
            else:
                result = {"error": said.decode(errors="replace") or "cell init died"}
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            result = json.loads(said or b'{"error": "cell setup died"}')
        result["id"] = self.spec["id"]
        result["seq"] = self.spec.get("seq")
        return result

    def abandon(self) -> None:
        """lambdad went away: let the cell's setup finish, so that the cell can be ended."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if not self.direct:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)


#: ``clone`` as a system call (flags, stack, parent tid, child tid, tls), where its argument
#: order is known; None elsewhere (the outer-child way is used; ``_LAMBDAD_CELL_CLONE=0`` in
#: the helper's environment asks for it too, so that it is tested where clone works).
_SYS_CLONE = (
    {"x86_64": 56}.get(platform.machine())
    if os.environ.get("_LAMBDAD_CELL_CLONE", "1") != "0"
    else None
)
SIGCHLD = 17


def _clone_cell(extra: int = 0) -> int:
    """Like ``fork``, into new mount, PID, IPC and UTS namespaces (and ``extra``): the child
    is PID 1."""
    assert _SYS_CLONE is not None
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD | extra
    pid = int(_libc.syscall(_SYS_CLONE, ctypes.c_ulong(flags), None, None, None, None))
    if pid < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"clone: {os.strerror(error)}")
    return pid


def _run_init(spec: dict[str, Any], fds: list[int], ready_w: int) -> NoReturn:
    """A cloned cell init: join the cell's cgroups ("0": this process), then serve."""
    try:
        for procs in spec.get("cgroups", []):
            with open(procs, "w") as handle:
                handle.write("0")
        _init(spec, fds, ready_w)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(ready_w, f"{type(exc).__name__}: {exc}".encode())
        os._exit(1)
    os._exit(0)


def _enter_cell(spec: dict[str, Any], fds: list[int], report_fd: int) -> int:
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | _net_flag(spec)
    _check(_libc.unshare(flags), "unshare")
    for procs in spec.get("cgroups", []):
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(report_fd)
        try:
            _init(spec, fds, ready_w)
        except BaseException as exc:
            os.write(ready_w, f"{type(exc).__name__}: {exc}".encode())
            os._exit(1)
        os._exit(0)
    os.close(ready_w)
    status = os.read(ready_r, 65536)
    os.close(ready_r)
    if status != b"ok":
        raise OSError(errno.EIO, status.decode(errors="replace") or "cell init died")
    return pid


# --------------------------------------------------------------------------- cell init


#: The host's network namespace, opened when the spawner starts: a cell's init (already in its
#: own namespace) goes back to it to make its veth pair's host end.
_HOST_NET: int | None = None


def _net_flag(spec: dict[str, Any]) -> int:
    """A cell with a ``net`` part gets a network namespace of its own."""
    return CLONE_NEWNET if spec.get("net") else 0


# Netlink (rtnetlink), just what a cell's network needs: two ``ip`` runs cost 10-15 ms of a
# spare's making, these messages well under one.
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 18, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER, IFLA_BRPORT_ISOLATED = 1, 33
IFA_ADDRESS, IFA_LOCAL, RTA_OIF, RTA_GATEWAY = 1, 2, 4, 5
IFF_UP = 1
IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 26, 8, 1
IFLA_BRPORT_STATE, BR_STATE_FORWARDING = 1, 3
#: How long a cell's init waits for its bridge port to forward (then it goes on regardless).
PORT_WAIT = 2.0


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes(-size % 4)


def _link(index: int = 0, up: bool = False) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


def _no_addrconf() -> bytes:
    """A link attribute: no IPv6 address configuration on this link (no link-local address,
    so no duplicate address detection or router solicitation). The cells have no IPv6, and
    a link set so before its carrier is up never starts IPv6 configuration; turning IPv6 off
    with the ``disable_ipv6`` sysctl instead spins on the kernel's rtnl lock (the sysctl
    retries until it gets it), which in a burst took CPU from the cells being made."""
    mode = _attr(IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))
    return _attr(IFLA_AF_SPEC, _attr(socket.AF_INET6, mode))


def _netlink(sock: socket.socket, requests: list[tuple[int, bytes, int]]) -> None:
    """Send requests (kind, body, flags) in one message, which the kernel carries out in
    order, and take their acknowledgements (``OSError`` with the kernel's errno for the first
    that failed). One system call and one wake-up for them all, where a round trip each
    queued each behind the other cells' work on the kernel's rtnl lock in a burst."""
    batch = b""
    for seq, (kind, body, flags) in enumerate(requests, 1):
        flags |= NLM_F_REQUEST | NLM_F_ACK
        batch += _NLMSG.pack(_NLMSG.size + len(body), kind, flags, seq, 0) + body
    sock.send(batch)
    errors: dict[int, int] = {}
    while len(errors) < len(requests):
        answer = sock.recv(65536)
        offset = 0
        while offset + _NLMSG.size <= len(answer):
            length, answer_kind, _flags, seq, _pid = _NLMSG.unpack_from(answer, offset)
            if answer_kind == 2:  # NLMSG_ERROR: 0 is the acknowledgement
                errors[seq] = -struct.unpack_from("=i", answer, offset + _NLMSG.size)[0]
            offset += max((length + 3) & ~3, _NLMSG.size)
    for seq, (kind, _body, _flags) in enumerate(requests, 1):
        if errors.get(seq):
            raise OSError(errors[seq], f"netlink {kind}: {os.strerror(errors[seq])}")


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found = {}
    while offset + 4 <= end:
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + size]
        offset += (size + 3) & ~3
    return found


def _port_state(host: socket.socket, name: bytes) -> int:
    """The bridge port state of the host's interface ``name`` (-1 when not known)."""
    body = _link() + _attr(IFLA_IFNAME, name)
    host.send(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST, 2, 0) + body)
    answer = host.recv(65536)
    length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(answer)
    if kind != RTM_NEWLINK:
        return -1
    info = _attrs(answer, _NLMSG.size + _IFINFO.size, length).get(IFLA_LINKINFO, b"")
    port = _attrs(info, 0, len(info)).get(IFLA_INFO_SLAVE_DATA, b"")
    state = _attrs(port, 0, len(port)).get(IFLA_BRPORT_STATE, b"")
    return state[0] if state else -1


def _await_forwarding(host: socket.socket, name: bytes) -> None:
    """Wait (a little) until the bridge forwards the cell's port: the kernel enables it once
    it has seen the link's carrier, asynchronously, and a packet sent before is dropped (a
    runtime's first SYN: a one-second retransmission on the cold start). The pause between
    looks grows (0.5 ms to 5 ms): each look is a request under the kernel's rtnl lock, which
    a burst's cells being made also wait for."""
    deadline = time.monotonic() + PORT_WAIT
    pause = 0.0005
    while _port_state(host, name) != BR_STATE_FORWARDING and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 1.5, 0.005)


def _rtnetlink() -> socket.socket:
    """A route netlink socket of the network namespace this process is in now."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)


def _host_end(host: socket.socket, net: dict[str, Any], bridge: int, cell_ns: int) -> None:
    """The veth pair: ``host_if`` up on the bridge (an isolated port), ``eth0`` in the cell."""
    name = net["host_if"].encode() + b"\0"
    peer = _link() + _attr(IFLA_IFNAME, b"eth0\0")
    peer += _attr(IFLA_NET_NS_FD, struct.pack("=I", cell_ns))
    info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
    body = (
        _link(up=True)
        + _attr(IFLA_IFNAME, name)
        + _attr(IFLA_MASTER, struct.pack("=I", bridge))
        + _attr(IFLA_LINKINFO, info)
    )
    isolated = _attr(IFLA_BRPORT_ISOLATED, b"\1")
    port = _attr(IFLA_INFO_SLAVE_KIND, b"bridge\0") + _attr(IFLA_INFO_SLAVE_DATA, isolated)
    # The port's flag by name, not by index: this process is back in the cell's namespace.
    # (A new link's bridge-port data and IPv6 mode are not taken at creation: a second
    # request, carried out before ``eth0`` is up, so before the pair has a carrier.)
    setting = _link() + _attr(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, port) + _no_addrconf()
    _netlink(
        host,
        [(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL), (RTM_NEWLINK, setting, 0)],
    )


def _cell_end(cell: socket.socket, net: dict[str, Any]) -> None:
    """Loopback up; ``eth0`` with the cell's address, up; the default route via the gateway."""
    eth0 = socket.if_nametoindex("eth0")
    address = socket.inet_aton(net["address"])
    head = _IFADDR.pack(socket.AF_INET, int(net["prefix"]), 0, 0, eth0)
    body = head + _attr(IFA_LOCAL, address) + _attr(IFA_ADDRESS, address)
    route = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)  # main table, boot, unicast
    route += _attr(RTA_GATEWAY, socket.inet_aton(net["gateway"])) + _attr(
        RTA_OIF, struct.pack("=I", eth0)
    )
    _netlink(
        cell,
        [
            (RTM_NEWLINK, _link(eth0) + _no_addrconf(), 0),
            (RTM_NEWLINK, _link(1, up=True), 0),
            (RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL),
            (RTM_NEWLINK, _link(eth0, up=True), 0),
            (RTM_NEWROUTE, route, NLM_F_CREATE | NLM_F_EXCL),
        ],
    )


def _join_network(net: dict[str, Any] | None) -> socket.socket | None:
    """In a new network namespace: a veth pair whose host end is a port of lambdad's bridge
    (made through a netlink socket of the host's namespace), ``eth0`` with the cell's address
    and default route, and loopback up. No IPv6 address but the loopback's ``::1`` (the
    links' IPv6 configuration is off): the walls are IPv4 (``network.py``).

    Returns the host's netlink socket, for ``_network_ready`` once the root file system is
    made: the bridge enables the port meanwhile."""
    if not net:
        return None
    if _HOST_NET is None:
        raise OSError(errno.EINVAL, "the host's network namespace is not known")
    cell_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # A netlink socket belongs to the namespace it was made in: one of the host's.
        _check(_libc.setns(_HOST_NET, CLONE_NEWNET), "setns (host network)")
        try:
            host = _rtnetlink()
            bridge = socket.if_nametoindex(net["bridge"])
        finally:
            _check(_libc.setns(cell_ns, CLONE_NEWNET), "setns (cell network)")
        try:
            _host_end(host, net, bridge, cell_ns)
            with _rtnetlink() as cell:
                _cell_end(cell, net)
        except BaseException:
            host.close()
            raise
        return host
    finally:
        os.close(cell_ns)


def _network_ready(host: socket.socket | None, net: dict[str, Any] | None) -> None:
    """Wait until the cell's bridge port forwards, then close the host's netlink socket."""
    if host is None or not net:
        return
    with host:
        _await_forwarding(host, net["host_if"].encode() + b"\0")


def _bind(root: str, source: str, target: str, writable: bool = False) -> None:
    dest = root + target
    if os.path.isdir(source):
        os.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.exists(dest):
            open(dest, "a").close()
    _mount(source, dest, None, MS_BIND | MS_REC, None)
    if not writable:
        _mount(None, dest, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def _prepare_root(spec: dict[str, Any]) -> None:
    """The part of the cell's root file system every environment has: system directories,
    the runtime and shared interpreter directories (``prebind``), ``/tmp``, ``/proc``,
    ``/dev``. A spare cell does this ahead of need."""
    root = spec["root"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    os.makedirs(root, exist_ok=True)
    # The root's own directories (mount points, /dev entries) live in memory, in this cell's
    # namespace only: made on the data dir's file system they cost an inode allocation and a
    # deletion each, for every cell.
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for entry in spec["system"]:
        path = entry["path"]
        if entry.get("link"):
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            if not os.path.lexists(root + path):
                os.symlink(entry["link"], root + path)
        else:
            _bind(root, path, path)
    for entry in spec.get("prebind", ()):
        _bind(root, entry["source"], entry["target"], entry.get("writable", False))
    os.makedirs(root + "/tmp", exist_ok=True)
    _mount(
        "tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMP_DEFAULT_MB}m,mode=1777"
    )
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    os.makedirs(root + "/dev", exist_ok=True)
    _mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            open(root + "/dev/" + name, "a").close()
            _mount("/dev/" + name, root + "/dev/" + name, None, MS_BIND, None)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, root + "/dev/" + name)


def _enter_root(spec: dict[str, Any]) -> None:
    """The environment's own part (its code, layers, ``/tmp`` size), then pivot into it."""
    root = spec["root"]
    for entry in spec["binds"]:
        _bind(root, entry["source"], entry["target"], entry.get("writable", False))
    _mount(
        None,
        root + "/tmp",
        None,
        MS_REMOUNT | MS_NOSUID | MS_NODEV,
        f"size={spec['tmp_mb']}m,mode=1777",
    )
    old = root + "/.old-root"
    os.makedirs(old, exist_ok=True)
    _pivot_root(root, old)
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount old root")
    os.rmdir("/.old-root")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, None)


def _init(spec: dict[str, Any], fds: list[int], ready_w: int) -> None:
    output_fd, control_fd = fds[:2]
    if len(fds) > 2:
        # A network namespace made ahead of need (``networks``), veth, address and route
        # included: joined, nothing to set up (no request under the kernel's rtnl lock).
        _check(_libc.setns(fds[2], CLONE_NEWNET), "setns (the cell's network)")
        os.close(fds[2])
    _init_cell(spec, output_fd, control_fd, ready_w)


def _forget_host_net() -> None:
    """Close this init's copy of the host's network namespace: the cell has no business
    with it (once its own network is joined or made)."""
    global _HOST_NET
    if _HOST_NET is not None:
        with contextlib.suppress(OSError):
            os.close(_HOST_NET)
        _HOST_NET = None


def _init_cell(spec: dict[str, Any], output_fd: int, control_fd: int, ready_w: int) -> None:
    os.setsid()
    sock = socket.socket(fileno=control_fd)
    if spec.get("deferred"):
        # A spare cell: namespaces and cgroups now (the slow part), its root file system
        # when lambdad hands it an environment and sends the ``build`` message.
        os.write(ready_w, b"ok")
        os.close(ready_w)
        try:
            host = _join_network(spec.get("net"))
            _forget_host_net()
            _prepare_root(spec)
            _network_ready(host, spec.get("net"))
        except BaseException as exc:
            prepared: BaseException | None = exc
        else:
            prepared = None
        message, _ = _recv(sock)
        if message is None or message.get("op") != "build":
            os._exit(0)
        spec = {**spec, **message}
        try:
            if prepared is not None:
                raise prepared
            _enter_root(spec)
        except BaseException as exc:
            _send(sock, {"op": "build_error", "message": f"{type(exc).__name__}: {exc}"})
            os._exit(1)
        with contextlib.suppress(OSError):
            socket.sethostname(spec.get("hostname", "lambda"))
        _send(sock, {"op": "built"})
    else:
        # The mounts are made while the bridge enables the cell's port.
        host = _join_network(spec.get("net"))
        _forget_host_net()
        _prepare_root(spec)
        _enter_root(spec)
        with contextlib.suppress(OSError):
            socket.sethostname(spec.get("hostname", "lambda"))
        _network_ready(host, spec.get("net"))
        os.write(ready_w, b"ok")
        os.close(ready_w)
    _serve(spec, output_fd, sock)


def _serve(spec: dict[str, Any], output_fd: int, sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    watched: set[int] = set()
    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        for pid, status in _reaped():
            if pid in watched:
                watched.discard(pid)
                _send(sock, {"op": "exit", "pid": pid, "status": status})
        if sock.fileno() not in ready:
            continue
        message, fds = _recv(sock)
        if message is None:
            return
        op = message.get("op")
        if op == "exec" and message.get("keep_fd") and fds:
            # A SnapStart template: the cell's output, and its control socket as fd 3.
            reply = _exec(spec, output_fd, message, keep=fds[0])
            if "pid" in reply:
                watched.add(reply["pid"])
            _send(sock, reply)
        elif op == "exec":
            # An extension brings its own output pipe; the runtime writes to the cell's.
            reply = _exec(spec, fds[0] if fds else output_fd, message)
            if "pid" in reply:
                watched.add(reply["pid"])
            _send(sock, reply)
        elif op == "signal" and message.get("pid") in watched:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(message["pid"]), int(message["signal"]))
        elif op == "kill":
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
            _send(sock, {"op": "killed"})
        for fd in fds:
            os.close(fd)


def _reaped() -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        found.append((pid, status))


def _above(fd: int, floor: int) -> int:
    """``fd`` moved to a number of at least ``floor`` (close-on-exec)."""
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    os.close(fd)
    return moved


def _exec(
    spec: dict[str, Any], output_fd: int, message: dict[str, Any], keep: int | None = None
) -> dict[str, Any]:
    """Start a process as the cell user; ``keep`` becomes its fd 3 (a template's socket)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            _become_user(spec)
            _confine(template=keep is not None)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
            os.chdir(message["cwd"])
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            first = 3
            if keep is not None:
                err_w = _above(err_w, 64)
                os.dup2(_above(keep, 64), 3)
                first = 4
            os.closerange(first, err_w)
            os.closerange(err_w + 1, 65536)
            if message.get("zygote") and _ZYGOTE is not None:
                _run_zygote(message, err_w)
            os.execve(message["argv"][0], message["argv"], message["env"])
        except OSError as exc:
            os.write(
                err_w,
                json.dumps({"errno": exc.errno or 0, "message": exc.strerror or str(exc)}).encode(),
            )
        except BaseException as exc:
            os.write(err_w, json.dumps({"errno": 0, "message": str(exc)}).encode())
        os._exit(127)
    os.close(err_w)
    failure = os.read(err_r, 65536)
    os.close(err_r)
    if failure:
        os.waitpid(pid, 0)
        detail = json.loads(failure)
        return {"op": "exec_error", "errno": detail["errno"], "message": detail["message"]}
    return {"op": "spawned", "pid": pid}


def _run_zygote(message: dict[str, Any], err_w: int) -> None:
    """Become the Python runtime in this forked process: never returns."""
    os.close(err_w)  # "started": what an exec would have told the cell init
    # Dropping root cleared the dumpable flag, which an exec would set again: without it the
    # process's /proc/self files stay root's (a SnapStart fork could not write its uid_map).
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    code = 1
    try:
        os.environ.clear()
        os.environ.update(message["env"])
        sys.argv = list(message["argv"][2:]) or [""]
        _ZYGOTE.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


#: The seccomp filters (``bootstraps/python/syscall_filter.py``), made ready once by the
#: spawner and installed in every process a cell init starts: the full one, and the one for a
#: SnapStart template (whose forks still make their private /tmp, then install the full one).
_FILTERS: dict[str, Any] = {}
SYSCALL_FILTER = os.path.join(
    os.path.dirname(os.path.dirname(os.path.realpath(__file__))),
    "bootstraps",
    "python",
    "syscall_filter.py",
)


def _load_filters() -> str | None:
    """Build the filters; why they cannot be used here, or None once they are ready."""
    import importlib.util

    try:
        spec = importlib.util.spec_from_file_location("lambdad_syscall_filter", SYSCALL_FILTER)
        if spec is None or spec.loader is None:
            return f"cannot load {SYSCALL_FILTER}"
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        reason: str | None = module.unavailable_reason()
        if reason is None:
            _FILTERS["full"] = module.Filter(module.program())
            _FILTERS["template"] = module.Filter(module.program(template=True))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return reason


def _confine(template: bool) -> None:
    """Install the syscall filter in this process (a child about to become a runtime or an
    extension, already the cell's user with ``no_new_privs``); it covers all it starts."""
    chosen = _FILTERS.get("template" if template else "full")
    if chosen is not None:
        chosen.install()


def _become_user(spec: dict[str, Any]) -> None:
    for limit, value in (
        (resource.RLIMIT_NOFILE, spec["nofile"]),
        (resource.RLIMIT_NPROC, spec["nproc"]),
    ):
        resource.setrlimit(limit, (value, value))
    os.setgroups([])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "spawner":
        spawner(int(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
    else:
        sys.exit("usage: cellinit.py spawner FD")
