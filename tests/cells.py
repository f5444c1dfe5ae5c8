"""What a lambdad holds on the host, seen from outside: cell processes, cgroups, dirs, fds.

The sandbox tests count these before and after they attack a cell or stop a lambdad; nothing
here talks to lambdad except its ``/_lambdad/doctor`` (for its range of cell uids).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lambdad.runtime.sandbox import cgroups, linux
from tests.conftest import Server, descendants

CGROUP_ROOT = Path("/sys/fs/cgroup")


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def is_cellinit(pid: int) -> bool:
    """The spawner, a cell's init, or a cell being made: all run ``cellinit.py``."""
    try:
        return b"cellinit.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def interpreter_of(pid: int) -> str:
    """The program a process runs, as its command line names it (argv[0])."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, UnicodeDecodeError):
        return ""


def api_connections(port: int) -> int:
    """Established TCP connections to ``port`` on loopback, as the server sees them."""
    count = 0
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                count += 1
    return count


def process_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def alive(pid: int) -> bool:
    """Running, sleeping or frozen: anything but gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def pids_of_uids(uids: range) -> list[int]:
    """Live host processes running as one of ``uids``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and process_uid(int(entry)) in uids and alive(int(entry)):
            found.append(int(entry))
    return found


class Host:
    """What one lambdad holds on the host: cell processes, cgroups, cell dirs, mounts and fds."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.instance = cgroups.instance_name(srv.data_dir / "run" / "envs")
        user = srv.get_json("/_lambdad/doctor")["sandbox"]["unprivileged user"]
        base = int(user.rsplit(" ", 1)[1].rstrip(")"))
        self.uids = range(base, base + linux.UID_SLOTS)

    def instance_dirs(self) -> list[Path]:
        return sorted(CGROUP_ROOT.glob(f"*/{cgroups.PARENT}/{self.instance}"))

    def cell_groups(self) -> list[Path]:
        """Every cell's group directories (one per controller on cgroup v1)."""
        return sorted(p for d in self.instance_dirs() for p in d.iterdir() if p.is_dir())

    def frozen_cells(self) -> int:
        """How many cells are frozen (cgroup v1 freezer, or v2 ``cgroup.freeze``)."""
        frozen = 0
        for group in self.cell_groups():
            for name, value in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
                try:
                    frozen += (group / name).read_text().strip() == value
                except OSError:
                    continue
        return frozen

    def cell_dirs(self) -> list[Path]:
        runs = self.srv.data_dir / "run" / "envs"
        return sorted(runs.iterdir()) if runs.is_dir() else []

    def cell_processes(self) -> list[int]:
        """Processes of cell users, and every cell init (root) lambdad's spawner started."""
        return sorted({*pids_of_uids(self.uids), *self.inits()})

    def spawners(self) -> list[int]:
        """Every sandbox helper: lambdad's own interpreter's, and one per other Python in use."""
        lambdad = self.srv.process.pid
        return sorted(p for p in descendants(lambdad) if is_cellinit(p) and parent_of(p) == lambdad)

    def spawner(self) -> int:
        """The helper on lambdad's own interpreter (there from the start)."""
        own = os.path.realpath(sys.executable)
        return next(p for p in self.spawners() if interpreter_of(p) == own)

    def inits(self) -> list[int]:
        lambdad = self.srv.process.pid
        return [p for p in descendants(lambdad) if is_cellinit(p) and parent_of(p) != lambdad]

    def fds(self) -> list[str]:
        """lambdad's open file descriptors, as their targets."""
        fd_dir = Path(f"/proc/{self.srv.process.pid}/fd")
        targets = []
        for fd in fd_dir.iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:
                continue
        return sorted(targets)

    def made_ahead(self) -> str:
        """What the sandbox holds made ahead of need (``lambdad doctor``)."""
        return str(self.srv.get_json("/_lambdad/doctor")["sandbox"].get("made ahead", ""))

    def settled(self) -> bool:
        """Whether nothing is being made ahead of need now (spare cells, cells' networks):
        one being made holds descriptors and processes of its own until it is ready."""
        return "making" not in self.made_ahead()

    def mounts(self) -> int:
        return len(Path(f"/proc/{self.srv.process.pid}/mountinfo").read_text().splitlines())

    def counts(self) -> dict[str, int]:
        return {
            "cell processes": len(self.cell_processes()),
            "cgroups": len(self.cell_groups()),
            "cell dirs": len(self.cell_dirs()),
            "lambdad mounts": self.mounts(),
            "lambdad fds": len(self.fds()),
            "spawners": len(self.spawners()),
            "spawner fds": sum(len(os.listdir(f"/proc/{p}/fd")) for p in self.spawners()),
            "api connections": api_connections(self.srv.port),
        }
