"""The conformance handlers of parallel and map (8-x, 9-x)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_durable_execution_sdk_python import DurableContext
from aws_durable_execution_sdk_python.config import (
    CompletionConfig,
    Duration,
    MapConfig,
    NestingType,
    ParallelBranch,
    ParallelConfig,
)

from .common import (
    OpSerde,
    Wrapped,
    echo,
    projection,
    requirement,
)


def _branch(value: Any) -> Callable[[DurableContext], Any]:
    return lambda c: value


def _step_branch(value: Any) -> Callable[[DurableContext], Any]:
    return lambda c: c.step(echo(value))


def _failing_branch(c: DurableContext) -> Any:
    raise RuntimeError("branch failed")


def _sequential(**completion: Any) -> ParallelConfig:
    return ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


@requirement("8-1")
def parallel_basic(event: Any, ctx: DurableContext) -> Any:
    branches = [_step_branch("task-1"), _step_branch("task-2")]
    return ctx.parallel(branches, name="parallel", config=_sequential()).get_results()


@requirement("8-2")
def parallel_unnamed(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("alpha"), _branch("beta")]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-3")
def parallel_named_branches(event: Any, ctx: DurableContext) -> Any:
    branches = [
        ParallelBranch(_branch("one"), name="one"),
        ParallelBranch(_branch("two"), name="two"),
    ]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-4")
def parallel_types(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("hello"), _branch(42), _branch({"k": "v"})]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-5")
def parallel_empty(event: Any, ctx: DurableContext) -> Any:
    return ctx.parallel([], config=_sequential()).get_results()


@requirement("8-6")
def parallel_fail_fast(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("ok"), _failing_branch, _branch("never")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=0))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-7")
def parallel_rethrow(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _branch("never")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=0))
    batch.throw_if_error()
    return batch.get_results()


@requirement("8-8")
def parallel_min_successful(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _branch("b"), _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(min_successful=2))
    return projection(batch, "completionReason", "successCount", "totalCount")


@requirement("8-9")
def parallel_tolerated(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=1))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-10")
def parallel_tolerance_exceeded(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=1))
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("8-11")
def parallel_concurrent(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("r0"), _branch("r1"), _branch("r2")]
    return ctx.parallel(branches, config=ParallelConfig(max_concurrency=2)).get_results()


@requirement("8-12")
def parallel_flat(event: Any, ctx: DurableContext) -> Any:
    branches = [_step_branch("fa"), _step_branch("fb")]
    config = ParallelConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return ctx.parallel(branches, config=config).get_results()


@requirement("8-13")
def parallel_percentage_exceeded(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_percentage=25))
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("8-14")
def parallel_wait(event: Any, ctx: DurableContext) -> Any:
    def waiting(c: DurableContext) -> Any:
        c.wait(Duration.from_seconds(2))
        return "b1"

    branches = [_step_branch("b0"), waiting]
    return ctx.parallel(branches, config=_sequential()).get_results()


@requirement("8-15")
def parallel_item_serdes(event: Any, ctx: DurableContext) -> Any:
    config = ParallelConfig(max_concurrency=1, item_serdes=Wrapped())
    return ctx.parallel([_branch("x"), _branch("y")], config=config).get_results()


@requirement("8-16")
def parallel_all_fail(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _failing_branch]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=3))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-17")
def parallel_min_not_reached(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(min_successful=3))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("8-18")
def parallel_both_limits(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _failing_branch, _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(min_successful=2, tolerated_failure_count=1))
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("8-19")
def parallel_zero_concurrency(event: Any, ctx: DurableContext) -> Any:
    return ctx.parallel([_branch("a")], config=ParallelConfig(max_concurrency=0)).get_results()


@requirement("8-20")
def parallel_accessors(event: Any, ctx: DurableContext) -> Any:
    branches = [_branch("a"), _failing_branch, _branch("c")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_count=1))
    return {
        "hasFailure": batch.has_failure,
        "successCount": len(batch.succeeded()),
        "failureCount": len(batch.failed()),
        "errorCount": len([e for e in batch.get_errors() if e is not None]),
    }


@requirement("8-21")
def parallel_nested(event: Any, ctx: DurableContext) -> Any:
    def inner(c: DurableContext) -> Any:
        branches = [_step_branch("i1"), _step_branch("i2")]
        return c.parallel(branches, config=_sequential()).get_results()

    return ctx.parallel([inner], config=_sequential()).get_results()


@requirement("8-22")
def parallel_percentage_equal(event: Any, ctx: DurableContext) -> Any:
    branches = [_failing_branch, _branch("b"), _branch("c"), _branch("d")]
    batch = ctx.parallel(branches, config=_sequential(tolerated_failure_percentage=25))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


def _map_config(**completion: Any) -> MapConfig[Any]:
    return MapConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def _item_fails_at(index: int | set[int], value: Any = "ok") -> Callable[..., Any]:
    failing = {index} if isinstance(index, int) else index

    def func(c: DurableContext, item: Any, i: int, items: Any) -> Any:
        if i in failing:
            raise RuntimeError(f"item {i} failed")
        return value

    return func


@requirement("9-1")
def map_basic(event: Any, ctx: DurableContext) -> Any:
    def greet(c: DurableContext, item: Any, i: int, items: Any) -> Any:
        return c.step(echo(f"Hello, {item}!"))

    return ctx.map(event["Input"], greet, name="map", config=_map_config()).get_results()


@requirement("9-2")
def map_unnamed(event: Any, ctx: DurableContext) -> Any:
    return ctx.map(event["Input"], lambda c, x, i, xs: x * 2, config=_map_config()).get_results()


@requirement("9-3")
def map_index(event: Any, ctx: DurableContext) -> Any:
    return ctx.map(event["Input"], lambda c, x, i, xs: x + i, config=_map_config()).get_results()


@requirement("9-4")
def map_empty(event: Any, ctx: DurableContext) -> Any:
    return ctx.map(event["Input"], lambda c, x, i, xs: x, config=_map_config()).get_results()


@requirement("9-5")
def map_fail_fast(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2, 3], _item_fails_at(1), config=_map_config(tolerated_failure_count=0))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("9-6")
def map_rethrow(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2], _item_fails_at(0), config=_map_config(tolerated_failure_count=0))
    batch.throw_if_error()
    return batch.get_results()


@requirement("9-7")
def map_min_successful(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2, 3, 4], _item_fails_at(-1), config=_map_config(min_successful=2))
    return projection(batch, "completionReason", "successCount", "totalCount")


@requirement("9-8")
def map_tolerated(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2, 3], _item_fails_at(1), config=_map_config(tolerated_failure_count=1))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("9-9")
def map_tolerance_exceeded(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map(
        [1, 2, 3], _item_fails_at({0, 1}), config=_map_config(tolerated_failure_count=1)
    )
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("9-10")
def map_percentage_exceeded(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map(
        [1, 2, 3, 4], _item_fails_at({0, 1}), config=_map_config(tolerated_failure_percentage=25)
    )
    return projection(batch, "completionReason", "successCount", "failureCount", "totalCount")


@requirement("9-11")
def map_concurrent(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=3)
    return ctx.map([0, 1, 2], lambda c, x, i, xs: f"r{x}", config=config).get_results()


@requirement("9-12")
def map_flat(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return ctx.map(
        ["a", "b"], lambda c, x, i, xs: c.step(echo(f"f{x}")), config=config
    ).get_results()


@requirement("9-13")
def map_item_namer(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, item_namer=lambda x, i: f"item-{x}")
    return ctx.map(event["Input"], lambda c, x, i, xs: x * 10, config=config).get_results()


@requirement("9-14")
def map_item_serdes(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, item_serdes=Wrapped())
    return ctx.map(["x", "y"], lambda c, x, i, xs: x.upper(), config=config).get_results()


@requirement("9-15")
def map_wait(event: Any, ctx: DurableContext) -> Any:
    def func(c: DurableContext, item: Any, i: int, items: Any) -> Any:
        if i == 1:
            c.wait(Duration.from_seconds(1))
        return c.step(echo(f"r{i}"))

    return ctx.map([0, 1], func, config=_map_config()).get_results()


@requirement("9-16")
def map_large(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([0, 1, 2, 3], lambda c, x, i, xs: str(x) * (70 * 1024), config=_map_config())
    return projection(batch, "successCount", "totalCount")


@requirement("9-17")
def map_then_wait(event: Any, ctx: DurableContext) -> Any:
    results = ctx.map(["a", "b"], lambda c, x, i, xs: x.upper(), config=_map_config())
    ctx.wait(Duration.from_seconds(1))
    return results.get_results()


@requirement("9-18")
def map_failed_then_wait(event: Any, ctx: DurableContext) -> Any:
    batch = ctx.map([1, 2], _item_fails_at(1), config=_map_config(tolerated_failure_count=1))
    ctx.wait(Duration.from_seconds(1))
    return projection(
        batch, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )


@requirement("9-19")
def map_operation_serdes(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, serdes=OpSerde())
    return ctx.map(["x", "y"], lambda c, x, i, xs: x.upper(), config=config).get_results()


@requirement("9-20")
def map_operation_serdes_wait(event: Any, ctx: DurableContext) -> Any:
    config: MapConfig[Any] = MapConfig(max_concurrency=1, serdes=OpSerde())
    batch = ctx.map(["x", "y"], lambda c, x, i, xs: x.upper(), config=config)
    ctx.wait(Duration.from_seconds(1))
    return batch.get_results()
