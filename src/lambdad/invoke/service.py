"""The invocation path: resolve the version, check limits, run it, hand back the outcome.

Every caller goes through ``Invoker``: the HTTP API for ``RequestResponse`` and ``DryRun``,
the dispatcher for queued ``Event`` invocations, and later event sources.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.event_config import EventInvokeConfigs, RecursiveLoop
from lambdad.control.functions import Functions
from lambdad.control.model import FunctionConfig, State
from lambdad.invoke import lineage
from lambdad.invoke.concurrency import Leases
from lambdad.invoke.payloads import PayloadCheck, compact_client_context
from lambdad.invoke.runtime_port import RuntimePort
from lambdad.observe.request_ids import new_request_id
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.spec import FunctionSpec
from lambdad.store.base import Queue, QueuedEvent

#: botocore's documentation of RecursiveInvocationException.
RECURSION_MESSAGE = (
    "Lambda has detected your function being invoked in a recursive loop with other Amazon Web "
    "Services resources and stopped your function's invocation."
)

log = logging.getLogger(__name__)


class InvocationType(enum.StrEnum):
    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


@dataclasses.dataclass(frozen=True, slots=True)
class InvokeRequest:
    function_name: str
    qualifier: str | None
    payload: bytes
    invocation_type: InvocationType = InvocationType.REQUEST_RESPONSE
    tail: bool = False
    client_context: str | None = None
    trace_id: str | None = None
    tenant_id: str | None = None
    request_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """An ``Event`` or ``DryRun`` invocation that was accepted, not run here."""

    request_id: str
    executed_version: str


def spec_of(config: FunctionConfig) -> FunctionSpec:
    """The runtime's view of a function version."""
    return FunctionSpec(
        name=config.name,
        version=config.version,
        revision_id=config.content_id or config.revision_id,
        runtime=config.runtime,
        handler=config.handler,
        code_key=config.code_key,
        memory_size=config.memory_size,
        timeout=config.timeout,
        ephemeral_storage=config.ephemeral_storage,
        environment=config.environment,
        log_group=config.log_group,
        log_format=config.logging.log_format,
        log_level=config.logging.application_log_level,
        layer_keys=config.layer_keys,
        snap_start=config.snap_start_on,
    )


class Invoker:
    def __init__(
        self,
        functions: Functions,
        runtime: RuntimePort,
        queue: Queue,
        leases: Leases,
        configs: EventInvokeConfigs | None = None,
        payloads: PayloadCheck | None = None,
    ) -> None:
        self._functions = functions
        self._runtime = runtime
        self._queue = queue
        self._leases = leases
        #: Recursion settings; without them every recursive loop is stopped (the default).
        self._configs = configs
        #: Checks payloads off the event loop (a helper process for large ones).
        self._payloads = payloads or PayloadCheck()

    async def close(self) -> None:
        """Stop what the invoker started (the payload check's helper). Idempotent."""
        await self._payloads.close()

    @property
    def payloads(self) -> PayloadCheck:
        """What reads payloads off the event loop (destination records and dead letters use
        it too, so one helper process serves them all)."""
        return self._payloads

    async def _target(self, scope: Scope, request: InvokeRequest) -> FunctionConfig:
        config = await self._functions.resolve(scope, request.function_name, request.qualifier)
        if config.state is not State.ACTIVE:
            raise errors.ResourceConflictException(
                f"The operation cannot be performed at this time. The function is currently in "
                f"the following state: {config.state.value}"
            )
        return config

    async def invoke(self, scope: Scope, request: InvokeRequest) -> Outcome | Accepted:
        """Run a ``RequestResponse`` invocation, or accept an ``Event`` or ``DryRun`` one."""
        kind = request.invocation_type
        await self._payloads.check(request.payload, kind.value)
        config = await self._target(scope, request)
        request_id = request.request_id or new_request_id()
        if kind is InvocationType.DRY_RUN:
            return Accepted(request_id, config.version)
        if kind is InvocationType.EVENT:
            await self._queue.put(
                QueuedEvent(
                    id=request_id,
                    function_name=config.name,
                    qualifier=self._named_qualifier(scope, request),
                    payload=request.payload,
                    region=scope.region,
                    enqueued_at=time.time(),
                    attributes={"trace_id": lineage.with_root(request.trace_id)},
                )
            )
            return Accepted(request_id, config.version)
        return await self.run(scope, config, request, request_id)

    def _named_qualifier(self, scope: Scope, request: InvokeRequest) -> str | None:
        """The qualifier the caller named: the parameter, else the one in the function's ARN
        (``resolve`` already refused the two when they differ)."""
        _, in_name = self._functions.name_of(scope, request.function_name)
        return request.qualifier or in_name

    async def run(
        self, scope: Scope, config: FunctionConfig, request: InvokeRequest, request_id: str
    ) -> Outcome:
        """Run one invocation under a concurrency lease (TooManyRequestsException without).

        RecursiveInvocationException when it would be a recursive loop's invocation past
        ``lineage.MAX_HOPS`` of a function whose recursion setting is not ``Allow``.
        """
        trace_id = await self._trace(scope, config, request_id, request.trace_id)
        invocation = Invocation(
            request_id=request_id,
            payload=request.payload or b"{}",
            invoked_arn=scope.function_arn(config.name, self._named_qualifier(scope, request)),
            client_context=compact_client_context(request.client_context),
            trace_id=trace_id,
            tenant_id=request.tenant_id,
            tail=request.tail,
        )
        spec = spec_of(config)
        # A free provisioned environment first (it is the invocation's slot), else on demand.
        outcome = await self._runtime.invoke_provisioned(scope.region, spec, invocation)
        if outcome is not None:
            return outcome
        async with self._leases.lease(scope.region, config.name):
            return await self._runtime.invoke(scope.region, spec, invocation)

    async def _trace(
        self, scope: Scope, config: FunctionConfig, request_id: str, header: str | None
    ) -> str:
        """The trace header the invocation runs with, one hop further down its chain."""
        trace_id, hops = lineage.next_hop(header, scope.function_arn(config.name))
        if hops < lineage.MAX_HOPS:
            return trace_id
        allowed = RecursiveLoop.TERMINATE
        if self._configs is not None:
            allowed = await self._configs.recursion(scope, config.name)
        if allowed is RecursiveLoop.ALLOW:
            return trace_id
        log.warning(
            "recursive loop stopped: invocation %s of %s after %d invocations in one chain "
            "(RecursiveLoop Terminate)",
            request_id,
            scope.function_arn(config.name),
            hops,
        )
        raise errors.RecursiveInvocationException(RECURSION_MESSAGE)

    async def queued_target(self, scope: Scope, event: QueuedEvent) -> FunctionConfig:
        """The version a queued event runs on now (ResourceNotFoundException once deleted)."""
        return await self._target(scope, _queued_request(event))

    async def run_queued(self, scope: Scope, config: FunctionConfig, event: QueuedEvent) -> Outcome:
        """Run one queued ``Event`` invocation on ``config`` (the dispatcher's entry point)."""
        return await self.run(scope, config, _queued_request(event), event.id)


def _queued_request(event: QueuedEvent) -> InvokeRequest:
    return InvokeRequest(
        function_name=event.function_name,
        qualifier=event.qualifier,
        payload=event.payload,
        invocation_type=InvocationType.EVENT,
        request_id=event.id,
        trace_id=event.attributes.get("trace_id"),
    )
