"""The durable execution API (``/2025-12-01/durable-executions/...``) and the durable side of
Invoke (docs/durable-functions.md)."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from aiohttp import web

from lambdad import errors
from lambdad.api.lambda_api import DURABLE, FUNCTIONS, reply, scope_of
from lambdad.api.wire.decode import handles, read_up_to
from lambdad.control import durable_pause
from lambdad.control.durable import Doc, page
from lambdad.control.durable_requests import (
    CheckpointRequest,
    DeleteExecutionRequest,
    ErrorObject,
    ExecutionRequest,
    HistoryRequest,
    ListExecutionsRequest,
    PauseRequest,
    ResumeRequest,
    StateRequest,
    StopRequest,
    plain,
)
from lambdad.events.durable import DurableEngine

routes = web.RouteTableDef()

#: StopDurableExecution's body: an error object (AWS's request limit is 6 MB; this is plenty).
STOP_BODY_LIMIT = 1024 * 1024

#: The ARN travels in one path segment, its ``/`` percent-encoded; matched whole here.
_EXECUTION = "/2025-12-01/durable-executions/{DurableExecutionArn:.+}"


def _engine(request: web.Request) -> DurableEngine:
    return request.app[DURABLE]


@routes.post(_EXECUTION + "/checkpoint")
@handles("CheckpointDurableExecution", CheckpointRequest)
async def checkpoint(request: web.Request, req: CheckpointRequest) -> web.Response:
    engine = _engine(request)
    updates = [plain(update) for update in req.updates or []]
    answer = await engine.checkpoint(
        scope_of(request),
        req.durable_execution_arn,
        req.checkpoint_token,
        updates,
        req.client_token,
    )
    return reply(answer)


@routes.get(_EXECUTION + "/state")
@handles("GetDurableExecutionState", StateRequest)
async def state(request: web.Request, req: StateRequest) -> web.Response:
    answer = await _engine(request).executions.state(
        scope_of(request),
        req.durable_execution_arn,
        req.checkpoint_token,
        req.marker,
        req.max_items,
    )
    return reply(answer)


@routes.get(_EXECUTION + "/history")
@handles("GetDurableExecutionHistory", HistoryRequest)
async def history(request: web.Request, req: HistoryRequest) -> web.Response:
    body = await _engine(request).executions.history(
        scope_of(request),
        req.durable_execution_arn,
        req.marker,
        req.max_items,
        bool(req.reverse_order),
    )
    if req.include_execution_data is False:  # AWS's default: included
        body["Events"] = [_without_data(event) for event in body["Events"]]
    return reply(body)


@routes.post(_EXECUTION + "/stop")
@handles("StopDurableExecution", StopRequest)
async def stop(request: web.Request, req: StopRequest) -> web.Response:
    error = await error_body(request)
    doc = await _engine(request).stop(scope_of(request), req.durable_execution_arn, error)
    return reply({"StopTimestamp": doc["end"]})


@routes.post(_EXECUTION + "/pause")
@handles("PauseDurableExecution", PauseRequest)
async def pause(request: web.Request, req: PauseRequest) -> web.Response:
    await _engine(request).pause(
        scope_of(request),
        req.durable_execution_arn,
        req.reason,
        req.execution_timeout_paused,
        req.client_token,
    )
    return reply({}, status=202)


@routes.post(_EXECUTION + "/resume")
@handles("ResumeDurableExecution", ResumeRequest)
async def resume(request: web.Request, req: ResumeRequest) -> web.Response:
    await _engine(request).resume(
        scope_of(request), req.durable_execution_arn, req.reason, req.client_token
    )
    return reply({}, status=202)


@routes.delete(_EXECUTION)
@handles("DeleteDurableExecution", DeleteExecutionRequest)
async def delete_execution(request: web.Request, req: DeleteExecutionRequest) -> web.Response:
    executions = _engine(request).executions
    when = await executions.delete(scope_of(request), req.durable_execution_arn)
    return reply({"DeletionRequestTimestamp": when}, status=202)


@routes.get(_EXECUTION)
@handles("GetDurableExecution", ExecutionRequest)
async def get_execution(request: web.Request, req: ExecutionRequest) -> web.Response:
    doc = await _engine(request).executions.describe(scope_of(request), req.durable_execution_arn)
    include = req.include_execution_data is not False
    return reply(execution_shape(doc, include))


@routes.get("/2025-12-01/functions/{FunctionName}/durable-executions")
@handles("ListDurableExecutionsByFunction", ListExecutionsRequest)
async def list_executions(request: web.Request, req: ListExecutionsRequest) -> web.Response:
    scope = scope_of(request)
    config = await request.app[FUNCTIONS].get(scope, req.function_name, req.qualifier)
    docs = await _engine(request).executions.of_function(scope, config.name)
    if req.qualifier is not None:
        docs = [d for d in docs if d["version"] == config.version]
    if req.durable_execution_name is not None:
        docs = [d for d in docs if d["name"] == req.durable_execution_name]
    if req.statuses:
        docs = [d for d in docs if durable_pause.status(d) in req.statuses]
    if req.started_after is not None:
        after = _instant(req.started_after, "StartedAfter")
        docs = [d for d in docs if d["start"] >= after]
    if req.started_before is not None:
        before = _instant(req.started_before, "StartedBefore")
        docs = [d for d in docs if d["start"] <= before]
    if req.reverse_order:
        docs.reverse()
    items = [_summary(d) for d in docs]
    return reply(page(items, "DurableExecutions", req.marker, req.max_items))


def _instant(value: float | str, member: str) -> float:
    """A timestamp member (ISO 8601 in the query string, or epoch seconds) as epoch seconds."""
    if isinstance(value, float | int):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidParameterValueException(
            f"{member} must be a timestamp: {value}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


async def error_body(request: web.Request) -> dict[str, Any] | None:
    """The ``ErrorObject`` that is the whole body (StopDurableExecution's,
    SendDurableExecutionCallbackFailure's): the operation's payload. A body nested too deep
    to decode is refused like any body that does not parse."""
    body = await read_up_to(request, STOP_BODY_LIMIT)
    if not body.strip():
        return None
    try:
        error = msgspec.json.decode(body, type=ErrorObject)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise errors.InvalidRequestContentException(
            f"Could not parse request body into json: {exc}"
        ) from None
    found: dict[str, Any] = plain(error)
    return found


def execution_shape(doc: Doc, include_data: bool = True) -> dict[str, Any]:
    """GetDurableExecution's answer."""
    shape: dict[str, Any] = {
        "DurableExecutionArn": doc["arn"],
        "DurableExecutionName": doc["name"],
        "FunctionArn": doc["function_arn"],
        "StartTimestamp": doc["start"],
        "Status": durable_pause.status(doc),
        "Version": doc["version"],
        "DurableConfig": {
            "ExecutionTimeout": doc["timeout"],
            "RetentionPeriodInDays": doc["retention_days"],
        },
        "ExecutionDataIncluded": include_data,
    }
    if doc["end"] is not None:
        shape["EndTimestamp"] = doc["end"]
    else:
        shape["ExpectedExecutionTimeoutTimestamp"] = durable_pause.deadline(doc)
    pause = durable_pause.details(doc, include_data)
    if pause is not None:
        shape["PauseDetails"] = pause
    if include_data:
        shape["InputPayload"] = doc["input"]
        if doc["result"] is not None:
            shape["Result"] = doc["result"]
        if doc["error"] is not None:
            shape["Error"] = doc["error"]
    return shape


def _summary(doc: Doc) -> dict[str, Any]:
    item = {
        "DurableExecutionArn": doc["arn"],
        "DurableExecutionName": doc["name"],
        "FunctionArn": doc["function_arn"],
        "Status": durable_pause.status(doc),
        "StartTimestamp": doc["start"],
    }
    if doc["end"] is not None:
        item["EndTimestamp"] = doc["end"]
    return item


def _without_data(event: dict[str, Any]) -> dict[str, Any]:
    """An event without its payloads (IncludeExecutionData false); a pause's or resume's
    reason is marked left out (``Truncated``), as AWS documents."""
    out = dict(event)
    for key, value in event.items():
        if key.endswith("Details") and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k not in ("Input", "Result", "Error")}
            if "Reason" in value:
                out[key]["Reason"] = {"Truncated": True}
    return out
