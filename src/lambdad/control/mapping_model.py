"""The typed value of an event source mapping, and the service's checks of its settings.

``EventSourceMapping`` is one mapping as stored (``Table.EVENT_SOURCE_MAPPINGS``); ``kind_of``
sorts a source ARN into the kinds lambdad polls (``sqs``, ``kinesis``, ``dynamodb``);
``settings_for`` turns a Create or Update request (already checked against the model's types,
ranges and enums by ``lambdad.api``) into the fields it sets, applying each kind's defaults and
refusing, with Lambda's messages, what the kind does not take.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import time
from collections.abc import Mapping
from typing import Any, Self

from lambdad import errors
from lambdad.control.requests import (
    CreateEventSourceMappingRequest,
    MappingSettings,
)


class MappingState(enum.StrEnum):
    CREATING = "Creating"
    ENABLING = "Enabling"
    ENABLED = "Enabled"
    DISABLING = "Disabling"
    DISABLED = "Disabled"
    UPDATING = "Updating"
    DELETING = "Deleting"


#: States a mapping passes through on its way to a settled one.
TRANSITIONAL = frozenset(
    {
        MappingState.CREATING,
        MappingState.ENABLING,
        MappingState.DISABLING,
        MappingState.UPDATING,
        MappingState.DELETING,
    }
)

#: What Lambda says of a mapping nothing has been delivered from yet.
NO_RECORDS = "No records processed"
#: StateTransitionReason of a change made through the API: Lambda words it one way for
#: queues, another for streams.
USER_INITIATED = "USER_INITIATED"
USER_ACTION = "User action"
#: At most this many filters in FilterCriteria.
MAX_FILTERS = 5


class SourceKind(enum.StrEnum):
    SQS = "sqs"
    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    #: Amazon MQ for RabbitMQ (``arn:aws:mq:...:broker:NAME:ID``).
    MQ = "mq"


@dataclasses.dataclass(frozen=True, slots=True)
class KindRules:
    default_batch: int
    max_batch: int
    #: Parameters only streams take.
    stream: bool


RULES = {
    SourceKind.SQS: KindRules(10, 10_000, stream=False),
    SourceKind.KINESIS: KindRules(100, 10_000, stream=True),
    SourceKind.DYNAMODB: KindRules(100, 10_000, stream=True),
    SourceKind.MQ: KindRules(100, 10_000, stream=False),
}
#: FIFO queues take batches of at most 10.
FIFO_MAX_BATCH = 10

#: Parameters Lambda refuses on an SQS mapping: (request field, wire name).
_STREAM_ONLY = (
    ("parallelization_factor", "ParallelizationFactor"),
    ("maximum_record_age_in_seconds", "MaximumRecordAgeInSeconds"),
    ("bisect_batch_on_function_error", "BisectBatchOnFunctionError"),
    ("maximum_retry_attempts", "MaximumRetryAttempts"),
    ("tumbling_window_in_seconds", "TumblingWindowInSeconds"),
    ("destination_config", "DestinationConfig"),
)


def kind_of(source_arn: str) -> SourceKind:
    """The kind of source an ARN names; ``InvalidParameterValueException`` for any other."""
    parts = source_arn.split(":", 5)
    service = parts[2] if len(parts) == 6 else ""
    resource = parts[5] if len(parts) == 6 else ""
    if service == "sqs" and resource and "/" not in resource:
        return SourceKind.SQS
    if service == "kinesis" and resource.startswith("stream/"):
        return SourceKind.KINESIS
    if service == "dynamodb" and "/stream/" in resource and resource.startswith("table/"):
        return SourceKind.DYNAMODB
    if service == "mq" and resource.startswith("broker:") and resource.count(":") == 2:
        return SourceKind.MQ
    raise errors.InvalidParameterValueException("Unrecognized event source.")


def is_fifo(source_arn: str) -> bool:
    return source_arn.endswith(".fifo")


@dataclasses.dataclass(frozen=True, slots=True)
class EventSourceMapping:
    """One mapping as stored. Settings are None where the kind does not have them."""

    uuid: str
    account_id: str
    region: str
    source_arn: str
    kind: str
    #: The function's name and the qualifier the request named (None: unqualified).
    function_name: str
    qualifier: str | None
    state: str
    #: What the user asked for (``Enabled``): the state a transition settles in.
    enabled: bool = True
    state_reason: str = USER_INITIATED
    last_processing_result: str = NO_RECORDS
    #: Epoch seconds.
    last_modified: float = dataclasses.field(default_factory=time.time)
    batch_size: int = 10
    batching_window: int = 0
    filters: list[str] | None = None
    function_response_types: list[str] = dataclasses.field(default_factory=list)
    on_failure: str | None = None
    maximum_concurrency: int | None = None
    #: ``MetricsConfig.Metrics``: ``EventCount`` turns the event counts on (docs/metrics.md).
    metrics: list[str] | None = None
    starting_position: str | None = None
    starting_position_timestamp: float | None = None
    bisect: bool | None = None
    maximum_retry_attempts: int | None = None
    maximum_record_age: int | None = None
    parallelization_factor: int | None = None
    tumbling_window: int | None = None
    #: Amazon MQ: the one queue consumed, and ``SourceAccessConfigurations`` as given
    #: (``[{"Type": ..., "URI": ...}]``).
    queues: list[str] | None = None
    source_access: list[dict[str, str]] | None = None
    #: Amazon MQ's default batching window (500 ms) applies: no window was ever set.
    default_window: bool = False
    tags: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Self:
        return cls(**doc)

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:event-source-mapping:{self.uuid}"

    @property
    def function_arn(self) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
        return f"{arn}:{self.qualifier}" if self.qualifier else arn

    def changed(self, **changes: Any) -> EventSourceMapping:
        return dataclasses.replace(self, **changes, last_modified=time.time())


def _unsupported(member: str) -> errors.InvalidParameterValueException:
    return errors.InvalidParameterValueException(
        f"Unsupported {member} parameter for given event source mapping type."
    )


def _check_filters(request: MappingSettings) -> list[str] | None:
    """FilterCriteria's shape: at most 5 filters, each pattern a JSON object (the pattern
    language itself is checked by the filter engine). No filters (``{}`` or ``{"Filters":
    []}``) clears them: None."""
    criteria = request.filter_criteria
    if criteria is None:
        return None
    filters = criteria.filters or []
    if len(filters) > MAX_FILTERS:
        raise errors.InvalidParameterValueException(
            f"The number of filters in FilterCriteria exceeds the limit of {MAX_FILTERS}."
        )
    patterns = []
    for item in filters:
        try:
            parsed = json.loads(item.pattern or "")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise errors.InvalidParameterValueException("Invalid filter pattern definition.")
        patterns.append(item.pattern or "")
    return patterns or None


#: The ``MetricsConfig.Metrics`` values a mapping of a kind lambdad polls takes (``ErrorCount``
#: and ``KafkaMetrics`` are Kafka's, which lambdad does not poll).
_METRICS = ("EventCount",)


def _check_metrics(metrics: list[str]) -> list[str]:
    for metric in metrics:
        if metric not in _METRICS:
            raise errors.InvalidParameterValueException(
                f"Unsupported MetricsConfig metric {metric} for this event source."
            )
    return sorted(set(metrics))


def settings_for(
    kind: SourceKind, source_arn: str, request: MappingSettings, current: EventSourceMapping | None
) -> dict[str, Any]:
    """The fields a Create (``current`` None) or Update request sets on a mapping of ``kind``.

    Raises InvalidParameterValueException, with Lambda's messages, for a parameter the kind
    does not take, a batch size out of the kind's range, a batch above 10 without a batching
    window (SQS), a missing or wrong StartingPosition (streams), an OnSuccess destination."""
    rules = RULES[kind]
    changes: dict[str, Any] = {}
    if kind is SourceKind.MQ:
        changes |= _mq_settings(request, current)
    elif request.source_access_configurations is not None:
        raise _unsupported("SourceAccessConfigurations")
    if not rules.stream:
        for field, member in _STREAM_ONLY:
            if getattr(request, field) is not None:
                raise _unsupported(member)
    elif request.scaling_config is not None:
        raise _unsupported("ScalingConfig")
    if request.destination_config is not None:
        if request.destination_config.on_success is not None:
            raise _unsupported("DestinationConfig")
        on_failure = request.destination_config.on_failure
        changes["on_failure"] = (on_failure.destination or None) if on_failure else None
    batch = request.batch_size
    if batch is None and current is None:
        batch = rules.default_batch
    if batch is not None:
        changes["batch_size"] = batch
    window = request.maximum_batching_window_in_seconds
    if window is not None:
        changes["batching_window"] = window
        changes["default_window"] = False
    elif current is None and kind is SourceKind.MQ:
        changes["default_window"] = True
    _check_batch(kind, source_arn, changes, current)
    if request.filter_criteria is not None:
        changes["filters"] = _check_filters(request)
    if request.function_response_types is not None:
        changes["function_response_types"] = list(request.function_response_types)
    if request.scaling_config is not None:
        changes["maximum_concurrency"] = request.scaling_config.maximum_concurrency
    if request.metrics_config is not None:
        changes["metrics"] = _check_metrics(request.metrics_config.metrics or [])
    if rules.stream:
        changes |= _stream_settings(request, current)
    return changes


#: The SourceAccessConfigurations types an Amazon MQ for RabbitMQ mapping takes.
BASIC_AUTH = "BASIC_AUTH"
VIRTUAL_HOST = "VIRTUAL_HOST"


def _mq_settings(request: MappingSettings, current: EventSourceMapping | None) -> dict[str, Any]:
    """An Amazon MQ mapping's ``SourceAccessConfigurations``: exactly one BASIC_AUTH secret,
    at most one VIRTUAL_HOST (not changed by an update), nothing else; no ScalingConfig or
    FunctionResponseTypes (Lambda's MQ pollers have neither)."""
    if request.scaling_config is not None:
        raise _unsupported("ScalingConfig")
    if request.function_response_types:
        raise _unsupported("FunctionResponseTypes")
    given = request.source_access_configurations
    if given is None:
        if current is None:
            raise errors.InvalidParameterValueException(
                "SourceAccessConfigurations is required for Amazon MQ event sources: "
                "a BASIC_AUTH secret."
            )
        return {}
    access = [{"Type": c.type or "", "URI": c.uri or ""} for c in given]
    types = [c["Type"] for c in access]
    for kind in types:
        if kind not in (BASIC_AUTH, VIRTUAL_HOST):
            raise errors.InvalidParameterValueException(
                f"Unsupported source access configuration type {kind} for Amazon MQ."
            )
    if types.count(BASIC_AUTH) != 1 or types.count(VIRTUAL_HOST) > 1:
        raise errors.InvalidParameterValueException(
            "SourceAccessConfigurations must have exactly one BASIC_AUTH and at most one "
            "VIRTUAL_HOST for Amazon MQ."
        )
    if current is not None:
        if VIRTUAL_HOST in types:
            raise errors.InvalidParameterValueException(
                "VIRTUAL_HOST cannot be specified in an UpdateEventSourceMapping request."
            )
        old = [c for c in current.source_access or [] if c["Type"] == VIRTUAL_HOST]
        access += old
    return {"source_access": access}


def check_queues(kind: SourceKind, queues: list[str] | None) -> list[str] | None:
    """``Queues``: exactly one for Amazon MQ (the model allows one at most), refused for every
    other kind."""
    if kind is not SourceKind.MQ:
        if queues is not None:
            raise _unsupported("Queues")
        return None
    if not queues:
        raise errors.InvalidParameterValueException(
            "Queues is required for Amazon MQ event sources: the name of one queue."
        )
    return list(queues)


def access_value(mapping: EventSourceMapping, kind: str) -> str | None:
    """The URI of the mapping's source access configuration of ``kind``, if any."""
    for item in mapping.source_access or []:
        if item.get("Type") == kind:
            return item.get("URI")
    return None


def _check_batch(
    kind: SourceKind,
    source_arn: str,
    changes: Mapping[str, Any],
    current: EventSourceMapping | None,
) -> None:
    batch = changes.get("batch_size", current.batch_size if current else 0)
    window = changes.get("batching_window", current.batching_window if current else 0)
    limit = RULES[kind].max_batch
    if kind is SourceKind.SQS and is_fifo(source_arn):
        limit = FIFO_MAX_BATCH
    if batch > limit:
        raise errors.InvalidParameterValueException(
            f"BatchSize must be less than or equal to {limit} for this event source."
        )
    if kind is SourceKind.SQS and batch > 10 and not window:
        raise errors.InvalidParameterValueException(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
            "greater than 10"
        )


def _stream_settings(
    request: MappingSettings, current: EventSourceMapping | None
) -> dict[str, Any]:
    """Stream-only settings, with Lambda's defaults on create."""
    changes: dict[str, Any] = {}
    pairs = (
        ("bisect", request.bisect_batch_on_function_error, False),
        ("maximum_retry_attempts", request.maximum_retry_attempts, -1),
        ("maximum_record_age", request.maximum_record_age_in_seconds, -1),
        ("parallelization_factor", request.parallelization_factor, 1),
        ("tumbling_window", request.tumbling_window_in_seconds, 0),
    )
    for field, value, default in pairs:
        if value is not None:
            changes[field] = value
        elif current is None and default is not None:
            changes[field] = default
    age = changes.get("maximum_record_age")
    if age is not None and age != -1 and age < 60:
        raise errors.InvalidParameterValueException(
            "MaximumRecordAgeInSeconds must be -1 or between 60 and 604800."
        )
    return changes


def starting_position(
    kind: SourceKind, request: CreateEventSourceMappingRequest
) -> tuple[str | None, float | None]:
    """The StartingPosition (and its timestamp) of a new mapping: required for streams,
    refused for queues; AT_TIMESTAMP only for Kinesis, and only with a timestamp."""
    position, stamp = request.starting_position, request.starting_position_timestamp
    if not RULES[kind].stream:
        if position is not None:
            raise _unsupported("StartingPosition")
        if stamp is not None:
            raise _unsupported("StartingPositionTimestamp")
        return None, None
    if position is None:
        raise errors.InvalidParameterValueException(
            "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
            "constraint: Member must not be null."
        )
    if position == "AT_TIMESTAMP" and kind is SourceKind.DYNAMODB:
        raise errors.InvalidParameterValueException(
            f"Unsupported starting position for arn type: {request.event_source_arn}"
        )
    if position == "AT_TIMESTAMP" and stamp is None:
        raise errors.InvalidParameterValueException(
            "StartingPositionTimestamp must be set when StartingPosition is AT_TIMESTAMP."
        )
    if position != "AT_TIMESTAMP" and stamp is not None:
        raise errors.InvalidParameterValueException(
            "StartingPositionTimestamp is only allowed when StartingPosition is AT_TIMESTAMP."
        )
    return position, _epoch(stamp)


def user_reason(kind: SourceKind) -> str:
    """StateTransitionReason of a mapping of ``kind`` changed through the API."""
    return USER_ACTION if RULES[kind].stream else USER_INITIATED


def _epoch(stamp: float | str | None) -> float | None:
    if stamp is None or isinstance(stamp, float | int):
        return stamp
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        raise errors.InvalidParameterValueException(
            f"Invalid StartingPositionTimestamp: {stamp}"
        ) from None
