"""What one environment tells the world: its log stream, its platform lines and its telemetry.

An environment calls the recorder at each step of its life (init, restore, START, the runtime's
reply, END/REPORT); the recorder writes the platform line in the function's log format to the
log store (and to lambdad's own log with ``echo``), sends the matching ``platform.*`` event to
the Telemetry API's subscribers, and keeps the invocation's lines for ``X-Amz-Log-Result``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from lambdad.observe.emf import looks_like
from lambdad.observe.log_levels import application_filter, platform_shown
from lambdad.observe.logs import LogStore
from lambdad.observe.platform import PlatformLines, Report
from lambdad.runtime.extensions import Extension
from lambdad.runtime.invocation import Invocation
from lambdad.runtime.replies import InitFailure
from lambdad.runtime.spec import FunctionSpec
from lambdad.runtime.telemetry import Telemetry

_TAIL_BYTES = 4096


def _failure_fields(failure: InitFailure | None) -> tuple[str, str | None]:
    return (failure.status, failure.error_type) if failure else ("success", None)


class Recorder:
    def __init__(
        self,
        logs: LogStore,
        account_id: str,
        region: str,
        config: FunctionSpec,
        stream: str,
        echo: Callable[[str], None] | None = None,
        emf: Callable[[str, str, str, str], None] | None = None,
    ) -> None:
        self._logs = logs
        self._emf = emf
        self._group = (account_id, region, config.log_group)
        self._config = config
        self.stream = stream
        self._echo = echo
        self._lines = PlatformLines(config.log_format == "JSON")
        self.telemetry = Telemetry(config.log_format == "JSON", self._subscribed)
        #: The running invocation's lines, when its caller asked for the tail.
        self._collect: list[str] | None = None
        #: START was logged for the running invocation.
        self._started = False
        json_logs = config.log_format == "JSON"
        #: Log-level filtering (JSON format only, as on AWS).
        self._keep = application_filter(config.log_level) if json_logs else None
        self._platform_shown = platform_shown(config.system_log_level) if json_logs else True

    def set_initialization_type(self, kind: str) -> None:
        self._lines.initialization_type = self.telemetry.initialization_type = kind

    # ------------------------------------------------------------ lines

    def emit(self, messages: list[str]) -> None:
        if not messages:
            return
        self._logs.put(self._group, self.stream, int(time.time() * 1000), messages)
        if self._collect is not None:
            self._collect.extend(messages)
        if self._echo is not None:
            for message in messages:
                self._echo(f"[{self._config.name}] {message}")

    def platform(self, messages: list[str]) -> None:
        """Lambda's own lines (INFO): left out at ``SystemLogLevel`` WARN."""
        if self._platform_shown:
            self.emit(messages)

    def output(self, lines: list[str]) -> None:
        """Lines the runtime printed: the log (those at ``ApplicationLogLevel`` or above),
        ``function`` telemetry, and EMF metrics (only lines that look like EMF are handed on,
        to be parsed later)."""
        self.emit(lines if self._keep is None else self._keep(lines))
        self.telemetry.function(lines)
        emf = self._emf
        if emf is not None:
            for line in lines:
                if '"_aws"' in line and looks_like(line):
                    emf(*self._group, line)

    def extension_output(self, _ext: Extension, lines: list[str]) -> None:
        self.emit(lines if self._keep is None else self._keep(lines))
        self.telemetry.extension(lines)

    def _subscribed(self, api: str, name: str, types: Sequence[str]) -> None:
        if api == "logs":
            self.platform([self._lines.logs_subscription(name, types, time.time())])
        else:
            self.platform([self._lines.telemetry_subscription(name, types, time.time())])

    # ------------------------------------------------------------ init and restore

    def init_start(self) -> None:
        self.platform([self._lines.init_start(self._config.runtime or "provided", time.time())])

    def restore_start(self) -> None:
        self.platform([self._lines.restore_start(self._config.runtime or "provided", time.time())])

    def init_report(self, duration_ms: float, phase: str, failure: InitFailure | None) -> None:
        status, error_type = _failure_fields(failure)
        error_type = error_type if status == "error" else None
        line = self._lines.init_report(duration_ms, phase, status, error_type, time.time())
        self.platform([line])

    def restore_report(self, duration_ms: float, failure: InitFailure | None) -> None:
        status, error_type = _failure_fields(failure)
        self.platform([self._lines.restore_report(duration_ms, status, error_type, time.time())])

    def init_begun(self, env_id: str, phase: str) -> None:
        cfg = self._config
        self.telemetry.init_start(
            cfg.runtime, cfg.name, cfg.version, env_id, cfg.memory_size, phase
        )

    def init_runtime_done(self, phase: str, failure: InitFailure | None) -> None:
        status, error_type = _failure_fields(failure)
        self.telemetry.init_runtime_done(phase, status, error_type)

    def init_ended(
        self,
        phase: str,
        duration_ms: float,
        failure: InitFailure | None,
        extensions: Sequence[tuple[str, str, tuple[str, ...], str | None]],
    ) -> None:
        """Subscriptions close; each extension's state and the init report go out."""
        self.telemetry.close_subscriptions()
        at = time.time()
        for name, state, events, error_type in extensions:
            self.platform([self._lines.extension(name, state, events, error_type, at)])
            self.telemetry.extension_state(name, state, events, error_type)
        status, error_type = _failure_fields(failure)
        self.telemetry.init_report(phase, status, duration_ms, error_type)

    # ------------------------------------------------------------ invocations

    def begin(self, invocation: Invocation) -> None:
        """An invocation begins; its lines are kept when its caller asked for the tail."""
        self._collect = [] if invocation.tail else None
        self._started = False

    def start(self, invocation: Invocation) -> None:
        """START, once per invocation: after a suppressed init, before the handler runs."""
        if not self._started:
            self._started = True
            version = self._config.version
            self.platform([self._lines.start(invocation.request_id, version, time.time())])
            self.telemetry.start(invocation.request_id, version, invocation.trace_id)

    def runtime_done(
        self,
        invocation: Invocation,
        status: str,
        duration_ms: float,
        size: int,
        error_type: str | None,
    ) -> None:
        self.telemetry.runtime_done(
            invocation.request_id, status, duration_ms, size, error_type, invocation.trace_id
        )

    def fault(self, lines: list[str]) -> None:
        """The platform's lines of a failed invocation (a crash, a timeout, a failed init):
        the log, and ``platform.fault`` (the Logs API's)."""
        self.emit(lines)
        if lines:
            self.telemetry.fault("\n".join(lines))

    def timeout_line(self, request_id: str) -> str:
        """The log line of an invocation that ran out of time."""
        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        )
        timeout = float(self._config.timeout)
        return f"{stamp} {request_id} Task timed out after {timeout:.2f} seconds"

    def finish(self, report: Report) -> str:
        """END and REPORT; returns the invocation's tail (collecting stops)."""
        at = time.time()
        end = self._lines.end(report.request_id, at)
        self.platform([*([end] if end else []), self._lines.report(report, at)])
        self.telemetry.end(report.request_id)
        self.telemetry.report(report)
        return self.take_tail()

    def take_tail(self) -> str:
        """The invocation's log so far, for ``X-Amz-Log-Result``; collecting stops."""
        collected, self._collect = self._collect, None
        if collected is None:
            return ""
        text = "\n".join(collected) + "\n"
        return text.encode("utf-8")[-_TAIL_BYTES:].decode("utf-8", "ignore")
