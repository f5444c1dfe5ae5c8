"""The Linux sandbox's limits and walls, each attacked by a real function (issue 3, items 1, 2, 5).

Every test drives a real ``lambdad serve`` with boto3 and runs the real Python runtime in real
cells. The function tries to break a limit or a wall (allocate past its memory, fork without
end, read another environment's files, take another environment's invocation, outlive lambdad),
and the test asserts that the attempt failed the way Lambda says it fails. Skipped where the
Linux sandbox cannot run (not root, no usable cgroups).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdad.runtime.sandbox import linux
from lambdad.runtime.sandbox.base import ProcessSpec
from lambdad.runtime.sandbox.linux import SPARE_CELLS
from tests.cells import Host, alive, api_connections, pids_of_uids
from tests.conftest import Server, create_function, unique, wait_until

pytestmark = pytest.mark.root

LINUX = {"LAMBDAD_SANDBOX": "linux"}


@pytest.fixture(autouse=True)
def _linux_server(server: Server) -> None:
    """The shared server must be running the Linux sandbox, or these tests prove nothing."""
    kind = server.get_json("/_lambdad/doctor")["sandbox"]["kind"]
    if kind != "linux":
        pytest.skip(f"the shared lambdad runs the {kind!r} sandbox (LAMBDAD_SANDBOX is set?)")


# ------------------------------------------------------------------------------------ helpers


def report_of(log_tail: str) -> dict[str, str]:
    """The fields of the REPORT line in a ``LogResult`` tail: ``{"Duration": "1.23 ms", ...}``."""
    line = next(line for line in log_tail.splitlines() if line.startswith("REPORT "))
    fields = {}
    for part in line.split("\t"):
        key, _, value = part.partition(": ")
        if key:
            fields[key.removeprefix("REPORT ")] = value
    return fields


def megabytes(value: str) -> int:
    return int(value.removesuffix(" MB"))


def milliseconds(value: str) -> float:
    return float(value.removesuffix(" ms"))


def call(client: Any, name: str, event: Any = None) -> tuple[dict[str, Any], Any, dict[str, str]]:
    """Invoke with the log tail: (the response without its stream, the JSON body, REPORT)."""
    response = client.invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail"
    )
    body = json.loads(response.pop("Payload").read() or b"null")
    tail = base64.b64decode(response["LogResult"]).decode()
    return response, body, report_of(tail)


def ok(client: Any, name: str, event: Any = None) -> Any:
    """Invoke and return the body, failing on a function error."""
    response, body, _ = call(client, name, event)
    assert "FunctionError" not in response, body
    return body


def create(client: Any, code: str, **kwargs: Any) -> str:
    """A new Python function running ``code`` (``app.py``); keywords go to CreateFunction."""
    files = {"app.py": code, **kwargs.pop("files", {})}
    options: dict[str, Any] = {"Timeout": 60, **kwargs}
    return str(create_function(client, name=unique("sbx"), files=files, **options)["FunctionName"])


def retire(client: Any, name: str) -> None:
    """Retire the function's environments (a configuration change starts new ones)."""
    client.update_function_configuration(FunctionName=name, Description=uuid.uuid4().hex)


@pytest.fixture
def linux_server(start_server: Callable[..., Server]) -> Callable[..., Server]:
    """A dedicated lambdad with the Linux sandbox (``data_dir`` restarts on an old one)."""

    def start(data_dir: Path | None = None, **settings: str) -> Server:
        return start_server({**LINUX, **settings}, data_dir=data_dir)

    return start


@pytest.fixture
def client_of() -> Iterator[Callable[[Server], Any]]:
    clients: list[Any] = []

    def make(srv: Server) -> Any:
        clients.append(srv.client())
        return clients[-1]

    yield make
    for client in clients:
        client.close()


# ------------------------------------------------------------------------------------ memory

ALLOCATE = """
import subprocess, sys

def handler(event, context):
    if event.get("child_mb"):
        # A child process that allocates past the limit; the runtime itself survives.
        code = f"blocks = [b'x' * (1 << 20) for _ in range({event['child_mb']})]"
        return {"child": subprocess.run([sys.executable, "-c", code]).returncode}
    if event.get("exit") is not None:
        sys.stdout.flush()
        import os
        os._exit(event["exit"])
    # b"x" * n writes every page, so the memory is really used (bytearray(n) would not be).
    blocks = [b"x" * (1 << 20) for _ in range(event["mb"])]
    return len(blocks)
"""


def test_allocating_past_memory_size_is_out_of_memory(lam: Any) -> None:
    """A 128 MB function allocating 300 MB is killed: Runtime.OutOfMemory, Status: error."""
    name = create(lam, ALLOCATE, MemorySize=128)
    response, body, report = call(lam, name, {"mb": 300})
    request_id = response["ResponseMetadata"]["RequestId"]
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
    }
    assert (report["Status"], report["Error Type"]) == ("error", "Runtime.OutOfMemory")
    assert report["RequestId"] == request_id
    assert 0.9 * 128 <= megabytes(report["Max Memory Used"]) <= 128, report
    assert ok(lam, name, {"mb": 1}) == 1, "the next invoke gets a new environment"


def test_max_memory_used_is_the_kernels_count(lam: Any) -> None:
    """A function holding 50 MB reports a Max Memory Used of 50 MB or more (within its limit)."""
    name = create(lam, ALLOCATE, MemorySize=256)
    _, body, report = call(lam, name, {"mb": 50})
    assert body == 50
    assert 50 <= megabytes(report["Max Memory Used"]) <= 256, report


def test_an_earlier_oom_kill_does_not_make_a_later_exit_out_of_memory(lam: Any) -> None:
    """A child OOM-killed in one invoke leaves the runtime up; a later exit(3) is an ExitError."""
    name = create(lam, ALLOCATE, MemorySize=128)
    assert ok(lam, name, {"child_mb": 300}) == {"child": -signal.SIGKILL}
    response, body, report = call(lam, name, {"exit": 3})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError", body
    assert body["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")
    assert report["Error Type"] == "Runtime.ExitError"


# ------------------------------------------------------------------------------------ CPU

SPIN = """
import time

def handler(event, context):
    began = time.process_time()
    total = 0
    for i in range(event["loops"]):
        total += i * i
    return {"cpu_ms": (time.process_time() - began) * 1000}
"""


def test_cpu_share_follows_memory(lam: Any) -> None:
    """The same CPU-bound work takes several times longer at 128 MB than at 1,769 MB (1 vCPU)."""
    durations = {}
    for memory in (128, 1769):
        name = create(lam, SPIN, MemorySize=memory)
        # The init phase runs unthrottled, so the work is done in the handler, after init; the
        # faster of two runs is taken to keep scheduler noise out.
        runs = [call(lam, name, {"loops": 1_500_000}) for _ in range(2)]
        for response, _, _ in runs:
            assert "FunctionError" not in response
        durations[memory] = min(milliseconds(report["Duration"]) for _, _, report in runs)
    assert durations[128] >= 3 * durations[1769], durations


# ------------------------------------------------------------------------------------ processes

FORK_BOMB = """
import errno, os, signal

def handler(event, context):
    children, failure = [], None
    for _ in range(event["count"]):
        try:
            pid = os.fork()
        except OSError as exc:
            failure = errno.errorcode[exc.errno]
            break
        if pid == 0:
            signal.pause()
            os._exit(0)
        children.append(pid)
    # A fork bomb does not clean up: the children stay until the environment is retired.
    return {"forked": len(children), "error": failure, "uid": os.getuid()}
"""


@pytest.mark.slow
def test_fork_bomb_is_capped_at_1024_inside_its_environment(lam: Any) -> None:
    """2,000 forks get at most ~1,024 processes (EAGAIN); other functions and the host go on."""
    bomb = create(lam, FORK_BOMB, MemorySize=2048)
    result = ok(lam, bomb, {"count": 2000})
    assert result["error"] == "EAGAIN", result
    assert 1000 <= result["forked"] < linux.LIMIT_PROCS, result
    assert len(pids_of_uids(range(result["uid"], result["uid"] + 1))) == result["forked"] + 1

    other = create(lam, "def handler(event, context):\n    return 'still here'\n")
    assert ok(lam, other) == "still here", "a new environment starts while the bomb sits"
    assert ok(lam, bomb, {"count": 1})["error"] == "EAGAIN", "the bomb's own cap still holds"

    retire(lam, bomb)
    wait_until(lambda: not pids_of_uids(range(result["uid"], result["uid"] + 1)), timeout=10)


OPEN_FILES = """
import errno, os, resource

def handler(event, context):
    fds, failure = [], None
    for _ in range(event["count"]):
        try:
            fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            failure = errno.errorcode[exc.errno]
            break
    for fd in fds:
        os.close(fd)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
        raised = "raised"
    except (ValueError, OSError) as exc:
        raised = str(exc)
    return {"opened": len(fds), "error": failure, "raise limit": raised,
            "limit": resource.getrlimit(resource.RLIMIT_NOFILE)}
"""


def test_open_files_are_capped_at_1024(lam: Any) -> None:
    """Opening 2,000 files fails with EMFILE near 1,024, and the limit cannot be raised."""
    name = create(lam, OPEN_FILES)
    result = ok(lam, name, {"count": 2000})
    assert result["error"] == "EMFILE", result
    assert 1000 <= result["opened"] < linux.LIMIT_FILES, result
    assert result["limit"] == [linux.LIMIT_FILES, linux.LIMIT_FILES]
    assert result["raise limit"] != "raised", result


# ------------------------------------------------------------------------------------ /tmp

TMP = """
import errno, os

def handler(event, context):
    if event.get("write"):
        with open("/tmp/" + event["write"], "w") as handle:
            handle.write("secret")
    if event.get("fill_mb"):
        return fill(event["fill_mb"])
    usage = os.statvfs("/tmp")
    return {
        "tmp": sorted(os.listdir("/tmp")),
        "size_mb": usage.f_blocks * usage.f_frsize // (1 << 20),
        "host_marker": os.path.exists(event.get("host_marker", "/nonexistent")),
    }

def fill(mb):
    chunk, written, failure = b"x" * (1 << 20), 0, None
    fd = os.open("/tmp/fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for _ in range(mb):
            written += os.write(fd, chunk)
    except OSError as exc:
        failure = errno.errorcode[exc.errno]
    finally:
        os.close(fd)
        os.unlink("/tmp/fill")
    return {"written": written, "error": failure}
"""


def test_tmp_is_private(lam: Any, tmp_path: Path) -> None:
    """A file written to /tmp is seen by no other function, and the host's /tmp is not /tmp."""
    host_marker = Path("/tmp") / f"lambdad-host-{uuid.uuid4().hex}"
    host_marker.write_text("host")
    try:
        writer = create(lam, TMP, EphemeralStorage={"Size": 1024})
        reader = create(lam, TMP)
        secret = f"secret-{uuid.uuid4().hex}"
        mine = ok(lam, writer, {"write": secret, "host_marker": str(host_marker)})
        assert mine["tmp"] == [secret]
        assert mine["host_marker"] is False
        assert mine["size_mb"] == 1024, "sized by EphemeralStorage"
        theirs = ok(lam, reader, {"host_marker": str(host_marker)})
        assert secret not in theirs["tmp"]
        assert theirs["size_mb"] == 512, "the default EphemeralStorage"
        assert not (Path("/tmp") / secret).exists(), "not written to the host's /tmp"
        assert ok(lam, writer)["tmp"] == [secret], "kept by the warm environment"
    finally:
        host_marker.unlink()


def test_tmp_is_limited_to_ephemeral_storage(lam: Any) -> None:
    """Writing 600 MB to a 512 MB /tmp fails with ENOSPC at 512 MB (memory is larger: tmpfs)."""
    # tmpfs pages count toward the memory cgroup, so memory must exceed the /tmp size here.
    name = create(lam, TMP, MemorySize=2048, EphemeralStorage={"Size": 512})
    result = ok(lam, name, {"fill_mb": 600})
    assert result["error"] == "ENOSPC", result
    assert 500 << 20 <= result["written"] <= 512 << 20, result
    assert ok(lam, name)["tmp"] == [], "the environment goes on"


# ------------------------------------------------------------------------------------ freeze

TICKER = """
import threading, time

ticks = 0
ticker = None

def tick():
    global ticks
    while True:
        time.sleep(0.01)
        ticks += 1

def handler(event, context):
    global ticker
    if ticker is None:
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
    time.sleep(event["hold"])
    return ticks
"""


def test_background_thread_is_frozen_between_invocations(lam: Any) -> None:
    """A handler's thread ticking every 10 ms advances while invocations run, not while idle."""
    name = create(lam, TICKER, MemorySize=1769)
    _, first, _ = call(lam, name, {"hold": 0.3})
    # A fixed idle period is the behaviour under test here (nothing to poll for): the
    # environment stays warm (keep-alive is longer) and frozen for this one second.
    time.sleep(1.0)
    response, second, report = call(lam, name, {"hold": 0.3})
    assert "FunctionError" not in response
    ran_ms = milliseconds(report["Duration"])
    advanced = second - first
    assert first >= 10, "the thread ticks while the invocation runs"
    # Unfrozen, the idle second alone would add ~100 ticks; frozen, only the second invocation
    # (~30 ticks) and the moments around it count.
    assert 0.5 * ran_ms / 10 <= advanced <= ran_ms / 10 + 15, (first, second, ran_ms)


# ------------------------------------------------------------------------------------ isolation

IDENTITY = """
import errno, os

def handler(event, context):
    try:
        with open("/var/task/planted", "w") as handle:
            handle.write("x")
        write = "written"
    except OSError as exc:
        write = errno.errorcode[exc.errno]
    status = dict(line.rstrip("\\n").split(":\\t", 1) for line in open("/proc/self/status"))
    mounts = [line.split() for line in open("/proc/self/mountinfo")]
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "task_root": os.environ["LAMBDA_TASK_ROOT"], "cwd": os.getcwd(), "write": write,
        "no_new_privs": status["NoNewPrivs"], "cap_eff": status["CapEff"],
        "suid_mounts": [m[4] for m in mounts if "nosuid" not in m[5]
                        and not m[4].startswith("/dev/")],
    }
"""


def test_runs_unprivileged_with_read_only_code(lam: Any) -> None:
    """As root, the function runs as an unprivileged user, and /var/task is read-only."""
    result = ok(lam, create(lam, IDENTITY))
    assert result["uid"] != 0
    assert result["euid"] != 0
    assert result["gid"] != 0
    assert result["groups"] == []
    assert result["cap_eff"] == "0000000000000000"
    assert result["task_root"] == "/var/task" == result["cwd"]
    assert result["write"] in ("EROFS", "EACCES"), result


PROCESSES = """
import os

def handler(event, context):
    seen = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\\0", b" ").decode()
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            seen[entry] = {"cmdline": cmdline, "uid": uid}
    try:
        os.kill(event["lambdad_pid"], 0)
        signal_lambdad = "delivered"
    except OSError as exc:
        signal_lambdad = type(exc).__name__
    return {"self": os.getpid(), "uid": os.getuid(), "seen": seen, "signal": signal_lambdad}
"""


def test_sees_only_its_own_processes(lam: Any, server: Server) -> None:
    """/proc shows the cell's init and the function's runtime, nothing of lambdad or others."""
    other = create(lam, PROCESSES)
    ok(lam, other, {"lambdad_pid": 1})  # another warm environment that must stay invisible
    result = ok(lam, create(lam, PROCESSES), {"lambdad_pid": server.process.pid})
    seen = result["seen"]
    assert "cellinit.py" in seen.pop("1")["cmdline"], "pid 1 is the cell's init"
    assert str(result["self"]) in seen
    assert all(p["uid"] == result["uid"] for p in seen.values()), seen
    assert not any("lambdad.cli.main" in p["cmdline"] for p in seen.values()), seen
    assert result["signal"] == "ProcessLookupError", "lambdad cannot even be named"


FILES = """
import os

def handler(event, context):
    if event.get("own"):
        return sorted(os.listdir("/var/task"))
    return {
        "task": sorted(os.listdir("/var/task")),
        "visible": {path: os.path.exists(path) for path in event["paths"]},
    }
"""


def test_cannot_see_the_data_dir_or_other_functions_code(lam: Any, server: Server) -> None:
    """lambdad's data dir, other functions' code and the host's /tmp do not exist in a cell."""
    other = create(lam, FILES, files={"other-secret.txt": "theirs"})
    assert "other-secret.txt" in ok(lam, other, {"own": True})
    other_code = next(server.data_dir.glob("code/*/other-secret.txt")).parent
    paths = [str(server.data_dir), str(other_code), str(other_code / "other-secret.txt")]
    result = ok(lam, create(lam, FILES), {"paths": paths})
    assert result["visible"] == dict.fromkeys(paths, False)
    assert "other-secret.txt" not in result["task"]
    assert "app.py" in result["task"]


SETUID = """
import os, stat, subprocess

def handler(event, context):
    def run(path):
        done = subprocess.run([path], capture_output=True, text=True)
        return {"setuid_bit": bool(os.stat(path).st_mode & stat.S_ISUID), "id": done.stdout}
    return {"planted": run("/var/task/planted-id"), "shipped": run("/var/task/shipped-id")}
"""


def test_setuid_binaries_do_not_regain_root(lam: Any, server: Server) -> None:
    """A setuid-root binary visible to the function runs as the function's user, not root."""
    id_program = Path(shutil.which("id") or "/usr/bin/id").read_bytes()
    name = create(
        lam,
        SETUID,
        files={"shipped-id": id_program, "planted-id": id_program},
        modes={"shipped-id": 0o4755, "planted-id": 0o755},
    )
    identity = ok(lam, create(lam, IDENTITY))
    assert identity["no_new_privs"] == "1"
    assert identity["suid_mounts"] == [], "every mount the function can exec from is nosuid"
    assert "euid=0" not in ok(lam, name)["planted"]["id"], "unpacks the code"
    # Plant a real setuid-root program in the function's code on the host, as a setuid binary
    # of the host's /usr is: the kernel must not honour it inside the cell.
    for planted in server.data_dir.glob("code/*/planted-id"):
        os.chown(planted, 0, 0)
        planted.chmod(0o4755)
    assert any(p.stat().st_mode & stat.S_ISUID for p in server.data_dir.glob("code/*/planted-id"))
    result = ok(lam, name)
    assert result["planted"]["setuid_bit"] is True, "the planted bit is there to be honoured"
    assert result["planted"]["id"].startswith("uid=")
    assert "euid=0" not in result["planted"]["id"]
    assert "uid=0(" not in result["planted"]["id"]
    assert result["shipped"]["setuid_bit"] is False, "setuid bits in a zip are dropped"
    assert "euid=0" not in result["shipped"]["id"]


RAPI_THIEF = """
import os, urllib.error, urllib.request

def handler(event, context):
    if event.get("tell"):
        return os.environ["AWS_LAMBDA_RUNTIME_API"]
    outcomes = {}
    for method, path in (("GET", "invocation/next"), ("POST", "init/error")):
        url = f"http://{event['api']}/2018-06-01/runtime/{path}"
        request = urllib.request.Request(url, data=b"{}" if method == "POST" else None,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                outcomes[path] = {"status": response.status, "body": response.read().decode()}
        except urllib.error.HTTPError as exc:
            outcomes[path] = {"status": exc.code}
        except OSError as exc:
            outcomes[path] = {"error": repr(exc)}
    return outcomes
"""


def test_cannot_take_another_environments_invocations(lam: Any) -> None:
    """A function that learns another environment's Runtime API address is refused there."""
    victim = create(lam, RAPI_THIEF)
    thief = create(lam, RAPI_THIEF)
    victim_api = ok(lam, victim, {"tell": True})
    assert victim_api != ok(lam, thief, {"tell": True}), "every environment has its own port"
    outcomes = ok(lam, thief, {"api": victim_api})
    assert outcomes == {"invocation/next": {"status": 500}, "init/error": {"status": 500}}
    assert ok(lam, victim, {"tell": True}) == victim_api, "the victim's next invoke still works"


# ------------------------------------------------------------------------------------ lifecycle

ECHO = "def handler(event, context):\n    return event\n"


def warm_cells(client: Any, count: int) -> list[str]:
    names = [create(client, ECHO) for _ in range(count)]
    for name in names:
        assert ok(client, name, {"n": name}) == {"n": name}
    return names


def test_sigterm_leaves_no_cell_behind(
    linux_server: Callable[..., Server], client_of: Callable[[Server], Any]
) -> None:
    """Stopping lambdad ends every cell: no processes, cgroups or cell directories are left."""
    srv = linux_server()
    host = Host(srv)
    warm_cells(client_of(srv), 2)
    # Two environments (an init and a runtime each) and the spares, refilled in the background.
    assert wait_until(lambda: len(host.cell_processes()) == 4 + SPARE_CELLS)
    cells = host.cell_processes()
    assert host.cell_groups()
    assert host.cell_dirs()
    assert srv.stop() == 0, srv.log()
    assert not [pid for pid in cells if alive(pid)]
    assert host.cell_groups() == []
    assert host.instance_dirs() == []
    assert host.cell_dirs() == []


@pytest.mark.slow
def test_sigkill_ends_cells_and_restart_reclaims(
    linux_server: Callable[..., Server], client_of: Callable[[Server], Any]
) -> None:
    """After a SIGKILL of lambdad its (frozen) cells die, and a restart finds nothing left."""
    srv = linux_server()
    host = Host(srv)
    names = warm_cells(client_of(srv), 2)
    assert wait_until(lambda: len(host.cell_processes()) == 4 + SPARE_CELLS)
    cells = host.cell_processes()
    old_groups, old_dirs = set(host.cell_groups()), set(host.cell_dirs())
    srv.stop(signal.SIGKILL)
    wait_until(lambda: not [pid for pid in cells if alive(pid)], timeout=10)

    again = linux_server(data_dir=srv.data_dir)
    # The new lambdad makes spare cells of its own; none of the old ones may be left.
    assert not old_groups & set(host.cell_groups())
    assert not old_dirs & set(Host(again).cell_dirs())
    assert ok(client_of(again), names[0], {"n": 1}) == {"n": 1}


def test_restart_reclaims_what_a_killed_lambdad_and_spawner_left(
    linux_server: Callable[..., Server], client_of: Callable[[Server], Any]
) -> None:
    """With lambdad and its helper both SIGKILLed, frozen cells remain until the next start."""
    srv = linux_server()
    host = Host(srv)
    warm_cells(client_of(srv), 2)
    assert wait_until(lambda: host.frozen_cells() == 2), "both idle environments freeze"
    cells = host.cell_processes()
    os.kill(host.spawner(), signal.SIGKILL)
    srv.stop(signal.SIGKILL)
    leftovers = host.cell_groups()
    assert leftovers, "frozen cells outlive a lambdad whose helper was killed too"
    assert [pid for pid in cells if alive(pid)], "their processes are frozen, not gone"

    old_dirs = set(host.cell_dirs())
    again = linux_server(data_dir=srv.data_dir)
    wait_until(lambda: not [pid for pid in cells if alive(pid)], timeout=10)
    assert not set(leftovers) & set(host.cell_groups())
    assert not old_dirs & set(Host(again).cell_dirs())


@pytest.mark.slow
def test_hundreds_of_environments_leak_nothing(linux_server: Callable[..., Server]) -> None:
    """200 environments made and retired leave processes, cgroups, mounts and fds as before."""
    # A keep-alive longer than the test, however slow the machine: idle reaping of the four
    # warm environments would look like a difference from the baseline.
    srv = linux_server(LAMBDAD_KEEP_ALIVE="100000")
    host = Host(srv)
    own_mounts = len(Path("/proc/self/mountinfo").read_text().splitlines())
    setup = srv.client()
    names = warm_cells(setup, 4)
    setup.close()
    wait_until(lambda: api_connections(srv.port) == 0)
    # Measured where nothing is being made ahead of need: a spare cell or a cell's network
    # being made holds descriptors until it is ready (the count was off by two now and then).
    assert wait_until(lambda: host.settled() and host.counts()["cell processes"] == 8 + SPARE_CELLS)
    assert wait_until(host.settled)
    baseline = host.counts()
    baseline_fds = host.fds()
    assert baseline["cell processes"] == 8 + SPARE_CELLS
    assert baseline["lambdad mounts"] == own_mounts, "lambdad itself mounts nothing"

    failures: list[BaseException] = []
    # Configuration writes are serialised: concurrent ones on one lambdad currently fail
    # ("cannot start a transaction within a transaction" in the SQLite store), which is not
    # what this test is about. Invokes, and so environment starts and stops, still overlap.
    writes = threading.Lock()

    def cycle(name: str, rounds: int) -> None:
        client = srv.client()
        try:
            for index in range(rounds):
                with writes:
                    retire(client, name)
                assert ok(client, name, {"i": index}) == {"i": index}
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            client.close()

    workers = [threading.Thread(target=cycle, args=(name, 50)) for name in names]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not failures, failures
    # Retired environments close as the configuration changes; the API's client connections
    # close when the clients do: both settle within moments.
    try:
        wait_until(
            lambda: host.settled() and host.counts() == baseline and host.settled(), timeout=30
        )
    except AssertionError:
        pytest.fail(
            f"leaked: {host.counts()} vs {baseline} ({host.made_ahead()}); "
            f"new fds {sorted(set(host.fds()) - set(baseline_fds))}, "
            f"gone {sorted(set(baseline_fds) - set(host.fds()))}"
        )


def test_cells_made_by_an_outer_child_work_and_leave_nothing(
    linux_server: Callable[..., Server], client_of: Callable[[Server], Any]
) -> None:
    """Where ``clone`` cannot be called directly (other architectures), an outer child enters
    the namespaces and forks each cell's init: environments run and stop as with clone."""
    srv = linux_server(_LAMBDAD_CELL_CLONE="0")
    assert "outer child" in srv.get_json("/_lambdad/doctor")["sandbox"]["cell making"]
    host = Host(srv)
    warm_cells(client_of(srv), 2)
    assert wait_until(lambda: len(host.cell_processes()) == 4 + SPARE_CELLS)
    cells = host.cell_processes()
    assert srv.stop() == 0, srv.log()
    assert not [pid for pid in cells if alive(pid)]
    assert host.cell_groups() == []


def test_cells_close_promptly_on_the_standard_event_loop(tmp_path: Path) -> None:
    """Without uvloop (lambdad's fallback), a cell closes in moments and the next one starts."""

    async def cycles() -> list[float]:
        sandbox = linux.LinuxSandbox(tmp_path / "run" / "envs", tmp_path, [])
        await sandbox.open()
        took = []
        try:
            for index in range(3):
                spec = ProcessSpec(
                    name=f"cell-{index}",
                    argv=("/bin/sleep", "60"),
                    env={},
                    cwd="/",
                    task_root=tmp_path,
                    opt_dir=None,
                    tmp_dir=tmp_path,
                    memory_mb=128,
                    tmp_mb=16,
                )
                process = await asyncio.wait_for(sandbox.spawn(spec), 10)
                began = time.monotonic()
                await process.close()
                took.append(time.monotonic() - began)
        finally:
            await sandbox.close()
        return took

    took = asyncio.run(asyncio.wait_for(cycles(), 30))
    assert max(took) < 1.0, took


def test_the_helper_makes_a_burst_of_cells_larger_than_its_socket_holds(tmp_path: Path) -> None:
    """300 cells asked for at once (more requests than the helper's socket buffers hold):
    every one is made, none refused, and all close again."""

    async def burst() -> list[BaseException | Any]:
        sandbox = linux.LinuxSandbox(tmp_path / "run" / "envs", tmp_path, [])
        await sandbox.open()
        try:
            spec = ProcessSpec(
                name="cell",
                argv=(),
                env={},
                cwd="/",
                task_root=tmp_path,
                opt_dir=None,
                tmp_dir=tmp_path,
                memory_mb=128,
                tmp_mb=16,
            )
            made = await asyncio.gather(
                *(sandbox.spawn(spec) for _ in range(300)), return_exceptions=True
            )
            await asyncio.gather(
                *(cell.close() for cell in made if not isinstance(cell, BaseException))
            )
            return made
        finally:
            await sandbox.close()

    made = asyncio.run(asyncio.wait_for(burst(), 120))
    failures = [repr(cell) for cell in made if isinstance(cell, BaseException)]
    assert not failures, failures[:3]


# ------------------------------------------------------------------------------------ doctor

PROTECTIONS = (
    "memory limit",
    "cpu share",
    "process limit",
    "open files",
    "private /tmp",
    "mount and pid namespaces",
    "unprivileged user",
    "runtime api",
    "freeze between invocations",
)


def test_doctor_says_linux_and_every_protection_is_active(server: Server) -> None:
    """``lambdad doctor`` (and its HTTP form) names the Linux sandbox with every wall active."""
    sandbox = server.get_json("/_lambdad/doctor")["sandbox"]
    assert sandbox["kind"] == "linux"
    assert sandbox["isolation"].startswith("linux sandbox (root, cgroup")
    for protection in PROTECTIONS:
        assert sandbox[protection].startswith("active"), (protection, sandbox[protection])
    printed = subprocess.run(
        [sys.executable, "-m", "lambdad.cli.main", "doctor", "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "  kind: linux" in printed
    for protection in PROTECTIONS:
        assert f"  {protection}: active" in printed
