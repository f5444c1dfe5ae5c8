"""EventBridge's scheduled rules API (botocore's ``events`` model, JSON 1.1, ``AWSEvents.*``):
one small handler per call, reached through ``lambdad.api.target_front``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import scope_of
from lambdad.api.target_front import answer, target
from lambdad.control.rule_model import DEFAULT_BUS, Rule, RuleTarget
from lambdad.control.rule_requests import (
    DeleteRuleRequest,
    ListRulesRequest,
    ListTagsForResourceRequest,
    ListTargetsByRuleRequest,
    PutRuleRequest,
    PutTargetsRequest,
    RemoveTargetsRequest,
    RuleName,
    TagResourceRequest,
    UntagResourceRequest,
)
from lambdad.control.rules import EventRules, FailedEntry

RULES = web.AppKey("event_rules", EventRules)
_PREFIX, _SERVICE = "AWSEvents", "events"


def _rules(request: web.Request) -> EventRules:
    return request.app[RULES]


def rule_shape(rule: Rule) -> dict[str, Any]:
    """DescribeRule's output and ListRules' items (which lack ``CreatedBy``)."""
    shape: dict[str, Any] = {
        "Name": rule.name,
        "Arn": rule.arn,
        "State": rule.state.value,
        "ScheduleExpression": rule.schedule_expression,
        "EventBusName": DEFAULT_BUS,
    }
    if rule.description is not None:
        shape["Description"] = rule.description
    if rule.role_arn is not None:
        shape["RoleArn"] = rule.role_arn
    return shape


def target_shape(item: RuleTarget) -> dict[str, Any]:
    shape: dict[str, Any] = {"Id": item.id, "Arn": item.arn}
    if item.role_arn is not None:
        shape["RoleArn"] = item.role_arn
    if item.input is not None:
        shape["Input"] = item.input
    if item.input_path is not None:
        shape["InputPath"] = item.input_path
    if item.dead_letter_arn is not None:
        shape["DeadLetterConfig"] = {"Arn": item.dead_letter_arn}
    retry = {
        "MaximumRetryAttempts": item.maximum_retry_attempts,
        "MaximumEventAgeInSeconds": item.maximum_event_age_in_seconds,
    }
    if any(v is not None for v in retry.values()):
        shape["RetryPolicy"] = {k: v for k, v in retry.items() if v is not None}
    return shape


def _failed(entries: list[FailedEntry]) -> dict[str, Any]:
    return {
        "FailedEntryCount": len(entries),
        "FailedEntries": [
            {"TargetId": e.target_id, "ErrorCode": e.error_code, "ErrorMessage": e.error_message}
            for e in entries
        ],
    }


def _paged(key: str, items: list[dict[str, Any]], token: str | None) -> web.Response:
    """A page; an empty list of targets is left out (the model's list has at least one)."""
    body: dict[str, Any] = {key: items} if items or key == "Rules" else {}
    if token is not None:
        body["NextToken"] = token
    return answer(body)


# ------------------------------------------------------------------------- rules


@target(_PREFIX, _SERVICE, "PutRule", PutRuleRequest)
async def put_rule(request: web.Request, req: PutRuleRequest) -> web.Response:
    rule = await _rules(request).put_rule(scope_of(request), req)
    return answer({"RuleArn": rule.arn})


@target(_PREFIX, _SERVICE, "DescribeRule", RuleName)
async def describe_rule(request: web.Request, req: RuleName) -> web.Response:
    scope = scope_of(request)
    rule = await _rules(request).describe(scope, req.name, req.event_bus_name)
    return answer({**rule_shape(rule), "CreatedBy": scope.account_id})


@target(_PREFIX, _SERVICE, "EnableRule", RuleName)
async def enable_rule(request: web.Request, req: RuleName) -> web.Response:
    await _rules(request).set_state(scope_of(request), req.name, req.event_bus_name, enabled=True)
    return answer()


@target(_PREFIX, _SERVICE, "DisableRule", RuleName)
async def disable_rule(request: web.Request, req: RuleName) -> web.Response:
    await _rules(request).set_state(scope_of(request), req.name, req.event_bus_name, enabled=False)
    return answer()


@target(_PREFIX, _SERVICE, "DeleteRule", DeleteRuleRequest)
async def delete_rule(request: web.Request, req: DeleteRuleRequest) -> web.Response:
    await _rules(request).delete(scope_of(request), req.name, req.event_bus_name)
    return answer()


@target(_PREFIX, _SERVICE, "ListRules", ListRulesRequest)
async def list_rules(request: web.Request, req: ListRulesRequest) -> web.Response:
    rules, token = await _rules(request).list_rules(
        scope_of(request), req.name_prefix, req.event_bus_name, req.next_token, req.limit
    )
    return _paged("Rules", [rule_shape(r) for r in rules], token)


# ------------------------------------------------------------------------- targets


@target(_PREFIX, _SERVICE, "PutTargets", PutTargetsRequest)
async def put_targets(request: web.Request, req: PutTargetsRequest) -> web.Response:
    return answer(_failed(await _rules(request).put_targets(scope_of(request), req)))


@target(_PREFIX, _SERVICE, "RemoveTargets", RemoveTargetsRequest)
async def remove_targets(request: web.Request, req: RemoveTargetsRequest) -> web.Response:
    return answer(_failed(await _rules(request).remove_targets(scope_of(request), req)))


@target(_PREFIX, _SERVICE, "ListTargetsByRule", ListTargetsByRuleRequest)
async def list_targets_by_rule(request: web.Request, req: ListTargetsByRuleRequest) -> web.Response:
    items, token = await _rules(request).list_targets(
        scope_of(request), req.rule, req.event_bus_name, req.next_token, req.limit
    )
    return _paged("Targets", [target_shape(t) for t in items], token)


# ------------------------------------------------------------------------- tags


@target(_PREFIX, _SERVICE, "TagResource", TagResourceRequest)
async def tag_resource(request: web.Request, req: TagResourceRequest) -> web.Response:
    await _rules(request).tag(scope_of(request), req.resource_arn, req.tags)
    return answer()


@target(_PREFIX, _SERVICE, "UntagResource", UntagResourceRequest)
async def untag_resource(request: web.Request, req: UntagResourceRequest) -> web.Response:
    await _rules(request).untag(scope_of(request), req.resource_arn, req.tag_keys)
    return answer()


@target(_PREFIX, _SERVICE, "ListTagsForResource", ListTagsForResourceRequest)
async def list_tags_for_resource(
    request: web.Request, req: ListTagsForResourceRequest
) -> web.Response:
    tags = await _rules(request).tags(scope_of(request), req.resource_arn)
    return answer({"Tags": [{"Key": k, "Value": v} for k, v in tags]})
