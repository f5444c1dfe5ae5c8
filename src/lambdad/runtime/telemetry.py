"""The Telemetry API (2022-07-01): an environment's subscriptions and their delivery.

Extensions subscribe during init (``PUT /2022-07-01/telemetry``) to ``platform``, ``function``
and ``extension`` records. Each subscription buffers ``{"time","type","record"}`` events and a
background task POSTs them as a JSON array to the subscriber's URI (``sandbox.localdomain`` is
loopback: environments share the host's network) or writes them as JSON lines to its TCP port,
whenever ``maxItems`` or ``maxBytes`` is reached or ``timeoutMs`` has passed since the first
buffered event. Nothing here blocks the invoke path: recording is an append, a batch that
cannot be delivered (refused, failed, or unanswered for ``REQUEST_TIMEOUT`` seconds while the
environment runs) is dropped and counted, and the next batch starts with a
``platform.logsDropped`` event; when nothing else follows, that event goes on its own.
Events recorded during init before a subscription existed (``platform.initStart``, the
runtime's first lines) are replayed to it, as Lambda does.

The legacy Logs API (2020-08-15, ``logs_api.py``) rides on the same machinery: its
subscriptions sit beside the Telemetry API's, and each subscription's ``Dialect`` turns the one
stream of recorded events into its API's schema (or leaves an event out).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, Protocol

import aiohttp
import yarl

from lambdad.observe.platform import Report, iso_ms, runtime_version
from lambdad.runtime.replies import RuntimeApiError

SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
TYPES = ("platform", "function", "extension")
#: Inclusive ranges of the buffering settings, and their defaults.
LIMITS = {"maxItems": (1000, 10000), "maxBytes": (262144, 1048576), "timeoutMs": (25, 30000)}
DEFAULTS = {"maxItems": 10000, "maxBytes": 262144, "timeoutMs": 1000}
#: Hosts a subscriber names for its own listener.
LOCAL_HOSTS = frozenset({"sandbox.localdomain", "sandbox", "localhost"})
#: Events kept during init for subscriptions made later in init.
BACKLOG = 1000
#: A subscription holds at most this many times its ``maxBytes`` undelivered.
OVERFLOW = 4
#: Seconds of the environment's running time a subscriber has to take one batch (the time it
#: spends frozen does not count: it cannot answer then).
REQUEST_TIMEOUT = 5.0
#: The longest wait before delivering again after failed deliveries (the wait doubles from
#: ``timeoutMs`` with each failure in a row, unless the buffer fills).
RETRY_WAIT_MAX = 5.0
DROP_REASON = (
    "Some logs were dropped because the downstream consumer is slower than the logs production "
    "rate or did not acknowledge their delivery."
)

Event = dict[str, Any]
#: Events only the Logs API sends; a Telemetry API subscriber never gets them.
LOGS_ONLY = frozenset({"platform.end", "platform.fault", "platform.logsSubscription"})


class _Invalid(Exception):
    """A subscription body is wrong; ``parse_subscription`` answers it in its API's type."""


def _invalid(message: str) -> _Invalid:
    return _Invalid(message)


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A validated subscription request."""

    types: tuple[str, ...]
    max_items: int
    max_bytes: int
    timeout_ms: int
    #: ``http://127.0.0.1:…`` (local names resolved) for HTTP; None for TCP.
    uri: str | None
    port: int | None
    schema: str = ""
    #: How batches reach an HTTP destination (the Logs API lets a subscriber ask for PUT).
    method: str = "POST"


def _int_setting(buffering: dict[str, Any], name: str) -> int:
    value = buffering.get(name, DEFAULTS[name])
    low, high = LIMITS[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(f"buffering.{name}: expected integer, but got {type(value).__name__}")
    if not low <= value <= high:
        raise _invalid(f"buffering.{name}: must be between {low} and {high}, but got {value}")
    return value


def _url(uri: Any) -> yarl.URL | None:
    """``uri`` parsed, or None when it is not a URL with a valid port."""
    if not isinstance(uri, str) or not uri:
        return None
    try:
        url = yarl.URL(uri)
        url.port  # noqa: B018  (an out-of-range port raises only when read)
    except ValueError:
        return None
    return url


def _destination(document: dict[str, Any]) -> tuple[str | None, int | None]:
    destination = document.get("destination")
    if not isinstance(destination, dict):
        raise _invalid("destination: missing or not an object")
    protocol = destination.get("protocol")
    if protocol == "HTTP":
        url = _url(destination.get("URI"))
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise _invalid("destination.URI: must be an http:// URI")
        if url.host in LOCAL_HOSTS:
            url = url.with_host("127.0.0.1")
        return str(url), None
    if protocol == "TCP":
        port = destination.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise _invalid("destination.port: must be an integer between 1 and 65535")
        return None, port
    raise _invalid('destination.protocol: must be "HTTP" (with URI) or "TCP" (with port)')


def parse_subscription(
    body: bytes,
    schemas: Sequence[str],
    default_schema: str | None,
    error_type: str,
    methods: bool = False,
) -> Request:
    """Validate a subscription body against ``schemas`` (``default_schema`` when absent, if
    one; an HTTP ``destination.method`` when ``methods``); a wrong one is a 400
    ``RuntimeApiError`` of ``error_type``."""
    try:
        return _parse(body, schemas, default_schema, methods)
    except _Invalid as exc:
        raise RuntimeApiError(400, error_type, str(exc)) from None


def parse_request(body: bytes) -> Request:
    """A Telemetry API subscription; a 400 ``ValidationError`` ``RuntimeApiError`` if wrong."""
    return parse_subscription(body, SCHEMA_VERSIONS, None, "ValidationError")


def _parse(
    body: bytes, schemas: Sequence[str], default_schema: str | None, methods: bool
) -> Request:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise _invalid(f"failed to parse JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _invalid("the request body must be a JSON object")
    schema = document.get("schemaVersion", default_schema)
    if schema not in schemas:
        allowed = ", ".join(f'"{v}"' for v in schemas)
        raise _invalid(f"schemaVersion: must be one of {allowed}")
    types = document.get("types")
    if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
        raise _invalid('types: must be a non-empty array of "platform", "function", "extension"')
    buffering = document.get("buffering") or {}
    if not isinstance(buffering, dict):
        raise _invalid("buffering: must be an object")
    uri, port = _destination(document)
    return Request(
        tuple(dict.fromkeys(types)),
        _int_setting(buffering, "maxItems"),
        _int_setting(buffering, "maxBytes"),
        _int_setting(buffering, "timeoutMs"),
        uri,
        port,
        str(schema),
        _method(document["destination"]) if methods and uri is not None else "POST",
    )


def _method(destination: dict[str, Any]) -> str:
    method = destination.get("method", "POST")
    if method not in ("POST", "PUT"):
        raise _invalid('destination.method: must be "POST" or "PUT"')
    return str(method)


def _category(kind: str) -> str:
    return "platform" if kind.startswith("platform.") else kind


#: Makes a socket in the environment's network (``SandboxProcess.socket``).
SocketFactory = Callable[[int, int, int], socket.socket]
#: The environment's running time in seconds (a clock that stands still while it is frozen).
Clock = Callable[[], float]


class Dialect(Protocol):
    """How one API's subscribers see the recorded events (hashable: one per schema)."""

    #: ``telemetry`` or ``logs``: an extension subscribes through one of them only.
    api: ClassVar[str]
    #: The ``reason`` of this API's ``platform.logsDropped``.
    drop_reason: ClassVar[str]

    def event(self, kind: str, record: Any, at: float) -> Event | None:
        """The event a subscriber gets for a recorded one, or None when it gets none."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class TelemetryDialect:
    """The Telemetry API's events: records as recorded; JSON-format functions' lines parsed."""

    json_logs: bool
    api: ClassVar[str] = "telemetry"
    drop_reason: ClassVar[str] = DROP_REASON

    def event(self, kind: str, record: Any, at: float) -> Event | None:
        if kind in LOGS_ONLY:
            return None
        if kind in ("function", "extension") and self.json_logs and record.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(record)
        return make_event(kind, record, at)


def _size(event: Event) -> int:
    return len(json.dumps(event, separators=(",", ":")))


def _offer(
    subscription: Subscription,
    kind: str,
    record: Any,
    at: float,
    made: dict[Dialect, tuple[Event, int] | None],
) -> None:
    """Offer a recorded event to ``subscription`` in its schema (``made`` caches per schema)."""
    if not subscription.wants(kind):
        return
    dialect = subscription.dialect
    if dialect not in made:
        event = dialect.event(kind, record, at)
        made[dialect] = None if event is None else (event, _size(event))
    item = made[dialect]
    if item is not None:
        subscription.offer(*item)


class Subscription:
    """One extension's subscription: its buffer and the task that delivers it.

    Its connections are made by ``sockets``, in the environment's own network, so that a
    listener on the environment's loopback is reached even in a cell with a namespace of its own.
    """

    def __init__(
        self,
        name: str,
        request: Request,
        dialect: Dialect,
        sockets: SocketFactory = socket.socket,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.request = request
        self.dialect = dialect
        self._sockets = sockets
        self._clock = clock
        #: Deliveries that failed in a row (each doubles the wait before the next).
        self._failures = 0
        self._buffer: list[tuple[Event, int]] = []
        self._bytes = 0
        self._dropped_records = 0
        self._dropped_bytes = 0
        self._has_items = asyncio.Event()
        self._urgent = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._tcp: asyncio.StreamWriter | None = None
        self._task = asyncio.create_task(self._deliver_forever(), name=f"telemetry-{name}")

    def wants(self, kind: str) -> bool:
        return _category(kind) in self.request.types

    def offer(self, event: Event, size: int) -> None:
        if self._bytes + size > OVERFLOW * self.request.max_bytes:
            self._dropped_records += 1
            self._dropped_bytes += size
            self._has_items.set()
            return
        self._buffer.append((event, size))
        self._bytes += size
        self._has_items.set()
        if self._full():
            self._urgent.set()

    def flush(self) -> None:
        """Deliver what is buffered now, without waiting for ``timeoutMs``."""
        if self._buffer:
            self._urgent.set()

    def _full(self) -> bool:
        request = self.request
        return len(self._buffer) >= request.max_items or self._bytes >= request.max_bytes

    def _take(self) -> list[tuple[Event, int]]:
        batch: list[tuple[Event, int]] = []
        size = 0
        while self._buffer and len(batch) < self.request.max_items:
            event_size = self._buffer[0][1]
            if batch and size + event_size > self.request.max_bytes:
                break
            batch.append(self._buffer.pop(0))
            size += event_size
        self._bytes -= size
        if not self._full():
            self._urgent.clear()
        return batch

    def _wait(self) -> float:
        """Seconds to buffer before the next delivery: ``timeoutMs``, doubled for each
        delivery that failed in a row (at most ``RETRY_WAIT_MAX``, or ``timeoutMs`` if more)."""
        timeout = self.request.timeout_ms / 1000
        if not self._failures:
            return timeout
        return max(timeout, min(timeout * (1 << min(self._failures, 16)), RETRY_WAIT_MAX))

    async def _deliver_forever(self) -> None:
        while True:
            await self._has_items.wait()
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self._wait())
            batch = self._take()
            if batch or self._dropped_records:
                await self._send(batch)
            if not self._buffer and not self._dropped_records:
                self._has_items.clear()

    async def _send(self, batch: list[tuple[Event, int]]) -> None:
        """Deliver ``batch``, after a ``platform.logsDropped`` when records were dropped (the
        batch alone may be empty then); an undelivered batch is counted as dropped in turn."""
        events = [event for event, _ in batch]
        reported = self._dropped_records, self._dropped_bytes
        if reported[0]:
            record = {
                "droppedBytes": reported[1],
                "droppedRecords": reported[0],
                "reason": self.dialect.drop_reason,
            }
            events.insert(0, make_event("platform.logsDropped", record))
        try:
            delivered = await self._bounded(self._post(events))
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            delivered = False
        if delivered:
            # Records dropped while the batch was on its way are told in the next one.
            self._dropped_records -= reported[0]
            self._dropped_bytes -= reported[1]
            self._failures = 0
        else:
            self._dropped_records += len(batch)
            self._dropped_bytes += sum(size for _, size in batch)
            self._failures += 1

    async def _bounded(self, delivery: Coroutine[Any, Any, bool]) -> bool:
        """``delivery``'s result, or TimeoutError once it has taken ``REQUEST_TIMEOUT`` seconds
        of the environment's running time: a frozen subscriber cannot answer, and gets its
        answer's time once thawed (as on Lambda, where the platform freezes with it)."""
        task = asyncio.ensure_future(delivery)
        deadline = self._clock() + REQUEST_TIMEOUT
        try:
            # The running time passes no faster than real time: sleeping for what is left of it
            # never overshoots, and a frozen environment costs one wake-up per REQUEST_TIMEOUT.
            while (left := deadline - self._clock()) > 0:
                done, _ = await asyncio.wait([task], timeout=left)
                if done:
                    return task.result()
            raise TimeoutError(f"no answer in {REQUEST_TIMEOUT} s")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                if self._tcp is not None:  # a line may be half written
                    self._tcp.close()
                    self._tcp = None

    async def _post(self, events: list[Event]) -> bool:
        uri, method = self.request.uri, self.request.method
        if uri is None:
            return await self._write_tcp(events)
        payload = json.dumps(events, separators=(",", ":")).encode()
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0)
            connector = aiohttp.TCPConnector(
                socket_factory=lambda info: self._sockets(info[0], info[1], info[2])
            )
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        headers = {"Content-Type": "application/json"}
        async with self._session.request(method, uri, data=payload, headers=headers) as reply:
            await reply.read()
            return reply.status < 300

    async def _write_tcp(self, events: list[Event]) -> bool:
        if self._tcp is None or self._tcp.is_closing():
            assert self.request.port is not None
            sock = self._sockets(socket.AF_INET, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                loop = asyncio.get_running_loop()
                await loop.sock_connect(sock, ("127.0.0.1", self.request.port))
            except BaseException:
                sock.close()
                raise
            _, self._tcp = await asyncio.open_connection(sock=sock)
        lines = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        self._tcp.write(lines.encode())
        try:
            await self._tcp.drain()
        except OSError:
            self._tcp.close()
            self._tcp = None
            raise
        return True

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._session is not None:
            await self._session.close()
        if self._tcp is not None:
            self._tcp.close()


def make_event(kind: str, record: Any, at: float | None = None) -> Event:
    return {"time": iso_ms(time.time() if at is None else at), "type": kind, "record": record}


def _tracing(trace_id: str | None) -> dict[str, Any]:
    return {"tracing": {"type": "X-Amzn-Trace-Id", "value": trace_id}} if trace_id else {}


class Telemetry:
    """The Telemetry and Logs APIs of one environment: subscriptions open during init, and
    delivery.

    ``announce(api, name, types)`` is told of each subscription (for the function's log).
    """

    def __init__(
        self,
        json_logs: bool,
        announce: Callable[[str, str, Sequence[str]], None] | None = None,
    ) -> None:
        self._json_logs = json_logs
        #: ``initializationType`` of the init events (``provisioned-concurrency``, ...).
        self.initialization_type = "on-demand"
        self._announce = announce
        self._subscriptions: dict[str, Subscription] = {}
        #: Makes sockets in the environment's network (set by the environment).
        self.sockets: SocketFactory = socket.socket
        #: The environment's running time (set by the environment; it stands still while frozen).
        self.clock: Clock = time.monotonic
        #: Subscriptions are accepted (init); events are kept for late subscribers meanwhile.
        self.open = True
        self._backlog: list[tuple[str, Any, float]] = []

    @property
    def active(self) -> bool:
        return self.open or bool(self._subscriptions)

    # ------------------------------------------------------------ subscriptions

    def subscribe(self, name: str, body: bytes) -> None:
        """``PUT /2022-07-01/telemetry`` by extension ``name``; refusals are ``RuntimeApiError``."""
        if not self.open:
            raise RuntimeApiError(
                403, "Telemetry.SubscriptionClosed", "Telemetry API subscription is closed"
            )
        request = parse_request(body)
        if self.subscribed_through(name) not in (None, TelemetryDialect.api):
            raise RuntimeApiError(
                400, "ValidationError", f"{name} is already subscribed through the Logs API"
            )
        self.add(name, request, TelemetryDialect(self._json_logs), "platform.telemetrySubscription")

    def subscribed_through(self, name: str) -> str | None:
        """The API (``telemetry`` or ``logs``) extension ``name`` subscribed through, if any."""
        subscription = self._subscriptions.get(name)
        return None if subscription is None else subscription.dialect.api

    def add(self, name: str, request: Request, dialect: Dialect, announced_as: str) -> None:
        """Subscribe ``name`` (replacing its previous subscription) and announce it with an
        ``announced_as`` event; the events kept since init began are replayed to it first."""
        previous = self._subscriptions.pop(name, None)
        if previous is not None:
            asyncio.get_running_loop().create_task(previous.close())
        subscription = Subscription(
            name, request, dialect, lambda *args: self.sockets(*args), lambda: self.clock()
        )
        self._subscriptions[name] = subscription
        made: dict[Dialect, tuple[Event, int] | None] = {}
        for kind, record, at in self._backlog:
            _offer(subscription, kind, record, at, made)
            made.clear()
        if self._announce is not None:
            self._announce(dialect.api, name, request.types)
        record = {"name": name, "state": "Subscribed", "types": list(request.types)}
        self.record(announced_as, record)

    def close_subscriptions(self) -> None:
        """Init is over: no new subscriptions, and the backlog goes."""
        self.open = False
        self._backlog.clear()

    def flush(self) -> None:
        for subscription in self._subscriptions.values():
            subscription.flush()

    async def reset(self) -> None:
        """A new init attempt: drop every subscription and reopen."""
        await self.close()
        self.open = True

    async def close(self) -> None:
        subscriptions = list(self._subscriptions.values())
        self._subscriptions.clear()
        self._backlog.clear()
        self.open = False
        await asyncio.gather(*(s.close() for s in subscriptions))

    # ------------------------------------------------------------ recording

    def record(self, kind: str, record: Any) -> None:
        """One event for every subscriber, each in its API's schema (built once per schema)."""
        if not self.active:
            return
        at = time.time()
        if self.open and len(self._backlog) < BACKLOG:
            self._backlog.append((kind, record, at))
        made: dict[Dialect, tuple[Event, int] | None] = {}
        for subscription in self._subscriptions.values():
            _offer(subscription, kind, record, at, made)

    def _lines(self, kind: str, lines: list[str]) -> None:
        if not self.active:
            return
        for line in lines:
            self.record(kind, line)

    def function(self, lines: list[str]) -> None:
        self._lines("function", lines)

    def extension(self, lines: list[str]) -> None:
        self._lines("extension", lines)

    # ------------------------------------------------------------ platform events

    def init_start(
        self,
        runtime: str | None,
        name: str,
        version: str,
        instance: str,
        memory_mb: int,
        phase: str,
    ) -> None:
        runtime_name, arn = runtime_version(runtime)
        self.record(
            "platform.initStart",
            {
                "initializationType": self.initialization_type,
                "phase": phase,
                "runtimeVersion": runtime_name,
                "runtimeVersionArn": arn,
                "functionName": name,
                "functionVersion": version,
                "instanceId": instance,
                "instanceMaxMemory": memory_mb,
            },
        )

    def init_runtime_done(self, phase: str, status: str, error_type: str | None) -> None:
        record = {"initializationType": self.initialization_type, "phase": phase, "status": status}
        self.record("platform.initRuntimeDone", _with_error(record, error_type))

    def init_report(
        self, phase: str, status: str, duration_ms: float, error_type: str | None
    ) -> None:
        record = {
            "initializationType": self.initialization_type,
            "phase": phase,
            "status": status,
            "metrics": {"durationMs": round(duration_ms, 3)},
        }
        self.record("platform.initReport", _with_error(record, error_type))

    def extension_state(
        self, name: str, state: str, events: Sequence[str], error_type: str | None
    ) -> None:
        record = {"name": name, "state": state, "events": list(events)}
        self.record("platform.extension", _with_error(record, error_type))

    # The three events of every invocation build nothing while no one is subscribed.

    def start(self, request_id: str, version: str, trace_id: str | None) -> None:
        if not self.active:
            return
        record = {"requestId": request_id, "version": version, **_tracing(trace_id)}
        self.record("platform.start", record)

    def end(self, request_id: str) -> None:
        """``platform.end`` (the Logs API's END)."""
        if self.active:
            self.record("platform.end", {"requestId": request_id})

    def fault(self, message: str) -> None:
        """``platform.fault``: the invocation failed in the platform (the Logs API's)."""
        if self.active:
            self.record("platform.fault", message)

    def runtime_done(
        self,
        request_id: str,
        status: str,
        duration_ms: float,
        produced_bytes: int,
        error_type: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        if not self.active:
            return
        record = {
            "requestId": request_id,
            "status": status,
            "metrics": {"durationMs": round(duration_ms, 3), "producedBytes": produced_bytes},
            "spans": [],
            **_tracing(trace_id),
        }
        self.record("platform.runtimeDone", _with_error(record, error_type))

    def report(self, report: Report, trace_id: str | None = None) -> None:
        if not self.active:
            return
        metrics: dict[str, Any] = {
            "durationMs": round(report.duration_ms, 3),
            "billedDurationMs": report.billed_ms,
            "memorySizeMB": report.memory_mb,
            "maxMemoryUsedMB": report.max_memory_mb,
        }
        if report.init_duration_ms is not None:
            metrics["initDurationMs"] = round(report.init_duration_ms, 3)
        record = {
            "requestId": report.request_id,
            "status": report.status or "success",
            "metrics": metrics,
            **_tracing(trace_id),
        }
        self.record("platform.report", _with_error(record, report.error_type))


def _with_error(record: dict[str, Any], error_type: str | None) -> dict[str, Any]:
    if error_type:
        record["errorType"] = error_type
    return record
