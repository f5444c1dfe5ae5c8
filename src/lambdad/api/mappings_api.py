"""Event source mappings on the wire: Create/Get/Update/Delete/ListEventSourceMapping(s)
(``/2015-03-31/event-source-mappings``), answered as botocore's
``EventSourceMappingConfiguration``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lambdad.api.lambda_api import MAPPINGS, paged, reply, scope_of
from lambdad.api.wire.decode import handles
from lambdad.control.mapping_model import EventSourceMapping
from lambdad.control.mappings import EventSourceMappings
from lambdad.control.requests import (
    CreateEventSourceMappingRequest,
    EventSourceMappingRequest,
    ListEventSourceMappingsRequest,
    UpdateEventSourceMappingRequest,
)

routes = web.RouteTableDef()
_MAPPINGS = "/2015-03-31/event-source-mappings"
_MAPPING = _MAPPINGS + "/{UUID}"


def mapping_configuration(mapping: EventSourceMapping) -> dict[str, Any]:
    """botocore's ``EventSourceMappingConfiguration``: what the mapping's kind has, as Lambda
    answers it (streams carry their retry settings; SQS its scaling config when set)."""
    body: dict[str, Any] = {"UUID": mapping.uuid}
    if mapping.starting_position is not None:
        body["StartingPosition"] = mapping.starting_position
    if mapping.starting_position_timestamp is not None:
        body["StartingPositionTimestamp"] = mapping.starting_position_timestamp
    body["BatchSize"] = mapping.batch_size
    body["MaximumBatchingWindowInSeconds"] = mapping.batching_window
    if mapping.parallelization_factor is not None:
        body["ParallelizationFactor"] = mapping.parallelization_factor
    body["EventSourceArn"] = mapping.source_arn
    if mapping.filters is not None:
        body["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in mapping.filters]}
    if mapping.queues is not None:
        body["Queues"] = list(mapping.queues)
    if mapping.source_access is not None:
        body["SourceAccessConfigurations"] = [dict(c) for c in mapping.source_access]
    if mapping.maximum_concurrency is not None:
        body["ScalingConfig"] = {"MaximumConcurrency": mapping.maximum_concurrency}
    if mapping.metrics is not None:
        body["MetricsConfig"] = {"Metrics": list(mapping.metrics)}
    body |= {
        "FunctionArn": mapping.function_arn,
        "LastModified": mapping.last_modified,
        "LastProcessingResult": mapping.last_processing_result,
        "State": mapping.state,
        "StateTransitionReason": mapping.state_reason,
    }
    if mapping.kind not in ("sqs", "mq"):
        on_failure = {"Destination": mapping.on_failure} if mapping.on_failure else {}
        body["DestinationConfig"] = {"OnFailure": on_failure}
        body["MaximumRecordAgeInSeconds"] = mapping.maximum_record_age
        body["BisectBatchOnFunctionError"] = mapping.bisect
        body["MaximumRetryAttempts"] = mapping.maximum_retry_attempts
        if mapping.tumbling_window is not None:
            body["TumblingWindowInSeconds"] = mapping.tumbling_window
    body["FunctionResponseTypes"] = list(mapping.function_response_types)
    body["EventSourceMappingArn"] = mapping.arn
    return body


def _mappings(request: web.Request) -> EventSourceMappings:
    return request.app[MAPPINGS]


@routes.post(_MAPPINGS)
@handles("CreateEventSourceMapping", CreateEventSourceMappingRequest)
async def create_event_source_mapping(
    request: web.Request, req: CreateEventSourceMappingRequest
) -> web.Response:
    mapping = await _mappings(request).create(scope_of(request), req)
    return reply(mapping_configuration(mapping), status=202)


@routes.get(_MAPPING)
@handles("GetEventSourceMapping", EventSourceMappingRequest)
async def get_event_source_mapping(
    request: web.Request, req: EventSourceMappingRequest
) -> web.Response:
    mapping = await _mappings(request).get(scope_of(request), req.uuid)
    return reply(mapping_configuration(mapping))


@routes.put(_MAPPING)
@handles("UpdateEventSourceMapping", UpdateEventSourceMappingRequest)
async def update_event_source_mapping(
    request: web.Request, req: UpdateEventSourceMappingRequest
) -> web.Response:
    mapping = await _mappings(request).update(scope_of(request), req)
    return reply(mapping_configuration(mapping), status=202)


@routes.delete(_MAPPING)
@handles("DeleteEventSourceMapping", EventSourceMappingRequest)
async def delete_event_source_mapping(
    request: web.Request, req: EventSourceMappingRequest
) -> web.Response:
    mapping = await _mappings(request).delete(scope_of(request), req.uuid)
    return reply(mapping_configuration(mapping), status=202)


@routes.get(_MAPPINGS)
@handles("ListEventSourceMappings", ListEventSourceMappingsRequest)
async def list_event_source_mappings(
    request: web.Request, req: ListEventSourceMappingsRequest
) -> web.Response:
    found, marker = await _mappings(request).list_mappings(
        scope_of(request),
        source_arn=req.event_source_arn,
        function_name=req.function_name,
        marker=req.marker,
        max_items=req.max_items,
    )
    return paged("EventSourceMappings", [mapping_configuration(m) for m in found], marker)
