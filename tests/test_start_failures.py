"""A ``lambdad serve`` that cannot start stops what it had started, says why in one line, and
leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_SETTINGS, live_processes, processes_marked, wait_until

LAMBDAD = [sys.executable, "-m", "lambdad.cli.main", "serve"]


def _session_members(sid: int) -> list[int]:
    """Live processes in session ``sid``."""
    return [pid for pid, fields in live_processes().items() if int(fields[3]) == sid]


def _serve(port: int, data_dir: Path) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """Run ``lambdad serve`` to its end in a session of its own; (its result, what is left)."""
    marker = f"LAMBDAD_START_FAILURE_TEST={uuid.uuid4()}"
    name, value = marker.split("=", 1)
    env = {**os.environ, **FAST_SETTINGS, name: value}
    argv = [*LAMBDAD, "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = process.communicate(timeout=60)
    done = subprocess.CompletedProcess(argv, process.returncode, out, err)
    left: list[int] = []

    def nothing_left() -> bool:
        left[:] = sorted(set(_session_members(process.pid)) | set(processes_marked(marker)))
        return not left

    with contextlib.suppress(AssertionError):  # what is left is the caller's to assert
        wait_until(nothing_left, timeout=10)
    return done, left


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def test_a_busy_port_stops_everything_that_started(tmp_path: Path, busy_port: int) -> None:
    """The listener starts last: when its port is taken, the runtime side, the dispatcher and
    the stores that started before it are stopped again, and lambdad exits 1 with one line."""
    done, left = _serve(busy_port, tmp_path / "data")
    assert done.returncode == 1
    assert done.stderr == f"lambdad: cannot start: 127.0.0.1:{busy_port} is already in use\n"
    assert not left, f"processes left behind: {left}"


def test_an_unusable_data_dir_exits_with_a_message(tmp_path: Path) -> None:
    """A data directory that cannot be made (a file is in the way) is named in one line."""
    (tmp_path / "blocked").write_text("a file, not a directory")
    data_dir = tmp_path / "blocked" / "data"
    done, left = _serve(0, data_dir)
    assert done.returncode == 1
    assert done.stderr == f"lambdad: cannot start: Not a directory: {data_dir}\n"
    assert not left, f"processes left behind: {left}"


def test_a_broken_queue_database_exits_with_a_message(tmp_path: Path) -> None:
    """An event queue database that cannot be opened stops the metadata store opened before it
    and exits 1 naming the queue's file, without a traceback or a driver's type."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "queue.db").write_bytes(b"this is not a SQLite database" * 100)
    done, left = _serve(0, data_dir)
    assert done.returncode == 1
    assert done.stderr.startswith(f"lambdad: cannot start: the event queue {data_dir}/queue.db")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert "sqlite3" not in done.stderr
    assert not left, f"processes left behind: {left}"
