"""EventBridge scheduled rules as time triggers: each occurrence sends every Lambda target of
the rule EventBridge's ``Scheduled Event`` (or the target's ``Input`` / ``InputPath``), as an
asynchronous invoke through the durable queue.

A rule is one trigger (``scope.key("rule", name)``) counted from when its schedule was last put
(``Rule.scheduled_at``, on the schedulers' clock); it has no end and no flexible window. Each
target's invoke has a request id of its own derived from the occurrence's ``fire_id`` and the
target's id, and is queued ``once``: a fire repeated after a restart queues nothing twice.

A target Lambda refuses is handled as EventBridge handles an undeliverable event: a retriable
answer (throttling, a function not ready, a fault) is tried again with exponential backoff up
to the target's ``RetryPolicy`` (``MaximumRetryAttempts``, default 185;
``MaximumEventAgeInSeconds``, default 86,400); anything else (no such function, no permission)
is not retried. Then the event goes to the target's ``DeadLetterConfig`` SQS queue with
EventBridge's message attributes (``RULE_ARN``, ``TARGET_ARN``, ``ERROR_CODE``,
``ERROR_MESSAGE``, ``EXHAUSTED_RETRY_CONDITION``, ``RETRY_ATTEMPTS``), or is logged and dropped
without one.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import Callable
from typing import Any

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.clock import SchedulerClock
from lambdad.control.rule_model import Rule, RuleTarget
from lambdad.control.rules import EventRules, RuleEvent
from lambdad.control.schedule_expressions import InvalidExpression, parse_expression
from lambdad.control.scheduled_event import scheduled_event
from lambdad.events.schedules import RETRIED
from lambdad.events.triggers import Trigger, TriggerId
from lambdad.invoke.destinations import Destinations
from lambdad.invoke.service import InvocationType, Invoker, InvokeRequest
from lambdad.store.base import StoreConflict, StoreError

log = logging.getLogger(__name__)

KIND = "rule"
#: How old a missed occurrence may be and still fire when lambdad starts (EventBridge's
#: default event age for a target's retries, 24 hours).
EVENT_AGE = 24 * 3600.0
#: EventBridge's default ``MaximumRetryAttempts`` of a target.
RETRY_ATTEMPTS = 185
#: The longest wait between two attempts (seconds, before the time scale).
_MAX_BACKOFF = 60.0
#: EventBridge's ``ERROR_CODE`` of a dead letter, by Lambda's answer.
_ERROR_CODES = {
    "ResourceNotFoundException": "RESOURCE_NOT_FOUND",
    "AccessDeniedException": "NO_PERMISSIONS",
    "TooManyRequestsException": "THROTTLING",
    "ResourceConflictException": "SDK_CLIENT_ERROR",
    "ServiceException": "INTERNAL_ERROR",
}


def trigger_id(rule: Rule) -> TriggerId:
    return rule.scope.key(KIND, rule.name)


class RuleTriggers:
    """The ``TriggerSource`` of EventBridge scheduled rules."""

    kind = KIND

    def __init__(
        self,
        rules: EventRules,
        invoker: Invoker,
        dead_letters: Destinations,
        clock: SchedulerClock,
        retry_delay: float = 1.0,
    ) -> None:
        self._rules = rules
        self._invoker = invoker
        self._dead_letters = dead_letters
        self._clock = clock
        self._retry_delay = retry_delay

    @staticmethod
    def _trigger(rule: Rule) -> Trigger | None:
        try:
            expression = parse_expression(rule.schedule_expression)
        except InvalidExpression:  # refused at PutRule; a stored one from an older lambdad
            log.warning("rule %s has an invalid schedule %s", rule.arn, rule.schedule_expression)
            return None
        return Trigger(
            id=trigger_id(rule),
            expression=expression,
            anchor=rule.scheduled_at,
            end=None,
            window=0.0,
            event_age=EVENT_AGE,
            detail=rule,
        )

    async def triggers(self) -> list[Trigger]:
        found = (self._trigger(rule) for rule in await self._rules.all() if rule.enabled)
        return [trigger for trigger in found if trigger is not None]

    async def trigger(self, trigger_id: TriggerId) -> Trigger | None:
        account, region, _, name = trigger_id
        try:
            rule = await self._rules.describe(Scope(account, region), name)
        except errors.ResourceNotFoundException:
            return None
        return self._trigger(rule) if rule.enabled else None

    def subscribe(self, listener: Callable[[TriggerId], None]) -> None:
        async def heard(event: RuleEvent) -> None:
            listener(trigger_id(event.rule))

        self._rules.subscribe(heard)

    async def fire(self, trigger: Trigger, occurrence: float, fire_id: str) -> None:
        """Invoke every Lambda target of the rule asynchronously, once per ``fire_id``; each
        target's refusals are retried and dead-lettered on their own."""
        rule: Rule = trigger.detail
        when = datetime.datetime.fromtimestamp(occurrence, datetime.UTC)
        await asyncio.gather(
            *(self._deliver(rule, target, when, occurrence, fire_id) for target in rule.targets)
        )

    async def _deliver(
        self,
        rule: Rule,
        target: RuleTarget,
        when: datetime.datetime,
        occurrence: float,
        fire_id: str,
    ) -> None:
        payload = scheduled_event(rule, when, rule.account_id, rule.region, target)
        attempts = target.maximum_retry_attempts
        if attempts is None:
            attempts = RETRY_ATTEMPTS
        age = target.maximum_event_age_in_seconds
        event_age = EVENT_AGE if age is None else float(age)
        request = InvokeRequest(
            function_name=target.arn,
            qualifier=None,
            payload=payload,
            invocation_type=InvocationType.EVENT,
            request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{fire_id}/{target.id}")),
            once=True,
        )
        retries = 0
        while True:
            try:
                await self._invoker.invoke(rule.scope, request)
                return
            except StoreConflict:
                return  # queued before (a fire repeated after a restart)
            except (errors.LambdaError, StoreError) as exc:
                code = exc.code if isinstance(exc, errors.LambdaError) else "ServiceException"
                message = exc.message if isinstance(exc, errors.LambdaError) else str(exc)
                retried = isinstance(exc, (*RETRIED, StoreError))
                aged = self._clock.now() - occurrence >= event_age
                if retried and retries < attempts and not aged:
                    retries += 1
                    backoff = min(2.0 ** (retries - 1), _MAX_BACKOFF)
                    await asyncio.sleep(self._retry_delay * backoff)
                    continue
                condition = None
                if retried:
                    condition = "MaximumEventAgeInSeconds" if aged else "MaximumRetryAttempts"
                await self._dead_letter(rule, target, payload, code, message, condition, retries)
                return

    async def _dead_letter(
        self,
        rule: Rule,
        target: RuleTarget,
        payload: bytes,
        code: str,
        message: str,
        condition: str | None,
        retries: int,
    ) -> None:
        log.warning("rule %s could not invoke %s: %s: %s", rule.arn, target.arn, code, message)
        if target.dead_letter_arn is None:
            return
        values = {
            "RULE_ARN": rule.arn,
            "TARGET_ARN": target.arn,
            "ERROR_CODE": _ERROR_CODES.get(code, "SDK_CLIENT_ERROR"),
            "ERROR_MESSAGE": message,
            "RETRY_ATTEMPTS": str(retries),
        }
        if condition is not None:
            values["EXHAUSTED_RETRY_CONDITION"] = condition
        attributes: dict[str, Any] = {
            name: {"DataType": "String", "StringValue": value} for name, value in values.items()
        }
        await self._dead_letters.send_dead_letter(
            target.dead_letter_arn, payload.decode(), attributes, label=f"{rule.arn}/{target.id}"
        )

    async def finished(self, trigger: Trigger) -> None:
        """A rule has no last occurrence (no ``at()``, no end): nothing to do."""
