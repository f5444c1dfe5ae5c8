"""EventBridge scheduled rules as time triggers: each occurrence sends every Lambda target of
the rule EventBridge's ``Scheduled Event`` (or the target's ``Input`` / ``InputPath``), as an
asynchronous invoke through the durable queue.

A rule is one trigger (``scope.key("rule", name)``) counted from when its schedule was last put
(``Rule.scheduled_at``, on the schedulers' clock); it has no end and no flexible window. Each
target's invoke has a request id of its own derived from the occurrence's ``fire_id`` and the
target's id, and is queued ``once``: a fire repeated after a restart queues nothing twice.

A target Lambda refuses is handled as EventBridge handles an undeliverable event: a retriable
answer (throttling, a function not ready, a fault) is tried again with exponential backoff and
jitter, durably (``events/trigger_retries.py``: a restart resumes it), up to the target's
``RetryPolicy`` (``MaximumRetryAttempts``, default 185; ``MaximumEventAgeInSeconds``, default
86,400); anything else (no such function, no permission)
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
from lambdad.events.trigger_retries import RETRIED, RetryKey, TriggerRetries
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
#: EventBridge's ``ERROR_CODE`` of a dead letter, by Lambda's answer.
_ERROR_CODES = {
    "ResourceNotFoundException": "RESOURCE_NOT_FOUND",
    "AccessDeniedException": "NO_PERMISSIONS",
    "TooManyRequestsException": "THROTTLING",
    "ResourceConflictException": "SDK_CLIENT_ERROR",
    "ServiceException": "INTERNAL_ERROR",
}


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        retries: TriggerRetries,
    ) -> None:
        self._rules = rules
        self._invoker = invoker
        self._dead_letters = dead_letters
        self._clock = clock
        self._retries = retries
        retries.handle(KIND, self._retry)

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
            changed=max(rule.scheduled_at, rule.changed_at),
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
        attempts = target.maximum_retry_attempts
        age = target.maximum_event_age_in_seconds
        request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{fire_id}/{target.id}"))
        delivery = {
            "account": rule.account_id,
            "region": rule.region,
            "rule": rule.arn,
            "target": target.arn,
            "payload": scheduled_event(rule, when, rule.account_id, rule.region, target).decode(),
            "attempts": RETRY_ATTEMPTS if attempts is None else attempts,
            "event_age": EVENT_AGE if age is None else float(age),
            "dead_letter": target.dead_letter_arn,
            "occurrence": occurrence,
            "request_id": request_id,
        }
        await self._attempt((*trigger_id(rule), request_id), delivery, 0)

    async def _retry(self, key: RetryKey, record: dict[str, Any]) -> None:
        await self._attempt(key, record, int(record["retry"]))

    async def _attempt(self, key: RetryKey, delivery: dict[str, Any], retries: int) -> None:
        """One attempt at a target's invoke, after ``retries`` retries (0: the first)."""
        request = InvokeRequest(
            function_name=delivery["target"],
            qualifier=None,
            payload=delivery["payload"].encode(),
            invocation_type=InvocationType.EVENT,
            request_id=delivery["request_id"],
            once=True,
        )
        try:
            await self._invoker.invoke(Scope(delivery["account"], delivery["region"]), request)
        except StoreConflict:
            pass  # queued before (a fire repeated after a restart)
        except (errors.LambdaError, StoreError) as exc:
            code = exc.code if isinstance(exc, errors.LambdaError) else "ServiceException"
            message = exc.message if isinstance(exc, errors.LambdaError) else str(exc)
            retried = isinstance(exc, (*RETRIED, StoreError))
            aged = self._clock.now() - float(delivery["occurrence"]) >= delivery["event_age"]
            if retried and retries < int(delivery["attempts"]) and not aged:
                log.info(
                    "rule %s: invoking %s for %s was refused (%s); retry %d",
                    delivery["rule"],
                    delivery["target"],
                    _iso(float(delivery["occurrence"])),
                    code,
                    retries + 1,
                )
                await self._retries.later(key, delivery, retries + 1)
                return
            condition = None
            if retried:
                condition = "MaximumEventAgeInSeconds" if aged else "MaximumRetryAttempts"
            await self._dead_letter(delivery, code, message, condition, retries)
        if retries:
            await self._retries.done(key)

    async def _dead_letter(
        self,
        delivery: dict[str, Any],
        code: str,
        message: str,
        condition: str | None,
        retries: int,
    ) -> None:
        rule_arn, target_arn = delivery["rule"], delivery["target"]
        log.warning("rule %s could not invoke %s: %s: %s", rule_arn, target_arn, code, message)
        if delivery["dead_letter"] is None:
            return
        values = {
            "RULE_ARN": rule_arn,
            "TARGET_ARN": target_arn,
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
            delivery["dead_letter"],
            delivery["payload"],
            attributes,
            label=f"{rule_arn}/{delivery['request_id']}",
        )

    async def finished(self, trigger: Trigger) -> None:
        """A rule has no last occurrence (no ``at()``, no end): nothing to do."""
