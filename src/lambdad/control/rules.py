"""EventBridge scheduled rules: Put/Enable/Disable/Delete/Describe/ListRules, their targets
and tags.

Each rule is one document of ``Table.EVENT_RULES`` keyed ``(account, region, name)``, on the
``default`` event bus (the only one lambdad has: any other bus "does not exist", as AWS says
of a bus never created). Only schedules are served: a rule with an ``EventPattern`` is refused
with a ValidationException that says so, and targets other than Lambda functions fail one by
one in ``FailedEntries``. Whoever fires schedules subscribes (``subscribe``) and hears of every
rule written (``RulePut``: created, changed, enabled, disabled, targets or tags changed) and
of every one deleted (``RuleDeleted``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.rule_model import (
    DEFAULT_BUS,
    MAX_TARGETS,
    Rule,
    RuleState,
    RuleTarget,
)
from lambdad.control.rule_requests import (
    PutRuleRequest,
    PutTargetsRequest,
    RemoveTargetsRequest,
    Tag,
    Target,
)
from lambdad.control.schedule_expressions import InvalidExpression, parse_expression
from lambdad.control.scheduled_event import valid_path
from lambdad.store.base import Store, Table

_log = logging.getLogger(__name__)
T = TypeVar("T")

#: ListRules' and ListTargetsByRule's page when no Limit is given.
DEFAULT_PAGE = 100
#: A Lambda function (or version, or alias) a rule may target.
_FUNCTION_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(-gov)?-[a-z]+-\d{1}:\d{12}:function:"
    r"[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
_RULE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:events:([a-z0-9-]+):(\d{12}):rule/([\.\-_A-Za-z0-9]+)")
_BUS_ARN = re.compile(r"arn:aws[\w-]*:events:([a-z0-9-]+):(\d{12}):event-bus/(.+)")
#: Members of a target that only other kinds of target than Lambda use.
_OTHER_KINDS = (
    "input_transformer",
    "kinesis_parameters",
    "run_command_parameters",
    "ecs_parameters",
    "batch_parameters",
    "sqs_parameters",
    "http_parameters",
    "redshift_data_parameters",
    "sage_maker_pipeline_parameters",
    "app_sync_parameters",
)
INVALID_EXPRESSION = "Parameter ScheduleExpression is not valid."
PATTERNS_NOT_SUPPORTED = (
    "lambdad serves scheduled rules only: EventPattern is not supported. Give the rule a"
    " ScheduleExpression (rate(...) or cron(...)) instead."
)


@dataclasses.dataclass(frozen=True, slots=True)
class RulePut:
    """A rule was created or changed (its state, schedule, targets or tags)."""

    rule: Rule


@dataclasses.dataclass(frozen=True, slots=True)
class RuleDeleted:
    rule: Rule


RuleEvent = RulePut | RuleDeleted
RuleListener = Callable[[RuleEvent], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class FailedEntry:
    """One target PutTargets or RemoveTargets did not take, as ``FailedEntries`` lists it."""

    target_id: str
    error_code: str
    error_message: str


def not_found(name: str) -> errors.ResourceNotFoundException:
    return errors.ResourceNotFoundException(f"Rule {name} does not exist on EventBus default.")


class EventRules:
    """Every scheduled rule of every account, with its targets and tags."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._listeners: list[RuleListener] = []
        self._lock = asyncio.Lock()

    def subscribe(self, listener: RuleListener) -> None:
        """Call ``listener`` with every rule written or deleted from now on (in order, each
        awaited; one that raises is logged and the write stands).

        Listeners are called while the rules' lock is held, so that they hear the writes in
        the order they were made: a listener must be quick and must not write rules itself
        (reading them, ``all()``, is fine)."""
        self._listeners.append(listener)

    async def all(self) -> list[Rule]:
        """Every rule of every account (for whoever fires them)."""
        return [Rule.from_doc(doc) for _, doc in await self._store.scan(Table.EVENT_RULES)]

    # ---------------------------------------------------------------- rules

    async def put_rule(self, scope: Scope, req: PutRuleRequest) -> Rule:
        """Create or replace a rule (keeping its targets and tags; new tags are added)."""
        _check_bus(scope, req.event_bus_name)
        if req.event_pattern is not None:
            raise errors.ValidationException(PATTERNS_NOT_SUPPORTED)
        if req.schedule_expression is None:
            raise errors.ValidationException(
                "Parameter(s) EventPattern or ScheduleExpression must be specified."
            )
        check_expression(req.schedule_expression)
        async with self._lock:
            old = await self._get(scope, req.name)
            scheduled_at = changed_at = self._clock()
            state = RuleState(req.state or RuleState.ENABLED)
            if old is not None and old.schedule_expression == req.schedule_expression:
                scheduled_at = old.scheduled_at
                changed_at = old.changed_at if old.state is state else changed_at
            rule = Rule(
                account_id=scope.account_id,
                region=scope.region,
                name=req.name,
                schedule_expression=req.schedule_expression,
                state=state,
                description=req.description,
                role_arn=req.role_arn,
                scheduled_at=scheduled_at,
                changed_at=changed_at,
                targets=old.targets if old is not None else (),
                tags=_merged(old.tags if old is not None else (), req.tags or []),
            )
            await self._write(rule)
        return rule

    async def describe(self, scope: Scope, name: str, bus: str | None = None) -> Rule:
        _check_bus(scope, bus)
        return await self._existing(scope, name)

    async def set_state(self, scope: Scope, name: str, bus: str | None, *, enabled: bool) -> None:
        """EnableRule / DisableRule."""
        _check_bus(scope, bus)
        state = RuleState.ENABLED if enabled else RuleState.DISABLED
        async with self._lock:
            rule = await self._existing(scope, name)
            if rule.state is not state:
                changed = dataclasses.replace(rule, state=state, changed_at=self._clock())
                await self._write(changed)

    async def delete(self, scope: Scope, name: str, bus: str | None = None) -> None:
        """DeleteRule: refused while the rule has targets; a rule that does not exist is
        deleted already (AWS answers success)."""
        _check_bus(scope, bus)
        async with self._lock:
            rule = await self._get(scope, name)
            if rule is None:
                return
            if rule.targets:
                raise errors.ValidationException("Rule can't be deleted since it has targets.")
            await self._store.delete(Table.EVENT_RULES, scope.key(name))
            await self._publish(RuleDeleted(rule))

    async def list_rules(
        self,
        scope: Scope,
        prefix: str | None,
        bus: str | None,
        token: str | None,
        limit: int | None,
    ) -> tuple[list[Rule], str | None]:
        _check_bus(scope, bus)
        rows = await self._store.scan(Table.EVENT_RULES, scope.key())
        rules = [Rule.from_doc(doc) for _, doc in rows]
        chosen = [r for r in rules if prefix is None or r.name.startswith(prefix)]
        return _page(chosen, token, limit)

    # ---------------------------------------------------------------- targets

    async def put_targets(self, scope: Scope, req: PutTargetsRequest) -> list[FailedEntry]:
        """Add or replace targets by Id. Targets that are not Lambda functions fail one by
        one; more than five targets in all refuses the whole request, as AWS does."""
        _check_bus(scope, req.event_bus_name)
        failed: list[FailedEntry] = []
        taken: dict[str, RuleTarget] = {}
        for target in req.targets:
            problem = _target_problem(target)
            if problem is not None:
                failed.append(FailedEntry(target.id, "ValidationException", problem))
            else:
                taken[target.id] = _rule_target(target)
        async with self._lock:
            rule = await self._existing(scope, req.rule)
            targets = {t.id: t for t in rule.targets}
            targets.update(taken)
            if len(targets) > MAX_TARGETS:
                raise errors.LimitExceededException(
                    f"The requested resource exceeds the maximum number allowed."
                    f" (a rule has at most {MAX_TARGETS} targets)"
                )
            if taken:
                await self._write(dataclasses.replace(rule, targets=tuple(targets.values())))
        return failed

    async def remove_targets(self, scope: Scope, req: RemoveTargetsRequest) -> list[FailedEntry]:
        """Remove targets by Id (an Id the rule does not have is ignored)."""
        _check_bus(scope, req.event_bus_name)
        async with self._lock:
            rule = await self._existing(scope, req.rule)
            kept = tuple(t for t in rule.targets if t.id not in set(req.ids))
            if kept != rule.targets:
                await self._write(dataclasses.replace(rule, targets=kept))
        return []

    async def list_targets(
        self, scope: Scope, name: str, bus: str | None, token: str | None, limit: int | None
    ) -> tuple[list[RuleTarget], str | None]:
        _check_bus(scope, bus)
        rule = await self._existing(scope, name)
        return _page(list(rule.targets), token, limit)

    # ---------------------------------------------------------------- tags

    async def tag(self, scope: Scope, arn: str, tags: list[Tag]) -> None:
        name = _rule_name(scope, arn)
        async with self._lock:
            rule = await self._existing(scope, name)
            await self._write(dataclasses.replace(rule, tags=_merged(rule.tags, tags)))

    async def untag(self, scope: Scope, arn: str, keys: list[str]) -> None:
        name = _rule_name(scope, arn)
        async with self._lock:
            rule = await self._existing(scope, name)
            kept = tuple((k, v) for k, v in rule.tags if k not in set(keys))
            await self._write(dataclasses.replace(rule, tags=kept))

    async def tags(self, scope: Scope, arn: str) -> tuple[tuple[str, str], ...]:
        return (await self._existing(scope, _rule_name(scope, arn))).tags

    # ---------------------------------------------------------------- storage

    async def _get(self, scope: Scope, name: str) -> Rule | None:
        doc = await self._store.get(Table.EVENT_RULES, scope.key(name))
        return None if doc is None else Rule.from_doc(doc)

    async def _existing(self, scope: Scope, name: str) -> Rule:
        rule = await self._get(scope, name)
        if rule is None:
            raise not_found(name)
        return rule

    async def _write(self, rule: Rule) -> None:
        await self._store.put(Table.EVENT_RULES, rule.scope.key(rule.name), rule.to_doc())
        await self._publish(RulePut(rule))

    async def _publish(self, event: RuleEvent) -> None:
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                _log.exception("a listener of rule changes failed on %s", event)


def check_expression(text: str) -> None:
    """Refuse what EventBridge rules refuse: anything but a valid rate() or cron() (UTC)."""
    try:
        expression = parse_expression(text)
    except InvalidExpression as exc:
        _log.debug("refused schedule expression %r: %s", text, exc.reason)
        raise errors.ValidationException(INVALID_EXPRESSION) from None
    if expression.is_one_time():  # at() is Scheduler's, not rules'
        raise errors.ValidationException(INVALID_EXPRESSION)


def _check_bus(scope: Scope, bus: str | None) -> None:
    if bus is None or bus == DEFAULT_BUS:
        return
    arn = _BUS_ARN.fullmatch(bus)
    if arn is not None and arn.groups() == (scope.region, scope.account_id, DEFAULT_BUS):
        return
    raise errors.ResourceNotFoundException(
        f"Event bus {bus} does not exist. (lambdad serves only the default event bus.)"
    )


def _target_problem(target: Target) -> str | None:
    """Why lambdad cannot take ``target`` (None: it can)."""
    if _FUNCTION_ARN.fullmatch(target.arn) is None:
        return (
            f"lambdad delivers scheduled events to Lambda functions only: {target.arn} is not"
            " a Lambda function ARN."
        )
    other = [name for name in _OTHER_KINDS if getattr(target, name) is not None]
    if other:
        wire = "".join(part.title() for part in other[0].split("_"))
        return f"{wire} is not supported by lambdad (Lambda targets take Input or InputPath)."
    given = [target.input is not None, target.input_path is not None]
    if all(given):
        return "Only one of Input, InputPath, or InputTransformer must be provided."
    if target.input is not None and not _is_json(target.input):
        return "Input is not valid JSON text."
    if target.input_path is not None and not valid_path(target.input_path):
        return "InputPath is not a valid JsonPath."
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _rule_target(target: Target) -> RuleTarget:
    dlq = target.dead_letter_config
    retry = target.retry_policy
    return RuleTarget(
        id=target.id,
        arn=target.arn,
        input=target.input,
        input_path=target.input_path,
        role_arn=target.role_arn,
        dead_letter_arn=dlq.arn if dlq is not None else None,
        maximum_retry_attempts=retry.maximum_retry_attempts if retry is not None else None,
        maximum_event_age_in_seconds=(
            retry.maximum_event_age_in_seconds if retry is not None else None
        ),
    )


def _rule_name(scope: Scope, arn: str) -> str:
    match = _RULE_ARN.fullmatch(arn)
    if match is None:
        raise errors.ValidationException(f"Provided ARN {arn} is not a valid rule ARN.")
    region, account, name = match.groups()
    if (region, account) != (scope.region, scope.account_id):
        raise not_found(name)
    return name


def _merged(old: tuple[tuple[str, str], ...], new: Iterable[Tag]) -> tuple[tuple[str, str], ...]:
    tags = dict(old)
    tags.update((tag.key, tag.value) for tag in new)
    return tuple(tags.items())


def _page(items: list[T], token: str | None, limit: int | None) -> tuple[list[T], str | None]:
    start = _offset(token) if token else 0
    end = start + (limit or DEFAULT_PAGE)
    if end >= len(items):
        return items[start:end], None
    return items[start:end], base64.urlsafe_b64encode(f"o:{end}".encode()).decode()


def _offset(token: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "o":
            raise ValueError(kind)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.ValidationException("The NextToken provided is invalid.") from None
