"""``TraceReplication`` against a real NATS server with JetStream: the spans one node keeps
(lambdad's, its functions' segments) and its X-Ray listener's counts reach another node's
trace store under the right owner; no node applies its own, a worker reads nobody's, and a
restarted node reads the traces again (they live in memory)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable

import pytest

from lambdad.observe.otlp import Span
from lambdad.observe.traces import Trace, Traces, invocation_spans, otel_trace_id
from lambdad.store.nats_link import NatsLink
from lambdad.store.trace_replication import TraceReplication
from tests.contract.conftest import run
from tests.nats_server import NatsServer, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

OWNER = ("111122223333", "eu-west-1", "fn")


class Node:
    """A trace store and its replication over a NATS link of its own."""

    def __init__(self, url: str, name: str, *, consume: bool = True) -> None:
        self.name = name
        self.link = NatsLink(url, name)
        self.traces = Traces()
        self.replication = TraceReplication(
            self.link, self.traces.apply, consume=consume, max_bytes=1 << 30, max_age=3600
        )

    async def open(self) -> Node:
        await self.link.open()
        await self.replication.open(self.name)
        self.traces.outbox = self.replication
        return self

    async def close(self) -> None:
        self.traces.outbox = None
        await self.replication.close()
        await self.link.close()

    async def until(self, root: str, has: Callable[[Trace], bool], timeout: float = 20.0) -> Trace:
        """``OWNER``'s trace ``root`` once ``has`` holds of it (fails at the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            trace = self.traces.get(OWNER[0], root)
            if trace is not None and has(trace):
                return trace
            assert time.monotonic() < deadline, f"{self.name}: trace {root} not there in time"
            await asyncio.sleep(0.02)


def fresh_root() -> str:
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def lambdad_spans(root: str, parent: str) -> list[Span]:
    now = time.time()
    return invocation_spans(
        root, None, parent, secrets.token_hex(8), OWNER[2], (now, now + 0.01), None, 5.0, False
    )


def segment(root: str, parent: str, name: str) -> bytes:
    """A function's subsegment as the X-Ray SDK sends it (one datagram)."""
    now = time.time()
    doc = {
        "type": "subsegment",
        "trace_id": root,
        "parent_id": parent,
        "id": secrets.token_hex(8),
        "name": name,
        "start_time": now,
        "end_time": now + 0.001,
    }
    return b'{"format":"json","version":1}\n' + json.dumps(doc).encode()


def names(trace: Trace) -> list[str]:
    return sorted(s.name for s in trace.spans)


@run
async def test_a_workers_segments_join_the_api_nodes_spans_with_the_clusters_counts(
    server: NatsServer,
) -> None:
    """A routed invocation: the api node records lambdad's spans, the worker (which began the
    trace) receives the function's segment and a garbage datagram; the api node holds one
    trace of both, the segment under the function's service, and counts the worker's
    datagrams in its report; the worker, only sending, holds nothing of the api node's."""
    api = await Node(server.url, "api").open()
    worker = await Node(server.url, "worker", consume=False).open()
    try:
        root, parent = fresh_root(), secrets.token_hex(8)
        api.traces.begin(root, OWNER)
        worker.traces.begin(root, OWNER)
        worker.traces.datagram(b"not a segment")
        worker.traces.datagram(segment(root, parent, "work"))
        api.traces.add(lambdad_spans(root, parent), OWNER)
        trace = await api.until(root, lambda t: "work" in names(t))
        assert names(trace) == sorted(["fn", "fn", "Invocation", "work"])
        work = next(s for s in trace.spans if s.name == "work")
        assert (work.parent_id, work.service, work.trace_id) == (parent, "fn", otel_trace_id(root))
        report = api.traces.report()
        assert (report["segments received"], report["datagrams dropped"]) == (1, 1)
        assert [t.trace_id for t in api.traces.of_function(*OWNER)] == [otel_trace_id(root)]
        await asyncio.sleep(0.2)  # anything wrongly sent to the worker has had its chance
        mine = worker.traces.get(OWNER[0], root)
        assert mine is not None
        assert names(mine) == ["work"]
    finally:
        await api.close()
        await worker.close()


@run
async def test_two_api_nodes_hold_each_others_spans_once(server: NatsServer) -> None:
    """Behind a load balancer: each api node holds its own spans once and the other's, so a
    trace reads the same through either."""
    one = await Node(server.url, "one").open()
    two = await Node(server.url, "two").open()
    try:
        root = fresh_root()
        one.traces.add(lambdad_spans(root, secrets.token_hex(8)), OWNER)
        two.traces.datagram(segment(root, secrets.token_hex(8), "from two"))
        for node in (one, two):
            trace = await node.until(root, lambda t: len(t.spans) == 4)
            assert names(trace) == sorted(["fn", "fn", "Invocation", "from two"])
    finally:
        await one.close()
        await two.close()


@run
async def test_a_restarted_node_reads_the_traces_again(server: NatsServer) -> None:
    """Traces live in memory: a node started again (the same node id) reads what the stream
    holds, the other node's spans and its own earlier ones."""
    api = await Node(server.url, "api").open()
    worker = await Node(server.url, "worker", consume=False).open()
    try:
        root, parent = fresh_root(), secrets.token_hex(8)
        api.traces.add(lambdad_spans(root, parent), OWNER)
        worker.traces.datagram(segment(root, parent, "work"))
        await api.until(root, lambda t: "work" in names(t))
        await api.close()
        api = await Node(server.url, "api").open()
        trace = await api.until(root, lambda t: len(t.spans) == 4)
        assert names(trace) == sorted(["fn", "fn", "Invocation", "work"])
    finally:
        await api.close()
        await worker.close()
