"""The Linux sandbox (as root): every environment in a cell of its own.

A cell has its own mount, PID, IPC, UTS and network namespaces (``network.py``: outbound only,
behind NAT, walled by nftables) and its own cgroup (memory without
swap, CPU in proportion to memory, at most 1,024 processes, a freezer); its processes run as
an unprivileged user of its own, with at most 1,024 open files, inside a root file system with
the code read-only at ``/var/task``, layers at ``/opt``, the runtime at ``/var/runtime`` and a
private ``/tmp`` of ``EphemeralStorage`` MB. The namespace work happens in small helper
processes (``cellinit.py``, driven through ``helper.py``) so that lambdad itself never forks:
one on lambdad's own interpreter, and one per other Python interpreter in use, whose cells
fork that interpreter's Python runtime (docs/zygote.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import os
import shutil
import signal
import socket
import sys
import uuid
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lambdad.runtime.bootstraps.python import syscall_filter
from lambdad.runtime.sandbox import cgroups
from lambdad.runtime.sandbox.base import (
    Exit,
    Layout,
    ProcessSpec,
    Reach,
    Sandbox,
    SandboxProcess,
    SiblingProcess,
)
from lambdad.runtime.sandbox.helper import (
    MAX_MESSAGE,
    PYTHON_BOOTSTRAP_IN_RUNTIME,
    SPARE_CELLS,
    CellSetup,
    Helper,
    SpareCell,
    is_python_bootstrap,
)
from lambdad.runtime.sandbox.network import (
    MARK,
    CellLink,
    CellNetwork,
    CellSockets,
    EndpointRelay,
    function_narrowing,
)
from lambdad.runtime.sandbox.peers import owns_inode, peer_socket, peer_uid
from lambdad.runtime.sandbox.ready_networks import ReadyNetworks
from lambdad.runtime.sandbox.template import TEMPLATE_FD_VARIABLE, Placement, Template

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Cell users are taken from this range, one per live environment.
UID_BASE = 1_000_000
UID_SLOTS = 65_536
UID_BLOCKS = 4096
LIMIT_PROCS = 1024
LIMIT_FILES = 1024

log = logging.getLogger(__name__)


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


def cell_hosts(directory: Path) -> Path | None:
    """The cells' ``/etc/hosts``: the host's, plus ``sandbox.localdomain`` as on Lambda.

    Telemetry API subscribers listen on (and name in their URI) ``sandbox.localdomain``: the
    cell's own loopback (lambdad delivers to the cell's address). None where the host has no
    such file to cover.
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
    """An environment's cell: its init (a fork of ``helper``) serves the control socket."""

    def __init__(
        self, sandbox: LinuxSandbox, helper: Helper, spare: SpareCell, uid: int, memory_mb: int
    ) -> None:
        self._helper = helper
        self.cell_id = spare.cell_id
        self._placement = CellPlacement(sandbox, helper, spare, uid, memory_mb)
        self._control = spare.control
        self.init_pid = spare.init_pid
        self.pid = spare.init_pid
        self.output_fd = spare.output_fd
        self.uid = uid
        self._exit: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read_control(), name=f"cell-{self.cell_id}")
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
                data = await loop.sock_recv(self._control, MAX_MESSAGE)
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
        if self._helper.can_fork(argv):
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
        if self._helper.can_fork(argv):
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
        self._placement.kill()

    def max_memory_mb(self) -> int:
        self._peak_mb = max(self._peak_mb, self._placement.max_memory_mb())
        return self._peak_mb

    def oom_kills(self) -> int:
        return self._placement.oom_kills()

    def end_init(self) -> None:
        self._placement.end_init()

    def freeze(self) -> None:
        self._placement.freeze()

    def thaw(self) -> None:
        self._placement.thaw()

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        return self._placement.owns_connection(local, peer)

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        return self._placement.socket(family, kind, proto)

    @property
    def link(self) -> CellLink | None:
        return self._placement.link

    def narrowed(self) -> None:
        """The cell has egress rules of its own, removed when it closes."""
        self._placement.narrowed = True

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
        await self._placement.close()


class _GroupPlacement(Placement):
    """An environment's limits in a cgroup of its own (memory, CPU, pids, freezer)."""

    def __init__(self, group: cgroups.CellGroup, uid: int, memory_mb: int) -> None:
        self._group = group
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


class CellPlacement(_GroupPlacement):
    """An environment in a cell of its own: its cgroup, its user, its root file system."""

    def __init__(
        self, sandbox: LinuxSandbox, helper: Helper, spare: SpareCell, uid: int, memory_mb: int
    ) -> None:
        super().__init__(spare.group, uid, memory_mb)
        self._sandbox = sandbox
        self._helper = helper
        self._root = spare.root
        self.link = spare.link
        self._sockets = CellSockets(spare.init_pid) if spare.link is not None else None
        #: Whether the function's own egress rules were applied to this cell.
        self.narrowed = False

    def end_init(self) -> None:
        super().end_init()
        self._helper.refill()  # the next spare cell is made once this init is over

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        if self.link is not None:  # the cell's own address: no other cell can have it
            return peer[0] == self.link.address
        return peer_uid(local, peer) == self._uid

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        if self._sockets is None:
            return socket.socket(family, kind, proto)
        return self._sockets.socket(family, kind, proto)

    async def close(self) -> None:
        if self._sockets is not None:
            self._sockets.close()
        if self.narrowed and self.link is not None:
            await asyncio.to_thread(self._sandbox.network.widen, self.link)
        await asyncio.to_thread(self._group.remove)
        await asyncio.to_thread(shutil.rmtree, self._root.parent, True)
        self._sandbox.release_uid(self._uid)
        self._sandbox.network.release(self.link)


class CellGroupPlacement(_GroupPlacement):
    """A forked environment in the Linux sandbox: a cgroup of its own (memory, CPU, pids,
    freezer) inside its template's cell, whose namespaces, root and user it shares."""

    def __init__(
        self,
        sandbox: LinuxSandbox,
        group: cgroups.CellGroup,
        run_dir: Path,
        uid: int,
        memory_mb: int,
        cell: tuple[CellLink, int] | None = None,
    ) -> None:
        super().__init__(group, uid, memory_mb)
        self._sandbox = sandbox
        self._run_dir = run_dir
        #: The template cell's network end and its init's pid, where it has a network.
        self._cell = cell
        self._sockets = CellSockets(cell[1]) if cell is not None else None

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        """The cell's uid, and a socket held by a process of this environment's own group:
        forks of one template share a uid, so the uid alone cannot tell them apart."""
        if self._cell is not None:
            link, init_pid = self._cell
            if peer[0] != link.address:
                return False
            found = peer_socket(local, peer, init_pid)
        else:
            found = peer_socket(local, peer)
        if found is None or found[0] != self._uid:
            return False
        return owns_inode(self._group.pids(), found[1])

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        if self._sockets is None:
            return socket.socket(family, kind, proto)
        return self._sockets.socket(family, kind, proto)

    async def close(self) -> None:
        if self._sockets is not None:
            self._sockets.close()
        await asyncio.to_thread(self._group.remove)
        await asyncio.to_thread(shutil.rmtree, self._run_dir, True)
        await self._sandbox.untrack(self._group.name)


class LinuxSandbox(Sandbox):
    """Cells made by sandbox helpers: one on lambdad's own interpreter, started with the
    sandbox, and (with ``fork_python``) one more per other Python interpreter a function's
    runtime resolves to, started at the first cold start that needs it and kept.

    A Python runtime is forked from the cell init of its own interpreter's helper; an
    interpreter whose helper cannot run (too old, broken) has its runtimes exec'd in cells of
    the main helper, and lambdad says why once.
    """

    name = "linux"

    def __init__(
        self,
        runs_dir: Path,
        runtime_dir: Path,
        shared_dirs: list[str],
        *,
        fork_python: bool = False,
        pythons: Sequence[str] = (),
        network: CellNetwork | None = None,
        networks_ahead: int = 0,
        endpoint: tuple[str, int] | None = None,
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
        self._fork_python = fork_python
        #: The main helper's interpreter: lambdad's own (its real path, not a venv's link).
        self.zygote_python = os.path.realpath(sys.executable)
        #: The interpreters the Python runtimes resolve to here (for ``lambdad doctor``).
        self._pythons = sorted({*pythons, self.zygote_python})
        self._main: Helper | None = None
        #: Helpers of the other interpreters, by interpreter, once started.
        self._helpers: dict[str, Helper] = {}
        self._starting: dict[str, asyncio.Task[Helper]] = {}
        #: Interpreters without a zygote, and why (said once, in lambdad's log).
        self.no_zygote: dict[str, str] = {}
        self._setup: CellSetup | None = None
        self._uids: set[int] = set()
        self._next_uid = 0
        #: Each data dir gets its own block of uids, so two lambdads on one host never share
        #: a cell user (the Runtime API's ownership check is by uid).
        self.uid_base = UID_BASE + (zlib.crc32(str(runs_dir).encode()) % UID_BLOCKS) * UID_SLOTS
        #: The cells' network namespaces and walls (docs/sandbox.md), or why they are not built.
        self.network = network or CellNetwork(runs_dir, enabled=False)
        #: Cells' networks made ahead of need (``ready_networks.py``), once the walls are up.
        self._networks_ahead = networks_ahead
        self._networks: ReadyNetworks | None = None
        #: lambdad's own API (host, port), relayed to the cells at their gateway.
        self.endpoint = endpoint
        self._relay: EndpointRelay | None = None
        self._reach = Reach()
        self.state = SpawnerState.NEW

    async def open(self) -> None:
        await asyncio.to_thread(self.hierarchy.prepare)
        hosts = await asyncio.to_thread(cell_hosts, self._runs.parent)
        await asyncio.to_thread(self._reclaim)
        await self._open_network()
        if self.network.active and self._networks_ahead > 0:
            self._networks = ReadyNetworks(self.network, self._networks_ahead, self._make_networks)
        self._setup = CellSetup(
            self.hierarchy,
            self._runs,
            self._system,
            self._prebinds(hosts),
            self.network,
            self._networks,
        )
        main = Helper(self.zygote_python, self._setup, self._zygote_bootstrap())
        self._main = main
        self.state = SpawnerState.RUNNING
        try:
            await main.open()
            if self.network.active:  # removed by the helper too, should lambdad be killed
                for argv in self.network.tear_down_commands():
                    await main.ask_shielded({"op": "at_exit", "argv": argv})
        except BaseException:
            await self.close()
            raise
        if main.zygote_error is not None:
            self._no_zygote(main.python, main.zygote_error)
        main.refill()
        if self._networks is not None:
            self._networks.refill()

    async def _make_networks(self, links: Sequence[CellLink]) -> list[int]:
        if self._main is None or self.state is not SpawnerState.RUNNING:
            raise OSError("the Linux sandbox is not running")
        return await self._main.make_networks(links)

    async def settle(self) -> None:
        """Wait until no spare cell and no cell network is being made."""
        while True:
            pools = [h.spares for h in (self._main, *self._helpers.values()) if h is not None]
            busy = [p for p in pools if p.filling]
            if self._networks is not None and self._networks.filling:
                await self._networks.settle()
            elif busy:
                await asyncio.gather(*(p.settle() for p in busy))
            else:
                return

    def made_ahead(self) -> str:
        """For ``lambdad doctor``: what is ready ahead of need now."""
        helpers = [h for h in (self._main, *self._helpers.values()) if h is not None]
        spares = sum(len(h.spares) for h in helpers)
        filling = any(h.spares.filling for h in helpers)
        said = f"{spares} spare cells ({SPARE_CELLS} per helper)"
        if self._networks is not None:
            said += f", {len(self._networks)} of {self._networks.target} cells' networks"
            filling = filling or self._networks.filling
        return said + ("; making more" if filling else "")

    async def _open_network(self) -> None:
        """The bridge and walls, and lambdad's endpoint relayed at the cells' gateway."""
        network = self.network
        await network.open()
        if not network.active:
            return
        endpoints: dict[str, str] = {}
        if self.endpoint is not None and self.endpoint[1]:
            host, port = self.endpoint
            relay = EndpointRelay(network, host, port)
            try:
                await relay.start()
            except OSError as exc:
                log.warning("lambdad's endpoint is not reachable from cells: %s", exc)
            else:
                self._relay = relay
                at = f"{network.gateway}:{relay.port}"
                names = {host, "127.0.0.1", "localhost"} - {"0.0.0.0", "::", ""}
                endpoints = {f"{name}:{port}": at for name in names}
        self._reach = Reach(network.gateway, MARK, endpoints)

    def reach(self) -> Reach:
        return dataclasses.replace(self._reach, api_url=self.api_url)

    def take_endpoint(self) -> socket.socket | None:
        return self._relay.hand_over() if self._relay is not None else None

    def _zygote_bootstrap(self) -> Path | None:
        return self._runtime_dir / PYTHON_BOOTSTRAP_IN_RUNTIME if self._fork_python else None

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
        for starting in list(self._starting.values()):
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await starting
        helpers = [*self._helpers.values(), *([self._main] if self._main else [])]
        self._helpers.clear()
        if self._networks is not None:
            await self._networks.close()
        # Side by side: each helper ends its own cells (up to seconds for frozen ones).
        await asyncio.gather(*(helper.close() for helper in helpers))
        await asyncio.to_thread(self.hierarchy.release)
        if self._relay is not None:
            await self._relay.close()
        await self.network.close()

    def _no_zygote(self, python: str, reason: str) -> None:
        if python not in self.no_zygote:
            self.no_zygote[python] = reason
            log.warning("no zygote for %s (Python runtimes on it are exec'd): %s", python, reason)

    async def _helper_for(self, argv: Sequence[str]) -> Helper:
        """The helper whose cells can fork ``argv``; the main helper for anything else."""
        main = self._main
        if main is None or self.state is not SpawnerState.RUNNING:
            raise OSError("the Linux sandbox is not running")
        if not self.can_fork(argv) or argv[0] == main.python:
            return main
        python = argv[0]
        if python in self._helpers:
            return self._helpers[python]
        starting = self._starting.get(python)
        if starting is None:
            starting = asyncio.create_task(self._start_helper(python), name=f"helper-{python}")
            self._starting[python] = starting
        # Shielded: the first cold start that needs the helper may be cancelled, the helper
        # is still wanted by the next one.
        return await asyncio.shield(starting)

    async def _start_helper(self, python: str) -> Helper:
        """Start ``python``'s helper (lazily: see docs/zygote.md); the main one if it cannot."""
        assert self._setup is not None
        assert self._main is not None
        helper = Helper(python, self._setup, self._zygote_bootstrap())
        try:
            await helper.open()
            reason = helper.zygote_error
        except OSError as exc:
            reason = str(exc)
        except BaseException:
            await helper.close()
            raise
        finally:
            self._starting.pop(python, None)
        if reason is not None or self.state is not SpawnerState.RUNNING:
            if reason is not None:
                self._no_zygote(python, reason)  # before any wait: no second start is tried
            await helper.close()
            return self._main
        self._helpers[python] = helper  # its spares are made when its first cell is taken
        return helper

    def _allocate_uid(self) -> int:
        for _ in range(UID_SLOTS):
            uid = self.uid_base + self._next_uid
            self._next_uid = (self._next_uid + 1) % UID_SLOTS
            if uid not in self._uids:
                self._uids.add(uid)
                return uid
        raise OSError("no free cell user ids")

    def release_uid(self, uid: int) -> None:
        self._uids.discard(uid)

    def layout(self, task_root: Path, opt_dir: Path | None, tmp_dir: Path) -> Layout:
        return Layout(task_root="/var/task", opt="/opt", tmp="/tmp", runtime_dir="/var/runtime")

    def _prebinds(self, hosts: Path | None) -> list[dict[str, str]]:
        binds = [
            {"source": str(self._runtime_dir), "target": "/var/runtime"},
            *({"source": d, "target": d} for d in self._shared),
        ]
        if hosts is not None:
            binds.append({"source": str(hosts), "target": "/etc/hosts"})
        resolv = self.network.resolv_conf_bind()
        if resolv is not None:
            binds.append(resolv)
        return binds

    def can_fork(self, argv: Sequence[str]) -> bool:
        """Whether ``argv`` is lambdad's Python bootstrap on an interpreter that has (or can
        get) a zygote: its environments then start as forks of a cell init."""
        return self._fork_python and is_python_bootstrap(argv) and argv[0] not in self.no_zygote

    async def spawn(self, spec: ProcessSpec) -> SandboxProcess:
        """A cell of the helper for ``spec.argv`` (see ``_helper_for``), its process started;
        with an empty ``argv`` (extensions first), of the helper for ``spec.runtime_argv``."""
        helper = await self._helper_for(spec.argv or spec.runtime_argv)
        process = await self._cell(helper, spec)
        if not spec.argv:
            return process  # the caller starts extensions, then the runtime
        try:
            await process.start(spec.argv, spec.env, spec.cwd)
        except BaseException:
            await process.close()
            raise
        return process

    async def _cell(self, helper: Helper, spec: ProcessSpec) -> LinuxProcess:
        """A spare cell of ``helper`` given the environment's root file system and user."""
        spare = await helper.take_spare()
        try:
            uid = self._allocate_uid()
        except BaseException:
            await helper.discard(spare)
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
            await loop.sock_sendall(spare.control, json.dumps(build).encode())
            # The group's limits (a few small cgroup writes, ~0.1 ms) are set while the cell
            # builds its root: on the loop, as a thread hop would cost more than the writes.
            spare.group.create(spec.memory_mb, LIMIT_PROCS)
            data = await loop.sock_recv(spare.control, MAX_MESSAGE)
            reply = json.loads(data) if data else {"op": "gone"}
            if reply.get("op") != "built":
                raise OSError(f"cannot create the sandbox: {reply.get('message', reply)}")
        except BaseException:
            self._uids.discard(uid)
            await helper.discard(spare)
            raise
        process = LinuxProcess(self, helper, spare, uid, spec.memory_mb)
        if spare.link is not None:
            try:
                await self._narrow(process, spare.link, spec.env)
            except BaseException:
                await process.close()
                raise
        return process

    async def _narrow(self, process: LinuxProcess, link: CellLink, env: Mapping[str, str]) -> None:
        """The function's own egress rules (``LAMBDAD_EGRESS_DENY``/``_ALLOW`` variables), on
        this cell: one ``nft`` run on the cold start of such functions only."""
        rules = function_narrowing(env)
        if rules is not None:
            await asyncio.to_thread(self.network.narrow, link, rules)
            process.narrowed()

    async def start_template(self, spec: ProcessSpec) -> Template:
        """The template runs in a cell of its own (of its interpreter's helper, so that a
        Python template is a fork too); each fork gets a cgroup of its own and (where user
        namespaces are allowed) a private ``/tmp``, in the template's cell."""
        process = await self._cell(await self._helper_for(spec.argv), spec)
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
        cell = (process.link, process.init_pid) if process.link is not None else None

        async def place(pid: int) -> Placement:
            return await self._place_fork(pid, uid, memory_mb, cell)

        return Template(process, ours, place, spec.tmp_mb)

    async def _place_fork(
        self, pid: int, uid: int, memory_mb: int, cell: tuple[CellLink, int] | None = None
    ) -> Placement:
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
        return CellGroupPlacement(self, group, run_dir, uid, memory_mb, cell)

    async def _track(self, cell_id: str, group: cgroups.CellGroup, run_dir: Path) -> None:
        """The main helper ends the group if lambdad dies (whichever helper made the cell)."""
        if self._main is None:
            raise OSError("the Linux sandbox is not running")
        request = {
            "op": "track",
            "id": cell_id,
            "cgroups": group.procs_files(),
            "root": str(run_dir / "root"),
        }
        await self._main.ask_shielded(request)

    async def untrack(self, cell_id: str) -> None:
        """The helper no longer needs to end this group (lambdad removed it)."""
        if self.state is SpawnerState.RUNNING and self._main is not None:
            with contextlib.suppress(OSError):
                await self._main.ask_shielded({"op": "untrack", "id": cell_id})

    def zygotes(self) -> dict[str, str]:
        """For ``lambdad doctor``: how each Python interpreter's runtimes start."""
        report = {}
        for python in self._pythons:
            helper = self._main if python == self.zygote_python else self._helpers.get(python)
            if not self._fork_python:
                state = "exec (LAMBDAD_FORK_PYTHON=0)"
            elif python in self.no_zygote:
                state = f"exec (no zygote: {self.no_zygote[python]})"
            elif helper is not None and helper.zygote:
                state = f"zygote (python {helper.version}, helper pid {helper.pid})"
            else:
                state = "zygote (its helper starts at the first cold start that needs it)"
            report[f"python {python}"] = state
        return report

    def _filter_state(self) -> str:
        reason = self._main.filter_error if self._main is not None else "not started"
        if reason is not None:
            return f"NOT ACTIVE: {reason}"
        return f"active ({syscall_filter.describe()}; the runtime, its extensions and children)"

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
            **self.network.protections(),
            "freeze between invocations": f"active (cgroup {version} freezer)",
            "syscall filter": self._filter_state(),
            "forked python runtimes": (
                "active (a Python runtime starts as a fork of a template on its own "
                "interpreter: see each python entry)"
                if self._fork_python
                else "off (LAMBDAD_FORK_PYTHON=0)"
            ),
            **self.zygotes(),
            "spare cells": f"{SPARE_CELLS} per helper made ahead of need",
            "made ahead": self.made_ahead(),
            "cell making": (
                "clone into new namespaces (one process per cell)"
                if self._main is not None and self._main.clones
                else "an outer child enters the namespaces and forks the cell's init"
            ),
            "snapstart environments": (
                "forks of the version's template cell: own cgroup (memory, cpu, pids, "
                "freezer, kill), own /tmp (user+mount namespace"
                + ("" if _user_namespaces() else ": NOT AVAILABLE, shared with the template")
                + "); shared with the other forks of the version: PID, IPC and UTS "
                "namespaces, root file system and uid (the Runtime API also checks that the "
                "connecting socket is held by a process of the environment's own cgroup)"
            ),
        }
