"""The typed requests of the durable execution API (botocore's ``lambda`` model, 2025-12-01)."""

from __future__ import annotations

from typing import Any

import msgspec

from lambdad.control.requests import Wire


class ErrorObject(Wire, frozen=True, kw_only=True):
    error_message: str | None = None
    error_type: str | None = None
    error_data: str | None = None
    stack_trace: list[str] | None = None


class ContextOptions(Wire, frozen=True, kw_only=True):
    replay_children: bool | None = None


class StepOptions(Wire, frozen=True, kw_only=True):
    next_attempt_delay_seconds: int | None = None


class WaitOptions(Wire, frozen=True, kw_only=True):
    wait_seconds: int | None = None


class CallbackOptions(Wire, frozen=True, kw_only=True):
    timeout_seconds: int | None = None
    heartbeat_timeout_seconds: int | None = None


class ChainedInvokeOptions(Wire, frozen=True, kw_only=True):
    function_name: str | None = None
    tenant_id: str | None = None
    x_amzn_trace_id: str | None = msgspec.field(default=None, name="XAmznTraceId")


class OperationUpdate(Wire, frozen=True, kw_only=True):
    id: str
    parent_id: str | None = None
    name: str | None = None
    type: str
    sub_type: str | None = None
    action: str
    payload: str | None = None
    error: ErrorObject | None = None
    context_options: ContextOptions | None = None
    step_options: StepOptions | None = None
    wait_options: WaitOptions | None = None
    callback_options: CallbackOptions | None = None
    chained_invoke_options: ChainedInvokeOptions | None = None


class CheckpointRequest(Wire, frozen=True, kw_only=True):
    durable_execution_arn: str
    checkpoint_token: str
    updates: list[OperationUpdate] | None = None
    client_token: str | None = None


class StateRequest(Wire, frozen=True, kw_only=True):
    durable_execution_arn: str
    checkpoint_token: str
    marker: str | None = None
    max_items: int | None = None


class ExecutionRequest(Wire, frozen=True, kw_only=True):
    durable_execution_arn: str
    include_execution_data: bool | None = None


class HistoryRequest(Wire, frozen=True, kw_only=True):
    durable_execution_arn: str
    include_execution_data: bool | None = None
    max_items: int | None = None
    marker: str | None = None
    reverse_order: bool | None = None


class ListExecutionsRequest(Wire, frozen=True, kw_only=True):
    function_name: str
    qualifier: str | None = None
    durable_execution_name: str | None = None
    statuses: list[str] | None = None
    started_after: float | str | None = None
    started_before: float | str | None = None
    reverse_order: bool | None = None
    marker: str | None = None
    max_items: int | None = None


class StopRequest(Wire, frozen=True, kw_only=True):
    """The ARN; the ``Error`` is the whole body, read by the handler."""

    durable_execution_arn: str


class PauseRequest(Wire, frozen=True, kw_only=True):
    durable_execution_arn: str
    client_token: str | None = None
    reason: str | None = None
    execution_timeout_paused: bool | None = None


class ResumeRequest(Wire, frozen=True, kw_only=True):
    durable_execution_arn: str
    client_token: str | None = None
    reason: str | None = None


class DeleteExecutionRequest(Wire, frozen=True, kw_only=True):
    durable_execution_arn: str


def plain(value: Any) -> Any:
    """A request value as wire-named builtins, members not given left out."""
    built = msgspec.to_builtins(value)
    return _drop_none(built)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


class CallbackRequest(Wire, frozen=True, kw_only=True):
    """SendDurableExecutionCallbackSuccess / Failure / Heartbeat: the id (the body, a result
    or an error, is read by the handler)."""

    callback_id: str
