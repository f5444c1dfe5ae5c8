"""The plain-process sandbox: a process group per environment, little confinement.

Works as any user on any POSIX host. It enforces the timeout (by killing the group), reports
peak memory from ``/proc`` and, where the kernel has seccomp, installs the syscall filter in
every process it starts (``no_new_privs`` and seccomp need no privilege); the other limits and
walls of the Linux sandbox are not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lambdad.runtime.bootstraps.python import syscall_filter
from lambdad.runtime.sandbox.base import (
    Exit,
    Layout,
    ProcessSpec,
    Sandbox,
    SandboxProcess,
    SiblingProcess,
)
from lambdad.runtime.sandbox.template import TEMPLATE_FD_VARIABLE, Placement, Template

FILE_LIMIT = 1024


def _hwm_mb(status: bytes) -> int:
    """``VmHWM`` (peak resident set) of a ``/proc/<pid>/status`` text, in MB (0: none)."""
    at = status.find(b"VmHWM:")
    if at < 0:
        return 0
    try:
        return int(status[at + 6 : status.index(b"kB", at)]) // 1024
    except ValueError:
        return 0


def _peak_rss_mb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def _prepare_child(group: int | None, confine: syscall_filter.Filter | None) -> None:
    """In the child, before exec: join ``group`` (unless None), install the filter."""
    if group is not None:
        os.setpgid(0, group)
    if confine is not None:
        confine.install()


async def _exec(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    output_fd: int,
    group: int | None,
    confine: syscall_filter.Filter | None,
) -> asyncio.subprocess.Process:
    """Start a process writing to ``output_fd``, under ``confine`` (the syscall filter).

    ``group``: None for a session of its own; 0 for a new process group that others of the
    environment join later (a group cannot be joined across sessions); else the group to join.
    """
    # ``process_group=`` would do, but uvloop's subprocess_exec does not take it.
    placement: dict[str, Any] = {"start_new_session": True} if group is None else {}
    if group is not None or confine is not None:
        placement["preexec_fn"] = functools.partial(_prepare_child, group, confine)
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output_fd,
        stderr=output_fd,
        cwd=cwd,
        env=dict(env),
        close_fds=True,
        **placement,
    )
    with contextlib.suppress(OSError):
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))
    return process


class PlainSibling(SiblingProcess):
    def __init__(self, process: asyncio.subprocess.Process, output_fd: int) -> None:
        self._process = process
        self.pid = process.pid
        self.output_fd = output_fd

    async def wait(self) -> Exit:
        return Exit.from_returncode(await self._process.wait())


class PlainProcess(SandboxProcess):
    """The environment's process group: its main process (the runtime) and its siblings.

    The group is the runtime's session when it starts alone; when extensions start first,
    it is a new process group (in lambdad's session) that the first extension leads.
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process | None,
        output_fd: int,
        output_w: int | None = None,
        confine: syscall_filter.Filter | None = None,
    ) -> None:
        self._process = process
        self._confine = confine
        self.pid = process.pid if process is not None else 0
        self.output_fd = output_fd
        #: The write end of the main output pipe, kept until the main process starts.
        self._output_w = output_w
        self._group = process.pid if process is not None else None
        self._siblings: list[asyncio.subprocess.Process] = []
        self._peak_mb = 0
        #: ``/proc/<pid>/status`` of the main process, kept open: one ``pread`` a sample (it
        #: is read at every invocation). A dead process's file answers an error, never
        #: another process's figures.
        self._status_fd: int | None = None
        self._closed = False

    async def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> None:
        if self._process is not None or self._output_w is None:
            raise RuntimeError("the main process was already started")
        try:
            self._process = await _exec(
                argv, env, cwd, self._output_w, self._group or 0, self._confine
            )
        finally:
            os.close(self._output_w)
            self._output_w = None
        self.pid = self._process.pid
        if self._group is None:
            self._group = self.pid

    async def spawn_sibling(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str
    ) -> SiblingProcess:
        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(read_fd, False)
            process = await _exec(argv, env, cwd, write_fd, self._group or 0, self._confine)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        if self._group is None:
            self._group = process.pid
        self._siblings.append(process)
        return PlainSibling(process, read_fd)

    async def wait(self) -> Exit:
        if self._process is None:
            raise RuntimeError("the main process was not started")
        return Exit.from_returncode(await self._process.wait())

    def _signal_group(self, signum: int) -> None:
        if self._group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._group, signum)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def signal_main(self, signum: int) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signum)

    def max_memory_mb(self) -> int:
        if self._process is not None and self._process.returncode is None:
            self._peak_mb = max(self._peak_mb, self._sample_peak())
        return self._peak_mb

    def _sample_peak(self) -> int:
        try:
            if self._status_fd is None:
                self._status_fd = os.open(f"/proc/{self.pid}/status", os.O_RDONLY)
            return _hwm_mb(os.pread(self._status_fd, 16384, 0))
        except OSError:
            return 0

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill()
        for process in [*([self._process] if self._process else []), *self._siblings]:
            await process.wait()
        for fd in (self.output_fd, self._output_w, self._status_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._status_fd = None


class SessionPlacement(Placement):
    """A forked environment in the plain sandbox: its own session, killed as a group."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)

    def max_memory_mb(self) -> int:
        return _peak_rss_mb(self._pid)


async def _place(pid: int) -> Placement:
    return SessionPlacement(pid)


class PlainSandbox(Sandbox):
    name = "process"

    def __init__(self, runtime_dir: Path) -> None:
        self._runtime_dir = runtime_dir
        #: Why processes run without the syscall filter here (None: they have it).
        self.filter_error = syscall_filter.unavailable_reason()
        self._confine = (
            syscall_filter.Filter(syscall_filter.program()) if self.filter_error is None else None
        )

    def layout(self, task_root: Path, opt_dir: Path | None, tmp_dir: Path) -> Layout:
        return Layout(
            task_root=str(task_root),
            opt=str(opt_dir) if opt_dir is not None else "/opt",
            tmp=str(tmp_dir),
            runtime_dir=str(self._runtime_dir),
        )

    async def spawn(self, spec: ProcessSpec) -> SandboxProcess:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        if not spec.argv:
            return PlainProcess(None, read_fd, write_fd, self._confine)
        try:
            process = await _exec(spec.argv, spec.env, spec.cwd, write_fd, None, self._confine)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return PlainProcess(process, read_fd, confine=self._confine)

    async def start_template(self, spec: ProcessSpec) -> Template:
        """The template as a plain process; environments are forks of it, each in its own
        session (``TMPDIR`` per environment, as for other environments here)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        env = {**spec.env, TEMPLATE_FD_VARIABLE: str(theirs.fileno())}
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=spec.cwd,
                env=env,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                # Its forks make no private /tmp here: the full filter from the start.
                **self._filtered(),
            )
        except BaseException:
            os.close(read_fd)
            ours.close()
            raise
        finally:
            os.close(write_fd)
            theirs.close()
        ours.setblocking(False)
        return Template(PlainProcess(process, read_fd, confine=self._confine), ours, _place, None)

    def _filtered(self) -> dict[str, Any]:
        if self._confine is None:
            return {}
        return {"preexec_fn": functools.partial(_prepare_child, None, self._confine)}

    def protections(self) -> dict[str, str]:
        gap = "not active: plain-process sandbox"
        return {
            "isolation": "plain processes (not root, or LAMBDAD_SANDBOX=process)",
            "process group (kill on timeout)": "active (the runtime and its extensions)",
            "open files": f"active ({FILE_LIMIT} per process, rlimit)",
            "freeze between invocations": "not active: a stopped process group would outlive a "
            "killed lambdad",
            "private /tmp": "partial: TMPDIR points at a per-environment directory",
            "memory limit": gap,
            "cpu share": gap,
            "process limit": gap,
            "mount and pid namespaces": gap,
            "syscall filter": (
                f"active ({syscall_filter.describe()}; no_new_privs)"
                if self.filter_error is None
                else f"NOT ACTIVE: {self.filter_error}"
            ),
            "unprivileged user": gap,
            "runtime api": "not active: any local process can reach an environment's port",
            "network namespace": "not active: needs the Linux sandbox (root); functions share "
            "the host's network: they reach its loopback services and accept connections",
            "outbound port 25": "not blocked (needs the Linux sandbox)",
            "egress policy": "not active: needs the Linux sandbox's network namespace",
            "snapstart environments": "forks of the version's template, each in its own "
            "session; no limits beyond those above",
        }
