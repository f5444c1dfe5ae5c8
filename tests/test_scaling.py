"""The concurrency scaling rate: how many new environments a function may add per window."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import (
    MEET,
    Rendezvous,
    Server,
    create_function,
    invoke_json,
    wait_until,
)
from tests.test_concurrency import release, throttle_of

WAITER = MEET + "\n\ndef handler(event, context):\n    return {'met': meet()}\n"
#: Answers a token made at import: one per environment (pids repeat across PID namespaces).
ECHO = "import uuid\nTOKEN = str(uuid.uuid4())\n\ndef handler(event, context):\n    return TOKEN\n"


def create(client: Any, code: str, env: dict[str, str] | None = None) -> str:
    return str(create_function(client, code, env=env or {})["FunctionName"])


def test_a_function_beyond_its_scaling_rate_is_throttled_and_warm_ones_are_not(
    start_server: Any, rendezvous: Any
) -> None:
    """With a rate of 1 environment per (very long) window, a second concurrent invoke needs a
    second environment and gets 429 FunctionInvocationRateLimitExceeded; the warm environment
    keeps serving, and another function has a rate of its own."""
    server: Server = start_server({"LAMBDAD_SCALE_RATE": "1", "LAMBDAD_SCALE_WINDOW": "360000"})
    lam = server.client()
    meeting: Rendezvous = rendezvous(2)
    name = create(lam, WAITER, meeting.env)
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(invoke_json, lam, name, {})
        wait_until(lambda: meeting.count == 1)
        throttled = pool.submit(invoke_json, lam, name, {})
        throttle = throttle_of(throttled)
        release(meeting)
        assert held.result()[1] == {"met": 1}
    assert throttle["code"] == "TooManyRequestsException"
    assert throttle["reason"] == "FunctionInvocationRateLimitExceeded"
    assert throttle["message"] == "Rate Exceeded."
    assert int(throttle["retry_after"]) >= 1
    # The warm environment needs no token.
    echo = create(lam, ECHO)
    first = invoke_json(lam, echo, {})[1]
    assert [invoke_json(lam, echo, {})[1] for _ in range(3)] == [first] * 3


def test_the_scaling_rate_refills_over_its_window(start_server: Any, rendezvous: Any) -> None:
    """Rate 1 per 1 s (scaled): once throttled, a new environment is allowed again shortly."""
    server: Server = start_server(
        {"LAMBDAD_SCALE_RATE": "1", "LAMBDAD_SCALE_WINDOW": "100", "LAMBDAD_TIME_SCALE": "0.01"}
    )
    lam = server.client()
    meeting: Rendezvous = rendezvous(2)
    name = create(lam, WAITER, meeting.env)
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(invoke_json, lam, name, {})
        wait_until(lambda: meeting.count == 1)
        throttles: list[dict[str, Any]] = []

        def second_environment_ran() -> bool:
            second = pool.submit(invoke_json, lam, name, {})
            if second.exception(timeout=30) is not None:
                throttles.append(throttle_of(second))
                return False
            return bool(second.result()[1]["met"] == 2)

        assert wait_until(second_environment_ran, 10)
        assert held.result()[1] == {"met": 1}
    assert throttles, "the second environment was never throttled"
    assert {t["reason"] for t in throttles} == {"FunctionInvocationRateLimitExceeded"}


@pytest.mark.no_cluster(
    "LAMBDAD_MAX_ENVIRONMENTS bounds one host's environments (docs/concurrency.md): on a cluster "
    "each worker has its own, and which worker a cold start lands on is the router's choice"
)
def test_at_max_environments_an_idle_one_makes_room_and_busy_ones_throttle(
    start_server: Any, rendezvous: Any
) -> None:
    """``LAMBDAD_MAX_ENVIRONMENTS=2``: a third function's cold start closes the environment
    idle longest; with both busy, a new environment is refused with a 429."""
    server: Server = start_server({"LAMBDAD_MAX_ENVIRONMENTS": "2"})
    lam = server.client()
    first, second, third = (create(lam, ECHO) for _ in range(3))
    token_first = invoke_json(lam, first, {})[1]
    invoke_json(lam, second, {})
    invoke_json(lam, third, {})  # makes room: the first function's environment goes
    assert invoke_json(lam, first, {})[1] != token_first, "the oldest idle environment was closed"

    meeting: Rendezvous = rendezvous(3)
    waiter = create(lam, WAITER, meeting.env)
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(invoke_json, lam, waiter, {}) for _ in range(2)]
        wait_until(lambda: meeting.count == 2)
        refused = pool.submit(invoke_json, lam, third, {})
        throttle = throttle_of(refused)
        release(meeting)
        assert sorted(f.result()[1]["met"] for f in held) == [1, 2]
    assert throttle["reason"] == "ConcurrentInvocationLimitExceeded"
