"""One execution environment: a runtime process, its invocation channel and its recorder.

An environment runs one invocation at a time. Its life::

    NEW ──start()──▶ INITIALIZING ──first /next──▶ IDLE ◀──▶ BUSY
                          │                          │         │
                          └── init failed ──▶ IDLE (init_failure set; the first invoke
                                                    re-runs init inside itself, as Lambda does)
    any state ──close() / crash / timeout──▶ CLOSED

Its parts each own their state: the ``InvocationChannel`` (``channel.py``) the hand-off to the
runtime, which the Runtime API server reaches; the ``Recorder`` (``recorder.py``) the log
stream, the platform lines and the telemetry; ``Extensions`` the extensions of the current
init. The pool calls ``start``, ``invoke`` and ``close``. An invocation returns its outcome as
soon as the runtime replies, while ``settling`` keeps the environment busy until the INVOKE
subscribers are done; ``close`` sends SHUTDOWN within Lambda's budget before the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from lambdad.observe.logs import LogStore
from lambdad.observe.otlp import Span
from lambdad.observe.platform import Report
from lambdad.observe.traces import extension_init_spans, extension_invoke_spans, sampled_ids
from lambdad.runtime import launch, streamed
from lambdad.runtime.body_stream import BodyStream
from lambdad.runtime.channel import ChannelHooks, InvocationChannel
from lambdad.runtime.extensions import Extensions, FunctionInfo
from lambdad.runtime.invocation import Invocation, Outcome, Run
from lambdad.runtime.recorder import Recorder
from lambdad.runtime.replies import (
    Crashed,
    Ending,
    InitFailure,
    Reply,
    crashed,
    init_failed,
    timed_out,
)
from lambdad.runtime.runner import Forker, Runner
from lambdad.runtime.runtimes import RuntimeUnavailable
from lambdad.runtime.sandbox.base import Sandbox
from lambdad.runtime.spec import FunctionSpec
from lambdad.runtime.telemetry import Telemetry

#: How long a SnapStart environment may take to restore (AWS: 10 s).
RESTORE_TIMEOUT = 10.0
#: How long a streamed reply whose connection closed waits to see the runtime's exit (s).
EXIT_GRACE = 0.5


class EnvState(enum.Enum):
    NEW = "new"
    INITIALIZING = "initializing"
    IDLE = "idle"
    BUSY = "busy"
    CLOSED = "closed"


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
    #: Takes a function's log line that looks like EMF (account, region, log group, line),
    #: to be parsed later (``observe/emf.py``); None: EMF lines are only logged.
    emf: Callable[[str, str, str, str], None] | None = None
    #: Where lambdad's X-Ray segment listener is, as cells reach it (None: none runs).
    xray: Callable[[], tuple[str, int] | None] | None = None
    #: Takes lambdad's spans of a sampled invocation's extensions (docs/tracing.md).
    spans: Callable[[list[Span]], None] | None = None
    #: SigV4 mode: the credential variables of a function's environment (account, region, role
    #: ARN, function name); None: the fixed local keys of open mode.
    credentials: Callable[[str, str, str, str], dict[str, str]] | None = None

    def credential_variables(self, config: FunctionSpec) -> dict[str, str]:
        """What overrides the default credential variables of ``config``'s environments."""
        if self.credentials is None:
            return {}
        return self.credentials(self.account_id, self.region, config.role, config.name)


class Environment:
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
        self.id = uuid.uuid4().hex
        self.state = EnvState.NEW
        self.init_failure: InitFailure | None = None
        self.init_duration_ms: float | None = None
        #: ``AWS_LAMBDA_INITIALIZATION_TYPE``; set before ``start``. Only an on-demand
        #: environment's first REPORT carries its Init Duration.
        self.initialization_type = "on-demand"
        self.idle_since = time.monotonic()
        self.invocations = 0
        self._register = register
        self._unregister = unregister
        self._dir = ctx.runs_dir / self.id
        self._port: int | None = None
        stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{config.version}]{self.id}"
        self.recorder = Recorder(
            ctx.logs, ctx.account_id, ctx.region, config, stream, ctx.echo, ctx.emf
        )
        self.runner = Runner(
            ctx.sandbox,
            fork,
            self.recorder.output,
            self._runtime_exited,
            ctx.freeze_delay,
            lambda: self.state is EnvState.IDLE and not self.channel.busy,
        )
        self.telemetry.sockets = self._socket
        self.telemetry.clock = self.runner.running_time
        self.channel = InvocationChannel(
            ChannelHooks(
                drain=self.runner.drain,
                ready=self.runner.end_init,
                done=lambda: self.extensions.runtime_next(),
                parked=self.runner.parked,
            )
        )
        self._spawns = 0
        self._on_closed: list[Callable[[Environment], None]] = []
        #: The extensions of the current init attempt.
        self.extensions = self._new_extensions()
        #: Set while a returned invocation waits for its extensions (see ``invoke``).
        self.settling: asyncio.Task[None] | None = None
        #: How the runtime's exit ended an invocation, once it exited.
        self._exit_crash: Crashed | None = None

    def _socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket in this environment's network (its cell's, where it has its own)."""
        process = self.runner.process
        if process is None:
            return socket.socket(family, kind, proto)
        return process.socket(family, kind, proto)

    @property
    def stream(self) -> str:
        return self.recorder.stream

    @property
    def telemetry(self) -> Telemetry:
        return self.recorder.telemetry

    # ---------------------------------------------------------------- process

    async def _spawn(self, deadline: float) -> InitFailure | None:
        """Start the extensions, then the runtime; a failure is returned, not raised.

        ``TimeoutError`` when the extensions have not all registered by ``deadline``.
        """
        ctx = self.ctx
        if self._port is None:
            self._port = await self._register(self)
        self._spawns += 1
        tmp_dir = self._dir / "tmp"
        layout = ctx.sandbox.layout(self.task_root, self.opt_dir, tmp_dir)
        name = f"{self.id}-{self._spawns}"
        where = launch.Where(
            name,
            self.task_root,
            self.opt_dir,
            tmp_dir,
            layout,
            self._port,
            self.stream,
            ctx.sandbox.reach(),
        )
        xray = ctx.xray() if ctx.xray is not None else None
        host = launch.Host(
            ctx.region,
            ctx.host_path,
            ctx.node,
            ctx.python_path,
            xray,
            ctx.credential_variables(self.config),
        )
        forked = self._fork is not None
        try:
            plan = launch.plan(host, self.config, where, self.initialization_type, forked)
        except RuntimeUnavailable as exc:
            self.recorder.emit([str(exc)])
            return InitFailure("error", "Runtime.InvalidEntrypoint", reason=str(exc))
        if plan.notice:
            self.recorder.emit([plan.notice])
        tmp_dir.mkdir(parents=True, exist_ok=True)
        failure, lines = await self.runner.start(plan, self.extensions, deadline)
        self.recorder.emit(lines)
        return failure

    def _runtime_exited(self, reason: str, oom: bool) -> None:
        if not self.channel.fail_init(InitFailure("error", "Runtime.ExitError", reason=reason)):
            self._exit_crash = Crashed(reason, "Runtime.OutOfMemory" if oom else None)
            self.channel.crash(self._exit_crash)
        self.channel.release_parked()
        self.extensions.runtime_failed("Runtime.ExitError", reason)

    # ---------------------------------------------------------------- init

    async def start(self) -> None:
        """The init phase: start the runtime and wait until it asks for work (≤ init timeout)."""
        if self.state is not EnvState.NEW:
            raise RuntimeError(f"environment {self.id} already started")
        self.state = EnvState.INITIALIZING
        self.recorder.set_initialization_type(self.initialization_type)
        began = time.perf_counter()
        if self._fork is not None:
            # SnapStart: forked from the template, after-restore hooks run, until the first
            # ``/next`` (RESTORE_START … RESTORE_REPORT).
            self.recorder.restore_start()
            failure = await self._run_init(RESTORE_TIMEOUT, "init")
            self.restore_duration_ms = (time.perf_counter() - began) * 1000
            self.recorder.restore_report(self.restore_duration_ms, failure)
        else:
            self.recorder.init_start()
            failure = await self._run_init(self.ctx.init_timeout, "init")
            self.init_duration_ms = (time.perf_counter() - began) * 1000
            # A failed init, and one no REPORT will carry the Init Duration of, say so now.
            if failure is not None or self.initialization_type != "on-demand":
                self.recorder.init_report(self.init_duration_ms, "init", failure)
        self.init_failure = failure
        if self.state is EnvState.INITIALIZING:
            self.state = EnvState.IDLE
            self.idle_since = time.monotonic()

    async def _run_init(self, timeout: float, phase: str) -> InitFailure | None:
        """Start extensions and runtime; wait until all are ready (at most ``timeout`` s)."""
        began = time.perf_counter()
        deadline = time.monotonic() + timeout
        await self.extensions.close()
        await self.telemetry.reset()
        self.extensions = self._new_extensions()
        self.recorder.init_begun(self.id, phase)
        waiter = self.channel.begin_init()
        try:
            failure = await self._spawn(deadline)
            if failure is None:
                failure = await asyncio.wait_for(
                    asyncio.shield(waiter), deadline - time.monotonic()
                )
                self.recorder.init_runtime_done(phase, failure)
            if failure is None:
                await self.extensions.await_ready(deadline)
                if self.extensions.failure is not None:
                    error_type, reason = self.extensions.failure
                    failure = InitFailure("error", error_type, reason=reason)
        except TimeoutError:
            failure = InitFailure("timeout", "Sandbox.Timedout")
            if not waiter.done():
                self.recorder.init_runtime_done(phase, failure)
        self.channel.end_init()
        elapsed = (time.perf_counter() - began) * 1000
        self.recorder.init_ended(phase, elapsed, failure, self.extensions.statuses())
        if failure is not None:
            await self._shutdown("failure")
            await self.runner.stop()
        return failure

    async def _suppressed_init(self, deadline: float) -> InitFailure | None:
        """Re-run a failed init inside the invocation, bounded by the function timeout."""
        began = time.perf_counter()
        failure = await self._run_init(max(0.0, deadline - began), "invoke")
        self.init_failure = failure
        if failure is not None:
            self.recorder.init_report((time.perf_counter() - began) * 1000, "invoke", failure)
            if failure.status == "timeout":
                raise TimeoutError
        return failure

    def _new_extensions(self) -> Extensions:
        cfg = self.config
        function = FunctionInfo(cfg.name, cfg.version, cfg.handler or "", self.ctx.account_id)
        return Extensions(function, self.recorder.extension_output, self._extension_failed)

    def _extension_failed(self, error_type: str, reason: str) -> None:
        """An extension ended the environment: init, or the invocation under way, fails."""
        if not self.channel.fail_init(InitFailure("error", error_type, reason=reason)):
            self.channel.crash(Crashed(reason, error_type))

    @property
    def alive(self) -> bool:
        return self.state in (EnvState.IDLE, EnvState.BUSY) and (
            self.init_failure is not None
            or (self.runner.running and self.extensions.failure is None)
        )

    # ---------------------------------------------------------------- freezing

    def freeze(self) -> None:
        """Idle: no CPU for the runtime or anything it started, until ``thaw`` (once the
        runtime is parked in ``/next``)."""
        self.runner.freeze(self.channel.parked)

    def thaw(self) -> None:
        self.runner.thaw()

    async def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        """Whether a Runtime API connection comes from this environment's own processes."""
        return await self.runner.owns_connection(local, peer, self.ctx.init_timeout)

    # ---------------------------------------------------------------- the end

    def when_closed(self, callback: Callable[[Environment], None]) -> None:
        self._on_closed.append(callback)

    async def close(self, reason: str | None = None) -> None:
        """End the environment; extensions get SHUTDOWN with ``reason`` (default: spindown,
        or failure after a crash) within Lambda's budget first. Idempotent."""
        if self.state is EnvState.CLOSED:
            return
        failed = self.runner.exit is not None or self.extensions.failure is not None
        self.state = EnvState.CLOSED
        self.channel.close()
        self.runner.cancel_freeze()
        settling = self.settling
        if settling is not None and settling is not asyncio.current_task():
            settling.cancel()
        await self._shutdown(reason or ("failure" if failed else "spindown"))
        closed = InitFailure("error", "Runtime.ExitError", reason="the environment was closed")
        self.channel.fail_init(closed)
        self.channel.release_parked()
        self.channel.crash(Crashed("Runtime exited with error: signal: killed"))
        await self.runner.stop()
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
        process = self.runner.process
        if process is None or not any(e.registered for e in self.extensions):
            return
        self.thaw()
        self.telemetry.flush()
        await self.extensions.shutdown(process, reason, self.runner.watched)

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
        on_demand = self.initialization_type == "on-demand"
        run = Run.begin(invocation, self.config.timeout)
        run.init_ms = self.init_duration_ms if first and on_demand else None
        self.recorder.begin(invocation)
        try:
            if self.init_failure is not None:
                failure = await self._suppressed_init(run.deadline)
                if failure is not None:
                    return await self._finish_failed(run, init_failed(run.request_id, failure))
            self.recorder.start(invocation)
            subscribed = self.extensions.invoke(invocation, run.deadline_ms)
            self.runner.invocation_begins()
            timeout = run.deadline - time.perf_counter()
            reply = await self.channel.exchange(invocation, run.deadline_ms, timeout)
            if reply.stream is not None:
                reply = await self._read_streamed(run, reply.stream)
        except TimeoutError:
            line = self.recorder.timeout_line(run.request_id)
            return await self._finish_failed(run, timed_out(run.request_id, run.timeout, line))
        except Crashed as crash:
            return await self._finish_failed(run, crashed(run.request_id, crash))
        self.runner.drain()
        report = self._report(run)
        status, error_type = ("success", None) if reply.ok else ("error", reply.error_type)
        size = len(reply.body) if reply.stream is None else reply.stream.size
        self.recorder.runtime_done(invocation, status, report.duration_ms, size, error_type)
        if self.ctx.spans is not None and "Sampled=1" in (invocation.trace_id or ""):
            self._trace_init_extensions(run)
        if subscribed:
            # The caller's outcome now; END and REPORT when the INVOKE subscribers are done,
            # so the tail log ends at the reply.
            log = self.recorder.take_tail()
            self.settling = asyncio.create_task(self._settle(run), name=f"env-{self.id}-settle")
        else:
            log = self.recorder.finish(report)
            self._idle()
        if error_type is not None:  # (a copy only for a function error)
            report = dataclasses.replace(report, error_type=error_type)
        return reply.outcome(log, report, self.config.version)

    async def _read_streamed(self, run: Run, body: BodyStream) -> Reply:
        """A streamed reply read to its end. A runtime's connection that closes mid-stream is
        usually its process exiting: that exit, once seen (within ``EXIT_GRACE``), is the
        crash reported, as a buffered invocation's would be."""
        try:
            return await streamed.read_reply(body, run.invocation.sink, run.deadline)
        except Crashed as crash:
            if crash.error_type == streamed.TRUNCATED:
                grace = min(EXIT_GRACE, run.deadline - time.perf_counter())
                if await self.runner.exited(grace) and self._exit_crash is not None:
                    raise self._exit_crash from None
            raise

    def _idle(self) -> None:
        self.state = EnvState.IDLE
        self.idle_since = time.monotonic()

    def _report(self, run: Run, status: str | None = None, error: str | None = None) -> Report:
        return Report(
            request_id=run.request_id,
            duration_ms=(time.perf_counter() - run.began) * 1000,
            memory_mb=self.config.memory_size,
            max_memory_mb=self.runner.sample_memory(),
            init_duration_ms=run.init_ms,
            status=status,
            error_type=error,
            restore_duration_ms=self.restore_duration_ms if self.invocations == 1 else None,
        )

    def _trace_init_extensions(self, run: Run) -> None:
        """A sampled first invocation: its extensions' init (or restore) spans."""
        restored = self.restore_duration_ms is not None and self.invocations == 1
        if not (run.init_ms or restored) or self.ctx.spans is None:
            return  # a warm invocation (most): no init in its trace
        ids = sampled_ids(run.invocation.trace_id)
        if ids is None:
            return
        spans = extension_init_spans(ids, restored, self.extensions.init_times())
        if spans:
            self.ctx.spans(spans)

    def _trace_post_invoke(self, run: Run, responded: float) -> None:
        """A sampled invocation's extensions' time after the runtime's response."""
        ids = sampled_ids(run.invocation.trace_id)
        if ids is None or self.ctx.spans is None:
            return
        spans = extension_invoke_spans(ids, responded, self.extensions.post_invoke_times())
        if spans:
            self.ctx.spans(spans)

    async def _settle(self, run: Run) -> None:
        """Wait for the runtime and the INVOKE subscribers (within the timeout); then REPORT."""
        responded = time.time()
        status: str | None = None
        error_type: str | None = None
        try:
            try:
                remaining = run.deadline - time.perf_counter()
                await self.extensions.await_settled(time.monotonic() + remaining)
            except TimeoutError:
                status = "timeout"
            if self.extensions.failure is not None and status is None:
                status, error_type = "error", self.extensions.failure[0]
            self.runner.drain()
            self.extensions.drain_all()
            if status == "timeout":
                self.recorder.fault([self.recorder.timeout_line(run.request_id)])
            self.recorder.finish(self._report(run, status, error_type))
            self._trace_post_invoke(run, responded)
            if status is None:
                self._idle()
            else:
                await self.close("timeout" if status == "timeout" else "failure")
        finally:
            self.settling = None

    async def _finish_failed(self, run: Run, ending: Ending) -> Outcome:
        """A timeout, a crash or a failed init: the environment ends with the invocation."""
        self.runner.sample_memory()
        reason = "timeout" if ending.status == "timeout" else "failure"
        # The invocation ends (its fault, END and REPORT told) before SHUTDOWN, as on Lambda:
        # subscribers still hear of it, and its Duration does not count the shutdown.
        self.runner.drain()
        self.recorder.start(run.invocation)
        self.recorder.fault(list(ending.lines))
        report = self._report(run, ending.status, ending.error_type)
        self.recorder.runtime_done(
            run.invocation, ending.status, report.duration_ms, 0, ending.error_type
        )
        log = self.recorder.finish(report)
        await self._shutdown(reason)
        await self.runner.stop()
        await self.close(reason)
        reply = Reply(False, ending.body, ending.content_type, ending.error_type)
        return reply.outcome(log, report, self.config.version)
