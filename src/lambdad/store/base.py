"""The storage seams: ``Store`` (metadata), ``BlobStore`` (code) and ``Queue`` (async events).

Each has a local implementation (SQLite, files) and an in-memory twin, ``Store`` a PostgreSQL
one for clusters too, and one contract test suite (``tests/contract``) that every
implementation passes. Drivers' exceptions
(``sqlite3.Error``, aiosqlite's, ``OSError`` of the file system) never cross these interfaces:
they become one of these where the driver is imported (``raise StoreUnavailable(...) from
exc``), and the layers above turn them into ``lambdad.errors`` as the operation calls for::

    StoreError
    ├── StoreConflict       a write's precondition failed (the key exists, or changed)
    ├── StoreUnavailable    the store cannot serve now: not open, closed, a database or disk error
    └── BlobNotFound        no blob under that key (its file went missing, or never was)

The metadata ``Store`` is a small document store: ``table`` names a kind of record, ``key`` is a
tuple of strings (``("my-fn", "3")`` for a version) and the document is a JSON-ready dict. The
domain (``lambdad.control``) turns documents into typed values; the store never interprets them.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Key = tuple[str, ...]
Document = dict[str, Any]


class Table(enum.StrEnum):
    FUNCTIONS = "functions"
    VERSIONS = "versions"
    ALIASES = "aliases"
    #: ``(region, layer)``: what belongs to a layer as a whole (the last version number).
    LAYERS = "layers"
    #: ``(region, layer, version)``: one published, immutable layer version.
    LAYER_VERSIONS = "layer_versions"
    #: ``(region, layer, version)``: a layer version's resource-based policy.
    LAYER_POLICIES = "layer_policies"
    #: ``(region, function)``: a function's reserved concurrency (PutFunctionConcurrency).
    CONCURRENCY = "concurrency"
    #: ``(region, function, qualifier)``: a FunctionEventInvokeConfig ($LATEST, version, alias).
    EVENT_INVOKE_CONFIGS = "event_invoke_configs"
    #: ``(region, function)``: a function's recursive loop setting (PutFunctionRecursionConfig).
    RECURSION = "recursion"
    #: ``(region, function, qualifier)``: a provisioned concurrency config of a version or alias.
    PROVISIONED = "provisioned"
    #: ``(account, region, function, qualifier or "")``: a function's, version's or alias's
    #: resource-based policy (AddPermission, PutResourcePolicy).
    FUNCTION_POLICIES = "function_policies"
    #: ``(account, region, function, qualifier)``: a function URL config ($LATEST or alias).
    FUNCTION_URLS = "function_urls"
    #: ``(url_id,)``: which config a url-id belongs to (account, region, function, qualifier).
    FUNCTION_URL_IDS = "function_url_ids"
    #: ``(account, region, mapping uuid, shard id)``: how far a stream mapping has processed a
    #: shard (the last sequence number done, and whether the shard is read to its end).
    STREAM_CHECKPOINTS = "stream_checkpoints"
    #: ``(account, region, uuid)``: an event source mapping (CreateEventSourceMapping).
    EVENT_SOURCE_MAPPINGS = "event_source_mappings"
    #: ``(account, region, name)``: an EventBridge scheduled rule, its targets and tags.
    EVENT_RULES = "event_rules"
    #: ``(account, region, minute)``: one minute of metrics (``store/metric_rows.py``); the
    #: minute is epoch minutes, zero-padded to 10 digits so keys sort in time.
    METRICS = "metrics"
    #: ``(account, region, group)``: an EventBridge Scheduler schedule group (not ``default``).
    SCHEDULE_GROUPS = "schedule_groups"
    #: ``(account, region, group, name)``: an EventBridge Scheduler schedule.
    SCHEDULES = "schedules"
    #: ``(kind, *trigger key)``: the last occurrence a time trigger fired (``events.schedules``).
    TRIGGER_FIRES = "trigger_fires"
    #: ``(account, region, kind, *trigger name, delivery id)``: a time trigger's invoke that
    #: Lambda refused, waiting for its next attempt (``events/trigger_retries.py``).
    TRIGGER_RETRIES = "trigger_retries"
    #: ``(account, region, function, execution name)``: a durable execution and its operations
    #: (``control/durable.py``); its history is in ``DURABLE_EVENTS``.
    DURABLE_EXECUTIONS = "durable_executions"
    #: ``(account, region, function, execution name, event id)``: one event of a durable
    #: execution's history, the id zero-padded to nine digits; the execution's record above
    #: keeps none of them (one written before this table keeps its history inside until its
    #: next change: ``control/durable.py``).
    DURABLE_EVENTS = "durable_events"
    #: ``(account, region, function, execution name, position)``: one operation of a durable
    #: execution (GetDurableExecutionState's shape), the position its order of creation
    #: zero-padded to nine digits; a checkpoint writes only the operations it changed. The
    #: execution's record above keeps none of them (one written before this table keeps them
    #: inside until its next change: ``control/durable.py``).
    DURABLE_OPERATIONS = "durable_operations"
    #: ``(node id,)``: a lambdad of a shared store, its role, address, capacity and last
    #: heartbeat (``control/nodes.py``). Not keyed by account: nodes serve every account.
    NODES = "nodes"
    #: ``(account, region, function, version, node id)``: the provisioned environments one
    #: node of a cluster has initialised for a version (``invoke/provisioned.py``).
    PROVISIONED_SHARES = "provisioned_shares"
    #: ``(name,)``: a secret every node of a cluster shares (``function-credentials``: the
    #: key function credentials are derived with, so any node verifies any node's). Global.
    CLUSTER_SECRETS = "cluster_secrets"


class StoreError(Exception):
    """Root of every error the storage seams raise."""


class StoreConflict(StoreError):
    """A write whose precondition failed: the key exists already, or it changed meanwhile."""


class StoreUnavailable(StoreError):
    """The store cannot serve the call now: it is not open or already closed, or its database
    or disk failed. The message says which store and why."""


class BlobNotFound(StoreError):
    """No blob under ``key``: a key never stored, or its bytes went missing from disk."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob {key}")
        self.key = key


@dataclasses.dataclass(frozen=True, slots=True)
class Write:
    """One write of a transaction: ``doc`` None deletes; ``create`` demands that it is new;
    ``expect`` ``(field, value)`` demands that the stored document exists and that its
    top-level ``field`` equals ``value`` (an absent field equals None), a compare-and-set:
    else the whole transaction is refused with ``StoreConflict``. ``value`` is a JSON scalar
    (a string, an integer, None)."""

    table: Table
    key: Key
    doc: Document | None
    create: bool = False
    expect: tuple[str, object] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoreChange:
    """A change another process made to the metadata (``Store.subscribe``).

    ``key`` was written or deleted; with ``prefix``, every key under ``key`` may have changed
    (a ``delete_prefix``, or ``()``: anything in ``table``). ``table`` None: the feed lost track
    for a while (its connection dropped and came back), so anything may have changed.
    """

    table: Table | None
    key: Key = ()
    prefix: bool = False

    def covers(self, table: Table, key: Key) -> bool:
        """Whether ``key`` of ``table`` may be what changed."""
        if self.table is None:
            return True
        if self.table is not table:
            return False
        if self.prefix:
            return key[: len(self.key)] == self.key
        return key == self.key


StoreChangeListener = Callable[[StoreChange], None]


def _no_subscription() -> None:
    return None


class Store(abc.ABC):
    """Metadata documents, keyed by table and tuple."""

    def subscribe(self, listener: StoreChangeListener) -> Callable[[], None]:
        """Call ``listener`` (on the event loop, never concurrently with itself) with every
        change that other processes make through their own ``Store`` on the same data, so that
        caches of this process can forget what went stale. Returns the unsubscribe function.

        A store only one process uses (SQLite, memory) has no such changes: it never calls
        ``listener``. The changes this instance makes are not delivered: the code that makes
        them updates its own caches.
        """
        return _no_subscription

    def stopping(self) -> None:  # noqa: B027 (optional: a local store never waits on a network)
        """lambdad has begun to stop: from now on, a store whose backend cannot be reached
        gives up on a read or write after a short bound instead of its usual wait, so that a
        database that is down cannot hold a stop hostage (docs/cluster.md)."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def get(self, table: Table, key: Key) -> Document | None: ...

    @abc.abstractmethod
    async def scan(self, table: Table, prefix: Key = ()) -> list[tuple[Key, Document]]:
        """Every document whose key starts with ``prefix``, ordered by key."""

    @abc.abstractmethod
    async def write(self, writes: Sequence[Write]) -> None:
        """Apply every write atomically, or none: ``StoreConflict`` if a ``create`` exists or
        an ``expect`` does not hold."""

    @abc.abstractmethod
    async def delete_prefix(self, table: Table, prefix: Key) -> int:
        """Delete every document under ``prefix``; returns how many."""

    async def scan_page(
        self, table: Table, prefix: Key, offset: int, limit: int
    ) -> list[tuple[Key, Document]]:
        """At most ``limit`` of ``scan(table, prefix)``'s documents, from its ``offset``-th
        (a page of a list; implementations read only that page)."""
        rows = await self.scan(table, prefix)
        return rows[max(0, offset) : max(0, offset) + max(0, limit)]

    async def get_many(self, table: Table, keys: Sequence[Key]) -> list[Document | None]:
        """``get`` of each key, in order (implementations read them in one go)."""
        return [await self.get(table, key) for key in keys]

    async def put(self, table: Table, key: Key, doc: Document, *, create: bool = False) -> None:
        await self.write([Write(table, key, doc, create)])

    async def delete(self, table: Table, key: Key) -> None:
        await self.write([Write(table, key, None)])


class BlobStore(abc.ABC):
    """Content-addressed bytes (function code, layers), keyed by their SHA-256 in hex."""

    async def open(self) -> None:  # noqa: B027 (optional: a local store has nothing to open)
        """Connect to what holds the blobs (nothing to do for a local store)."""

    async def close(self) -> None:  # noqa: B027
        """Let go of the connections ``open`` made. Idempotent."""

    def stopping(self) -> None:  # noqa: B027 (optional: a local store never waits on a network)
        """lambdad has begun to stop: give up quickly on a backend that cannot be reached (see
        ``Store.stopping``)."""

    @abc.abstractmethod
    async def put(self, data: bytes) -> str:
        """Store ``data``; returns its key (hex SHA-256). Storing the same bytes twice is free."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; ``BlobNotFound`` if there are none."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def unpacked(self, key: str) -> Path:
        """A local directory holding the extracted zip ``key``, extracted once and reused;
        ``BlobNotFound`` if there is no such zip."""


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An accepted asynchronous invocation."""

    id: str
    function_name: str
    qualifier: str | None
    payload: bytes
    region: str
    enqueued_at: float
    attempt: int = 0
    not_before: float = 0.0
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The account the function belongs to; "" for events queued before accounts (they are the
    #: configured default account's).
    account_id: str = ""
    #: The id is an idempotency key: once the event is acknowledged, the queue remembers the
    #: id (for ``KEEP_DONE_IDS`` seconds), so putting it again is a ``StoreConflict`` as while it
    #: was queued. A schedule's occurrence is queued this way (docs/schedules.md).
    keep_id: bool = False

    def retried(self, not_before: float) -> QueuedEvent:
        """This event handed out again no earlier than ``not_before``, one attempt more."""
        return dataclasses.replace(
            self, attempt=self.attempt + 1, not_before=not_before, attributes=dict(self.attributes)
        )


#: How long a queue remembers the acknowledged id of a ``keep_id`` event (two days: beyond
#: Scheduler's longest event age, one day).
KEEP_DONE_IDS = 2 * 86400.0


class Queue(abc.ABC):
    """Durable hand-off of asynchronous events to the dispatcher."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def put(self, event: QueuedEvent) -> None:
        """Returns once the event is as durable as this implementation makes it;
        ``StoreConflict`` if its id is queued (or, for a ``keep_id`` event, was acknowledged)."""

    @abc.abstractmethod
    async def take(self) -> QueuedEvent:
        """Wait for the next event that is due; it stays owned until ``ack`` or ``retry``."""

    @abc.abstractmethod
    async def ack(self, event_id: str) -> None: ...

    @abc.abstractmethod
    async def retry(self, event: QueuedEvent, not_before: float) -> None: ...

    @abc.abstractmethod
    def pending(self) -> int: ...
