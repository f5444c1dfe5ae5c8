"""The syscall filter (issue 11, items 2 and 5), tried from inside real functions.

Lambda forbids ``ptrace`` and the calls that would let a function leave its environment; a
blocked call answers ``EPERM`` and the function carries on. Each test runs a real function (the
Python runtime forked from its zygote, a SnapStart fork, an extension, a Node.js function) in the
Linux sandbox and, where it applies, in the plain-process one, and makes the calls itself
through ``ctypes``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import (
    ROLE,
    Server,
    create_function,
    invoke_json,
    make_zip,
    unique,
    wait_until,
)
from tests.test_extensions import PRELUDE, layer, messages
from tests.test_snapstart import publish_active

#: What a function calls, in Python: ``probe(kind)`` answers ``{call: errno name or "ok"}``.
PROBE = r"""
import ctypes, errno, mmap, os, platform, signal, socket, subprocess, tempfile, threading, time

NR = {  # (x86_64, aarch64)
    "ptrace": (101, 117), "unshare": (272, 97), "bpf": (321, 280), "keyctl": (250, 219),
    "perf_event_open": (298, 241), "clone3": (435, 435), "setns": (308, 268),
    "init_module": (175, 105), "add_key": (248, 217), "userfaultfd": (323, 282),
    "process_vm_readv": (310, 270), "personality": (135, 92),
}
COLUMN = 0 if platform.machine() == "x86_64" else 1
libc = ctypes.CDLL(None, use_errno=True)


def answer(result):
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]


def attempt(name, *args):
    return answer(libc.syscall(NR[name][COLUMN], *args))


def filter_state():
    with open("/proc/self/status") as handle:
        return [line.split(":")[1].strip() for line in handle if line.startswith("Seccomp:")][0]


def blocked():
    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    try:
        attach = attempt("ptrace", 16, child, 0, 0)  # PTRACE_ATTACH to our own child
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    # Onto a directory of its own, and undone if it worked: where nothing blocks it (a broken
    # filter, a plain sandbox run as root) the mount must not land on the host's /tmp.
    target = tempfile.mkdtemp().encode()
    tmpfs = answer(libc.mount(b"tmpfs", target, b"tmpfs", ctypes.c_ulong(6), None))
    if tmpfs == "ok":
        libc.umount2(target, 2)
    return {
        "seccomp": filter_state(),
        "ptrace_traceme": attempt("ptrace", 0, 0, 0, 0),
        "ptrace_attach": attach,
        "unshare_user": attempt("unshare", 0x10000000),
        "unshare_user_mount": attempt("unshare", 0x10020000),
        "setns": attempt("setns", -1, 0),
        "mount": tmpfs,
        "bpf": attempt("bpf", 0, None, 0),
        "keyctl": attempt("keyctl", 0, -3, 0),  # KEYCTL_GET_KEYRING_ID, the session keyring
        "add_key": attempt("add_key", b"user", b"k", b"v", 1, -2),  # the process keyring
        "perf_event_open": attempt("perf_event_open", None, 0, -1, -1, 0),
        "init_module": attempt("init_module", None, 0, b""),
        "userfaultfd": attempt("userfaultfd", 0),
        "process_vm_readv": attempt("process_vm_readv", os.getpid(), None, 0, None, 0, 0),
        "clone3": attempt("clone3", None, 0),
        "no_aslr": attempt("personality", 0x0040000),
        "personality_query": attempt("personality", 0xFFFFFFFF),
    }


def ordinary():
    out = {}
    box = []
    worker = threading.Thread(target=box.append, args=("thread",))
    worker.start()
    worker.join()
    out["thread"] = box[0]
    shell = subprocess.run(["/bin/sh", "-c", "grep ^Seccomp: /proc/self/status"],
                           capture_output=True, text=True)
    out["subprocess"] = shell.stdout.split()
    child = os.fork()
    if child == 0:
        os._exit(7)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    client.sendall(b"ping")
    out["socket"] = peer.recv(4).decode()
    for sock in (client, peer, server):
        sock.close()
    region = mmap.mmap(-1, 1 << 20)
    region[:4] = b"page"
    out["mmap"] = bytes(region[:4]).decode()
    region.close()
    got = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: got.append("signal"))
    os.kill(os.getpid(), signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, previous)
    out["signal"] = got
    out["time"] = time.time() > 1e9 and time.monotonic() > 0
    out["clone_thread"] = attempt("personality", 0xFFFFFFFF)
    return out
"""

APP = (
    PROBE
    + """
def handler(event, context):
    return blocked() if event.get("probe") == "blocked" else ordinary()
"""
)

#: Every blocked call answers EPERM (clone3 ENOSYS, so that libc falls back to clone).
BLOCKED = {
    "seccomp": "2",
    "ptrace_traceme": "EPERM",
    "ptrace_attach": "EPERM",
    "unshare_user": "EPERM",
    "unshare_user_mount": "EPERM",
    "setns": "EPERM",
    "mount": "EPERM",
    "bpf": "EPERM",
    "keyctl": "EPERM",
    "add_key": "EPERM",
    "perf_event_open": "EPERM",
    "init_module": "EPERM",
    "userfaultfd": "EPERM",
    "process_vm_readv": "EPERM",
    "clone3": "ENOSYS",
    "no_aslr": "EPERM",
    "personality_query": "ok",
}

ORDINARY = {
    "thread": "thread",
    "subprocess": ["Seccomp:", "2"],
    "fork": 7,
    "socket": "ping",
    "mmap": "page",
    "signal": ["signal"],
    "time": True,
    "clone_thread": "ok",
}


@dataclass
class Target:
    server: Server
    client: Any
    sandbox: str


def _kind(server: Server) -> str:
    return str(server.get_json("/_lambdad/doctor")["sandbox"]["kind"])


@pytest.fixture(params=[pytest.param("linux", marks=pytest.mark.root), "process"])
def target(
    request: pytest.FixtureRequest, server: Server, start_server: Callable[..., Server]
) -> Iterator[Target]:
    """The shared lambdad (the Linux sandbox as root), or one on the plain-process sandbox."""
    if request.param == "linux":
        if _kind(server) != "linux":
            pytest.skip("the shared lambdad does not run the Linux sandbox")
        srv = server
    else:
        srv = start_server({"LAMBDAD_SANDBOX": "process"})
    client = srv.client()
    yield Target(srv, client, str(request.param))
    client.close()


def test_blocked_calls_answer_eperm_and_the_function_lives_on(target: Target) -> None:
    """ptrace (TRACEME and ATTACH to its own child), unshare, setns, mount, bpf, keyctl,
    add_key, perf_event_open, init_module, userfaultfd, process_vm_readv and turning ASLR off
    answer EPERM (as on Lambda, where ptrace is blocked), clone3 ENOSYS; the function returns."""
    name = create_function(target.client, APP)["FunctionName"]
    response, body = invoke_json(target.client, name, {"probe": "blocked"})
    assert "FunctionError" not in response, body
    assert body == BLOCKED


def test_ordinary_work_still_works_under_the_filter(target: Target) -> None:
    """Threads, a subprocess (filtered too), fork, TCP sockets, mmap, signals and clocks work."""
    name = create_function(target.client, APP)["FunctionName"]
    response, body = invoke_json(target.client, name, {"probe": "ordinary"})
    assert "FunctionError" not in response, body
    assert body == ORDINARY


def test_a_snapstart_fork_has_the_full_filter(target: Target) -> None:
    """A SnapStart environment, forked from the version's template after its private /tmp is
    made, can no longer make the user and mount namespace or the tmpfs mount the template's
    forks need, nor any other blocked call; ordinary work goes on."""
    name = create_function(
        target.client,
        APP,
        name=unique("snap"),
        runtime="python3.12",
        Timeout=30,
        SnapStart={"ApplyOn": "PublishedVersions"},
    )["FunctionName"]
    version = publish_active(target.client, name)
    response, body = invoke_json(target.client, name, {"probe": "blocked"}, Qualifier=version)
    assert "FunctionError" not in response, body
    assert body == BLOCKED
    response, body = invoke_json(target.client, name, {"probe": "ordinary"}, Qualifier=version)
    assert "FunctionError" not in response, body
    assert body == ORDINARY


#: An extension that tries ptrace and unshare itself, says what it got, then serves events.
EXTENSION = (
    PRELUDE
    + PROBE
    + """
status, ext_id, _reply = register(["INVOKE"])
say("PROBE", json.dumps({"seccomp": filter_state(), "ptrace": attempt("ptrace", 0, 0, 0, 0),
    "unshare": attempt("unshare", 0x10000000), "fork": ordinary()["fork"]}))
while True:
    next_event(ext_id)
"""
)


def test_an_extension_runs_under_the_filter(target: Target) -> None:
    """An external extension's own ptrace and unshare answer EPERM; it still forks."""
    arn = layer(target.client, {"extensions/probe": EXTENSION})
    name = create_function(target.client, "def handler(e, c):\n    return 1\n", Layers=[arn])[
        "FunctionName"
    ]
    response, body = invoke_json(target.client, name, {})
    assert "FunctionError" not in response, (body, messages(target.server, name))

    def probed() -> dict[str, Any] | None:
        for line in messages(target.server, name):
            if line.startswith("probe PROBE "):
                return dict(json.loads(line.removeprefix("probe PROBE ")))
        return None

    said = wait_until(probed)
    assert said == {"seccomp": "2", "ptrace": "EPERM", "unshare": "EPERM", "fork": 7}


NODE = """
const fs = require('fs');
const { spawnSync } = require('child_process');
exports.handler = async () => {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const unshare = spawnSync('unshare', ['--user', 'true'], { encoding: 'utf8' });
  return {
    seccomp: status.match(/^Seccomp:\\s*(\\d)/m)[1],
    unshare: unshare.status,
    said: unshare.stderr.trim(),
  };
};
"""


@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("unshare") is None, reason="needs node, unshare"
)
def test_a_node_function_and_its_children_are_filtered(target: Target) -> None:
    """A Node.js function runs under the filter, and a program it starts cannot unshare."""
    created = target.client.create_function(
        FunctionName=unique("node"),
        Runtime="nodejs20.x",
        Role=ROLE,
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": NODE})},
    )
    response, body = invoke_json(target.client, created["FunctionName"], {})
    assert "FunctionError" not in response, body
    assert body["seccomp"] == "2"
    assert body["unshare"] != 0
    assert "Operation not permitted" in body["said"]


def test_doctor_says_the_filter_is_on(target: Target) -> None:
    """``lambdad doctor`` says the syscall filter is active in either sandbox, and the plain
    sandbox lists the walls it cannot build."""
    sandbox = target.server.get_json("/_lambdad/doctor")["sandbox"]
    assert sandbox["syscall filter"].startswith("active (seccomp: "), sandbox
    if target.sandbox == "process":
        for wall in ("network namespace", "mount and pid namespaces", "memory limit"):
            assert sandbox[wall].startswith("not active"), (wall, sandbox[wall])


def test_a_custom_runtime_is_filtered(target: Target) -> None:
    """A provided.al2023 bootstrap (exec'd, not forked) and its handler run under the filter."""
    bootstrap = f"""#!{os.path.realpath(sys.executable)}
import json, os, urllib.request
{PROBE}
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as reply:
        request_id = reply.headers["Lambda-Runtime-Aws-Request-Id"]
    body = json.dumps(blocked()).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=body))
"""
    name = create_function(
        target.client,
        files={"bootstrap": bootstrap},
        modes={"bootstrap": 0o755},
        runtime="provided.al2023",
        handler="unused",
    )["FunctionName"]
    response, body = invoke_json(target.client, name, {})
    assert "FunctionError" not in response, body
    assert body == BLOCKED
