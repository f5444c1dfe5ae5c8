"""EventBridge scheduled rules as time triggers: each occurrence sends every Lambda target of
the rule EventBridge's ``Scheduled Event`` (or the target's ``Input`` / ``InputPath``), as an
asynchronous invoke through the durable queue.

A rule is one trigger (``scope.key("rule", name)``) counted from when its schedule was last put
(``Rule.scheduled_at``, on the schedulers' clock); it has no end and no flexible window. Each
target's invoke has a request id of its own derived from the occurrence's ``fire_id`` and the
target's id, and is queued ``once``: a fire repeated after a restart queues nothing twice. A
target Lambda refuses (a deleted function, throttling past the async path's own retries) is
logged; the target's ``DeadLetterConfig`` and ``RetryPolicy`` are stored but not applied yet
(docs/schedules.md).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.rule_model import Rule
from lambdad.control.rules import EventRules, RuleEvent
from lambdad.control.schedule_expressions import InvalidExpression, parse_expression
from lambdad.control.scheduled_event import scheduled_event
from lambdad.events.triggers import Trigger, TriggerId
from lambdad.invoke.service import InvocationType, Invoker, InvokeRequest
from lambdad.store.base import StoreConflict, StoreError

log = logging.getLogger(__name__)

KIND = "rule"
#: How old a missed occurrence may be and still fire when lambdad starts (EventBridge's
#: default event age for a target's retries, 24 hours).
EVENT_AGE = 24 * 3600.0


def trigger_id(rule: Rule) -> TriggerId:
    return rule.scope.key(KIND, rule.name)


class RuleTriggers:
    """The ``TriggerSource`` of EventBridge scheduled rules."""

    kind = KIND

    def __init__(self, rules: EventRules, invoker: Invoker) -> None:
        self._rules = rules
        self._invoker = invoker

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
        """Invoke every Lambda target of the rule asynchronously, once per ``fire_id``."""
        rule: Rule = trigger.detail
        when = datetime.datetime.fromtimestamp(occurrence, datetime.UTC)
        for target in rule.targets:
            request = InvokeRequest(
                function_name=target.arn,
                qualifier=None,
                payload=scheduled_event(rule, when, rule.account_id, rule.region, target),
                invocation_type=InvocationType.EVENT,
                request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{fire_id}/{target.id}")),
                once=True,
            )
            try:
                await self._invoker.invoke(rule.scope, request)
            except StoreConflict:
                continue  # queued before (a fire repeated after a restart)
            except (errors.LambdaError, StoreError) as exc:
                log.warning("rule %s could not invoke %s: %s", rule.arn, target.arn, exc)

    async def finished(self, trigger: Trigger) -> None:
        """A rule has no last occurrence (no ``at()``, no end): nothing to do."""
