"""Provisioned concurrency configs: how many environments a version or alias keeps initialised.

A config belongs to a published version or to an alias (never ``$LATEST``), and a version and
an alias pointing at it cannot both have one. The amounts of a function's configs count
against its reservation when it has one (they must fit in it), else against the region's
unreserved pool, which must keep its minimum (see ``concurrency.Reservations``). Configs are
documents in ``Table.PROVISIONED`` keyed ``(region, function, qualifier)``; a config whose
version, alias or function is deleted is deleted with it. Listeners (the invoke layer, which
keeps the environments in step) hear of every change to a function's configs or to the
versions and aliases they name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid
from collections.abc import Awaitable, Callable

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.changes import Change, VersionPublished
from lambdad.control.concurrency import Reservations
from lambdad.control.functions import Functions
from lambdad.control.model import LATEST, Alias, Stored
from lambdad.control.paging import page
from lambdad.control.requests import PutProvisionedConcurrencyConfigRequest
from lambdad.store.base import Store, StoreChange, Table

UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
NOT_A_TARGET = "The function resource provided must be an alias or a published version."
NOT_FOUND = "No Provisioned Concurrency Config found for this function"
OVER_RESERVED = (
    "Requested Provisioned Concurrency should not be greater than the "
    "reservedConcurrentExecution for function"
)
WEIGHTED_ALIAS = "Alias with weights can not be used with Provisioned Concurrency"
VERSION_TAKEN = (
    "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned "
    "version"
)
ALIAS_TAKEN = "Version is pointed by a Provisioned Concurrency alias"
#: The most configs one ListProvisionedConcurrencyConfigs page holds.
MAX_LIST_PAGE = 50

Listener = Callable[[Scope, str], Awaitable[None]]


def _timestamp() -> str:
    """``2019-12-31T20:28:49+0000``, as LastModified of these configs reads."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclasses.dataclass(frozen=True, slots=True)
class ProvisionedConfig(Stored):
    function_name: str
    #: A published version number or an alias name.
    qualifier: str
    requested: int
    last_modified: str = dataclasses.field(default_factory=_timestamp)
    #: New on every Put, so that a Put after a failed init starts it again.
    revision: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What a config keeps initialised now: version -> environments (an alias with weights
    splits its amount between its versions)."""

    config: ProvisionedConfig
    versions: dict[str, int]


def split(requested: int, version: str, weights: dict[str, float]) -> dict[str, int]:
    """``requested`` environments over an alias's versions, by routing weight."""
    shares = {v: round(requested * w) for v, w in weights.items() if v != version}
    main = max(0, requested - sum(shares.values()))
    # An alias moved to $LATEST keeps its config, but nothing unpublished is provisioned.
    return {v: n for v, n in {version: main, **shares}.items() if n > 0 and v != LATEST}


class ProvisionedConfigs:
    """Put, get, delete and list provisioned concurrency configs; what they target now."""

    def __init__(self, store: Store, functions: Functions, reservations: Reservations) -> None:
        self._store = store
        self._functions = functions
        self._reservations = reservations
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        #: Functions whose configs listeners may have acted on (any notified, or found with
        #: configs at a restart): a change to another function with no config is no news.
        self._notified: set[tuple[str, ...]] = set()
        #: ``functions_with_configs`` has read the store once (at start): every function
        #: with a config is in ``_notified`` from then on.
        self._all_known = False
        functions.changes.subscribe(self._function_changed)

    def forget_stored(self, change: StoreChange) -> None:
        """Another node wrote provisioned configs (``Store.subscribe``): the function they
        belong to may have configs now, so its next change is looked at (``_notified``)."""
        if change.table is Table.PROVISIONED and len(change.key) >= 3:
            self._notified.add(change.key[:3])
        elif change.table in (None, Table.PROVISIONED):
            self._all_known = False

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(scope, name)`` after a function's configs or targets changed."""
        self._listeners.append(listener)

    async def _notify(self, scope: Scope, name: str) -> None:
        self._notified.add(scope.key(name))
        self._reservations.forget(scope)
        for listener in self._listeners:
            await listener(scope, name)

    # ---------------------------------------------------------------- lookups

    async def _configs(self, scope: Scope, name: str) -> list[ProvisionedConfig]:
        rows = await self._store.scan(Table.PROVISIONED, scope.key(name))
        return [ProvisionedConfig.from_doc(doc) for _, doc in rows]

    async def _aliases(self, scope: Scope, name: str) -> dict[str, Alias]:
        rows = await self._store.scan(Table.ALIASES, scope.key(name))
        return {key[3]: Alias.from_doc(doc) for key, doc in rows}

    async def _exists(self, scope: Scope, name: str, qualifier: str) -> bool:
        table = Table.VERSIONS if qualifier.isdigit() else Table.ALIASES
        return await self._store.get(table, scope.key(name, qualifier)) is not None

    async def _target_of(
        self, scope: Scope, raw_name: str, qualifier: str | None, unpublished: str
    ) -> tuple[str, str]:
        """(function, qualifier) of a request; the version or alias must exist."""
        name, from_arn = self._functions.name_of(scope, raw_name)
        qualifier = validation.merge_qualifier(from_arn, qualifier)
        if qualifier is None or qualifier == LATEST:
            raise errors.InvalidParameterValueException(unpublished)
        await self._functions.record(scope, name)
        if await self._exists(scope, name, qualifier):
            return name, qualifier
        if qualifier.isdigit():
            raise errors.ResourceNotFoundException(
                f"Function not found: {scope.function_arn(name, qualifier)}"
            )
        raise errors.ResourceNotFoundException(
            f"Cannot find alias arn: {scope.function_arn(name, qualifier)}"
        )

    # ---------------------------------------------------------------- API

    async def put(
        self, scope: Scope, request: PutProvisionedConcurrencyConfigRequest
    ) -> ProvisionedConfig:
        """Ask for the request's number of initialised environments of a version or alias."""
        amount = request.provisioned_concurrent_executions
        name, qualifier = await self._target_of(
            scope, request.function_name, request.qualifier, UNPUBLISHED
        )
        async with self._lock:
            configs = {c.qualifier: c for c in await self._configs(scope, name)}
            aliases = await self._aliases(scope, name)
            self._check_pairing(qualifier, configs, aliases)
            alias = aliases.get(qualifier)
            version = alias.function_version if alias is not None else qualifier
            if (await self._functions.get(scope, name, version)).snap_start_on:
                raise errors.InvalidParameterValueException(validation.SNAP_START_PROVISIONED)
            others = sum(c.requested for q, c in configs.items() if q != qualifier)
            await self._check_room(scope, name, others + amount, amount)
            config = ProvisionedConfig(name, qualifier, amount)
            await self._store.put(Table.PROVISIONED, scope.key(name, qualifier), config.to_doc())
        await self._notify(scope, name)
        return config

    @staticmethod
    def _check_pairing(
        qualifier: str, configs: dict[str, ProvisionedConfig], aliases: dict[str, Alias]
    ) -> None:
        alias = aliases.get(qualifier)
        if alias is not None:
            if alias.weights:
                raise errors.InvalidParameterValueException(WEIGHTED_ALIAS)
            if alias.function_version == LATEST:
                raise errors.InvalidParameterValueException(UNPUBLISHED)
            if alias.function_version in configs:
                raise errors.ResourceConflictException(VERSION_TAKEN)
            return
        if any(a.function_version == qualifier and n in configs for n, a in aliases.items()):
            raise errors.ResourceConflictException(ALIAS_TAKEN)

    async def _check_room(self, scope: Scope, name: str, total: int, amount: int) -> None:
        """The function's configs must fit its reservation, or leave the unreserved minimum."""
        reserved, _ = await self._reservations.of(scope, name)
        if reserved is not None:
            if total > reserved:
                raise errors.InvalidParameterValueException(OVER_RESERVED)
            return
        unreserved = await self._reservations.unreserved(scope, excluding=name)
        minimum = self._reservations.minimum_unreserved
        if unreserved - total < minimum:
            raise errors.InvalidParameterValueException(
                "Specified ConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{minimum}]."
            )

    async def get(self, scope: Scope, raw_name: str, qualifier: str | None) -> ProvisionedConfig:
        name, qualifier = await self._target_of(scope, raw_name, qualifier, NOT_A_TARGET)
        doc = await self._store.get(Table.PROVISIONED, scope.key(name, qualifier))
        if doc is None:
            raise errors.ProvisionedConcurrencyConfigNotFoundException(NOT_FOUND)
        return ProvisionedConfig.from_doc(doc)

    async def delete(self, scope: Scope, raw_name: str, qualifier: str | None) -> None:
        """Remove the config (a missing one is no error, as on AWS)."""
        name, qualifier = await self._target_of(scope, raw_name, qualifier, NOT_A_TARGET)
        async with self._lock:
            await self._store.delete(Table.PROVISIONED, scope.key(name, qualifier))
        await self._notify(scope, name)

    async def list_configs(
        self, scope: Scope, raw_name: str, marker: str | None, max_items: int | None
    ) -> tuple[list[ProvisionedConfig], str | None]:
        name, _ = self._functions.name_of(scope, raw_name)
        await self._functions.record(scope, name)
        return page(await self._configs(scope, name), marker, max_items, limit=50)

    # ---------------------------------------------------------------- targets

    async def targets(self, scope: Scope, name: str) -> list[Target]:
        """Every config of the function and the versions it keeps initialised now."""
        aliases = await self._aliases(scope, name)
        found = []
        for config in await self._configs(scope, name):
            alias = aliases.get(config.qualifier)
            if alias is None:
                versions = {config.qualifier: config.requested}
            else:
                versions = split(config.requested, alias.function_version, alias.weights)
            found.append(Target(config, versions))
        return found

    async def functions_with_configs(self) -> list[tuple[Scope, str]]:
        """(scope, function) of every function that has a config, for a restart."""
        rows = await self._store.scan(Table.PROVISIONED)
        found = sorted({key[:3] for key, _ in rows})
        self._notified.update(found)
        self._all_known = True
        return [(Scope(a, r), n) for a, r, n in found]

    async def _function_changed(self, change: Change) -> None:
        """Configs of deleted versions, aliases or functions go with them; listeners hear of
        every change, since an alias may have moved (and DeleteFunction removes a function's
        configs in its own store write, so an empty list may be news too; a publish is heard
        as its write)."""
        if isinstance(change, VersionPublished):
            return
        scope, name = change.scope, change.name
        if not self._all_known:
            # Another node's writes may be missed (its feed reconnected): know them again
            # once, so the shortcut below holds from here on.
            await self.functions_with_configs()
        if scope.key(name) not in self._notified:
            # A function with a config has been notified (its put did) or was found at the
            # restart: this one has none, so nothing to remove, nothing to tell, no cache to
            # drop, and no store to read (most functions; every create and its settling).
            return
        configs = await self._configs(scope, name)
        async with self._lock:
            for config in configs:
                if not await self._exists(scope, name, config.qualifier):
                    await self._store.delete(Table.PROVISIONED, scope.key(name, config.qualifier))
        await self._notify(scope, name)
