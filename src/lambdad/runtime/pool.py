"""Pools of execution environments: one per function version, and the manager of them all.

A pool hands out an idle warm environment (most recently used first) or creates a new one;
concurrent invokes therefore run in separate environments, in parallel. An environment goes
back to its pool after each invocation unless it died. The manager reaps environments idle for
longer than the keep-alive and retires a version's pool when its configuration changes.
An environment whose invocation has returned while its extensions finish comes back to the
pool when they are done; a new invocation waits briefly for it rather than start another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from pathlib import Path

from lambdad.runtime import runtimes
from lambdad.runtime.environment import Environment, EnvironmentContext, EnvState
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.layers import LayerAssembler
from lambdad.runtime.rapi import RuntimeApiServer
from lambdad.runtime.scaling import ScaleRate
from lambdad.runtime.spec import FunctionSpec
from lambdad.store.base import BlobStore

log = logging.getLogger(__name__)

PoolKey = tuple[str, str, str]  # region, function name, version
#: How long an invocation waits for an environment whose extensions are finishing (seconds)
#: before it starts a new one.
SETTLE_GRACE = 0.1


class PoolState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Pool:
    """The environments of one function version at one revision of its configuration."""

    def __init__(
        self,
        manager: RuntimeManager,
        region: str,
        config: FunctionSpec,
        task_root: Path,
        opt_dir: Path | None,
    ) -> None:
        self._manager = manager
        #: Environments see the function's own region (``AWS_REGION``), not lambdad's default.
        self._ctx = dataclasses.replace(manager.ctx, region=region)
        self.config = config
        self.task_root = task_root
        self.opt_dir = opt_dir
        self.state = PoolState.OPEN
        self._idle: list[Environment] = []
        self._all: set[Environment] = set()
        #: Returns of environments whose invocation's extensions are still running.
        self._settling: set[asyncio.Task[None]] = set()

    @property
    def size(self) -> int:
        return len(self._all)

    def _new_environment(self) -> Environment:
        rapi = self._manager.rapi
        env = Environment(
            self._ctx, self.config, self.task_root, rapi.attach, rapi.detach, self.opt_dir
        )
        env.when_closed(self._forget)
        self._all.add(env)
        return env

    def _forget(self, env: Environment) -> None:
        self._all.discard(env)
        with contextlib.suppress(ValueError):
            self._idle.remove(env)

    async def _acquire(self) -> Environment:
        deadline = time.monotonic() + SETTLE_GRACE
        while True:
            while self._idle:
                env = self._idle.pop()
                if env.alive and env.state is EnvState.IDLE:
                    env.thaw()
                    return env
                await env.close()
            # An environment whose extensions are finishing is usually back within
            # milliseconds: cheaper to wait a little than to start a new one.
            remaining = deadline - time.monotonic()
            if not self._settling or remaining <= 0:
                break
            await asyncio.wait(
                self._settling, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        self._manager.scale_rate.take(self._ctx.region, self.config.name)
        env = self._new_environment()
        try:
            await env.start()
        except BaseException:
            await env.close()
            raise
        return env

    async def invoke(self, invocation: Invocation) -> Outcome:
        env = await self._acquire()
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
            env.freeze()
            self._idle.append(env)
        elif env.state is not EnvState.CLOSED:
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
    ) -> None:
        self.ctx = ctx
        self.scale_rate = scale_rate or ScaleRate()
        self.rapi = RuntimeApiServer()
        self._blobs = blobs
        self._layers = LayerAssembler(blobs, ctx.runs_dir.parent / "opt")
        self._idle_timeout = idle_timeout
        self._pools: dict[PoolKey, Pool] = {}
        self._retired: set[Pool] = set()
        self._reaper: asyncio.Task[None] | None = None
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

    async def _pool(self, region: str, config: FunctionSpec) -> Pool:
        key = (region, config.name, config.version)
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
        pool = Pool(self, region, config, task_root, opt_dir)
        self._pools[key] = pool
        return pool

    async def _retire(self, pool: Pool) -> None:
        await pool.close()
        if pool.size:
            self._retired.add(pool)

    async def invoke(self, region: str, config: FunctionSpec, invocation: Invocation) -> Outcome:
        if self.state is not ManagerState.RUNNING:
            raise RuntimeError("runtime manager is not running")
        pool = await self._pool(region, config)
        return await pool.invoke(invocation)

    async def function_changed(self, region: str, name: str) -> None:
        """A function's configuration changed or it was deleted: retire pools that are stale."""
        self.scale_rate.forget(region, name)
        for key in [k for k in self._pools if k[0] == region and k[1] == name]:
            await self._retire(self._pools.pop(key))

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
        await asyncio.gather(*(pool.kill() for pool in pools))
        await self.rapi.close()
        await self.ctx.sandbox.close()
