"""Pools of execution environments: one per function version, and the manager of them all.

A pool hands out an idle warm environment (most recently used first) or creates a new one;
concurrent invokes therefore run in separate environments, in parallel. An environment goes
back to its pool after each invocation unless it died. The manager reaps environments idle for
longer than the keep-alive and retires a version's pool when its configuration changes.
An environment whose invocation has returned while its extensions finish comes back to the
pool when they are done; a new invocation waits briefly for it rather than start another.
Environments initialised ahead (provisioned concurrency, ``provisioned.py``) are kept apart
from the pools, per version, and serve invocations before the pool does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import logging
import os
import time
from pathlib import Path

from lambdad import errors
from lambdad.runtime import runtimes
from lambdad.runtime.environment import Environment, EnvironmentContext, EnvState
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.layers import LayerAssembler
from lambdad.runtime.provisioned import ProvisionedSet
from lambdad.runtime.rapi import RuntimeApiServer
from lambdad.runtime.replies import InitFailure
from lambdad.runtime.runner import Forker
from lambdad.runtime.scaling import ScaleRate
from lambdad.runtime.snapshots import Snapshot, SnapshotState
from lambdad.runtime.spec import FunctionSpec, Place
from lambdad.store.base import BlobStore

log = logging.getLogger(__name__)

#: The throttle when lambdad's ``max_environments`` are all busy (a host limit, not AWS's).
ENVIRONMENTS_FULL = "Rate Exceeded. (all of this lambdad's execution environments are busy)"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"

PoolKey = tuple[Place, str, str]  # account and region, function name, version
#: How long an invocation waits for an environment whose extensions are finishing (seconds)
#: before it starts a new one.
SETTLE_GRACE = 0.1
#: How many environments of one function a burst of queued (``paced``) invocations starts at
#: once; the rest wait for whichever comes first, an environment coming back or a start
#: ending. A thousand events at once would otherwise start dozens of runtimes together, and
#: on a small host their starts starve lambdad itself of CPU (docs/async-delivery.md).
PACED_STARTS = max(2, os.cpu_count() or 2)
#: What a start is taken to last before one of the pool was timed (seconds).
ASSUMED_START = 0.25
#: The weight of the newest sample in the pool's running average of its starts.
_NEWEST = 0.2


def _time_out(future: asyncio.Future[Environment | None]) -> None:
    if not future.done():
        future.cancel()


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (not only a future it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _averaged(average: float | None, sample: float) -> float:
    return sample if average is None else average + _NEWEST * (sample - average)


def _placed(ctx: EnvironmentContext, place: Place) -> EnvironmentContext:
    """``ctx`` for environments of a function of ``place``."""
    return dataclasses.replace(ctx, account_id=place.account_id, region=place.region)


class PoolState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Pool:
    """The environments of one function version at one revision of its configuration."""

    def __init__(
        self,
        manager: RuntimeManager,
        place: Place,
        config: FunctionSpec,
        task_root: Path,
        opt_dir: Path | None,
        fork: Forker | None = None,
    ) -> None:
        self._manager = manager
        #: SnapStart: new environments are restored from the version's template.
        self._fork = fork
        #: Environments see the function's own account and region (``AWS_REGION``), not
        #: lambdad's defaults.
        self._place = place
        self._ctx = _placed(manager.ctx, place)
        self.config = config
        self.task_root = task_root
        self.opt_dir = opt_dir
        self.state = PoolState.OPEN
        self._idle: list[Environment] = []
        self._all: set[Environment] = set()
        #: The tenant each environment was made for (None: a function without tenant
        #: isolation). An environment serves only invocations of its own tenant.
        self._tenant: dict[Environment, str | None] = {}
        #: Returns of environments whose invocation's extensions are still running.
        self._settling: set[asyncio.Task[None]] = set()
        #: Environments starting now.
        self._starting = 0
        #: Paced invocations waiting for an environment to come back, first come first served:
        #: a returning environment is handed to the first of its tenant (None: look again).
        self._waiters: collections.deque[tuple[str | None, asyncio.Future[Environment | None]]] = (
            collections.deque()
        )
        #: The running average of a start of this pool (seconds).
        self._start_time: float | None = None

    @property
    def size(self) -> int:
        return len(self._all)

    def _new_environment(self, tenant: str | None = None) -> Environment:
        rapi = self._manager.rapi
        env = Environment(
            self._ctx,
            self.config,
            self.task_root,
            rapi.attach,
            rapi.detach,
            self.opt_dir,
            fork=self._fork,
        )
        env.when_closed(self._forget)
        self._all.add(env)
        self._tenant[env] = tenant
        return env

    def _forget(self, env: Environment) -> None:
        self._all.discard(env)
        self._tenant.pop(env, None)
        with contextlib.suppress(ValueError):
            self._idle.remove(env)

    def _take_idle(self, tenant: str | None) -> Environment | None:
        """The most recently used idle environment of ``tenant``, out of the idle list."""
        for i in range(len(self._idle) - 1, -1, -1):
            if self._tenant.get(self._idle[i]) == tenant:
                return self._idle.pop(i)
        return None

    def _wake_waiters(self) -> None:
        """Every paced invocation waiting here looks again (a start ended, the pool closed)."""
        waiters, self._waiters = self._waiters, collections.deque()
        for _, future in waiters:
            if not future.done():
                future.set_result(None)

    def _worth_waiting(self, timed_out: bool) -> bool:
        """Whether a paced invocation waits for a busy environment rather than start one:
        while ``PACED_STARTS`` are starting; and, once, for as long as a start takes (an
        environment coming back sooner than that serves it sooner). A burst of short events
        is then served by the environments there are, as fast as they turn round, instead of
        starting runtimes that take the CPU those environments need; events that would wait
        longer than a start get environments of their own, ``PACED_STARTS`` at a time."""
        if self._starting >= PACED_STARTS:
            return True
        return not timed_out and len(self._all) - len(self._idle) - self._starting > 0

    async def _wait_for_return(self, tenant: str | None) -> tuple[Environment | None, bool]:
        """Wait (at most about one start) for an environment handed back by ``_release``:
        (the environment or None, whether the wait timed out). A future and a timer, not
        ``asyncio.wait``: a burst makes thousands of these waits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Environment | None] = loop.create_future()
        entry = (tenant, future)
        self._waiters.append(entry)
        start = self._start_time if self._start_time is not None else ASSUMED_START
        timer = loop.call_later(start, _time_out, future)
        try:
            env = await future
        except asyncio.CancelledError:
            if future.cancelled():  # the wait ran out (or its task was cancelled)
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                if not _cancelling():  # the timer's: only it cancels the future
                    return None, True
                raise
            if (env := future.result()) is not None:
                env.freeze()  # handed over as the wait was cancelled: idle again
                self._idle.append(env)
            raise
        finally:
            timer.cancel()
        return env, False

    async def _acquire(self, tenant: str | None, *, paced: bool = False) -> Environment:
        deadline = time.monotonic() + SETTLE_GRACE
        timed_out = False
        while True:
            while (env := self._take_idle(tenant)) is not None:
                if env.alive and env.state is EnvState.IDLE:
                    env.thaw()
                    return env
                await env.close()
            if paced and self.state is PoolState.OPEN and self._worth_waiting(timed_out):
                handed, timed_out = await self._wait_for_return(tenant)
                if handed is not None:
                    if handed.alive and handed.state is EnvState.IDLE:
                        return handed
                    await handed.close()
                continue
            # An environment whose extensions are finishing is usually back within
            # milliseconds: cheaper to wait a little than to start a new one.
            remaining = deadline - time.monotonic()
            if not self._settling or remaining <= 0:
                break
            await asyncio.wait(
                self._settling, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        await self._manager.scale_rate.take(self._place, self.config.name)
        await self._manager.make_room()
        env = self._new_environment(tenant)
        self._starting += 1
        began = time.monotonic()
        try:
            await env.start()
        except BaseException:
            await env.close()
            raise
        finally:
            self._starting -= 1
            self._wake_waiters()
        self._start_time = _averaged(self._start_time, time.monotonic() - began)
        return env

    async def invoke(self, invocation: Invocation) -> Outcome:
        env = await self._acquire(invocation.tenant_id, paced=invocation.paced)
        try:
            outcome = await env.invoke(invocation)
        except BaseException:
            await env.close()
            raise
        if env.settling is None:
            await self._release(env)
        else:  # the caller has its answer; the environment comes back when its extensions do
            task = asyncio.create_task(self._release_when_settled(env))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
        return outcome

    async def _release_when_settled(self, env: Environment) -> None:
        await env.wait_settled()
        await self._release(env)

    async def _release(self, env: Environment) -> None:
        if self.state is PoolState.OPEN and env.alive and env.state is EnvState.IDLE:
            tenant = self._tenant.get(env)
            for entry in self._waiters:  # straight to the first paced invocation waiting
                if entry[0] == tenant and not entry[1].done():
                    self._waiters.remove(entry)
                    entry[1].set_result(env)
                    return
            env.freeze()
            self._idle.append(env)
        elif env.state is not EnvState.CLOSED:
            await env.close()

    def oldest_idle(self) -> Environment | None:
        return min(self._idle, key=lambda env: env.idle_since, default=None)

    async def evict(self, env: Environment) -> None:
        """Close an idle environment to make room for another function's."""
        with contextlib.suppress(ValueError):
            self._idle.remove(env)
        await env.close()

    async def reap(self, idle_for: float) -> None:
        now = time.monotonic()
        stale = [e for e in self._idle if not e.alive or now - e.idle_since >= idle_for]
        # Out of the idle list before the first await, so no invoke can take one meanwhile.
        self._idle = [e for e in self._idle if e not in stale]
        for env in stale:
            await env.close()

    async def close(self) -> None:
        """Close idle environments now; busy ones close when their invocation ends."""
        if self.state is PoolState.CLOSED:
            return
        self.state = PoolState.CLOSED
        self._wake_waiters()  # paced invocations waiting here stop waiting
        idle, self._idle = self._idle, []
        await asyncio.gather(*(env.close() for env in idle))

    async def kill(self) -> None:
        await self.close()
        await asyncio.gather(*(env.close() for env in list(self._all)))
        await asyncio.gather(*self._settling, return_exceptions=True)


class ManagerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class RuntimeManager:
    """All pools of this lambdad, the Runtime API server, and the idle reaper."""

    def __init__(
        self,
        ctx: EnvironmentContext,
        blobs: BlobStore,
        idle_timeout: float,
        scale_rate: ScaleRate | None = None,
        max_environments: int = 0,
    ) -> None:
        self.ctx = ctx
        self.scale_rate = scale_rate or ScaleRate()
        #: On-demand environments alive at once across all functions (0: no limit).
        self.max_environments = max_environments
        self.rapi = RuntimeApiServer(ctx.sandbox.reach)
        self._blobs = blobs
        self._layers = LayerAssembler(blobs, ctx.runs_dir.parent / "opt")
        self._idle_timeout = idle_timeout
        self._pools: dict[PoolKey, Pool] = {}
        self._retired: set[Pool] = set()
        #: Environments initialised ahead, per version (provisioned concurrency).
        self._provisioned: dict[PoolKey, ProvisionedSet] = {}
        self._retired_provisioned: set[ProvisionedSet] = set()
        self._reaper: asyncio.Task[None] | None = None
        #: SnapStart templates by version, and those being made.
        self._snapshots: dict[PoolKey, Snapshot] = {}
        self._making: dict[PoolKey, asyncio.Task[Snapshot]] = {}
        #: Versions deleted while their template was being made: it is closed once made.
        self._dropped: set[PoolKey] = set()
        self.state = ManagerState.NEW

    async def start(self) -> None:
        node = runtimes.find_node(self.ctx.node)
        if node is not None:  # asked once, here, so no cold start waits for ``node --version``
            await asyncio.to_thread(runtimes.node_major, node)
        await self.ctx.sandbox.open()
        await self.rapi.start()
        self.ctx.runs_dir.mkdir(parents=True, exist_ok=True)
        self._reaper = asyncio.create_task(self._reap_forever(), name="environment-reaper")
        self.state = ManagerState.RUNNING

    async def _reap_forever(self) -> None:
        interval = min(max(self._idle_timeout / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            for pool in [*self._pools.values(), *self._retired]:
                try:
                    await pool.reap(self._idle_timeout)
                except Exception:  # one environment's failed cleanup must not stop the reaper
                    log.exception("reaping the environments of %s failed", pool.config.name)
            self._retired = {p for p in self._retired if p.size}
            for provisioned in self._provisioned.values():
                provisioned.sweep()
            self._retired_provisioned = {p for p in self._retired_provisioned if p.allocated}

    async def _pool(self, place: Place, config: FunctionSpec) -> Pool:
        key = (place, config.name, config.version)
        pool = self._pools.get(key)
        if pool is not None and pool.config.revision_id == config.revision_id:
            return pool
        task_root = await self._blobs.unpacked(config.code_key)
        opt_dir = await self._layers.assemble(config.layer_keys) if config.layer_keys else None
        pool = self._pools.get(key)
        if pool is not None and pool.config.revision_id == config.revision_id:
            return pool
        if pool is not None:
            await self._retire(pool)
        fork: Forker | None = None
        if config.snap_start:
            snapshot = await self._snapshot(place, config)
            # A template whose init fails after a restart: on-demand environments instead.
            fork = snapshot.fork if snapshot.state is SnapshotState.READY else None
        pool = self._pools.get(key)
        if pool is not None and pool.config.revision_id == config.revision_id:
            return pool
        pool = Pool(self, place, config, task_root, opt_dir, fork)
        self._pools[key] = pool
        return pool

    async def make_snapshot(self, place: Place, config: FunctionSpec) -> InitFailure | None:
        """Run a SnapStart version's init in its template (PublishVersion); None when ready."""
        if self.state is not ManagerState.RUNNING:
            raise RuntimeError("runtime manager is not running")
        return (await self._snapshot(place, config)).failure

    async def _snapshot(self, place: Place, config: FunctionSpec) -> Snapshot:
        """The version's template: kept, being made, or made now (the first use after a
        restart of lambdad makes it again)."""
        key = (place, config.name, config.version)
        existing = self._snapshots.get(key)
        if existing is not None and existing.config.revision_id == config.revision_id:
            return existing
        task = self._making.get(key)
        if task is None or task.done():
            self._dropped.discard(key)
            task = asyncio.create_task(self._make_snapshot(key, config), name=f"snapshot-{key}")
            self._making[key] = task
        return await asyncio.shield(task)

    async def _make_snapshot(self, key: PoolKey, config: FunctionSpec) -> Snapshot:
        place = key[0]
        try:
            task_root = await self._blobs.unpacked(config.code_key)
            layers = config.layer_keys
            opt_dir = await self._layers.assemble(layers) if layers else None
            snapshot = Snapshot(_placed(self.ctx, place), config, task_root, opt_dir)
            try:
                await snapshot.make()
            except BaseException:
                await snapshot.close()
                raise
            if key in self._dropped or self.state is not ManagerState.RUNNING:
                self._dropped.discard(key)
                await snapshot.close()
                return snapshot
            previous = self._snapshots.pop(key, None)
            if previous is not None:
                await previous.close()
            self._snapshots[key] = snapshot
            return snapshot
        finally:
            if self._making.get(key) is asyncio.current_task():
                del self._making[key]

    async def _retire(self, pool: Pool) -> None:
        await pool.close()
        if pool.size:
            self._retired.add(pool)

    async def invoke(self, place: Place, config: FunctionSpec, invocation: Invocation) -> Outcome:
        if self.state is not ManagerState.RUNNING:
            raise RuntimeError("runtime manager is not running")
        pool = await self._pool(place, config)
        return await pool.invoke(invocation)

    async def provision(
        self, place: Place, config: FunctionSpec, count: int, *, retry: bool = False
    ) -> None:
        """Keep ``count`` environments of the version initialised ahead (0: none); ``retry``
        starts again after a failed init."""
        key = (place, config.name, config.version)
        current = self._provisioned.get(key)
        if current is not None and (count == 0 or current.config.revision_id != config.revision_id):
            del self._provisioned[key]
            await current.close()
            if current.allocated:  # busy ones end with their invocation, or at shutdown
                self._retired_provisioned.add(current)
            current = None
        if count == 0 or self.state is not ManagerState.RUNNING:
            return
        if current is None:
            task_root = await self._blobs.unpacked(config.code_key)
            opt_dir = await self._layers.assemble(config.layer_keys) if config.layer_keys else None
            current = self._provisioned.get(key)
            if current is None:
                ctx = _placed(self.ctx, place)
                rapi = self.rapi

                def make() -> Environment:
                    return Environment(ctx, config, task_root, rapi.attach, rapi.detach, opt_dir)

                current = self._provisioned[key] = ProvisionedSet(config, make)
        if retry:
            current.retry()
        current.resize(count)

    def environment_count(self) -> int:
        """Execution environments alive: on demand (retired pools' included) and
        provisioned."""
        pools = [*self._pools.values(), *self._retired]
        sets = [*self._provisioned.values(), *self._retired_provisioned]
        return sum(p.size for p in pools) + sum(s.allocated for s in sets)

    def provisioned(self, place: Place, name: str, version: str) -> ProvisionedSet | None:
        """The version's provisioned environments, if it has any."""
        return self._provisioned.get((place, name, version))

    async def invoke_provisioned(
        self, place: Place, config: FunctionSpec, invocation: Invocation
    ) -> Outcome | None:
        """Run ``invocation`` in a free provisioned environment of the version; None (at once)
        when it has none free."""
        found = self._provisioned.get((place, config.name, config.version))
        if found is None or found.config.revision_id != config.revision_id:
            return None
        env = found.take()
        if env is None:
            return None
        return await found.run(env, invocation)

    async def make_room(self) -> None:
        """Before an on-demand environment is made: at ``max_environments``, close the idle
        environment idle longest (any function's); with none idle, throttle."""
        if not self.max_environments:
            return
        pools = [*self._pools.values(), *self._retired]
        while sum(pool.size for pool in pools) >= self.max_environments:
            candidates = [(p, e) for p in pools if (e := p.oldest_idle()) is not None]
            if not candidates:
                raise errors.TooManyRequestsException(
                    ENVIRONMENTS_FULL, reason=ACCOUNT_REASON, retry_after=1
                )
            pool, env = min(candidates, key=lambda pair: pair[1].idle_since)
            await pool.evict(env)

    async def function_changed(self, place: Place, name: str) -> None:
        """A function's configuration changed or it was deleted: retire pools that are stale."""
        self.scale_rate.forget(place, name)
        for key in [k for k in self._pools if k[0] == place and k[1] == name]:
            await self._retire(self._pools.pop(key))

    async def drop_snapshots(self, place: Place, name: str, keep: set[str]) -> None:
        """Close the templates of ``name``'s versions that are not in ``keep`` (deleted)."""
        for key in [k for k in self._making if k[:2] == (place, name) and k[2] not in keep]:
            self._dropped.add(key)
        for key in [k for k in self._snapshots if k[:2] == (place, name) and k[2] not in keep]:
            await self._snapshots.pop(key).close()

    async def close(self) -> None:
        if self.state is ManagerState.CLOSED:
            return
        self.state = ManagerState.CLOSED
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        pools = [*self._pools.values(), *self._retired]
        self._pools.clear()
        self._retired.clear()
        provisioned = [*self._provisioned.values(), *self._retired_provisioned]
        self._provisioned.clear()
        self._retired_provisioned.clear()
        await asyncio.gather(*(pool.kill() for pool in pools), *(p.kill() for p in provisioned))
        making = list(self._making.values())
        for task in making:
            task.cancel()
        await asyncio.gather(*making, return_exceptions=True)
        snapshots = list(self._snapshots.values())
        self._snapshots.clear()
        await asyncio.gather(*(snapshot.close() for snapshot in snapshots))
        await self.rapi.close()
        await self.ctx.sandbox.close()
