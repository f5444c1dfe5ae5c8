"""SnapStart: one template per published version, and the environments forked from it.

A ``Snapshot`` runs the version's init once in a template process (``INIT_START`` …
``INIT_REPORT`` in a log stream of its own, before-snapshot hooks included) and keeps it.
Environments of the version are then restored from it (``Environment`` with a forker): no
init, ``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``, ``Restore Duration`` in their first
REPORT. Only the managed Python runtimes from python3.12 on use SnapStart, as on AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from lambdad.observe.platform import PlatformLines
from lambdad.runtime.environment import EnvironmentContext
from lambdad.runtime.output import LineReader
from lambdad.runtime.process_env import process_environment, snap_start_environment
from lambdad.runtime.replies import InitFailure
from lambdad.runtime.runtimes import RuntimeUnavailable, launch
from lambdad.runtime.sandbox.base import ProcessSpec, SandboxProcess
from lambdad.runtime.sandbox.template import Template
from lambdad.runtime.spec import FunctionSpec

#: AWS gives a SnapStart init 130 s, or the function timeout when that is longer.
SNAPSHOT_INIT_TIMEOUT = 130.0


class SnapshotState(enum.Enum):
    NEW = "new"
    MAKING = "making"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


class Snapshot:
    """The template of one SnapStart version (at one configuration revision)."""

    def __init__(
        self, ctx: EnvironmentContext, config: FunctionSpec, task_root: Path, opt_dir: Path | None
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.task_root = task_root
        self.opt_dir = opt_dir
        self.id = uuid.uuid4().hex
        self.state = SnapshotState.NEW
        self.failure: InitFailure | None = None
        self.stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{config.version}]{self.id}"
        self._lines = PlatformLines(config.log_format == "JSON")
        self._lines.initialization_type = "snap-start"
        self._dir = ctx.runs_dir / f"{self.id}-template"
        self._template: Template | None = None
        self._reader: LineReader | None = None

    def _emit(self, messages: list[str]) -> None:
        if messages:
            key = (self.ctx.account_id, self.ctx.region, self.config.log_group)
            self.ctx.logs.put(key, self.stream, int(time.time() * 1000), messages)

    def _spec(self) -> ProcessSpec:
        tmp_dir = self._dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        layout = self.ctx.sandbox.layout(self.task_root, self.opt_dir, tmp_dir)
        plan = launch(
            self.config.runtime,
            self.task_root,
            self.opt_dir,
            layout,
            node=self.ctx.node,
            python_path=self.ctx.python_path,
        )
        if plan.notice:
            self._emit([plan.notice])
        env = process_environment(
            self.config,
            layout,
            self.ctx.host_path,
            self.ctx.region,
            0,
            self.stream,
            {**plan.env, **self.ctx.credential_variables(self.config)},
            self.ctx.sandbox.reach(),
            self.ctx.xray() if self.ctx.xray is not None else None,
        )
        return ProcessSpec(
            name=f"{self.id}-template",
            argv=plan.argv,
            env=snap_start_environment(env),
            cwd=layout.task_root,
            task_root=self.task_root,
            opt_dir=self.opt_dir,
            tmp_dir=tmp_dir,
            memory_mb=self.config.memory_size,
            tmp_mb=self.config.ephemeral_storage,
        )

    async def make(self) -> InitFailure | None:
        """Run the version's init in a new template; None when it is ready to fork."""
        if self.state is not SnapshotState.NEW:
            raise RuntimeError(f"snapshot {self.id} was already made")
        self.state = SnapshotState.MAKING
        runtime = self.config.runtime or "provided"
        began = time.perf_counter()
        self._emit([self._lines.init_start(runtime, time.time())])
        failure = await self._start()
        elapsed = (time.perf_counter() - began) * 1000
        status, error_type = (failure.status, failure.error_type) if failure else ("success", None)
        self._emit([self._lines.init_report(elapsed, "init", status, error_type, time.time())])
        if self.state is SnapshotState.CLOSED:
            return failure or InitFailure("error", "Runtime.ExitError", reason="closed")
        self.failure = failure
        self.state = SnapshotState.READY if failure is None else SnapshotState.FAILED
        if failure is not None:
            await self._stop()
        return failure

    async def _start(self) -> InitFailure | None:
        try:
            spec = await asyncio.to_thread(self._spec)
            self._template = await self.ctx.sandbox.start_template(spec)
        except RuntimeUnavailable as exc:
            self._emit([str(exc)])
            return InitFailure("error", "Runtime.InvalidEntrypoint", reason=str(exc))
        except OSError as exc:
            reason = f"fork/exec: {exc.strerror or exc}"
            return InitFailure("error", "Runtime.InvalidEntrypoint", reason=reason)
        self._reader = LineReader(self._template.process.output_fd, self._emit)
        self._reader.start()
        timeout = max(SNAPSHOT_INIT_TIMEOUT, float(self.config.timeout))
        try:
            result = await asyncio.wait_for(self._template.ready(), timeout)
        except TimeoutError:
            return InitFailure("timeout", "Sandbox.Timedout")
        if self._reader is not None:
            self._reader.drain()
        if result.ok:
            return None
        if result.body is not None:
            return InitFailure("error", result.error_type or "Runtime.Unknown", result.body)
        exit_status = await self._template.process.wait()
        return InitFailure(
            "error",
            "Runtime.ExitError",
            reason=f"Runtime exited with error: {exit_status.describe()}",
        )

    async def fork(self, env: Mapping[str, str]) -> SandboxProcess:
        """A new environment's process, forked from the template and restored with ``env``."""
        if self.state is not SnapshotState.READY or self._template is None:
            raise OSError(f"the SnapStart template of {self.config.name} is {self.state.value}")
        return await self._template.fork(env)

    async def _stop(self) -> None:
        template, self._template = self._template, None
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(OSError):
                reader.drain()
            reader.stop()
        if template is not None:
            await template.close()
        await asyncio.to_thread(shutil.rmtree, self._dir, True)

    async def close(self) -> None:
        """End the template and its spares (environments forked from it close on their own)."""
        if self.state is SnapshotState.CLOSED:
            return
        self.state = SnapshotState.CLOSED
        await self._stop()
