"""Which worker an api node sends an invocation to (docs/cluster.md, "Routing").

A worker that probably has a warm idle environment of the version first, else the least
loaded worker that can run the runtime. What this knows:

- the workers, from the node registry (role ``worker`` or ``all``, up, their CPUs and
  runtimes), read again every ``REFRESH`` seconds;
- what this api node has in flight to each worker, and per version;
- affinity learned from its own invocations: a worker that ran a version has had as many
  environments of it as it once ran at the same time, and keeps them warm until the idle
  timeout after its last run; fewer in flight there than that means one is idle;
- workers to avoid: one lost mid-invocation, until the registry shows it started again or
  its lease passes; one that had nobody listening, for ``UNHEARD_AVOID`` seconds only (asking
  a dead worker again costs one quick no-responders answer, and a worker that was only
  reconnecting to NATS is used again soon). When every worker is avoided, the avoided ones
  are tried all the same before giving up.

No state is shared between api nodes: each learns from its own traffic, which is enough to
find warm environments again (an api node sees its callers' repeated invokes) and costs no
round trip. Several api nodes can both think one warm environment is theirs: the loser of
that race starts a new environment, as on a single node under concurrency.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

#: Seconds between reads of the node registry.
REFRESH = 1.0
#: Seconds a worker that nobody listened for is avoided.
UNHEARD_AVOID = 2.0

#: A version as routing knows it: (account, region, name, version).
VersionKey = tuple[str, str, str, str]


@dataclasses.dataclass(slots=True)
class Worker:
    id: str
    started: float
    cpus: int
    runtimes: frozenset[str]
    environments: int


@dataclasses.dataclass(slots=True)
class _Warm:
    """What this api node knows of one worker's environments of one version."""

    #: The most this api node ever had running there at once (environments it made there).
    seen: int = 0
    running: int = 0
    last_used: float = 0.0


class WorkerChoice:
    """The routing table of one api node (not thread-safe; used from the event loop)."""

    def __init__(
        self, idle_timeout: float, lease: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._idle_timeout = idle_timeout
        self._lease = lease
        self._clock = clock
        self.workers: dict[str, Worker] = {}
        self._in_flight: dict[str, int] = {}
        self._warm: dict[VersionKey, dict[str, _Warm]] = {}
        #: worker -> (the start time it had when avoided, avoided until).
        self._avoided: dict[str, tuple[float, float]] = {}
        #: version -> {worker: provisioned environments it initialised} (the workers' shares
        #: of provisioned concurrency, as they publish them in the store).
        self.provisioned: dict[VersionKey, dict[str, int]] = {}

    def update(self, records: Iterable[dict[str, Any]], me: str) -> None:
        """The registry's records, as ``NodeRegistry.nodes`` lists them."""
        workers = {}
        for record in records:
            if record.get("Role") not in ("worker", "all") or record.get("Health") != "up":
                continue
            if record.get("Id") == me:
                continue
            capacity = record.get("Capacity") or {}
            load = record.get("Load") or {}
            workers[str(record["Id"])] = Worker(
                id=str(record["Id"]),
                started=float(record.get("Started", 0.0)),
                cpus=max(1, int(capacity.get("Cpus", 1))),
                runtimes=frozenset(capacity.get("Runtimes", ())),
                environments=int(load.get("Environments", 0)),
            )
        self.workers = workers
        now = self._clock()
        for version, warm in list(self._warm.items()):
            for worker_id, state in list(warm.items()):
                if not state.running and now - state.last_used >= self._idle_timeout:
                    del warm[worker_id]  # reaped there by now
            if not warm:
                del self._warm[version]
        for worker_id, (started, _) in list(self._avoided.items()):
            known = workers.get(worker_id)
            if known is not None and known.started != started:
                del self._avoided[worker_id]  # it started again since

    def pick(
        self, version: VersionKey, runtime: str | None, tried: set[str], *, avoided: bool = False
    ) -> str | None:
        """The worker to send an invocation of ``version`` to; None when there is none.
        ``avoided``: consider the avoided workers too (a last resort before giving up)."""
        now = self._clock()
        live = [
            w
            for w in self.workers.values()
            if w.id not in tried and (avoided or not self._is_avoided(w.id, now))
        ]
        able = [w for w in live if runtime is None or runtime in w.runtimes] or live
        if not able:
            return None
        warm = self._warm.get(version, {})
        shares = self.provisioned.get(version)
        if shares:
            # A worker with a provisioned environment of the version not all busy with this
            # node's invocations first: there it runs initialised ahead, as on one node.
            free = [w for w in able if shares.get(w.id, 0) > _running(warm, w.id)]
            if free:
                return min(free, key=lambda w: (self._load(w), random.random())).id
        idle = [
            w
            for w in able
            if (state := warm.get(w.id)) is not None
            and state.seen > state.running
            and now - state.last_used < self._idle_timeout
        ]
        pool = idle or able
        return min(pool, key=lambda w: (self._load(w), random.random())).id

    def _load(self, worker: Worker) -> float:
        return (self._in_flight.get(worker.id, 0) + worker.environments * 0.001) / worker.cpus

    def _is_avoided(self, worker: str, now: float) -> bool:
        avoided = self._avoided.get(worker)
        if avoided is None:
            return False
        if now >= avoided[1]:
            del self._avoided[worker]
            return False
        return True

    def began(self, worker: str, version: VersionKey) -> None:
        self._in_flight[worker] = self._in_flight.get(worker, 0) + 1
        state = self._warm.setdefault(version, {}).setdefault(worker, _Warm())
        state.running += 1
        state.seen = max(state.seen, state.running)

    def ended(self, worker: str, version: VersionKey) -> None:
        self._in_flight[worker] = max(0, self._in_flight.get(worker, 0) - 1)
        state = self._warm.get(version, {}).get(worker)
        if state is not None:
            state.running = max(0, state.running - 1)
            state.last_used = self._clock()

    def avoid(self, worker: str, seconds: float | None = None) -> None:
        """``worker`` did not answer: route around it for ``seconds`` (the lease when not
        given) or until it restarts; forget what it had warm."""
        known = self.workers.get(worker)
        started = known.started if known is not None else 0.0
        until = self._clock() + (self._lease if seconds is None else seconds)
        self._avoided[worker] = (started, until)
        for warm in self._warm.values():
            warm.pop(worker, None)

    def in_flight(self, worker: str) -> int:
        return self._in_flight.get(worker, 0)


def _running(warm: dict[str, _Warm], worker: str) -> int:
    """Invocations of a version this api node has running on ``worker`` now."""
    state = warm.get(worker)
    return state.running if state is not None else 0
