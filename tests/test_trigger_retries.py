"""Retries of an invoke that Lambda refused, for a schedule's and a scheduled rule's target, are
durable: a SIGKILL does not lose them, and each retry's record is deleted once its invoke went
through (``events/trigger_retries.py``, docs/schedules.md)."""

from __future__ import annotations

import contextlib
import datetime
import re
import signal
import sqlite3
from typing import Any

import pytest

from tests import test_rule_firing as rules
from tests.conftest import Recorder, Server, shutdown, unique, wait_until
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
#: which Scheduler and EventBridge retry.
PENDING = {"LAMBDAD_FUNCTION_SETTLE_DELAY": "3600", "LAMBDAD_LOG_LEVEL": "INFO"}


def refused(log: str, name: str, kind: str = "schedule/default") -> set[int]:
    """The occurrences (epoch seconds) of schedule (or ``kind`` ``rule``: rule) ``name`` whose
    first invoke was refused."""
    pattern = re.compile(
        rf":{kind}/{re.escape(name)}: invoking \S+ for (\S+) was refused .*; retry 1$",
        re.MULTILINE,
    )
    return {
        int(datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp())
        for when in pattern.findall(log)
    }


def retry_records(server: Server) -> int:
    """The retry records the store of ``server`` holds, read from its database (SQLite, or
    PostgreSQL under ``--store postgres``)."""
    query = "SELECT count(*) FROM docs WHERE tbl = 'trigger_retries'"
    url = server.env.get("LAMBDAD_STORE_URL")
    if url:
        import psycopg  # only under --store postgres: the embedded default needs no driver

        with psycopg.connect(url) as conn:
            row = conn.execute(query).fetchone()
    else:
        path = server.data_dir / "lambdad.db"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def runs_by_time(recorder: Recorder, number: int) -> dict[int, set[str]]:
    """Occurrence time -> the request ids that ran it."""
    runs: dict[int, set[str]] = {}
    for run_id, at in fires(recorder, number):
        runs.setdefault(at, set()).add(run_id)
    return runs


def test_a_refused_invoke_is_retried_after_a_sigkill(start_server: Any, recorder: Recorder) -> None:
    """Occurrences whose invoke was refused (the function not ready) and waiting for a retry
    when lambdad is SIGKILLed are retried after the restart, and each runs once when the
    function is ready; then no retry record is left. AWS retries a refused invoke per the
    schedule's RetryPolicy (exponential backoff and jitter) and is never down; before this,
    only each schedule's last occurrence was sent again at start, and the earlier ones'
    retries were lost."""
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
    assert retry_records(srv) > 0
    again = start_server(FAST_CLOCK, data_dir=srv.data_dir)
    wait_until(lambda: waiting <= {at for _, at in fires(recorder, 7)}, timeout=60)
    runs = runs_by_time(recorder, 7)
    assert all(len(runs[at]) == 1 for at in waiting), runs  # once each, one request id
    wait_until(lambda: retry_records(srv) == 0, timeout=30)
    shutdown(again)


@pytest.mark.slow
def test_a_rule_targets_refused_invoke_is_retried_after_a_sigkill(
    start_server: Any, recorder: Recorder
) -> None:
    """A scheduled rule's occurrences whose target invoke was refused (the function not
    ready) are retried after a SIGKILL and restart, each run once when the function is ready,
    and no retry record is left once they went through. AWS: EventBridge retries a target
    that answered a retriable error with exponential backoff and jitter, up to the target's
    RetryPolicy (185 attempts, 24 hours by default)."""
    srv = start_server({**rules.FASTER_CLOCK, **PENDING})
    lam, events = srv.client(), rules.events_client(srv)
    function = rules.recording(lam, recorder)
    name = unique("rule-retried")
    events.put_rule(Name=name, ScheduleExpression="rate(1 minute)")
    events.put_targets(Rule=name, Targets=[{"Id": "t", "Arn": function}])
    wait_until(lambda: len(refused(srv.log(), name, "rule")) >= 3, timeout=60)
    srv.stop(signal.SIGKILL)
    lam.close()
    events.close()
    waiting = refused(srv.log(), name, "rule")
    assert retry_records(srv) > 0
    again = start_server(rules.FASTER_CLOCK, data_dir=srv.data_dir)
    wait_until(lambda: waiting <= set(runs_by_time(recorder, 1)), timeout=60)
    runs = runs_by_time(recorder, 1)
    assert all(len(runs[at]) == 1 for at in waiting), runs  # once each, one request id
    assert rules.fires(recorder, 9) == []  # each a Scheduled Event of the right shape
    wait_until(lambda: retry_records(srv) == 0, timeout=30)
    shutdown(again)
