"""Keeps the provisioned environments in step with the provisioned concurrency configs.

After any change to a function's configs, versions or aliases (and once at start, for every
function that has configs), ``sync`` works out how many environments each version should keep
initialised (an alias's config follows the alias, split by its routing weights) and asks the
runtime for exactly that: new versions get environments, versions no config names any more
lose theirs. ``describe`` renders a config's state from what the runtime has initialised.

In a cluster (``spread``) each node provisions only its share of each version's environments
(``invoke/provisioned_spread.py``), follows the store's change feed (a config, function,
version or alias changed through another node is provisioned here too), looks at the node
registry every ``interval`` seconds (a node joined or gone: every function again), and
publishes what it has initialised in ``Table.PROVISIONED_SHARES``, so that ``describe`` on any
node sums the live nodes' environments. A change made through this node (``changed``) is
answered once the other nodes have published that they keep no more than the configs now ask
for (``SHRINK_WAIT`` at most): an invocation right after a config was lowered or deleted, or an
alias's weights moved, finds no environment the config no longer covers, as on one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.provisioned import ProvisionedConfig, ProvisionedConfigs, Target
from lambdad.invoke.provisioned_spread import Spread
from lambdad.invoke.runtime_port import RuntimePort, place_of
from lambdad.invoke.service import spec_of
from lambdad.store.base import Key, Store, StoreChange, StoreError, Table, Write

log = logging.getLogger(__name__)

#: Seconds a change through this node waits for the others to give up environments it removed.
SHRINK_WAIT = 2.0
#: Seconds between looks at the others' shares while waiting (the feed usually wakes it first).
SHRINK_LOOK = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class ProvisionedStatus:
    config: ProvisionedConfig
    allocated: int
    available: int
    status: str  # IN_PROGRESS | READY | FAILED
    reason: str | None = None


#: Tables whose changes through another node may change what a function's configs ask for.
_FOLLOWED = (Table.PROVISIONED, Table.FUNCTIONS, Table.VERSIONS, Table.ALIASES)


class Provisioner:
    def __init__(
        self,
        functions: Functions,
        configs: ProvisionedConfigs,
        runtime: RuntimePort,
        *,
        spread: Spread | None = None,
        store: Store | None = None,
        interval: float = 1.0,
    ) -> None:
        self._functions = functions
        self._configs = configs
        self._runtime = runtime
        self._spread = spread
        self._store = store
        self._interval = interval
        #: (account, region, function, version, node) -> (allocated, failure) last published.
        self._published: dict[Key, tuple[int, str | None]] = {}
        #: One publication at a time (the follower's and each sync's).
        self._publishing = asyncio.Lock()
        #: Set when the feed says another node published its shares.
        self._shares_heard = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._closed = False
        self._locks: dict[tuple[Scope, str], asyncio.Lock] = {}
        #: (scope, function) -> the versions it has environments provisioned for.
        self._versions: dict[tuple[Scope, str], set[str]] = {}
        #: (scope, function, qualifier) -> the config last provisioned for it.
        self._seen: dict[tuple[Scope, str, str], ProvisionedConfig] = {}
        configs.on_change(self.changed)

    @property
    def members(self) -> tuple[str, ...]:
        """The nodes this one shares provisioned environments with, itself included, as it
        last saw them (empty on a single node)."""
        return self._spread.members if self._spread is not None else ()

    async def start(self) -> None:
        """Provision again what the stored configs ask for (after a restart); in a cluster,
        begin following the registry."""
        if self._spread is not None:
            with contextlib.suppress(StoreError):  # alone until the registry answers
                await self._spread.refresh()
        await self.resync_all()
        if self._spread is not None:
            self._follower = asyncio.create_task(self._follow(), name="provisioned spread")

    async def resync_all(self) -> None:
        """Sync every function that has configs or provisioned environments here."""
        known = set(self._versions)
        for scope, name in await self._configs.functions_with_configs():
            known.discard((scope, name))
            await self.sync(scope, name)
        for scope, name in known:
            await self.sync(scope, name)

    def forget_stored(self, change: StoreChange) -> None:
        """Another node changed the metadata (``Store.subscribe``): sync what it may have
        changed (the caches forgot it first, being subscribed first)."""
        if change.table in (None, Table.PROVISIONED_SHARES):
            self._shares_heard.set()
        if self._closed or (change.table is not None and change.table not in _FOLLOWED):
            return
        if change.table is not None and len(change.key) >= 3:
            work = self.sync(Scope(change.key[0], change.key[1]), change.key[2])
        else:
            work = self.resync_all()
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self) -> None:
        spread = self._spread
        assert spread is not None
        while True:
            await asyncio.sleep(self._interval)
            try:
                if await spread.refresh():
                    await self.resync_all()
                await self._publish()
            except StoreError as exc:  # the store is back soon
                log.warning("provisioned concurrency not shared: %s", exc)
            except Exception:  # the follower must go on, or a dead node's share is lost
                log.exception("following the nodes for provisioned concurrency failed")

    async def _publish(self) -> None:
        """Write what this node has initialised per version, where it changed."""
        if self._spread is None or self._store is None:
            return
        async with self._publishing:
            await self._publish_now()

    async def _publish_now(self) -> None:
        spread, store = self._spread, self._store
        if spread is None or store is None:
            return
        now: dict[Key, tuple[int, str | None]] = {}
        for (scope, name), versions in self._versions.items():
            for version in versions:
                found = self._runtime.provisioned(place_of(scope), name, version)
                if found is not None and (found.allocated or found.failure):
                    now[scope.key(name, version, spread.me)] = (found.allocated, found.failure)
        writes = [
            Write(Table.PROVISIONED_SHARES, key, {"allocated": n, "failure": failure})
            for key, (n, failure) in now.items()
            if self._published.get(key) != (n, failure)
        ]
        writes += [
            Write(Table.PROVISIONED_SHARES, key, None) for key in self._published if key not in now
        ]
        if writes:
            await store.write(writes)
        self._published = now

    async def close(self) -> None:
        """Stop following the feed and the registry; withdraw what this node published.
        Idempotent."""
        self._closed = True
        for task in [*self._tasks, *([self._follower] if self._follower else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._follower = None
        if self._store is not None and self._published:
            writes = [Write(Table.PROVISIONED_SHARES, key, None) for key in self._published]
            self._published = {}
            try:
                await self._store.write(writes)
            except StoreError as exc:
                log.warning("provisioned shares not withdrawn: %s", exc)

    async def changed(self, scope: Scope, name: str) -> None:
        """A function's configs or targets changed through this node: ``sync``, then, in a
        cluster, wait until the other nodes keep no more than the configs ask for."""
        await self.sync(scope, name)
        spread, store = self._spread, self._store
        if spread is None or store is None:
            return
        deadline = time.monotonic() + SHRINK_WAIT
        while True:
            self._shares_heard.clear()
            try:
                if await self._others_within(spread, store, scope, name):
                    return
            except StoreError as exc:  # the answer stands; the others follow the feed
                log.warning("provisioned shares not read: %s", exc)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info("other nodes still keep provisioned environments of %s", name)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shares_heard.wait(), min(remaining, SHRINK_LOOK))

    async def _others_within(self, spread: Spread, store: Store, scope: Scope, name: str) -> bool:
        """Whether every other live node publishes no more environments of each version of
        ``name`` than the configs now ask for."""
        wanted: Counter[str] = Counter()
        for target in await self._configs.targets(scope, name):
            wanted.update(target.versions)
        others = set(spread.members) - {spread.me}
        kept: Counter[str] = Counter()
        for key, doc in await store.scan(Table.PROVISIONED_SHARES, scope.key(name)):
            if len(key) == 5 and key[4] in others:
                kept[key[3]] += int(doc.get("allocated", 0))
        return all(n <= wanted[version] for version, n in kept.items())

    async def sync(self, scope: Scope, name: str) -> None:
        """Make the runtime's provisioned environments of ``name`` match its configs."""
        key = (scope, name)
        async with self._locks.setdefault(key, asyncio.Lock()):
            try:
                await self._sync(scope, name)
                # In a cluster, at once: an environment this node no longer holds must not
                # stay in its published share, where api nodes route to it, until the
                # follower's next look.
                await self._publish()
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
            if self._spread is not None:
                count = self._spread.share("/".join((*scope.key(name), version)), count)
            await self._runtime.provision(
                place_of(scope), spec_of(config), count, retry=version in retry
            )
        self._versions[(scope, name)] = set(wanted)

    async def describe(self, scope: Scope, target: Target) -> ProvisionedStatus:
        """A config's figures and status from the environments initialised for it (in a
        cluster, on every live node: what the others published, and this node's own)."""
        config = target.config
        name = config.function_name
        others: Counter[str] = Counter()
        reason = None
        spread = self._spread
        if spread is not None and self._store is not None:
            members = set(spread.members) - {spread.me}
            for key, doc in await self._store.scan(Table.PROVISIONED_SHARES, scope.key(name)):
                if len(key) == 5 and key[4] in members and key[3] in target.versions:
                    others[key[3]] += int(doc.get("allocated", 0))
                    reason = reason or doc.get("failure")
        allocated = 0
        for version, count in target.versions.items():
            found = self._runtime.provisioned(place_of(scope), name, version)
            mine = 0
            if found is not None:
                mine = found.allocated
                reason = reason or found.failure
            allocated += min(count, mine + others[version])
        if reason is not None:
            status = "FAILED"
        elif allocated >= config.requested:
            status = "READY"
        else:
            status = "IN_PROGRESS"
        return ProvisionedStatus(config, allocated, allocated, status, reason)
