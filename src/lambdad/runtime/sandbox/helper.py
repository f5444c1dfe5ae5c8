"""The client of one sandbox helper: a ``cellinit.py spawner`` process on one Python interpreter.

A helper makes cells (namespaces, cgroups, a prepared root) on request and, with a zygote
loaded, its cells' inits can fork that interpreter's Python runtime instead of exec'ing it.
This module holds one helper's process, its control socket, the reader that hands each reply to
the request waiting for it (by sequence number), and its spare cells. ``LinuxSandbox``
(``linux.py``) decides which helper makes which cell and turns a cell into an environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import os
import shutil
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambdad.runtime.sandbox import cgroups
from lambdad.runtime.sandbox.network import CellLink, CellNetwork
from lambdad.runtime.sandbox.ready_networks import ReadyNetworks
from lambdad.runtime.sandbox.spares import SparePool

CELLINIT = Path(__file__).with_name("cellinit.py")
#: The Python bootstrap's path below lambdad's runtime directory (``/var/runtime`` in a cell).
PYTHON_BOOTSTRAP_IN_RUNTIME = "python/bootstrap.py"
#: The Python bootstrap as a cell's processes see it.
PYTHON_BOOTSTRAP_IN_CELL = f"/var/runtime/{PYTHON_BOOTSTRAP_IN_RUNTIME}"
#: Cells kept made ahead of need (per helper), so a cold start does not wait for cgroup joins.
SPARE_CELLS = 2
#: The oldest interpreter ``cellinit.py`` runs on (``socket.send_fds``/``recv_fds``).
OLDEST_PYTHON = (3, 9)
#: How long a new helper may take to say it is ready (it imports the bootstrap first).
HELLO_TIMEOUT = 30.0
MAX_MESSAGE = 1 << 20


class HelperState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def is_python_bootstrap(argv: Sequence[str]) -> bool:
    """Whether ``argv`` starts lambdad's Python bootstrap: ``<python> -s <bootstrap>``."""
    return len(argv) == 3 and argv[1] == "-s" and argv[2] == PYTHON_BOOTSTRAP_IN_CELL


@dataclasses.dataclass(frozen=True, slots=True)
class CellSetup:
    """What every cell gets, whichever helper makes it."""

    hierarchy: cgroups.Hierarchy
    runs: Path
    #: The host's system directories (bound read-only) and links.
    system: list[dict[str, str]]
    #: Bound into every cell ahead of need: the runtime, interpreter prefixes, ``/etc/hosts``.
    prebinds: list[dict[str, str]]
    #: The cells' network (a namespace each) where it could be built.
    network: CellNetwork
    #: Cells' networks made ahead of need (None: each cell makes its own).
    networks: ReadyNetworks | None = None


@dataclasses.dataclass(slots=True)
class SpareCell:
    """A cell made ahead of need: namespaces and cgroups, waiting for its root file system."""

    cell_id: str
    group: cgroups.CellGroup
    control: socket.socket
    init_pid: int
    output_fd: int
    root: Path
    #: The cell's network end; None when cells share the host's network.
    link: CellLink | None = None


class Helper:
    """One ``cellinit.py spawner`` on ``python``; with ``bootstrap`` it is a zygote too.

    ``open`` starts it and waits for its hello, which says whether the zygote loaded (and if
    not, why); ``zygote`` is then true when its cells can fork ``python``'s runtime.
    """

    def __init__(self, python: str, setup: CellSetup, bootstrap: Path | None) -> None:
        self.python = python
        self._setup = setup
        self._bootstrap = bootstrap
        self.zygote = False
        self.clones = False
        #: Why the zygote is not loaded, when it was asked for and is not.
        self.zygote_error: str | None = None
        self.filter_error: str | None = None
        self.version = ""
        self._process: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        #: Replies of the helper, handed to the request waiting for each (by ``seq``).
        self._replies: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._sending = asyncio.Lock()
        self._seq = 0
        #: Refilled when a cell's init is over (``refill``) and when the last one is taken.
        self._spares = SparePool(
            SPARE_CELLS,
            self.make_spare,
            self.discard,
            name="spare-cells",
            refill_when_emptied=True,
        )
        self.state = HelperState.NEW

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def open(self) -> None:
        """Start the helper; ``OSError`` (saying why) if it cannot run on its interpreter."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        zygote = [str(self._bootstrap)] if self._bootstrap is not None else []
        try:
            self._process = await asyncio.create_subprocess_exec(
                self.python,
                "-S",
                str(CELLINIT),
                "spawner",
                str(theirs.fileno()),
                *zygote,
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._control = ours
        self.state = HelperState.RUNNING
        hello = await self._hello()
        self.version = ".".join(str(part) for part in hello.get("version", []))
        if tuple(hello.get("version", ()))[:2] < OLDEST_PYTHON:
            raise OSError(f"python {self.version} is older than 3.9, the oldest the helper runs on")
        self.zygote = bool(hello.get("zygote"))
        #: Whether cell inits are cloned into their namespaces (else an outer child makes them).
        self.clones = bool(hello.get("clone"))
        #: Why the helper's cells run without the syscall filter (None: they have it).
        self.filter_error = hello.get("filter_error")
        if self._bootstrap is not None and not self.zygote:
            self.zygote_error = str(hello.get("error") or "the bootstrap did not load")
        self._replies = asyncio.create_task(self._read_replies(), name="sandbox-helper-replies")

    async def _hello(self) -> dict[str, Any]:
        assert self._control is not None
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self._control, MAX_MESSAGE), HELLO_TIMEOUT)
        except TimeoutError:
            raise OSError(f"the helper on {self.python} did not start in time") from None
        if not data:
            code = await self._process.wait() if self._process is not None else None
            raise OSError(
                f"the helper on {self.python} exited with status {code} before it was ready "
                "(its error is on lambdad's stderr)"
            )
        hello: dict[str, Any] = json.loads(data)
        return hello

    def can_fork(self, argv: Sequence[str]) -> bool:
        """Whether ``argv`` is the Python bootstrap on this helper's zygote interpreter."""
        return self.zygote and is_python_bootstrap(argv) and argv[0] == self.python

    async def close(self) -> None:
        """Discard the spares, then end the helper; it ends every cell it made still alive."""
        if self.state is HelperState.CLOSED:
            return
        self.state = HelperState.CLOSED
        await self._spares.close()
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
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    # ------------------------------------------------------------------------ requests

    async def ask(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        """Send ``request`` and wait for its reply; many may be outstanding (the helper makes
        cells concurrently), told apart by a sequence number."""
        if self.state is not HelperState.RUNNING or self._control is None:
            raise OSError("the sandbox helper has stopped")
        self._seq += 1
        seq = self._seq
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = waiter
        data = json.dumps({**request, "seq": seq}).encode()
        try:
            await self._send(self._control, data, fds)
            return await waiter
        finally:
            self._waiting.pop(seq, None)

    async def _send(self, control: socket.socket, data: bytes, fds: Sequence[int]) -> None:
        """Send one message, waiting while the socket is full (a burst of cells asked for at
        once): one sender at a time, as a file descriptor has one writer callback."""
        loop = asyncio.get_running_loop()
        async with self._sending:
            while True:
                try:
                    if fds:
                        socket.send_fds(control, [data], list(fds))
                    else:
                        control.send(data)
                    return
                except BlockingIOError:
                    writable: asyncio.Future[None] = loop.create_future()
                    loop.add_writer(control.fileno(), _resolve, writable)
                    try:
                        await writable
                    finally:
                        loop.remove_writer(control.fileno())

    async def ask_shielded(
        self, request: dict[str, Any], fds: Sequence[int] = ()
    ) -> dict[str, Any]:
        """A request whose reply is read even if the caller is cancelled meanwhile: it must
        not be left in the socket for the next request to read."""
        exchange = asyncio.ensure_future(self.ask(request, fds))
        exchange.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(exchange)

    async def _read_replies(self) -> None:
        assert self._control is not None
        try:
            while True:
                data, fds = await _recv_fds(self._control)
                if not data:
                    _close_all(fds)
                    break
                reply: dict[str, Any] = json.loads(data)
                if fds:
                    reply["fds"] = fds  # the namespaces of a ``networks`` reply
                waiter = self._waiting.pop(int(reply.get("seq") or 0), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
                else:
                    _close_all(fds)  # its asker gave up (lambdad is stopping)
        except OSError:
            pass
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(OSError("the sandbox helper has stopped"))
        self._waiting.clear()

    async def make_networks(self, links: Sequence[CellLink]) -> list[int]:
        """Network namespaces made ahead for ``links`` (``ready_networks.py``): their
        descriptors, in order; fewer when the rest could not be made (``OSError`` if none)."""
        nets = [link.request() for link in links]
        request = {"op": "networks", "id": uuid.uuid4().hex, "nets": nets}
        reply = await self.ask(request)
        fds: list[int] = list(reply.get("fds", []))
        if not fds and "error" in reply:
            raise OSError(f"cannot make the cells' networks: {reply['error']}")
        return fds

    # ------------------------------------------------------------------------ spare cells

    async def make_spare(self, background: bool = False) -> SpareCell:
        """A cell with its namespaces and cgroups but no root file system yet.

        Joining cgroups is the slow part of making a cell (the kernel may wait for an RCU
        grace period), so it happens here, off the invoke path.
        """
        if self.state is not HelperState.RUNNING:
            raise OSError("the Linux sandbox is not running")
        cell_id = f"{uuid.uuid4().hex}-cell"
        group = self._setup.hierarchy.group(cell_id)
        root = self._setup.runs / cell_id / "root"
        network = self._setup.network
        ready = self._setup.networks.take() if self._setup.networks is not None else None
        link = ready.link if ready is not None else network.allocate(cell_id)
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
                "system": self._setup.system,
                "prebind": self._setup.prebinds,
            }
            fds = [output_w, theirs.fileno()]
            if ready is not None:
                # A network namespace made ahead, which its init joins.
                fds.append(ready.fd)
            elif link is not None:
                # Its own network namespace, set up by its init while it waits.
                request["net"] = link.request()
            reply = await self.ask_shielded(request, fds)
            if reply.get("id") != cell_id and "error" not in reply:
                raise OSError(f"the sandbox helper answered for another cell: {reply}")
            if "error" in reply:
                raise OSError(f"cannot create the sandbox: {reply['error']}")
        except BaseException:
            os.close(output_r)
            ours.close()
            await asyncio.to_thread(group.remove)
            await asyncio.to_thread(shutil.rmtree, root.parent, True)
            network.release(link)
            raise
        finally:
            os.close(output_w)
            theirs.close()
            if ready is not None:
                os.close(ready.fd)  # the cell's init holds it now (or it is gone)
        os.set_blocking(output_r, False)
        ours.setblocking(False)
        return SpareCell(cell_id, group, ours, int(reply["pid"]), output_r, root, link)

    async def discard(self, spare: SpareCell) -> None:
        with contextlib.suppress(OSError):
            spare.control.close()
        with contextlib.suppress(OSError):
            os.close(spare.output_fd)
        await asyncio.to_thread(spare.group.remove)
        await asyncio.to_thread(shutil.rmtree, spare.root.parent, True)
        self._setup.network.release(spare.link)

    async def take_spare(self) -> SpareCell:
        return await self._spares.take()

    @property
    def spares(self) -> SparePool[SpareCell]:
        return self._spares

    def refill(self) -> None:
        """Make spare cells up to ``SPARE_CELLS`` in the background.

        Called when an environment's init has ended (and by the pool when the last spare is
        taken), not on every take: making a cell (a fork, namespaces, cgroup joins, some 25
        mounts) would compete for the CPUs with the cold start that took the spare.
        """
        if self.state is HelperState.RUNNING:
            self._spares.refill()


#: The most descriptors one reply carries (``cellinit.MAX_NETWORKS`` namespaces).
MAX_REPLY_FDS = 64


async def _recv_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message from the non-blocking ``sock`` and the descriptors it carries."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_REPLY_FDS)
        except BlockingIOError:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _resolve, readable)
            try:
                await readable
            finally:
                loop.remove_reader(sock.fileno())
            continue
        return data, list(fds)


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
