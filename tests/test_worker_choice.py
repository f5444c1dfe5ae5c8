"""How an api node picks the worker for an invocation (``invoke/worker_choice.py``,
docs/cluster.md "Invocations across nodes"): a worker with a warm idle environment of the
version first, else the least loaded per CPU that can run the runtime; a worker that did not
answer is avoided until it restarts or its lease passes."""

from __future__ import annotations

from typing import Any

from lambdad.invoke.worker_choice import WorkerChoice

V1 = ("111111111111", "us-east-1", "fn", "1")
V2 = ("111111111111", "us-east-1", "fn", "2")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(node: str, *, cpus: int = 2, started: float = 1.0, **kw: Any) -> dict[str, Any]:
    return {
        "Id": node,
        "Role": kw.get("role", "worker"),
        "Health": kw.get("health", "up"),
        "Started": started,
        "Capacity": {"Cpus": cpus, "Runtimes": kw.get("runtimes", ["python3.12"])},
        "Load": {"Environments": kw.get("environments", 0)},
    }


def choice_of(*records: dict[str, Any]) -> tuple[WorkerChoice, Clock]:
    clock = Clock()
    choice = WorkerChoice(idle_timeout=60.0, lease=15.0, clock=clock)
    choice.update(records, me="api")
    return choice, clock


def test_only_live_workers_other_than_this_node_are_candidates() -> None:
    """Workers and nodes of role all that are up are candidates; api nodes, gone nodes and
    this node itself are not; with none, there is no choice."""
    choice, _ = choice_of(
        record("api", role="all"),
        record("a", role="api"),
        record("g", health="gone"),
        record("w", role="all"),
    )
    assert choice.pick(V1, "python3.12", set()) == "w"
    assert choice.pick(V1, "python3.12", {"w"}) is None


def test_a_warm_idle_environment_wins_over_a_less_loaded_worker() -> None:
    """The worker that ran a version and has an environment of it idle is picked, though
    another is less loaded; while that environment is busy the other worker is."""
    choice, _ = choice_of(record("a"), record("b"))
    first = choice.pick(V1, "python3.12", set())
    assert first is not None
    other = "b" if first == "a" else "a"
    choice.began(first, V1)
    choice.ended(first, V1)
    choice.began(first, V2)  # busy with another version: more loaded than ``other``
    assert choice.pick(V1, "python3.12", set()) == first  # warm and idle
    choice.began(first, V1)
    assert choice.pick(V1, "python3.12", set()) == other  # its one environment is busy


def test_warmth_expires_with_the_idle_timeout() -> None:
    """An environment unused for the idle timeout is taken for reaped: the least loaded
    worker is picked again."""
    choice, clock = choice_of(record("a"), record("b"))
    choice.began("a", V1)
    choice.ended("a", V1)
    choice.began("a", V2)
    clock.now += 61
    assert choice.pick(V1, "python3.12", set()) == "b"


def test_least_loaded_counts_cpus_and_runtimes() -> None:
    """Without warmth the worker with the fewest invocations in flight per CPU is picked,
    among those that can run the runtime (any worker when none lists it)."""
    choice, _ = choice_of(record("small", cpus=1), record("big", cpus=8))
    assert choice.pick(V1, "python3.12", set()) in {"small", "big"}  # both idle
    choice.began("small", V2)
    for _ in range(3):
        choice.began("big", V2)
    assert choice.pick(V1, "python3.12", set()) == "big"  # 3 / 8 CPUs < 1 / 1 CPU
    py, js = record("py", runtimes=["python3.12"]), record("js", runtimes=["nodejs20.x"])
    choice, _ = choice_of(py, js)
    assert choice.pick(V1, "nodejs20.x", set()) == "js"
    assert choice.pick(V1, "ruby3.3", set()) in {"py", "js"}


def test_an_avoided_worker_returns_when_it_restarts_or_its_lease_passes() -> None:
    """A worker that did not answer is not picked, until the registry shows it started again,
    or the lease has passed."""
    choice, clock = choice_of(record("a"), record("b"))
    choice.avoid("a")
    assert {choice.pick(V1, None, set()) for _ in range(20)} == {"b"}
    choice.update([record("a", started=2.0), record("b")], me="api")  # restarted
    assert choice.pick(V1, None, {"b"}) == "a"
    choice.avoid("a")
    assert choice.pick(V1, None, {"b"}) is None
    clock.now += 16
    assert choice.pick(V1, None, {"b"}) == "a"


def test_a_worker_nobody_listened_for_is_avoided_briefly_and_is_a_last_resort() -> None:
    """A worker avoided for a few seconds (nobody listened for it) is picked again after
    them; while avoided it is still picked when every other worker was tried."""
    choice, clock = choice_of(record("a"), record("b"))
    choice.avoid("a", 2.0)
    assert choice.pick(V1, None, set()) == "b"
    assert choice.pick(V1, None, {"b"}) is None
    assert choice.pick(V1, None, {"b"}, avoided=True) == "a"
    clock.now += 2.5
    assert choice.pick(V1, None, {"b"}) == "a"


def test_a_worker_with_a_free_provisioned_environment_of_the_version_comes_first() -> None:
    """The worker whose published share holds provisioned environments of the version gets
    its invocations while they are not all busy (as on one node, an invocation runs in a
    provisioned environment first), then the least loaded again; other versions ignore it."""
    choice, _ = choice_of(record("a"), record("b"), record("c"))
    choice.provisioned = {V1: {"b": 1}}
    for _ in range(3):
        assert choice.pick(V1, "python3.12", set()) == "b"
    choice.began("b", V1)  # its one provisioned environment is busy now
    assert choice.pick(V1, "python3.12", set()) in {"a", "c"}
    choice.ended("b", V1)
    assert choice.pick(V1, "python3.12", set()) == "b"
    choice.provisioned = {}
    picks = {choice.pick(V2, "python3.12", set()) for _ in range(30)}
    assert picks >= {"a", "c"}
