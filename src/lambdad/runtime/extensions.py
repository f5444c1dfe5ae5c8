"""The extensions of one execution environment: the registry behind the Extensions API.

External extensions are the files in ``/opt/extensions``. They start before the runtime, each
registers under its file name, and the runtime starts only once all of them have registered.
Internal extensions register from inside the runtime process under any other name; they cannot
subscribe to SHUTDOWN. Init finishes when the runtime and every registered extension have asked
for their next event. An INVOKE event goes out with the runtime's event; the environment is
ready again when the runtime and every INVOKE subscriber have asked for the next one. Shutdown
sends SIGTERM to the runtime and SHUTDOWN to its subscribers, then waits for them to exit within
Lambda's budget. The behaviour and the error types follow RAPID (the Runtime Interface Emulator,
``internal/lambda/core``, ``rapi/handler``).

One extension's life, named as RAPID names the states in its messages and log lines::

    Started ──register──▶ Registered ──next──▶ Ready ⇄ Running ──exit──▶ Exited
       │                       │                   │
       └─ exec failed ──▶ LaunchError              └─ exit/error ──▶ ExitError
                               └─ init/error ──▶ InitError

An extension that exits outside shutdown fails the environment: ``Extension.InitError`` after
an ``/init/error``, ``Extension.ExitError`` after an ``/exit/error``, ``Extension.Crash``
otherwise; the reason is the exit (``exit code 0``, ``exit status 1``, ``signal: killed``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import errno
import functools
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from lambdad.runtime.invocation import Invocation
from lambdad.runtime.output import LineReader
from lambdad.runtime.replies import RuntimeApiError
from lambdad.runtime.sandbox.base import Exit, SandboxProcess, SiblingProcess

#: RAPID's ``core.MaxAgentsAllowed``: external and internal extensions together.
MAX_EXTENSIONS = 10
INVOKE = "INVOKE"
SHUTDOWN = "SHUTDOWN"
#: Variables the runtime gets and extensions do not (RAPID ``env.AgentExecEnv``), besides
#: ``AWS_XRAY_*`` and every ``_``-prefixed name.
RUNTIME_ONLY = frozenset(
    {
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "_HANDLER",
    }
)
#: Shutdown budgets (seconds): internal extensions only, or at least one external one.
BUDGET_INTERNAL = 0.5
BUDGET_EXTERNAL = 2.0


class ExtState(enum.Enum):
    STARTED = "Started"
    REGISTERED = "Registered"
    READY = "Ready"
    RUNNING = "Running"
    INIT_ERROR = "InitError"
    EXIT_ERROR = "ExitError"
    EXITED = "Exited"
    LAUNCH_ERROR = "LaunchError"


class Phase(enum.Enum):
    """The registry's phase: registration is open only during INIT."""

    INIT = "init"
    RUNNING = "running"
    SHUTDOWN = "shutdown"
    CLOSED = "closed"


def _transition(state: ExtState, to: str, who: str) -> RuntimeApiError:
    return RuntimeApiError(
        403,
        "Extension.InvalidExtensionState",
        f"State transition from {state.value} to {to} failed for extension {who}. "
        "Error: State transition is not allowed",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionInfo:
    """What ``/extension/register`` answers."""

    name: str
    version: str
    handler: str
    account_id: str


@dataclasses.dataclass(eq=False)
class Extension:
    name: str
    external: bool
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    state: ExtState = ExtState.STARTED
    #: Registered at some point (it counts for the shutdown budget and the status lines).
    registered: bool = False
    events: tuple[str, ...] = ()
    #: The type it reported with ``/init/error`` or ``/exit/error``, or why it failed to launch.
    error_type: str | None = None
    process: SiblingProcess | None = None
    exit: Exit | None = None
    queue: collections.deque[bytes] = dataclasses.field(default_factory=collections.deque)
    waiter: asyncio.Future[bytes] | None = None
    #: An event was handed over and the extension has not asked for the next one yet.
    busy: bool = False
    reader: LineReader | None = None
    #: For its trace spans (epoch seconds): launched (external) or registered (internal);
    #: its first ``/next`` (init done); its last ``/next`` after an INVOKE.
    launched: float = 0.0
    ready_at: float | None = None
    done_at: float = 0.0


def external_extensions(opt_dir: Path | None, seen_opt: str) -> list[tuple[str, str]]:
    """``(name, path as the environment sees it)`` of every non-directory in /opt/extensions."""
    if opt_dir is None:
        return []
    try:
        entries = sorted(os.scandir(opt_dir / "extensions"), key=lambda e: e.name)
    except OSError:
        return []
    return [
        (e.name, f"{seen_opt}/extensions/{e.name}")
        for e in entries
        if not e.is_dir(follow_symlinks=False)
    ]


def extension_env(env: Mapping[str, str]) -> dict[str, str]:
    """The function's environment minus what only the runtime gets."""
    return {
        key: value
        for key, value in env.items()
        if key not in RUNTIME_ONLY and not key.startswith(("AWS_XRAY_", "_"))
    }


def _compact(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def invoke_event(invocation: Invocation, deadline_ms: int) -> bytes:
    document: dict[str, object] = {
        "eventType": INVOKE,
        "deadlineMs": deadline_ms,
        "requestId": invocation.request_id,
        "invokedFunctionArn": invocation.invoked_arn,
    }
    if invocation.trace_id:
        document["tracing"] = {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id}
    return _compact(document)


def shutdown_event(deadline_ms: int, reason: str) -> bytes:
    return _compact({"eventType": SHUTDOWN, "deadlineMs": deadline_ms, "shutdownReason": reason})


def _exit_reason(status: Exit) -> str:
    """RAPID's words for an extension's exit."""
    return "exit code 0" if status.code == 0 else status.describe()


def _parse_events(body: bytes) -> list[str]:
    """The ``events`` of a register body, refused as RAPID refuses a malformed one."""
    if not body.strip():
        raise RuntimeApiError(403, "InvalidRequestFormat", "unexpected end of JSON input")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RuntimeApiError(403, "InvalidRequestFormat", f"invalid JSON: {exc}") from exc
    if document is None:
        return []
    if not isinstance(document, dict):
        raise RuntimeApiError(403, "InvalidRequestFormat", "the body is not a JSON object")
    if document.get("configurationKeys"):
        raise RuntimeApiError(
            403,
            "InvalidRequestFormat",
            "configurationKeys are deprecated; use environment variables instead",
        )
    events = document.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise RuntimeApiError(403, "InvalidRequestFormat", "events must be an array of strings")
    return events


def _check_events(events: Sequence[str], internal: bool) -> None:
    for event in events:
        if event == SHUTDOWN and internal:
            problem = "ShutdownEventNotSupportedForInternalExtension"
        elif event in (INVOKE, SHUTDOWN):
            continue
        else:
            problem = "ErrorInvalidEventType"
        raise RuntimeApiError(403, "Extension.InvalidEventType", f"{event}: {problem}")


class ExtensionGone(Exception):
    """The extension's pending ``/event/next`` was abandoned (environment closed)."""


class Extensions:
    """The extensions of one init attempt of one environment.

    ``emit`` receives each extension's output lines; ``on_failure`` hears, once, the first
    failure (error type and reason) that ends the environment.
    """

    def __init__(
        self,
        function: FunctionInfo,
        emit: Callable[[Extension, list[str]], None],
        on_failure: Callable[[str, str], None],
    ) -> None:
        self.function = function
        self.phase = Phase.INIT
        #: External ones first (launch order), then internal ones (registration order).
        self._all: list[Extension] = []
        self._by_id: dict[str, Extension] = {}
        self.failure: tuple[str, str] | None = None
        #: The runtime asked for its next event since the last INVOKE.
        self.runtime_ready = True
        #: The last INVOKE's subscribers.
        self.invoked: list[Extension] = []
        self._changed = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self._emit = emit
        self._on_failure = on_failure

    # ------------------------------------------------------------ bookkeeping

    def __iter__(self) -> Iterator[Extension]:
        return iter(self._all)

    def _add(self, ext: Extension) -> Extension:
        self._all.append(ext)
        self._by_id[ext.id] = ext
        return ext

    def find(self, ext_id: str, unknown: str | None = None) -> Extension:
        ext = self._by_id.get(ext_id)
        if ext is None:
            raise RuntimeApiError(
                403,
                "Extension.UnknownExtensionIdentifier",
                unknown or f"Unknown extension {ext_id}",
            )
        return ext

    def _wake(self) -> None:
        self._changed.set()

    def _fail(self, error_type: str, reason: str) -> None:
        if self.failure is None and self.phase in (Phase.INIT, Phase.RUNNING):
            self.failure = (error_type, reason)
            self._wake()
            self._on_failure(error_type, reason)

    def runtime_failed(self, error_type: str, reason: str) -> None:
        """The runtime died: wake whoever waits on the extensions (no callback)."""
        if self.failure is None and self.phase in (Phase.INIT, Phase.RUNNING):
            self.failure = (error_type, reason)
            self._wake()

    async def _wait(
        self, done: Callable[[], bool], deadline: float, stop_on_failure: bool = True
    ) -> None:
        """Until ``done()`` (or a failure); ``TimeoutError`` at ``deadline`` (monotonic)."""
        while not done() and not (stop_on_failure and self.failure is not None):
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(self._changed.wait(), remaining)

    # ------------------------------------------------------------ output

    def drain(self, ext: Extension) -> None:
        """Read everything ``ext`` has written so far, synchronously."""
        if ext.reader is not None:
            ext.reader.drain()

    def drain_all(self) -> None:
        for ext in self._all:
            self.drain(ext)

    # ------------------------------------------------------------ launch

    async def launch(
        self,
        process: SandboxProcess,
        paths: Sequence[tuple[str, str]],
        env: Mapping[str, str],
        deadline: float,
    ) -> None:
        """Start the external extensions; wait until all registered, or one failed.

        A failure is in ``self.failure``; ``TimeoutError`` at ``deadline``.
        """
        if len(paths) > MAX_EXTENSIONS:
            name = paths[MAX_EXTENSIONS][0]
            failed = Extension(name, True, state=ExtState.LAUNCH_ERROR)
            failed.error_type = "TooManyExtensions"
            self._add(failed)
            self._fail("Extension.LaunchError", "ErrTooManyExtensions")
            return
        for name, path in paths:
            ext = self._add(Extension(name, True, launched=time.time()))
            try:
                ext.process = await process.spawn_sibling([path], env, "/")
            except OSError as exc:
                ext.state = ExtState.LAUNCH_ERROR
                denied = exc.errno in (errno.EACCES, errno.EPERM)
                ext.error_type = "PermissionDenied" if denied else "UnknownError"
                reason = (exc.strerror or str(exc)).lower()
                self._fail("Extension.LaunchError", f"fork/exec {path}: {reason}")
                return
            ext.reader = LineReader(ext.process.output_fd, functools.partial(self._emit, ext))
            ext.reader.start()
            watcher = asyncio.create_task(self._watch(ext), name=f"extension-{name}")
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        await self._wait(lambda: all(e.registered for e in self._all), deadline)

    async def _watch(self, ext: Extension) -> None:
        assert ext.process is not None
        status = await ext.process.wait()
        self.drain(ext)
        ext.exit = status
        failed_as = {
            ExtState.INIT_ERROR: "Extension.InitError",
            ExtState.EXIT_ERROR: "Extension.ExitError",
        }.get(ext.state, "Extension.Crash")
        if ext.state not in (ExtState.INIT_ERROR, ExtState.EXIT_ERROR):
            ext.state = ExtState.EXITED
        self._abandon(ext)
        self._wake()
        self._fail(failed_as, _exit_reason(status))

    # ------------------------------------------------------------ the API

    def register(self, name: str, body: bytes, features: str) -> tuple[Extension, bytes]:
        """``POST /extension/register``: the extension and the response body."""
        if not name:
            raise RuntimeApiError(403, "Extension.InvalidExtensionName", "Empty extension name")
        events = _parse_events(body)
        ext = next((e for e in self._all if e.external and e.name == name), None)
        if ext is not None:
            _check_events(events, internal=False)
            if ext.state is not ExtState.STARTED:
                raise _transition(ext.state, "Registered", ext.name)
        else:
            _check_events(events, internal=True)
            ext = self._new_internal(name)
        ext.events = tuple(dict.fromkeys(events))
        ext.state = ExtState.REGISTERED
        ext.registered = True
        self._wake()
        return ext, self._register_body(features)

    def _new_internal(self, name: str) -> Extension:
        if self.phase is not Phase.INIT:
            raise RuntimeApiError(
                403, "Extension.RegistrationClosed", "Extension registration closed already"
            )
        if len(self._all) >= MAX_EXTENSIONS:
            raise RuntimeApiError(
                403, "Extension.TooManyExtensions", f"Extension limit ({MAX_EXTENSIONS}) reached"
            )
        if any(e.name == name for e in self._all):
            raise RuntimeApiError(
                403,
                "Extension.InvalidExtensionState",
                "Extension with this name already registered",
            )
        return self._add(Extension(name, False, launched=time.time()))

    def _register_body(self, features: str) -> bytes:
        document = {
            "functionName": self.function.name,
            "functionVersion": self.function.version,
            "handler": self.function.handler,
        }
        if "accountId" in (f.strip() for f in features.split(",")):
            document["accountId"] = self.function.account_id
        return _compact(document) + b"\n"

    async def next(self, ext_id: str) -> bytes:
        """``GET /extension/event/next``: the next event, waiting as long as it takes."""
        ext = self.find(ext_id)
        if ext.state not in (ExtState.REGISTERED, ExtState.READY, ExtState.RUNNING):
            raise _transition(ext.state, "Ready", ext.id)
        self.drain(ext)
        now = time.time()
        if ext.ready_at is None:
            ext.ready_at = now
        if ext.busy:
            ext.done_at = now
        ext.busy = False
        ext.state = ExtState.READY
        self._wake()
        if ext.queue:
            ext.state = ExtState.RUNNING
            return ext.queue.popleft()
        self._abandon(ext)
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        ext.waiter = waiter
        try:
            return await waiter
        finally:
            if ext.waiter is waiter:
                ext.waiter = None

    def _abandon(self, ext: Extension) -> None:
        if ext.waiter is not None and not ext.waiter.done():
            ext.waiter.set_exception(ExtensionGone())
            ext.waiter.exception()  # retrieved: the handler may be gone already
        ext.waiter = None

    def _deliver(self, ext: Extension, event: bytes) -> None:
        ext.busy = True
        if ext.waiter is not None and not ext.waiter.done():
            ext.state = ExtState.RUNNING
            ext.waiter.set_result(event)
            ext.waiter = None
        else:
            ext.queue.append(event)

    def init_error(self, ext_id: str, error_type: str) -> None:
        """``POST /extension/init/error``: init fails once the extension exits."""
        ext = self.find(ext_id, "Unknown Lambda-Extension-Identifier")
        if ext.state is ExtState.INIT_ERROR:
            return
        if ext.state is not ExtState.REGISTERED:
            raise _transition(ext.state, "InitError", ext.id)
        ext.state = ExtState.INIT_ERROR
        ext.error_type = error_type
        self._wake()
        if not ext.external:  # no process of its own to wait for
            self._fail("Extension.InitError", error_type)

    def exit_error(self, ext_id: str, error_type: str) -> None:
        """``POST /extension/exit/error``: the environment fails once the extension exits."""
        ext = self.find(ext_id, "Unknown Lambda-Extension-Identifier")
        if ext.state is ExtState.EXIT_ERROR:
            return
        if ext.state not in (ExtState.REGISTERED, ExtState.READY, ExtState.RUNNING):
            raise _transition(ext.state, "Exited", ext.id)
        ext.state = ExtState.EXIT_ERROR
        ext.error_type = error_type
        self._wake()
        if not ext.external:
            self._fail("Extension.ExitError", error_type)

    # ------------------------------------------------------------ init and invoke

    async def await_ready(self, deadline: float) -> None:
        """Close registration; wait until every registered extension asked for an event."""
        self.phase = Phase.RUNNING
        await self._wait(
            lambda: all(e.state is ExtState.READY for e in self._all if e.registered), deadline
        )

    def statuses(self) -> list[tuple[str, str, tuple[str, ...], str | None]]:
        """``(name, state, events, error type)`` of each extension, for the log."""
        return [(e.name, e.state.value, e.events, e.error_type) for e in self._all]

    def invoke(self, invocation: Invocation, deadline_ms: int) -> bool:
        """Hand INVOKE to its subscribers; whether there were any."""
        self.runtime_ready = False
        subscribers = [
            e
            for e in self._all
            if INVOKE in e.events and e.state in (ExtState.READY, ExtState.RUNNING)
        ]
        self.invoked = subscribers
        if subscribers:
            event = invoke_event(invocation, deadline_ms)
            for ext in subscribers:
                self._deliver(ext, event)
        return bool(subscribers)

    def init_times(self) -> list[tuple[str, float, float]]:
        """``(name, launched, ready)`` of each extension that finished its init (epoch s)."""
        return [(e.name, e.launched, e.ready_at) for e in self._all if e.ready_at is not None]

    def post_invoke_times(self) -> list[tuple[str, float]]:
        """``(name, done)`` of the last INVOKE's subscribers that asked for their next event."""
        return [(e.name, e.done_at) for e in self.invoked if not e.busy]

    def runtime_next(self) -> None:
        """The runtime asked for its next event after posting its reply."""
        self.runtime_ready = True
        self._wake()

    async def await_settled(self, deadline: float) -> None:
        """Until the runtime and every INVOKE subscriber asked for their next event."""
        await self._wait(
            lambda: self.runtime_ready and not any(e.busy for e in self._all if e.registered),
            deadline,
        )

    # ------------------------------------------------------------ shutdown

    async def shutdown(self, process: SandboxProcess, reason: str, runtime_running: bool) -> None:
        """SIGTERM the runtime and SHUTDOWN the subscribers; wait for them within the budget.

        Without registered extensions the budget is 0 (the caller kills at once).
        """
        if self.phase in (Phase.SHUTDOWN, Phase.CLOSED):
            return
        self.phase = Phase.SHUTDOWN
        registered = [e for e in self._all if e.registered]
        if not registered:
            return
        budget = BUDGET_EXTERNAL if any(e.external for e in registered) else BUDGET_INTERNAL
        deadline = time.monotonic() + budget
        targets = [e for e in registered if e.external and SHUTDOWN in e.events and e.exit is None]
        event = shutdown_event(int((time.time() + budget) * 1000), reason)
        runtime_exit: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        if runtime_running:
            runtime_exit = asyncio.ensure_future(process.wait())
            runtime_exit.add_done_callback(lambda _: self._wake())
            process.signal_main(signal.SIGTERM)
        else:
            runtime_exit.set_result(Exit(None, None))
        for ext in targets:
            self._deliver(ext, event)
        try:
            await self._wait(
                lambda: runtime_exit.done() and all(e.exit is not None for e in targets),
                deadline,
                stop_on_failure=False,
            )
        except TimeoutError:
            pass
        finally:
            if runtime_exit.done():
                if not runtime_exit.cancelled():
                    runtime_exit.exception()
            else:
                runtime_exit.cancel()
        self.drain_all()

    async def close(self) -> None:
        """Stop reading the extensions and release their pipes; idempotent."""
        self.phase = Phase.CLOSED
        for ext in self._all:
            self._abandon(ext)
            if ext.process is not None and ext.process.output_fd >= 0:
                if ext.reader is not None:
                    ext.reader.stop()
                self.drain(ext)
                with contextlib.suppress(OSError):
                    os.close(ext.process.output_fd)
                ext.process.output_fd = -1
        watchers = list(self._watchers)
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
