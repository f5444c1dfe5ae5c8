"""The loop-lag watchdog (``lambdad.observe.loopwatch``): it reports a loop blocked on CPU or
in a sleeping call, says where, and stays quiet about a process that was merely stopped or
starved. The blocking in these tests is the behaviour under test, not synchronisation."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lambdad.config import load_settings
from lambdad.observe.loopwatch import Lateness, LoopWatch, WatchState

THRESHOLD = 0.1


def spin(seconds: float) -> None:
    """Use ``seconds`` of CPU on the calling thread (however long that takes on this host)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        hashlib.sha256(b"x" * 4096).digest()


async def watched(scenario: str) -> LoopWatch:
    """Run ``scenario`` on a watched loop; the watchdog, closed, with what it reported."""
    watch = LoopWatch(THRESHOLD)
    watch.start()
    try:
        await asyncio.sleep(THRESHOLD)
        if scenario == "cpu":
            spin(4 * THRESHOLD)
        elif scenario == "sleep":
            time.sleep(4 * THRESHOLD)  # noqa: ASYNC251 - the blocking call under test
        else:
            for _ in range(40):
                await asyncio.sleep(THRESHOLD / 10)
        await asyncio.sleep(THRESHOLD)
    finally:
        watch.close()
    return watch


def test_a_loop_busy_on_cpu_is_reported_with_where(caplog: pytest.LogCaptureFixture) -> None:
    """A callback that computes for 4x the threshold (CPU time) is one warning naming its
    function."""
    with caplog.at_level(logging.WARNING, logger="lambdad.loopwatch"):
        watch = asyncio.run(watched("cpu"))
    assert len(watch.reported) == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("event loop blocked for ")
    assert "spin" in line


def test_a_loop_sleeping_in_a_call_is_reported() -> None:
    """A blocking sleep on the loop (no CPU used) is reported too: the loop thread was asleep
    in the same frame, outside the loop's own wait, for the whole interval."""
    watch = asyncio.run(watched("sleep"))
    assert len(watch.reported) == 1
    assert "watched" in watch.reported[0].describe()


def test_a_loop_that_awaits_is_not_reported() -> None:
    """Short awaits and callbacks never trip the watchdog."""
    assert asyncio.run(watched("await")).reported == []


def test_a_stopped_process_is_not_reported() -> None:
    """A process stopped (SIGSTOP) for 5x the threshold did not block its loop: nothing ran,
    so nothing is reported."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from lambdad.observe.loopwatch import LoopWatch

        async def main():
            watch = LoopWatch({THRESHOLD})
            watch.start()
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            for _ in range(20):
                await asyncio.sleep({THRESHOLD} / 10)
            watch.close()
            print(len(watch.reported), flush=True)

        asyncio.run(main())
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGSTOP)
        time.sleep(5 * THRESHOLD)
        child.send_signal(signal.SIGCONT)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "0\n"
    finally:
        child.kill()
        child.wait()


def test_close_is_idempotent_and_final() -> None:
    """``close`` twice is harmless, and a closed watchdog cannot be started again."""

    async def scenario() -> None:
        watch = LoopWatch(THRESHOLD)
        watch.start()
        watch.close()
        watch.close()
        assert watch.state is WatchState.CLOSED
        with pytest.raises(RuntimeError, match="closed"):
            watch.start()

    asyncio.run(scenario())


def test_a_threshold_must_be_positive() -> None:
    """A zero or negative threshold is refused when the watchdog is made."""
    with pytest.raises(ValueError, match="positive"):
        LoopWatch(0)


def test_the_watchdog_setting_is_off_by_default_and_never_negative() -> None:
    """``LAMBDAD_LOOP_WATCHDOG_MS`` defaults to 0 (no watchdog) and refuses negative values."""
    assert load_settings(environ={}).loop_watchdog_ms == 0
    assert load_settings(environ={"LAMBDAD_LOOP_WATCHDOG_MS": "100"}).loop_watchdog_ms == 100
    with pytest.raises(ValueError, match="loop_watchdog_ms"):
        load_settings(environ={"LAMBDAD_LOOP_WATCHDOG_MS": "-1"})


@pytest.mark.parametrize(
    ("wall", "loop_cpu", "process_cpu", "waiting", "blocked"),
    [
        (0.09, 0.09, 0.09, 0.0, False),  # not late enough
        (0.30, 0.15, 0.16, 0.10, True),  # the loop computed for 150 ms
        (0.30, 0.09, 0.10, 0.20, False),  # 90 ms of work stretched by load
        (0.50, 0.01, 0.02, 0.48, False),  # descheduled: runnable, waiting for a CPU
        (0.50, 0.00, 0.01, 0.00, False),  # stopped: asleep, and nothing else ran either
        (0.30, 0.00, 0.28, 0.01, True),  # asleep while another thread ran: the GIL
        (0.30, 0.00, 0.15, 0.01, False),  # asleep, others ran half of it: not sure, quiet
        (0.30, 0.00, 0.28, None, False),  # no schedstat: no GIL verdict
    ],
)
def test_only_a_loop_that_computed_or_was_held_is_blocked(
    wall: float, loop_cpu: float, process_cpu: float, waiting: float | None, blocked: bool
) -> None:
    """The verdict, from the clocks alone (no stack samples): a loop that used more CPU than
    the threshold, or slept while the process's other threads ran (the GIL), was blocked; a
    late loop that was starved or stopped was not."""
    lateness = Lateness(wall, loop_cpu, process_cpu, THRESHOLD, (), waiting)
    assert lateness.blocked() is blocked
