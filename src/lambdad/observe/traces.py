"""Traces: the functions' X-Ray segments (received over UDP) and lambdad's own spans.

Functions send segment documents as the X-Ray daemon receives them, one per datagram:
``{"format":"json","version":1}\\n<segment JSON>`` (X-Ray SDKs, Powertools Tracer). A document
is a segment or an independent subsegment (``"type":"subsegment"``, with ``parent_id``); each
one and its nested ``subsegments`` become spans. Anything else is counted and dropped.

Spans are kept per trace, newest traces last, at most ``max_traces`` traces of at most
``max_spans`` spans (the oldest trace goes first), and handed to the exporter when one is set.
A trace belongs to the account of the invocation lambdad recorded in it; a trace only a
function's segments reached (not sampled by lambdad) is kept but never listed.

In a cluster (docs/tracing.md, "In a cluster") what a node keeps of its own also goes to its
``outbox`` (``store/trace_replication.py`` sends it to the other nodes), and the other nodes'
spans and listener counts come in through ``apply``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any, Protocol

import msgspec

from lambdad.observe.otlp import KIND_SERVER, Span, valid_ids
from lambdad.observe.trace_export import SpanExporter

log = logging.getLogger(__name__)

#: The daemon protocol's header line (the X-Ray SDKs send exactly this; spaces tolerated).
_HEADER = {"format": "json", "version": 1}
_MAX_DEPTH = 32
#: X-Ray indexes at most 50 annotations per trace; a segment keeps at most that many.
_MAX_ANNOTATIONS = 50
#: The latest time a segment may give (epoch seconds, the year 5138): far beyond any real
#: one, and within what OTLP's fixed64 nanoseconds hold.
_LATEST_TIME = 1e11
Owner = tuple[str, str, str]  # (account, region, function name)


class SpanOutbox(Protocol):
    """Where a node's own spans and counts go for the cluster's other nodes
    (``store/trace_replication.py``): ``emit`` only queues, it never blocks. A change is a
    dict of ``SpanChange``'s fields, encoded (in JSON) by the outbox's sender."""

    def emit(self, change: dict[str, Any]) -> None: ...


class SpanChange(msgspec.Struct):
    """One change of a node's trace store as other nodes read it: spans of one trace and
    the trace's owner, or the node's listener counts (segments received, datagrams dropped)."""

    o: Owner | None = None
    s: list[Span] | None = None
    c: tuple[int, int] | None = None


#: A message of changes, decoded straight into spans (a tenth of the time of decoding to
#: dicts and converting: a restarted api node reads up to the whole stream).
_decode_changes = msgspec.json.Decoder(list[SpanChange]).decode


def otel_trace_id(root: str) -> str:
    """The OpenTelemetry trace id of an X-Ray root: its 32 hex digits (``1-`` and ``-`` gone)."""
    return root[2:].replace("-", "") if root.startswith("1-") else ""


def xray_root(trace_id: str) -> str:
    """The X-Ray form of a 32-hex-digit trace id."""
    return f"1-{trace_id[:8]}-{trace_id[8:]}"


@dataclasses.dataclass(slots=True)
class Trace:
    """One trace's spans, and the invocation that owns it."""

    trace_id: str
    spans: list[Span] = dataclasses.field(default_factory=list)
    owner: Owner | None = None
    started: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "TraceId": xray_root(self.trace_id),
            "OtelTraceId": self.trace_id,
            "Function": self.owner[2] if self.owner else None,
            "StartTime": self.started,
            "Spans": [span_json(s) for s in sorted(self.spans, key=lambda s: s.start)],
        }


def span_json(span: Span) -> dict[str, Any]:
    return {
        "Id": span.span_id,
        "ParentId": span.parent_id,
        "Name": span.name,
        "Service": span.service,
        "StartTime": span.start,
        "EndTime": span.end,
        "Error": span.error,
        "Attributes": dict(span.attributes),
    }


class ListenerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Traces:
    """The trace store, the UDP segment listener and the exporter's feed."""

    def __init__(
        self,
        *,
        max_traces: int = 1000,
        max_spans: int = 1000,
        exporter: SpanExporter | None = None,
    ) -> None:
        self._traces: collections.OrderedDict[str, Trace] = collections.OrderedDict()
        self._max_traces = max_traces
        self._max_spans = max_spans
        self.exporter = exporter
        self._transport: asyncio.DatagramTransport | None = None
        #: Datagrams dropped as not a segment document, and segments received.
        self.garbage = 0
        self.received = 0
        #: In a cluster: where this node's own spans go, and the other nodes' counts
        #: (segments received, datagrams dropped) by node id.
        self.outbox: SpanOutbox | None = None
        self.peers: dict[str, tuple[int, int]] = {}
        self.state = ListenerState.NEW

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the listener receives segments, once open."""
        if self._transport is None:
            return None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def open(self, host: str, port: int = 0, mark: int = 0) -> None:
        """Listen for segment documents on UDP ``host:port``; ``mark``: the socket's firewall
        mark, so cells may reach it through their walls (docs/sandbox.md)."""
        if self.state is not ListenerState.NEW:
            return
        self.state = ListenerState.RUNNING
        try:
            sock = _bound(host, port, mark)
        except OSError as exc:
            if not port:
                raise
            log.info("X-Ray segment port %s:%d is taken (%s): another port", host, port, exc)
            sock = _bound(host, 0, mark)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport
        if self.exporter is not None:
            self.exporter.open()

    async def close(self) -> None:
        if self.state is ListenerState.CLOSED:
            return
        self.state = ListenerState.CLOSED
        if self._transport is not None:
            self._transport.close()
        if self.exporter is not None:
            await self.exporter.close()

    def report(self) -> dict[str, Any]:
        """For ``lambdad doctor``: the listener, what it received and dropped, the export."""
        address = self.address
        exporter = self.exporter
        peers = self.peers.values()
        return {
            "segment listener": f"udp {address[0]}:{address[1]}" if address else "not running",
            # In a cluster: every node's (each node's latest count it sent).
            "segments received": self.received + sum(received for received, _ in peers),
            "datagrams dropped": self.garbage + sum(dropped for _, dropped in peers),
            "traces kept": len(self._traces),
            "otlp endpoint": exporter.url if exporter else "none",
            "spans exported": exporter.exported if exporter else 0,
            "spans not exported": exporter.dropped if exporter else 0,
        }

    def datagram(self, data: bytes) -> None:
        """One datagram: a segment document kept, anything else counted and dropped."""
        try:
            spans = _parse(data)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            spans = None
        if not spans:
            self.garbage += 1
        else:
            self.received += 1
        if self.outbox is not None:
            self.outbox.emit({"c": [self.received, self.garbage]})
        if spans:
            self.add(spans)

    def add(self, spans: list[Span], owner: Owner | None = None) -> None:
        """Keep spans of one trace (and offer them to the exporter and the outbox)."""
        trace, kept = self._keep(spans, owner)
        if not kept:
            return
        if self.exporter is not None:
            self.exporter.offer(kept)
        if self.outbox is not None:
            self.outbox.emit({"o": trace.owner, "s": kept})

    def apply(self, data: bytes, node: str) -> None:
        """Another node's changes (cluster mode: a message of ``SpanChange``s): its spans
        kept here (not exported again: each node exports its own), its listener's counts."""
        try:
            changes = _decode_changes(data)
        except msgspec.DecodeError as exc:
            log.warning("spans from node %s that do not decode: skipped (%s)", node, exc)
            return
        for change in changes:
            if change.c is not None:
                self.peers[node] = change.c
            spans = change.s
            if spans and all(valid_ids(s.trace_id, s.span_id, s.parent_id) for s in spans):
                self._keep(spans, change.o)

    def _keep(self, spans: list[Span], owner: Owner | None) -> tuple[Trace, list[Span]]:
        """Keep spans of one trace: the trace, and those kept (a full trace keeps none)."""
        trace_id = spans[0].trace_id
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = Trace(trace_id, started=spans[0].start)
            while len(self._traces) > self._max_traces:
                self._traces.popitem(last=False)
        if owner is not None and trace.owner is None:
            trace.owner = owner
        if not spans[0].service:  # a function's subsegments: the function's service
            service = trace.owner[2] if trace.owner else "function"
            spans = [dataclasses.replace(s, service=service) for s in spans]
        room = self._max_spans - len(trace.spans)
        kept = spans[:room] if room > 0 else []
        trace.spans.extend(kept)
        trace.started = min(trace.started, *(s.start for s in kept)) if kept else trace.started
        return trace, kept

    def begin(self, root: str, owner: Owner) -> None:
        """A sampled invocation starts: its trace is ``owner``'s (the segments the function
        sends while it runs are then told apart by it)."""
        trace_id = otel_trace_id(root)
        if trace_id in self._traces:
            trace = self._traces[trace_id]
            trace.owner = trace.owner or owner
            return
        self._traces[trace_id] = Trace(trace_id, owner=owner, started=time.time())
        while len(self._traces) > self._max_traces:
            self._traces.popitem(last=False)

    def get(self, account: str, trace_id: str) -> Trace | None:
        """A trace of ``account`` by its X-Ray root or its 32 hex digits."""
        key = otel_trace_id(trace_id) if trace_id.startswith("1-") else trace_id.lower()
        trace = self._traces.get(key)
        if trace is None or trace.owner is None or trace.owner[0] != account:
            return None
        return trace

    def of_function(self, account: str, region: str, name: str | None) -> Iterator[Trace]:
        """The account's traces (of one function), newest first."""
        for trace in reversed(self._traces.values()):
            owner = trace.owner
            if owner is None or owner[:2] != (account, region) or not trace.spans:
                continue  # not the caller's, or begun but never run (throttled)
            if name is None or owner[2] == name:
                yield trace


def _bound(host: str, port: int, mark: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if mark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, traces: Traces) -> None:
        self._traces = traces

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._traces.datagram(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("segment listener: %s", exc)


def _parse(data: bytes) -> list[Span]:
    """The spans of one daemon-protocol datagram; ValueError when it is not one."""
    head, sep, body = data.partition(b"\n")
    if not sep or json.loads(head) != _HEADER:
        raise ValueError("not a segment document")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("not a segment document")
    root = document["trace_id"]
    if not isinstance(root, str):
        raise ValueError("no trace id")
    trace_id = otel_trace_id(root)
    parent = document.get("parent_id")
    service = str(document.get("name", "")) if document.get("type") != "subsegment" else ""
    spans: list[Span] = []
    _collect(document, trace_id, parent, service, spans, 0)
    return spans


def _collect(
    doc: dict[str, Any],
    trace_id: str,
    parent: Any,
    service: str,
    spans: list[Span],
    depth: int,
) -> None:
    if depth > _MAX_DEPTH or not isinstance(doc, dict):
        raise ValueError("too deep")
    span_id, name = doc["id"], doc["name"]
    start = float(doc["start_time"])
    end = float(doc.get("end_time", start))
    if not (0 <= start <= _LATEST_TIME and 0 <= end <= _LATEST_TIME):
        raise ValueError("times out of range")  # NaN and infinities too
    parent_id = parent if isinstance(parent, str) else None
    if not (isinstance(span_id, str) and isinstance(name, str)):
        raise ValueError("bad segment")
    if not valid_ids(trace_id, span_id.lower(), parent_id and parent_id.lower()):
        raise ValueError("bad ids")
    attributes: list[tuple[str, str | int | float | bool]] = [("xray.source", "function")]
    if isinstance(doc.get("origin"), str):
        attributes.append(("aws.xray.origin", doc["origin"]))
    if isinstance(doc.get("namespace"), str):
        attributes.append(("aws.xray.namespace", doc["namespace"]))
    attributes += _annotations(doc.get("annotations"))
    for _, value in attributes:
        if isinstance(value, str):
            value.encode()  # UnicodeEncodeError (a ValueError): a lone surrogate from JSON
    name.encode()
    spans.append(
        Span(
            trace_id,
            span_id.lower(),
            parent_id.lower() if parent_id else None,
            name,
            start,
            max(start, end),
            service,
            error=bool(doc.get("error") or doc.get("fault")),
            attributes=tuple(attributes),
        )
    )
    for child in doc.get("subsegments") or ():
        _collect(child, trace_id, span_id.lower(), service, spans, depth + 1)


def _annotations(given: Any) -> list[tuple[str, str | int | float | bool]]:
    """A segment's X-Ray annotations (string, number or boolean values, as X-Ray indexes
    them) as ``aws.xray.annotation.<key>`` attributes; other values and keys are left out."""
    if not isinstance(given, dict):
        return []
    return [
        (f"aws.xray.annotation.{key}", value)
        for key, value in list(given.items())[:_MAX_ANNOTATIONS]
        if isinstance(key, str) and len(key) <= 500 and isinstance(value, str | int | float)
    ]


def invocation_spans(
    root: str,
    caller_parent: str | None,
    function_segment: str,
    service_segment: str,
    function: str,
    times: tuple[float, float],
    init_ms: float | None,
    duration_ms: float,
    error: bool,
    queued: tuple[float, int] | None = None,
    restore_ms: float | None = None,
) -> list[Span]:
    """lambdad's spans of one sampled invocation, as Lambda's segments: ``AWS::Lambda`` (the
    service, from the request to the response), ``AWS::Lambda::Function`` (whose id is the
    ``Parent`` the function saw) with ``Initialization`` (or a SnapStart environment's
    ``Restore``), ``Invocation`` and ``Overhead``.

    ``queued``: an ``Event`` invocation's (time accepted, attempts before): the service span
    then starts when it was accepted, with ``Dwell Time`` (in the queue) and ``Attempt #<n>``.
    """
    trace_id = otel_trace_id(root)
    began, ended = times
    init_s = ((init_ms or 0.0) + (restore_ms or 0.0)) / 1000
    run_start = max(began + init_s, ended - duration_ms / 1000)
    run_end = min(ended, run_start + duration_ms / 1000)
    origin = ("aws.xray.origin", "AWS::Lambda")
    spans = [
        Span(
            trace_id,
            service_segment,
            caller_parent,
            function,
            min(began, queued[0]) if queued else began,
            ended,
            function,
            KIND_SERVER,
            error,
            (origin, ("xray.source", "lambdad")),
        ),
        Span(
            trace_id,
            function_segment,
            service_segment,
            function,
            began,
            ended,
            function,
            error=error,
            attributes=(("aws.xray.origin", "AWS::Lambda::Function"), ("xray.source", "lambdad")),
        ),
    ]
    if queued is not None:
        spans += _queue_spans(trace_id, service_segment, function, began, ended, queued)
    parts = [(INVOCATION, run_start, run_end), (OVERHEAD, run_end, ended)]
    if init_ms:
        parts.insert(0, (INITIALIZATION, began, began + init_s))
    elif restore_ms:
        parts.insert(0, (RESTORE, began, began + init_s))
    for part, start, end in parts:
        if end <= start and part == OVERHEAD:
            continue
        spans.append(
            Span(
                trace_id,
                part_id(function_segment, part),
                function_segment,
                _PART_NAMES[part],
                start,
                end,
                function,
                attributes=(("xray.source", "lambdad"),),
            )
        )
    return spans


#: The function segment's subsegments lambdad records; a part's span id is the function
#: segment's id XOR the part (so spans recorded apart, as the extensions', can name it).
INITIALIZATION, INVOCATION, OVERHEAD, RESTORE, EXTENSIONS = 1, 2, 3, 4, 5
_PART_NAMES = {
    INITIALIZATION: "Initialization",
    INVOCATION: "Invocation",
    OVERHEAD: "Overhead",
    RESTORE: "Restore",
    EXTENSIONS: "Extensions",
}


def part_id(function_segment: str, part: int) -> str:
    return f"{int(function_segment, 16) ^ part:016x}"


def sampled_ids(header: str | None) -> tuple[str, str] | None:
    """``(Root, Parent)`` of a sampled invocation's trace header, else None."""
    if not header or "Sampled=1" not in header:
        return None
    fields = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
    root, parent = fields.get("Root", ""), fields.get("Parent", "")
    if not otel_trace_id(root) or len(parent) != 16:
        return None
    try:
        int(parent, 16)
    except ValueError:
        return None
    return root, parent


def extension_init_spans(
    ids: tuple[str, str], restored: bool, times: list[tuple[str, float, float]]
) -> list[Span]:
    """One ``Extension <name>`` span per extension under ``Initialization`` (or ``Restore``),
    from its launch (an internal one: its registration) to its first ``/next``."""
    root, function_segment = ids
    parent = part_id(function_segment, RESTORE if restored else INITIALIZATION)
    return [
        _extension_span(root, parent, index, name, start, end)
        for index, (name, start, end) in enumerate(times)
    ]


def extension_invoke_spans(
    ids: tuple[str, str], responded: float, times: list[tuple[str, float]]
) -> list[Span]:
    """An invocation's ``Extensions`` span under the function segment, from the runtime's
    response to the last INVOKE subscriber's next ``/next`` (Lambda's post-runtime extensions
    duration), with one ``Extension <name>`` span per subscriber under it."""
    if not times:
        return []
    root, function_segment = ids
    own = part_id(function_segment, EXTENSIONS)
    ended = max(responded, *(done for _, done in times))
    spans = [
        Span(
            otel_trace_id(root),
            own,
            function_segment,
            "Extensions",
            responded,
            ended,
            "",
            attributes=(("xray.source", "lambdad"),),
        )
    ]
    spans += [
        _extension_span(root, own, 0x40 + index, name, responded, done)
        for index, (name, done) in enumerate(times)
    ]
    return spans


def _extension_span(
    root: str, parent: str, index: int, name: str, start: float, end: float
) -> Span:
    return Span(
        otel_trace_id(root),
        f"{int(parent, 16) ^ (0x100 + index):016x}",
        parent,
        f"Extension {name}",
        start,
        max(start, end),
        "",
        attributes=(("xray.source", "lambdad"), ("faas.extension", name)),
    )


def _queue_spans(
    trace_id: str,
    service_segment: str,
    function: str,
    began: float,
    ended: float,
    queued: tuple[float, int],
) -> list[Span]:
    """An ``Event`` invocation's ``Dwell Time`` and ``Attempt #<n>`` under the service span."""
    accepted, attempts = queued
    source = (("xray.source", "lambdad"),)
    base = int(service_segment, 16)
    return [
        Span(
            trace_id,
            f"{base ^ 0x10:016x}",
            service_segment,
            "Dwell Time",
            min(accepted, began),
            began,
            function,
            attributes=source,
        ),
        Span(
            trace_id,
            f"{base ^ 0x11:016x}",
            service_segment,
            f"Attempt #{attempts + 1}",
            began,
            ended,
            function,
            attributes=source,
        ),
    ]
