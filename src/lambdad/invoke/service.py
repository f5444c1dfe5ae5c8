"""The invocation path: resolve the version, check limits, run it, hand back the outcome.

Every caller goes through ``Invoker``: the HTTP API for ``RequestResponse`` and ``DryRun``,
the dispatcher for queued ``Event`` invocations, and later event sources.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from typing import Protocol

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.event_config import EventInvokeConfigs, RecursiveLoop
from lambdad.control.functions import Functions
from lambdad.control.model import FunctionConfig, State
from lambdad.control.permissions import FunctionPolicies
from lambdad.control.policies import RequestContext
from lambdad.invoke import lineage
from lambdad.invoke.concurrency import Leases
from lambdad.invoke.durable_port import DurableStarter, durable_outcome
from lambdad.invoke.payloads import PayloadCheck, compact_client_context
from lambdad.invoke.runtime_port import ProvisionedView, RuntimePort, place_of
from lambdad.invoke.tracing import Tracing
from lambdad.observe.metric_cells import CellKey
from lambdad.observe.metrics import Metrics
from lambdad.observe.request_ids import new_request_id
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.spec import FunctionSpec, Place
from lambdad.runtime.streaming import ResponseSink
from lambdad.store.base import Queue, QueuedEvent

#: botocore's documentation of RecursiveInvocationException.
RECURSION_MESSAGE = (
    "Lambda has detected your function being invoked in a recursive loop with other Amazon Web "
    "Services resources and stopped your function's invocation."
)

log = logging.getLogger(__name__)

#: Streamed invocations under way (a task nobody holds could be collected).
_RUNNING: set[asyncio.Task[Outcome]] = set()


class Placement(Protocol):
    """Where invocations run when not here: an api node's workers (docs/cluster.md)."""

    async def dispatch(
        self, key: CellKey, scope: Scope, config: FunctionConfig, invocation: Invocation
    ) -> Outcome: ...


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
    #: ``request_id`` is an idempotency key (an ``Event`` invoke only): a second invoke with it
    #: is refused with ``StoreConflict`` by the queue, even after the first one ran.
    once: bool = False
    #: Set by ``invoke_streaming``: where a streamed response goes as it arrives.
    sink: ResponseSink | None = None


class StreamedInvocation:
    """An invocation whose response is under way: ``async for chunk in it`` yields the bytes
    the runtime streams as they come, then ``await it.outcome()`` tells how it ended.

    When the runtime did not stream (a buffered reply, an error or a timeout before any byte),
    there are no chunks and the outcome's payload is the whole response: the caller sends it
    in one piece. ``abandon()`` when the caller goes away: the function runs on, undisturbed,
    and its chunks are dropped.
    """

    def __init__(
        self,
        request_id: str,
        executed_version: str,
        sink: ResponseSink,
        task: asyncio.Task[Outcome],
    ) -> None:
        self.request_id = request_id
        self.executed_version = executed_version
        self._sink = sink
        self._task = task

    @property
    def streamed(self) -> bool:
        """Whether the runtime streamed (the chunks are the response)."""
        return self._sink.streamed

    @property
    def content_type(self) -> str:
        """The streamed response's ``Content-Type`` as the runtime posted it."""
        return self._sink.content_type

    def __aiter__(self) -> StreamedInvocation:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._sink.get()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def outcome(self) -> Outcome:
        """The invocation's outcome, once it ended (shielded: the caller may be cancelled)."""
        return await asyncio.shield(self._task)

    def abandon(self) -> None:
        """The caller is gone: the invocation runs to its end; its chunks are dropped."""
        self._sink.abandon()
        self._task.add_done_callback(_retrieved)


def _retrieved(task: asyncio.Task[Outcome]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("abandoned streamed invocation failed: %r", task.exception())


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """An ``Event`` or ``DryRun`` invocation that was accepted, not run here."""

    request_id: str
    executed_version: str
    #: The durable execution the invocation started (a durable function's).
    durable_arn: str | None = None


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
        system_log_level=config.logging.system_log_level,
        layer_keys=config.layer_keys,
        snap_start=config.snap_start_on,
        role=config.role,
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
        policies: FunctionPolicies | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._functions = functions
        #: Active tracing's sampling and lambdad's spans (docs/tracing.md); None: none kept.
        self.tracing = tracing
        #: Lambda's metrics (docs/metrics.md); recording is in-memory, never awaited.
        self.metrics = metrics or Metrics(enabled=False)
        #: Resource policies: who of another account may invoke (without: nobody may).
        self._policies = policies
        self._runtime = runtime
        self._queue = queue
        self._leases = leases
        #: Recursion settings; without them every recursive loop is stopped (the default).
        self._configs = configs
        #: Checks payloads off the event loop (a helper process for large ones).
        self._payloads = payloads or PayloadCheck()
        #: Starts durable functions' executions (the engine; set by the composition root).
        self.durable: DurableStarter | None = None
        #: Where invocations run instead of here (an api node in a cluster: on workers, set by
        #: the composition root); None: here, in this node's environments.
        self.remote: Placement | None = None

    async def close(self) -> None:
        """Stop what the invoker started (the payload check's helper). Idempotent."""
        await self._payloads.close()

    @property
    def payloads(self) -> PayloadCheck:
        """What reads payloads off the event loop (destination records and dead letters use
        it too, so one helper process serves them all)."""
        return self._payloads

    async def owner_scope(self, scope: Scope, request: InvokeRequest) -> Scope:
        """The scope the invocation runs in: the caller's, or, for an ARN of another account,
        that account's once its resource policy lets the caller invoke (AWS: otherwise
        AccessDeniedException, whether or not the function exists)."""
        owner = validation.account_of_function(request.function_name)
        if owner is None or owner == scope.account_id:
            return scope
        target = Scope(owner, scope.region, scope.caller_arn)
        name, in_name = self._functions.name_of(target, request.function_name)
        qualifier = validation.merge_qualifier(in_name, request.qualifier)
        context = RequestContext(account_id=scope.account_id, principal_arn=scope.principal_arn)
        allowed = self._policies is not None and await self._policies.allows_invoke(
            target, name, qualifier, context
        )
        if not allowed:
            raise errors.AccessDeniedException(
                f"User: {scope.principal_arn} is not authorized to perform: "
                f"lambda:InvokeFunction on resource: {target.function_arn(name, qualifier)} "
                "because no resource-based policy allows the lambda:InvokeFunction action"
            )
        return target

    async def _target(self, scope: Scope, request: InvokeRequest) -> FunctionConfig:
        return _active(
            await self._functions.resolve(scope, request.function_name, request.qualifier)
        )

    async def resolve(self, scope: Scope, request: InvokeRequest) -> tuple[Scope, FunctionConfig]:
        """The scope ``request`` runs in and the configuration it runs (an alias's weights
        drawn here), refused as ``invoke`` refuses it (the function's state, the tenant):
        for ``invoke(..., resolved)`` and for a durable execution's start."""
        scope = await self.owner_scope(scope, request)
        config = await self._target(scope, request)
        check_tenant(scope, config, request.tenant_id)
        return scope, config

    async def invoke(
        self,
        scope: Scope,
        request: InvokeRequest,
        resolved: tuple[Scope, FunctionConfig] | None = None,
    ) -> Outcome | Accepted:
        """Run a ``RequestResponse`` invocation, or accept an ``Event`` or ``DryRun`` one;
        ``resolved``: what ``resolve`` answered for it (so it is not resolved twice)."""
        if resolved is None:
            scope = await self.owner_scope(scope, request)
        else:
            scope = resolved[0]
        kind = request.invocation_type
        await self._payloads.check(request.payload, kind.value)
        if resolved is None:
            config = await self._target(scope, request)
            check_tenant(scope, config, request.tenant_id)
        else:
            config = resolved[1]
        request_id = request.request_id or new_request_id()
        if kind is InvocationType.DRY_RUN:
            return Accepted(request_id, config.version)
        if config.durable and self.durable is not None:
            return await self._durable(self.durable, scope, config, request, request_id)
        if kind is InvocationType.EVENT:
            qualifier = self._named_qualifier(scope, request)
            await self._queue.put(
                QueuedEvent(
                    id=request_id,
                    function_name=config.name,
                    qualifier=qualifier,
                    payload=request.payload,
                    region=scope.region,
                    account_id=scope.account_id,
                    enqueued_at=time.time(),
                    attributes=_attributes(request),
                    keep_id=request.once,
                )
            )
            self.metrics.async_received(cell_key(scope, config, qualifier))
            return Accepted(request_id, config.version)
        return await self.run(scope, config, request, request_id)

    async def invoke_streaming(
        self, scope: Scope, request: InvokeRequest
    ) -> StreamedInvocation | Accepted:
        """Start a ``RequestResponse`` invocation whose response the caller takes as it comes
        (or accept a ``DryRun`` one).

        Returns once the response starts: the runtime began streaming, or the invocation
        ended (a buffered reply, a function error, a timeout). What fails before that (not
        found, throttled, a bad qualifier or payload) is raised here, as ``invoke`` raises it.
        """
        scope = await self.owner_scope(scope, request)
        kind = request.invocation_type
        await self._payloads.check(request.payload, kind.value)
        config = await self._target(scope, request)
        check_tenant(scope, config, request.tenant_id)
        request_id = request.request_id or new_request_id()
        if kind is not InvocationType.REQUEST_RESPONSE:
            return Accepted(request_id, config.version)
        sink = ResponseSink()
        streaming = dataclasses.replace(request, sink=sink)
        running = (
            self._durable_sync(self.durable, scope, config, request, request_id)
            if config.durable and self.durable is not None
            else self.run(scope, config, streaming, request_id)
        )
        task = asyncio.create_task(running, name=f"invoke-{request_id}")
        _RUNNING.add(task)  # held until it ends, whatever the caller does
        task.add_done_callback(_RUNNING.discard)
        task.add_done_callback(lambda _: sink.end())
        started = asyncio.create_task(sink.started.wait())
        try:
            await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            sink.abandon()  # the caller is gone before the response started
            raise
        finally:
            started.cancel()
        if task.done():
            task.result()  # raises what failed before the response started
        return StreamedInvocation(request_id, config.version, sink, task)

    async def _durable(
        self,
        starter: DurableStarter,
        scope: Scope,
        config: FunctionConfig,
        request: InvokeRequest,
        request_id: str,
    ) -> Outcome | Accepted:
        """A durable function's invocation: an ``Event`` one starts an execution
        (``Accepted``), a ``RequestResponse`` one answers the execution's end."""
        if request.invocation_type is InvocationType.EVENT:
            # An idempotent invoke (a schedule's occurrence) names its execution: a repeat
            # after a restart finds it instead of starting another.
            name = request.request_id if request.once else None
            arn = await starter.start_execution(scope, config, request.payload, name)
            return Accepted(request_id, config.version, durable_arn=arn)
        return await self._durable_sync(starter, scope, config, request, request_id)

    async def _durable_sync(
        self,
        starter: DurableStarter,
        scope: Scope,
        config: FunctionConfig,
        request: InvokeRequest,
        request_id: str,
    ) -> Outcome:
        _, body, failed = await starter.run_execution(scope, config, request.payload)
        return durable_outcome(request_id, config, body, failed)

    def _named_qualifier(self, scope: Scope, request: InvokeRequest) -> str | None:
        """The qualifier the caller named: the parameter, else the one in the function's ARN
        (``resolve`` already refused the two when they differ)."""
        _, in_name = self._functions.name_of(scope, request.function_name)
        return request.qualifier or in_name

    async def run(
        self,
        scope: Scope,
        config: FunctionConfig,
        request: InvokeRequest,
        request_id: str,
        queued: tuple[float, int] | None = None,
    ) -> Outcome:
        """Run one invocation under a concurrency lease (TooManyRequestsException without).

        ``queued``: an ``Event`` invocation's (time accepted, attempts before), for its trace.

        RecursiveInvocationException when it would be a recursive loop's invocation past
        ``lineage.MAX_HOPS`` of a function whose recursion setting is not ``Allow``.
        """
        qualifier = self._named_qualifier(scope, request)
        key = cell_key(scope, config, qualifier)
        try:
            trace_id = await self._trace(scope, config, request_id, request.trace_id)
        except errors.RecursiveInvocationException:
            self.metrics.recursion_stopped(key)
            raise
        invocation = Invocation(
            request_id=request_id,
            payload=request.payload or b"{}",
            invoked_arn=scope.function_arn(config.name, qualifier),
            client_context=compact_client_context(request.client_context),
            trace_id=trace_id,
            tenant_id=request.tenant_id,
            tail=request.tail,
            sink=request.sink,
            paced=request.invocation_type is InvocationType.EVENT,
        )
        tracing = self.tracing
        if tracing is None or "Sampled=1" not in trace_id:
            return await self._dispatch(key, scope, config, invocation)
        tracing.begin(scope, config.name, trace_id)
        began = time.time()
        outcome = await self._dispatch(key, scope, config, invocation)
        times = (began, time.time())
        # Recorded once the caller's answer is on its way (the next turn of the loop), not
        # before: spans are for later reading, the answer is waited for.
        asyncio.get_running_loop().call_soon(
            tracing.record, scope, config.name, request.trace_id, trace_id, times, outcome, queued
        )
        return outcome

    async def _dispatch(
        self, key: CellKey, scope: Scope, config: FunctionConfig, invocation: Invocation
    ) -> Outcome:
        """Run ``invocation`` where it runs: on a worker (``remote``), else here."""
        if self.remote is not None:
            return await self.remote.dispatch(key, scope, config, invocation)
        return await self.dispatch_here(key, scope, config, invocation)

    async def dispatch_routed(
        self,
        key: CellKey,
        scope: Scope,
        config: FunctionConfig,
        invocation: Invocation,
        provisioned_elsewhere: bool = False,
    ) -> Outcome:
        """Run an invocation an api node routed here (a worker's ``InvokeServer``): as
        ``dispatch_here``, a sampled one's trace begun here too, so that the segments its
        function sends to this node's listener belong to it (the api node records lambdad's
        spans of it; docs/tracing.md, "In a cluster")."""
        tracing = self.tracing
        if tracing is not None and invocation.trace_id and "Sampled=1" in invocation.trace_id:
            tracing.begin(scope, config.name, invocation.trace_id)
        return await self.dispatch_here(key, scope, config, invocation, provisioned_elsewhere)

    async def dispatch_here(
        self,
        key: CellKey,
        scope: Scope,
        config: FunctionConfig,
        invocation: Invocation,
        provisioned_elsewhere: bool = False,
    ) -> Outcome:
        """Run ``invocation`` in a provisioned environment of this node, else under a
        concurrency lease (what a worker does with an invocation routed to it).
        ``provisioned_elsewhere``: the version has provisioned environments on other nodes
        (a cluster), so running it on demand here is a spillover."""
        spec = spec_of(config)
        place = place_of(scope)
        metrics = self.metrics
        spilled = False
        # A free provisioned environment first (it is the invocation's slot), else on demand.
        # A tenant's invocation runs only in an environment made for its tenant: never in a
        # provisioned one (made ahead, for no tenant).
        if invocation.tenant_id is None:
            view = self._runtime.provisioned(place, config.name, config.version)
            if view is None or not view.allocated:
                outcome = await self._runtime.invoke_provisioned(place, spec, invocation)
                spilled = provisioned_elsewhere
            else:
                outcome = await self._provisioned(key, view, place, spec, invocation)
                spilled = outcome is None
            if outcome is not None:
                return outcome
        try:
            async with self._leases.lease(scope, config.name):
                metrics.started(key)
                try:
                    outcome = await self._runtime.invoke(place, spec, invocation)
                finally:
                    metrics.ended(key)
        except errors.TooManyRequestsException:
            metrics.throttled(key)
            raise
        metrics.invoked(key, outcome.report.duration_ms, outcome.function_error)
        if spilled:
            metrics.spilled(key)
        return outcome

    async def _provisioned(
        self,
        key: CellKey,
        view: ProvisionedView,
        place: Place,
        spec: FunctionSpec,
        invocation: Invocation,
    ) -> Outcome | None:
        """Run in a free provisioned environment of the version, counted as such; None when
        every one is busy."""
        busy = view.busy
        if busy >= view.allocated:
            return None
        metrics = self.metrics
        metrics.started(key, provisioned=(busy + 1, view.allocated))
        try:
            outcome = await self._runtime.invoke_provisioned(place, spec, invocation)
        finally:
            metrics.ended(key, provisioned=True)
        if outcome is not None:
            metrics.invoked(
                key, outcome.report.duration_ms, outcome.function_error, provisioned=True
            )
        return outcome

    async def _trace(
        self, scope: Scope, config: FunctionConfig, request_id: str, header: str | None
    ) -> str:
        """The trace header the invocation runs with, one hop further down its chain."""
        arn = scope.function_arn(config.name)
        trace_id, hops = lineage.next_hop(header, arn)
        if self.tracing is not None:
            trace_id = self.tracing.decide(arn, config.tracing_mode, header, trace_id)
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
        queued = (event.enqueued_at, event.attempt)
        return await self.run(scope, config, _queued_request(event), event.id, queued)


def _active(config: FunctionConfig) -> FunctionConfig:
    """``config``, if it can be invoked now (ResourceConflictException otherwise, as AWS)."""
    if config.state is not State.ACTIVE:
        raise errors.ResourceConflictException(
            f"The operation cannot be performed at this time. The function is currently in "
            f"the following state: {config.state.value}"
        )
    return config


def cell_key(scope: Scope, config: FunctionConfig, qualifier: str | None) -> CellKey:
    """Where an invocation of ``config`` named with ``qualifier`` counts in the metrics."""
    return (scope.account_id, scope.region, config.name, qualifier, config.version)


def _queued_request(event: QueuedEvent) -> InvokeRequest:
    return InvokeRequest(
        function_name=event.function_name,
        qualifier=event.qualifier,
        payload=event.payload,
        invocation_type=InvocationType.EVENT,
        request_id=event.id,
        trace_id=event.attributes.get("trace_id"),
        tenant_id=event.attributes.get("tenant_id"),
    )


def _attributes(request: InvokeRequest) -> dict[str, str]:
    """What a queued event keeps of its request beyond the payload: the trace header, and
    the tenant it runs for."""
    attributes = {"trace_id": lineage.with_root(request.trace_id)}
    if request.tenant_id is not None:
        attributes["tenant_id"] = request.tenant_id
    return attributes


def check_tenant(scope: Scope, config: FunctionConfig, tenant_id: str | None) -> None:
    """A function with tenant isolation is invoked with a tenant id, any other without one:
    InvalidParameterValueException either way, as on AWS (the wording is lambdad's; AWS's
    troubleshooting guide names the error, not its message)."""
    isolated = config.tenant_isolation_mode is not None
    if isolated and tenant_id is None:
        raise errors.InvalidParameterValueException(
            f"The function {scope.function_arn(config.name)} has tenant isolation mode "
            f"{config.tenant_isolation_mode}: specify a tenant ID (X-Amz-Tenant-Id) to invoke it."
        )
    if not isolated and tenant_id is not None:
        raise errors.InvalidParameterValueException(
            f"The function {scope.function_arn(config.name)} does not have tenant isolation "
            "enabled: invoke it without a tenant ID (X-Amz-Tenant-Id)."
        )
