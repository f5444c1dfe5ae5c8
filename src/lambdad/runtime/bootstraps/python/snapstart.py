"""The SnapStart template side of lambdad's Python runtime (standard library only).

The bootstrap runs this after the function's init when ``_LAMBDAD_TEMPLATE_FD`` names a
control socket (``SOCK_SEQPACKET``, JSON messages, fds by SCM_RIGHTS):

- it runs the before-snapshot hooks, says ``ready`` and then only forks;
- ``fork`` (with an output pipe and a channel socket) makes a child that takes the pipe as
  stdout/stderr, sends its pid on the channel with SCM_CREDENTIALS (so lambdad learns it in
  its own PID namespace), gives itself a private ``/tmp`` when asked (a user and mount
  namespace of its own with a tmpfs, then no capabilities), then installs the full syscall
  filter (the template's own lets exactly that ``unshare`` and ``mount`` through), and waits;
- the child's ``restore`` message on the channel brings its environment variables: it
  reseeds ``random``, runs the after-restore hooks and returns to the bootstrap, which serves
  the Runtime API as any runtime does;
- the exit of every child is reported (``exit``); when lambdad goes away the children are
  killed and the template exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

_MAX_MESSAGE = 1 << 20
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_NOSUID = 2
_MS_NODEV = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "arm64": 91}


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, 4)
    if not data:
        return None, list(fds)
    message: dict[str, Any] = json.loads(data)
    return message, list(fds)


def run_before_snapshot(hooks: ModuleType) -> None:
    """Before-snapshot hooks, last registered first; an exception fails the init."""
    pending = hooks.get_before_snapshot()
    while pending:
        func, args, kwargs = pending.pop()
        func(*args, **kwargs)


def run_after_restore(hooks: ModuleType) -> None:
    for func, args, kwargs in list(hooks.get_after_restore()):
        func(*args, **kwargs)


def report_init_error(fd: int, error: dict[str, Any], body: bytes) -> None:
    """Tell lambdad that init failed (the bootstrap then exits 1)."""
    sock = socket.socket(fileno=fd)
    with contextlib.suppress(OSError):
        _send(sock, {"op": "init_error", "type": error["errorType"], "body": body.decode()})


def _load_filter() -> Any:
    """The full syscall filter, made ready for the forks, when this template runs under a
    filter (the cell's; None in a sandbox without one)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "syscall_filter.py")
    spec = importlib.util.spec_from_file_location("lambdad_syscall_filter", path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s" % path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Loaded with this module: by a zygote before any cell exists, or from ``/var/runtime``.
_FILTER_MODULE = _load_filter()


def serve(fd: int, hooks: ModuleType) -> None:
    """Fork on request; returns only in a child that has been restored."""
    sock = socket.socket(fileno=fd)
    confine = _FILTER_MODULE.Filter(_FILTER_MODULE.program()) if _FILTER_MODULE.active() else None
    import gc

    # What init made is never collected in a fork: its pages stay shared with the template
    # instead of being copied by the children's first collections.
    gc.collect()
    gc.freeze()
    _send(sock, {"op": "ready"})
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        for pid, status in _reaped():
            children.discard(pid)
            _send(sock, {"op": "exit", "pid": pid, "status": status})
        if sock.fileno() not in ready:
            continue
        message, fds = _recv(sock)
        if message is None:
            for pid in children:
                _kill(pid)
            os._exit(0)
        if message.get("op") != "fork" or len(fds) != 2:
            for extra in fds:
                os.close(extra)
            continue
        pid = os.fork()
        if pid == 0:
            sock.close()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            _become_child(fds[0], fds[1], message, hooks, confine)
            return
        children.add(pid)
        for extra in fds:
            os.close(extra)
        _send(sock, {"op": "forked", "id": message.get("id"), "pid": pid})


def _kill(pid: int) -> None:
    for target in (-pid, pid):
        with contextlib.suppress(OSError):
            os.kill(target, signal.SIGKILL)


def _reaped() -> list[tuple[int, int]]:
    found = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        found.append((pid, status))


def _become_child(
    output_fd: int, channel_fd: int, message: dict[str, Any], hooks: Any, confine: Any
) -> None:
    os.setsid()
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    channel = socket.socket(fileno=channel_fd)
    tmp = "template's"
    if message.get("tmp_mb"):
        tmp = _private_tmp(int(message["tmp_mb"]))
        if confine is not None:
            _tighten(confine)
    credentials = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    channel.sendmsg(
        [json.dumps({"op": "hello", "tmp": tmp}).encode()],
        [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, credentials)],
    )
    restore, _ = _recv(channel)
    if restore is None:
        os._exit(0)
    channel.close()
    os.environ.clear()
    os.environ.update(restore["env"])
    import random

    random.seed()  # also reseeded at fork; once more so no two restores can share a state
    try:
        run_after_restore(hooks)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def _tighten(confine: Any) -> None:
    """The full filter on top of the template's: no ``unshare`` or ``mount`` from here on.
    A child that cannot have it does not run."""
    try:
        confine.install()
    except OSError as exc:
        sys.stderr.write("lambdad: cannot install the syscall filter: %s\n" % exc)
        sys.stderr.flush()
        os._exit(1)


def _private_tmp(size_mb: int) -> str:
    """A user and mount namespace of this process's own, with a fresh tmpfs at ``/tmp``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
        return "template's (unshare: %s)" % os.strerror(ctypes.get_errno())
    try:
        for path, text in (
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/uid_map", "%d %d 1" % (uid, uid)),
            ("/proc/self/gid_map", "%d %d 1" % (gid, gid)),
        ):
            with open(path, "w") as handle:
                handle.write(text)
    except OSError as exc:
        return "template's (id maps: %s)" % exc
    flags = _MS_NOSUID | _MS_NODEV
    data = ("size=%dm,mode=1777" % size_mb).encode()
    if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", ctypes.c_ulong(flags), data) != 0:
        return "template's (mount: %s)" % os.strerror(ctypes.get_errno())
    _drop_capabilities(libc)
    return "private"


def _drop_capabilities(libc: Any) -> None:
    """No capabilities left in the new user namespace (they are granted on unshare)."""
    import ctypes

    number = _SYS_CAPSET.get(os.uname().machine)
    if number is None:
        return
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    libc.syscall(number, header, data)
