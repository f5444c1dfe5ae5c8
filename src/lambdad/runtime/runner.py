"""An environment's processes: started from a launch plan, watched, frozen, measured, stopped.

The ``Runner`` alone holds the environment's ``SandboxProcess``, the reader of its output pipe
and the task that waits for its exit; the environment asks it to start, stop, freeze and thaw,
and hears of an exit through ``on_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Mapping

from lambdad.runtime import launch
from lambdad.runtime.extensions import Extensions, extension_env
from lambdad.runtime.output import LineReader
from lambdad.runtime.process_env import snap_start_environment
from lambdad.runtime.replies import InitFailure
from lambdad.runtime.sandbox.base import Exit, Sandbox, SandboxProcess

#: Makes a SnapStart environment's process: a fork of its version's template.
Forker = Callable[[Mapping[str, str]], Awaitable[SandboxProcess]]
#: Told of the runtime's exit: Lambda's reason, and whether it was an OOM kill during the
#: running invocation.
ExitListener = Callable[[str, bool], None]


class Runner:
    def __init__(
        self,
        sandbox: Sandbox,
        fork: Forker | None,
        output: Callable[[list[str]], None],
        on_exit: ExitListener,
        freeze_delay: float,
        idle: Callable[[], bool],
    ) -> None:
        self._sandbox = sandbox
        self._fork = fork
        self._output = output
        self._on_exit = on_exit
        self._freeze_delay = freeze_delay
        self._idle = idle
        self.process: SandboxProcess | None = None
        #: Set once a spawn has returned its process: a runtime forked from a template can
        #: call the Runtime API before ``sandbox.spawn`` has even answered.
        self._known = asyncio.Event()
        self._known.set()
        self._watch_task: asyncio.Task[None] | None = None
        self.exit: Exit | None = None
        self._reader: LineReader | None = None
        self._peak_memory_mb = 0
        #: OOM kills in the environment before the running invocation began.
        self._oom_kills = 0
        self._frozen = False
        #: When the current freeze began, and how long earlier freezes lasted (monotonic s).
        self._frozen_at = 0.0
        self._frozen_for = 0.0
        self._freeze_when_parked = False
        self._freeze_timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        """A process was started and has not exited."""
        return self.process is not None and self.exit is None

    @property
    def watched(self) -> bool:
        """The runtime was started (not only the extensions) and has not exited."""
        return self._watch_task is not None and self.exit is None

    async def start(
        self, plan: launch.Plan, extensions: Extensions, deadline: float
    ) -> tuple[InitFailure | None, list[str]]:
        """Start the extensions, then the runtime; a failure (and its log) is returned.

        ``TimeoutError`` when the extensions have not all registered by ``deadline``.
        """
        self._known.clear()
        try:
            if self._fork is not None:
                process = await self._fork(snap_start_environment(plan.env))
            else:
                process = await self._sandbox.spawn(plan.spec)
        except OSError as exc:
            return launch.exec_failure(plan, exc)
        finally:
            self._known.set()
        self.process = process
        self.exit = None
        self._reader = LineReader(process.output_fd, self._output)
        self._reader.start()
        if plan.external:
            await extensions.launch(process, plan.external, extension_env(plan.env), deadline)
            if extensions.failure is not None:
                error_type, reason = extensions.failure
                return InitFailure("error", error_type, reason=reason), []
            try:
                await process.start(plan.argv, plan.env, plan.layout.task_root)
            except OSError as exc:
                return launch.exec_failure(plan, exc)
        self._watch_task = asyncio.create_task(self._watch(process), name="environment-exit")
        return None, []

    async def _watch(self, process: SandboxProcess) -> None:
        exit_status = await process.wait()
        if process is not self.process:
            return
        self.exit = exit_status
        self.drain()
        reason = (
            "Runtime exited without providing a reason"
            if exit_status.code == 0
            else f"Runtime exited with error: {exit_status.describe()}"
        )
        # Out of memory: killed, and by the kernel's OOM killer during this invocation (a
        # child OOM-killed in an earlier one leaves a later crash a plain ExitError).
        oom = exit_status.signal == signal.SIGKILL and process.oom_kills() > self._oom_kills
        self._on_exit(reason, oom)

    async def exited(self, timeout: float) -> bool:
        """Whether the runtime has exited, waiting at most ``timeout`` s for its exit (and its
        exit listener) to be seen."""
        task = self._watch_task
        if task is not None and not task.done() and timeout > 0:
            await asyncio.wait([task], timeout=timeout)
        return self.exit is not None

    def drain(self) -> None:
        """Read everything the process has written so far, synchronously."""
        if self._reader is not None:
            self._reader.drain()

    def end_init(self) -> None:
        if self.process is not None:
            self.process.end_init()

    def invocation_begins(self) -> None:
        """Measure now: a process that crashes can no longer be measured."""
        self.sample_memory()
        if self.process is not None:
            self._oom_kills = self.process.oom_kills()

    def sample_memory(self) -> int:
        """The environment's peak memory so far (kept once its process is gone)."""
        if self.process is not None:
            self._peak_memory_mb = max(self._peak_memory_mb, self.process.max_memory_mb())
        return self._peak_memory_mb

    async def owns_connection(
        self, local: tuple[str, int], peer: tuple[str, int], wait: float
    ) -> bool:
        """Whether a connection comes from the process (waiting up to ``wait`` s for a spawn
        under way to return it)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._known.wait(), wait)
        return self.process is not None and self.process.owns_connection(local, peer)

    async def stop(self) -> None:
        process, self.process = self.process, None
        reader, self._reader = self._reader, None
        if process is None:
            return
        if reader is not None:
            reader.stop()
        process.kill()
        if reader is not None:
            reader.drain()
        await process.close()
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None

    # ---------------------------------------------------------------- freezing

    def freeze(self, parked: bool) -> None:
        """Idle: no CPU for the runtime or anything it started, until ``thaw``.

        The freeze waits until the runtime is ``parked`` in ``/next``: frozen earlier, it would
        make that call only after the thaw, putting a round trip on the next invoke's path.
        """
        self._freeze_when_parked = True
        if parked:
            self.parked()

    def parked(self) -> None:
        """The runtime waits in ``/next``: freeze after ``freeze_delay`` of idleness, if asked;
        back-to-back invocations skip the freeze and thaw (a cgroup write each, and two
        wake-ups of the runtime)."""
        if not self._freeze_when_parked:
            return
        self._freeze_when_parked = False
        if self._freeze_timer is None:
            self._freeze_timer = asyncio.get_running_loop().call_later(
                self._freeze_delay, self._freeze_now
            )

    def _freeze_now(self) -> None:
        self._freeze_timer = None
        if self._idle() and self.process is not None and not self._frozen:
            self.process.freeze()
            self._frozen = True
            self._frozen_at = time.monotonic()

    def thaw(self) -> None:
        self.cancel_freeze()
        if self.process is not None and self._frozen:
            self.process.thaw()
        if self._frozen:
            self._frozen_for += time.monotonic() - self._frozen_at
        self._frozen = False

    def running_time(self) -> float:
        """Monotonic seconds, without those the process spent frozen: a clock for timeouts
        of things the process must do (it can do nothing while frozen)."""
        now = time.monotonic()
        return now - self._frozen_for - (now - self._frozen_at if self._frozen else 0.0)

    def cancel_freeze(self) -> None:
        self._freeze_when_parked = False
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
