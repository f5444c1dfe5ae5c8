"""The typed requests of the EventBridge rules API (botocore's ``events`` model) that
``lambdad.control.rules`` takes; decoded and checked against the model by ``lambdad.api``.
Field names are snake_case, wire names PascalCase; ``None`` means "not given"."""

from __future__ import annotations

import msgspec

from lambdad.control.requests import Wire


class Tag(Wire, frozen=True, kw_only=True):
    key: str
    value: str


class RuleName(Wire, frozen=True, kw_only=True):
    """EnableRule, DisableRule, DescribeRule."""

    name: str
    event_bus_name: str | None = None


class DeleteRuleRequest(Wire, frozen=True, kw_only=True):
    name: str
    event_bus_name: str | None = None
    force: bool | None = None


class PutRuleRequest(Wire, frozen=True, kw_only=True):
    name: str
    schedule_expression: str | None = None
    event_pattern: str | None = None
    state: str | None = None
    description: str | None = None
    role_arn: str | None = None
    tags: list[Tag] | None = None
    event_bus_name: str | None = None


class ListRulesRequest(Wire, frozen=True, kw_only=True):
    name_prefix: str | None = None
    event_bus_name: str | None = None
    next_token: str | None = None
    limit: int | None = None


class DeadLetterConfig(Wire, frozen=True, kw_only=True):
    arn: str | None = None


class RetryPolicy(Wire, frozen=True, kw_only=True):
    maximum_retry_attempts: int | None = None
    maximum_event_age_in_seconds: int | None = None


class Target(Wire, frozen=True, kw_only=True):
    """A rule's target. Members for other kinds of target than Lambda are kept only to say
    that they are not supported."""

    id: str
    arn: str
    role_arn: str | None = None
    input: str | None = None
    input_path: str | None = None
    input_transformer: dict[str, object] | None = None
    dead_letter_config: DeadLetterConfig | None = None
    retry_policy: RetryPolicy | None = None
    kinesis_parameters: dict[str, object] | None = None
    run_command_parameters: dict[str, object] | None = None
    ecs_parameters: dict[str, object] | None = None
    batch_parameters: dict[str, object] | None = None
    sqs_parameters: dict[str, object] | None = None
    http_parameters: dict[str, object] | None = None
    redshift_data_parameters: dict[str, object] | None = None
    sage_maker_pipeline_parameters: dict[str, object] | None = None
    app_sync_parameters: dict[str, object] | None = None


class PutTargetsRequest(Wire, frozen=True, kw_only=True):
    rule: str
    targets: list[Target]
    event_bus_name: str | None = None


class RemoveTargetsRequest(Wire, frozen=True, kw_only=True):
    rule: str
    ids: list[str]
    event_bus_name: str | None = None
    force: bool | None = None


class ListTargetsByRuleRequest(Wire, frozen=True, kw_only=True):
    rule: str
    event_bus_name: str | None = None
    next_token: str | None = None
    limit: int | None = None


class TagResourceRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str = msgspec.field(name="ResourceARN")
    tags: list[Tag]


class UntagResourceRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str = msgspec.field(name="ResourceARN")
    tag_keys: list[str]


class ListTagsForResourceRequest(Wire, frozen=True, kw_only=True):
    resource_arn: str = msgspec.field(name="ResourceARN")
