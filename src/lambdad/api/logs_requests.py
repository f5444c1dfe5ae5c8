"""The typed requests of the CloudWatch Logs API (botocore's ``logs`` model, lowerCamel wire
names) that ``lambdad.api.logs_api`` serves; decoded and checked against the model by
``lambdad.api.wire``. ``None`` means "not given"."""

from __future__ import annotations

import msgspec


class LogsWire(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """Base of the Logs requests: lowerCamel wire names, immutable, keyword-only."""


class GroupName(LogsWire, frozen=True, kw_only=True):
    """DeleteLogGroup, DeleteRetentionPolicy, ListTagsLogGroup."""

    log_group_name: str


class CreateLogGroupRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name: str
    kms_key_id: str | None = None
    tags: dict[str, str] | None = None
    log_group_class: str | None = None


class DescribeLogGroupsRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name_prefix: str | None = None
    log_group_name_pattern: str | None = None
    next_token: str | None = None
    limit: int | None = None
    log_group_class: str | None = None
    log_group_identifiers: list[str] | None = None


class StreamName(LogsWire, frozen=True, kw_only=True):
    """CreateLogStream, DeleteLogStream."""

    log_group_name: str
    log_stream_name: str


class DescribeLogStreamsRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name: str | None = None
    log_group_identifier: str | None = None
    log_stream_name_prefix: str | None = None
    order_by: str | None = None
    descending: bool | None = None
    next_token: str | None = None
    limit: int | None = None


class GetLogEventsRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name: str | None = None
    log_group_identifier: str | None = None
    log_stream_name: str
    start_time: int | None = None
    end_time: int | None = None
    next_token: str | None = None
    limit: int | None = None
    start_from_head: bool | None = None


class FilterLogEventsRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name: str | None = None
    log_group_identifier: str | None = None
    log_stream_names: list[str] | None = None
    log_stream_name_prefix: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    filter_pattern: str | None = None
    next_token: str | None = None
    limit: int | None = None


class PutRetentionPolicyRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name: str
    retention_in_days: int


class InputLogEvent(LogsWire, frozen=True, kw_only=True):
    timestamp: int
    message: str


class PutLogEventsRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name: str
    log_stream_name: str
    log_events: list[InputLogEvent]
    sequence_token: str | None = None


class TagLogGroupRequest(LogsWire, frozen=True, kw_only=True):
    log_group_name: str
    tags: dict[str, str]


class ResourceArn(LogsWire, frozen=True, kw_only=True):
    """ListTagsForResource."""

    resource_arn: str


class TagResourceRequest(LogsWire, frozen=True, kw_only=True):
    resource_arn: str
    tags: dict[str, str]


class UntagResourceRequest(LogsWire, frozen=True, kw_only=True):
    resource_arn: str
    tag_keys: list[str]


class StartLiveTailRequest(LogsWire, frozen=True, kw_only=True):
    log_group_identifiers: list[str]
    log_stream_names: list[str] | None = None
    log_stream_name_prefixes: list[str] | None = None
    log_event_filter_pattern: str | None = None
