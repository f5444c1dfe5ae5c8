"""One execution environment: a runtime process, its Runtime API session and its logs.

An environment runs one invocation at a time. Its life::

    NEW ──start()──▶ INITIALIZING ──first /next──▶ IDLE ◀──▶ BUSY
                          │                          │         │
                          └── init failed ──▶ IDLE (init_failure set; the first invoke
                                                    re-runs init inside itself, as Lambda does)
    any state ──close() / crash / timeout──▶ CLOSED

The Runtime API server (``rapi.py``) calls the ``rapi_*`` methods (``session.py``); the pool
calls ``start``, ``invoke`` and ``close``. With extensions (``extensions.py``), init starts them
before the runtime and waits for all; an invocation returns its outcome as soon as the runtime
replies, while ``settling`` keeps the environment busy until the INVOKE subscribers are done;
``close`` sends SHUTDOWN within Lambda's budget before the environment is killed.

Output of the process is read from its pipe and attributed to the invocation running when it
was written; the pipe is drained when the runtime posts its reply, so everything printed before
the reply belongs to that invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import shutil
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from lambdad.observe.logs import LogStore
from lambdad.observe.platform import PlatformLines, Report
from lambdad.runtime.extensions import (
    Extension,
    Extensions,
    FunctionInfo,
    extension_env,
    external_extensions,
)
from lambdad.runtime.invocation import Invocation, Outcome, error_body
from lambdad.runtime.output import LineReader
from lambdad.runtime.process_env import process_environment, snap_start_environment
from lambdad.runtime.replies import (
    Crashed,
    InitFailure,
    Reply,
)
from lambdad.runtime.runtimes import Launch, RuntimeUnavailable, exec_wrapper, launch
from lambdad.runtime.sandbox.base import Exit, Layout, ProcessSpec, Sandbox, SandboxProcess
from lambdad.runtime.session import EnvState, RuntimeSession
from lambdad.runtime.spec import FunctionSpec
from lambdad.runtime.telemetry import Telemetry

_TAIL_BYTES = 4096
#: How long a SnapStart environment may take to restore (AWS: 10 s).
RESTORE_TIMEOUT = 10.0

#: Makes a SnapStart environment's process: a fork of its version's template.
Forker = Callable[[Mapping[str, str]], Awaitable[SandboxProcess]]


@dataclasses.dataclass(frozen=True, slots=True)
class EnvironmentContext:
    """What every environment of one lambdad shares."""

    sandbox: Sandbox
    logs: LogStore
    runs_dir: Path
    account_id: str
    region: str
    init_timeout: float
    host_path: str = "/usr/local/bin:/usr/bin:/bin"
    #: Idle time before an environment is frozen (already scaled by ``time_scale``).
    freeze_delay: float = 0.01
    node: str = ""
    python_path: str = ""
    echo: Callable[[str], None] | None = None


class Environment(RuntimeSession):
    def __init__(
        self,
        ctx: EnvironmentContext,
        config: FunctionSpec,
        task_root: Path,
        register: Callable[[Environment], Awaitable[int]],
        unregister: Callable[[int], Awaitable[None]],
        opt_dir: Path | None = None,
        fork: Forker | None = None,
    ) -> None:
        self.ctx = ctx
        #: Set for a SnapStart environment: restored from its version's template, no init.
        self._fork = fork
        self.restore_duration_ms: float | None = None
        self.config = config
        self.task_root = task_root
        #: The function's layers, merged in order; None when it has none.
        self.opt_dir = opt_dir
        self._spawns = 0
        self._frozen = False
        #: Set once a spawn has returned its process: a runtime forked from a template can
        #: call the Runtime API before ``sandbox.spawn`` has even answered.
        self._process_known = asyncio.Event()
        self._process_known.set()
        self._freeze_when_parked = False
        self._freeze_timer: asyncio.TimerHandle | None = None
        self.id = uuid.uuid4().hex
        self.state = EnvState.NEW
        self.stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{config.version}]{self.id}"
        self.init_failure: InitFailure | None = None
        self.init_duration_ms: float | None = None
        #: ``AWS_LAMBDA_INITIALIZATION_TYPE``; set before ``start``. Only an on-demand
        #: environment's first REPORT carries its Init Duration.
        self.initialization_type = "on-demand"
        self.idle_since = time.monotonic()
        self.invocations = 0
        #: The running invocation's deadline, epoch milliseconds (``Lambda-Runtime-Deadline-Ms``).
        self.deadline_ms = 0
        self._register = register
        self._unregister = unregister
        self._lines = PlatformLines(config.log_format == "JSON")
        self._dir = ctx.runs_dir / self.id
        self._process: SandboxProcess | None = None
        self._port: int | None = None
        self._exit_watch: asyncio.Task[None] | None = None
        self._exit: Exit | None = None
        self._reader: LineReader | None = None
        self._collect: list[str] | None = None
        self._init_waiter: asyncio.Future[InitFailure | None] | None = None
        self._next_waiter: asyncio.Future[Invocation] | None = None
        self._queued: Invocation | None = None
        self._current: Invocation | None = None
        self._reply: asyncio.Future[Reply] | None = None
        #: START was logged for the running invocation.
        self._started = False
        self._peak_memory_mb = 0
        #: OOM kills in the environment before the running invocation began.
        self._oom_kills = 0
        #: The runtime posted its reply and has not asked for the next event yet.
        self._responded = False
        self._on_closed: list[Callable[[Environment], None]] = []
        self.telemetry = Telemetry(config.log_format == "JSON", self._announce_subscription)
        #: The extensions of the current init attempt.
        self.extensions = self._new_extensions()
        #: Set while a returned invocation waits for its extensions (see ``invoke``).
        self.settling: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- logs

    def _emit(self, messages: list[str]) -> None:
        if not messages:
            return
        self.ctx.logs.put(
            (self.ctx.region, self.config.log_group), self.stream, int(time.time() * 1000), messages
        )
        if self._collect is not None:
            self._collect.extend(messages)
        if self.ctx.echo is not None:
            for message in messages:
                self.ctx.echo(f"[{self.config.name}] {message}")

    def _emit_output(self, lines: list[str]) -> None:
        """Lines the runtime printed: the log, and ``function`` telemetry."""
        self._emit(lines)
        self.telemetry.function(lines)

    def _emit_extension_output(self, _ext: Extension, lines: list[str]) -> None:
        self._emit(lines)
        self.telemetry.extension(lines)

    def _announce_subscription(self, name: str, types: Sequence[str]) -> None:
        self._emit([self._lines.telemetry_subscription(name, types, time.time())])

    def _drain_output(self) -> None:
        """Read everything the process has written so far, synchronously."""
        if self._reader is not None:
            self._reader.drain()

    # ---------------------------------------------------------------- process

    def _process_env(self, extra: dict[str, str], layout: Layout) -> dict[str, str]:
        assert self._port is not None
        extra = {**extra, "AWS_LAMBDA_INITIALIZATION_TYPE": self.initialization_type}
        return process_environment(
            self.config, layout, self.ctx.host_path, self.ctx.region, self._port, self.stream, extra
        )

    async def _spawn(self, deadline: float) -> InitFailure | None:
        """Start the extensions, then the runtime; a failure is returned, not raised.

        ``TimeoutError`` when the extensions have not all registered by ``deadline``.
        """
        tmp_dir = self._dir / "tmp"
        layout = self.ctx.sandbox.layout(self.task_root, self.opt_dir, tmp_dir)
        try:
            plan: Launch = launch(
                self.config.runtime,
                self.task_root,
                self.opt_dir,
                layout,
                node=self.ctx.node,
                python_path=self.ctx.python_path,
            )
        except RuntimeUnavailable as exc:
            self._emit([str(exc)])
            return InitFailure("error", "Runtime.InvalidEntrypoint", reason=str(exc))
        if plan.notice:
            self._emit([plan.notice])
        wrapper = exec_wrapper(self.config.runtime, self.config.environment, layout)
        argv = (wrapper, *plan.argv) if wrapper else plan.argv
        external = external_extensions(self.opt_dir, layout.opt) if self._fork is None else []
        tmp_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = await self._register(self)
        self._spawns += 1
        env = self._process_env(plan.env, layout)
        spec = ProcessSpec(
            name=f"{self.id}-{self._spawns}",
            argv=() if external else argv,
            env=env,
            cwd=layout.task_root,
            task_root=self.task_root,
            opt_dir=self.opt_dir,
            tmp_dir=tmp_dir,
            memory_mb=self.config.memory_size,
            tmp_mb=self.config.ephemeral_storage,
            runtime_argv=argv,
        )
        self._process_known.clear()
        try:
            if self._fork is not None:
                process = await self._fork(snap_start_environment(env))
            else:
                process = await self.ctx.sandbox.spawn(spec)
        except OSError as exc:
            return self._exec_failure(argv, wrapper, layout, exc)
        finally:
            self._process_known.set()
        self._process = process
        self._exit = None
        self._reader = LineReader(process.output_fd, self._emit_output)
        self._reader.start()
        if external:
            await self.extensions.launch(process, external, extension_env(env), deadline)
            if self.extensions.failure is not None:
                error_type, reason = self.extensions.failure
                return InitFailure("error", error_type, reason=reason)
            try:
                await process.start(argv, env, layout.task_root)
            except OSError as exc:
                return self._exec_failure(argv, wrapper, layout, exc)
        self._exit_watch = asyncio.create_task(self._watch(process), name=f"env-{self.id}-exit")
        return None

    def _exec_failure(
        self, argv: Sequence[str], wrapper: str | None, layout: Layout, exc: OSError
    ) -> InitFailure:
        """The runtime could not be executed: how Lambda reports it."""
        strerror = exc.strerror or str(exc)
        if wrapper is not None and exc.errno in (errno.ENOENT, errno.EACCES):
            # A managed runtime's bootstrap script execs the wrapper: the shell's 127 or 126.
            self._emit([f"{layout.runtime_dir}/bootstrap: line 1: {wrapper}: {strerror}"])
            code = 127 if exc.errno == errno.ENOENT else 126
            reason = f"Runtime exited with error: exit status {code}"
            return InitFailure("error", "Runtime.ExitError", reason=reason)
        reason = f"fork/exec {argv[0]}: {strerror.lower()}"
        return InitFailure("error", "Runtime.InvalidEntrypoint", reason=reason)

    async def _watch(self, process: SandboxProcess) -> None:
        exit_status = await process.wait()
        if process is not self._process:
            return
        self._exit = exit_status
        self._drain_output()
        reason = (
            "Runtime exited without providing a reason"
            if exit_status.code == 0
            else f"Runtime exited with error: {exit_status.describe()}"
        )
        if self._init_waiter is not None and not self._init_waiter.done():
            self._init_waiter.set_result(InitFailure("error", "Runtime.ExitError", reason=reason))
        if self._reply is not None and not self._reply.done():
            # Out of memory: killed, and by the kernel's OOM killer during this invocation (a
            # child OOM-killed in an earlier one leaves a later crash a plain ExitError).
            oom = exit_status.signal == signal.SIGKILL and process.oom_kills() > self._oom_kills
            self._reply.set_exception(Crashed(reason, "Runtime.OutOfMemory" if oom else None))
        self._release_next_waiter()
        self.extensions.runtime_failed("Runtime.ExitError", reason)

    async def _run_init(self, timeout: float, phase: str) -> InitFailure | None:
        """Start extensions and runtime; wait until all are ready (at most ``timeout`` s)."""
        began = time.perf_counter()
        deadline = time.monotonic() + timeout
        await self.extensions.close()
        await self.telemetry.reset()
        self.extensions = self._new_extensions()
        cfg = self.config
        self.telemetry.init_start(
            cfg.runtime, cfg.name, cfg.version, self.id, cfg.memory_size, phase
        )
        self._init_waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            failure = await self._spawn(deadline)
            if failure is None:
                failure = await asyncio.wait_for(
                    asyncio.shield(waiter), deadline - time.monotonic()
                )
                self._init_runtime_done(phase, failure)
            if failure is None:
                await self.extensions.await_ready(deadline)
                if self.extensions.failure is not None:
                    error_type, reason = self.extensions.failure
                    failure = InitFailure("error", error_type, reason=reason)
        except TimeoutError:
            failure = InitFailure("timeout", "Sandbox.Timedout")
            if not waiter.done():
                self._init_runtime_done(phase, failure)
        self._init_waiter = None
        self._end_init(phase, began, failure)
        if failure is not None:
            await self._shutdown("failure")
            await self._stop_process()
        return failure

    def _init_runtime_done(self, phase: str, failure: InitFailure | None) -> None:
        status = failure.status if failure else "success"
        self.telemetry.init_runtime_done(phase, status, failure.error_type if failure else None)

    def _end_init(self, phase: str, began: float, failure: InitFailure | None) -> None:
        """Subscriptions close; each extension's state and the init report go out."""
        self.telemetry.close_subscriptions()
        at = time.time()
        for name, state, events, error_type in self.extensions.statuses():
            self._emit([self._lines.extension(name, state, events, error_type, at)])
            self.telemetry.extension_state(name, state, events, error_type)
        status, error_type = (failure.status, failure.error_type) if failure else ("success", None)
        elapsed = (time.perf_counter() - began) * 1000
        self.telemetry.init_report(phase, status, elapsed, error_type)

    def _new_extensions(self) -> Extensions:
        cfg = self.config
        function = FunctionInfo(cfg.name, cfg.version, cfg.handler or "", self.ctx.account_id)
        return Extensions(function, self._emit_extension_output, self._extension_failed)

    def _extension_failed(self, error_type: str, reason: str) -> None:
        """An extension ended the environment: init, or the invocation under way, fails."""
        if self._init_waiter is not None and not self._init_waiter.done():
            self._init_waiter.set_result(InitFailure("error", error_type, reason=reason))
        elif self._reply is not None and not self._reply.done():
            self._reply.set_exception(Crashed(reason, error_type))

    async def _stop_process(self) -> None:
        process, self._process = self._process, None
        reader, self._reader = self._reader, None
        if process is None:
            return
        if reader is not None:
            reader.stop()
        process.kill()
        if reader is not None:
            reader.drain()
        await process.close()
        if self._exit_watch is not None:
            self._exit_watch.cancel()
            self._exit_watch = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """The init phase: start the runtime and wait until it asks for work (≤ init timeout)."""
        if self.state is not EnvState.NEW:
            raise RuntimeError(f"environment {self.id} already started")
        self.state = EnvState.INITIALIZING
        self._lines.initialization_type = self.telemetry.initialization_type = (
            self.initialization_type
        )
        if self._fork is not None:
            await self._restore()
            return
        began = time.perf_counter()
        self._emit([self._lines.init_start(self.config.runtime or "provided", time.time())])
        failure = await self._run_init(self.ctx.init_timeout, "init")
        self.init_duration_ms = (time.perf_counter() - began) * 1000
        if failure is not None:
            self.init_failure = failure
            self._emit(
                [
                    self._lines.init_report(
                        self.init_duration_ms,
                        "init",
                        failure.status,
                        failure.error_type if failure.status == "error" else None,
                        time.time(),
                    )
                ]
            )
        elif self.initialization_type != "on-demand":  # no REPORT will carry its Init Duration
            self._emit(
                [
                    self._lines.init_report(
                        self.init_duration_ms, "init", "success", None, time.time()
                    )
                ]
            )
        if self.state is EnvState.INITIALIZING:
            self.state = EnvState.IDLE
            self.idle_since = time.monotonic()

    async def _restore(self) -> None:
        """The restore phase of a SnapStart environment: forked from the template, after-restore
        hooks run, until the runtime's first ``/next`` (RESTORE_START … RESTORE_REPORT)."""
        began = time.perf_counter()
        self._emit([self._lines.restore_start(self.config.runtime or "provided", time.time())])
        failure = await self._run_init(RESTORE_TIMEOUT, "init")
        self.restore_duration_ms = (time.perf_counter() - began) * 1000
        status, error_type = (failure.status, failure.error_type) if failure else ("success", None)
        self._emit(
            [self._lines.restore_report(self.restore_duration_ms, status, error_type, time.time())]
        )
        if failure is not None:
            self.init_failure = failure
        if self.state is EnvState.INITIALIZING:
            self.state = EnvState.IDLE
            self.idle_since = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.state in (EnvState.IDLE, EnvState.BUSY) and (
            self.init_failure is not None
            or (
                self._process is not None and self._exit is None and self.extensions.failure is None
            )
        )

    def freeze(self) -> None:
        """Idle: no CPU for the runtime or anything it started, until ``thaw``.

        The freeze waits until the runtime is parked in ``/next``: frozen earlier, it would
        make that call only after the thaw, putting a round trip on the next invoke's path.
        """
        self._freeze_when_parked = True
        if self._next_waiter is not None and not self._next_waiter.done():
            self._freeze_soon()

    def _freeze_soon(self) -> None:
        """Freeze after ``freeze_delay`` of idleness: back-to-back invocations skip the
        freeze and thaw (a cgroup write each, and two wake-ups of the runtime)."""
        self._freeze_when_parked = False
        if self._freeze_timer is None:
            self._freeze_timer = asyncio.get_running_loop().call_later(
                self.ctx.freeze_delay, self._freeze_now
            )

    def _freeze_now(self) -> None:
        self._freeze_timer = None
        idle = self.state is EnvState.IDLE and self._current is None
        if idle and self._process is not None and not self._frozen:
            self._process.freeze()
            self._frozen = True

    def thaw(self) -> None:
        self._freeze_when_parked = False
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        if self._process is not None and self._frozen:
            self._process.thaw()
        self._frozen = False

    async def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        """Whether a Runtime API connection comes from this environment's own processes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process_known.wait(), self.ctx.init_timeout)
        return self._process is not None and self._process.owns_connection(local, peer)

    def when_closed(self, callback: Callable[[Environment], None]) -> None:
        self._on_closed.append(callback)

    async def close(self, reason: str | None = None) -> None:
        """End the environment; extensions get SHUTDOWN with ``reason`` (default: spindown,
        or failure after a crash) within Lambda's budget first. Idempotent."""
        if self.state is EnvState.CLOSED:
            return
        failed = self._exit is not None or self.extensions.failure is not None
        self.state = EnvState.CLOSED
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        settling = self.settling
        if settling is not None and settling is not asyncio.current_task():
            settling.cancel()
        await self._shutdown(reason or ("failure" if failed else "spindown"))
        if self._init_waiter is not None and not self._init_waiter.done():
            self._init_waiter.set_result(
                InitFailure("error", "Runtime.ExitError", reason="the environment was closed")
            )
        self._release_next_waiter()
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(Crashed("Runtime exited with error: signal: killed"))
        await self._stop_process()
        await self.extensions.close()
        await self.telemetry.close()
        if self._port is not None:
            await self._unregister(self._port)
            self._port = None
        await asyncio.to_thread(shutil.rmtree, self._dir, True)
        for callback in self._on_closed:
            callback(self)

    async def _shutdown(self, reason: str) -> None:
        """SIGTERM and SHUTDOWN within Lambda's budget; nothing without extensions."""
        process = self._process
        if process is None or not any(e.registered for e in self.extensions):
            return
        self.thaw()
        self.telemetry.flush()
        running = self._exit_watch is not None and self._exit is None
        await self.extensions.shutdown(process, reason, running)

    async def wait_settled(self) -> None:
        """Until a returned invocation's extensions are done (at once when there are none)."""
        task = self.settling
        if task is not None:
            await asyncio.wait([task])

    # ---------------------------------------------------------------- invoke

    async def invoke(self, invocation: Invocation) -> Outcome:
        """Run one invocation to its end: a reply, an error, a crash or the timeout."""
        if self.state is not EnvState.IDLE:
            raise RuntimeError(f"environment {self.id} is {self.state.value}, not idle")
        self.state = EnvState.BUSY
        self.invocations += 1
        # After a failed init the retry is part of this invoke's Duration, not an Init Duration.
        first = self.invocations == 1 and self.init_failure is None
        cold_init = (
            self.init_duration_ms if first and self.initialization_type == "on-demand" else None
        )
        self._collect = [] if invocation.tail else None
        self._started = False
        began = time.perf_counter()
        deadline = began + self.config.timeout
        self.deadline_ms = int((time.time() + self.config.timeout) * 1000)
        try:
            if self.init_failure is not None:
                failure = await self._suppressed_init(deadline)
                if failure is not None:
                    return await self._finish_failed_init(invocation, failure, began, cold_init)
            self._emit_start(invocation)
            subscribed = self.extensions.invoke(invocation, self.deadline_ms)
            reply = await self._exchange(invocation, deadline)
        except TimeoutError:
            return await self._finish_timeout(invocation, began, cold_init)
        except Crashed as crash:
            return await self._finish_crash(
                invocation, crash.reason, crash.error_type, began, cold_init
            )
        if subscribed:
            return self._reply_then_settle(invocation, reply, began, cold_init, deadline)
        return self._finish_reply(invocation, reply, began, cold_init)

    async def _suppressed_init(self, deadline: float) -> InitFailure | None:
        """Re-run a failed init inside the invocation, bounded by the function timeout."""
        began = time.perf_counter()
        remaining = max(0.0, deadline - began)
        failure = await self._run_init(remaining, "invoke")
        self.init_failure = failure
        if failure is not None:
            elapsed = (time.perf_counter() - began) * 1000
            error_type = failure.error_type if failure.status == "error" else None
            self._emit(
                [
                    self._lines.init_report(
                        elapsed, "invoke", failure.status, error_type, time.time()
                    )
                ]
            )
            if failure.status == "timeout":
                raise TimeoutError
        return failure

    def _emit_start(self, invocation: Invocation) -> None:
        """START, once per invocation: after a suppressed init, before the handler runs."""
        if not self._started:
            self._started = True
            self._emit([self._lines.start(invocation.request_id, self.config.version, time.time())])
            self.telemetry.start(invocation.request_id, self.config.version, invocation.trace_id)

    async def _exchange(self, invocation: Invocation, deadline: float) -> Reply:
        self._sample_memory()  # a process that crashes can no longer be measured
        if self._process is not None:
            self._oom_kills = self._process.oom_kills()
        loop = asyncio.get_running_loop()
        self._reply = loop.create_future()
        self._current = invocation
        waiter = self._next_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(invocation)
        else:
            self._queued = invocation
        try:
            return await asyncio.wait_for(self._reply, max(0.0, deadline - time.perf_counter()))
        finally:
            self._current = None
            self._queued = None
            self._reply = None

    def _sample_memory(self) -> int:
        """The environment's peak memory so far (kept once its process is gone)."""
        if self._process is not None:
            self._peak_memory_mb = max(self._peak_memory_mb, self._process.max_memory_mb())
        return self._peak_memory_mb

    def _report(
        self,
        request_id: str,
        began: float,
        init_ms: float | None,
        status: str | None = None,
        error_type: str | None = None,
    ) -> Report:
        memory = self._sample_memory()
        return Report(
            request_id=request_id,
            duration_ms=(time.perf_counter() - began) * 1000,
            memory_mb=self.config.memory_size,
            max_memory_mb=memory,
            init_duration_ms=init_ms,
            status=status,
            error_type=error_type,
            restore_duration_ms=self.restore_duration_ms if self.invocations == 1 else None,
        )

    def _close_invocation(self, report: Report) -> str:
        at = time.time()
        end = self._lines.end(report.request_id, at)
        self._emit([*([end] if end else []), self._lines.report(report, at)])
        self.telemetry.report(report)
        return self._take_tail()

    def _take_tail(self) -> str:
        """The invocation's log so far, for ``X-Amz-Log-Result``; collecting stops."""
        collected, self._collect = self._collect, None
        if collected is None:
            return ""
        text = "\n".join(collected) + "\n"
        return text.encode("utf-8")[-_TAIL_BYTES:].decode("utf-8", "ignore")

    def _finish_reply(
        self, invocation: Invocation, reply: Reply, began: float, init_ms: float | None
    ) -> Outcome:
        self._drain_output()
        report = self._report(invocation.request_id, began, init_ms)
        self._runtime_done(invocation, reply, report)
        log = self._close_invocation(report)
        self.state = EnvState.IDLE
        self.idle_since = time.monotonic()
        return Outcome(
            payload=reply.body,
            content_type=reply.content_type,
            function_error=not reply.ok,
            log=log,
            report=dataclasses.replace(report, error_type=None if reply.ok else reply.error_type),
            executed_version=self.config.version,
        )

    def _runtime_done(self, invocation: Invocation, reply: Reply, report: Report) -> None:
        self.telemetry.runtime_done(
            invocation.request_id,
            "success" if reply.ok else "error",
            report.duration_ms,
            len(reply.body),
            None if reply.ok else reply.error_type,
            invocation.trace_id,
        )

    def _reply_then_settle(
        self,
        invocation: Invocation,
        reply: Reply,
        began: float,
        init_ms: float | None,
        deadline: float,
    ) -> Outcome:
        """The caller's outcome now; END and REPORT when the INVOKE subscribers are done.

        The tail log therefore ends at the reply.
        """
        self._drain_output()
        report = self._report(invocation.request_id, began, init_ms)
        self._runtime_done(invocation, reply, report)
        log = self._take_tail()
        self.settling = asyncio.create_task(
            self._settle(invocation, began, init_ms, deadline), name=f"env-{self.id}-settle"
        )
        return Outcome(
            payload=reply.body,
            content_type=reply.content_type,
            function_error=not reply.ok,
            log=log,
            report=dataclasses.replace(report, error_type=None if reply.ok else reply.error_type),
            executed_version=self.config.version,
        )

    async def _settle(
        self, invocation: Invocation, began: float, init_ms: float | None, deadline: float
    ) -> None:
        """Wait for the runtime and the INVOKE subscribers (within the timeout); then REPORT."""
        status: str | None = None
        error_type: str | None = None
        try:
            try:
                remaining = deadline - time.perf_counter()
                await self.extensions.await_settled(time.monotonic() + remaining)
            except TimeoutError:
                status = "timeout"
            if self.extensions.failure is not None and status is None:
                status, error_type = "error", self.extensions.failure[0]
            self._drain_output()
            self.extensions.drain_all()
            if status == "timeout":
                self._emit([self._timeout_line(invocation.request_id)])
            self._close_invocation(
                self._report(invocation.request_id, began, init_ms, status, error_type)
            )
            if status is None:
                self.state = EnvState.IDLE
                self.idle_since = time.monotonic()
            else:
                await self.close("timeout" if status == "timeout" else "failure")
        finally:
            self.settling = None

    def _timeout_line(self, request_id: str) -> str:
        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        )
        return f"{stamp} {request_id} Task timed out after {float(self.config.timeout):.2f} seconds"

    async def _finish_failed(
        self,
        invocation: Invocation,
        began: float,
        init_ms: float | None,
        status: str,
        error_type: str,
        body: bytes,
        content_type: str,
        log_lines: list[str],
    ) -> Outcome:
        self._sample_memory()
        reason = "timeout" if status == "timeout" else "failure"
        await self._shutdown(reason)
        await self._stop_process()
        self._emit_start(invocation)
        self._emit(log_lines)
        report = self._report(invocation.request_id, began, init_ms, status, error_type)
        self.telemetry.runtime_done(
            invocation.request_id, status, report.duration_ms, 0, error_type, invocation.trace_id
        )
        log = self._close_invocation(report)
        await self.close(reason)
        return Outcome(
            payload=body,
            content_type=content_type,
            function_error=True,
            log=log,
            report=report,
            executed_version=self.config.version,
        )

    async def _finish_timeout(
        self, invocation: Invocation, began: float, init_ms: float | None
    ) -> Outcome:
        message = f"Task timed out after {float(self.config.timeout):.2f} seconds"
        request_id = invocation.request_id
        return await self._finish_failed(
            invocation,
            began,
            init_ms,
            "timeout",
            "Sandbox.Timedout",
            error_body("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}"),
            "application/json",
            [self._timeout_line(request_id)],
        )

    async def _finish_crash(
        self,
        invocation: Invocation,
        reason: str,
        error_type: str,
        began: float,
        init_ms: float | None,
    ) -> Outcome:
        request_id = invocation.request_id
        return await self._finish_failed(
            invocation,
            began,
            init_ms,
            "error",
            error_type,
            error_body(error_type, f"RequestId: {request_id} Error: {reason}"),
            "application/json",
            [f"RequestId: {request_id} Error: {reason}", error_type],
        )

    async def _finish_failed_init(
        self, invocation: Invocation, failure: InitFailure, began: float, init_ms: float | None
    ) -> Outcome:
        body, content_type = failure.invoke_body(invocation.request_id)
        error_type = failure.error_type or "Runtime.Unknown"
        lines = []
        if failure.reason is not None:
            lines = [f"RequestId: {invocation.request_id} Error: {failure.reason}", error_type]
        return await self._finish_failed(
            invocation, began, init_ms, "error", error_type, body, content_type, lines
        )
