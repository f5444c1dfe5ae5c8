"""Keeps the provisioned environments in step with the provisioned concurrency configs.

After any change to a function's configs, versions or aliases (and once at start, for every
function that has configs), ``sync`` works out how many environments each version should keep
initialised (an alias's config follows the alias, split by its routing weights) and asks the
runtime for exactly that: new versions get environments, versions no config names any more
lose theirs. ``describe`` renders a config's state from what the runtime has initialised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.provisioned import ProvisionedConfig, ProvisionedConfigs, Target
from lambdad.invoke.runtime_port import RuntimePort, place_of
from lambdad.invoke.service import spec_of

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ProvisionedStatus:
    config: ProvisionedConfig
    allocated: int
    available: int
    status: str  # IN_PROGRESS | READY | FAILED
    reason: str | None = None


class Provisioner:
    def __init__(
        self,
        functions: Functions,
        configs: ProvisionedConfigs,
        runtime: RuntimePort,
    ) -> None:
        self._functions = functions
        self._configs = configs
        self._runtime = runtime
        self._locks: dict[tuple[Scope, str], asyncio.Lock] = {}
        #: (scope, function) -> the versions it has environments provisioned for.
        self._versions: dict[tuple[Scope, str], set[str]] = {}
        #: (scope, function, qualifier) -> the config last provisioned for it.
        self._seen: dict[tuple[Scope, str, str], ProvisionedConfig] = {}
        configs.on_change(self.sync)

    async def start(self) -> None:
        """Provision again what the stored configs ask for (after a restart)."""
        for scope, name in await self._configs.functions_with_configs():
            await self.sync(scope, name)

    async def sync(self, scope: Scope, name: str) -> None:
        """Make the runtime's provisioned environments of ``name`` match its configs."""
        key = (scope, name)
        async with self._locks.setdefault(key, asyncio.Lock()):
            try:
                await self._sync(scope, name)
            except errors.LambdaError as exc:  # the function went away meanwhile
                log.info("provisioning %s: %s", name, exc)
            except Exception:  # the change that called us stands; its configs show no progress
                log.exception("provisioning %s failed", name)

    async def _sync(self, scope: Scope, name: str) -> None:
        targets = await self._configs.targets(scope, name)
        wanted: Counter[str] = Counter()
        retry: set[str] = set()
        for target in targets:
            wanted.update(target.versions)
            seen_key = (scope, name, target.config.qualifier)
            if self._seen.get(seen_key) != target.config:
                retry.update(target.versions)
            self._seen[seen_key] = target.config
        configured = {t.config.qualifier for t in targets}
        for seen_key in [k for k in self._seen if k[:2] == (scope, name)]:
            if seen_key[2] not in configured:
                del self._seen[seen_key]
        for version in self._versions.get((scope, name), set()) - set(wanted):
            found = self._runtime.provisioned(place_of(scope), name, version)
            if found is not None:
                await self._runtime.provision(place_of(scope), found.config, 0)
        for version, count in wanted.items():
            config = await self._functions.get(scope, name, version)
            await self._runtime.provision(
                place_of(scope), spec_of(config), count, retry=version in retry
            )
        self._versions[(scope, name)] = set(wanted)

    def describe(self, scope: Scope, target: Target) -> ProvisionedStatus:
        """A config's figures and status from the environments initialised for it."""
        config = target.config
        allocated = 0
        reason = None
        for version, count in target.versions.items():
            found = self._runtime.provisioned(place_of(scope), config.function_name, version)
            if found is not None:
                allocated += min(count, found.allocated)
                reason = reason or found.failure
        if reason is not None:
            status = "FAILED"
        elif allocated >= config.requested:
            status = "READY"
        else:
            status = "IN_PROGRESS"
        return ProvisionedStatus(config, allocated, allocated, status, reason)
