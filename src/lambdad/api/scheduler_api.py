"""EventBridge Scheduler on lambdad's endpoint (botocore's ``scheduler`` model, rest-json):
schedules under ``/schedules``, groups under ``/schedule-groups``, tags under ``/tags``.

Every request is decoded against the ``scheduler`` model by the one wire decoder; errors render
in Scheduler's shape (``lambdad.api.errors.render_scheduler``).
"""

from __future__ import annotations

import datetime
from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import reply, scope_of
from lambdad.api.wire.decode import handles
from lambdad.control.schedule_model import (
    CreateScheduleGroupRequest,
    DeleteScheduleGroupRequest,
    DeleteScheduleRequest,
    ListScheduleGroupsRequest,
    ListSchedulesRequest,
    ResourceArnRequest,
    Schedule,
    ScheduleGroup,
    ScheduleGroupName,
    ScheduleName,
    ScheduleRequest,
    TagResourceRequest,
    UntagResourceRequest,
)
from lambdad.control.schedules import Schedules

SCHEDULES = web.AppKey("schedules", Schedules)
SERVICE = "scheduler"

routes = web.RouteTableDef()


def _schedules(request: web.Request) -> Schedules:
    return request.app[SCHEDULES]


def _date(epoch: float) -> float:
    """A timestamp as botocore's rest-json reads it (epoch seconds)."""
    return round(epoch, 3)


def schedule_output(schedule: Schedule) -> dict[str, Any]:
    """botocore's ``GetScheduleOutput``."""
    target: dict[str, Any] = {
        "Arn": schedule.target_arn,
        "RoleArn": schedule.role_arn,
        "RetryPolicy": {
            "MaximumEventAgeInSeconds": schedule.event_age,
            "MaximumRetryAttempts": schedule.retry_attempts,
        },
    }
    if schedule.input is not None:
        target["Input"] = schedule.input
    if schedule.dead_letter_arn is not None:
        target["DeadLetterConfig"] = {"Arn": schedule.dead_letter_arn}
    window: dict[str, Any] = {"Mode": schedule.window_mode}
    if schedule.window_minutes is not None:
        window["MaximumWindowInMinutes"] = schedule.window_minutes
    body: dict[str, Any] = {
        "ActionAfterCompletion": schedule.action_after_completion,
        "Arn": schedule.arn,
        "CreationDate": _date(schedule.created),
        "FlexibleTimeWindow": window,
        "GroupName": schedule.group,
        "LastModificationDate": _date(schedule.modified),
        "Name": schedule.name,
        "ScheduleExpression": schedule.expression,
        "ScheduleExpressionTimezone": schedule.timezone,
        "State": schedule.state,
        "Target": target,
    }
    for key, value in (
        ("Description", schedule.description),
        ("KmsKeyArn", schedule.kms_key_arn),
        ("StartDate", schedule.start_date),
        ("EndDate", schedule.end_date),
    ):
        if value is not None:
            body[key] = value
    return body


def _summary(schedule: Schedule) -> dict[str, Any]:
    return {
        "Arn": schedule.arn,
        "CreationDate": _date(schedule.created),
        "GroupName": schedule.group,
        "LastModificationDate": _date(schedule.modified),
        "Name": schedule.name,
        "State": schedule.state,
        "Target": {"Arn": schedule.target_arn},
    }


#: The ``default`` group's CreationDate until it is first tagged (it is never created): the day
#: EventBridge Scheduler launched.
_DEFAULT_GROUP_CREATED = datetime.datetime(2022, 11, 10, tzinfo=datetime.UTC).timestamp()


def _group(group: ScheduleGroup) -> dict[str, Any]:
    created = group.created or _DEFAULT_GROUP_CREATED
    return {
        "Arn": group.arn,
        "CreationDate": _date(created),
        "LastModificationDate": _date(group.modified or created),
        "Name": group.name,
        "State": "ACTIVE",
    }


def _paged(key: str, items: list[dict[str, Any]], token: str | None) -> web.Response:
    body: dict[str, Any] = {key: items}
    if token:
        body["NextToken"] = token
    return reply(body)


# ------------------------------------------------------------------------- schedules


@routes.post("/schedules/{Name}")
@handles("CreateSchedule", ScheduleRequest, SERVICE)
async def create_schedule(request: web.Request, req: ScheduleRequest) -> web.Response:
    schedule = await _schedules(request).create(scope_of(request), req)
    return reply({"ScheduleArn": schedule.arn})


@routes.put("/schedules/{Name}")
@handles("UpdateSchedule", ScheduleRequest, SERVICE)
async def update_schedule(request: web.Request, req: ScheduleRequest) -> web.Response:
    schedule = await _schedules(request).update(scope_of(request), req)
    return reply({"ScheduleArn": schedule.arn})


@routes.get("/schedules/{Name}")
@handles("GetSchedule", ScheduleName, SERVICE)
async def get_schedule(request: web.Request, req: ScheduleName) -> web.Response:
    schedule = await _schedules(request).get(scope_of(request), req.name, req.group_name)
    return reply(schedule_output(schedule))


@routes.delete("/schedules/{Name}")
@handles("DeleteSchedule", DeleteScheduleRequest, SERVICE)
async def delete_schedule(request: web.Request, req: DeleteScheduleRequest) -> web.Response:
    await _schedules(request).delete(scope_of(request), req.name, req.group_name)
    return reply({})


@routes.get("/schedules")
@handles("ListSchedules", ListSchedulesRequest, SERVICE)
async def list_schedules(request: web.Request, req: ListSchedulesRequest) -> web.Response:
    found, token = await _schedules(request).list_schedules(scope_of(request), req)
    return _paged("Schedules", [_summary(s) for s in found], token)


# ------------------------------------------------------------------------- groups


@routes.post("/schedule-groups/{Name}")
@handles("CreateScheduleGroup", CreateScheduleGroupRequest, SERVICE)
async def create_schedule_group(
    request: web.Request, req: CreateScheduleGroupRequest
) -> web.Response:
    group = await _schedules(request).create_group(scope_of(request), req)
    return reply({"ScheduleGroupArn": group.arn})


@routes.get("/schedule-groups/{Name}")
@handles("GetScheduleGroup", ScheduleGroupName, SERVICE)
async def get_schedule_group(request: web.Request, req: ScheduleGroupName) -> web.Response:
    return reply(_group(await _schedules(request).get_group(scope_of(request), req.name)))


@routes.delete("/schedule-groups/{Name}")
@handles("DeleteScheduleGroup", DeleteScheduleGroupRequest, SERVICE)
async def delete_schedule_group(
    request: web.Request, req: DeleteScheduleGroupRequest
) -> web.Response:
    await _schedules(request).delete_group(scope_of(request), req.name)
    return reply({})


@routes.get("/schedule-groups")
@handles("ListScheduleGroups", ListScheduleGroupsRequest, SERVICE)
async def list_schedule_groups(
    request: web.Request, req: ListScheduleGroupsRequest
) -> web.Response:
    found, token = await _schedules(request).list_groups(scope_of(request), req)
    return _paged("ScheduleGroups", [_group(g) for g in found], token)


# ------------------------------------------------------------------------- tags


@routes.post("/tags/{ResourceArn}")
@handles("TagResource", TagResourceRequest, SERVICE)
async def tag_resource(request: web.Request, req: TagResourceRequest) -> web.Response:
    await _schedules(request).tag(scope_of(request), req.resource_arn, req.tags)
    return reply({})


@routes.delete("/tags/{ResourceArn}")
@handles("UntagResource", UntagResourceRequest, SERVICE)
async def untag_resource(request: web.Request, req: UntagResourceRequest) -> web.Response:
    await _schedules(request).untag(scope_of(request), req.resource_arn, req.tag_keys)
    return reply({})


@routes.get("/tags/{ResourceArn}")
@handles("ListTagsForResource", ResourceArnRequest, SERVICE)
async def list_tags_for_resource(request: web.Request, req: ResourceArnRequest) -> web.Response:
    tags = await _schedules(request).tags(scope_of(request), req.resource_arn)
    return reply({"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]})
