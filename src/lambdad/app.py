"""The composition root: builds every part of lambdad from ``Settings``, wires them together, and
starts them in order and stops them in reverse through one ``contextlib.AsyncExitStack``.

Only this module knows every concrete class; each part gets what it needs through its
constructor. ``Lambdad.__init__`` builds and wires (listeners of one part on another go there
too); ``Lambdad._parts`` lists what starts and stops, in start order. A new part is one line
in each. See docs/lifecycle.md.

Starting: each part is started in turn; if one fails, everything started so far (and the
failing part itself, whose ``close`` must accept a partial start) is closed in reverse, and
``StartFailed`` says why. Closing: every part is closed in reverse even when some fail; each
failure is logged and ``CloseFailed`` lists them at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import enum
import importlib.metadata
import logging
import os
import platform
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import yarl

from lambdad import config as config_module
from lambdad.api.http import HttpTimeouts
from lambdad.api.server import HttpListener, Services, build_app, build_console_app
from lambdad.api.sigv4 import SigV4Verifier
from lambdad.api.url_host import UrlShape
from lambdad.config import Settings
from lambdad.control.arns import Scope
from lambdad.control.clock import SchedulerClock
from lambdad.control.concurrency import Reservations
from lambdad.control.durable import DurableExecutions
from lambdad.control.event_config import EventInvokeConfigs
from lambdad.control.functions import Functions
from lambdad.control.mapping_model import SourceKind
from lambdad.control.mappings import EventSourceMappings
from lambdad.control.nodes import NodeInfo, NodeRegistry, node_id
from lambdad.control.permissions import FunctionPolicies
from lambdad.control.provisioned import ProvisionedConfigs
from lambdad.control.rules import EventRules
from lambdad.control.schedules import Schedules
from lambdad.control.urls import FunctionUrls
from lambdad.events.durable import DurableEngine
from lambdad.events.dynamodb_streams import DynamoDbStreamsReader
from lambdad.events.filters import Source, compile_criteria
from lambdad.events.kinesis import KinesisReader
from lambdad.events.owned_durable import OwnedDurable, never
from lambdad.events.owned_triggers import OwnedTriggers
from lambdad.events.owners import Owners
from lambdad.events.pollers import SOURCE_SERVICES, Pollers
from lambdad.events.rabbitmq_mapping import mq_factory
from lambdad.events.rule_triggers import RuleTriggers
from lambdad.events.schedules import ScheduleTriggers
from lambdad.events.sources import SourceChecker
from lambdad.events.sqs_mapping import sqs_factory
from lambdad.events.stream_failures import StreamFailureDestination
from lambdad.events.stream_mapping import (
    ReaderOf,
    destination_sinks,
    forget_removed,
    stream_factory,
)
from lambdad.events.trigger_retries import TriggerRetries
from lambdad.events.triggers import TimeTriggers, TriggerSource
from lambdad.invoke.aws_clients import AwsClients
from lambdad.invoke.concurrency import Leases, SharedLeases
from lambdad.invoke.destinations import Destinations
from lambdad.invoke.dispatcher import Dispatcher
from lambdad.invoke.grants import Grants
from lambdad.invoke.provisioned import Provisioner
from lambdad.invoke.provisioned_spread import Spread
from lambdad.invoke.remote_deletes import RetireDeletedElsewhere
from lambdad.invoke.retries import Retries
from lambdad.invoke.runtime_port import retire_deleted
from lambdad.invoke.service import Invoker
from lambdad.invoke.snapshots import SnapshotMaker
from lambdad.invoke.tracing import Tracing
from lambdad.observe.logs import LogStore
from lambdad.observe.loopwatch import LoopWatch
from lambdad.observe.metrics import Metrics
from lambdad.observe.trace_export import SpanExporter
from lambdad.observe.traces import Traces
from lambdad.runtime import runtimes
from lambdad.runtime.environment import EnvironmentContext
from lambdad.runtime.pool import RuntimeManager
from lambdad.runtime.sandbox import linux
from lambdad.runtime.sandbox.base import Sandbox
from lambdad.runtime.sandbox.network import CellNetwork, parse_rules
from lambdad.runtime.sandbox.process import PlainSandbox
from lambdad.runtime.scaling import ScaleRate
from lambdad.store.access_keys import KeyRing
from lambdad.store.account_keys import move_under_accounts
from lambdad.store.base import (
    BlobStore,
    Queue,
    Store,
    StoreChange,
    StoreConflict,
    StoreUnavailable,
    Table,
)
from lambdad.store.files import FileBlobStore
from lambdad.store.function_credentials import FunctionCredentials
from lambdad.store.ledger import ConcurrencyLedger
from lambdad.store.metric_rows import MetricPeers, StoredMetrics
from lambdad.store.sqlite import SqliteStore
from lambdad.store.sqlite_queue import SqliteQueue

if TYPE_CHECKING:
    from lambdad.events.esm_peers import EsmStatusPeers
    from lambdad.store.log_replication import LogReplication
    from lambdad.store.nats_link import NatsLink
    from lambdad.store.trace_replication import TraceReplication

log = logging.getLogger("lambdad")


def check_filter_criteria(kind: SourceKind, patterns: list[str]) -> None:
    """A mapping's ``FilterCriteria`` validated by the filter language (AWS's
    InvalidParameterValueException for a pattern it refuses)."""
    compile_criteria(patterns, source=_FILTER_SOURCES.get(kind))  # MQ: no stream rule


_FILTER_SOURCES: dict[SourceKind, Source] = {
    SourceKind.SQS: "sqs",
    SourceKind.KINESIS: "kinesis",
    SourceKind.DYNAMODB: "dynamodb",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """One thing that starts and stops with lambdad."""

    name: str
    start: Callable[[], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


class StartFailed(Exception):
    """A part could not start; everything started before it has been closed again."""

    def __init__(self, part: str, cause: BaseException) -> None:
        super().__init__(describe(cause))
        self.part = part
        self.cause = cause


class CloseFailed(Exception):
    """One or more parts failed to close (every other part was closed all the same)."""

    def __init__(self, failures: Sequence[tuple[str, BaseException]]) -> None:
        super().__init__("; ".join(f"{name}: {describe(exc)}" for name, exc in failures))
        self.failures = list(failures)


def describe(exc: BaseException) -> str:
    """A one-line reason for a user: an OSError's text and file, else the exception's text."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


class LifecycleState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSED = "closed"


class Lifecycle:
    """Starts ``parts`` in order and closes them in reverse, through one exit stack."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self._parts = list(parts)
        self._stack = contextlib.AsyncExitStack()
        self._failures: list[tuple[str, BaseException]] = []
        self.state = LifecycleState.NEW

    async def start(self) -> None:
        """Start every part in order; on a failure close what started (``StartFailed``)."""
        if self.state is not LifecycleState.NEW:
            raise RuntimeError(f"lambdad is {self.state.value}")
        self.state = LifecycleState.STARTING
        for part in self._parts:
            # Pushed first: a part that fails half-way through its start is closed too.
            self._stack.push_async_callback(self._close_part, part)
            try:
                await part.start()
            except Exception as exc:
                log.debug("starting %s failed; closing what started", part.name, exc_info=True)
                await self._unwind()
                raise StartFailed(part.name, exc) from exc
            except BaseException:  # cancelled: still close what started, then go on cancelling
                await self._unwind()
                raise
            if self.state is not LifecycleState.STARTING:
                raise RuntimeError("lambdad was closed while it started")
        self.state = LifecycleState.RUNNING

    async def close(self) -> None:
        """Close every started part in reverse; ``CloseFailed`` if any failed. Idempotent."""
        if self.state is LifecycleState.CLOSED:
            return
        await self._unwind()
        if self._failures:
            raise CloseFailed(self._failures)

    async def _unwind(self) -> None:
        self.state = LifecycleState.CLOSED
        await self._stack.aclose()

    async def _close_part(self, part: Part) -> None:
        try:
            await part.close()
        except Exception as exc:  # the other parts must close all the same
            log.error("closing %s failed", part.name, exc_info=exc)
            self._failures.append((part.name, exc))


def metadata_store(settings: Settings) -> Store:
    """The metadata store ``settings`` name: PostgreSQL at ``store_url`` (cluster mode,
    docs/cluster.md), else the embedded SQLite database of the data dir. ``StoreUnavailable``
    if PostgreSQL is asked for and its driver is not installed."""
    if not settings.store_url:
        return SqliteStore(settings.data_dir / "lambdad.db")
    try:  # imported only when asked for: the embedded default needs no PostgreSQL driver
        from lambdad.store.postgres import PostgresStore
    except ImportError as exc:
        raise StoreUnavailable(
            f"the PostgreSQL store needs psycopg ({exc}): pip install 'lambdad[postgres]'"
        ) from exc
    return PostgresStore(settings.store_url)


def blob_store(settings: Settings) -> BlobStore:
    """The code store: with a PostgreSQL ``store_url`` the zips live in that database too,
    cached in the data dir's ``code`` (docs/cluster.md); else only in the data dir."""
    cache = settings.data_dir / "code"
    if not settings.store_url:
        return FileBlobStore(cache)
    try:
        from lambdad.store.postgres_blobs import PostgresBlobStore
    except ImportError as exc:
        raise StoreUnavailable(
            f"the PostgreSQL store needs psycopg ({exc}): pip install 'lambdad[postgres]'"
        ) from exc
    return PostgresBlobStore(settings.store_url, cache)


def concurrency_ledger(settings: Settings) -> ConcurrencyLedger | None:
    """The cluster's concurrency ledger, in the PostgreSQL database of ``store_url``; None on
    an embedded store, whose limits are counted in this process alone (docs/cluster.md)."""
    if not settings.store_url:
        return None
    try:
        from lambdad.store.postgres_ledger import PostgresLedger
    except ImportError as exc:
        raise StoreUnavailable(
            f"the PostgreSQL store needs psycopg ({exc}): pip install 'lambdad[postgres]'"
        ) from exc
    return PostgresLedger(settings.store_url)


def scale_rate(settings: Settings, ledger: ConcurrencyLedger | None) -> ScaleRate:
    """Lambda's scaling rate: one bucket per function in this process, or, with the cluster's
    ledger, one per function shared by every node (docs/cluster.md)."""
    window = settings.scaled(settings.scale_window)
    if ledger is None:
        return ScaleRate(settings.scale_rate, window)
    from lambdad.runtime.shared_scaling import SharedScaleRate

    return SharedScaleRate(ledger, settings.scale_rate, window)


def nats_link(settings: Settings) -> NatsLink | None:
    """The node's NATS connection when ``nats_url`` names the cluster's servers (else None).
    ``StoreUnavailable`` if the NATS client is not installed."""
    if not settings.nats_url:
        return None
    try:  # imported only when asked for: the embedded default needs no NATS client
        from lambdad.store.nats_link import NatsLink
    except ImportError as exc:
        raise StoreUnavailable(
            f"cluster mode needs the NATS client ({exc}): pip install 'lambdad[nats]'"
        ) from exc
    return NatsLink(settings.nats_url, f"lambdad-{settings.role}")


def event_queue(settings: Settings, link: NatsLink | None) -> Queue:
    """The durable queue of async events: the cluster's JetStream work queue when the node
    has a NATS link, else a SQLite database in the data directory."""
    if link is None:
        return SqliteQueue(settings.data_dir / "queue.db")
    from lambdad.store.nats_queue import NatsQueue  # only with NATS: it imports the client

    return NatsQueue(link, ack_wait=settings.queue_ack_wait)


#: How long the cluster's log stream keeps what nodes sent (a reader away longer misses it).
LOG_STREAM_AGE = 7 * 86400.0


def log_replication(
    settings: Settings, link: NatsLink | None, logs: LogStore
) -> LogReplication | None:
    """Logs sent to and read from the cluster's other nodes (docs/cluster.md: logs), when
    there is a NATS link; api and all nodes read, workers only send."""
    if link is None:
        return None
    from lambdad.store.log_replication import LogReplication

    return LogReplication(
        link,
        logs.apply,
        consume=settings.role != "worker",
        max_bytes=settings.log_max_bytes,
        max_age=LOG_STREAM_AGE,
    )


#: How long, and how many bytes of, the spans the cluster's trace stream keeps (a restarted
#: api node reads them again; each node's memory keeps at most ``trace_max_traces``).
TRACE_STREAM_AGE = 86400.0
TRACE_STREAM_BYTES = 16 * 1024 * 1024


def trace_replication(
    settings: Settings, link: NatsLink | None, traces: Traces
) -> TraceReplication | None:
    """Spans sent to and read from the cluster's other nodes (docs/tracing.md, "In a
    cluster"), when there is a NATS link; api and all nodes read, workers only send."""
    if link is None:
        return None
    from lambdad.store.trace_replication import TraceReplication

    return TraceReplication(
        link,
        traces.apply,
        consume=settings.role != "worker",
        max_bytes=TRACE_STREAM_BYTES,
        max_age=TRACE_STREAM_AGE,
    )


class Lambdad:
    """Every part of one lambdad, built from ``settings``. ``queue`` replaces the durable queue
    (tests pass a queue that fails on purpose)."""

    def __init__(self, settings: Settings, *, queue: Queue | None = None) -> None:
        self.settings = settings
        data = settings.data_dir
        self.store: Store = metadata_store(settings)
        self.blobs: BlobStore = blob_store(settings)
        #: The cluster's NATS connection (``nats_url``), None on its own.
        self.nats = nats_link(settings)
        #: Short tasks started from callbacks (held until they end).
        self._background: set[asyncio.Task[None]] = set()
        self.queue: Queue = queue if queue is not None else event_queue(settings, self.nats)
        self.logs = LogStore(data / "logs", settings.account_id, max_bytes=settings.log_max_bytes)
        #: Other nodes' logs (cluster mode: a NATS link), None alone.
        self.log_replication = log_replication(settings, self.nats, self.logs)
        #: This node's metrics rows; on a shared store keyed by node (set at start), and the
        #: other nodes' rows followed into ``metrics`` (docs/cluster.md: metrics).
        self.metric_rows = StoredMetrics(self.store)
        self.metrics = Metrics(
            self.metric_rows,
            retention=settings.metrics_retention_days * 86400,
            flush_interval=settings.metrics_flush_interval,
            enabled=settings.metrics,
            share_interval=settings.metrics_share_interval if settings.store_url else None,
        )
        self.metric_peers = MetricPeers(
            self.metric_rows, self.store, self.metrics, retention=self.metrics.retention
        )
        url = settings.otlp_traces_url
        self.traces = Traces(
            max_traces=settings.trace_max_traces,
            max_spans=settings.trace_max_spans,
            exporter=SpanExporter(url) if url else None,
        )
        #: Other nodes' spans (cluster mode: a NATS link), None alone.
        self.trace_replication = trace_replication(settings, self.nats, self.traces)
        self.python_path = ":".join(
            p for p in (settings.python_search_path, config_module.host_path()) if p
        )
        self.sandbox = make_sandbox(settings, self.python_path)
        self.sandbox.api_url = api_url(settings.host, settings.port)
        #: SigV4 mode: the credentials of each function's own SDK (docs/accounts-and-sigv4.md).
        self.function_credentials = (
            FunctionCredentials(settings.data_dir) if settings.auth == "sigv4" else None
        )
        self.functions = Functions(
            self.store, self.blobs, settle_delay=settings.function_settle_delay
        )
        #: Concurrency exact across the nodes of a shared store (docs/cluster.md), else None.
        self.ledger = concurrency_ledger(settings)
        self.scale_rate = scale_rate(settings, self.ledger)
        self.runtime = RuntimeManager(
            self._environment_context(),
            self.blobs,
            settings.idle_timeout,
            self.scale_rate,
            settings.max_environments,
        )
        retire_deleted(self.functions.changes, self.runtime)
        #: ... and of those other nodes delete (a shared PostgreSQL store, docs/cluster.md).
        self.remote_deletes = RetireDeletedElsewhere(self.store, self.runtime)
        self.snapshots = SnapshotMaker(self.functions, self.runtime)
        self.reservations = Reservations(self.store, self.functions, settings.concurrency_limit)
        self.grants = (
            None if self.ledger is None else Grants(self.ledger, self._node_id, settings.node_lease)
        )
        leases = (
            Leases(self.reservations, metrics=self.metrics)
            if self.grants is None
            else SharedLeases(self.reservations, self.grants, metrics=self.metrics)
        )
        self.event_configs = EventInvokeConfigs(self.store, self.functions)
        self.policies = FunctionPolicies(self.store, self.functions)
        self.invoker = Invoker(
            self.functions,
            self.runtime,
            self.queue,
            leases,
            self.event_configs,
            policies=self.policies,
            metrics=self.metrics,
            tracing=Tracing(self.traces),
        )
        #: Durable executions and the engine that drives them (docs/durable-functions.md).
        self.durable = DurableEngine(
            # Saves conditional on the revision read where other nodes write the same store.
            DurableExecutions(self.store, conditional=bool(settings.store_url)),
            self.functions,
            self.invoker,
            retry_delay=settings.scaled(1.0),
        )
        self.invoker.durable = self.durable  # every invoker's way to start executions
        self.function_urls = FunctionUrls(self.store, self.functions)
        #: Other nodes' writes (a shared PostgreSQL store) drop what they made stale in this
        #: process's caches; an embedded store has no other node (docs/cluster.md).
        for cache in (
            self.functions,
            self.reservations,
            self.event_configs,
            self.policies,
            self.function_urls,
        ):
            self.store.subscribe(cache.forget_stored)
        self.store.subscribe(self.durable.executions.forget_stored)
        self.provisioned = ProvisionedConfigs(self.store, self.functions, self.reservations)
        self.store.subscribe(self.provisioned.forget_stored)
        #: In a cluster each node provisions its share of each config (docs/cluster.md).
        self.provisioner = Provisioner(
            self.functions,
            self.provisioned,
            self.runtime,
            spread=(
                Spread(lambda: self.nodes.nodes(), self._node_id, settings.role)
                if settings.store_url
                else None
            ),
            store=self.store,
            interval=min(1.0, settings.node_lease / 3),
        )
        # After the caches: what it syncs reads them.
        self.store.subscribe(self.provisioner.forget_stored)
        #: Destinations and dead-letter queues of async invokes, and schedules' dead letters.
        self.destinations = Destinations(
            self.invoker,
            endpoint_url=settings.aws_endpoint_url,
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key,
            retry_delay=settings.scaled(1.0),
        )
        self.dispatcher = Dispatcher(
            self.queue,
            self.invoker,
            settings.account_id,
            retries=Retries.from_settings(settings),
            configs=self.event_configs,
            destinations=self.destinations,
        )
        #: EventBridge Scheduler: schedules fire on the schedulers' clock (never scaled).
        self.scheduler_clock = SchedulerClock(
            *settings.scheduler_clock_start, origin=settings.scheduler_clock_origin
        )
        self.schedules = Schedules(self.store, now=self.scheduler_clock.now)
        #: EventBridge scheduled rules, on the same clock and the same firing engine.
        self.rules = EventRules(self.store, clock=self.scheduler_clock.now)
        #: Retries of a schedule's or a rule target's invoke, kept in the store.
        self.trigger_retries, self.time_triggers = self._make_triggers(confirm=False)
        #: In a cluster (``nats_url``): which node runs each poller and the time triggers
        #: (docs/cluster.md); None on a single node, and on an ``api`` node (it runs neither).
        self.owners = self._make_owners(settings)
        self.owned_triggers: OwnedTriggers | None = None
        self.owned_durable: OwnedDurable | None = None
        if self.owners is not None:
            self.owned_triggers = OwnedTriggers(
                self.owners, lambda: self._make_triggers(confirm=True)[::-1]
            )
            self.owned_durable = OwnedDurable(self.owners, self.durable)
            self.durable.gate = self.owned_durable.drives
        elif self.nats is not None:
            self.durable.gate = never  # an api node drives no durable execution
        #: Event source mappings settle (``Creating`` -> ``Enabled``, ...) after the same delay
        #: as functions' states.
        #: The sources' own endpoints, and the shared one for what else a poller reaches
        #: (a stream mapping's on-failure SNS topic).
        source_clients = AwsClients(
            {s: settings.endpoint_of(s) for s in SOURCE_SERVICES},
            default=settings.aws_endpoint_url,
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key,
        )
        self.mappings = EventSourceMappings(
            self.store,
            self.functions,
            settle_delay=settings.function_settle_delay,
            check_source=SourceChecker(source_clients, brokers=settings.mq_broker_urls),
            check_filters=check_filter_criteria,
        )
        self.pollers = Pollers(
            self.mappings, source_clients, self.invoker, self.functions, owners=self.owners
        )
        self.pollers.register("sqs", sqs_factory(settings.time_scale))
        #: In a cluster: a poller's status is asked of the node that runs it.
        self.esm_peers: EsmStatusPeers | None = None
        if self.nats is not None:
            from lambdad.events.esm_peers import EsmStatusPeers

            self.esm_peers = EsmStatusPeers(self.nats, self._node_id)
            self.pollers.peers = self.esm_peers
        on_failure = destination_sinks(
            lambda ctx: StreamFailureDestination(ctx.clients, retry_delay=settings.scaled(1.0))
        )
        readers: dict[str, ReaderOf] = {
            "kinesis": KinesisReader,
            "dynamodb": lambda client, arn, role: DynamoDbStreamsReader(client, arn),
        }
        for kind, reader_of in readers.items():
            self.pollers.register(
                kind,
                stream_factory(
                    store=self.store,
                    role_of=self.role_of,
                    reader_of=reader_of,
                    sink_of=on_failure,
                    time_scale=settings.time_scale,
                ),
            )
        self.mappings.subscribe(forget_removed(self.store))
        self.pollers.register(
            "mq",
            mq_factory(settings.mq_broker_urls, settings.secret_values, settings.time_scale),
        )
        #: The keys of ``lambdad keys``, seen as they change: every API request is checked
        #: against them in SigV4 mode; function URLs with ``AuthType=AWS_IAM`` in both modes.
        self.verifier = SigV4Verifier(
            KeyRing(settings.data_dir),
            also=frozenset({"events", "logs", "monitoring"}),
            sessions=self.function_credentials,
        )
        self.http = HttpListener(
            lambda: build_app(self._services()),
            settings.host,
            settings.port,
            HttpTimeouts.of(settings),
        )
        #: A worker's API for its own functions only (a function's SDK calling Lambda: a
        #: durable checkpoint, an invoke of another function), on a loopback port of its own
        #: that the sandbox relays to the cells; the public listener serves no API there.
        self.functions_api: HttpListener | None = None
        if settings.role == "worker":
            self.functions_api = HttpListener(
                lambda: build_app(dataclasses.replace(self._services(), role="all")),
                "127.0.0.1",
                0,
                HttpTimeouts.of(settings),
            )
        #: The web console on its own port (docs/console.md); None when ``console_port`` is -1.
        self.console: HttpListener | None = None
        if settings.console_port >= 0:
            self.console = HttpListener(
                lambda: build_console_app(self._services()),
                settings.host,
                settings.console_port,
                HttpTimeouts.of(settings),
                any_port_if_taken=True,
            )
        #: This node's record among the cluster's (docs/cluster.md): written to a shared store
        #: once listening, refreshed by a heartbeat, removed on a clean stop.
        self.nodes = NodeRegistry(
            self.store,
            self._describe_node,
            lease=settings.node_lease,
            shared=bool(settings.store_url),
            address=self._node_address,
            load=lambda: {
                "Environments": self.runtime.environment_count(),
                "QueueDepth": self.queue.pending(),
            },
        )
        #: Reports an event loop blocked longer than ``loop_watchdog_ms`` (0: not watched).
        self.loop_watch = (
            LoopWatch(settings.loop_watchdog_ms / 1000) if settings.loop_watchdog_ms else None
        )
        #: Invocations across nodes (cluster mode, ``nats_url``): an api node routes them to
        #: workers; a worker (or ``all``) runs what api nodes route to it.
        self.routing = self._routing()
        self.lifecycle = Lifecycle(self._parts())

    async def role_of(self, scope: Scope, name: str, qualifier: str | None) -> str:
        """The execution role of a function (its version or alias): a stream record's
        ``invokeIdentityArn``."""
        return (await self.functions.get(scope, name, qualifier)).role

    def _environment_context(self) -> EnvironmentContext:
        settings = self.settings
        return EnvironmentContext(
            sandbox=self.sandbox,
            logs=self.logs,
            runs_dir=settings.data_dir / "run" / "envs",
            account_id=settings.account_id,
            region=settings.default_region,
            init_timeout=settings.init_timeout,
            host_path=config_module.host_path(),
            freeze_delay=settings.scaled(settings.freeze_delay),
            node=settings.node,
            python_path=self.python_path,
            echo=(lambda line: log.info("%s", line)) if settings.echo_function_logs else None,
            emf=self.metrics.offer_emf if settings.metrics else None,
            xray=lambda: self.traces.address,
            spans=self.traces.add,
            credentials=self._credential_variables if self.function_credentials else None,
        )

    def _credential_variables(
        self, account_id: str, region: str, role: str, function_name: str
    ) -> dict[str, str]:
        assert self.function_credentials is not None
        issued = self.function_credentials.issue(account_id, region, role, function_name)
        return issued.environment()

    def _services(self) -> Services:
        return Services(
            account_id=self.settings.account_id,
            default_region=self.settings.default_region,
            functions=self.functions,
            invoker=self.invoker,
            reservations=self.reservations,
            event_configs=self.event_configs,
            policies=self.policies,
            provisioned=self.provisioned,
            provisioner=self.provisioner,
            blobs=self.blobs,
            logs=self.logs,
            metrics=self.metrics,
            traces=self.traces,
            own_gauges=self.own_gauges,
            doctor=self.doctor,
            function_urls=self.function_urls,
            mappings=self.mappings,
            rules=self.rules,
            esm_status=self.pollers.status,
            schedules=self.schedules,
            durable=self.durable,
            url_shape=UrlShape.of(self.settings),
            verifier=self.verifier,
            auth=self.settings.auth,
            role=self.settings.role,
            nodes=self.nodes.nodes,
        )

    def _parts(self) -> list[Part]:
        """What starts, in order (storage, the runtime side, background work, then listening,
        so ``/health`` answering means ready); they stop in reverse."""
        return [
            Part("data directory", self._make_data_dir, _nothing),
            *self._identity_part(),
            Part("node description", self.nodes.describe, _nothing),
            Part("metadata store", self.store.open, self.store.close),
            Part("code store", self.blobs.open, self.blobs.close),
            *self._nats_part(),
            *self._ledger_parts(),
            Part("rows from before accounts", self._move_under_accounts, _nothing),
            Part("shared credential secret", self._share_credential_secret, _nothing),
            Part("event queue", self.queue.open, self.queue.close),
            Part("log store", self.logs.open, self.logs.close),
            *self._log_replication_part(),
            Part("metrics", self.metrics.open, self.metrics.close),
            *self._metric_peers_part(),
            Part("function URLs", self.function_urls.start, self.function_urls.close),
            *self._functions_api_part(),
            Part("runtime", self.runtime.start, self.runtime.close),
            Part("cells' endpoint", self._serve_cells_endpoint, _nothing),
            Part("deletes through other nodes", _nothing, self.remote_deletes.close),
            # After the runtime: the sandbox knows the cells' gateway once it runs.
            Part("trace listener", self._open_traces, self.traces.close),
            *self._trace_replication_part(),
            Part("snapshots", self.snapshots.start, self.snapshots.close),
            Part("provisioned concurrency", self.provisioner.start, self.provisioner.close),
            Part("invoker", _nothing, self.invoker.close),
            *self.routing,
            *self._dispatcher_part(),
            Part("event source mappings", self.mappings.start, self.mappings.close),
            *self._poller_parts(),
            Part("HTTP listener", self.http.start, self.http.close),
            Part("durable executions", self.durable.start, self.durable.close),
            *self._claims_part(),
            # Once listening (its address is known); it deregisters first when stopping.
            Part("node registry", self.nodes.start, self.nodes.close),
            *self._console_part(),
            # Last: once listening, start-up work (imports, opening stores) is over.
            Part("loop watchdog", self._watch_loop, self._unwatch_loop),
        ]

    def _ledger_parts(self) -> list[Part]:
        ledger, grants = self.ledger, self.grants
        if ledger is None or grants is None:
            return []
        # The grants close after the invoker (every invocation has given its slot back).
        return [
            Part("concurrency ledger", ledger.open, ledger.close),
            Part("concurrency grants", grants.start, grants.close),
            *self._nudges_part(grants),
            *self._scaling_part(),
        ]

    def _nudges_part(self, grants: Grants) -> list[Part]:
        """With NATS, a refused claim asks the other nodes for their idle slots first."""
        if self.nats is None:
            return []
        from lambdad.invoke.grant_nudges import GrantNudges

        nudges = GrantNudges(self.nats, grants, self._node_id)
        return [Part("concurrency nudges", nudges.start, nudges.close)]

    def _scaling_part(self) -> list[Part]:
        """The shared scaling rate's keeper; it gives its tokens back after the runtime stopped."""
        rate = self.scale_rate
        return [] if self.ledger is None else [Part("scaling tokens", rate.start, rate.close)]

    def _dispatcher_part(self) -> list[Part]:
        """The dispatcher takes events on every node but a cluster's api nodes, which only put
        them in the shared queue for the workers (closing it still closes the destinations'
        clients, which schedules use there too)."""
        takes = not (self.settings.role == "api" and self.nats is not None)
        start = self.dispatcher.start if takes else _nothing
        return [Part("event dispatcher", start, self.dispatcher.close)]

    def _routing(self) -> list[Part]:
        """Cluster mode's routing of invocations (docs/cluster.md): imported only with NATS."""
        link = self.nats
        if link is None:
            return []
        settings = self.settings
        if routes_invocations(settings):
            from lambdad.invoke.remote_dispatch import RemoteDispatch
            from lambdad.invoke.worker_choice import WorkerChoice

            choice = WorkerChoice(settings.idle_timeout, settings.node_lease)
            remote = RemoteDispatch(
                link,
                self._node_id,
                self.nodes.nodes,
                choice,
                shares=lambda: self.store.scan(Table.PROVISIONED_SHARES),
            )
            self.invoker.remote = remote

            def shares_changed(change: StoreChange) -> None:
                # A worker published (or withdrew) provisioned environments: route to them
                # from the next invocation on, not the next periodic refresh.
                if change.table in (None, Table.PROVISIONED_SHARES):
                    remote.shares_changed()

            async def start() -> None:
                await remote.start()
                self.store.subscribe(shares_changed)

            return [Part("routing to workers", start, remote.close)]
        from lambdad.invoke.remote_worker import InvokeServer

        server = InvokeServer(link, self._node_id, self.functions, self.invoker.dispatch_routed)
        return [Part("routed invocations", server.start, server.close)]

    def _node_id(self) -> str:
        info = self.nodes.info
        if info is None:
            raise RuntimeError("the node's id is read before the NATS parts start")
        return info.id

    async def _serve_cells_endpoint(self) -> None:
        """The API serves the cells' endpoint at their gateway itself (the sandbox's relay
        hands its socket over: a checkpoint's request and answer skip a TCP hop and a copy
        each way). The listener the sandbox's endpoint names: the functions' API of a worker,
        else the public one (which starts listening later: it serves the socket then)."""
        sock = self.sandbox.take_endpoint()
        if sock is not None:
            await (self.functions_api or self.http).serve_also(sock)

    def _functions_api_part(self) -> list[Part]:
        """A worker's API for its own functions, listening before the sandbox starts (which
        relays it to the cells)."""
        listener = self.functions_api
        if listener is None:
            return []

        async def start() -> None:
            await listener.start()
            assert listener.port is not None
            self.sandbox.endpoint = ("127.0.0.1", listener.port)
            self.sandbox.api_url = api_url("127.0.0.1", listener.port)

        return [Part("functions' API", start, listener.close)]

    def _poller_parts(self) -> list[Part]:
        """Pollers and time triggers: here on a single node; in a cluster, on the node holding
        each one's claim (never on an ``api`` node)."""
        if self.nats is None:
            return [
                Part("pollers", self.pollers.start, self.pollers.close),
                Part("schedules", self.time_triggers.start, self.time_triggers.close),
                Part("trigger retries", self.trigger_retries.start, self.trigger_retries.close),
            ]
        peers = self.esm_peers
        assert peers is not None
        asked = [Part("pollers' status", _nothing, peers.close)]
        if self.owners is None or self.owned_triggers is None:
            return asked
        triggers = self.owned_triggers

        durable = self.owned_durable
        assert durable is not None

        async def follow() -> None:
            self.store.subscribe(self.pollers.heard_stored)
            self.store.subscribe(triggers.heard_stored)

        return [
            *asked,
            Part("claims bucket", self.claims.open, self.claims.close),
            Part("pollers", self.pollers.start, self.pollers.close),
            Part("schedules", triggers.start, triggers.close),
            Part("durable shards", durable.start, durable.close),
            Part("changes through other nodes", follow, _nothing),
        ]

    def _claims_part(self) -> list[Part]:
        """The node's claims, taken once everything that wants them and the engine they drive
        run (given up first at a stop)."""
        if self.nats is None:
            return []

        async def follow_durable() -> None:
            self.store.subscribe(self.durable.heard_stored)

        parts = [Part("durable changes through other nodes", follow_durable, _nothing)]
        if self.owners is not None:
            parts.append(Part("claims", self.owners.start, self.owners.close))
        return parts

    def _nats_part(self) -> list[Part]:
        link = self.nats
        return [] if link is None else [Part("NATS", link.open, link.close)]

    def _identity_part(self) -> list[Part]:
        """On a shared store, this node's id keys its metrics rows (read once, at start)."""
        if not self.settings.store_url:
            return []

        async def identify() -> None:
            self.metric_rows.node = await asyncio.to_thread(node_id, self.settings.data_dir)

        return [Part("node identity", identify, _nothing)]

    def _metric_peers_part(self) -> list[Part]:
        """Other nodes' metrics, on a node that answers the metrics APIs (a worker serves
        none: it only writes its own)."""
        if self.settings.role == "worker":
            return []
        peers = self.metric_peers
        return [Part("other nodes' metrics", peers.start, peers.close)]

    def _log_replication_part(self) -> list[Part]:
        replication = self.log_replication
        if replication is None:
            return []

        async def start() -> None:
            assert replication is not None
            await replication.open(await asyncio.to_thread(node_id, self.settings.data_dir))
            self.logs.outbox = replication

        async def stop() -> None:
            assert replication is not None
            self.logs.outbox = None
            await replication.close()

        return [Part("log replication", start, stop)]

    def _trace_replication_part(self) -> list[Part]:
        replication = self.trace_replication
        if replication is None:
            return []

        async def start() -> None:
            await replication.open(await asyncio.to_thread(node_id, self.settings.data_dir))
            self.traces.outbox = replication

        async def stop() -> None:
            self.traces.outbox = None
            await replication.close()

        return [Part("trace replication", start, stop)]

    def _console_part(self) -> list[Part]:
        console = self.console
        if console is None:
            return []

        async def start() -> None:
            await console.start()
            log.info("web console on http://%s:%s/console/", self.settings.host, console.port)

        return [Part("web console", start, console.close)]

    @property
    def state(self) -> LifecycleState:
        return self.lifecycle.state

    @property
    def port(self) -> int | None:
        return self.http.port

    async def _watch_loop(self) -> None:
        if self.loop_watch is not None:
            self.loop_watch.start()

    async def _unwatch_loop(self) -> None:
        if self.loop_watch is not None:
            self.loop_watch.close()

    async def _share_credential_secret(self) -> None:
        """Nodes of a shared store derive function credentials from one secret, kept in the
        store (the first node's, made once): a function's SDK calls are verified by any node,
        not only the one that started its environment (docs/accounts-and-sigv4.md)."""
        issuer = self.function_credentials
        if issuer is None or not self.settings.store_url:
            return
        key = ("function-credentials",)
        doc = await self.store.get(Table.CLUSTER_SECRETS, key)
        if doc is None:
            mine = {"secret": base64.b64encode(issuer.secret).decode()}
            try:
                await self.store.put(Table.CLUSTER_SECRETS, key, mine, create=True)
                doc = mine
            except StoreConflict:  # another node made it first
                doc = await self.store.get(Table.CLUSTER_SECRETS, key)
        if doc is not None:
            issuer.adopt(base64.b64decode(doc["secret"]))

    async def _move_under_accounts(self) -> None:
        moved = await move_under_accounts(self.store, self.settings.account_id)
        if moved:
            log.info(
                "moved %d rows from before accounts to account %s", moved, self.settings.account_id
            )

    async def _open_traces(self) -> None:
        """The X-Ray segment listener, where the cells reach lambdad (docs/tracing.md)."""
        reach = self.sandbox.reach()
        await self.traces.open(reach.api_host, self.settings.xray_port, reach.mark)

    async def _make_data_dir(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        """Start every part; ``StartFailed`` (with everything closed again) if one cannot."""
        await self.lifecycle.start()

    async def close(self) -> None:
        """Stop every part in reverse; ``CloseFailed`` if some failed. Idempotent.

        The stores are told first that a stop has begun: the parts' last writes (a node's
        deregistration, the metrics' last flush) then give up after a short bound when the
        database is down, instead of holding the stop for the pool's usual wait."""
        self.store.stopping()
        self.blobs.stopping()
        if self.ledger is not None:
            self.ledger.stopping()
        await self.lifecycle.close()

    def own_gauges(self) -> dict[str, float]:
        """lambdad's own figures for ``/metrics``: environments alive, events queued."""
        return {
            "environments": float(self.runtime.environment_count()),
            "queue_depth": float(self.queue.pending()),
        }

    def _make_triggers(self, *, confirm: bool) -> tuple[TriggerRetries, TimeTriggers]:
        """The schedules' and scheduled rules' firing engine and its durable retries (made
        again each time a cluster node takes the time triggers over)."""
        retries = TriggerRetries(self.store, retry_delay=self.settings.scaled(1.0))
        clock = self.scheduler_clock
        sources: list[TriggerSource] = [
            ScheduleTriggers(self.schedules, self.invoker, self.destinations, clock, retries),
            RuleTriggers(self.rules, self.invoker, self.destinations, clock, retries),
        ]
        return retries, TimeTriggers(self.store, clock, sources, confirm=confirm)

    def _make_owners(self, settings: Settings) -> Owners | None:
        """The node's claims when it takes work in a cluster (roles ``worker`` and ``all``)."""
        if self.nats is None or settings.role == "api":
            return None
        from lambdad.store.nats_owners import NatsClaims

        self.claims = NatsClaims(self.nats, settings.node_lease)
        return Owners(self.claims, node_id(settings.data_dir))

    def _claims_report(self) -> str:
        """What ``lambdad doctor`` says of this node's share of the pollers and schedules."""
        if self.nats is None:
            return "none (single node: every poller and schedule runs here)"
        if self.owners is None:
            return "none (role api: pollers and schedules run on workers)"
        held = self.owners.held()
        return ", ".join(held) if held else "none held"

    def _describe_node(self) -> NodeInfo:
        """What this node registers (run in a thread: it reads files and runs programs)."""
        found = runtimes.inventory(self.python_path, self.settings.node)
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
        except (ValueError, OSError, AttributeError):
            memory = 0
        return NodeInfo(
            id=node_id(self.settings.data_dir),
            role=self.settings.role,
            version=_version(),
            cpus=os.cpu_count() or 1,
            memory_mb=memory,
            runtimes=tuple(r for r, where in found.items() if not where.startswith("unavailable")),
        )

    def _node_address(self) -> str:
        """Where other nodes and clients reach this node's listener."""
        host = self.settings.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        port = self.http.port or self.settings.port
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _queue_report(self) -> str:
        """Where this node's async events are kept, and whether it takes them."""
        if self.nats is None:
            return f"sqlite {self.settings.data_dir / 'queue.db'}"
        takes = "put only (role api)" if self.settings.role == "api" else "put and taken here"
        wait = self.settings.queue_ack_wait
        return f"JetStream stream LAMBDAD_EVENTS, {takes}, ack wait {wait:g} s"

    def doctor(self) -> dict[str, Any]:
        code = self.settings.data_dir / "code"
        info = self.nodes.info
        return {
            "lambdad": {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "root": os.geteuid() == 0 if hasattr(os, "geteuid") else False,
                "data_dir": str(self.settings.data_dir),
            },
            "node": {
                "id": info.id if info is not None else "(not started)",
                "role": self.settings.role,
                "address": self._node_address(),
                "registry": (
                    f"shared store, lease {self.settings.node_lease:g} s"
                    if self.settings.store_url
                    else "none (single node: no store URL)"
                ),
                "nats": (self.nats.describe() if self.nats is not None else "none (no NATS URL)"),
                "concurrency": self._concurrency_report(),
                "event queue": self._queue_report(),
                "invocations": (
                    "routed to workers over NATS"
                    if routes_invocations(self.settings)
                    else "run here"
                    + (", and routed here by api nodes" if self.nats is not None else "")
                ),
                "claims": self._claims_report(),
            },
            "auth": {"mode": self.settings.auth, "account_id": self.settings.account_id},
            "store": {
                "metadata": redact_url(self.settings.store_url)
                if self.settings.store_url
                else f"sqlite {self.settings.data_dir / 'lambdad.db'}",
                "code": (
                    f"{redact_url(self.settings.store_url)}, cached in {code}"
                    if self.settings.store_url
                    else f"files {code}"
                ),
            },
            "sandbox": {"kind": self.sandbox.name, **self.sandbox.protections()},
            "runtimes": runtimes.inventory(self.python_path, self.settings.node),
            "event sources": self.pollers.report(),
            "mq brokers": {
                arn: redact_url(url) for arn, url in self.settings.mq_broker_urls.items()
            }
            or {"none": "LAMBDAD_MQ_BROKERS is not set"},
            "tracing": {**self.traces.report(), "other nodes' spans": self._trace_stream_report()},
        }

    def _trace_stream_report(self) -> str:
        """How this node's spans meet the other nodes' (``lambdad doctor``)."""
        if self.trace_replication is None:
            return "none (single node: no NATS URL)"
        if self.settings.role == "worker":
            return "JetStream stream LAMBDAD_TRACES, sent only (role worker)"
        return "JetStream stream LAMBDAD_TRACES, sent and read here"

    def _concurrency_report(self) -> str:
        """How this node counts concurrency and provisions (``lambdad doctor``)."""
        if self.grants is None:
            return "counted in this process (single node: no store URL)"
        lease = self.settings.node_lease
        sharing = len(self.provisioner.members)
        return (
            f"shared ledger in the store, grants renewed every {lease / 3:g} s and expiring "
            f"after {lease:g} s; provisioned environments shared by {sharing} node(s)"
        )


def redact_url(url: str) -> str:
    """An AMQP or PostgreSQL URL without the password it may carry (what ``lambdad doctor``
    shows)."""
    parsed = yarl.URL(url)
    return str(parsed.with_password("***")) if parsed.password else url


def _version() -> str:
    try:
        return importlib.metadata.version("lambdad")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def _nothing() -> None:
    return None


def api_url(host: str, port: int) -> str:
    """lambdad's API as a process on this host reaches it ("" before the port is known)."""
    if not port:
        return ""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def routes_invocations(settings: Settings) -> bool:
    """Whether this node runs no invocation itself (an api node in a cluster: docs/cluster.md)."""
    return settings.role == "api" and bool(settings.nats_url)


def make_sandbox(settings: Settings, python_path: str) -> Sandbox:
    """The sandbox the settings ask for; ``auto`` takes the Linux one where it can run."""
    runs = settings.data_dir / "run" / "envs"
    if settings.sandbox == "process" or (
        settings.sandbox == "auto" and linux.unavailable_reason() is not None
    ):
        return PlainSandbox(runtimes.BOOTSTRAPS)
    shared = runtimes.interpreter_dirs(python_path, settings.node)
    network = CellNetwork(
        runs,
        enabled=settings.cell_network,
        allow=parse_rules(settings.egress_allow),
        deny=parse_rules(settings.egress_deny),
        resolv_conf=settings.cell_resolv_conf,
    )
    return linux.LinuxSandbox(
        runs,
        runtimes.BOOTSTRAPS,
        shared,
        fork_python=settings.fork_python,
        pythons=runtimes.python_interpreters(python_path),
        network=network,
        # An api node in a cluster runs no environment: no cell networks made ahead for one.
        networks_ahead=0 if routes_invocations(settings) else settings.cell_networks_ahead,
        endpoint=(settings.host, settings.port),
    )
