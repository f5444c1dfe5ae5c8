"""The Linux sandbox (as root): every environment in a cell of its own.

A cell has its own mount, PID, IPC and UTS namespaces and its own cgroup (memory without
swap, CPU in proportion to memory, at most 1,024 processes, a freezer); its processes run as
an unprivileged user of its own, with at most 1,024 open files, inside a root file system with
the code read-only at ``/var/task``, layers at ``/opt``, the runtime at ``/var/runtime`` and a
private ``/tmp`` of ``EphemeralStorage`` MB. The namespace work happens in a small helper
process (``cellinit.py``) so that lambdad itself never forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import errno
import json
import os
import shutil
import signal
import socket
import struct
import sys
import uuid
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lambdad.runtime.sandbox import cgroups
from lambdad.runtime.sandbox.base import (
    Exit,
    Layout,
    ProcessSpec,
    Sandbox,
    SandboxProcess,
    SiblingProcess,
)
from lambdad.runtime.sandbox.template import TEMPLATE_FD_VARIABLE, Placement, Template

CELLINIT = Path(__file__).with_name("cellinit.py")
#: The Python bootstrap's path below lambdad's runtime directory (``/var/runtime`` in a cell).
PYTHON_BOOTSTRAP_IN_RUNTIME = "python/bootstrap.py"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Cell users are taken from this range, one per live environment.
UID_BASE = 1_000_000
UID_SLOTS = 65_536
UID_BLOCKS = 4096
LIMIT_PROCS = 1024
#: Cells kept made ahead of need, so a cold start does not wait for cgroup joins.
SPARE_CELLS = 2
LIMIT_FILES = 1024
_MAX_MESSAGE = 1 << 20


def _join(group: cgroups.CellGroup, pid: int) -> None:
    for procs in group.procs_files():
        with open(procs, "w") as handle:
            handle.write(str(pid))


def _user_namespaces() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as handle:
            return int(handle.read()) > 0
    except (OSError, ValueError):
        return False


class SandboxUnavailable(Exception):
    """The Linux sandbox cannot run here; the message says why."""


def unavailable_reason() -> str | None:
    """Why the Linux sandbox cannot run on this host, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if os.geteuid() != 0:
        return "lambdad is not running as root"
    if cgroups.detect() is None:
        return "no usable cgroup hierarchy under /sys/fs/cgroup"
    return None


def _system_entries() -> list[dict[str, str]]:
    entries = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            entries.append({"path": path, "link": os.readlink(path)})
        elif os.path.isdir(path):
            entries.append({"path": path})
    return entries


def _covered(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def peer_uid(local: tuple[str, int], peer: tuple[str, int]) -> int | None:
    """The uid owning the TCP socket at ``peer`` that is connected to ``local`` (loopback)."""
    found = peer_socket(local, peer)
    return found[0] if found is not None else None


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_HEADER = struct.Struct("=IHHII")
#: inet_diag_req_v2: family, protocol, ext, pad, states, then the socket id (ports and
#: addresses big-endian, interface, cookie).
_DIAG_REQUEST = struct.Struct("=BBBBI2s2s16s16sIII")
#: inet_diag_msg up to the inode: family, state, timer, retrans, socket id, expires,
#: rqueue, wqueue, uid, inode.
_DIAG_MESSAGE = struct.Struct("=BBBB2s2s16s16sIIIIIIII")


def peer_socket(local: tuple[str, int], peer: tuple[str, int]) -> tuple[int, int] | None:
    """The uid and inode of the TCP socket at ``peer`` that is connected to ``local``.

    Asked of the kernel by the exact four-tuple (sock_diag netlink): on a busy host
    ``/proc/net/tcp`` holds thousands of lines (5 ms to scan at 4,000), the netlink lookup
    stays in the tens of microseconds. The table is scanned where netlink fails.
    """
    try:
        return _diag_lookup(local, peer)
    except (OSError, struct.error, ValueError):
        return _scan_tcp_table(local, peer)


def _diag_lookup(local: tuple[str, int], peer: tuple[str, int]) -> tuple[int, int] | None:
    request = _DIAG_REQUEST.pack(
        socket.AF_INET,
        socket.IPPROTO_TCP,
        0,
        0,
        0xFFFFFFFF,
        struct.pack("!H", peer[1]),
        struct.pack("!H", local[1]),
        socket.inet_aton(peer[0]) + bytes(12),
        socket.inet_aton(local[0]) + bytes(12),
        0,
        0xFFFFFFFF,
        0xFFFFFFFF,
    )
    header = _NLMSG_HEADER.pack(
        _NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0
    )
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)
        diag.send(header + request)
        answer = diag.recv(8192)
    length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(answer)
    if kind == 2:  # NLMSG_ERROR: -errno follows
        error = struct.unpack_from("=i", answer, _NLMSG_HEADER.size)[0]
        if -error == errno.ENOENT:
            return None
        raise OSError(-error, "sock_diag lookup failed")
    if kind != _SOCK_DIAG_BY_FAMILY or length < _NLMSG_HEADER.size + _DIAG_MESSAGE.size:
        raise ValueError(f"unexpected sock_diag answer {kind}")
    fields = _DIAG_MESSAGE.unpack_from(answer, _NLMSG_HEADER.size)
    return int(fields[-2]), int(fields[-1])


def _scan_tcp_table(local: tuple[str, int], peer: tuple[str, int]) -> tuple[int, int] | None:

    def hex_addr(addr: tuple[str, int]) -> str:
        packed = socket.inet_aton(addr[0])
        return f"{int.from_bytes(packed, 'little'):08X}:{addr[1]:04X}"

    wanted_local, wanted_remote = hex_addr(peer), hex_addr(local)
    try:
        with open("/proc/net/tcp") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[1] == wanted_local and fields[2] == wanted_remote:
                    return int(fields[7]), int(fields[9])
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return None


def cell_hosts(directory: Path) -> Path | None:
    """The cells' ``/etc/hosts``: the host's, plus ``sandbox.localdomain`` as on Lambda.

    Telemetry API subscribers listen on (and name in their URI) ``sandbox.localdomain``; cells
    share the host's network, so it is loopback. None where the host has no such file to cover.
    """
    if os.path.islink("/etc") or not os.path.isfile("/etc/hosts"):
        return None
    path = directory / "hosts"
    if not path.is_file():
        with open("/etc/hosts") as handle:
            text = handle.read()
        directory.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f"hosts.{os.getpid()}")
        staging.write_text(f"{text.rstrip()}\n127.0.0.1\tsandbox.localdomain sandbox\n")
        staging.replace(path)
    return path


class SpawnerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class CellSibling(SiblingProcess):
    """An extension in a cell; its pid is the cell's (PID namespace) pid."""

    def __init__(self, pid: int, output_fd: int, exit_status: asyncio.Future[Exit]) -> None:
        self.pid = pid
        self.output_fd = output_fd
        self._exit = exit_status

    async def wait(self) -> Exit:
        return await asyncio.shield(self._exit)


class LinuxProcess(SandboxProcess):
    def __init__(
        self,
        sandbox: LinuxSandbox,
        cell_id: str,
        group: cgroups.CellGroup,
        control: socket.socket,
        init_pid: int,
        output_fd: int,
        uid: int,
        root: Path,
        memory_mb: int,
    ) -> None:
        self._sandbox = sandbox
        self.cell_id = cell_id
        self._group = group
        self._control = control
        self.init_pid = init_pid
        self.pid = init_pid
        self.output_fd = output_fd
        self.uid = uid
        self._root = root
        self._memory_mb = memory_mb
        self._exit: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read_control(), name=f"cell-{cell_id}")
        self._main_pid: int | None = None
        #: Exits of the cell's processes by (cell) pid: reported, or awaited by a sibling.
        self._exits: dict[int, asyncio.Future[Exit]] = {}
        self._request_lock = asyncio.Lock()
        self._peak_mb = 0
        self._closed = False

    async def _read_control(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._control, _MAX_MESSAGE)
                if not data:
                    break
                message = json.loads(data)
                if message.get("op") == "exit":
                    code = os.waitstatus_to_exitcode(int(message["status"]))
                    self._exited(int(message["pid"]), Exit.from_returncode(code))
                else:
                    await self._replies.put(message)
        except OSError:
            pass
        for pending in [self._exit, *self._exits.values()]:
            if not pending.done():
                pending.set_result(Exit(None, int(signal.SIGKILL)))
        await self._replies.put({"op": "gone"})

    def _exit_of(self, pid: int) -> asyncio.Future[Exit]:
        return self._exits.setdefault(pid, asyncio.get_running_loop().create_future())

    def _exited(self, pid: int, status: Exit) -> None:
        for pending in (self._exit_of(pid), *([self._exit] if pid == self._main_pid else [])):
            if not pending.done():
                pending.set_result(status)

    async def _request(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        data = json.dumps(message).encode()
        async with self._request_lock:
            if fds:
                socket.send_fds(self._control, [data], list(fds))
            else:
                await asyncio.get_running_loop().sock_sendall(self._control, data)
            return await self._replies.get()

    async def _exec(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, fds: tuple[int, ...] = ()
    ) -> int:
        message: dict[str, Any] = {"op": "exec", "argv": list(argv), "env": dict(env), "cwd": cwd}
        if self._sandbox.can_fork(argv):
            message["zygote"] = True
        reply = await self._request(message, fds)
        if reply.get("op") == "exec_error":
            raise OSError(int(reply.get("errno") or 0), str(reply.get("message")))
        if reply.get("op") != "spawned":
            raise OSError(0, f"cell {self.cell_id} failed to start {argv[0]}: {reply}")
        return int(reply["pid"])

    async def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> None:
        self._main_pid = await self._exec(argv, env, cwd)
        early = self._exit_of(self._main_pid)
        if early.done() and not self._exit.done():
            self._exit.set_result(early.result())

    async def start_template(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, control_fd: int
    ) -> None:
        """Start the main process as a SnapStart template with ``control_fd`` as its fd 3."""
        message: dict[str, Any] = {
            "op": "exec",
            "argv": list(argv),
            "env": {**env, TEMPLATE_FD_VARIABLE: "3"},
            "cwd": cwd,
            "keep_fd": True,
        }
        if self._sandbox.can_fork(argv):
            message["zygote"] = True
        reply = await self._request(message, (control_fd,))
        if reply.get("op") == "exec_error":
            raise OSError(int(reply.get("errno") or 0), str(reply.get("message")))
        if reply.get("op") != "spawned":
            raise OSError(0, f"cell {self.cell_id} failed to start {argv[0]}: {reply}")
        self._main_pid = int(reply["pid"])
        early = self._exit_of(self._main_pid)
        if early.done() and not self._exit.done():
            self._exit.set_result(early.result())

    async def spawn_sibling(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str
    ) -> SiblingProcess:
        read_fd, write_fd = os.pipe()
        try:
            pid = await self._exec(argv, env, cwd, (write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        return CellSibling(pid, read_fd, self._exit_of(pid))

    def signal_main(self, signum: int) -> None:
        if self._main_pid is not None and not self._exit.done():
            message = {"op": "signal", "pid": self._main_pid, "signal": int(signum)}
            with contextlib.suppress(OSError):
                self._control.send(json.dumps(message).encode())

    async def wait(self) -> Exit:
        return await asyncio.shield(self._exit)

    def kill(self) -> None:
        self._group.kill_all()

    def max_memory_mb(self) -> int:
        self._peak_mb = max(self._peak_mb, self._group.peak_memory_mb())
        return self._peak_mb

    def oom_kills(self) -> int:
        return self._group.oom_kills()

    def end_init(self) -> None:
        with contextlib.suppress(OSError):
            self._group.limit_cpu(self._memory_mb)
        self._sandbox.refill()

    def freeze(self) -> None:
        with contextlib.suppress(OSError):
            self._group.freeze()

    def thaw(self) -> None:
        with contextlib.suppress(OSError):
            self._group.thaw()

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        return peer_uid(local, peer) == self.uid

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill()
        # Shut down, not close, while the reader waits on the socket: a socket closed under a
        # pending ``sock_recv`` leaves a stale selector entry that swallows the next socket
        # given the same fd number (stdlib loop; uvloop copes), and the reader never ends.
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._reader), 5)
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._control.close()
        with contextlib.suppress(OSError):
            os.close(self.output_fd)
        await asyncio.to_thread(self._group.remove)
        await asyncio.to_thread(shutil.rmtree, self._root.parent, True)
        self._sandbox.release(self)


def _owns_inode(pids: Sequence[int], inode: int) -> bool:
    """Whether one of ``pids`` holds the socket ``inode`` open."""
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        with contextlib.suppress(OSError):
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}") == target:
                        return True
    return False


class CellGroupPlacement(Placement):
    """A forked environment in the Linux sandbox: a cgroup of its own (memory, CPU, pids,
    freezer) inside its template's cell, whose namespaces, root and user it shares."""

    def __init__(
        self,
        sandbox: LinuxSandbox,
        group: cgroups.CellGroup,
        run_dir: Path,
        uid: int,
        memory_mb: int,
    ) -> None:
        self._sandbox = sandbox
        self._group = group
        self._run_dir = run_dir
        self._uid = uid
        self._memory_mb = memory_mb

    def kill(self) -> None:
        self._group.kill_all()

    def max_memory_mb(self) -> int:
        return self._group.peak_memory_mb()

    def oom_kills(self) -> int:
        return self._group.oom_kills()

    def end_init(self) -> None:
        with contextlib.suppress(OSError):
            self._group.limit_cpu(self._memory_mb)

    def freeze(self) -> None:
        with contextlib.suppress(OSError):
            self._group.freeze()

    def thaw(self) -> None:
        with contextlib.suppress(OSError):
            self._group.thaw()

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        """The cell's uid, and a socket held by a process of this environment's own group:
        forks of one template share a uid, so the uid alone cannot tell them apart."""
        found = peer_socket(local, peer)
        if found is None or found[0] != self._uid:
            return False
        return _owns_inode(self._group.pids(), found[1])

    async def close(self) -> None:
        await asyncio.to_thread(self._group.remove)
        await asyncio.to_thread(shutil.rmtree, self._run_dir, True)
        await self._sandbox.untrack(self._group.name)


@dataclasses.dataclass(slots=True)
class _Spare:
    """A cell made ahead of need: namespaces and cgroups, waiting for its root file system."""

    cell_id: str
    group: cgroups.CellGroup
    control: socket.socket
    init_pid: int
    output_fd: int
    root: Path


class LinuxSandbox(Sandbox):
    name = "linux"

    def __init__(
        self,
        runs_dir: Path,
        runtime_dir: Path,
        shared_dirs: list[str],
        *,
        fork_python: bool = False,
    ) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise SandboxUnavailable(reason)
        version = cgroups.detect()
        assert version is not None
        self.hierarchy = cgroups.Hierarchy(version, cgroups.instance_name(runs_dir))
        self._runs = runs_dir
        self._runtime_dir = runtime_dir
        system = _system_entries()
        roots = [e["path"] for e in system if "link" not in e]
        self._system = system
        self._shared = sorted({d for d in shared_dirs if d and not _covered(d, roots)})
        self._control: socket.socket | None = None
        self._spawner: asyncio.subprocess.Process | None = None
        #: Replies of the helper, handed to the request waiting for each (by ``seq``).
        self._replies: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._seq = 0
        self._fork_python = fork_python
        #: The spawner's interpreter: a Python runtime on this one can be forked from a cell init.
        self.zygote_python = os.path.realpath(sys.executable)
        self._spares: list[_Spare] = []
        self._hosts: Path | None = None
        self._filling: asyncio.Task[None] | None = None
        self._uids: set[int] = set()
        self._next_uid = 0
        #: Each data dir gets its own block of uids, so two lambdads on one host never share
        #: a cell user (the Runtime API's ownership check is by uid).
        self.uid_base = UID_BASE + (zlib.crc32(str(runs_dir).encode()) % UID_BLOCKS) * UID_SLOTS
        self.state = SpawnerState.NEW

    async def open(self) -> None:
        await asyncio.to_thread(self.hierarchy.prepare)
        self._hosts = await asyncio.to_thread(cell_hosts, self._runs.parent)
        await asyncio.to_thread(self._reclaim)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._spawner = await asyncio.create_subprocess_exec(
            self.zygote_python,
            "-S",
            str(CELLINIT),
            "spawner",
            str(theirs.fileno()),
            *([str(self._runtime_dir / PYTHON_BOOTSTRAP_IN_RUNTIME)] if self._fork_python else []),
            pass_fds=(theirs.fileno(),),
            stdin=asyncio.subprocess.DEVNULL,
        )
        theirs.close()
        ours.setblocking(False)
        self._control = ours
        self._replies = asyncio.create_task(self._read_replies(), name="sandbox-helper-replies")
        self.state = SpawnerState.RUNNING
        self._filling = asyncio.create_task(self._fill(), name="spare-cells")

    def _reclaim(self) -> None:
        """Kill and remove what a previous lambdad on this data dir left: its cells and dirs.

        Only the cells named under ``runs_dir`` are ours: other lambdads on this host keep their
        live cells under the same cgroup parent.
        """
        if self._runs.is_dir():
            for leftover in self._runs.iterdir():
                self.hierarchy.group(leftover.name).remove()
                shutil.rmtree(leftover, ignore_errors=True)

    async def close(self) -> None:
        if self.state is SpawnerState.CLOSED:
            return
        self.state = SpawnerState.CLOSED
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
        spares, self._spares = self._spares, []
        for spare in spares:
            await self._discard(spare)
        if self._control is not None:
            # Shut down before closing: the reply reader is waiting on the socket.
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_RDWR)
            if self._replies is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._replies), 5)
                self._replies.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._replies
            self._control.close()
        if self._spawner is not None:
            try:
                await asyncio.wait_for(self._spawner.wait(), 10)
            except TimeoutError:
                self._spawner.kill()
                await self._spawner.wait()
        await asyncio.to_thread(self.hierarchy.release)

    def _allocate_uid(self) -> int:
        for _ in range(UID_SLOTS):
            uid = self.uid_base + self._next_uid
            self._next_uid = (self._next_uid + 1) % UID_SLOTS
            if uid not in self._uids:
                self._uids.add(uid)
                return uid
        raise OSError("no free cell user ids")

    def release(self, process: LinuxProcess) -> None:
        self._uids.discard(process.uid)

    def layout(self, task_root: Path, opt_dir: Path | None, tmp_dir: Path) -> Layout:
        return Layout(task_root="/var/task", opt="/opt", tmp="/tmp", runtime_dir="/var/runtime")

    async def _make_spare(self, background: bool = False) -> _Spare:
        """A cell with its namespaces and cgroups but no root file system yet.

        Joining cgroups is the slow part of making a cell (the kernel may wait for an RCU
        grace period), so it happens here, off the invoke path.
        """
        if self.state is not SpawnerState.RUNNING or self._control is None:
            raise OSError("the Linux sandbox is not running")
        cell_id = f"{uuid.uuid4().hex}-cell"
        group = self.hierarchy.group(cell_id)
        root = self._runs / cell_id / "root"
        output_r, output_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

        def prepare() -> None:
            root.mkdir(parents=True, exist_ok=True)  # first: names the cell for ``_reclaim``
            group.make(background)

        try:
            await asyncio.to_thread(prepare)
            request = {
                "id": cell_id,
                "root": str(root),
                "cgroups": group.procs_files(),
                "deferred": True,
                # What every environment's root has, mounted while the cell waits.
                "system": self._system,
                "prebind": self._prebinds(),
            }
            # Shielded: a caller cancelled between the request and its reply must not leave
            # the reply in the socket for the next request to read.
            exchange = asyncio.ensure_future(self._ask_helper(request, [output_w, theirs.fileno()]))
            exchange.add_done_callback(lambda t: t.cancelled() or t.exception())
            reply = await asyncio.shield(exchange)
            if reply.get("id") != cell_id and "error" not in reply:
                raise OSError(f"the sandbox helper answered for another cell: {reply}")
            if "error" in reply:
                raise OSError(f"cannot create the sandbox: {reply['error']}")
        except BaseException:
            os.close(output_r)
            ours.close()
            await asyncio.to_thread(group.remove)
            await asyncio.to_thread(shutil.rmtree, root.parent, True)
            raise
        finally:
            os.close(output_w)
            theirs.close()
        os.set_blocking(output_r, False)
        ours.setblocking(False)
        return _Spare(cell_id, group, ours, int(reply["pid"]), output_r, root)

    def _prebinds(self) -> list[dict[str, str]]:
        binds = [
            {"source": str(self._runtime_dir), "target": "/var/runtime"},
            *({"source": d, "target": d} for d in self._shared),
        ]
        if self._hosts is not None:
            binds.append({"source": str(self._hosts), "target": "/etc/hosts"})
        return binds

    def can_fork(self, argv: Sequence[str]) -> bool:
        """Whether ``argv`` is lambdad's Python bootstrap on the spawner's own interpreter."""
        return (
            self._fork_python
            and len(argv) == 3
            and argv[0] == self.zygote_python
            and argv[2] == f"/var/runtime/{PYTHON_BOOTSTRAP_IN_RUNTIME}"
        )

    async def _ask_helper(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        """Send ``request`` to the helper and wait for its reply; many may be outstanding
        (the helper makes cells concurrently), told apart by a sequence number."""
        if self._control is None or self._replies is None:
            raise OSError("the sandbox helper has stopped")
        self._seq += 1
        seq = self._seq
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = waiter
        data = json.dumps({**request, "seq": seq}).encode()
        try:
            if fds:
                socket.send_fds(self._control, [data], fds)
            else:
                self._control.send(data)
            return await waiter
        finally:
            self._waiting.pop(seq, None)

    async def _read_replies(self) -> None:
        assert self._control is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._control, _MAX_MESSAGE)
                if not data:
                    break
                reply: dict[str, Any] = json.loads(data)
                waiter = self._waiting.pop(int(reply.get("seq") or 0), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
        except OSError:
            pass
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(OSError("the sandbox helper has stopped"))
        self._waiting.clear()

    async def _discard(self, spare: _Spare) -> None:
        with contextlib.suppress(OSError):
            spare.control.close()
        with contextlib.suppress(OSError):
            os.close(spare.output_fd)
        await asyncio.to_thread(spare.group.remove)
        await asyncio.to_thread(shutil.rmtree, spare.root.parent, True)

    async def _take_spare(self) -> _Spare:
        if self._spares:
            spare = self._spares.pop()
            if not self._spares:
                self.refill()
            return spare
        self.refill()
        return await self._make_spare()

    def refill(self) -> None:
        """Make spare cells up to ``SPARE_CELLS`` in the background.

        Called when an environment's init has ended and when the last spare is taken, not on
        every take: making a cell (a fork, namespaces, cgroup joins, some 25 mounts) would
        compete for the CPUs with the cold start that took the spare.
        """
        if self.state is not SpawnerState.RUNNING:
            return
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self._fill(), name="spare-cells")

    async def _fill(self) -> None:
        while len(self._spares) < SPARE_CELLS and self.state is SpawnerState.RUNNING:
            try:
                spare = await self._make_spare(background=True)
            except OSError:
                return  # the next spawn makes its cell itself and says why if it cannot
            if self.state is not SpawnerState.RUNNING:
                await self._discard(spare)
                return
            self._spares.append(spare)

    async def spawn(self, spec: ProcessSpec) -> SandboxProcess:
        spare = await self._take_spare()
        try:
            uid = self._allocate_uid()
        except BaseException:
            await self._discard(spare)
            raise
        binds = [{"source": str(spec.task_root), "target": "/var/task"}]
        if spec.opt_dir is not None:
            binds.append({"source": str(spec.opt_dir), "target": "/opt"})
        build = {
            "op": "build",
            "binds": binds,
            "tmp_mb": spec.tmp_mb,
            "uid": uid,
            "gid": uid,
            "nofile": LIMIT_FILES,
            "nproc": LIMIT_PROCS,
            "hostname": "169.254.0.1",
        }
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(spare.group.create, spec.memory_mb, LIMIT_PROCS)
            await loop.sock_sendall(spare.control, json.dumps(build).encode())
            data = await loop.sock_recv(spare.control, _MAX_MESSAGE)
            reply = json.loads(data) if data else {"op": "gone"}
            if reply.get("op") != "built":
                raise OSError(f"cannot create the sandbox: {reply.get('message', reply)}")
        except BaseException:
            self._uids.discard(uid)
            await self._discard(spare)
            raise
        process = LinuxProcess(
            self,
            spare.cell_id,
            spare.group,
            spare.control,
            spare.init_pid,
            spare.output_fd,
            uid,
            spare.root,
            spec.memory_mb,
        )
        if not spec.argv:
            return process  # the caller starts extensions, then the runtime
        try:
            await process.start(spec.argv, spec.env, spec.cwd)
        except BaseException:
            await process.close()
            raise
        return process

    async def start_template(self, spec: ProcessSpec) -> Template:
        """The template runs in a cell of its own; each fork gets a cgroup of its own and
        (where user namespaces are allowed) a private ``/tmp``, in the template's cell."""
        process = await self.spawn(dataclasses.replace(spec, argv=()))
        assert isinstance(process, LinuxProcess)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            await process.start_template(spec.argv, spec.env, spec.cwd, theirs.fileno())
        except BaseException:
            ours.close()
            await process.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        uid, memory_mb = process.uid, spec.memory_mb

        async def place(pid: int) -> Placement:
            return await self._place_fork(pid, uid, memory_mb)

        return Template(process, ours, place, spec.tmp_mb)

    async def _place_fork(self, pid: int, uid: int, memory_mb: int) -> Placement:
        """Move a forked child (host ``pid``) into a new group with the version's limits."""
        cell_id = f"{uuid.uuid4().hex}-fork"
        run_dir = self._runs / cell_id
        group = self.hierarchy.group(cell_id)
        run_dir.mkdir(parents=True, exist_ok=True)  # first: names the group for ``_reclaim``
        try:
            await asyncio.to_thread(group.create, memory_mb, LIMIT_PROCS)
            # The helper ends the group too if lambdad dies (a frozen fork cannot by itself).
            await self._track(cell_id, group, run_dir)
            await asyncio.to_thread(_join, group, pid)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(group.remove)
            await asyncio.to_thread(shutil.rmtree, run_dir, True)
            await self.untrack(cell_id)
            raise
        return CellGroupPlacement(self, group, run_dir, uid, memory_mb)

    async def _track(self, cell_id: str, group: cgroups.CellGroup, run_dir: Path) -> None:
        request = {
            "op": "track",
            "id": cell_id,
            "cgroups": group.procs_files(),
            "root": str(run_dir / "root"),
        }
        await self._ask_shielded(request)

    async def untrack(self, cell_id: str) -> None:
        """The helper no longer needs to end this group (lambdad removed it)."""
        if self.state is SpawnerState.RUNNING and self._control is not None:
            with contextlib.suppress(OSError):
                await self._ask_shielded({"op": "untrack", "id": cell_id})

    async def _ask_shielded(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request whose reply is read even if the caller is cancelled meanwhile."""
        exchange = asyncio.ensure_future(self._ask_helper(request, []))
        exchange.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(exchange)

    def protections(self) -> dict[str, str]:
        version = self.hierarchy.version.value
        return {
            "isolation": f"linux sandbox (root, cgroup {version})",
            "memory limit": f"active (cgroup {version}, no swap)",
            "cpu share": f"active (cgroup {version}, 1 vCPU per {cgroups.MB_PER_VCPU} MB; "
            "unlimited during init, as Lambda's init boost)",
            "process limit": f"active ({LIMIT_PROCS} per environment)",
            "open files": f"active ({LIMIT_FILES} per process)",
            "private /tmp": "active (tmpfs of EphemeralStorage MB; counts toward memory)",
            "mount and pid namespaces": "active (code read-only at /var/task, layers at /opt)",
            "unprivileged user": f"active (one uid per environment from {self.uid_base})",
            "runtime api": "active (each environment reaches only its own invocations)",
            "freeze between invocations": f"active (cgroup {version} freezer)",
            "forked python runtimes": (
                f"active (python on {self.zygote_python} starts as a fork of a template)"
                if self._fork_python
                else "off (LAMBDAD_FORK_PYTHON=0)"
            ),
            "spare cells": f"{SPARE_CELLS} made ahead of need",
            "snapstart environments": (
                "forks of the version's template cell: own cgroup (memory, cpu, pids, "
                "freezer, kill), own /tmp (user+mount namespace"
                + ("" if _user_namespaces() else ": NOT AVAILABLE, shared with the template")
                + "); shared with the other forks of the version: PID, IPC and UTS "
                "namespaces, root file system and uid (the Runtime API also checks that the "
                "connecting socket is held by a process of the environment's own cgroup)"
            ),
        }
