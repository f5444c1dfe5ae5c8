"""A loop-lag watchdog: notices when lambdad's event loop was blocked, and says where.

A watcher thread posts a no-op to the loop every quarter of the threshold and waits for it to
run. When it is late by more than the threshold, the watcher samples the loop thread every
quarter threshold (its Python stack, from ``sys._current_frames()``, and its scheduler state
and system call, from ``/proc``) until the no-op runs, then decides whether the loop was
*blocked* or merely *starved*:

- blocked on CPU: the loop thread itself consumed more CPU than the threshold during the
  late interval (its own CPU clock, ``pthread_getcpuclockid``): load stretches the wall time
  of such work but never its CPU time, and a descheduled thread does not advance it;
- blocked off CPU: every sample found the loop thread asleep (state S or D) in the same frame
  outside the loop's idle wait, in a system call other than ``futex`` (``time.sleep``, a
  blocking read), or in ``futex`` (the GIL, a lock) while the process's other threads used at
  least half of the interval (a thread holding the GIL in C code);
- held off the GIL: the loop thread spent more than the threshold neither running nor waiting
  for a CPU (its ``schedstat``: run time and run-queue delay) while the process's other threads
  ran for most of that time. The no-op's wake-up ends the loop's idle wait, so that sleep was
  a wait for the GIL held by a thread computing in C code (``json.loads`` moved to a thread),
  which the watcher, needing the GIL to sample, cannot see otherwise.

A thread that is runnable but not running (state R, no CPU consumed) is starved, not blocked,
and is never reported: the watchdog must not flake on a loaded machine (``docs/testing.md``).
A blocked interval is logged as one WARNING line starting ``event loop blocked``.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import os
import platform
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("lambdad.loopwatch")

#: The ``futex`` system call numbers (``futex``, ``futex_waitv``) by machine.
_FUTEX = {"x86_64": {202, 449}, "aarch64": {98, 449}}.get(platform.machine(), set())
#: Frames in which an idle loop waits for events (asyncio's selector, uvloop's run call).
_IDLE_FUNCTIONS = {"select", "poll", "run_forever", "_run_once", "run_until_complete", "run"}
_IDLE_FILES = ("selectors.py", "base_events.py", "runners.py", "uvloop")
_OWN = os.sep + "lambdad" + os.sep


class WatchState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Sample:
    """The loop thread at one moment while the loop was late."""

    state: str
    syscall: int | None
    where: str
    idle: bool


@dataclass(frozen=True, slots=True)
class Lateness:
    """One late interval: its length, the CPU the loop thread and the process used, samples."""

    wall: float
    loop_cpu: float
    process_cpu: float
    threshold: float
    samples: tuple[Sample, ...]
    #: How long the loop thread waited for a CPU (run-queue delay); None where unknown.
    loop_waiting: float | None = None

    @property
    def held(self) -> float:
        """How long the loop thread slept (neither ran nor waited for a CPU); 0 if unknown."""
        if self.loop_waiting is None:
            return 0.0
        return max(0.0, self.wall - self.loop_cpu - self.loop_waiting)

    def gil_held(self) -> bool:
        """The loop slept longer than the threshold while other threads of the process ran."""
        others = self.process_cpu - self.loop_cpu
        return self.held > self.threshold and others >= 0.8 * self.held

    def blocked(self) -> bool:
        """Late by more than the threshold, and not because the process was starved."""
        if self.wall <= self.threshold:
            return False
        if self.loop_cpu > self.threshold or self.gil_held():
            return True
        asleep = [s for s in self.samples if s.state in ("S", "D") and not s.idle]
        if len(asleep) < 2 or len(asleep) != len(self.samples):
            return False
        if len({s.where for s in asleep}) != 1:
            return False
        in_futex = any(s.syscall is None or s.syscall in _FUTEX for s in asleep)
        return not in_futex or self.process_cpu - self.loop_cpu >= self.wall / 2

    def describe(self) -> str:
        where = collections.Counter(s.where for s in self.samples if not s.idle)
        if self.loop_cpu <= self.threshold and self.gil_held():
            place = f"another thread holding the GIL (loop thread asleep {self.held * 1000:.0f} ms)"
        elif where:
            place = where.most_common(1)[0][0]
        else:
            place = "no Python frame (C code of the loop)"
        return (
            f"event loop blocked for {self.wall * 1000:.0f} ms "
            f"(loop thread CPU {self.loop_cpu * 1000:.0f} ms, "
            f"process CPU {self.process_cpu * 1000:.0f} ms) in {place}"
        )


class LoopWatch:
    """Watches the running loop of the thread that calls ``start()``; ``close()`` stops it."""

    def __init__(self, threshold: float) -> None:
        if threshold <= 0:
            raise ValueError("the watchdog threshold must be positive")
        self.threshold = threshold
        self.state = WatchState.NEW
        self.reported: list[Lateness] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ident = 0
        self._native = 0

    def start(self) -> None:
        """Start watching the running loop (call it from a coroutine on that loop)."""
        if self.state is not WatchState.NEW:
            raise RuntimeError(f"watchdog is {self.state.value}")
        self._loop = asyncio.get_running_loop()
        self._ident = threading.get_ident()
        self._native = threading.get_native_id()
        self._thread = threading.Thread(target=self._watch, name="loopwatch", daemon=True)
        self.state = WatchState.RUNNING
        self._thread.start()

    def close(self) -> None:
        """Stop the watcher thread; calling it again does nothing."""
        if self.state is WatchState.CLOSED:
            return
        self.state = WatchState.CLOSED
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        period = self.threshold / 4
        while not self._stop.wait(period):
            lateness = self._measure(period)
            if lateness is not None and lateness.blocked():
                self.reported.append(lateness)
                log.warning("%s", lateness.describe())

    def _measure(self, period: float) -> Lateness | None:
        """Post a no-op to the loop, sampling the loop thread until it runs; how late it was."""
        assert self._loop is not None
        ran = threading.Event()
        done: list[float] = []

        def ping() -> None:
            done[:] = [time.monotonic(), time.thread_time()]
            ran.set()

        loop_cpu = self._loop_cpu()
        waiting = _run_delay(self._native)
        process_cpu = time.process_time()
        posted = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(ping)
        except RuntimeError:  # the loop is closed: nothing left to watch
            self._stop.set()
            return None
        samples = []
        while not ran.wait(period):
            if self._stop.is_set():
                return None
            sample = self._sample()
            if sample is not None:
                samples.append(sample)
        waited = _run_delay(self._native)
        return Lateness(
            wall=done[0] - posted,
            loop_cpu=done[1] - loop_cpu,
            process_cpu=time.process_time() - process_cpu,
            threshold=self.threshold,
            samples=tuple(samples),
            # Read after the no-op ran: any later wait only makes ``held`` smaller.
            loop_waiting=None if waiting is None or waited is None else waited - waiting,
        )

    def _loop_cpu(self) -> float:
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(self._ident))
        except (OSError, AttributeError):
            return 0.0

    def _sample(self) -> Sample | None:
        frame = sys._current_frames().get(self._ident)
        if frame is None:
            return None
        state, syscall = _thread_state(self._native)
        return Sample(state, syscall, _where(frame), _idle(frame))


def _run_delay(native_id: int) -> float | None:
    """Seconds a thread of this process has spent runnable but waiting for a CPU."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", "rb") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _thread_state(native_id: int) -> tuple[str, int | None]:
    """The scheduler state letter and the current system call of a thread of this process."""
    base = f"/proc/self/task/{native_id}"
    try:
        with open(f"{base}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "?", None
    try:
        with open(f"{base}/syscall", "rb") as handle:
            first = handle.read().split()[0]
        return state, int(first) if first.isdigit() else None
    except (OSError, IndexError, ValueError):
        return state, None


def _idle(frame: FrameType) -> bool:
    code = frame.f_code
    return code.co_name in _IDLE_FUNCTIONS and any(n in code.co_filename for n in _IDLE_FILES)


def _where(frame: FrameType) -> str:
    """The innermost frame and the two innermost frames of lambdad's own code, compactly."""
    stack = traceback.extract_stack(frame)
    own = [f for f in stack[:-1] if _is_own(f.filename)]
    chosen = [stack[-1], *reversed(own[-2:])]
    return " <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in chosen)


def _is_own(filename: str) -> bool:
    """A file of lambdad's package (not of a package installed under a checkout of it)."""
    index = filename.rfind(_OWN)
    return index >= 0 and "site-packages" not in filename[index:]


def _short(filename: str) -> str:
    for marker in (_OWN, os.sep + "site-packages" + os.sep, os.path.dirname(os.__file__) + os.sep):
        index = filename.rfind(marker)
        if index >= 0:
            return filename[index + 1 :] if marker == _OWN else filename[index + len(marker) :]
    return filename
