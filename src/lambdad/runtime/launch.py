"""How an environment's runtime process is started, and how Lambda reports one that cannot be.

``plan`` turns a function version into what the sandbox is asked for: the runtime's command
(behind ``AWS_LAMBDA_EXEC_WRAPPER`` where a managed runtime honours it), its environment
variables, the external extensions to start first, and the ``ProcessSpec``. ``exec_failure``
words a failed exec as Lambda does.
"""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

from lambdad.runtime.extensions import external_extensions
from lambdad.runtime.process_env import process_environment
from lambdad.runtime.replies import InitFailure
from lambdad.runtime.runtimes import exec_wrapper, launch
from lambdad.runtime.sandbox.base import Layout, ProcessSpec, Reach
from lambdad.runtime.spec import FunctionSpec


@dataclasses.dataclass(frozen=True, slots=True)
class Host:
    """What of the host a runtime's start depends on."""

    region: str
    host_path: str
    node: str
    python_path: str
    #: lambdad's X-Ray segment listener as cells reach it (None: none runs).
    xray: tuple[str, int] | None = None
    #: The function's credential variables (SigV4 mode); empty: the fixed local keys.
    credentials: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """One start of an environment's processes."""

    #: The runtime's command, its exec wrapper first when it has one.
    argv: tuple[str, ...]
    wrapper: str | None
    layout: Layout
    #: External extensions (name, path) started before the runtime; none for a fork.
    external: list[tuple[str, str]]
    spec: ProcessSpec
    #: Said in the function's log at init when the runtime is approximated.
    notice: str | None
    #: The runtime's environment variables (the spec's).
    env: dict[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Where:
    """Where the environment's files are and how its Runtime API is reached."""

    name: str
    task_root: Path
    opt_dir: Path | None
    tmp_dir: Path
    layout: Layout
    port: int
    stream: str
    #: How the environment reaches lambdad (its Runtime API address, lambdad's endpoint).
    reach: Reach = dataclasses.field(default_factory=Reach)


def plan(
    host: Host, config: FunctionSpec, where: Where, initialization_type: str, forked: bool
) -> Plan:
    """The start of ``config``'s runtime; ``RuntimeUnavailable`` when it cannot run here."""
    layout = where.layout
    found = launch(
        config.runtime,
        where.task_root,
        where.opt_dir,
        layout,
        node=host.node,
        python_path=host.python_path,
    )
    wrapper = exec_wrapper(config.runtime, config.environment, layout)
    argv = (wrapper, *found.argv) if wrapper else found.argv
    external = [] if forked else external_extensions(where.opt_dir, layout.opt)
    extra = {
        **found.env,
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        **host.credentials,
    }
    env = process_environment(
        config,
        layout,
        host.host_path,
        host.region,
        where.port,
        where.stream,
        extra,
        where.reach,
        host.xray,
    )
    spec = ProcessSpec(
        name=where.name,
        argv=() if external else argv,
        env=env,
        cwd=layout.task_root,
        task_root=where.task_root,
        opt_dir=where.opt_dir,
        tmp_dir=where.tmp_dir,
        memory_mb=config.memory_size,
        tmp_mb=config.ephemeral_storage,
        runtime_argv=argv,
    )
    return Plan(argv, wrapper, layout, external, spec, found.notice, env)


def exec_failure(plan: Plan, exc: OSError) -> tuple[InitFailure, list[str]]:
    """The runtime could not be executed: the init failure Lambda reports, and its log."""
    strerror = exc.strerror or str(exc)
    wrapper = plan.wrapper
    if wrapper is not None and exc.errno in (errno.ENOENT, errno.EACCES):
        # A managed runtime's bootstrap script execs the wrapper: the shell's 127 or 126.
        line = f"{plan.layout.runtime_dir}/bootstrap: line 1: {wrapper}: {strerror}"
        code = 127 if exc.errno == errno.ENOENT else 126
        reason = f"Runtime exited with error: exit status {code}"
        return InitFailure("error", "Runtime.ExitError", reason=reason), [line]
    reason = f"fork/exec {plan.argv[0]}: {strerror.lower()}"
    return InitFailure("error", "Runtime.InvalidEntrypoint", reason=reason), []
