"""The plain-process sandbox: a process group per environment, no confinement.

Works as any user on any POSIX host. It enforces the timeout (by killing the group) and
reports peak memory from ``/proc``; the limits and walls of the Linux sandbox are not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from pathlib import Path

from lambdad.runtime.sandbox.base import Exit, Layout, ProcessSpec, Sandbox, SandboxProcess

FILE_LIMIT = 1024


def _peak_rss_mb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


class PlainProcess(SandboxProcess):
    def __init__(self, process: asyncio.subprocess.Process, output_fd: int) -> None:
        self._process = process
        self.pid = process.pid
        self.output_fd = output_fd
        self._peak_mb = 0
        self._closed = False

    async def wait(self) -> Exit:
        return Exit.from_returncode(await self._process.wait())

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def max_memory_mb(self) -> int:
        if self._process.returncode is None:
            self._peak_mb = max(self._peak_mb, _peak_rss_mb(self.pid))
        return self._peak_mb

    def freeze(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGCONT)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill()
        await self._process.wait()
        with contextlib.suppress(OSError):
            os.close(self.output_fd)


class PlainSandbox(Sandbox):
    name = "process"

    def __init__(self, runtime_dir: Path) -> None:
        self._runtime_dir = runtime_dir

    def layout(self, task_root: Path, opt_dir: Path | None, tmp_dir: Path) -> Layout:
        return Layout(
            task_root=str(task_root),
            opt=str(opt_dir) if opt_dir is not None else "/opt",
            tmp=str(tmp_dir),
            runtime_dir=str(self._runtime_dir),
        )

    async def spawn(self, spec: ProcessSpec) -> SandboxProcess:
        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(read_fd, False)
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=spec.cwd,
                env=dict(spec.env),
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        with contextlib.suppress(OSError):
            resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))
        return PlainProcess(process, read_fd)

    def protections(self) -> dict[str, str]:
        gap = "not active: plain-process sandbox"
        return {
            "isolation": "plain processes (not root, or LAMBDAD_SANDBOX=process)",
            "process group (kill on timeout)": "active",
            "open files": f"active ({FILE_LIMIT} per process, rlimit)",
            "freeze between invocations": "active (SIGSTOP / SIGCONT of the process group)",
            "private /tmp": "partial: TMPDIR points at a per-environment directory",
            "memory limit": gap,
            "cpu share": gap,
            "process limit": gap,
            "mount and pid namespaces": gap,
            "unprivileged user": gap,
            "runtime api": "not active: any local process can reach an environment's port",
        }


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
