"""The contract every implementation of the ``Sandbox`` seam passes (ARCHITECTURE.md): a process
from a spec, with exactly its environment and working directory, its output captured, its exit
reported, killed with everything it started, and nothing left behind when it is closed.

``PlainSandbox`` runs anywhere; ``LinuxSandbox`` needs root and cgroups (the ``root`` marker).
The processes are ``/bin/sh`` scripts, which both sandboxes can run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lambdad.runtime import runtimes
from lambdad.runtime.sandbox import linux
from lambdad.runtime.sandbox.base import Exit, ProcessSpec, Sandbox, SandboxProcess
from lambdad.runtime.sandbox.process import PlainSandbox
from tests.conftest import processes_marked, wait_until

T = TypeVar("T")

#: How long a process of these tests may take to say or do anything (a loaded host).
PATIENCE = 30.0
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


class Box:
    """A sandbox under test, with the host directories of one environment."""

    def __init__(self, sandbox: Sandbox, home: Path) -> None:
        self.sandbox = sandbox
        self.task_root = home / "task"
        self.tmp_dir = home / "tmp"
        self.task_root.mkdir(parents=True)
        self.tmp_dir.mkdir()
        self.layout = sandbox.layout(self.task_root, None, self.tmp_dir)

    def spec(self, script: str | None, env: dict[str, str] | None = None) -> ProcessSpec:
        """``sh -c script`` (no main process when None) in the task root as its process sees it."""
        argv = ("/bin/sh", "-c", script) if script is not None else ()
        return ProcessSpec(
            name="contract",
            argv=argv,
            env={**BASE_ENV, **(env or {})},
            cwd=self.layout.task_root,
            task_root=self.task_root,
            opt_dir=None,
            tmp_dir=self.tmp_dir,
            memory_mb=128,
            tmp_mb=64,
            runtime_argv=("/bin/sh",),
        )

    async def spawn(self, script: str | None, env: dict[str, str] | None = None) -> SandboxProcess:
        return await self.sandbox.spawn(self.spec(script, env))


def _make(kind: str, home: Path) -> Sandbox:
    if kind == "plain":
        return PlainSandbox(runtimes.BOOTSTRAPS)
    return linux.LinuxSandbox(
        home / "run" / "envs", runtimes.BOOTSTRAPS, runtimes.interpreter_dirs(), fork_python=False
    )


@pytest.fixture(params=["plain", pytest.param("linux", marks=pytest.mark.root)])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """``async with opened() as box``: the sandbox opened, and closed at the end."""

    @asynccontextmanager
    async def open_box() -> AsyncIterator[Box]:
        sandbox = _make(request.param, tmp_path)
        await sandbox.open()
        try:
            yield Box(sandbox, tmp_path / "env")
        finally:
            await sandbox.close()

    return open_box


async def read_some(fd: int, wanted: bytes) -> bytes:
    """Read the non-blocking ``fd`` until ``wanted`` has been read (or end of file)."""
    seen = b""
    while wanted not in seen:
        chunk = await _read(fd)
        if not chunk:
            break
        seen += chunk
    return seen


def drain(fd: int) -> bytes:
    """What the non-blocking ``fd`` holds now (a process's output, once it has exited: the
    Linux sandbox's cell init keeps the pipe open, so it reaches end of file only at close)."""
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return seen
        if not chunk:
            return seen
        seen += chunk


async def _read(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await asyncio.wait_for(ready, PATIENCE)
            finally:
                loop.remove_reader(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def finish(process: SandboxProcess) -> Exit:
    return await asyncio.wait_for(process.wait(), PATIENCE)


def fd_targets() -> list[str]:
    """This process's open descriptors, as ``fd -> what it is``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


async def settled(sandbox: Sandbox) -> None:
    """Wait (with a deadline) until the sandbox makes nothing ahead of need."""
    await asyncio.wait_for(sandbox.settle(), PATIENCE)


def test_a_process_gets_exactly_its_environment(
    opened: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process sees the spec's variables, and none of lambdad's own."""
    monkeypatch.setenv("LAMBDAD_CONTRACT_LEAK", "leaked")

    async def scenario() -> None:
        async with opened() as box:
            process = await box.spawn("env", {"GREETING": "hello world", "EMPTY": ""})
            assert await finish(process) == Exit(0, None)
            output = drain(process.output_fd).decode()
            variables = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
            assert variables["GREETING"] == "hello world"
            assert variables["EMPTY"] == ""
            assert variables["PATH"] == BASE_ENV["PATH"]
            assert "LAMBDAD_CONTRACT_LEAK" not in variables
            await process.close()

    run(scenario)


def test_a_process_runs_in_its_cwd_and_sees_its_code(opened: Callable[[], Any]) -> None:
    """The working directory is the spec's, and the task root's files are there."""

    async def scenario() -> None:
        async with opened() as box:
            (box.task_root / "code.txt").write_text("the code\n")
            process = await box.spawn("pwd; cat code.txt")
            assert await finish(process) == Exit(0, None)
            output = drain(process.output_fd).decode().splitlines()
            assert output == [box.layout.task_root, "the code"]
            await process.close()

    run(scenario)


def test_stdout_and_stderr_are_captured_in_order(opened: Callable[[], Any]) -> None:
    """Both streams reach the one output pipe, in the order they were written."""

    async def scenario() -> None:
        async with opened() as box:
            process = await box.spawn("echo one; echo two >&2; echo three")
            await finish(process)
            assert drain(process.output_fd) == b"one\ntwo\nthree\n"
            await process.close()

    run(scenario)


@pytest.mark.parametrize(
    ("script", "expected", "described"),
    [
        ("exit 0", Exit(0, None), "exit status 0"),
        ("exit 3", Exit(3, None), "exit status 3"),
        ("kill -TERM $$", Exit(None, signal.SIGTERM), "signal: terminated"),
        ("kill -KILL $$", Exit(None, signal.SIGKILL), "signal: killed"),
    ],
)
def test_the_exit_status_is_reported(
    opened: Callable[[], Any], script: str, expected: Exit, described: str
) -> None:
    """``wait`` reports an exit code, or the signal that ended the process, as Lambda words it."""

    async def scenario() -> None:
        async with opened() as box:
            process = await box.spawn(script)
            status = await finish(process)
            assert status == expected
            assert status.describe() == described
            await process.close()

    run(scenario)


def test_a_missing_executable_is_an_os_error(opened: Callable[[], Any]) -> None:
    """A spec whose program does not exist fails to spawn with ``OSError``."""

    async def scenario() -> None:
        async with opened() as box:
            missing = dataclasses.replace(box.spec("unused"), argv=("/nonexistent/program",))
            with pytest.raises(OSError):  # noqa: PT011 - each sandbox words it its own way
                await box.sandbox.spawn(missing)

    run(scenario)


def test_kill_ends_the_process_and_everything_it_started(opened: Callable[[], Any]) -> None:
    """After ``kill`` the process ends by SIGKILL and so do the processes it started (seen
    from the host: none is left with its environment); a second ``kill`` is harmless."""
    mark = f"CONTRACT_MARK_{uuid.uuid4().hex}"

    async def scenario() -> None:
        async with opened() as box:
            script = "sleep 300 & sleep 300 & echo started; wait"
            process = await box.spawn(script, {mark: "1"})
            assert b"started" in await read_some(process.output_fd, b"started")
            # A sleep being exec'd has no readable environment for a moment: poll.
            wait_until(lambda: len(processes_marked(mark)) == 3, timeout=PATIENCE)
            process.kill()
            process.kill()
            assert await finish(process) == Exit(None, signal.SIGKILL)
            wait_until(lambda: not processes_marked(mark), timeout=PATIENCE)
            await process.close()

    run(scenario)


def test_signal_main_reaches_the_main_process(opened: Callable[[], Any]) -> None:
    """``signal_main(SIGTERM)`` is delivered to the main process, which may handle it."""

    async def scenario() -> None:
        async with opened() as box:
            script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"
            process = await box.spawn(script)
            assert b"ready" in await read_some(process.output_fd, b"ready")
            process.signal_main(signal.SIGTERM)
            assert await finish(process) == Exit(7, None)
            assert b"got-term" in drain(process.output_fd)
            await process.close()

    run(scenario)


def test_extensions_start_before_the_main_process(opened: Callable[[], Any]) -> None:
    """With an empty ``argv`` the environment starts without its main process: a sibling gets
    an output pipe of its own, ``start`` then runs the main process beside it, and ``close``
    ends both."""

    async def scenario() -> None:
        async with opened() as box:
            process = await box.spawn(None)
            cwd = box.layout.task_root
            sibling = await process.spawn_sibling(
                ["/bin/sh", "-c", "echo from-sibling; sleep 300"], BASE_ENV, cwd
            )
            assert await read_some(sibling.output_fd, b"\n") == b"from-sibling\n"
            await process.start(["/bin/sh", "-c", "echo from-main; exit 4"], BASE_ENV, cwd)
            assert await finish(process) == Exit(4, None)
            assert drain(process.output_fd) == b"from-main\n"
            await asyncio.wait_for(process.close(), PATIENCE)
            assert (await asyncio.wait_for(sibling.wait(), PATIENCE)).signal == signal.SIGKILL
            os.close(sibling.output_fd)

    run(scenario)


def test_the_main_process_starts_after_an_extension_has_exited(
    opened: Callable[[], Any], request: pytest.FixtureRequest
) -> None:
    """An extension that has already exited does not keep ``start`` from running the main
    process (Lambda then reports the extension's failure; the sandbox must still start)."""
    if request.node.callspec.params["opened"] == "plain":
        reason = "PlainProcess joins the process group the first extension led; once it is "
        reason += "reaped the group is gone and setpgid fails (SubprocessError, not OSError)"
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    async def scenario() -> None:
        async with opened() as box:
            process = await box.spawn(None)
            cwd = box.layout.task_root
            sibling = await process.spawn_sibling(["/bin/sh", "-c", "exit 0"], BASE_ENV, cwd)
            assert await asyncio.wait_for(sibling.wait(), PATIENCE) == Exit(0, None)
            os.close(sibling.output_fd)
            await process.start(["/bin/sh", "-c", "exit 5"], BASE_ENV, cwd)
            assert await finish(process) == Exit(5, None)
            await process.close()

    run(scenario)


def test_close_kills_a_live_process_and_is_idempotent(opened: Callable[[], Any]) -> None:
    """``close`` ends a process still running and what it started, reaps it, and may be
    called again."""
    mark = f"CONTRACT_MARK_{uuid.uuid4().hex}"

    async def scenario() -> None:
        async with opened() as box:
            process = await box.spawn("sleep 300 & echo up; wait", {mark: "1"})
            assert b"up" in await read_some(process.output_fd, b"up")
            await asyncio.wait_for(process.close(), PATIENCE)
            await asyncio.wait_for(process.close(), PATIENCE)
            assert (await finish(process)).signal == signal.SIGKILL
            wait_until(lambda: not processes_marked(mark), timeout=PATIENCE)

    run(scenario)


def test_closed_processes_release_their_file_descriptors(opened: Callable[[], Any]) -> None:
    """Spawning and closing processes leaves lambdad with no more open files than before (the
    Linux sandbox may hold fewer: the spare cells it keeps ready were taken)."""

    async def scenario() -> None:
        async with opened() as box:
            first = await box.spawn("echo warm")
            await finish(first)
            await first.close()
            # Measured where nothing is being made ahead (a spare cell being made holds two
            # more descriptors until it is ready: the count was off by two now and then).
            await settled(box.sandbox)
            before = fd_targets()
            for _ in range(3):
                process = await box.spawn("echo hi; sleep 300")
                await read_some(process.output_fd, b"hi")
                await process.close()
            await settled(box.sandbox)
            after = fd_targets()
            assert len(after) <= len(before), f"new: {sorted(set(after) - set(before))}"

    run(scenario)


def test_memory_and_protections_are_reported(opened: Callable[[], Any]) -> None:
    """Peak memory is a whole number of MB; the sandbox names what it enforces."""

    async def scenario() -> None:
        async with opened() as box:
            process = await box.spawn("echo up; sleep 300")
            await read_some(process.output_fd, b"up")
            assert isinstance(process.max_memory_mb(), int)
            assert process.max_memory_mb() >= 0
            await process.close()
            protections = box.sandbox.protections()
            assert protections
            assert all(isinstance(v, str) for v in protections.values())
            assert box.sandbox.name

    run(scenario)
