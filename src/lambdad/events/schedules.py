"""EventBridge Scheduler's schedules as time triggers: each occurrence is an asynchronous
invoke of the target function (through the durable queue, so the function's own retries,
dead-letter queue and destinations apply), with Scheduler's retry policy and dead-letter queue
for an invoke that Lambda refuses (a deleted function, throttling).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Callable
from typing import Any

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.clock import SchedulerClock
from lambdad.control.schedule_expressions import parse_expression
from lambdad.control.schedule_model import Schedule
from lambdad.control.schedules import Schedules
from lambdad.events.trigger_retries import RETRIED, RetryKey, TriggerRetries
from lambdad.events.triggers import Trigger, TriggerId
from lambdad.invoke.destinations import Destinations
from lambdad.invoke.service import InvocationType, Invoker, InvokeRequest
from lambdad.store.base import StoreConflict, StoreError

log = logging.getLogger(__name__)

KIND = "schedule"
#: The payload of a target without ``Input``.
EMPTY_INPUT = "{}"


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def payload_of(schedule: Schedule, occurrence: float, execution_id: str, attempt: int) -> bytes:
    """The target's input: ``Input`` as given, Scheduler's context attributes filled in
    (``<aws.scheduler.scheduled-time>``, ...), or ``{}`` without one."""
    return _payload(schedule.input, schedule.arn, occurrence, execution_id, attempt)


def _payload(
    given: str | None, schedule_arn: str, occurrence: float, execution_id: str, attempt: int
) -> bytes:
    text = given if given is not None else EMPTY_INPUT
    if "<aws.scheduler." not in text:
        return text.encode()
    for name, value in (
        ("schedule-arn", schedule_arn),
        ("scheduled-time", _iso(occurrence)),
        ("execution-id", execution_id),
        ("attempt-number", str(attempt)),
    ):
        text = text.replace(f"<aws.scheduler.{name}>", value)
    return text.encode()


def _delivery(scope: Scope, schedule: Schedule, occurrence: float, fire_id: str) -> dict[str, Any]:
    """What every attempt at one occurrence needs (the retry record's body: JSON)."""
    return {
        "account": scope.account_id,
        "region": scope.region,
        "schedule": schedule.arn,
        "target": schedule.target_arn,
        "input": schedule.input,
        "attempts": schedule.retry_attempts,
        "event_age": schedule.event_age,
        "dead_letter": schedule.dead_letter_arn,
        "occurrence": occurrence,
        "fire_id": fire_id,
    }


class ScheduleTriggers:
    """The ``TriggerSource`` of EventBridge Scheduler's schedules."""

    kind = KIND

    def __init__(
        self,
        schedules: Schedules,
        invoker: Invoker,
        dead_letters: Destinations,
        clock: SchedulerClock,
        retries: TriggerRetries,
    ) -> None:
        self._schedules = schedules
        self._invoker = invoker
        self._dead_letters = dead_letters
        self._clock = clock
        self._retries = retries
        retries.handle(KIND, self._retry)

    def _trigger(self, scope: Scope, schedule: Schedule) -> Trigger:
        anchor = schedule.start_date if schedule.start_date is not None else schedule.created
        window = (schedule.window_minutes or 0) * 60.0 if schedule.window_mode == "FLEXIBLE" else 0
        return Trigger(
            id=scope.key(KIND, schedule.group, schedule.name),
            expression=parse_expression(schedule.expression, schedule.timezone),
            anchor=anchor,
            end=schedule.end_date,
            window=window,
            event_age=float(schedule.event_age),
            detail=(scope, schedule),
            changed=schedule.modified,
        )

    async def triggers(self) -> list[Trigger]:
        return [
            self._trigger(scope, schedule)
            for scope, schedule in await self._schedules.every()
            if schedule.state == "ENABLED"
        ]

    async def trigger(self, trigger_id: TriggerId) -> Trigger | None:
        account, region, _, group, name = trigger_id
        scope = Scope(account, region)
        schedule = await self._schedules.find(scope, group, name)
        if schedule is None or schedule.state != "ENABLED":
            return None
        return self._trigger(scope, schedule)

    def subscribe(self, listener: Callable[[TriggerId], None]) -> None:
        self._schedules.subscribe(lambda scope, group, name: listener(scope.key(KIND, group, name)))

    async def fire(self, trigger: Trigger, occurrence: float, fire_id: str) -> None:
        """Invoke the target asynchronously with ``fire_id`` as its (idempotent) request id;
        what Lambda refuses is retried per the RetryPolicy (durably: ``TriggerRetries``),
        then dead-lettered."""
        scope, schedule = trigger.detail
        delivery = _delivery(scope, schedule, occurrence, fire_id)
        await self._attempt((*trigger.id, fire_id), delivery, 1)

    async def _retry(self, key: RetryKey, record: dict[str, Any]) -> None:
        await self._attempt(key, record, int(record["retry"]) + 1)

    async def _attempt(self, key: RetryKey, delivery: dict[str, Any], attempt: int) -> None:
        """Attempt ``attempt`` (1 for the first) at one occurrence's invoke."""
        scope = Scope(delivery["account"], delivery["region"])
        occurrence, fire_id = float(delivery["occurrence"]), str(delivery["fire_id"])
        payload = _payload(delivery["input"], delivery["schedule"], occurrence, fire_id, attempt)
        request = InvokeRequest(
            function_name=delivery["target"],
            qualifier=None,
            payload=payload,
            invocation_type=InvocationType.EVENT,
            request_id=fire_id,
            once=True,
        )
        try:
            await self._invoker.invoke(scope, request)
        except StoreConflict:
            pass  # queued before (a fire repeated after a restart)
        except (errors.LambdaError, StoreError) as exc:
            code = exc.code if isinstance(exc, errors.LambdaError) else "ServiceException"
            message = exc.message if isinstance(exc, errors.LambdaError) else str(exc)
            retried = isinstance(exc, (*RETRIED, StoreError))
            aged = self._clock.now() - occurrence >= float(delivery["event_age"])
            if retried and attempt <= int(delivery["attempts"]) and not aged:
                log.info(
                    "schedule %s: invoking %s for %s was refused (%s); retry %d",
                    delivery["schedule"],
                    delivery["target"],
                    _iso(occurrence),
                    code,
                    attempt,
                )
                await self._retries.later(key, delivery, attempt)
                return
            condition = "MaximumEventAgeInSeconds" if aged else "MaximumRetryAttempts"
            await self._dead_letter(delivery, payload, attempt, code, message, condition)
        if attempt > 1:
            await self._retries.done(key)

    async def _dead_letter(
        self,
        delivery: dict[str, Any],
        payload: bytes,
        attempt: int,
        code: str,
        message: str,
        condition: str,
    ) -> None:
        schedule_arn, target_arn = delivery["schedule"], delivery["target"]
        log.warning(
            "schedule %s could not invoke %s: %s: %s", schedule_arn, target_arn, code, message
        )
        if delivery["dead_letter"] is None:
            return
        fire_id = delivery["fire_id"]
        attributes: dict[str, Any] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (
                ("ERROR_CODE", code),
                ("ERROR_MESSAGE", message),
                ("EXECUTION_ID", fire_id),
                ("EXHAUSTED_RETRY_CONDITION", condition),
                ("RETRY_ATTEMPTS", str(attempt - 1)),
                ("SCHEDULE_ARN", schedule_arn),
                ("TARGET_ARN", target_arn),
            )
        }
        await self._dead_letters.send_dead_letter(
            delivery["dead_letter"], payload.decode(), attributes, label=fire_id
        )

    async def finished(self, trigger: Trigger) -> None:
        scope, schedule = trigger.detail
        if schedule.action_after_completion != "DELETE":
            return
        with contextlib.suppress(errors.ResourceNotFoundException):  # deleted already
            await self._schedules.delete(scope, schedule.name, schedule.group)
