"""A fork server for the suite's ``lambdad serve`` processes (docs/testing.md, "Server start").

Importing lambdad is most of a ``lambdad serve``'s start (some 0.8 s of CPU), and the suite
starts a few hundred of them. This process imports it once, then forks a child per server: the
child takes the test's environment, working directory, log file and arguments and runs
``lambdad.cli.main.main`` as ``python -m lambdad.cli.main`` would. Nothing has run in the
parent but imports (no event loop, no thread), so a child starts from the state a fresh
interpreter reaches after the same imports.

Protocol: one JSON line per unix-socket connection, one JSON line answered.
``{"op": "spawn", "argv": [...], "env": {...}, "cwd": ..., "log": ..., "netns": ...}`` ->
``{"pid": n}`` (``netns``, optional: a network namespace's file, ``/run/netns/<name>``, that the
child enters first: a node of tests/cluster.py);
``{"op": "status", "pid": n}`` -> ``{"returncode": n or null}`` (a signal is ``-signum``, as
``subprocess`` says it). The parent reaps its children; a child it never forked is an error.

Run as ``python -m tests.forkserver lambdad.cli.main serve <socket path>``: the first two
arguments only name what the process is (tests look for ``lambdad.cli.main`` in a lambdad's
``/proc/<pid>/cmdline``; a child keeps its parent's).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import socket
import sys
from typing import Any


def serve(path: str) -> dict[str, Any]:
    """Answer requests until a fork; return the spawn request in the child (never in the
    parent, which runs until it is killed or the pytest that started it is gone)."""
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(1.0)
    codes: dict[int, int | None] = {}
    gc.freeze()  # what the imports made stays out of the children's collections (fewer copies)
    while True:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # pytest died without killing us (SIGKILL, a timeout)
                sys.exit(0)
            continue
        connection.settimeout(None)
        with connection:
            line = connection.makefile("rb").readline()
            if not line:  # a probe: is it listening yet
                continue
            request = json.loads(line)
            _reap(codes)
            if request["op"] == "spawn":
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    connection.close()
                    return dict(request)
                codes[pid] = None
                answer: dict[str, Any] = {"pid": pid}
            else:
                answer = {"returncode": codes[int(request["pid"])]}
            connection.sendall(json.dumps(answer).encode() + b"\n")


def _reap(codes: dict[int, int | None]) -> None:
    while codes:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        codes[pid] = os.waitstatus_to_exitcode(status)


#: ``setns``'s flag for a network namespace (linux/sched.h).
CLONE_NEWNET = 0x40000000


def enter_network(path: str) -> None:
    """Move the calling (single-threaded) process into the network namespace ``path`` names
    (``/run/netns/<name>``); its other namespaces stay the test's."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {path}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def run_child(request: dict[str, Any]) -> int:
    """Become ``python -m lambdad.cli.main <argv>`` started with ``request``'s environment,
    working directory and output (stdout and stderr to the log, stdin from /dev/null), in the
    network namespace ``request["netns"]`` names, if any."""
    if request.get("netns"):
        enter_network(request["netns"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    from lambdad.cli import main as cli

    sys.argv = [cli.__file__, *request["argv"]]
    return cli.main(request["argv"])


def main() -> None:
    # The whole import cost, paid once here (``serve`` imports the server when it runs).
    import lambdad.app
    import lambdad.cli.main
    import lambdad.runtime.sandbox.linux  # noqa: F401

    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401
    # What a lambdad with AWS endpoints (most of the suite's: moto) imports on first use.
    import aiobotocore.session  # noqa: F401
    import botocore.config  # noqa: F401

    request = serve(sys.argv[-1])
    sys.exit(run_child(request))


if __name__ == "__main__":
    main()
