"""How a function's asynchronous invocations are handled: retries, event age, destinations,
and what happens to a recursive loop.

``EventInvokeConfigs`` holds the per-qualifier ``FunctionEventInvokeConfig`` documents
(Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s)), in ``Table.EVENT_INVOKE_CONFIGS``
keyed ``(account, region, function, qualifier)``, and the per-function recursion setting
(Get/PutFunctionRecursionConfig) in ``Table.RECURSION`` keyed ``(account, region, function)``.
Both go when the function (or the version or alias a config belongs to) is deleted.

The invoke path asks ``policy`` (the dispatcher, per event) and ``recursion`` (per invocation
that carries a long chain): both answer from a per-function cache, filled from the store once
and kept current by every write here and every delete of a function, version or alias.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.changes import AliasDeleted, Change, FunctionDeleted
from lambdad.control.event_config_model import EventInvokeConfig, function_of, settings_of
from lambdad.control.functions import Functions
from lambdad.control.model import LATEST
from lambdad.control.paging import page
from lambdad.control.requests import PutFunctionEventInvokeConfigRequest
from lambdad.store.base import Store, StoreChange, Table

#: Lambda's defaults for asynchronous invocation.
DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 21600
#: ListFunctionEventInvokeConfigs' largest page (the model's MaxItems maximum).
MAX_LIST_PAGE = 50


class RecursiveLoop(enum.StrEnum):
    TERMINATE = "Terminate"
    ALLOW = "Allow"


@dataclasses.dataclass(frozen=True, slots=True)
class AsyncPolicy:
    """The effective event invoke config of one qualifier (the defaults where none is set)."""

    max_retry_attempts: int = DEFAULT_RETRIES
    max_event_age: int = DEFAULT_MAX_AGE
    #: Destination ARNs (lambda function, SQS queue, SNS topic, EventBridge bus) or None.
    on_success: str | None = None
    on_failure: str | None = None


def policy_of(config: EventInvokeConfig | None) -> AsyncPolicy:
    if config is None:
        return AsyncPolicy()
    return AsyncPolicy(
        max_retry_attempts=(
            DEFAULT_RETRIES if config.max_retry_attempts is None else config.max_retry_attempts
        ),
        max_event_age=DEFAULT_MAX_AGE if config.max_event_age is None else config.max_event_age,
        on_success=config.on_success,
        on_failure=config.on_failure,
    )


def _qualifier_order(qualifier: str) -> tuple[int, int, str]:
    if qualifier == LATEST:
        return (0, 0, "")
    return (1, int(qualifier), "") if qualifier.isdigit() else (2, 0, qualifier)


class EventInvokeConfigs:
    """Event invoke configs and recursion settings of every function."""

    def __init__(self, store: Store, functions: Functions) -> None:
        self._store = store
        self._functions = functions
        #: ``(account, region, function)`` -> qualifier -> config, for functions the invoke
        #: path asked of.
        self._configs: dict[tuple[str, ...], dict[str, EventInvokeConfig]] = {}
        self._recursion: dict[tuple[str, ...], RecursiveLoop] = {}
        self._lock = asyncio.Lock()
        functions.changes.subscribe(self._changed)

    # ---------------------------------------------------------------- invoke path

    async def policy(self, scope: Scope, function_name: str, qualifier: str | None) -> AsyncPolicy:
        """The policy for events sent to ``function_name`` at ``qualifier`` (None: $LATEST)."""
        configs = self._configs.get(scope.key(function_name))
        if configs is None:
            configs = await self._load(scope, function_name)
        return policy_of(configs.get(qualifier or LATEST))

    async def recursion(self, scope: Scope, function_name: str) -> RecursiveLoop:
        """The function's recursive loop setting (``Terminate`` unless set to ``Allow``)."""
        key = scope.key(function_name)
        setting = self._recursion.get(key)
        if setting is None:
            async with self._lock:
                doc = await self._store.get(Table.RECURSION, key)
                setting = RecursiveLoop(doc["recursive_loop"]) if doc else RecursiveLoop.TERMINATE
                self._recursion.setdefault(key, setting)
        return setting

    def forget_stored(self, change: StoreChange) -> None:
        """Drop the configs another node's write (``Store.subscribe``) may have made stale."""
        if change.table not in (None, Table.EVENT_INVOKE_CONFIGS, Table.RECURSION):
            return
        if change.table is not None and len(change.key) >= 3:
            self._configs.pop(change.key[:3], None)
            self._recursion.pop(change.key[:3], None)
            return
        self._configs.clear()
        self._recursion.clear()

    async def _load(self, scope: Scope, name: str) -> dict[str, EventInvokeConfig]:
        async with self._lock:
            cached = self._configs.get(scope.key(name))
            if cached is None:
                rows = await self._store.scan(Table.EVENT_INVOKE_CONFIGS, scope.key(name))
                cached = {key[3]: EventInvokeConfig.from_doc(doc) for key, doc in rows}
                self._configs[scope.key(name)] = cached
            return cached

    async def _changed(self, change: Change) -> None:
        """What hangs on a deleted function, version or alias goes with it."""
        if isinstance(change, FunctionDeleted):
            await self._deleted(change.scope, change.name, change.qualifier)
        elif isinstance(change, AliasDeleted):
            await self._deleted(change.scope, change.name, change.alias)

    async def _deleted(self, scope: Scope, name: str, qualifier: str | None) -> None:
        async with self._lock:
            if qualifier is None:
                await self._store.delete_prefix(Table.EVENT_INVOKE_CONFIGS, scope.key(name))
                await self._store.delete(Table.RECURSION, scope.key(name))
                self._configs.pop(scope.key(name), None)
                self._recursion.pop(scope.key(name), None)
                return
            await self._store.delete(Table.EVENT_INVOKE_CONFIGS, scope.key(name, qualifier))
            self._configs.get(scope.key(name), {}).pop(qualifier, None)

    # ---------------------------------------------------------------- event invoke configs

    async def _existing(
        self, scope: Scope, raw_name: str, qualifier: str | None
    ) -> tuple[str, str]:
        """(name, qualifier) of a function, version or alias that exists."""
        name, _ = self._functions.name_of(scope, raw_name)
        try:
            _, named = await self._functions.lookup(scope, raw_name, qualifier)
        except errors.ResourceNotFoundException:
            raise errors.ResourceNotFoundException("The function doesn't exist.") from None
        return name, named or LATEST

    def _named(self, scope: Scope, raw_name: str, qualifier: str | None) -> tuple[str, str]:
        name, from_arn = self._functions.name_of(scope, raw_name)
        return name, validation.merge_qualifier(from_arn, qualifier) or LATEST

    async def _write(self, scope: Scope, name: str, config: EventInvokeConfig) -> None:
        """Store ``config``; the caller holds the lock."""
        key = scope.key(name, config.qualifier)
        await self._store.put(Table.EVENT_INVOKE_CONFIGS, key, config.to_doc())
        cached = self._configs.get(scope.key(name))
        if cached is not None:
            cached[config.qualifier] = config

    async def _check_destinations(
        self, scope: Scope, name: str, changes: Mapping[str, Any]
    ) -> None:
        """A function destination must be another function of this account and region."""
        for target in (changes.get("on_success"), changes.get("on_failure")):
            named = function_of(target) if target else None
            if named is None:
                continue
            if named == (scope.region, scope.account_id, name):
                raise errors.InvalidParameterValueException(
                    "You can't specify the function as a destination for itself."
                )
            if named[:2] != (scope.region, scope.account_id) or not await self._exists(
                scope, named[2]
            ):
                raise errors.InvalidParameterValueException(
                    f"The destination ARN {target} is invalid."
                )

    async def _exists(self, scope: Scope, name: str) -> bool:
        try:
            await self._functions.record(scope, name)
        except errors.ResourceNotFoundException:
            return False
        return True

    async def put(
        self, scope: Scope, request: PutFunctionEventInvokeConfigRequest
    ) -> EventInvokeConfig:
        """Replace the qualifier's config with the settings of ``request``."""
        changes = settings_of(request)
        async with self._lock:
            name, named = await self._existing(scope, request.function_name, request.qualifier)
            await self._check_destinations(scope, name, changes)
            config = EventInvokeConfig(name, named).merged(changes)
            await self._write(scope, name, config)
        return config

    async def update(
        self, scope: Scope, request: PutFunctionEventInvokeConfigRequest
    ) -> EventInvokeConfig:
        """Change the settings ``request`` names in the qualifier's existing config."""
        changes = settings_of(request)
        async with self._lock:
            name, named = await self._existing(scope, request.function_name, request.qualifier)
            await self._check_destinations(scope, name, changes)
            config = (await self._get(scope, name, named)).merged(changes)
            await self._write(scope, name, config)
        return config

    async def _get(self, scope: Scope, name: str, qualifier: str) -> EventInvokeConfig:
        doc = await self._store.get(Table.EVENT_INVOKE_CONFIGS, scope.key(name, qualifier))
        if doc is None:
            raise errors.ResourceNotFoundException(
                f"The function {scope.function_arn(name, qualifier)} doesn't have an "
                "EventInvokeConfig"
            )
        return EventInvokeConfig.from_doc(doc)

    async def get(self, scope: Scope, raw_name: str, qualifier: str | None) -> EventInvokeConfig:
        return await self._get(scope, *self._named(scope, raw_name, qualifier))

    async def delete(self, scope: Scope, raw_name: str, qualifier: str | None) -> None:
        name, named = self._named(scope, raw_name, qualifier)
        async with self._lock:
            await self._get(scope, name, named)
            await self._store.delete(Table.EVENT_INVOKE_CONFIGS, scope.key(name, named))
            self._configs.get(scope.key(name), {}).pop(named, None)

    async def list_configs(
        self, scope: Scope, raw_name: str, marker: str | None, max_items: int | None
    ) -> tuple[list[EventInvokeConfig], str | None]:
        """One page of the function's configs, and the next marker."""
        name, _ = await self._existing(scope, raw_name, None)
        rows = await self._store.scan(Table.EVENT_INVOKE_CONFIGS, scope.key(name))
        configs = sorted(
            (EventInvokeConfig.from_doc(doc) for _, doc in rows),
            key=lambda c: _qualifier_order(c.qualifier),
        )
        return page(configs, marker, max_items, limit=MAX_LIST_PAGE)

    # ---------------------------------------------------------------- recursion config

    async def _function(self, scope: Scope, raw_name: str) -> str:
        """The function ``raw_name`` names (the model's pattern admits no qualifier here)."""
        name, _ = self._functions.name_of(scope, raw_name)
        await self._functions.record(scope, name)
        return name

    async def get_recursion(self, scope: Scope, raw_name: str) -> RecursiveLoop:
        return await self.recursion(scope, await self._function(scope, raw_name))

    async def put_recursion(self, scope: Scope, raw_name: str, value: str) -> RecursiveLoop:
        """Set the function's recursive loop setting (``value``: a model enum, already checked)."""
        setting = RecursiveLoop(value)
        async with self._lock:
            name = await self._function(scope, raw_name)
            await self._store.put(
                Table.RECURSION, scope.key(name), {"recursive_loop": setting.value}
            )
            self._recursion[scope.key(name)] = setting
        return setting
