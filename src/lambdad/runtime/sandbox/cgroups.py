"""Control groups for execution environments, on cgroup v2 or v1, whichever the host has.

One ``CellGroup`` per environment: memory limit (no swap), CPU quota in proportion to memory
(1,769 MB is one vCPU, as on Lambda), a process limit, and a freezer. Each operation is a small
write to a control file; nothing here blocks for long.

Layout: ``<root>[/<controller>]/lambdad/<instance>/<cell>``. The instance names one lambdad (its
data dir), so several lambdads on one host never reclaim, count or kill each other's cells, and
a lambdad restarted on the same data dir finds what its predecessor left.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "lambdad"
MB = 1024 * 1024
#: Lambda gives one full vCPU at 1,769 MB.
MB_PER_VCPU = 1769
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "pids", "freezer")


class Version(enum.Enum):
    V1 = "v1"
    V2 = "v2"


def detect(root: Path = ROOT) -> Version | None:
    """Which cgroup hierarchy lambdad can use here, or None."""
    if (root / "cgroup.controllers").exists():
        return Version.V2
    if all((root / c).is_dir() for c in V1_CONTROLLERS):
        return Version.V1
    return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _read(path: Path) -> str:
    with open(path) as handle:
        return handle.read()


def cpu_quota_us(memory_mb: int) -> int:
    return max(1000, CPU_PERIOD_US * memory_mb // MB_PER_VCPU)


def instance_name(runs_dir: Path) -> str:
    """The cgroup parent of the lambdad whose cells live in ``runs_dir`` (same after restarts)."""
    return hashlib.sha256(str(runs_dir.resolve()).encode()).hexdigest()[:16]


class Hierarchy:
    """One lambdad's part of the host's cgroups: ``lambdad/<instance>`` (per controller on v1)."""

    def __init__(self, version: Version, instance: str, root: Path = ROOT) -> None:
        self.version = version
        self.instance = instance
        self.root = root

    def bases(self) -> list[Path]:
        """This instance's parent group: one directory on v2, one per controller on v1."""
        if self.version is Version.V2:
            return [self.root / PARENT / self.instance]
        return [self.root / c / PARENT / self.instance for c in V1_CONTROLLERS]

    def prepare(self) -> None:
        if self.version is Version.V2:
            wanted = "+memory +pids +cpu"
            with contextlib.suppress(OSError):
                _write(self.root / "cgroup.subtree_control", wanted)
            for parent in (self.root / PARENT, self.root / PARENT / self.instance):
                parent.mkdir(exist_ok=True)
                _write(parent / "cgroup.subtree_control", wanted)
        else:
            for base in self.bases():
                base.mkdir(parents=True, exist_ok=True)

    def leftovers(self) -> list[str]:
        """Names of cell groups of this instance that a previous lambdad left behind."""
        names: set[str] = set()
        for base in self.bases():
            with contextlib.suppress(OSError):
                names.update(p.name for p in base.iterdir() if p.is_dir())
        return sorted(names)

    def release(self) -> None:
        """Remove the instance's parent groups (they stay while a cell is left in them)."""
        for base in self.bases():
            with contextlib.suppress(OSError):
                base.rmdir()

    def group(self, name: str) -> CellGroup:
        return CellGroup(self, name)


class CellGroup:
    def __init__(self, hierarchy: Hierarchy, name: str) -> None:
        self.hierarchy = hierarchy
        self.name = name
        #: Whether ``make`` has made the group's directories.
        self._made = False
        bases = hierarchy.bases()
        if hierarchy.version is Version.V2:
            self.dirs = {"all": bases[0] / name}
        else:
            self.dirs = {c: base / name for c, base in zip(V1_CONTROLLERS, bases, strict=True)}
        self._open: dict[tuple[str, str, int], int] = {}

    @property
    def v2(self) -> bool:
        return self.hierarchy.version is Version.V2

    def _dir(self, controller: str) -> Path:
        return self.dirs["all" if self.v2 else controller]

    def make(self, background: bool = False) -> None:
        """The group's directories, with no limits yet (a spare cell's group).

        ``background``: the smallest CPU weight until ``create``, so that a spare cell made
        ahead (its init mounts its root file system) yields the CPUs to cold starts.
        """
        for path in self.dirs.values():
            path.mkdir(exist_ok=True)
        self._made = True
        if background:
            with contextlib.suppress(OSError):
                self._set_weight(background=True)

    def _set_weight(self, background: bool) -> None:
        if self.v2:
            _write(self._dir("cpu") / "cpu.weight", "1" if background else "100")
        else:
            _write(self._dir("cpu") / "cpu.shares", "2" if background else "1024")

    def create(self, memory_mb: int, pids: int) -> None:
        """Make the group if needed and set its limits (raising from "no limit" only).

        A group made ahead (a spare cell's) is not made again: a mkdir in the cgroup file
        system waits for the kernel's cgroup lock, which other cells' creation and removal
        can hold for a long time, and this runs on the event loop on a cold start.
        """
        if not self._made:
            self.make()
        with contextlib.suppress(OSError):
            self._set_weight(background=False)
        limit = str(memory_mb * MB)
        if self.v2:
            d = self._dir("memory")
            _write(d / "memory.max", limit)
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(pids))
        else:
            memory = self._dir("memory")
            _write(memory / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):
                _write(memory / "memory.memsw.limit_in_bytes", limit)
            with contextlib.suppress(OSError):
                _write(memory / "memory.swappiness", "0")
            _write(self._dir("cpu") / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self._dir("pids") / "pids.max", str(pids))

    def limit_cpu(self, memory_mb: int | None) -> None:
        """CPU in proportion to ``memory_mb``; None lifts the limit (the init phase)."""
        quota = cpu_quota_us(memory_mb) if memory_mb is not None else None
        if self.v2:
            value = f"{quota} {CPU_PERIOD_US}" if quota is not None else f"max {CPU_PERIOD_US}"
            _write(self._dir("cpu") / "cpu.max", value)
        else:
            _write(self._dir("cpu") / "cpu.cfs_quota_us", str(quota if quota is not None else -1))

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join this group."""
        return [str(path / "cgroup.procs") for path in self.dirs.values()]

    def _fd(self, controller: str, name: str, flags: int) -> int:
        """A control file kept open for the group's life: the invoke path reads and writes
        the same few files, and opening them each time costs more than the write."""
        key = (controller, name, flags)
        fd = self._open.get(key)
        if fd is None:
            fd = os.open(self._dir(controller) / name, flags | os.O_CLOEXEC)
            self._open[key] = fd
        return fd

    def _hot_write(self, controller: str, name: str, value: bytes) -> None:
        os.pwrite(self._fd(controller, name, os.O_WRONLY), value, 0)

    def _hot_read(self, controller: str, name: str) -> str:
        return os.pread(self._fd(controller, name, os.O_RDONLY), 4096, 0).decode()

    def close_files(self) -> None:
        open_fds, self._open = self._open, {}
        for fd in open_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def peak_memory_mb(self) -> int:
        d = self._dir("memory")
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int(self._hot_read("memory", name)) // MB
        except (OSError, ValueError):
            try:
                current = "memory.current" if self.v2 else "memory.usage_in_bytes"
                return int(_read(d / current)) // MB
            except (OSError, ValueError):
                return 0

    def oom_kills(self) -> int:
        try:
            text = self._hot_read("memory", "memory.events" if self.v2 else "memory.oom_control")
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def freeze(self) -> None:
        if self.v2:
            self._hot_write("freezer", "cgroup.freeze", b"1")
        else:
            self._hot_write("freezer", "freezer.state", b"FROZEN")

    def thaw(self) -> None:
        if self.v2:
            self._hot_write("freezer", "cgroup.freeze", b"0")
        else:
            self._hot_write("freezer", "freezer.state", b"THAWED")

    def pids(self) -> list[int]:
        d = self._dir("pids")
        try:
            return [int(p) for p in _read(d / "cgroup.procs").split()]
        except (OSError, ValueError):
            return []

    def kill_all(self) -> None:
        """SIGKILL every process of the group (thawed first: v1 cannot kill frozen tasks)."""
        with contextlib.suppress(OSError):
            self.thaw()
        if self.v2:
            with contextlib.suppress(OSError):
                _write(self._dir("all") / "cgroup.kill", "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout: float = 2.0) -> bool:
        """Kill what is left and remove the group; False if it could not be removed in time."""
        try:
            return self._remove(timeout)
        finally:
            self.close_files()

    def _remove(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.kill_all()
            remaining = False
            for path in self.dirs.values():
                try:
                    path.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    remaining = True
            if not remaining:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
