"""A real PostgreSQL server for tests and benchmarks: Debian's ``postgresql`` (initdb and
postgres under ``/usr/lib/postgresql/<version>/bin``, or on PATH) started on a free loopback
port with a data directory of its own, trust authentication, and no fsync (a test server loses
nothing it must keep). ``database()`` makes a new, empty database per test, so tests sharing
one server never see each other's rows.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (the
package makes it) or ``nobody``, in a directory under the system's temporary directory that
user owns. ``unavailable_reason()`` says why no server can be started here (the package is
missing: the test suite installs it as root with apt-get, ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

#: Starting a new cluster (initdb, then the server) takes 1-3 s on a busy host.
START_TIMEOUT = 60.0


def binaries() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: on PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    return versions[-1].parent if versions else None


def unavailable_reason() -> str | None:
    """None when a server can be started here; otherwise why not."""
    if binaries() is None:
        return (
            "PostgreSQL is not installed (Debian package postgresql; the test suite installs it "
            "when run as root on a host with apt-get)"
        )
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as: None for the current user, unless that is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


class PostgresServer:
    """One PostgreSQL cluster of its own at ``127.0.0.1:port`` (user ``postgres``, trust)."""

    def __init__(self) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError(unavailable_reason())
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.user = _server_user()
        self.home = Path(tempfile.mkdtemp(prefix="lambdad-pg-"))
        self.data = self.home / "data"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, int]:
        user = self.user
        return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid}

    def start(self) -> None:
        """Make the cluster (once) and start the server; returns once it takes connections."""
        if self.user is not None:
            os.chown(self.home, self.user.pw_uid, self.user.pw_gid)
        if not self.data.exists():
            initdb = [self.bin_dir / "initdb", "-D", self.data, "-U", "postgres"]
            subprocess.run(
                [*initdb, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                check=True,
                capture_output=True,
                cwd=self.home,
                **self._run_as(),  # type: ignore[arg-type]
            )
        self._spawn()
        self._wait_ready()

    def _spawn(self) -> None:
        log = (self.home / "postgres.log").open("ab")
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.home),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        with log:
            self.process = subprocess.Popen(
                [self.bin_dir / "postgres", "-D", self.data, "-p", str(self.port), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
                **self._run_as(),  # type: ignore[arg-type]
            )

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited early:\n{self.log()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.home / "postgres.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (a fast shutdown), keeping its data: ``start`` again restarts it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop the server and remove its data."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
