"""Fixtures that start a real ``lambdad serve`` and drive it with real clients.

- ``server``: one lambdad for the whole session (fast settings), shared by most tests.
- ``start_server``: a factory for a dedicated lambdad with its own settings and data dir,
  stopped (and checked for leftover processes) when the test ends.
- Every lambdad is forked from one fork server that has imported lambdad once
  (``tests/forkserver.py``; ``LAMBDAD_TEST_FORK_SERVER=0``: plain subprocesses).
- ``lam``: a boto3 Lambda client for ``server``, with botocore's retries off so that every
  answer the test sees is the server's own.
- ``make_zip`` / ``create_function`` / ``new_function``: deployment packages, and functions with
  unique names made through any client (``new_function`` defaults to ``lam``).
- ``moto`` / ``aws_server``: one moto server for the session (SQS, SNS, EventBridge), and one
  lambdad whose destinations and dead-letter queues reach it.
- ``recorder``: a loopback service functions report their runs to (one per test).
- Every lambdad the fixtures start runs its loop-lag watchdog (``LAMBDAD_LOOP_WATCHDOG_MS``);
  a test during which one of them blocked its event loop fails (``docs/testing.md``).
- ``IDENTITY`` / ``assert_environment_gone``: which environment ran a function, and that it
  ended, under either sandbox (a plain process, or a cell with its own PID namespace).
- ``rendezvous``: a loopback service functions reach under either sandbox, to count their runs
  or wait for each other.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambdad.api.wire.model import MODELS
from lambdad.runtime.sandbox import linux
from lambdad.runtime.sandbox.network import MARK as CELL_MARK
from tests.postgres_server import PostgresServer
from tests.postgres_server import unavailable_reason as postgres_unavailable

ROLE = "arn:aws:iam::000000000000:role/lambda-role"
REPO = Path(__file__).resolve().parent.parent

#: Settings that keep the shared server quick without changing any code path.
FAST_SETTINGS = {
    "LAMBDAD_TIME_SCALE": "0.01",
    "LAMBDAD_LOG_LEVEL": "WARNING",
    "LAMBDAD_LOOP_WATCHDOG_MS": "100",
    # Fewer cells' networks made ahead than the default 128: every test server would make
    # (and, stopping, destroy) that many namespaces. Cells beyond them make their own, so
    # both ways are exercised.
    "LAMBDAD_CELL_NETWORKS_AHEAD": "8",
    # No web console (on by default, port 9001): the console's tests ask for one.
    "LAMBDAD_CONSOLE_PORT": "-1",
}

#: What the loop-lag watchdog writes to lambdad's log when the event loop was blocked.
LOOP_BLOCKED = "event loop blocked"

#: System packages the suite uses when they can be had: ``nft`` builds the Linux sandbox's
#: network walls (docs/sandbox.md); ``rabbitmq-server`` is the broker of the Amazon MQ event
#: source tests (tests/rabbitmq_broker.py); ``chromium`` is the browser of the web console's
#: tests (tests/test_console.py, driven by Playwright). Without them those tests skip.
SYSTEM_PACKAGES = {"nft": "nftables", "rabbitmq-server": "rabbitmq-server", "chromium": "chromium"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the metadata store of every lambdad the fixtures start: the embedded SQLite, or "
        "a database of its own on one PostgreSQL server for the session (docs/cluster.md)",
    )
    parser.addoption(
        "--cluster",
        action="store_true",
        help="every lambdad the fixtures start is the api node of a three-node cluster (one api "
        "node, two workers, PostgreSQL and NATS; tests/cluster.py); tests marked no_cluster "
        "skip (docs/testing.md)",
    )


#: ``--store``, and the PostgreSQL server and databases (by data dir, so that a restart on the
#: same data dir finds its database) of ``--store postgres``.
_STORE: dict[str, str] = {"kind": "sqlite", "cluster": ""}
_POSTGRES: list[PostgresServer] = []
_DATABASES: dict[Path, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    _STORE["kind"] = config.getoption("--store")
    _STORE["cluster"] = "yes" if config.getoption("--cluster") else ""
    if cluster_mode():
        from tests.cluster import RELAYED_PORTS, relay_unavailable_reason

        if relay_unavailable_reason() is None:
            SERVICE_PORTS.append(RELAYED_PORTS)


#: Where ``service_listener`` binds: any free port, or (``--cluster`` with namespaced nodes)
#: one of the ports every node relays from its cells to the test (tests/cluster.py).
SERVICE_PORTS: list[range] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    for pg in _POSTGRES:
        pg.close()
    _POSTGRES.clear()
    if "tests.cluster" in sys.modules:
        sys.modules["tests.cluster"].close_shared()


def pytest_report_header(config: pytest.Config) -> str | None:
    """With ``--cluster``, say where the clusters' nodes run."""
    if not config.getoption("--cluster"):
        return None
    from tests.cluster import namespaces_unavailable_reason

    reason = namespaces_unavailable_reason()
    where = "in network namespaces of their own" if reason is None else f"on loopback ({reason})"
    return f"cluster mode: every lambdad is the api node of a three-node cluster, nodes {where}"


def cluster_mode() -> bool:
    """Whether the fixtures' lambdads are api nodes of three-node clusters (``--cluster``)."""
    return bool(_STORE["cluster"])


def session_postgres() -> PostgresServer:
    """The session's PostgreSQL server, started on first use (skips where none can run)."""
    if not _POSTGRES:
        reason = postgres_unavailable()
        if reason is not None:
            pytest.skip(reason)
        pg = PostgresServer()
        pg.start()
        _POSTGRES.append(pg)
    return _POSTGRES[0]


def _store_settings(data_dir: Path) -> dict[str, str]:
    """With ``--store postgres``, the store URL of the lambdad on ``data_dir``."""
    if _STORE["kind"] != "postgres":
        return {}
    if data_dir not in _DATABASES:
        _DATABASES[data_dir] = session_postgres().database()
    return {"LAMBDAD_STORE_URL": _DATABASES[data_dir]}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Install the system packages the tests need, as the README's test command promises, when
    the suite runs as root on a host with apt-get and they are missing (the package lists are
    refreshed once if the first attempt fails)."""
    import shutil

    search = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin"
    missing = [pkg for cmd, pkg in SYSTEM_PACKAGES.items() if not shutil.which(cmd, path=search)]
    if not missing or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    install = ["install", "-y", "-q", "--no-install-recommends", *missing]
    done = _apt(install)
    if done.returncode != 0:
        _apt(["update", "-q"])
        done = _apt(install)
    if done.returncode != 0:  # the tests that need them skip and say why
        sys.stderr.write(f"could not install {missing}: {done.stderr.decode()[-500:]}\n")


def _apt(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, env=env, timeout=600, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def function_log(
    server: Any,
    name: str,
    until: Callable[[list[str]], Any] | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """The messages of function ``name``'s log group on ``server`` (``/_lambdad/logs``), oldest
    first; with ``until``, read again until ``until(messages)`` holds (failing after
    ``timeout`` seconds with the messages last read).

    CloudWatch Logs shows an invocation's lines some time after it returned (seconds, on AWS).
    A single lambdad holds them when the invoke returns; a cluster's api node receives them
    from the worker that ran the function up to 0.1 s later (docs/cluster.md, logs), so a test
    that reads lines right after an invoke says which it waits for."""

    def read() -> list[str]:
        events = server.get_json(f"/_lambdad/logs?function={name}")["events"]
        return [str(event["message"]) for event in events]

    messages = read()
    deadline = time.monotonic() + timeout
    while until is not None and not until(messages):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}'s log, {timeout} s on, still fails {until}: {messages}")
        time.sleep(0.02)
        messages = read()
    return messages


def reported(messages: list[str], request_id: str = "") -> bool:
    """Whether ``messages`` hold a REPORT line (of ``request_id``, when given): an
    invocation's last, for ``function_log``'s ``until``."""
    return any(message.startswith(f"REPORT RequestId: {request_id}") for message in messages)


def live_processes() -> dict[int, list[bytes]]:
    """Every live (not zombie) process: pid -> the fields of ``/proc/<pid>/stat`` after its
    name (state, parent, process group, session, ...)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            found[int(entry)] = fields
    return found


def processes_marked(mark: str) -> list[int]:
    """The live processes whose environment holds ``mark``."""
    found = []
    for pid in live_processes():
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if mark.encode() in handle.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live process whose ancestry leads to ``pid``."""
    parents = {child: int(fields[1]) for child, fields in live_processes().items()}
    found = []
    for child, parent in parents.items():
        cursor = parent
        while cursor > 1:
            if cursor == pid:
                found.append(child)
                break
            cursor = parents.get(cursor, 0)
    return found


#: Function source defining ``environment_identity()``: what ran this code. ``token`` is new in
#: every process; ``cell`` is the Linux sandbox's cell (from the process's cgroup), or None for a
#: plain process, whose ``pid`` and ``started`` (clock ticks after boot) are then the host's.
IDENTITY = """
import os as _os, uuid as _uuid

_TOKEN = _uuid.uuid4().hex


def environment_identity():
    cell = None
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            parts = line.rstrip("\\n").split(":", 2)[2].strip("/").split("/")
            if len(parts) >= 3 and parts[-3] == "lambdad":
                cell = parts[-2] + "/" + parts[-1]
    with open("/proc/self/stat", "rb") as handle:
        started = int(handle.read().rsplit(b")", 1)[1].split()[19])
    return {"token": _TOKEN, "pid": _os.getpid(), "started": started, "cell": cell}
"""

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _glob(pattern: str) -> list[Path]:
    """``CGROUP_ROOT.glob(pattern)``, again when a directory went away while it was listed."""
    for _ in range(10):
        try:
            return list(CGROUP_ROOT.glob(pattern))
        except FileNotFoundError:
            continue
    return list(CGROUP_ROOT.glob(pattern))


def _cell_dirs(cell: str | None = None) -> list[Path]:
    """The cgroup directories of ``cell`` (every cell when None), on cgroup v2 or v1."""
    name = cell or "*/*"
    return [p for p in (*_glob(f"lambdad/{name}"), *_glob(f"*/lambdad/{name}")) if p.is_dir()]


def _cell_pids(directory: Path) -> set[int]:
    try:
        return {int(pid) for pid in (directory / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()


def environment_pids(identity: Mapping[str, Any]) -> list[int]:
    """Host pids of the live processes of the environment ``identity`` describes."""
    if identity["cell"]:
        pids = set().union(*(_cell_pids(d) for d in _cell_dirs(identity["cell"])))
        return sorted(pid for pid in pids if _alive(pid))
    pid = int(identity["pid"])
    return [pid] if _alive(pid) and _start_time(pid) == identity["started"] else []


def node_of(server: Server, identity: Mapping[str, Any]) -> Server | None:
    """The lambdad of ``server.nodes()`` whose processes include the live environment (or
    SnapStart template) ``identity`` describes; None when it runs nowhere."""
    pids = set(environment_pids(identity))
    return next(
        (n for n in server.nodes() if pids and pids <= set(descendants(n.process.pid))), None
    )


def assert_environment_gone(identity: Mapping[str, Any], timeout: float = 10.0) -> None:
    """Wait until the environment's processes (and, for a cell, its cgroups) are gone."""

    def gone() -> bool:
        return not environment_pids(identity) and not (
            identity["cell"] and _cell_dirs(identity["cell"])
        )

    wait_until(gone, timeout=timeout)


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


class ForkedProcess:
    """A ``lambdad serve`` forked by the suite's fork server (``tests/forkserver.py``), with
    the part of ``subprocess.Popen``'s interface the tests use; its exit status is the fork
    server's to read (it is the parent)."""

    def __init__(self, forker: ForkServer, pid: int, args: list[str]) -> None:
        self._forker = forker
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._forker.returncode(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.005)
        return int(self.returncode or 0)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The session's fork server of ``lambdad serve`` processes (started on first use)."""

    def __init__(self, home: Path) -> None:
        self.path = str(home / "forkserver.sock")
        self._log = (home / "forkserver.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserver", "lambdad.cli.main", "serve", self.path],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )

        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the fork server exited: {(home / 'forkserver.log')}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                return probe.connect_ex(self.path) == 0

        wait_until(listening, timeout=60, interval=0.01)

    def _ask(self, request: Mapping[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(self.path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer: dict[str, Any] = json.loads(sock.makefile("rb").readline())
            return answer

    def spawn(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        log: Path,
        netns: str | None = None,
    ) -> ForkedProcess:
        request = {
            "op": "spawn",
            "argv": argv,
            "env": dict(env),
            "cwd": str(cwd),
            "log": str(log),
            "netns": netns,
        }
        pid = int(self._ask(request)["pid"])
        return ForkedProcess(self, pid, [sys.executable, "-m", "lambdad.cli.main", *argv])

    def returncode(self, pid: int) -> int | None:
        code = self._ask({"op": "status", "pid": pid})["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self._log.close()
        shutil.rmtree(Path(self.path).parent, ignore_errors=True)


_FORK_SERVER: list[ForkServer] = []


def fork_server() -> ForkServer | None:
    """The session's fork server; None where lambdads are started as plain subprocesses
    (``LAMBDAD_TEST_FORK_SERVER=0``)."""
    if os.environ.get("LAMBDAD_TEST_FORK_SERVER", "1") == "0":
        return None
    if not _FORK_SERVER:
        import atexit
        import tempfile

        home = Path(tempfile.mkdtemp(prefix="lambdad-forkserver-"))
        _FORK_SERVER.append(ForkServer(home))
        atexit.register(_FORK_SERVER[0].close)
    return _FORK_SERVER[0]


_LAMBDA_SESSION: list[boto3.Session] = []
_SESSION_LOCK = threading.Lock()


def lambda_session() -> boto3.Session:
    """A boto3 session whose botocore data loader searches lambdad's shipped models first, so
    its Lambda clients know every operation lambdad serves (the installed botocore may be older:
    docs/wire-parsing.md); other services' models are the installed botocore's."""
    with _SESSION_LOCK:
        if not _LAMBDA_SESSION:
            core = botocore.session.get_session()
            core.get_component("data_loader").search_paths.insert(0, str(MODELS))
            _LAMBDA_SESSION.append(boto3.Session(botocore_session=core))
        return _LAMBDA_SESSION[0]


@dataclass
class Server:
    """A running ``lambdad serve`` process."""

    process: subprocess.Popen[bytes] | ForkedProcess
    port: int
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    #: How much of the log ``new_loop_blocks`` has read.
    checked: int = 0
    #: The address it listens on (a cluster node's own, in its network namespace).
    host: str = "127.0.0.1"
    #: The ``tests.cluster.Cluster`` whose api node this is (``--cluster``), stopped with it.
    cluster: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, region: str = "us-east-1", **config: Any) -> Any:
        """A boto3 Lambda client of this server, speaking the ``lambda`` model lambdad serves
        (``lambda_session``)."""
        retries = config.pop("retries", {"total_max_attempts": 1})
        return lambda_session().client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="secret",
            config=Config(retries=retries, read_timeout=120, **config),
        )

    def nodes(self) -> list[Server]:
        """Where this lambdad's functions may run: itself, or (the api node of a cluster,
        ``--cluster``) every node of its cluster, the api node first."""
        if self.cluster is None:
            return [self]
        return [node.server for node in self.cluster.nodes.values()]

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.endpoint + path, timeout=30) as response:
            return json.loads(response.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def new_loop_blocks(self) -> list[str]:
        """The watchdog's "event loop blocked" lines written since the last call."""
        with self.log_path.open("rb") as handle:
            handle.seek(self.checked)
            text = handle.read()
        end = text.rfind(b"\n") + 1
        self.checked += end
        lines = text[:end].decode(errors="replace").splitlines()
        return [line for line in lines if LOOP_BLOCKED in line]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"lambdad did not stop on {sig!r}:\n{self.log()}") from None
        return int(self.process.returncode)


#: Every lambdad the fixtures started, whose logs ``_loop_watchdog`` reads after each test.
_WATCHED: list[Server] = []


def launch_server(
    tmp: Path, settings: Mapping[str, str] | None = None, data_dir: Path | None = None
) -> Server:
    """A lambdad the test drives: one process, or with ``--cluster`` the api node of a
    three-node cluster of its own (``tests/cluster.py``), whose other nodes stop with it."""
    if cluster_mode():
        from tests.cluster import launch_cluster

        return launch_cluster(tmp, settings, data_dir)
    return spawn_server(tmp, settings, data_dir)


def spawn_server(
    tmp: Path,
    settings: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    *,
    host: str = "127.0.0.1",
    netns: str | None = None,
    port: int | None = None,
) -> Server:
    """One ``lambdad serve`` listening on ``host`` (and ``port``, else a free one), in the
    network namespace ``netns`` (``/run/netns/<name>``) when given; returns once it answers
    its health check."""
    data_dir = data_dir or tmp / "data"
    port = port or free_port()
    stored = {} if "LAMBDAD_STORE_URL" in (settings or {}) else _store_settings(data_dir)
    env = {**os.environ, **FAST_SETTINGS, **stored, **(settings or {})}
    log_path = tmp / f"lambdad-{port}.log"
    argv = ["serve", "--port", str(port), "--data-dir", str(data_dir)]
    if host != "127.0.0.1":
        argv += ["--host", host]
    forker = fork_server()
    process: subprocess.Popen[bytes] | ForkedProcess
    if forker is not None:
        log_path.touch()
        process = forker.spawn(argv, env, tmp, log_path, netns)
    else:
        from tests.forkserver import enter_network

        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "lambdad.cli.main", *argv],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp,
                preexec_fn=None if netns is None else lambda: enter_network(netns),
            )
    server = Server(process, port, data_dir, log_path, env, host=host)
    _WATCHED.append(server)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"lambdad exited early:\n{server.log()}")
        with contextlib.suppress(OSError):
            return bool(server.get_json("/_lambdad/health")["status"] == "ok")
        return False

    wait_until(healthy, timeout=30)
    return server


def _cells_of(server: Server, pids: set[int]) -> set[str]:
    """The cells of ``server``: holding one of ``pids``, or named after one of its environments.

    Cells are ``<environment id>-<n>``; ``<data dir>/run/envs/`` holds a directory per live
    environment and per live cell. Other lambdads (the session's, another test run's) have cells
    of their own at the same time, so only these are the server's.
    """
    runs = server.data_dir / "run" / "envs"
    names = {p.name for p in runs.iterdir()} if runs.is_dir() else set()
    return {
        f"{d.parent.name}/{d.name}"
        for d in _cell_dirs()
        if d.name in names or d.name.rsplit("-", 1)[0] in names or _cell_pids(d) & pids
    }


def shutdown(server: Server, sig: int = signal.SIGTERM) -> None:
    """Stop ``server`` with ``sig`` and fail if it leaves any process or cell behind."""
    children = descendants(server.process.pid)
    cells = _cells_of(server, set(children))
    code = server.stop(sig)
    assert code == 0, f"lambdad exited with {code}:\n{server.log()}"
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout=10)
    leftovers = processes_marked(str(server.data_dir))
    assert not leftovers, f"processes left behind: {leftovers}"
    cells |= _cells_of(server, set())
    left = {str(d): sorted(_cell_pids(d)) for cell in cells for d in _cell_dirs(cell)}
    assert not left, f"cgroups (and their processes) left behind: {left}"
    if server.cluster is not None:
        server.cluster.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``root`` are skipped where the Linux sandbox cannot run; with
    ``--cluster``, tests marked ``no_cluster`` are skipped with the marker's reason."""
    if cluster_mode():
        _skip_on_clusters(items)
    reason = linux.unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"the Linux sandbox cannot run here: {reason}")
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(skip)


#: The fixtures of services that functions reach on the test's own host (``service_listener``).
HOST_SERVICES = ("rendezvous", "recorder", "collector")


def _skip_on_clusters(items: list[pytest.Item]) -> None:
    """Under ``--cluster``: skip tests marked ``no_cluster`` (with the marker's reason), and,
    where nodes have network namespaces of their own but cannot relay to the test's services
    (no ``nft``), tests whose functions reach one (``HOST_SERVICES``: ``rendezvous``,
    ``recorder``, the Logs API tests' ``collector``): a function finds it at its cells'
    gateway, which is inside its node's namespace, not the test's."""
    from tests.cluster import namespaces_unavailable_reason, relay_unavailable_reason

    isolated = namespaces_unavailable_reason() is None and relay_unavailable_reason() is not None
    for item in items:
        marker = item.get_closest_marker("no_cluster")
        if marker is not None:
            why = marker.args[0] if marker.args else "cannot run against a cluster"
            item.add_marker(pytest.mark.skip(reason=f"not on a cluster: {why}"))
        elif isolated and set(HOST_SERVICES) & set(getattr(item, "fixturenames", ())):
            why = "its functions reach a service of the test's, and nodes cannot relay (no nft)"
            item.add_marker(pytest.mark.skip(reason=f"not on a namespaced cluster: {why}"))


@pytest.fixture(autouse=True)
def _loop_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which a lambdad of the fixtures blocked its event loop (unless it
    is marked ``blocks_loop``: a known block, being fixed)."""
    yield
    blocks: list[str] = []
    for srv in list(_WATCHED):
        blocks += srv.new_loop_blocks()
        if srv.process.poll() is not None:
            _WATCHED.remove(srv)
    if blocks and request.node.get_closest_marker("blocks_loop") is None:
        pytest.fail("lambdad blocked its event loop:\n" + "\n".join(blocks), pytrace=False)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = launch_server(tmp_path_factory.mktemp("lambdad"))
    yield srv
    shutdown(srv)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(settings: Mapping[str, str] | None = None, *, data_dir: Path | None = None) -> Server:
        """A new lambdad; pass ``data_dir`` of a stopped one to restart on its data."""
        home = tmp_path / f"srv{len(started)}"
        home.mkdir()
        srv = launch_server(home, settings, data_dir)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.process.poll() is None:
            shutdown(srv)
        elif srv.cluster is not None:
            srv.cluster.close()


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """One real PostgreSQL server for the session (tests/postgres_server.py); tests take a
    database of their own from it with ``postgres.database()``. Skips where none can run."""
    return session_postgres()


@pytest.fixture
def lam(server: Server) -> Iterator[Any]:
    client = server.client()
    yield client
    client.close()


def make_zip(files: Mapping[str, str | bytes], modes: Mapping[str, int] | None = None) -> bytes:
    """A zip of ``files`` (path -> content); ``modes`` sets unix permissions per path."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buf.getvalue()


def unique(prefix: str = "fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


#: The handler of a function created without code: it answers its event.
ECHO_CODE = "def handler(e, c):\n    return e\n"


def create_function(
    client: Any,
    code: str | None = None,
    *,
    name: str | None = None,
    runtime: str = "python3.11",
    handler: str = "app.handler",
    files: Mapping[str, str | bytes] | None = None,
    modes: Mapping[str, int] | None = None,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """CreateFunction through ``client``: ``code`` as ``app.py`` (or the package ``files``,
    with unix ``modes``), a unique name unless ``name``; ``env`` becomes
    ``Environment.Variables``; other keyword arguments go to CreateFunction as they are."""
    package = files if files is not None else {"app.py": code or ECHO_CODE}
    params: dict[str, Any] = {
        "FunctionName": name or unique(),
        "Runtime": runtime,
        "Role": ROLE,
        "Handler": handler,
        "Code": {"ZipFile": make_zip(package, modes)},
    }
    if env is not None:
        params["Environment"] = {"Variables": dict(env)}
    params.update(kwargs)
    return dict(client.create_function(**params))


@pytest.fixture
def new_function(lam: Any) -> Callable[..., dict[str, Any]]:
    """``create_function`` with ``lam`` as the default client (``client=`` picks another)."""

    def create(code: str | None = None, *, client: Any = None, **kwargs: Any) -> dict[str, Any]:
        return create_function(client or lam, code, **kwargs)

    return create


def invoke_json(
    client: Any, name: str, payload: Any = None, **kwargs: Any
) -> tuple[dict[str, Any], Any]:
    """Invoke and decode: (the response without its stream, the JSON body)."""
    if payload is not None:
        kwargs["Payload"] = json.dumps(payload).encode()
    response = client.invoke(FunctionName=name, **kwargs)
    body = response["Payload"].read()
    response = {k: v for k, v in response.items() if k != "Payload"}
    return response, json.loads(body) if body else None


@contextlib.contextmanager
def refused(code: str, status: int, message: str | None = None) -> Iterator[dict[str, Any]]:
    """Expect a ClientError with ``code`` and ``status`` (and ``message``, when given)."""
    error: dict[str, Any] = {}
    with pytest.raises(ClientError) as info:
        yield error
    response = info.value.response
    error.update(response["Error"])
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
        code,
        status,
    ), response
    if message is not None:
        assert response["Error"]["Message"] == message


@pytest.fixture
def unchecked(server: Server) -> Iterator[Any]:
    """A client without botocore's own checks, so the server's answer is what the test sees."""
    client = server.client(parameter_validation=False)
    yield client
    client.close()


def bound_message(field: str, value: object, side: str, limit: int) -> str:
    return (
        f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
        f"constraint: Member must have value {side} than or equal to {limit}"
    )


#: Function source defining ``meet()``: connect to the test's ``Rendezvous`` (port in the
#: ``RENDEZVOUS_PORT`` variable) and return the number it answers, or 0 if it closed first.
MEET = """
import os as _os, socket as _socket


def meet():
    host = _os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")[0]
    address = (host, int(_os.environ["RENDEZVOUS_PORT"]))
    with _socket.create_connection(address, timeout=30) as connection:
        return int(connection.recv(16) or 0)
"""


#: Where the next ``service_listener`` starts looking in ``SERVICE_PORTS`` (a random start,
#: then onwards: a service's port is not handed to the next test's service at once).
_NEXT_SERVICE_PORT: list[int] = []


def _service_ports() -> list[int]:
    """The ports a service may bind, in the order to try: any (0), or the relayed ports from
    just after the last one given, so that a function of an earlier test still running (a
    durable execution's next invocation, a retry) never reports to a later test's service on
    the port it was given."""
    if not SERVICE_PORTS:
        return [0]
    ports = list(SERVICE_PORTS[0])
    if not _NEXT_SERVICE_PORT:
        _NEXT_SERVICE_PORT.append(random.randrange(len(ports)))
    start = _NEXT_SERVICE_PORT[0] % len(ports)
    return ports[start:] + ports[:start]


def service_listener(backlog: int = 128) -> socket.socket:
    """A test service's listening socket that functions reach under either sandbox: on every
    address, marked (as root) so that the Linux sandbox's cells may connect to it at their
    gateway (``AWS_LAMBDA_RUNTIME_API``'s host, docs/sandbox.md); loopback otherwise."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(OSError):  # not root: the plain sandbox shares the network
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, CELL_MARK)
    for port in _service_ports():
        try:
            sock.bind(("0.0.0.0", port))
            if SERVICE_PORTS:
                _NEXT_SERVICE_PORT[0] = SERVICE_PORTS[0].index(port) + 1
            break
        except OSError:
            continue
    else:
        raise AssertionError(f"no free port in {SERVICE_PORTS}")
    sock.listen(backlog)
    return sock


class Rendezvous:
    """A service that functions reach under either sandbox (``service_listener``).

    Connections are numbered from 1 and answered with their number once ``parties`` of them
    are waiting, so a function can count its runs (``parties=1``) or wait for the others.
    """

    def __init__(self, parties: int = 1) -> None:
        self.parties = parties
        self.count = 0
        self._listener = service_listener()
        self.port = int(self._listener.getsockname()[1])
        self._waiting: list[tuple[socket.socket, int]] = []
        self._thread = threading.Thread(target=self._serve, name="rendezvous", daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {"RENDEZVOUS_PORT": str(self.port)}

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.count += 1
            self._waiting.append((connection, self.count))
            if len(self._waiting) >= self.parties:
                for waiting, number in self._waiting:
                    with contextlib.suppress(OSError):
                        waiting.sendall(str(number).encode())
                    waiting.close()
                self._waiting.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(10)
        for waiting, _ in self._waiting:
            waiting.close()


@pytest.fixture
def rendezvous() -> Iterator[Callable[[int], Rendezvous]]:
    """A factory of ``Rendezvous`` services, all closed when the test ends."""
    opened: list[Rendezvous] = []

    def open_one(parties: int = 1) -> Rendezvous:
        opened.append(Rendezvous(parties))
        return opened[-1]

    yield open_one
    for service in opened:
        service.close()


class LoopbackService:
    """A loopback TCP service on a thread of its own: each connection is handed to ``handle``
    (errors of one connection are its own), then answered ``k``. ``close`` stops it."""

    name = "loopback"

    def __init__(self, backlog: int = 512) -> None:
        self._listener = service_listener(backlog)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()

    def handle(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection, contextlib.suppress(OSError, ValueError):
                connection.settimeout(10)
                self.handle(connection)
                connection.sendall(b"k")

    def settle(self, timeout: float = 30) -> None:
        """Return once every connection made before this call has been handled: connections
        are taken one at a time, in order, so once a probe of ours (an empty line) is
        answered, all those queued before it were."""
        address = self._listener.getsockname()[:2]
        with socket.create_connection(address, timeout=timeout) as probe:
            probe.sendall(b"\n")
            probe.recv(1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(10)


class Recorder(LoopbackService):
    """A loopback service that keeps every line functions send it, one line per connection:
    ``<request id> <number>``, as ``(request id, number)`` in ``runs``."""

    name = "recorder"

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        line = connection.makefile("rb").readline().decode().split()
        if len(line) == 2:
            self.runs.append((line[0], int(line[1])))

    def ids(self) -> set[str]:
        return {request_id for request_id, _ in list(self.runs)}

    def runs_of(self, request_id: str) -> int:
        """How many runs reported ``request_id``."""
        return sum(1 for run_id, _ in list(self.runs) if run_id == request_id)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A ``Recorder`` of this test alone (functions get its port in ``RECORDER_PORT``)."""
    service = Recorder()
    yield service
    service.close()


class Moto:
    """A ``moto.server`` process on a free port, and clients of it."""

    region = "us-east-1"

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = (home / "moto.log").open("wb")
        self.process = subprocess.Popen(
            # Under --cluster, also on the clusters' bridge (nodes have namespaces of their own).
            [sys.executable, "-m", "moto.server", "-H", self._host(), "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._up, timeout=30, interval=0.1)

    @staticmethod
    def _host() -> str:
        return "0.0.0.0" if cluster_mode() else "127.0.0.1"

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError("moto.server exited early")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=5),
        ):
            return True
        return False

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """One moto server for the session: the AWS that destinations and DLQs reach."""
    service = Moto(tmp_path_factory.mktemp("moto"))
    yield service
    service.close()


@pytest.fixture(scope="session")
def aws_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A lambdad for the session whose destinations and dead-letter queues reach ``moto``."""
    settings = {"LAMBDAD_AWS_ENDPOINT_URL": moto.endpoint}
    srv = launch_server(tmp_path_factory.mktemp("lambdad-aws"), settings)
    yield srv
    shutdown(srv)
