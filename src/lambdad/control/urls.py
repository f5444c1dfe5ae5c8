"""Function URL configs: Create/Get/Update/Delete/ListFunctionUrlConfig(s), and the url-id index.

A config belongs to ``$LATEST`` or an alias (the model's ``FunctionUrlQualifier`` pattern
refuses versions and ``$LATEST`` itself; the decoder answers those). Each is stored in
``Table.FUNCTION_URLS`` keyed ``(account, region, function, qualifier)``, and its url-id in
``Table.FUNCTION_URL_IDS`` keyed ``(url_id,)``, both in one transaction. Every config is also
held in memory by url-id (loaded by ``start``, kept current by every write here and by the
function change stream: deleting a function or an alias deletes its URL config, as AWS does),
so a URL request finds its function with one dict lookup (``find``).

AWS's messages (the service's own; the decoder answers the model's constraints):

- Create on a function or alias that does not exist, Update on one that does not, and List on
  a missing function: ``ResourceNotFoundException`` "Function does not exist".
- Create where a config exists: ``ResourceConflictException`` "Failed to create function url
  config for [functionArn = <arn>]. Error message:  FunctionUrlConfig exists for this Lambda
  function" (two spaces after "message:", as AWS writes it).
- Get, Delete (and Update) where there is no config: ``ResourceNotFoundException`` "The
  resource you requested does not exist."
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
from typing import Any

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.changes import AliasDeleted, Change, FunctionDeleted
from lambdad.control.functions import Functions
from lambdad.control.model import LATEST
from lambdad.control.paging import page
from lambdad.control.requests import FunctionUrlConfigRequest
from lambdad.control.url_model import (
    AuthType,
    CorsSettings,
    FunctionUrlConfig,
    InvokeMode,
    new_url_id,
    now_stamp,
)
from lambdad.store.base import Store, StoreChange, Table, Write

log = logging.getLogger(__name__)

#: ListFunctionUrlConfigs' largest page (the model's MaxItems maximum).
MAX_LIST_PAGE = 50

NO_FUNCTION = "Function does not exist"
NO_RESOURCE = "The resource you requested does not exist."


class UrlsState(enum.Enum):
    NEW = "new"
    STARTED = "started"
    CLOSED = "closed"


class FunctionUrls:
    """Every function URL config, and the url-id index the URL front door reads."""

    def __init__(self, store: Store, functions: Functions) -> None:
        self._store = store
        self._functions = functions
        self._by_id: dict[str, FunctionUrlConfig] = {}
        self._lock = asyncio.Lock()
        self.state = UrlsState.NEW
        #: Other nodes' writes to URL configs, re-read in the order they came (``_follow``).
        self._stale: asyncio.Queue[StoreChange] = asyncio.Queue()
        self._follower: asyncio.Task[None] | None = None
        functions.changes.subscribe(self._changed)

    async def start(self) -> None:
        """Load every config into the url-id index, and follow other nodes' writes."""
        if self.state is not UrlsState.NEW:
            return
        await self._reload()
        self.state = UrlsState.STARTED
        self._follower = asyncio.create_task(self._follow(), name="function URL index")

    async def _reload(self) -> None:
        rows = await self._store.scan(Table.FUNCTION_URLS)
        configs = [FunctionUrlConfig.from_doc(doc) for _, doc in rows]
        self._by_id = {config.url_id: config for config in configs}

    async def close(self) -> None:
        """Forget the index. Idempotent."""
        self.state = UrlsState.CLOSED
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        self._by_id.clear()

    # ---------------------------------------------------------------- other nodes' writes

    def forget_stored(self, change: StoreChange) -> None:
        """Another node wrote URL configs (``Store.subscribe``): the index reads again what
        ``change`` names. (An index, not a cache: ``find`` never reads the store itself.)"""
        if self.state is not UrlsState.CLOSED and change.table in (None, Table.FUNCTION_URLS):
            self._stale.put_nowait(change)

    async def _follow(self) -> None:
        while True:
            change = await self._stale.get()
            try:
                async with self._lock:
                    await self._reread(change)
            except Exception:  # the next change, or a reconnect's StoreChange(None), repairs it
                log.exception("the function URL index could not read %s again", change)

    async def _reread(self, change: StoreChange) -> None:
        """The config ``change`` names as the store has it now (every config, when the change
        names more than one row). Its url-id row changes in the same transaction."""
        if change.table is None or change.prefix or len(change.key) != 4:
            await self._reload()
            return
        doc = await self._store.get(Table.FUNCTION_URLS, change.key)
        for config in [c for c in self._by_id.values() if _key(c) == change.key]:
            del self._by_id[config.url_id]
        if doc is not None:
            config = FunctionUrlConfig.from_doc(doc)
            self._by_id[config.url_id] = config

    # ---------------------------------------------------------------- the URL front door

    def find(self, url_id: str) -> FunctionUrlConfig | None:
        """The config whose url-id is ``url_id`` (lowercase), or None."""
        return self._by_id.get(url_id)

    # ---------------------------------------------------------------- change stream

    async def _changed(self, change: Change) -> None:
        """A deleted function takes all its URL configs along; a deleted alias its own."""
        if isinstance(change, FunctionDeleted) and change.qualifier is None:
            await self._forget(change.scope, change.name, None)
        elif isinstance(change, AliasDeleted):
            await self._forget(change.scope, change.name, change.alias)

    async def _forget(self, scope: Scope, name: str, qualifier: str | None) -> None:
        async with self._lock:
            gone = [
                c
                for c in self._by_id.values()
                if c.account_id == scope.account_id
                and c.region == scope.region
                and c.function_name == name
                and (qualifier is None or c.qualifier == qualifier)
            ]
            if gone:
                await self._store.write([w for c in gone for w in _removal(c)])
            for config in gone:
                self._by_id.pop(config.url_id, None)

    # ---------------------------------------------------------------- the API

    def _named(self, scope: Scope, raw_name: str, qualifier: str | None) -> tuple[str, str]:
        name, from_arn = self._functions.name_of(scope, raw_name)
        return name, validation.merge_qualifier(from_arn, qualifier) or LATEST

    async def _check_target(self, scope: Scope, name: str, qualifier: str) -> None:
        """The function (and alias) exists: else "Function does not exist"."""
        try:
            await self._functions.record(scope, name)
            if qualifier != LATEST:
                await self._functions.get_alias(scope, name, qualifier)
        except errors.ResourceNotFoundException:
            raise errors.ResourceNotFoundException(NO_FUNCTION) from None

    async def _stored(self, scope: Scope, name: str, qualifier: str) -> FunctionUrlConfig | None:
        key = (scope.account_id, scope.region, name, qualifier)
        doc = await self._store.get(Table.FUNCTION_URLS, key)
        return None if doc is None else FunctionUrlConfig.from_doc(doc)

    async def create(self, scope: Scope, request: FunctionUrlConfigRequest) -> FunctionUrlConfig:
        """A new URL for the function or alias (``AuthType`` is required by the model)."""
        name, qualifier = self._named(scope, request.function_name, request.qualifier)
        async with self._lock:
            await self._check_target(scope, name, qualifier)
            if await self._stored(scope, name, qualifier) is not None:
                arn = scope.function_arn(name, None if qualifier == LATEST else qualifier)
                raise errors.ResourceConflictException(
                    f"Failed to create function url config for [functionArn = {arn}]. "
                    "Error message:  FunctionUrlConfig exists for this Lambda function"
                )
            url_id = new_url_id()
            while url_id in self._by_id:  # 36**32 ids: never in practice
                url_id = new_url_id()
            stamp = now_stamp()
            config = FunctionUrlConfig(
                account_id=scope.account_id,
                region=scope.region,
                function_name=name,
                qualifier=qualifier,
                url_id=url_id,
                auth_type=AuthType(request.auth_type or AuthType.NONE.value),
                invoke_mode=InvokeMode(request.invoke_mode or InvokeMode.BUFFERED.value),
                cors=None if request.cors is None else CorsSettings.of(request.cors),
                creation_time=stamp,
                last_modified_time=stamp,
            )
            await self._store.write(_writes(config, create=True))
            self._by_id[url_id] = config
        return config

    async def get(self, scope: Scope, raw_name: str, qualifier: str | None) -> FunctionUrlConfig:
        name, named = self._named(scope, raw_name, qualifier)
        config = await self._stored(scope, name, named)
        if config is None:
            raise errors.ResourceNotFoundException(NO_RESOURCE)
        return config

    async def update(self, scope: Scope, request: FunctionUrlConfigRequest) -> FunctionUrlConfig:
        """Change the settings the request gives (a given ``Cors`` replaces the whole)."""
        name, qualifier = self._named(scope, request.function_name, request.qualifier)
        async with self._lock:
            await self._check_target(scope, name, qualifier)
            current = await self._stored(scope, name, qualifier)
            if current is None:
                raise errors.ResourceNotFoundException(NO_RESOURCE)
            changes: dict[str, Any] = {"last_modified_time": now_stamp()}
            if request.auth_type is not None:
                changes["auth_type"] = AuthType(request.auth_type)
            if request.invoke_mode is not None:
                changes["invoke_mode"] = InvokeMode(request.invoke_mode)
            if request.cors is not None:
                changes["cors"] = CorsSettings.of(request.cors)
            config = dataclasses.replace(current, **changes)
            await self._store.write(_writes(config, create=False))
            self._by_id[config.url_id] = config
        return config

    async def delete(self, scope: Scope, raw_name: str, qualifier: str | None) -> None:
        name, named = self._named(scope, raw_name, qualifier)
        async with self._lock:
            config = await self._stored(scope, name, named)
            if config is None:
                raise errors.ResourceNotFoundException(NO_RESOURCE)
            await self._store.write(_removal(config))
            self._by_id.pop(config.url_id, None)

    async def list_configs(
        self, scope: Scope, raw_name: str, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionUrlConfig], str | None]:
        """One page of the function's URL configs ($LATEST first, then aliases by name)."""
        name, _ = self._functions.name_of(scope, raw_name)
        try:
            await self._functions.record(scope, name)
        except errors.ResourceNotFoundException:
            raise errors.ResourceNotFoundException(NO_FUNCTION) from None
        rows = await self._store.scan(Table.FUNCTION_URLS, (scope.account_id, scope.region, name))
        configs = sorted(
            (FunctionUrlConfig.from_doc(doc) for _, doc in rows),
            key=lambda c: (c.qualifier != LATEST, c.qualifier),
        )
        return page(configs, marker, max_items, limit=MAX_LIST_PAGE)


def _key(config: FunctionUrlConfig) -> tuple[str, str, str, str]:
    return (config.account_id, config.region, config.function_name, config.qualifier)


def _writes(config: FunctionUrlConfig, *, create: bool) -> list[Write]:
    target = {"key": list(_key(config))}
    return [
        Write(Table.FUNCTION_URLS, _key(config), config.to_doc(), create=create),
        Write(Table.FUNCTION_URL_IDS, (config.url_id,), target, create=create),
    ]


def _removal(config: FunctionUrlConfig) -> list[Write]:
    return [
        Write(Table.FUNCTION_URLS, _key(config), None),
        Write(Table.FUNCTION_URL_IDS, (config.url_id,), None),
    ]
