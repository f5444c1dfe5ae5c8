"""Retries of a schedule's invoke that Lambda refused are durable: a SIGKILL does not lose
them (``events/trigger_retries.py``, docs/schedules.md)."""

from __future__ import annotations

import datetime
import re
import signal
from typing import Any

from tests.conftest import Recorder, shutdown, unique, wait_until
from tests.test_scheduler import (
    FAST_CLOCK,
    OFF,
    fires,
    fn_arn,
    input_of,
    recording,
    scheduler_client,
    target,
)

#: The function stays Pending for an hour: every invoke of it is ResourceConflictException,
#: which Scheduler retries.
PENDING = {"LAMBDAD_FUNCTION_SETTLE_DELAY": "3600", "LAMBDAD_LOG_LEVEL": "INFO"}


def refused(log: str, name: str) -> set[int]:
    """The occurrences (epoch seconds) of schedule ``name`` whose first invoke was refused."""
    pattern = re.compile(
        rf":schedule/default/{re.escape(name)}: invoking \S+ for (\S+) was refused .*; retry 1$",
        re.MULTILINE,
    )
    return {
        int(datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp())
        for when in pattern.findall(log)
    }


def test_a_refused_invoke_is_retried_after_a_sigkill(start_server: Any, recorder: Recorder) -> None:
    """Occurrences whose invoke was refused (the function not ready) and waiting for a retry
    when lambdad is SIGKILLed are retried after the restart, and each runs once when the
    function is ready. AWS retries a refused invoke per the schedule's RetryPolicy
    (exponential backoff and jitter) and is never down; before this, only each schedule's
    last occurrence was sent again at start, and the earlier ones' retries were lost."""
    srv = start_server({**FAST_CLOCK, **PENDING})
    lam, sched = srv.client(), scheduler_client(srv)
    function = recording(lam, recorder)
    name = unique("retried")
    sched.create_schedule(
        Name=name,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=OFF,
        Target=target(fn_arn(function), Input=input_of(7)),
    )
    wait_until(lambda: len(refused(srv.log(), name)) >= 3, timeout=60)
    srv.stop(signal.SIGKILL)
    lam.close()
    sched.close()
    waiting = refused(srv.log(), name)
    # The restart: the function is ready now (no settle delay), the retries go through.
    again = start_server(FAST_CLOCK, data_dir=srv.data_dir)
    wait_until(lambda: waiting <= {at for _, at in fires(recorder, 7)}, timeout=60)
    runs: dict[int, set[str]] = {}
    for run_id, at in fires(recorder, 7):
        runs.setdefault(at, set()).add(run_id)
    assert all(len(runs[at]) == 1 for at in waiting), runs  # once each, one request id
    shutdown(again)
