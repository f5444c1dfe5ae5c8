"""The tracing parts without a server: settings, sampling, segment documents, trace bounds."""

from __future__ import annotations

import asyncio
import json

import pytest

from lambdad.config import load_settings
from lambdad.invoke.tracing import Sampler, Tracing
from lambdad.observe.traces import Traces

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
HEADER = b'{"format":"json","version":1}\n'


def segment(**fields: object) -> bytes:
    doc = {"trace_id": ROOT, "id": "70de5b6f19ff9a0a", "name": "fn", "start_time": 1.0}
    doc.update(fields)
    return HEADER + json.dumps(doc).encode()


def test_otlp_endpoints_come_from_the_standard_variables() -> None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` gets ``/v1/traces`` appended and
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is used as is and wins, as in the OTel SDKs."""
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert load_settings(environ=base).otlp_traces_url == "http://collector:4318/v1/traces"
    both = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:4318/x"}
    assert load_settings(environ=both).otlp_traces_url == "http://other:4318/x"
    assert load_settings(environ={}).otlp_traces_url == ""
    with pytest.raises(ValueError, match="OTLP endpoint"):
        load_settings(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})


def test_the_reservoir_takes_one_request_a_second_per_function() -> None:
    """X-Ray's default rule: the first request each second is sampled, then 5 % of the rest;
    with a rate of 0, only the first."""
    sampler = Sampler(rate=0.0)
    assert sampler.sample("a") is True
    assert sampler.sample("a") is False
    assert sampler.sample("b") is True


def test_the_callers_decision_wins() -> None:
    """A caller's ``Sampled=1``/``0`` decides for any mode; ``PassThrough`` never samples."""
    tracing = Tracing(Traces(), Sampler(rate=0.0))
    header = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a:1"
    assert "Sampled=1" in tracing.decide("f", "PassThrough", f"Root={ROOT};Sampled=1", header)
    assert "Sampled=0" in tracing.decide("f", "Active", f"Root={ROOT};Sampled=0", header)
    assert "Sampled=0" in tracing.decide("f", "PassThrough", None, header)
    assert "Sampled=1" in tracing.decide("f", "Active", None, header)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        HEADER,
        HEADER + b"{",
        HEADER + b"null",
        b'{"format":"json","version":2}\n' + segment()[len(HEADER) :],
        segment(id="nothex0000000000"),
        segment(trace_id="1-short"),
        segment(trace_id=5),
        segment(name=["x"]),
        segment(start_time="soon"),
        segment(parent_id="abc"),
        segment(id="0x0123456789abcd"),  # int(..., 16) takes these; bytes.fromhex does not
        segment(id="+123456789abcdef"),
        segment(id="1_23456789abcdef"),
        segment(id=" 123456789abcdef"),
        segment(parent_id="0x0123456789abcd"),
        segment(start_time=1e30),
        segment(name="\ud800"),  # a lone surrogate: not UTF-8, which OTLP's strings are
        segment(origin="\udfff"),
        segment(annotations={"k": "\ud800"}),
        segment(start_time=-1),
        HEADER + b'{"trace_id":"' + ROOT.encode() + b'","id":"70de5b6f19ff9a0a",'
        b'"name":"fn","start_time":NaN}',
        HEADER + b'{"trace_id":"' + ROOT.encode() + b'","id":"70de5b6f19ff9a0a",'
        b'"name":"fn","start_time":1,"end_time":Infinity}',
        segment(subsegments=[{"id": "70de5b6f19ff9a0b"}]),
        segment(subsegments=[None]),
        HEADER + b'{"trace_id":"' + ROOT.encode() + b'","subsegments":' + b"[" * 5000,
    ],
)
def test_a_datagram_that_is_not_a_segment_is_counted_and_dropped(data: bytes) -> None:
    """Garbage on the segment port is counted and dropped, never raised."""
    traces = Traces()
    traces.datagram(data)
    assert (traces.garbage, traces.received) == (1, 0)


def test_traces_are_bounded() -> None:
    """At most ``max_traces`` traces (the oldest goes) of at most ``max_spans`` spans."""
    traces = Traces(max_traces=2, max_spans=2)
    for n in range(3):
        root = f"1-5759e988-bd862e3fe1be46a9942727{n:02x}"
        traces.begin(root, ("000000000000", "us-east-1", "fn"))
        for _ in range(3):
            traces.datagram(segment(trace_id=root))
    listed = list(traces.of_function("000000000000", "us-east-1", "fn"))
    assert [t.trace_id[-2:] for t in listed] == ["02", "01"]
    assert all(len(t.spans) == 2 for t in listed)
    assert traces.get("000000000000", "1-5759e988-bd862e3fe1be46a994272701") is not None
    assert traces.get("111111111111", "1-5759e988-bd862e3fe1be46a994272701") is None


def test_a_taken_segment_port_falls_back_to_a_free_one() -> None:
    """Port 2000 (Lambda's daemon port) when free; when another listener holds it (two
    lambdads with the plain sandbox on one host), any free port, never a failed start."""

    async def scenario() -> tuple[int, int]:
        first, second = Traces(), Traces()
        await first.open("127.0.0.1", 0)
        taken = first.address
        assert taken is not None
        await second.open("127.0.0.1", taken[1])
        moved = second.address
        assert moved is not None
        await first.close()
        await second.close()
        await second.close()  # idempotent
        return taken[1], moved[1]

    taken, moved = asyncio.run(scenario())
    assert moved not in (taken, 0)
