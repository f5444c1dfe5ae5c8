"""The CloudWatch Logs API (botocore's ``logs`` model, JSON 1.1, ``Logs_20140328.*``) over the
log store: groups, streams, events, filter patterns, retention and tags. One small handler per
call, reached through ``lambdad.api.target_front``. Groups are the caller's scope's (account
and region); functions' groups appear as their functions write to them."""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import Any

from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import scope_of
from lambdad.api.logs_requests import (
    CreateLogGroupRequest,
    DescribeLogGroupsRequest,
    DescribeLogStreamsRequest,
    FilterLogEventsRequest,
    GetLogEventsRequest,
    GroupName,
    PutLogEventsRequest,
    PutRetentionPolicyRequest,
    ResourceArn,
    StreamName,
    TagLogGroupRequest,
    TagResourceRequest,
    UntagResourceRequest,
)
from lambdad.api.target_front import answer, target
from lambdad.control.arns import Scope
from lambdad.observe.log_filters import InvalidFilterPattern, compile_pattern
from lambdad.observe.logs import (
    RETENTION_DAYS,
    GroupKey,
    LogEvent,
    LogGroup,
    LogStore,
    event_size,
)

LOG_STORE = web.AppKey("log_store", LogStore)
_PREFIX, _SERVICE = "Logs_20140328", "logs"
_TOKEN_DIGITS = 56
#: PutLogEvents: events older than this, or further in the future, are rejected (AWS's).
_TOO_OLD_MS = 14 * 86_400_000
_TOO_NEW_MS = 2 * 3_600_000
_BATCH_SPAN_MS = 86_400_000
_MAX_BATCH_BYTES = 1_048_576
#: GetLogEvents and FilterLogEvents answer at most 1 MB of events, as AWS does.
_MAX_ANSWER_BYTES = 1_048_576
_GROUP_ARN = re.compile(r"arn:aws[a-z-]*:logs:([a-z0-9-]+):(\d{12}):log-group:([^:]+)(?::\*)?")


def _store(request: web.Request) -> LogStore:
    return request.app[LOG_STORE]


def _invalid(message: str) -> errors.InvalidParameterException:
    return errors.InvalidParameterException(message)


def group_arn(key: GroupKey) -> str:
    return f"arn:aws:logs:{key[1]}:{key[0]}:log-group:{key[2]}"


def _key(scope: Scope, name: str | None, identifier: str | None = None) -> GroupKey:
    """The group a request names by ``logGroupName`` or ``logGroupIdentifier`` (a name or an
    ARN of the caller's account and region)."""
    if name is not None and identifier is not None:
        raise _invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if identifier is not None:
        found = _GROUP_ARN.fullmatch(identifier)
        if found is None:
            name = identifier
        elif (found.group(2), found.group(1)) != (scope.account_id, scope.region):
            raise errors.ResourceNotFoundException("The specified log group does not exist.")
        else:
            name = found.group(3)
    if name is None:
        raise _invalid("Should provide either logGroupName or logGroupIdentifier.")
    return (scope.account_id, scope.region, name)


def resolve_group(scope: Scope, identifier: str) -> GroupKey:
    """The group a ``logGroupIdentifier`` (a name or an ARN) names."""
    return _key(scope, None, identifier)


def _arn_key(scope: Scope, arn: str) -> GroupKey:
    found = _GROUP_ARN.fullmatch(arn)
    if found is None or (found.group(2), found.group(1)) != (scope.account_id, scope.region):
        raise errors.ResourceNotFoundException("The specified log group does not exist.")
    return (scope.account_id, scope.region, found.group(3))


def _token(value: str, what: str = "nextToken") -> str:
    try:
        return base64.urlsafe_b64decode(value.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise _invalid(f"The specified {what} is invalid.") from None


def _new_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _page(
    items: list[Any], token: str | None, limit: int, name: Any
) -> tuple[list[Any], str | None]:
    """``limit`` items after the one named by ``token`` (items sorted by ``name``)."""
    after = _token(token) if token is not None else None
    if after is not None:
        items = [i for i in items if name(i) > after]
    page = items[:limit]
    return page, (_new_token(name(page[-1])) if len(items) > limit else None)


# ------------------------------------------------------------------------- groups


def group_shape(group: LogGroup) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "logGroupName": group.key[2],
        "creationTime": group.created_ms,
        "metricFilterCount": 0,
        "arn": group_arn(group.key) + ":*",
        "storedBytes": group.stored_bytes,
        "logGroupClass": group.group_class,
        "logGroupArn": group_arn(group.key),
    }
    if group.retention_days is not None:
        shape["retentionInDays"] = group.retention_days
    return shape


@target(_PREFIX, _SERVICE, "CreateLogGroup", CreateLogGroupRequest)
async def create_log_group(request: web.Request, req: CreateLogGroupRequest) -> web.Response:
    scope = scope_of(request)
    key = (scope.account_id, scope.region, req.log_group_name)
    _store(request).create_group(key, req.log_group_class or "STANDARD", req.tags or {})
    return answer()


@target(_PREFIX, _SERVICE, "DeleteLogGroup", GroupName)
async def delete_log_group(request: web.Request, req: GroupName) -> web.Response:
    _store(request).delete_group(_key(scope_of(request), req.log_group_name))
    return answer()


@target(_PREFIX, _SERVICE, "DescribeLogGroups", DescribeLogGroupsRequest)
async def describe_log_groups(request: web.Request, req: DescribeLogGroupsRequest) -> web.Response:
    if req.log_group_name_prefix is not None and req.log_group_name_pattern is not None:
        raise _invalid(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters."
        )
    scope = scope_of(request)
    groups = _store(request).groups_of(scope.account_id, scope.region)
    if req.log_group_name_prefix is not None:
        groups = [g for g in groups if g.key[2].startswith(req.log_group_name_prefix)]
    if req.log_group_name_pattern:
        pattern = req.log_group_name_pattern.lower()
        groups = [g for g in groups if pattern in g.key[2].lower()]
    if req.log_group_class is not None:
        groups = [g for g in groups if g.group_class == req.log_group_class]
    if req.log_group_identifiers is not None:
        wanted = {_key(scope, None, i)[2] for i in req.log_group_identifiers}
        groups = [g for g in groups if g.key[2] in wanted]
    page, token = _page(groups, req.next_token, req.limit or 50, lambda g: g.key[2])
    body: dict[str, Any] = {"logGroups": [group_shape(g) for g in page]}
    if token is not None:
        body["nextToken"] = token
    return answer(body)


@target(_PREFIX, _SERVICE, "PutRetentionPolicy", PutRetentionPolicyRequest)
async def put_retention_policy(
    request: web.Request, req: PutRetentionPolicyRequest
) -> web.Response:
    if req.retention_in_days not in RETENTION_DAYS:
        values = ", ".join(str(d) for d in RETENTION_DAYS)
        raise _invalid(
            f"1 validation error detected: Value '{req.retention_in_days}' at 'retentionInDays' "
            f"failed to satisfy constraint: Member must satisfy enum value set: [{values}]"
        )
    _store(request).set_retention(
        _key(scope_of(request), req.log_group_name), req.retention_in_days
    )
    return answer()


@target(_PREFIX, _SERVICE, "DeleteRetentionPolicy", GroupName)
async def delete_retention_policy(request: web.Request, req: GroupName) -> web.Response:
    _store(request).set_retention(_key(scope_of(request), req.log_group_name), None)
    return answer()


# ------------------------------------------------------------------------- tags


@target(_PREFIX, _SERVICE, "TagLogGroup", TagLogGroupRequest)
async def tag_log_group(request: web.Request, req: TagLogGroupRequest) -> web.Response:
    _store(request).tag(_key(scope_of(request), req.log_group_name), req.tags)
    return answer()


@target(_PREFIX, _SERVICE, "ListTagsLogGroup", GroupName)
async def list_tags_log_group(request: web.Request, req: GroupName) -> web.Response:
    group = _store(request).group(_key(scope_of(request), req.log_group_name))
    return answer({"tags": dict(group.tags)})


@target(_PREFIX, _SERVICE, "TagResource", TagResourceRequest)
async def tag_resource(request: web.Request, req: TagResourceRequest) -> web.Response:
    _store(request).tag(_arn_key(scope_of(request), req.resource_arn), req.tags)
    return answer()


@target(_PREFIX, _SERVICE, "UntagResource", UntagResourceRequest)
async def untag_resource(request: web.Request, req: UntagResourceRequest) -> web.Response:
    _store(request).untag(_arn_key(scope_of(request), req.resource_arn), req.tag_keys)
    return answer()


@target(_PREFIX, _SERVICE, "ListTagsForResource", ResourceArn)
async def list_tags_for_resource(request: web.Request, req: ResourceArn) -> web.Response:
    group = _store(request).group(_arn_key(scope_of(request), req.resource_arn))
    return answer({"tags": dict(group.tags)})


# ------------------------------------------------------------------------- streams


@target(_PREFIX, _SERVICE, "CreateLogStream", StreamName)
async def create_log_stream(request: web.Request, req: StreamName) -> web.Response:
    key = _key(scope_of(request), req.log_group_name)
    _store(request).create_stream(key, req.log_stream_name)
    return answer()


@target(_PREFIX, _SERVICE, "DeleteLogStream", StreamName)
async def delete_log_stream(request: web.Request, req: StreamName) -> web.Response:
    key = _key(scope_of(request), req.log_group_name)
    _store(request).delete_stream(key, req.log_stream_name)
    return answer()


@target(_PREFIX, _SERVICE, "DescribeLogStreams", DescribeLogStreamsRequest)
async def describe_log_streams(
    request: web.Request, req: DescribeLogStreamsRequest
) -> web.Response:
    by_time = req.order_by == "LastEventTime"
    if by_time and req.log_stream_name_prefix is not None:
        raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    key = _key(scope_of(request), req.log_group_name, req.log_group_identifier)
    group = _store(request).group(key)
    streams = list(group.streams.values())
    if req.log_stream_name_prefix is not None:
        streams = [s for s in streams if s.name.startswith(req.log_stream_name_prefix)]

    def order(stream: Any) -> str:
        if by_time:  # sortable text: the last event's time, then the name
            return f"{stream.last_ms if stream.last_ms is not None else -1:+020d}/{stream.name}"
        return str(stream.name)

    streams.sort(key=order, reverse=bool(req.descending))
    after = _token(req.next_token) if req.next_token is not None else None
    if after is not None:
        streams = [s for s in streams if (order(s) < after if req.descending else order(s) > after)]
    limit = req.limit or 50
    page = streams[:limit]
    body: dict[str, Any] = {"logStreams": [_stream_shape(key, s) for s in page]}
    if len(streams) > limit:
        body["nextToken"] = _new_token(order(page[-1]))
    return answer(body)


def _stream_shape(key: GroupKey, stream: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "logStreamName": stream.name,
        "creationTime": stream.created_ms,
        "arn": f"{group_arn(key)}:log-stream:{stream.name}",
        "storedBytes": 0,  # AWS no longer reports a stream's bytes
    }
    if stream.first_ms is not None:
        shape["firstEventTimestamp"] = stream.first_ms
        shape["lastEventTimestamp"] = stream.last_ms
        shape["lastIngestionTime"] = stream.last_ingestion_ms
    return shape


# ------------------------------------------------------------------------- events


def _event_id(event: LogEvent) -> str:
    return f"{event.seq:0{_TOKEN_DIGITS}d}"


def _position(token: str) -> tuple[str, int]:
    """``f/<digits>`` or ``b/<digits>`` of GetLogEvents."""
    if len(token) > 2 and token[0] in "fb" and token[1] == "/" and token[2:].isdigit():
        return token[0], int(token[2:])
    raise _invalid("The specified nextToken is invalid.")


@target(_PREFIX, _SERVICE, "GetLogEvents", GetLogEventsRequest)
async def get_log_events(request: web.Request, req: GetLogEventsRequest) -> web.Response:
    """A stream's events in a time range: from the head or the tail (the default), then
    forwards (``f/``) or backwards (``b/``) from a token; the same token when nothing more."""
    store = _store(request)
    key = _key(scope_of(request), req.log_group_name, req.log_group_identifier)
    if req.log_stream_name not in store.group(key).streams:
        raise errors.ResourceNotFoundException("The specified log stream does not exist.")
    limit = req.limit or 10_000
    common: dict[str, Any] = {
        "streams": {req.log_stream_name},
        "start_ms": req.start_time,
        "end_ms": req.end_time,
        "limit": limit,
        "max_bytes": _MAX_ANSWER_BYTES,
    }
    if req.next_token is not None:
        direction, at = _position(req.next_token)
    else:
        direction, at = ("f", 0) if req.start_from_head else ("b", store.position + 1)
    if direction == "f":
        found = await store.scan_async(key, after=at, **common)
    else:
        found = await store.scan_async(key, before=at, forward=False, **common)
    events = found.events
    if events:
        forward, backward = events[-1].seq, events[0].seq
    elif req.next_token is not None:
        forward = backward = at
    else:
        forward = backward = store.position
    return answer(
        {
            "events": [
                {"timestamp": e.timestamp_ms, "message": e.message, "ingestionTime": e.timestamp_ms}
                for e in events
            ],
            "nextForwardToken": f"f/{forward:0{_TOKEN_DIGITS}d}",
            "nextBackwardToken": f"b/{backward:0{_TOKEN_DIGITS}d}",
        }
    )


@target(_PREFIX, _SERVICE, "FilterLogEvents", FilterLogEventsRequest)
async def filter_log_events(request: web.Request, req: FilterLogEventsRequest) -> web.Response:
    """A group's events matching a filter pattern, by stream and time (both ends inclusive),
    a page of up to ``limit`` at a time, in ingestion order."""
    if req.log_stream_names is not None and req.log_stream_name_prefix is not None:
        raise _invalid("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
    try:
        match = compile_pattern(req.filter_pattern)
    except InvalidFilterPattern:
        raise _invalid("Invalid filter pattern") from None
    store = _store(request)
    key = _key(scope_of(request), req.log_group_name, req.log_group_identifier)
    after = 0
    if req.next_token is not None:
        text = _token(req.next_token)
        if not text.isdigit():
            raise _invalid("The specified nextToken is invalid.")
        after = int(text)
    found = await store.scan_async(
        key,
        streams=set(req.log_stream_names) if req.log_stream_names is not None else None,
        prefix=req.log_stream_name_prefix,
        start_ms=req.start_time,
        end_ms=None if req.end_time is None else req.end_time + 1,
        match=None if req.filter_pattern is None or not req.filter_pattern.strip() else match,
        after=after,
        limit=req.limit or 10_000,
        max_bytes=_MAX_ANSWER_BYTES,
    )
    body: dict[str, Any] = {
        "events": [
            {
                "logStreamName": e.stream,
                "timestamp": e.timestamp_ms,
                "message": e.message,
                "ingestionTime": e.timestamp_ms,
                "eventId": _event_id(e),
            }
            for e in found.events
        ],
        "searchedLogStreams": [],
    }
    if found.next_seq is not None:
        body["nextToken"] = _new_token(str(found.next_seq))
    return answer(body)


@target(_PREFIX, _SERVICE, "PutLogEvents", PutLogEventsRequest)
async def put_log_events(request: web.Request, req: PutLogEventsRequest) -> web.Response:
    """Events into an existing stream: in chronological order, spanning at most 24 hours;
    those older than 14 days (or the retention) or over 2 hours ahead are rejected."""
    store = _store(request)
    key = _key(scope_of(request), req.log_group_name)
    group = store.group(key)
    if req.log_stream_name not in group.streams:
        raise errors.ResourceNotFoundException("The specified log stream does not exist.")
    size = sum(event_size(e.message) for e in req.log_events)
    if size > _MAX_BATCH_BYTES:
        raise _invalid(f"Upload too large: {size} bytes exceeds limit of {_MAX_BATCH_BYTES}")
    stamps = [e.timestamp for e in req.log_events]
    if stamps != sorted(stamps):
        raise _invalid(
            "Log events in a single PutLogEvents request must be in chronological order."
        )
    if stamps and stamps[-1] - stamps[0] > _BATCH_SPAN_MS:
        raise _invalid(
            "The batch of log events in a single PutLogEvents request cannot span more than "
            "24 hours."
        )
    now = web_now_ms()
    oldest = now - _TOO_OLD_MS
    cutoff = group.cutoff_ms(now)
    if cutoff is not None:
        oldest = max(oldest, cutoff)
    rejected: dict[str, int] = {}
    kept: list[tuple[int, str]] = []
    for index, event in enumerate(req.log_events):
        if event.timestamp < oldest:
            rejected["tooOldLogEventEndIndex"] = index + 1
        elif event.timestamp > now + _TOO_NEW_MS:
            rejected.setdefault("tooNewLogEventStartIndex", index)
        else:
            kept.append((event.timestamp, event.message))
    store.put_events(key, req.log_stream_name, kept)
    body: dict[str, Any] = {"nextSequenceToken": f"{store.position:0{_TOKEN_DIGITS}d}"}
    if rejected:
        body["rejectedLogEventsInfo"] = rejected
    return answer(body)


def web_now_ms() -> int:
    return int(time.time() * 1000)
