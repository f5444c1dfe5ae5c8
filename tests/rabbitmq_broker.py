"""A real RabbitMQ broker for tests and benchmarks: Debian's ``rabbitmq-server`` started on free
ports with a data directory, config, Erlang cookie, node name and epmd port of its own (so it
never meets another broker of the host), the management plugin off; stopped (and its epmd
with it) by ``stop``. ``restart`` keeps the data and the port, as a broker restart does.

``unavailable_reason()`` says why no broker can be started here (the package is missing: the
test suite installs it as root with apt-get, ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

#: Where Debian's package puts the server's own scripts (``/usr/sbin/rabbitmq-server`` is a
#: wrapper that switches to the ``rabbitmq`` user and its fixed directories).
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = SERVER.with_name("rabbitmqctl")
#: Starting a node takes 4-10 s on a busy host.
START_TIMEOUT = 90.0


def _cluster_mode() -> bool:
    from tests.conftest import cluster_mode

    return cluster_mode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable_reason() -> str | None:
    """None when a broker can be started here; otherwise why not."""
    if not SERVER.exists():
        return (
            "RabbitMQ is not installed (Debian package rabbitmq-server; the test suite installs "
            "it when run as root on a host with apt-get)"
        )
    if shutil.which("epmd") is None and not list(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")):
        return "Erlang's epmd is missing (the rabbitmq-server package brings it)"
    return None


def _epmd() -> str:
    found = shutil.which("epmd")
    if found:
        return found
    return str(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))[-1])


class Broker:
    """One RabbitMQ node of its own, reached at ``url`` (user ``guest``, vhost ``/``)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.epmd_port = free_port()
        self.dist_port = free_port()
        self.node = f"lambdad-test-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        for name in ("home", "data", "log", "expand"):
            (home / name).mkdir(parents=True, exist_ok=True)
        (home / "enabled_plugins").write_text("[].\n")
        (home / "rabbitmq.conf").write_text(
            "loopback_users = none\nlog.console = false\nlog.file.level = warning\n"
        )
        cookie = home / "home" / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)

    @property
    def url(self) -> str:
        return f"amqp://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        home = self.home
        return {
            **os.environ,
            "HOME": str(home / "home"),
            "RABBITMQ_MNESIA_BASE": str(home / "data"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_NODE_PORT": str(self.port),
            # Under --cluster, also on the clusters' bridge (nodes have namespaces of their own).
            "RABBITMQ_NODE_IP_ADDRESS": "0.0.0.0" if _cluster_mode() else "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_NODENAME": self.node,
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(home / "expand"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid"),
        }

    def start(self) -> None:
        """Start the node and wait until it accepts AMQP connections."""
        log = (self.home / "server.out").open("ab")
        self.process = subprocess.Popen(
            [str(SERVER)],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None:
                tail = (self.home / "server.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"rabbitmq-server exited: {tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rabbitmq-server did not listen within {START_TIMEOUT} s")
            time.sleep(0.1)

    def _answers(self) -> bool:
        """The AMQP port answers a protocol header with the broker's Connection.Start."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return len(sock.recv(8)) > 0
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the node (its whole process group) and its epmd. Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        subprocess.run(
            [_epmd(), "-kill"],
            env=self.env,
            capture_output=True,
            timeout=10,
            check=False,
        )

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl`` against this node (its output); RuntimeError when it fails."""
        done = subprocess.run(
            [str(CTL), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr[-1000:]}")
        return done.stdout

    def restart(self) -> None:
        """Stop, then start again on the same port with the same data."""
        self.stop()
        self.start()
