"""EventBridge Scheduler's schedules and schedule groups: validation with the service's
messages, storage keyed by account and region, and change notifications for the firing engine
(``lambdad.events.schedules``).

The ``default`` group always exists (it is not stored) and cannot be deleted; deleting another
group deletes its schedules. Messages are EventBridge Scheduler's where known (docs/schedules.md).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import time
from collections.abc import Callable

import msgspec

from lambdad import errors
from lambdad.control import paging
from lambdad.control.arns import Scope
from lambdad.control.schedule_expressions import InvalidExpression, parse_expression
from lambdad.control.schedule_model import (
    DEFAULT_GROUP,
    CreateScheduleGroupRequest,
    ListScheduleGroupsRequest,
    ListSchedulesRequest,
    Schedule,
    ScheduleGroup,
    ScheduleRequest,
    Tag,
)
from lambdad.store.base import Store, StoreConflict, Table, Write

#: AWS's defaults for a target without a RetryPolicy.
DEFAULT_RETRY_ATTEMPTS = 185
DEFAULT_EVENT_AGE = 86400
#: How far in the past a StartDate may be (AWS: five minutes).
START_DATE_SLACK = 300.0

_LAMBDA_ARN = "arn:aws:lambda:"


def _digest(request: ScheduleRequest) -> str:
    """What a CreateSchedule asked for, its ClientToken aside (an idempotent retry's check)."""
    body = msgspec.json.encode(msgspec.structs.replace(request, client_token=None))
    return hashlib.sha256(body).hexdigest()


#: Called with (scope, group, name) after a schedule was created, changed or deleted.
ScheduleListener = Callable[[Scope, str, str], None]


def schedule_arn(scope: Scope, group: str, name: str) -> str:
    return f"arn:aws:scheduler:{scope.region}:{scope.account_id}:schedule/{group}/{name}"


def group_arn(scope: Scope, group: str) -> str:
    return f"arn:aws:scheduler:{scope.region}:{scope.account_id}:schedule-group/{group}"


def _epoch(value: float | str | None, member: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError as exc:
        raise errors.ValidationException(f"Invalid {member} {value}.") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


class Schedules:
    """Schedules and schedule groups of every account, in ``store``. ``now`` is the schedulers'
    clock (epoch seconds), used for the StartDate check."""

    def __init__(self, store: Store, now: Callable[[], float] = time.time) -> None:
        self._store = store
        self._now = now
        self._listeners: list[ScheduleListener] = []
        self._lock = asyncio.Lock()

    def subscribe(self, listener: ScheduleListener) -> None:
        """Call ``listener`` after every change of a schedule (deleted with its group too)."""
        self._listeners.append(listener)

    def _changed(self, scope: Scope, group: str, name: str) -> None:
        for listener in self._listeners:
            listener(scope, group, name)

    # ------------------------------------------------------------------ schedules

    async def create(self, scope: Scope, request: ScheduleRequest) -> Schedule:
        group = request.group_name or DEFAULT_GROUP
        async with self._lock:
            await self._group_or_fail(scope, group)
            now = self._now()
            schedule = self._build(scope, request, group, created=now, check_start=True)
            if request.client_token is not None:
                schedule = msgspec.structs.replace(
                    schedule,
                    client_token=request.client_token,
                    request_digest=_digest(request),
                )
            try:
                await self._store.put(
                    Table.SCHEDULES,
                    scope.key(group, request.name),
                    msgspec.to_builtins(schedule),
                    create=True,
                )
            except StoreConflict:
                existing = await self.find(scope, group, request.name)
                if (
                    existing is not None
                    and request.client_token is not None
                    and existing.client_token == request.client_token
                    and existing.request_digest == _digest(request)
                ):
                    return existing  # the same create again: answered as the first time
                raise errors.ResourceConflictException(
                    f"Schedule {request.name} already exists."
                ) from None
        self._changed(scope, group, request.name)
        return schedule

    async def update(self, scope: Scope, request: ScheduleRequest) -> Schedule:
        """Replace every setting of the schedule (AWS: members left out take their defaults)."""
        group = request.group_name or DEFAULT_GROUP
        async with self._lock:
            old = await self.get(scope, request.name, group)
            schedule = self._build(scope, request, group, created=old.created, check_start=False)
            await self._store.put(
                Table.SCHEDULES, scope.key(group, request.name), msgspec.to_builtins(schedule)
            )
        self._changed(scope, group, request.name)
        return schedule

    async def get(self, scope: Scope, name: str, group: str | None = None) -> Schedule:
        group = group or DEFAULT_GROUP
        doc = await self._store.get(Table.SCHEDULES, scope.key(group, name))
        if doc is None:
            raise errors.ResourceNotFoundException(f"Schedule {name} does not exist.")
        return msgspec.convert(doc, Schedule)

    async def find(self, scope: Scope, group: str, name: str) -> Schedule | None:
        doc = await self._store.get(Table.SCHEDULES, scope.key(group, name))
        return None if doc is None else msgspec.convert(doc, Schedule)

    async def delete(self, scope: Scope, name: str, group: str | None = None) -> None:
        group = group or DEFAULT_GROUP
        async with self._lock:
            await self.get(scope, name, group)
            await self._store.delete(Table.SCHEDULES, scope.key(group, name))
        self._changed(scope, group, name)

    async def list_schedules(
        self, scope: Scope, request: ListSchedulesRequest
    ) -> tuple[list[Schedule], str | None]:
        if request.group_name is not None:
            await self._group_or_fail(scope, request.group_name)
        prefix = scope.key(request.group_name) if request.group_name else scope.key()
        found = [
            msgspec.convert(doc, Schedule)
            for _, doc in await self._store.scan(Table.SCHEDULES, prefix)
        ]
        found = [
            s
            for s in found
            if (request.name_prefix is None or s.name.startswith(request.name_prefix))
            and (request.state is None or s.state == request.state)
        ]
        return self._page(found, request.next_token, request.max_results)

    async def every(self) -> list[tuple[Scope, Schedule]]:
        """Every schedule of every account (the firing engine's start)."""
        return [
            (Scope(key[0], key[1]), msgspec.convert(doc, Schedule))
            for key, doc in await self._store.scan(Table.SCHEDULES)
        ]

    def _build(
        self,
        scope: Scope,
        request: ScheduleRequest,
        group: str,
        *,
        created: float,
        check_start: bool,
    ) -> Schedule:
        timezone = request.schedule_expression_timezone or "UTC"
        try:
            expression = parse_expression(request.schedule_expression, timezone)
        except InvalidExpression as exc:
            raise errors.ValidationException(str(exc)) from None
        window = request.flexible_time_window
        if window.mode == "FLEXIBLE" and window.maximum_window_in_minutes is None:
            raise errors.ValidationException(
                "MaximumWindowInMinutes must be provided when FlexibleTimeWindow Mode is FLEXIBLE."
            )
        if window.mode == "OFF" and window.maximum_window_in_minutes is not None:
            raise errors.ValidationException(
                "MaximumWindowInMinutes must not be provided when FlexibleTimeWindow Mode is OFF."
            )
        start = _epoch(request.start_date, "StartDate")
        end = _epoch(request.end_date, "EndDate")
        if not expression.is_one_time():
            if start is not None and end is not None and end <= start:
                raise errors.ValidationException("The StartDate must come before the EndDate.")
            if end is not None and end <= self._now():
                raise errors.ValidationException("The EndDate must be in the future.")
            if check_start and start is not None and start < self._now() - START_DATE_SLACK:
                raise errors.ValidationException(
                    "The StartDate you specify cannot be earlier than 5 minutes prior to the "
                    "current time."
                )
        target = request.target
        if not target.arn.startswith(_LAMBDA_ARN):
            raise errors.ValidationException(
                f"Invalid target ARN {target.arn}: lambdad invokes Lambda functions only."
            )
        if target.input is not None and target.input.strip().startswith(("{", "[")):
            try:
                msgspec.json.decode(target.input)
            except msgspec.DecodeError:
                raise errors.ValidationException(
                    "Invalid RequestJson provided. Reason Input must be a valid JSON."
                ) from None
        retry = target.retry_policy
        letters = target.dead_letter_config
        now = self._now()
        return Schedule(
            name=request.name,
            group=group,
            arn=schedule_arn(scope, group, request.name),
            expression=request.schedule_expression,
            timezone=timezone,
            state=request.state or "ENABLED",
            window_mode=window.mode,
            window_minutes=window.maximum_window_in_minutes,
            target_arn=target.arn,
            role_arn=target.role_arn,
            input=target.input,
            retry_attempts=DEFAULT_RETRY_ATTEMPTS
            if retry is None or retry.maximum_retry_attempts is None
            else retry.maximum_retry_attempts,
            event_age=DEFAULT_EVENT_AGE
            if retry is None or retry.maximum_event_age_in_seconds is None
            else retry.maximum_event_age_in_seconds,
            dead_letter_arn=letters.arn if letters is not None else None,
            action_after_completion=request.action_after_completion or "NONE",
            created=created,
            modified=now,
            start_date=start,
            end_date=end,
            description=request.description,
            kms_key_arn=request.kms_key_arn,
        )

    # ------------------------------------------------------------------ groups

    def _default(self, scope: Scope) -> ScheduleGroup:
        return ScheduleGroup(
            name=DEFAULT_GROUP, arn=group_arn(scope, DEFAULT_GROUP), created=0.0, modified=0.0
        )

    async def _group_or_fail(self, scope: Scope, name: str) -> ScheduleGroup:
        if name == DEFAULT_GROUP:
            stored = await self._store.get(Table.SCHEDULE_GROUPS, scope.key(name))
            return (
                self._default(scope) if stored is None else msgspec.convert(stored, ScheduleGroup)
            )
        doc = await self._store.get(Table.SCHEDULE_GROUPS, scope.key(name))
        if doc is None:
            raise errors.ResourceNotFoundException(f"Schedule group {name} does not exist.")
        return msgspec.convert(doc, ScheduleGroup)

    async def create_group(
        self, scope: Scope, request: CreateScheduleGroupRequest
    ) -> ScheduleGroup:
        now = self._now()
        group = ScheduleGroup(
            name=request.name,
            arn=group_arn(scope, request.name),
            created=now,
            modified=now,
            tags=_tags(request.tags or []),
        )
        if request.name == DEFAULT_GROUP:
            raise errors.ResourceConflictException(f"Schedule group {request.name} already exists.")
        try:
            await self._store.put(
                Table.SCHEDULE_GROUPS,
                scope.key(request.name),
                msgspec.to_builtins(group),
                create=True,
            )
        except StoreConflict:
            raise errors.ResourceConflictException(
                f"Schedule group {request.name} already exists."
            ) from None
        return group

    async def get_group(self, scope: Scope, name: str) -> ScheduleGroup:
        return await self._group_or_fail(scope, name)

    async def delete_group(self, scope: Scope, name: str) -> None:
        """Delete the group and every schedule in it (AWS deletes them too)."""
        if name == DEFAULT_GROUP:
            raise errors.ValidationException("The default schedule group cannot be deleted.")
        async with self._lock:
            await self._group_or_fail(scope, name)
            doomed = await self._store.scan(Table.SCHEDULES, scope.key(name))
            writes = [Write(Table.SCHEDULES, key, None) for key, _ in doomed]
            writes.append(Write(Table.SCHEDULE_GROUPS, scope.key(name), None))
            await self._store.write(writes)
        for key, _ in doomed:
            self._changed(scope, name, key[-1])

    async def list_groups(
        self, scope: Scope, request: ListScheduleGroupsRequest
    ) -> tuple[list[ScheduleGroup], str | None]:
        stored = {
            key[-1]: msgspec.convert(doc, ScheduleGroup)
            for key, doc in await self._store.scan(Table.SCHEDULE_GROUPS, scope.key())
        }
        stored.setdefault(DEFAULT_GROUP, self._default(scope))
        groups = [
            stored[name]
            for name in sorted(stored)
            if request.name_prefix is None or name.startswith(request.name_prefix)
        ]
        return self._page(groups, request.next_token, request.max_results)

    # ------------------------------------------------------------------ tags

    async def tags(self, scope: Scope, arn: str) -> dict[str, str]:
        return (await self._group_or_fail(scope, self._group_of(scope, arn))).tags

    async def tag(self, scope: Scope, arn: str, tags: list[Tag]) -> None:
        await self._retag(scope, arn, lambda old: old | _tags(tags))

    async def untag(self, scope: Scope, arn: str, keys: list[str]) -> None:
        await self._retag(scope, arn, lambda old: {k: v for k, v in old.items() if k not in keys})

    async def _retag(
        self, scope: Scope, arn: str, change: Callable[[dict[str, str]], dict[str, str]]
    ) -> None:
        name = self._group_of(scope, arn)
        async with self._lock:
            group = await self._group_or_fail(scope, name)
            tags = change(dict(group.tags))
            if len(tags) > 200:
                raise errors.ServiceQuotaExceededException(
                    "The number of tags on the resource exceeds the limit of 200."
                )
            changed = msgspec.structs.replace(group, tags=tags, modified=self._now())
            await self._store.put(
                Table.SCHEDULE_GROUPS, scope.key(name), msgspec.to_builtins(changed)
            )

    def _group_of(self, scope: Scope, arn: str) -> str:
        """The group an ARN names in this account and region (the model checked its shape)."""
        head, _, name = arn.rpartition("/")
        if head != f"arn:aws:scheduler:{scope.region}:{scope.account_id}:schedule-group":
            raise errors.ResourceNotFoundException(f"Schedule group {name} does not exist.")
        return name

    @staticmethod
    def _page(
        items: list[paging.T], token: str | None, max_results: int | None
    ) -> tuple[list[paging.T], str | None]:
        try:
            return paging.page(items, token, max_results, limit=100)
        except errors.InvalidParameterValueException:
            raise errors.ValidationException("Invalid NextToken provided.") from None


def _tags(tags: list[Tag]) -> dict[str, str]:
    return {tag.key: tag.value for tag in tags}
