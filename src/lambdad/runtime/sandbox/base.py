"""The ``Sandbox`` seam: how one execution environment's process is made.

The runtime layer asks a ``Sandbox`` for a process from a ``ProcessSpec`` and gets back a
``SandboxProcess``: its pid, the read end of its merged stdout/stderr, a way to wait for its exit
and a way to kill it (and everything it started). How the process is confined (nothing, rlimits,
cgroups and namespaces, a fork from a warm template) is the implementation's business.

Extensions run beside the runtime in the same environment: a spec with an empty ``argv`` makes
the environment without its main process, ``spawn_sibling`` starts extensions in it (each with
an output pipe of its own), and ``start`` then starts the runtime.
"""

from __future__ import annotations

import abc
import dataclasses
import errno
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lambdad.runtime.sandbox.template import Template

#: Signal names as Go's ``os.ProcessState.String()`` prints them (Lambda's wording).
_GO_SIGNAL_NAMES = {
    signal.SIGHUP: "hangup",
    signal.SIGINT: "interrupt",
    signal.SIGQUIT: "quit",
    signal.SIGILL: "illegal instruction",
    signal.SIGTRAP: "trace/breakpoint trap",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGKILL: "killed",
    signal.SIGUSR1: "user defined signal 1",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGUSR2: "user defined signal 2",
    signal.SIGPIPE: "broken pipe",
    signal.SIGALRM: "alarm clock",
    signal.SIGTERM: "terminated",
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size limit exceeded",
}


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessSpec:
    """What to run for one execution environment, and within which limits.

    ``argv``, ``env`` and ``cwd`` are as the process sees them (see ``Layout``); the paths
    below them are the host's. An empty ``argv`` makes the environment without starting its
    main process; ``SandboxProcess.start`` starts it later (after ``spawn_sibling``).
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    task_root: Path
    opt_dir: Path | None
    tmp_dir: Path
    memory_mb: int
    tmp_mb: int
    #: With an empty ``argv``: what ``SandboxProcess.start`` will run, so that the sandbox can
    #: make the environment where that starts best (the Linux sandbox: a cell of the zygote of
    #: that Python interpreter).
    runtime_argv: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Where an environment's process finds its code, layers, temp dir and runtime."""

    task_root: str
    opt: str
    tmp: str
    runtime_dir: str


@dataclasses.dataclass(frozen=True, slots=True)
class Reach:
    """How an environment's processes and lambdad reach each other.

    ``api_host``: the address each environment's Runtime API socket is bound to (and named in
    ``AWS_LAMBDA_RUNTIME_API``); ``mark``: the firewall mark of lambdad's sockets that cells may
    talk to; ``endpoints``: ``host:port`` of lambdad's AWS endpoint as a function may name it
    (its loopback) to the ``host:port`` a cell reaches it at; ``api_url``: lambdad's own API
    as lambdad's host names it (``http://127.0.0.1:9001``), "" when unknown: functions get it
    as ``AWS_ENDPOINT_URL_LAMBDA`` (rewritten through ``endpoints`` for a cell).
    """

    api_host: str = "127.0.0.1"
    mark: int = 0
    endpoints: Mapping[str, str] = dataclasses.field(default_factory=dict)
    api_url: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Exit:
    """How a process ended: a code, or the signal that killed it."""

    code: int | None
    signal: int | None

    @classmethod
    def from_returncode(cls, returncode: int) -> Exit:
        return cls(None, -returncode) if returncode < 0 else cls(returncode, None)

    def describe(self) -> str:
        """``exit status 1`` or ``signal: killed``, as Lambda words it."""
        if self.signal is not None:
            try:
                name = _GO_SIGNAL_NAMES.get(signal.Signals(self.signal), f"signal {self.signal}")
            except ValueError:
                name = f"signal {self.signal}"
            return f"signal: {name}"
        return f"exit status {self.code}"


class SiblingProcess(abc.ABC):
    """Another process of an environment (an extension), with an output pipe of its own."""

    pid: int
    #: Non-blocking read end of the process's stdout and stderr; the caller closes it.
    output_fd: int

    @abc.abstractmethod
    async def wait(self) -> Exit: ...


class SandboxProcess(abc.ABC):
    pid: int
    #: Non-blocking read end of the process's stdout and stderr.
    output_fd: int

    async def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> None:
        """Start the main process of an environment spawned with an empty ``argv``.

        Raises ``OSError`` when it cannot be executed at all.
        """
        raise OSError(errno.ENOTSUP, "this sandbox cannot start a main process later")

    async def spawn_sibling(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str
    ) -> SiblingProcess:
        """Start another process in this environment: same user, limits, view and group.

        Its output goes to a pipe of its own (``SiblingProcess.output_fd``). ``kill`` and
        ``close`` end it with the rest. Raises ``OSError`` when it cannot be executed at all.
        """
        raise OSError(errno.ENOTSUP, "this sandbox cannot start extensions")

    def signal_main(self, signum: int) -> None:  # noqa: B027 - optional: a no-op where unsupported
        """Send ``signum`` to the main process only (SIGTERM at shutdown), not to its siblings."""

    @abc.abstractmethod
    async def wait(self) -> Exit: ...

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL the process and everything it started; idempotent."""

    @abc.abstractmethod
    def max_memory_mb(self) -> int:
        """Peak memory of the environment so far, in MB."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Kill if alive, reap, and release every resource; idempotent."""

    def oom_kills(self) -> int:
        """How many processes of this environment the kernel ended for exceeding its memory."""
        return 0

    def end_init(self) -> None:  # noqa: B027 - optional: a no-op where unsupported
        """Init is over: from now on the CPU share follows memory (init runs unthrottled)."""

    def freeze(self) -> None:  # noqa: B027 - optional: a no-op where unsupported
        """Stop the environment from running while it is idle (no-op where unsupported)."""

    def thaw(self) -> None:  # noqa: B027 - optional: a no-op where unsupported
        """Let a frozen environment run again."""

    def owns_connection(self, local: tuple[str, int], peer: tuple[str, int]) -> bool:
        """Whether the TCP connection from ``peer`` to ``local`` is this environment's."""
        return True

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket in the environment's network, through which lambdad reaches what its
        processes listen on (an extension's Telemetry API listener, on its loopback)."""
        return socket.socket(family, kind, proto)


class Sandbox(abc.ABC):
    #: A short name for ``lambdad doctor``.
    name: str

    async def open(self) -> None:  # noqa: B027 - optional: nothing to prepare by default
        """Prepare the host (cgroups, helpers); reclaim what a killed lambdad left behind."""

    async def close(self) -> None:  # noqa: B027 - optional: nothing to release by default
        """Release what ``open`` prepared; idempotent."""

    async def settle(self) -> None:  # noqa: B027 - optional: nothing is made ahead by default
        """Wait until nothing is being made ahead of need (spare cells, cells' networks)."""

    @abc.abstractmethod
    def layout(self, task_root: Path, opt_dir: Path | None, tmp_dir: Path) -> Layout:
        """The paths a process of this sandbox sees for the given host paths."""

    @abc.abstractmethod
    async def spawn(self, spec: ProcessSpec) -> SandboxProcess:
        """Start a process; raises ``OSError`` when it cannot be executed at all."""

    async def start_template(self, spec: ProcessSpec) -> Template:
        """Start a SnapStart template: ``spec``'s runtime with a control socket, not yet ready.

        Raises ``OSError`` when it cannot be executed at all.
        """
        raise OSError(errno.ENOTSUP, "this sandbox cannot run SnapStart templates")

    #: lambdad's own API URL (``Reach.api_url``), set by whoever builds the sandbox.
    api_url: str = ""
    #: ``(host, port)`` of lambdad's API as functions reach it (a sandbox with networks of
    #: its own relays it to them); None: not reachable. Set before the sandbox starts.
    endpoint: tuple[str, int] | None = None

    def reach(self) -> Reach:
        """How environments and lambdad reach each other (loopback, by default)."""
        return Reach(api_url=self.api_url)

    def take_endpoint(self) -> socket.socket | None:
        """The listening socket cells reach lambdad's API at, handed over for the API's own
        listener to serve (no relay in between: one TCP hop fewer each way), when this sandbox
        relays one at the API's own port; None: nothing to hand over (the default: cells reach
        the API directly). The caller owns the socket from then on."""
        return None

    @abc.abstractmethod
    def protections(self) -> dict[str, str]:
        """What this sandbox enforces, as ``{protection: "active" | "not active: why"}``."""
