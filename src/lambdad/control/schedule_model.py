"""EventBridge Scheduler's values: the typed requests of its API (decoded against botocore's
``scheduler`` model) and a stored schedule."""

from __future__ import annotations

import msgspec

from lambdad.control.requests import Wire

DEFAULT_GROUP = "default"


class FlexibleTimeWindow(Wire, frozen=True, kw_only=True):
    mode: str
    maximum_window_in_minutes: int | None = None


class RetryPolicy(Wire, frozen=True, kw_only=True):
    maximum_event_age_in_seconds: int | None = None
    maximum_retry_attempts: int | None = None


class DeadLetterConfig(Wire, frozen=True, kw_only=True):
    arn: str | None = None


class Target(Wire, frozen=True, kw_only=True):
    arn: str
    role_arn: str
    input: str | None = None
    retry_policy: RetryPolicy | None = None
    dead_letter_config: DeadLetterConfig | None = None


class Tag(Wire, frozen=True, kw_only=True):
    key: str
    value: str


class ScheduleRequest(Wire, frozen=True, kw_only=True):
    """CreateSchedule's and UpdateSchedule's members (the same in both)."""

    name: str
    schedule_expression: str
    flexible_time_window: FlexibleTimeWindow
    target: Target
    group_name: str | None = None
    schedule_expression_timezone: str | None = None
    #: Epoch seconds (botocore's rest-json) or an ISO-8601 string.
    start_date: float | str | None = None
    end_date: float | str | None = None
    state: str | None = None
    action_after_completion: str | None = None
    description: str | None = None
    kms_key_arn: str | None = None
    client_token: str | None = None


class ScheduleName(Wire, frozen=True, kw_only=True):
    """GetSchedule."""

    name: str
    group_name: str | None = None


class DeleteScheduleRequest(ScheduleName, frozen=True, kw_only=True):
    client_token: str | None = None


class ListSchedulesRequest(Wire, frozen=True, kw_only=True):
    group_name: str | None = None
    name_prefix: str | None = None
    state: str | None = None
    max_results: int | None = None
    next_token: str | None = None


class CreateScheduleGroupRequest(Wire, frozen=True, kw_only=True):
    name: str
    tags: list[Tag] | None = None
    client_token: str | None = None


class ScheduleGroupName(Wire, frozen=True, kw_only=True):
    """GetScheduleGroup."""

    name: str


class DeleteScheduleGroupRequest(ScheduleGroupName, frozen=True, kw_only=True):
    client_token: str | None = None


class ListScheduleGroupsRequest(Wire, frozen=True, kw_only=True):
    name_prefix: str | None = None
    max_results: int | None = None
    next_token: str | None = None


class TagResourceRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str
    tags: list[Tag]


class UntagResourceRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str
    tag_keys: list[str]


class ResourceArnRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A stored schedule; dates are epoch seconds (UTC)."""

    name: str
    group: str
    arn: str
    expression: str
    timezone: str
    state: str
    window_mode: str
    window_minutes: int | None
    target_arn: str
    role_arn: str
    input: str | None
    retry_attempts: int
    event_age: int
    dead_letter_arn: str | None
    action_after_completion: str
    created: float
    modified: float
    start_date: float | None = None
    end_date: float | None = None
    description: str | None = None
    kms_key_arn: str | None = None
    #: CreateSchedule's ClientToken and a digest of the rest of its request: the same create
    #: sent again (an SDK's retry) answers as the first did instead of ConflictException.
    client_token: str | None = None
    request_digest: str | None = None


class ScheduleGroup(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arn: str
    created: float
    modified: float
    tags: dict[str, str] = {}
