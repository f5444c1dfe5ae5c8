"""The plain-process sandbox: a process group per environment, no confinement.

Works as any user on any POSIX host. It enforces the timeout (by killing the group) and
reports peak memory from ``/proc``; the limits and walls of the Linux sandbox are not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from lambdad.runtime.sandbox.base import Exit, ProcessSpec, Sandbox, SandboxProcess


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
        return PlainProcess(process, read_fd)

    def protections(self) -> dict[str, str]:
        gap = "not active: plain-process sandbox"
        return {
            "process group (kill on timeout)": "active",
            "private /tmp": "partial: TMPDIR points at a per-environment directory",
            "memory limit": gap,
            "cpu share": gap,
            "process and file limits": gap,
            "mount and pid namespaces": gap,
            "freeze between invocations": gap,
        }


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
