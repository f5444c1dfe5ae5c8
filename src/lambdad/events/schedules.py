"""EventBridge Scheduler's schedules as time triggers: each occurrence is an asynchronous
invoke of the target function (through the durable queue, so the function's own retries,
dead-letter queue and destinations apply), with Scheduler's retry policy and dead-letter queue
for an invoke that Lambda refuses (a deleted function, throttling).
"""

from __future__ import annotations

import asyncio
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
from lambdad.events.triggers import Trigger, TriggerId
from lambdad.invoke.destinations import Destinations
from lambdad.invoke.service import InvocationType, Invoker, InvokeRequest
from lambdad.store.base import StoreConflict, StoreError

log = logging.getLogger(__name__)

KIND = "schedule"
#: What Lambda answers that Scheduler tries again (throttling, a function not ready, a fault).
RETRIED = (
    errors.TooManyRequestsException,
    errors.ResourceConflictException,
    errors.ServiceException,
)
#: The payload of a target without ``Input``.
EMPTY_INPUT = "{}"


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def payload_of(schedule: Schedule, occurrence: float, execution_id: str, attempt: int) -> bytes:
    """The target's input: ``Input`` as given, Scheduler's context attributes filled in
    (``<aws.scheduler.scheduled-time>``, ...), or ``{}`` without one."""
    text = schedule.input if schedule.input is not None else EMPTY_INPUT
    for name, value in (
        ("schedule-arn", schedule.arn),
        ("scheduled-time", _iso(occurrence)),
        ("execution-id", execution_id),
        ("attempt-number", str(attempt)),
    ):
        text = text.replace(f"<aws.scheduler.{name}>", value)
    return text.encode()


class ScheduleTriggers:
    """The ``TriggerSource`` of EventBridge Scheduler's schedules."""

    kind = KIND

    def __init__(
        self,
        schedules: Schedules,
        invoker: Invoker,
        dead_letters: Destinations,
        clock: SchedulerClock,
        retry_delay: float = 1.0,
    ) -> None:
        self._schedules = schedules
        self._invoker = invoker
        self._dead_letters = dead_letters
        self._clock = clock
        self._retry_delay = retry_delay

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
        what Lambda refuses is retried per the RetryPolicy, then dead-lettered."""
        scope, schedule = trigger.detail
        attempt = 0
        while True:
            attempt += 1
            request = InvokeRequest(
                function_name=schedule.target_arn,
                qualifier=None,
                payload=payload_of(schedule, occurrence, fire_id, attempt),
                invocation_type=InvocationType.EVENT,
                request_id=fire_id,
                once=True,
            )
            try:
                await self._invoker.invoke(scope, request)
                return
            except StoreConflict:
                return  # queued before (a fire repeated after a restart)
            except (errors.LambdaError, StoreError) as exc:
                code = exc.code if isinstance(exc, errors.LambdaError) else "ServiceException"
                message = exc.message if isinstance(exc, errors.LambdaError) else str(exc)
                retried = isinstance(exc, (*RETRIED, StoreError))
                aged = self._clock.now() - occurrence >= schedule.event_age
                if retried and attempt <= schedule.retry_attempts and not aged:
                    await asyncio.sleep(self._retry_delay * min(2 ** (attempt - 1), 60))
                    continue
                condition = "MaximumEventAgeInSeconds" if aged else "MaximumRetryAttempts"
                await self._dead_letter(
                    schedule, occurrence, fire_id, attempt, code, message, condition
                )
                return

    async def _dead_letter(
        self,
        schedule: Schedule,
        occurrence: float,
        fire_id: str,
        attempt: int,
        code: str,
        message: str,
        condition: str,
    ) -> None:
        log.warning(
            "schedule %s could not invoke %s: %s: %s",
            schedule.arn,
            schedule.target_arn,
            code,
            message,
        )
        if schedule.dead_letter_arn is None:
            return
        attributes: dict[str, Any] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (
                ("ERROR_CODE", code),
                ("ERROR_MESSAGE", message),
                ("EXECUTION_ID", fire_id),
                ("EXHAUSTED_RETRY_CONDITION", condition),
                ("RETRY_ATTEMPTS", str(attempt - 1)),
                ("SCHEDULE_ARN", schedule.arn),
                ("TARGET_ARN", schedule.target_arn),
            )
        }
        body = payload_of(schedule, occurrence, fire_id, attempt).decode()
        await self._dead_letters.send_dead_letter(
            schedule.dead_letter_arn, body, attributes, label=fire_id
        )

    async def finished(self, trigger: Trigger) -> None:
        scope, schedule = trigger.detail
        if schedule.action_after_completion != "DELETE":
            return
        with contextlib.suppress(errors.ResourceNotFoundException):  # deleted already
            await self._schedules.delete(scope, schedule.name, schedule.group)
