"""Routing invocations over many workers, simulated (docs/cluster-scaling.md).

A discrete-event simulation of one cluster: ``--workers`` workers of ``--slots`` environments
each, ``--functions`` functions whose popularity follows Zipf's law, invocations arriving as a
Poisson stream at the rate that keeps ``--utilisation`` of the slots busy, each running an
exponentially distributed time. An environment is kept warm for ``--keep-alive`` seconds after
its last invocation, and a worker evicts its oldest idle environment when it needs a slot.
Each routing policy sees the same arrivals (same seed), and the script prints, per policy, the
share of invocations that found a warm environment, the cold starts, the first invocations of
a function (cold under any policy), the invocations the chosen worker could not take (every
slot busy), and how evenly the load spread (``peak``: the busiest worker's running invocations
over the mean, the median of samples).

Policies:

- ``random``: any worker.
- ``p2c``: the less busy of two workers drawn at random (power of two choices).
- ``learned``: what a lambdad api node does with what it learns alone: ``--api-nodes`` api
  nodes, each remembering the worker it last sent each function to, and sending the function
  there again while that worker has a free slot, else ``p2c``.
- ``affinity``: each function's ``--candidates`` workers come from hashing its name (no shared
  state at all): a candidate with an idle environment of it, else the least busy candidate,
  else ``p2c``.
- ``bounded``: consistent hashing with bounded loads: each function's ``--probe`` workers in
  its own hashed order; the first of them holding an idle environment of it whose running
  invocations are under ``--bound`` times the mean, else the first under that bound, else
  ``p2c``. A hot function spills to its next workers in order, so they keep its environments
  warm too.
- ``global``: a perfect global index of idle environments (the bound no real router reaches at
  scale): any worker with an idle environment of the function, else ``p2c``.

    python bench/cluster_sim.py                       # 1,000 workers, a million functions
    python bench/cluster_sim.py --workers 5000 --seconds 120

Pure Python, no dependency; about a minute per policy at the defaults.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import itertools
import random
import statistics
import time
from collections import OrderedDict
from collections.abc import Callable

Env = int


class Worker:
    """One worker's slots: busy environments, and idle ones per function in idle order."""

    __slots__ = ("busy", "idle", "idle_of", "slots")

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.busy = 0
        #: env -> (function, idle since), oldest first.
        self.idle: OrderedDict[Env, tuple[int, float]] = OrderedDict()
        #: function -> its idle envs, most recently idle last.
        self.idle_of: dict[int, OrderedDict[Env, None]] = {}

    def expire(self, now: float, keep_alive: float, index: Index | None, me: int) -> None:
        while self.idle:
            env, (function, since) = next(iter(self.idle.items()))
            if since > now - keep_alive:
                return
            self._drop(env, function, index, me)

    def _drop(self, env: Env, function: int, index: Index | None, me: int) -> None:
        del self.idle[env]
        envs = self.idle_of[function]
        del envs[env]
        if not envs:
            del self.idle_of[function]
        if index is not None:
            index.lost(function, me)

    def has_warm(self, function: int) -> bool:
        return function in self.idle_of

    def free(self) -> bool:
        return self.busy < self.slots

    def take(self, function: int, index: Index | None, me: int) -> bool | None:
        """Start an invocation of ``function``: True warm, False cold, None no slot."""
        envs = self.idle_of.get(function)
        if envs:
            env, _ = envs.popitem()
            if not envs:
                del self.idle_of[function]
            del self.idle[env]
            if index is not None:
                index.lost(function, me)
            self.busy += 1
            return True
        if self.busy + len(self.idle) >= self.slots:
            if not self.idle:
                return None
            env, (old, _) = next(iter(self.idle.items()))
            self._drop(env, old, index, me)
        self.busy += 1
        return False

    def end(self, env: Env, function: int, now: float, index: Index | None, me: int) -> None:
        self.busy -= 1
        self.idle[env] = (function, now)
        self.idle_of.setdefault(function, OrderedDict())[env] = None
        if index is not None:
            index.gained(function, me)


class Index:
    """The ``global`` policy's perfect knowledge: which workers hold idle envs of a function."""

    def __init__(self) -> None:
        self.where: dict[int, dict[int, int]] = {}

    def gained(self, function: int, worker: int) -> None:
        workers = self.where.setdefault(function, {})
        workers[worker] = workers.get(worker, 0) + 1

    def lost(self, function: int, worker: int) -> None:
        workers = self.where[function]
        workers[worker] -= 1
        if not workers[worker]:
            del workers[worker]
            if not workers:
                del self.where[function]


Policy = Callable[[int, float], int]


def simulate(name: str, args: argparse.Namespace, arrivals: list[tuple[float, int, float]]) -> dict:
    rng = random.Random(args.seed + 1)
    workers = [Worker(args.slots) for _ in range(args.workers)]
    index = Index() if name == "global" else None
    count = len(workers)

    def p2c() -> int:
        a, b = rng.randrange(count), rng.randrange(count)
        return a if workers[a].busy <= workers[b].busy else b

    remembered: list[dict[int, int]] = [{} for _ in range(args.api_nodes)]

    def candidates(function: int, many: int) -> list[int]:
        digest = hashlib.blake2b(function.to_bytes(8, "little"), digest_size=4 * many).digest()
        return [int.from_bytes(digest[4 * i : 4 * i + 4], "little") % count for i in range(many)]

    bound = max(1, int(args.bound * args.slots * args.utilisation))

    def route(function: int) -> int:
        if name == "random":
            return rng.randrange(count)
        if name == "p2c":
            return p2c()
        if name == "learned":
            memory = remembered[rng.randrange(args.api_nodes)]
            last = memory.get(function)
            choice = last if last is not None and workers[last].free() else p2c()
            memory[function] = choice
            return choice
        if name == "affinity":
            options = candidates(function, args.candidates)
            for option in options:
                if workers[option].has_warm(function):
                    return option
            best = min(options, key=lambda w: workers[w].busy)
            return best if workers[best].free() else p2c()
        if name == "bounded":
            options = candidates(function, args.probe)
            open_ = [w for w in options if workers[w].busy < bound]
            for option in open_:
                if workers[option].has_warm(function):
                    return option
            return open_[0] if open_ else p2c()
        assert index is not None
        holders = index.where.get(function)
        if holders:
            return next(iter(holders))
        return p2c()

    ends: list[tuple[float, int, Env, int]] = []
    env_ids = itertools.count()
    warm = cold = refused = 0
    seen: set[int] = set()
    first = 0
    busy_samples: list[int] = []
    sample_every = max(1, len(arrivals) // 200)
    for n, (at, function, duration) in enumerate(arrivals):
        while ends and ends[0][0] <= at:
            end_at, worker, env, ended = heapq.heappop(ends)
            workers[worker].end(env, ended, end_at, index, worker)
        if function not in seen:
            seen.add(function)
            first += 1
        chosen = route(function)
        worker = workers[chosen]
        worker.expire(at, args.keep_alive, index, chosen)
        started = worker.take(function, index, chosen)
        if started is None:
            refused += 1
            continue
        if started:
            warm += 1
        else:
            cold += 1
        heapq.heappush(ends, (at + duration, chosen, next(env_ids), function))
        if n % sample_every == 0:
            busy_samples.append(max(w.busy for w in workers))
    total = len(arrivals)
    mean_busy = args.slots * args.utilisation
    return {
        "policy": name,
        "warm": warm / total,
        "cold": cold / total,
        "first": first / total,
        "refused": refused / total,
        "peak": statistics.median(busy_samples) / mean_busy if busy_samples else 0.0,
    }


def arrivals_of(args: argparse.Namespace) -> list[tuple[float, int, float]]:
    rng = random.Random(args.seed)
    weights = [1.0 / (rank**args.zipf) for rank in range(1, args.functions + 1)]
    cumulative = list(itertools.accumulate(weights))
    top = cumulative[-1]
    rate = args.workers * args.slots * args.utilisation / args.duration
    now = 0.0
    out = []
    while now < args.seconds:
        now += rng.expovariate(rate)
        function = bisect.bisect_left(cumulative, rng.random() * top)
        out.append((now, function, rng.expovariate(1.0 / args.duration)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument(
        "--slots", type=int, default=64, help="environments a worker can hold (its memory)"
    )
    parser.add_argument("--functions", type=int, default=1_000_000)
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of popularity")
    parser.add_argument(
        "--utilisation", type=float, default=0.25, help="share of the slots running on average"
    )
    parser.add_argument("--duration", type=float, default=1.0, help="mean invocation seconds")
    parser.add_argument("--keep-alive", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=150.0, help="simulated time")
    parser.add_argument("--api-nodes", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--probe", type=int, default=8, help="bounded: workers per function")
    parser.add_argument("--bound", type=float, default=1.5, help="bounded: x the mean load")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--policies", default="random,p2c,learned,affinity,bounded,global", help="comma-separated"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    arrivals = arrivals_of(args)
    print(
        f"{args.workers} workers x {args.slots} slots, {args.functions:,} functions "
        f"(Zipf {args.zipf}), {len(arrivals):,} invocations over {args.seconds:g} s "
        f"({len(arrivals) / args.seconds:,.0f}/s), keep-alive {args.keep_alive:g} s, "
        f"{args.api_nodes} api nodes; arrivals made in {time.perf_counter() - began:.1f} s"
    )
    print(f"{'policy':<10} {'warm':>7} {'cold':>7} {'first':>7} {'refused':>8} {'peak':>6}")
    for name in args.policies.split(","):
        began = time.perf_counter()
        row = simulate(name, args, arrivals)
        print(
            f"{row['policy']:<10} {row['warm']:>7.2%} {row['cold']:>7.2%} "
            f"{row['first']:>7.2%} {row['refused']:>8.2%} {row['peak']:>6.2f}"
            f"   ({time.perf_counter() - began:.0f} s)"
        )


if __name__ == "__main__":
    main()
