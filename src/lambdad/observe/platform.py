"""Lambda's platform log lines (INIT_START, START, END, REPORT, INIT_REPORT) in both formats.

Text is Lambda's classic tab-separated form; JSON (``LoggingConfig.LogFormat=JSON``) is the
``{"time","type":"platform.*","record"}`` form Lambda writes for JSON-format functions.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Sequence
from typing import Any


def iso_ms(epoch_s: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    request_id: str
    duration_ms: float
    memory_mb: int
    max_memory_mb: int
    init_duration_ms: float | None = None
    #: None on success; "timeout" or "error" for platform-level failures.
    status: str | None = None
    error_type: str | None = None
    #: The restore of a SnapStart environment, on its first invocation only.
    restore_duration_ms: float | None = None

    @property
    def billed_ms(self) -> int:
        """Billed duration: the ceiling in ms, including init for on-demand cold starts."""
        return max(1, math.ceil(self.duration_ms + (self.init_duration_ms or 0.0)))


def runtime_version(runtime: str | None) -> tuple[str, str]:
    """The runtime version and its ARN, as INIT_START and ``platform.initStart`` name them."""
    version = f"{runtime or 'provided'}.v1"
    return version, f"arn:aws:lambda:::runtime:{version}"


def _json_line(kind: str, record: dict[str, Any], at: float) -> str:
    return json.dumps({"time": iso_ms(at), "type": kind, "record": record})


class PlatformLines:
    """Formats platform lines for one function's log format."""

    def __init__(self, json_format: bool) -> None:
        self.json = json_format
        #: ``initializationType`` of the init records (``provisioned-concurrency``, ...).
        self.initialization_type = "on-demand"

    def init_start(self, runtime: str, at: float) -> str:
        version, arn = runtime_version(runtime)
        if self.json:
            return _json_line(
                "platform.initStart",
                {
                    "initializationType": self.initialization_type,
                    "phase": "init",
                    "runtimeVersion": version,
                    "runtimeVersionArn": arn,
                },
                at,
            )
        return f"INIT_START Runtime Version: {version}\tRuntime Version ARN: {arn}"

    def restore_start(self, runtime: str, at: float) -> str:
        """A SnapStart environment is being restored (instead of INIT_START)."""
        version, arn = runtime_version(runtime)
        if self.json:
            record = {"runtimeVersion": version, "runtimeVersionArn": arn}
            return _json_line("platform.restoreStart", record, at)
        return f"RESTORE_START Runtime Version: {version}\tRuntime Version ARN: {arn}"

    def restore_report(
        self, duration_ms: float, status: str, error_type: str | None, at: float
    ) -> str:
        if self.json:
            record: dict[str, Any] = {
                "status": status,
                "metrics": {"durationMs": round(duration_ms, 3)},
            }
            if error_type:
                record["errorType"] = error_type
            return _json_line("platform.restoreReport", record, at)
        line = f"RESTORE_REPORT Restore Duration: {duration_ms:.2f} ms"
        if status != "success":
            line += f"\tStatus: {status}" + (f"\tError Type: {error_type}" if error_type else "")
        return line

    def init_report(
        self,
        duration_ms: float,
        phase: str,
        status: str,
        error_type: str | None,
        at: float,
    ) -> str:
        if self.json:
            record: dict[str, Any] = {
                "initializationType": self.initialization_type,
                "phase": phase,
                "status": status,
                "metrics": {"durationMs": round(duration_ms, 3)},
            }
            if error_type:
                record["errorType"] = error_type
            return _json_line("platform.initReport", record, at)
        line = f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: {phase}\tStatus: {status}"
        return f"{line}\tError Type: {error_type}" if error_type else line

    def extension(
        self, name: str, state: str, events: Sequence[str], error_type: str | None, at: float
    ) -> str:
        """One extension's state at the end of init (``EXTENSION`` / ``platform.extension``)."""
        if self.json:
            record: dict[str, Any] = {"name": name, "state": state, "events": list(events)}
            if error_type:
                record["errorType"] = error_type
            return _json_line("platform.extension", record, at)
        line = f"EXTENSION\tName: {name}\tState: {state}\tEvents: [{','.join(events)}]"
        return f"{line}\tError Type: {error_type}" if error_type else line

    def telemetry_subscription(self, name: str, types: Sequence[str], at: float) -> str:
        """A Telemetry API subscription (``TELEMETRY`` / ``platform.telemetrySubscription``)."""
        if self.json:
            record = {"name": name, "state": "Subscribed", "types": list(types)}
            return _json_line("platform.telemetrySubscription", record, at)
        shown = ", ".join(t.capitalize() for t in types)
        return f"TELEMETRY\tName: {name}\tState: Subscribed\tTypes: [{shown}]"

    def logs_subscription(self, name: str, types: Sequence[str], at: float) -> str:
        """A Logs API subscription (``LOGS`` / ``platform.logsSubscription``)."""
        if self.json:
            record = {"name": name, "state": "Subscribed", "types": list(types)}
            return _json_line("platform.logsSubscription", record, at)
        shown = ", ".join(t.capitalize() for t in types)
        return f"LOGS\tName: {name}\tState: Subscribed\tTypes: [{shown}]"

    def start(self, request_id: str, version: str, at: float) -> str:
        if self.json:
            return _json_line("platform.start", {"requestId": request_id, "version": version}, at)
        return f"START RequestId: {request_id} Version: {version}"

    def end(self, request_id: str, at: float) -> str | None:
        if self.json:
            return None
        return f"END RequestId: {request_id}"

    def report(self, report: Report, at: float) -> str:
        if self.json:
            metrics: dict[str, Any] = {
                "durationMs": round(report.duration_ms, 3),
                "billedDurationMs": report.billed_ms,
                "memorySizeMB": report.memory_mb,
                "maxMemoryUsedMB": report.max_memory_mb,
            }
            if report.init_duration_ms is not None:
                metrics["initDurationMs"] = round(report.init_duration_ms, 3)
            if report.restore_duration_ms is not None:
                metrics["restoreDurationMs"] = round(report.restore_duration_ms, 3)
                metrics["billedRestoreDurationMs"] = math.ceil(report.restore_duration_ms)
            record: dict[str, Any] = {
                "requestId": report.request_id,
                "metrics": metrics,
                "status": report.status or "success",
            }
            if report.error_type:
                record["errorType"] = report.error_type
            return _json_line("platform.report", record, at)
        fields = [
            f"REPORT RequestId: {report.request_id}",
            f"Duration: {report.duration_ms:.2f} ms",
            f"Billed Duration: {report.billed_ms} ms",
            f"Memory Size: {report.memory_mb} MB",
            f"Max Memory Used: {report.max_memory_mb} MB",
        ]
        if report.init_duration_ms is not None:
            fields.append(f"Init Duration: {report.init_duration_ms:.2f} ms")
        if report.restore_duration_ms is not None:
            fields.append(f"Restore Duration: {report.restore_duration_ms:.2f} ms")
            fields.append(f"Billed Restore Duration: {math.ceil(report.restore_duration_ms)} ms")
        if report.status:
            fields.append(f"Status: {report.status}")
            if report.status == "error" and report.error_type:
                fields.append(f"Error Type: {report.error_type}")
        return "\t".join(fields) + "\t"
