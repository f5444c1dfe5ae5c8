"""Provisioned environments: those of one function version initialised ahead of invocations.

A ``ProvisionedSet`` keeps ``target`` environments initialised, starting the missing ones in
parallel (their runtime sees ``AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency``). An
invocation takes a free one (``take``) or, when all are busy, runs on demand in the version's
pool instead; each still serves one invocation at a time. They are never reaped for idleness;
one that dies is replaced. An init that fails marks the set failed (``failure``) and nothing
more is started until the set is asked to ``retry``. Shrinking the target, or ``close``,
retires environments: free ones now, busy ones when their invocation ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable

from lambdad.runtime.environment import Environment, EnvState
from lambdad.runtime.invocation import Invocation, Outcome
from lambdad.runtime.spec import FunctionSpec

log = logging.getLogger(__name__)

INITIALIZATION_TYPE = "provisioned-concurrency"
#: The StatusReason AWS gives when a provisioned environment's init fails.
INIT_FAILURE = "FUNCTION_ERROR_INIT_FAILURE"


class SetState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class ProvisionedSet:
    def __init__(self, config: FunctionSpec, make: Callable[[], Environment]) -> None:
        self.config = config
        self._make = make
        self.target = 0
        self.state = SetState.OPEN
        #: Why init failed (AWS's StatusReason), or None.
        self.failure: str | None = None
        self._free: list[Environment] = []
        self._busy: set[Environment] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._initializing: set[Environment] = set()
        self._returning: set[asyncio.Task[None]] = set()

    @property
    def allocated(self) -> int:
        """Environments initialised and alive, free or busy."""
        return len(self._free) + len(self._busy)

    @property
    def busy(self) -> int:
        """Environments running an invocation now."""
        return len(self._busy)

    @property
    def available(self) -> int:
        return min(self.allocated, self.target)

    def resize(self, target: int) -> None:
        """Keep ``target`` environments; start the missing ones, retire free extra ones."""
        self.target = target
        while self.allocated > self.target and self._free:
            self._retire(self._free.pop())
        self._fill()

    def retry(self) -> None:
        """Forget a failed init and start the missing environments again."""
        self.failure = None
        self._fill()

    def _fill(self) -> None:
        if self.state is not SetState.OPEN or self.failure is not None:
            return
        for _ in range(self.target - self.allocated - len(self._starting)):
            task = asyncio.create_task(self._start_one(), name=f"provision-{self.config.name}")
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_one(self) -> None:
        env = self._make()
        env.initialization_type = INITIALIZATION_TYPE
        self._initializing.add(env)
        try:
            await env.start()
        except Exception:
            log.exception("provisioning an environment of %s failed", self.config.name)
            self.failure = INIT_FAILURE
        finally:
            self._initializing.discard(env)
        if self.state is not SetState.OPEN or self.allocated >= self.target:
            await env.close()
            return
        if env.init_failure is not None or env.state is not EnvState.IDLE:
            self.failure = INIT_FAILURE
            await env.close("failure")
            return
        env.when_closed(self._forget)
        env.freeze()
        self._free.append(env)

    def _forget(self, env: Environment) -> None:
        """An environment ended (retired, crashed or timed out): replace it if still wanted."""
        self._busy.discard(env)
        with contextlib.suppress(ValueError):
            self._free.remove(env)
        self._fill()

    def _retire(self, env: Environment) -> None:
        task = asyncio.create_task(env.close(), name=f"retire-{env.id}")
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    def take(self) -> Environment | None:
        """A free initialised environment, now marked busy; None when all are busy."""
        while self._free:
            env = self._free.pop()
            if env.alive and env.state is EnvState.IDLE:
                self._busy.add(env)
                return env
            self._retire(env)  # died while idle: closing it starts a replacement
        return None

    async def run(self, env: Environment, invocation: Invocation) -> Outcome:
        """Run ``invocation`` in ``env`` (from ``take``), then give the environment back."""
        env.thaw()
        try:
            outcome = await env.invoke(invocation)
        except BaseException:
            await env.close()
            raise
        if env.settling is None:
            await self._give_back(env)
        else:  # back when its extensions are done
            task = asyncio.create_task(self._give_back_settled(env))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)
        return outcome

    async def _give_back_settled(self, env: Environment) -> None:
        await env.wait_settled()
        await self._give_back(env)

    async def _give_back(self, env: Environment) -> None:
        self._busy.discard(env)
        keep = self.state is SetState.OPEN and self.allocated < self.target
        if keep and env.alive and env.state is EnvState.IDLE:
            env.freeze()
            self._free.append(env)
        elif env.state is not EnvState.CLOSED:
            await env.close()

    def sweep(self) -> None:
        """Retire free environments whose process died, so that they are replaced."""
        for env in [e for e in self._free if not e.alive]:
            self._free.remove(env)
            self._retire(env)

    async def close(self) -> None:
        """Retire every environment: free ones now, busy ones when their invocation ends."""
        if self.state is SetState.CLOSED:
            return
        self.state = SetState.CLOSED
        ending = [*self._free, *self._initializing]  # closing one that initialises ends its init
        self._free = []
        await asyncio.gather(*(env.close() for env in ending), return_exceptions=True)
        await asyncio.gather(*self._starting, return_exceptions=True)

    async def kill(self) -> None:
        """Close, busy environments included (lambdad is stopping)."""
        await self.close()
        await asyncio.gather(*(env.close() for env in list(self._busy)), return_exceptions=True)
        await asyncio.gather(*self._returning, return_exceptions=True)
