"""The async retry policy: Lambda's delays and limits in one place, scaled by ``time_scale``."""

from __future__ import annotations

from lambdad.control.event_config import AsyncPolicy
from lambdad.invoke.retries import Backoff, Retries


def test_function_errors_wait_one_then_two_minutes_scaled() -> None:
    """Lambda retries a failed async invocation twice by default, about 1 then 2 minutes later;
    every delay is multiplied by the time scale."""
    policy = Retries(time_scale=0.5).for_config(AsyncPolicy())
    assert policy.max_retries == 2
    assert [policy.retry_delay(n) for n in range(4)] == [30.0, 60.0, None, None]


def test_maximum_retry_attempts_bounds_the_retries() -> None:
    """MaximumRetryAttempts 0 means no retry, 1 means one retry after a minute."""
    retries = Retries()
    assert retries.for_config(AsyncPolicy(max_retry_attempts=0)).retry_delay(0) is None
    one = retries.for_config(AsyncPolicy(max_retry_attempts=1))
    assert [one.retry_delay(0), one.retry_delay(1)] == [60.0, None]


def test_an_event_expires_after_its_maximum_age_scaled() -> None:
    """An event older than MaximumEventAgeInSeconds (scaled) is expired, one just younger not."""
    policy = Retries(time_scale=0.01).for_config(AsyncPolicy(max_event_age=100))
    assert not policy.expired(enqueued_at=1000.0, now=1000.99)
    assert policy.expired(enqueued_at=1000.0, now=1001.01)


def test_throttles_back_off_from_one_second_to_five_minutes() -> None:
    """A throttled event waits 1 s, doubled per throttle, at most 5 minutes (scaled)."""
    retries = Retries(time_scale=2.0)
    assert [retries.throttled_delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert retries.throttled_delay(9) == 512.0
    assert retries.throttled_delay(10) == 600.0
    assert retries.throttled_delay(10_000) == 600.0


def test_the_step_backoff_grows_to_its_cap_and_resets() -> None:
    """The dispatcher's own backoff doubles after each failure up to its cap, and a success
    starts it again from the first delay; many failures never overflow."""
    backoff = Backoff(0.1, 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for _ in range(5000):
        backoff.next_delay()
    assert backoff.next_delay() == 1.0
    backoff.reset()
    assert backoff.next_delay() == 0.1
