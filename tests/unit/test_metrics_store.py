"""``observe.metrics`` without a server: the sketch's percentiles, EMF parsing, the minutes
kept through an archive and dropped past retention."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from lambdad.config import load_settings
from lambdad.observe import emf, metric_levels
from lambdad.observe.distribution import Distribution
from lambdad.observe.metric_cells import cell_filter, dims_of
from lambdad.observe.metric_queries import BadQuery
from lambdad.observe.metrics import Metrics
from lambdad.store.base import Table
from lambdad.store.memory import MemoryStore
from lambdad.store.metric_rows import MetricPeers, StoredMetrics


class Scope:
    account_id = "111122223333"
    region = "eu-west-1"


KEY = ("111122223333", "eu-west-1", "fn", None, "$LATEST")


class Archive:
    """An in-memory ``MetricsArchive``."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int], dict[str, Any]] = {}

    async def load(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        return [(a, r, m, json.loads(json.dumps(d))) for (a, r, m), d in self.rows.items()]

    async def save(self, rows: Sequence[tuple[str, str, int, dict[str, Any]]]) -> None:
        for a, r, m, doc in rows:
            self.rows[(a, r, m)] = json.loads(json.dumps(doc))

    async def drop(self, keys: Sequence[tuple[str, str, int]]) -> None:
        for key in keys:
            self.rows.pop(key, None)


def test_sketch_percentiles_are_within_one_percent() -> None:
    """Percentiles read from the log-bucket sketch are within 1 % of the exact ones, p0 and
    p100 are exact, and merging two sketches equals one sketch of both samples."""
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1.5) for _ in range(5000)]
    one, left, right = Distribution(), Distribution(), Distribution()
    for i, v in enumerate(values):
        one.add(v)
        (left if i % 2 else right).add(v)
    left.merge(right)
    ordered = sorted(values)
    for p in (50, 90, 99, 99.9):
        exact = ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
        assert one.percentile(p) == pytest.approx(exact, rel=0.025)
        assert left.percentile(p) == one.percentile(p)
    assert (one.percentile(0), one.percentile(100)) == (min(values), max(values))


def test_emf_parsing_follows_the_specification() -> None:
    """Each dimension set of a directive is a series; arrays are samples; a directive with a
    missing dimension value or an AWS/ namespace yields nothing."""
    line = json.dumps(
        {
            "_aws": {
                "Timestamp": 1_700_000_000_000,
                "CloudWatchMetrics": [
                    {
                        "Namespace": "App",
                        "Dimensions": [["service"], ["service", "stage"], []],
                        "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}, {"Name": "X"}],
                    },
                    {"Namespace": "AWS/Lambda", "Dimensions": [[]], "Metrics": [{"Name": "N"}]},
                    {"Namespace": "Other", "Dimensions": [["missing"]], "Metrics": [{"Name": "N"}]},
                ],
            },
            "service": "api",
            "stage": "prod",
            "Latency": [1, 2, 3],
            "N": 1,
        }
    )
    assert emf.looks_like(line)
    points = emf.parse(line)
    assert [(p.namespace, p.name, p.dimensions, p.unit) for p in points] == [
        ("App", "Latency", (("service", "api"),), "Milliseconds"),
        ("App", "Latency", (("service", "api"), ("stage", "prod")), "Milliseconds"),
        ("App", "Latency", (), "Milliseconds"),
    ]
    assert points[0].values == ((1.0, 1.0), (2.0, 1.0), (3.0, 1.0))
    for bad in ("{", '{"_aws": 1}', "[1]", '{"_aws": {"Timestamp": "x"}}', "x" * 10):
        assert emf.parse(bad) == []


def test_minutes_survive_through_the_archive_and_expire() -> None:
    """What was recorded is written at close and read back by the next ``Metrics``; a minute
    past retention is neither read back nor kept in the archive."""

    async def scenario() -> None:
        archive = Archive()
        first = Metrics(archive, flush_interval=3600)
        await first.open()
        first.invoked(KEY, 12.5, False)
        first.invoked(KEY, 30.0, True)
        await first.close()
        old = int(time.time() // 60) - 30 * 1440
        archive.rows[(KEY[0], KEY[1], old)] = next(iter(archive.rows.values()))
        second = Metrics(archive, flush_interval=3600)
        await second.open()
        now = time.time()
        points = second.query(
            Scope(), "AWS/Lambda", "Errors", {"FunctionName": "fn"}, now - 45 * 86400,
            now + 60, 60 * 60 * 24 * 50, ["Sum", "SampleCount"],
        )  # fmt: skip
        assert [(p.values["Sum"], p.values["SampleCount"]) for p in points] == [(1, 2)]
        await second.close()
        assert all(m != old for _, _, m in archive.rows)

    asyncio.run(scenario())


def test_bad_queries_are_refused() -> None:
    """Periods not a multiple of 60, reversed ranges and unknown statistics raise BadQuery."""
    metrics = Metrics()
    for period, start, end, stats in [(90, 0, 60, ["Sum"]), (60, 60, 0, ["Sum"]),
                                      (60, 0, 60, ["Mean"]), (60, 0, 60, [])]:  # fmt: skip
        with pytest.raises(BadQuery):
            metrics.query(Scope(), "AWS/Lambda", "Invocations", {}, start, end, period, stats)


def test_a_query_matches_the_cells_whose_dimension_sets_it_names() -> None:
    """``cell_filter`` picks exactly the cells that ``dims_of`` counts towards a series."""
    keys = [
        ("a", "r", "fn", None, "$LATEST"),
        ("a", "r", "fn", "live", "2"),
        ("a", "r", "fn", "2", "2"),
        ("a", "r", "other", "live", "1"),
    ]
    every = {d for key in keys for d in dims_of(key)} | {(("Resource", "fn"),)}
    for dims in every:
        wanted = cell_filter(dims)
        chosen = [k for k in keys if wanted is not None and wanted(k)]
        assert chosen == [k for k in keys if dims in dims_of(k)], dims


def test_the_async_query_answers_as_the_sync_one() -> None:
    """``query_async`` and ``list_metrics_async`` (which let the loop run between minutes)
    answer what ``query`` and ``list_metrics`` answer."""

    async def scenario() -> None:
        metrics = Metrics()
        for n in range(5):
            metrics.invoked(KEY, 10.0 * (n + 1), n == 0)
        now = time.time()
        args = (Scope(), "AWS/Lambda", "Duration", {"FunctionName": "fn"}, now - 600, now + 60)
        stats = ["p50", "Sum", "SampleCount"]
        assert await metrics.query_async(*args, 60, stats) == metrics.query(*args, 60, stats)
        assert await metrics.list_metrics_async(Scope()) == metrics.list_metrics(Scope())
        assert len(metrics.list_metrics(Scope(), metric="Errors")) == 3

    asyncio.run(scenario())


def test_two_nodes_flushing_one_minute_are_both_counted() -> None:
    """On a shared store, two nodes that flush the same account, region and minute keep a
    row each (neither overwrites the other); a third node sums both rows when read, a node
    restarted reads back only its own rows (nothing counted twice), a gone node's rows past
    retention are deleted by another, and a store of one node keeps its rows keyed as before
    clusters."""

    def invocations(metrics: Metrics) -> list[float]:
        now = time.time()
        points = metrics.query(
            Scope(), "AWS/Lambda", "Invocations", {"FunctionName": "fn"}, now - 3600, now + 60,
            7200, ["Sum"],
        )  # fmt: skip
        return [p.values["Sum"] for p in points]

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        nodes = []
        for node, count in (("node-a", 2), ("node-b", 3)):
            metrics = Metrics(StoredMetrics(store, node), flush_interval=3600)
            await metrics.open()
            for _ in range(count):
                metrics.invoked(KEY, 5.0, False)
            await metrics.flush()
            nodes.append(metrics)
        keys = [key for key, _ in await store.scan(Table.METRICS)]
        assert sorted(k[3] for k in keys) == ["node-a", "node-b"]
        assert len({k[:3] for k in keys}) == 1  # the same minute
        gone = int(time.time() // 60) - 30 * 1440  # a node long gone, past retention
        await store.put(Table.METRICS, (KEY[0], KEY[1], f"{gone:010d}", "node-z"), {"cells": []})
        reader_rows = StoredMetrics(store, "node-c")
        reader = Metrics(reader_rows, flush_interval=3600)
        await reader.open()
        peers = MetricPeers(reader_rows, store, reader)
        await peers.start()
        assert invocations(reader) == [5.0]
        assert [k[3] for k, _ in await store.scan(Table.METRICS)] == ["node-a", "node-b"]
        assert invocations(nodes[0]) == [2.0]  # a node's own view without peers started
        await peers.close()
        for metrics in nodes:
            await metrics.close()
        again = Metrics(StoredMetrics(store, "node-a"), flush_interval=3600)
        await again.open()
        assert invocations(again) == [2.0]
        await again.close()
        alone = MemoryStore()
        await alone.open()
        single = Metrics(StoredMetrics(alone), flush_interval=3600)
        await single.open()
        single.invoked(KEY, 5.0, False)
        await single.close()
        assert [len(key) for key, _ in await alone.scan(Table.METRICS)] == [3]
        await reader.close()

    asyncio.run(scenario())


def test_a_cluster_sums_levels_held_at_the_same_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a shared store, ConcurrentExecutions read on any node is the most running at one
    second summed over the nodes (AWS: the function's concurrent executions, however many
    hosts run them): two invocations on two nodes that overlap count 2, even when neither
    started in the second the other did; two that do not overlap (seconds apart) count 1."""
    clock = [float(int(time.time()) // 60 * 60 + 2)]
    monkeypatch.setattr(metric_levels, "time", SimpleNamespace(time=lambda: clock[0]))
    other = (*KEY[:2], "other", None, "$LATEST")

    def most(metrics: Metrics, name: str) -> float:
        now = time.time()
        points = metrics.query(
            Scope(), "AWS/Lambda", "ConcurrentExecutions", {"FunctionName": name},
            now - 3600, now + 120, 7200, ["Maximum"],
        )  # fmt: skip
        return max(p.values["Maximum"] for p in points)

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        a = Metrics(StoredMetrics(store, "node-a"), flush_interval=3600, share_interval=60)
        b = Metrics(StoredMetrics(store, "node-b"), flush_interval=3600, share_interval=60)
        # (second, node, what): fn overlaps from second 3 to 5, "other" never overlaps.
        steps = [
            (1, a, "start", KEY), (3, b, "start", KEY), (5, a, "end", KEY),
            (8, b, "end", KEY), (20, a, "start", other), (21, a, "end", other),
            (23, b, "start", other), (25, b, "end", other),
        ]  # fmt: skip
        start = clock[0]
        for second in range(30):  # each node samples its levels every second (0.2 s live)
            clock[0] = start + second
            for at, node, what, key in steps:
                if at == second:
                    node.started(key) if what == "start" else node.ended(key)
            a.sample_levels()
            b.sample_levels()
        for node in (a, b):
            await node.flush()
        assert (most(a, "fn"), most(b, "fn")) == (1, 1)  # each node alone saw one
        reader_rows = StoredMetrics(store, "node-c")
        reader = Metrics(reader_rows, flush_interval=3600, share_interval=60)
        peers = MetricPeers(reader_rows, store, reader)
        await peers.start()
        assert most(reader, "fn") == 2
        assert most(reader, "other") == 1
        await peers.close()

    asyncio.run(scenario())


def test_a_node_on_a_shared_store_writes_what_changed_soon() -> None:
    """With ``share_interval`` (a cluster), what a node records reaches the store within
    about that interval, not the flush interval (here an hour)."""

    async def scenario() -> None:
        store = MemoryStore()
        await store.open()
        metrics = Metrics(StoredMetrics(store, "node-a"), flush_interval=3600, share_interval=0.05)
        await metrics.open()
        metrics.invoked(KEY, 5.0, False)
        deadline = time.monotonic() + 10
        while not await store.scan(Table.METRICS):
            assert time.monotonic() < deadline, "never written"
            await asyncio.sleep(0.01)
        await metrics.close()

    asyncio.run(scenario())


def test_the_share_interval_is_half_a_second_unless_set() -> None:
    """``LAMBDAD_METRICS_SHARE_INTERVAL`` sets how soon a cluster node writes what changed
    (0.5 s by default); zero or less is refused at start."""
    assert load_settings(environ={}).metrics_share_interval == 0.5
    asked = load_settings(environ={"LAMBDAD_METRICS_SHARE_INTERVAL": "2"})
    assert asked.metrics_share_interval == 2
    with pytest.raises(ValueError, match="metrics_share_interval must be positive"):
        load_settings(environ={"LAMBDAD_METRICS_SHARE_INTERVAL": "0"})
