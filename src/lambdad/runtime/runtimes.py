"""The runtime catalog: what command starts an environment of each managed runtime.

``python3.X`` runs lambdad's own bootstrap on the closest interpreter the host has (and says
so when it is not the exact one), ``nodejs*`` runs the bundled runtime client on the host's
``node`` whatever its major version (and says so when it differs), ``provided*`` runs the zip's
own ``bootstrap``. ``PREVIEW_RUNTIMES`` are ids the current Lambda model lists ahead of their
general availability; they run the same way, on the closest interpreter (docs/runtimes.md).
The ids themselves are listed once, in ``lambdad.runtime_ids``.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from lambdad.runtime.sandbox.base import Layout
from lambdad.runtime_ids import NODE_RUNTIMES, PREVIEW_RUNTIMES, PROVIDED_RUNTIMES, PYTHON_RUNTIMES

BOOTSTRAPS = Path(__file__).parent / "bootstraps"
PYTHON_BOOTSTRAP = BOOTSTRAPS / "python" / "bootstrap.py"
NODE_BOOTSTRAP = BOOTSTRAPS / "nodejs" / "index.mjs"


class RuntimeUnavailable(Exception):
    """The host has nothing that can run this runtime; the message says what is missing."""


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """How to start one environment's runtime process."""

    argv: tuple[str, ...]
    env: dict[str, str]
    #: Said in the function's log at init when the runtime is approximated.
    notice: str | None = None


def _interpreter_candidates(version: tuple[int, int], extra_dirs: Iterable[str]) -> list[str]:
    exe = f"python{version[0]}.{version[1]}"
    dirs = [d for d in extra_dirs if "shims" not in d]
    dirs += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin")), reverse=True)
    dirs += ["/usr/local/bin", "/usr/bin"]
    return [os.path.join(d, exe) for d in dirs if d]


@functools.cache
def find_python(version: tuple[int, int], extra: str = "") -> str | None:
    """An executable ``pythonX.Y`` of exactly ``version``, or None."""
    if sys.version_info[:2] == version:
        # The real interpreter, not a virtualenv's link to it: environments must not see
        # lambdad's own packages, and a sandbox can only show the interpreter's own prefix.
        return os.path.realpath(sys.executable)
    for path in _interpreter_candidates(version, [d for d in extra.split(":") if d]):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def closest_python(version: tuple[int, int], extra: str = "") -> tuple[str, tuple[int, int]]:
    """The interpreter nearest to ``version`` (same major, nearest minor, newer preferred)."""
    exact = find_python(version, extra)
    if exact:
        return exact, version
    minors = sorted(
        (m for _, m in PYTHON_RUNTIMES.values()),
        key=lambda m: (abs(m - version[1]), -m),
    )
    for minor in minors:
        found = find_python((3, minor), extra)
        if found:
            return found, (3, minor)
    return sys.executable, sys.version_info[:2]


@functools.cache
def find_node(configured: str = "") -> str | None:
    """The ``node`` to run: ``configured`` (a path or a name on PATH) if given, else PATH's."""
    if configured:
        return configured if os.access(configured, os.X_OK) else shutil.which(configured)
    return shutil.which("node")


@functools.cache
def node_major(exe: str) -> int | None:
    """The major version of the ``node`` at ``exe`` (asked once per process)."""
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _node_missing(runtime: str, configured: str) -> str:
    if configured:
        return (
            f"The runtime {runtime} needs Node.js, and the configured node ({configured}) is "
            "not an executable. Install Node.js or fix LAMBDAD_NODE."
        )
    return (
        f"The runtime {runtime} needs Node.js, and no 'node' executable was found on this "
        "host. Install Node.js or set LAMBDAD_NODE."
    )


def launch(
    runtime: str | None,
    task_root: Path,
    opt_dir: Path | None,
    layout: Layout,
    *,
    node: str = "",
    python_path: str = "",
) -> Launch:
    """The command for ``runtime``; raises ``RuntimeUnavailable`` if the host cannot run it."""
    if runtime in PYTHON_RUNTIMES:
        wanted = PYTHON_RUNTIMES[runtime]
        exe, got = closest_python(wanted, python_path)
        notice = None
        if got != wanted:
            notice = (
                f"lambdad: {runtime} is not installed on this host; "
                f"running on python{got[0]}.{got[1]} ({exe}) instead"
            )
        env = {"AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}"}
        bootstrap = f"{layout.runtime_dir}/{PYTHON_BOOTSTRAP.relative_to(BOOTSTRAPS)}"
        return Launch((exe, "-s", bootstrap), env, notice)
    if runtime in NODE_RUNTIMES:
        node_exe = find_node(node)
        if node_exe is None:
            raise RuntimeUnavailable(_node_missing(runtime, node))
        env = {
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
            "NODE_PATH": f"{layout.opt}/nodejs/node{NODE_RUNTIMES[runtime]}/node_modules:"
            f"{layout.opt}/nodejs/node_modules:{layout.task_root}",
        }
        wanted_major = NODE_RUNTIMES[runtime]
        host_major = node_major(node_exe)
        notice = None
        if host_major is not None and host_major != wanted_major:
            notice = (
                f"lambdad: {runtime} runs on this host's Node.js {host_major} ({node_exe}), "
                f"not Node.js {wanted_major}"
            )
        bootstrap = f"{layout.runtime_dir}/{NODE_BOOTSTRAP.relative_to(BOOTSTRAPS)}"
        return Launch((node_exe, bootstrap), env, notice)
    if runtime in PROVIDED_RUNTIMES or runtime is None:
        candidates = [(task_root / "bootstrap", f"{layout.task_root}/bootstrap")]
        if opt_dir is not None:
            candidates.append((opt_dir / "bootstrap", f"{layout.opt}/bootstrap"))
        for host, seen in candidates:
            if host.is_file():
                return Launch((seen,), {})
        raise RuntimeUnavailable(
            "Couldn't find valid bootstrap(s): "
            f"[{layout.task_root}/bootstrap {layout.opt}/bootstrap]"
        )
    raise RuntimeUnavailable(f"The runtime {runtime} is not supported by lambdad.")


def exec_wrapper(runtime: str | None, environment: Mapping[str, str], layout: Layout) -> str | None:
    """The ``AWS_LAMBDA_EXEC_WRAPPER`` to start a managed runtime with, as the process sees it.

    Only managed runtimes honour it (their bootstrap script execs it), as on Lambda. Where the
    sandbox shows layers and code at their host paths, ``/opt/…`` and ``/var/task/…`` follow.
    """
    wrapper = environment.get("AWS_LAMBDA_EXEC_WRAPPER")
    if not wrapper or (runtime not in PYTHON_RUNTIMES and runtime not in NODE_RUNTIMES):
        return None
    for seen, actual in (("/opt", layout.opt), ("/var/task", layout.task_root)):
        if seen != actual and wrapper.startswith(seen + "/"):
            return actual + wrapper[len(seen) :]
    return wrapper


def python_interpreters(python_path: str = "") -> list[str]:
    """Every interpreter a ``python3.X`` runtime resolves to here, as its argv[0]."""
    return sorted({closest_python(version, python_path)[0] for version in PYTHON_RUNTIMES.values()})


def interpreter_dirs(python_path: str = "", node: str = "") -> list[str]:
    """The install prefixes of every interpreter the runtimes use (shown inside sandboxes)."""
    dirs = set()
    for version in PYTHON_RUNTIMES.values():
        exe, _ = closest_python(version, python_path)
        dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(exe))))
    node_exe = find_node(node)
    if node_exe is not None:
        dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(node_exe))))
    return sorted(dirs)


def inventory(python_path: str = "", node: str = "") -> dict[str, str]:
    """What every runtime runs on here, for ``lambdad doctor``: the program, then in
    parentheses how it differs from the runtime's own interpreter (and ``preview``)."""
    report: dict[str, str] = {}
    for runtime, version in PYTHON_RUNTIMES.items():
        exe, got = closest_python(version, python_path)
        notes = [] if got == version else [f"closest: python{got[0]}.{got[1]}"]
        report[runtime] = _with_notes(exe, runtime, notes)
    node_exe = find_node(node)
    missing = f"unavailable: {node} is not executable" if node else "unavailable: no node on PATH"
    host_major = node_major(node_exe) if node_exe is not None else None
    for runtime, major in NODE_RUNTIMES.items():
        if node_exe is None:
            report[runtime] = missing
            continue
        notes = [] if host_major in (None, major) else [f"host Node.js {host_major}"]
        report[runtime] = _with_notes(node_exe, runtime, notes)
    for runtime in sorted(PROVIDED_RUNTIMES):
        report[runtime] = "the function's own bootstrap"
    return report


def _with_notes(program: str, runtime: str, notes: list[str]) -> str:
    if runtime in PREVIEW_RUNTIMES:
        notes = [*notes, "preview"]
    return f"{program} ({', '.join(notes)})" if notes else program
