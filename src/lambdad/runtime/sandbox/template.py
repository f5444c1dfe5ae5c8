"""SnapStart templates: a process that ran a function version's init and forks environments.

The template is the Python runtime started with a control socket (``_LAMBDAD_TEMPLATE_FD``,
see ``bootstraps/python/snapstart.py``). After its init it answers ``ready`` (or
``init_error``) and from then on only forks. A forked child is made ahead of need (a *spare*):
forked, told its pid in lambdad's PID namespace (SCM_CREDENTIALS), given a private ``/tmp``
where the sandbox can, and *placed* by the sandbox (its own cgroup in the Linux sandbox, its
own session in the plain one), all off the cold-start path. A cold start only sends the spare
its environment variables; it then reseeds, runs the after-restore hooks and serves the
Runtime API.

The template reaps its children and reports their exits; when lambdad closes the control
socket it kills them and exits.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import enum
import json
import os
import signal
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lambdad.runtime.sandbox.base import Exit, SandboxProcess
from lambdad.runtime.sandbox.spares import SparePool

_MAX_MESSAGE = 1 << 20
#: Children forked ahead of need per template.
SPARE_FORKS = 1
#: Environment variable naming the template's control socket in its process.
TEMPLATE_FD_VARIABLE = "_LAMBDAD_TEMPLATE_FD"


class Placement(abc.ABC):
    """Where a forked environment's limits live; each method acts on that environment only."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL the environment's processes."""

    @abc.abstractmethod
    def max_memory_mb(self) -> int: ...

    def oom_kills(self) -> int:
        return 0

    def end_init(self) -> None:  # noqa: B027 - optional: a no-op where unsupported
        """Restore is over: the CPU share follows memory from now on."""

    def freeze(self) -> None:  # noqa: B027 - optional: a no-op where unsupported
        """Stop the environment while it is idle."""

    def thaw(self) -> None:  # noqa: B027 - optional: a no-op where unsupported
        """Let a frozen environment run again."""

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        return True

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket in the environment's network (``SandboxProcess.socket``)."""
        return socket.socket(family, kind, proto)

    async def close(self) -> None:  # noqa: B027 - optional: nothing to release by default
        """Release what the placement holds (after ``kill``)."""


Placer = Callable[[int], Awaitable[Placement]]


@dataclasses.dataclass(frozen=True, slots=True)
class TemplateInit:
    """How a template's init ended: ready, or the error the runtime reported."""

    ok: bool
    error_type: str | None = None
    body: bytes | None = None


class TemplateState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclasses.dataclass(slots=True)
class _SpareFork:
    ns_pid: int
    host_pid: int
    output_fd: int
    channel: socket.socket
    placement: Placement
    #: Where the child's ``/tmp`` is: "private", or why it is the template's.
    tmp: str


class ForkedProcess(SandboxProcess):
    """An environment forked from a template; its limits are its placement's."""

    def __init__(
        self, spare: _SpareFork, exit_status: asyncio.Future[Exit], restored: Callable[[], None]
    ) -> None:
        self._restored = restored
        self.pid = spare.host_pid
        self.output_fd = spare.output_fd
        self.tmp = spare.tmp
        self._placement = spare.placement
        self._exit = exit_status
        self._peak_mb = 0
        self._closed = False

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
        self._restored()

    def freeze(self) -> None:
        self._placement.freeze()

    def thaw(self) -> None:
        self._placement.thaw()

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        return self._placement.owns_connection(local, peer)

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        return self._placement.socket(family, kind, proto)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exit), 5)
        await self._placement.close()
        self._restored()
        with contextlib.suppress(OSError):
            os.close(self.output_fd)


class Template:
    """lambdad's side of one template process (``process``) and its control socket."""

    def __init__(
        self, process: SandboxProcess, control: socket.socket, placer: Placer, tmp_mb: int | None
    ) -> None:
        self.process = process
        self._control = control
        self._placer = placer
        self._tmp_mb = tmp_mb
        self.state = TemplateState.STARTING
        loop = asyncio.get_running_loop()
        self._init: asyncio.Future[TemplateInit] = loop.create_future()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._exits: dict[int, asyncio.Future[Exit]] = {}
        self._lock = asyncio.Lock()
        #: Refilled once a restore is over (``refill``), so that both do not share the CPU.
        self._spares = SparePool(
            SPARE_FORKS, lambda _background: self._fork_child(), self._discard, name="spare-forks"
        )
        self._forks = 0
        self._reader = asyncio.create_task(self._read(), name="snapstart-template")

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self._control, _MAX_MESSAGE)
                if not data:
                    break
                self._dispatch(json.loads(data))
        except OSError:
            pass
        if not self._init.done():
            self._init.set_result(TemplateInit(False, "Runtime.ExitError"))
        for pending in self._exits.values():
            if not pending.done():
                pending.set_result(Exit(None, int(signal.SIGKILL)))
        await self._replies.put({"op": "gone"})

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready" and not self._init.done():
            self._init.set_result(TemplateInit(True))
        elif op == "init_error" and not self._init.done():
            body = str(message.get("body") or "").encode()
            self._init.set_result(TemplateInit(False, str(message.get("type") or ""), body))
        elif op == "exit":
            code = os.waitstatus_to_exitcode(int(message["status"]))
            exit_of = self._exit_of(int(message["pid"]))
            if not exit_of.done():
                exit_of.set_result(Exit.from_returncode(code))
        else:
            self._replies.put_nowait(message)

    def _exit_of(self, ns_pid: int) -> asyncio.Future[Exit]:
        return self._exits.setdefault(ns_pid, asyncio.get_running_loop().create_future())

    async def ready(self) -> TemplateInit:
        """Until the template's init has ended: ready, an init error, or its exit."""
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.process.wait())
        init: asyncio.Future[Any] = self._init
        try:
            await asyncio.wait([init, exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if not self._init.done():
            await asyncio.sleep(0)  # an init_error sent just before the exit wins
        result = (
            self._init.result() if self._init.done() else TemplateInit(False, "Runtime.ExitError")
        )
        if result.ok:
            self.state = TemplateState.READY
            self._spares.refill()
        else:
            self.state = TemplateState.FAILED
        return result

    async def _fork_child(self) -> _SpareFork:
        """Fork a child, learn its pids, and place it (off the cold-start path)."""
        if self.state is not TemplateState.READY:
            raise OSError("the SnapStart template is not ready")
        loop = asyncio.get_running_loop()
        output_r, output_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        ours.setblocking(False)
        self._forks += 1
        request = {"op": "fork", "id": self._forks, "tmp_mb": self._tmp_mb}
        try:
            async with self._lock:
                socket.send_fds(
                    self._control, [json.dumps(request).encode()], [output_w, theirs.fileno()]
                )
                reply = await self._replies.get()
            if reply.get("op") != "forked":
                raise OSError(f"the SnapStart template did not fork: {reply}")
            ns_pid = int(reply["pid"])
            self._exit_of(ns_pid)
            hello, host_pid = await _hello(loop, ours)
            placement = await self._placer(host_pid)
        except BaseException:
            os.close(output_r)
            ours.close()
            raise
        finally:
            os.close(output_w)
            theirs.close()
        os.set_blocking(output_r, False)
        return _SpareFork(ns_pid, host_pid, output_r, ours, placement, str(hello.get("tmp", "")))

    async def fork(self, env: Mapping[str, str]) -> ForkedProcess:
        """A new environment: a spare (or a fresh fork) restored with ``env``."""
        spare = await self._spares.take()
        try:
            spare.channel.send(json.dumps({"op": "restore", "env": dict(env)}).encode())
        except OSError:
            await self._discard(spare)
            raise
        finally:
            spare.channel.close()
        return ForkedProcess(spare, self._exit_of(spare.ns_pid), self.refill)

    def refill(self) -> None:
        """Make the next spare: once a restore is over, so both do not share the CPU."""
        if self.state is TemplateState.READY:
            self._spares.refill()

    async def _discard(self, spare: _SpareFork) -> None:
        spare.channel.close()
        spare.placement.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exit_of(spare.ns_pid)), 5)
        await spare.placement.close()
        with contextlib.suppress(OSError):
            os.close(spare.output_fd)

    async def close(self) -> None:
        """Kill the spares and the template; environments already forked are their owners'."""
        if self.state is TemplateState.CLOSED:
            return
        self.state = TemplateState.CLOSED
        await self._spares.close()
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._reader), 5)
        if not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._control.close()
        await self.process.close()


async def _hello(
    loop: asyncio.AbstractEventLoop, channel: socket.socket
) -> tuple[dict[str, Any], int]:
    """The child's first message and its pid as the kernel translated it for lambdad."""
    arrived: asyncio.Future[None] = loop.create_future()
    loop.add_reader(channel.fileno(), _settle, arrived)
    try:
        await asyncio.wait_for(arrived, 10)
    finally:
        loop.remove_reader(channel.fileno())
    size = socket.CMSG_SPACE(struct.calcsize("3i"))
    data, ancillary, _flags, _addr = channel.recvmsg(_MAX_MESSAGE, size)
    if not data:
        raise OSError("the forked child ended before it said hello")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, _uid, _gid = struct.unpack("3i", payload[: struct.calcsize("3i")])
            message: dict[str, Any] = json.loads(data)
            return message, pid
    raise OSError("the forked child sent no credentials")


def _settle(arrived: asyncio.Future[None]) -> None:
    if not arrived.done():
        arrived.set_result(None)
