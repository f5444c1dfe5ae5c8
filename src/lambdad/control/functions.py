"""Functions, versions and aliases: the rules of Lambda's control plane.

``Functions`` takes typed requests (:mod:`lambdad.control.requests`, decoded and checked
against botocore's model by ``lambdad.api``), applies the service's own rules,
keeps the metadata in the ``Store`` and the code in the ``BlobStore``, and answers the invoke
path's "which configuration runs for this name and qualifier" from a cache it keeps in step
with its own writes. A function's ``Layers`` are resolved through ``Layers`` when written, and
the code with every layer must stay under 250 MB unzipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import uuid
from collections.abc import Mapping
from typing import Any

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.changes import (
    AliasDeleted,
    Change,
    ChangeStream,
    FunctionChanged,
    FunctionDeleted,
    VersionPublished,
)
from lambdad.control.layers import Layers
from lambdad.control.model import (
    CREATING,
    LATEST,
    LATEST_PUBLISHED,
    Alias,
    FunctionConfig,
    FunctionLayer,
    FunctionRecord,
    LoggingConfig,
    State,
    UpdateRuntimeOn,
    UpdateStatus,
    new_revision,
    now_timestamp,
)
from lambdad.control.paging import DEFAULT_PAGE, marker_at, offset_of, page
from lambdad.control.requests import (
    AliasRoutingConfiguration,
    CreateAliasRequest,
    CreateFunctionRequest,
    DurableConfig,
    FunctionSettings,
    PutRuntimeManagementConfigRequest,
    UpdateAliasRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionConfigurationRequest,
)
from lambdad.store import zipcode
from lambdad.store.base import BlobStore, Store, StoreChange, StoreConflict, Table, Write

#: PublishTo's one value: publish to ``$LATEST.PUBLISHED`` instead of a new number.
PUBLISH_TO_LATEST_PUBLISHED = "LATEST_PUBLISHED"
#: The tables whose rows belong to one function, keyed ``(account, region, function, ...)``: what
#: DeleteFunction removes in one store write.
_FUNCTION_TABLES = (
    Table.VERSIONS,
    Table.ALIASES,
    Table.EVENT_INVOKE_CONFIGS,
    Table.PROVISIONED,
    Table.FUNCTION_POLICIES,
    Table.DURABLE_EXECUTIONS,
    Table.DURABLE_OPERATIONS,
    Table.DURABLE_EVENTS,
)
#: The tables that keep one row per function, keyed ``(account, region, function)``.
_FUNCTION_ROWS = (Table.FUNCTIONS, Table.CONCURRENCY, Table.RECURSION)
_log = logging.getLogger(__name__)

#: Fields compared to decide whether PublishVersion has anything new to publish.
_IDENTITY_EXCLUDED = {
    "version",
    "revision_id",
    "last_modified",
    "state",
    "last_update_status",
    "code_unzipped_size",
    "state_reason",
    "state_reason_code",
    "last_update_status_reason",
    "last_update_status_reason_code",
    "content_id",
    "runtime_update_on",
    "runtime_version_arn",
}


def _settled(config: FunctionConfig) -> FunctionConfig:
    """``config`` once its create or update has finished: ``Active`` and ``Successful``, with
    a new RevisionId (as on AWS, whose revision changes when the update completes)."""
    return config.evolve(
        state=State.ACTIVE if config.state is State.PENDING else config.state,
        state_reason=None,
        state_reason_code=None,
        last_update_status=UpdateStatus.SUCCESSFUL,
        last_update_status_reason=None,
        last_update_status_reason_code=None,
        revision_id=new_revision(),
    )


def _creating(config: FunctionConfig) -> FunctionConfig:
    """``config`` as CreateFunction answers it: ``Pending``, being created."""
    code, reason = CREATING
    return config.evolve(
        state=State.PENDING,
        state_reason_code=code,
        state_reason=reason,
        last_update_status=UpdateStatus.IN_PROGRESS,
        last_update_status_reason=None,
        last_update_status_reason_code=None,
    )


def _updating(config: FunctionConfig) -> FunctionConfig:
    """``config`` as an update answers it: ``InProgress`` (the reason AWS gives is the one of
    a create), with a new RevisionId and a new content."""
    code, reason = CREATING
    return config.evolve(
        last_modified=now_timestamp(),
        revision_id=new_revision(),
        content_id=str(uuid.uuid4()),
        last_update_status=UpdateStatus.IN_PROGRESS,
        last_update_status_reason_code=code,
        last_update_status_reason=reason,
    )


def _same_content(a: FunctionConfig, b: FunctionConfig) -> bool:
    if a.content_id and b.content_id:
        return a.content_id == b.content_id
    da, db = a.to_doc(), b.to_doc()
    return all(da[k] == db[k] for k in da if k not in _IDENTITY_EXCLUDED)


def _check_total_size(config: FunctionConfig) -> None:
    """The code and its layers, unzipped, within the 250 MB a function may have."""
    if not config.layers:
        return
    total = config.code_unzipped_size + sum(layer.unzipped_size for layer in config.layers)
    if total > zipcode.MAX_UNZIPPED_BYTES:
        raise errors.InvalidParameterValueException(
            "Function code combined with layers exceeds the maximum allowed size of "
            f"{zipcode.MAX_UNZIPPED_BYTES} bytes. The actual size is {total} bytes."
        )


class Functions:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        layers: Layers | None = None,
        *,
        settle_delay: float = 0.0,
    ) -> None:
        self._store = store
        self._blobs = blobs
        #: The layer service whose versions ``Layers`` name (shared with the API).
        self.layers = layers or Layers(store, blobs)
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._cache: dict[tuple[str, ...], FunctionConfig | Alias] = {}
        #: Bumped by every write to a function, so that a resolve that read the store before
        #: the write does not put what it read back into the cache.
        self._generation: dict[tuple[str, ...], int] = {}
        #: How long a create stays ``Pending`` and an update ``InProgress`` (0: they finish
        #: right after the answer). See docs/function-states.md.
        self._settle_delay = settle_delay
        #: (account, region, function) -> the task finishing its create or update, and when it will.
        self._transitions: dict[tuple[str, ...], tuple[asyncio.Task[None], float]] = {}
        #: Every committed write, as typed events (``changes.py``); the cache above follows
        #: it first, so that a stream fed by other nodes keeps it fresh too.
        self.changes = ChangeStream()
        self.changes.subscribe(self._forget)

    async def _forget(self, change: Change) -> None:
        """Drop what the cache holds of a function that changed."""
        self._forget_function(change.scope, change.name)

    def forget_stored(self, change: StoreChange) -> None:
        """Drop what another node's write (``Store.subscribe``) may have made stale: the
        function whose row changed, or every function when the change is not that precise."""
        if change.table not in (None, Table.FUNCTIONS, Table.VERSIONS, Table.ALIASES):
            return
        if change.table is not None and len(change.key) >= 3:
            self._forget_function(Scope(change.key[0], change.key[1]), change.key[2])
            return
        for account, region, name in {k[:3] for k in (*self._cache, *self._generation)}:
            self._forget_function(Scope(account, region), name)

    def _forget_function(self, scope: Scope, name: str) -> None:
        """Drop the function from the cache and bump its generation, so that a resolve that
        read the store before a write does not put what it read back into the cache."""
        generation = scope.key(name)
        self._generation[generation] = self._generation.get(generation, 0) + 1
        for key in [k for k in self._cache if k[:3] == generation]:
            del self._cache[key]

    async def _published(self, scope: Scope, config: FunctionConfig) -> None:
        if config.version != LATEST:
            await self.changes.publish(VersionPublished(scope, config.name, config))

    async def versions_of(self, scope: Scope, name: str) -> set[str]:
        """The versions a function has now (none once it is deleted)."""
        return {key[3] for key, _ in await self._store.scan(Table.VERSIONS, scope.key(name))}

    async def pending_snapshots(self) -> list[tuple[Scope, FunctionConfig]]:
        """(scope, version) of every SnapStart version still ``Pending``: a lambdad stopped
        while making their snapshots; they are made again at start."""
        rows = await self._store.scan(Table.VERSIONS)
        configs = [(Scope(key[0], key[1]), FunctionConfig.from_doc(doc)) for key, doc in rows]
        return [(r, c) for r, c in configs if c.snap_start_on and c.state is State.PENDING]

    async def set_version_state(
        self,
        scope: Scope,
        name: str,
        version: str,
        state: State,
        reason: tuple[str, str] | None = None,
    ) -> None:
        """A published version's state (a SnapStart snapshot made, or failed); a version
        deleted meanwhile stays deleted."""
        async with self._lock(scope, name):
            doc = await self._store.get(Table.VERSIONS, scope.key(name, version))
            if doc is None:
                return
            config = FunctionConfig.from_doc(doc).evolve(
                state=state,
                state_reason_code=reason[0] if reason else None,
                state_reason=reason[1] if reason else None,
                last_update_status=(
                    UpdateStatus.FAILED if state is State.FAILED else UpdateStatus.SUCCESSFUL
                ),
            )
            await self._store.put(Table.VERSIONS, scope.key(name, version), config.to_doc())
        await self._changed(scope, name)

    # ---------------------------------------------------------------- helpers

    def _lock(self, scope: Scope, name: str) -> asyncio.Lock:
        return self._locks.setdefault(scope.key(name), asyncio.Lock())

    # ---------------------------------------------------------------- states

    def _settle_later(self, scope: Scope, name: str) -> None:
        """Finish the function's create or update just answered once ``settle_delay`` has
        passed (by default right after the answer)."""
        key = scope.key(name)
        running = self._transitions.get(key)
        if running is not None and not running[0].done():
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            self._settle(scope, name), name=f"settle-{scope.account_id}-{scope.region}-{name}"
        )
        self._transitions[key] = (task, loop.time() + self._settle_delay)

        def forget(done: asyncio.Task[None]) -> None:
            if self._transitions.get(key, (None, 0.0))[0] is done:
                del self._transitions[key]

        task.add_done_callback(forget)

    async def _settle(self, scope: Scope, name: str) -> None:
        try:
            if self._settle_delay:
                await asyncio.sleep(self._settle_delay)
            await self._settle_unlocked(scope, name)
        except Exception:  # a failed transition is retried by the next read or write
            _log.exception("finishing the update of %s failed", name)

    async def _settle_locked(self, scope: Scope, name: str) -> list[Write]:
        """Finish every create or update of the function now (its lock held); the writes made
        (none: nothing was under way)."""
        rows = await self._store.scan(Table.VERSIONS, scope.key(name))
        writes = [
            Write(Table.VERSIONS, key, _settled(config).to_doc())
            for key, config in ((key, FunctionConfig.from_doc(doc)) for key, doc in rows)
            if config.settling
        ]
        if writes:
            await self._store.write(writes)
        return writes

    async def _settle_unlocked(self, scope: Scope, name: str) -> None:
        """Finish every create or update of the function now (taking its lock).

        The settled versions are left in the cache when nothing else changed the function
        meanwhile: the invoke that usually follows a create at once (and waits for this, see
        ``resolve``) then reads no store.
        """
        generation = scope.key(name)
        async with self._lock(scope, name):
            writes = await self._settle_locked(scope, name)
            before = self._generation.get(generation, 0)
        if not writes:
            return
        await self._changed(scope, name)
        self._keep(scope, name, [w.doc for w in writes if w.doc is not None], before)

    def _keep(self, scope: Scope, name: str, docs: list[dict[str, Any]], before: int) -> None:
        """Cache the versions just written (``docs``) when the function's generation was
        ``before`` at the write and only that write's own change was heard since."""
        if self._generation.get(scope.key(name), 0) != before + 1:
            return
        for doc in docs:
            config = FunctionConfig.from_doc(json.loads(json.dumps(doc)))  # as a read returns it
            self._cache[scope.key(name, config.version)] = config

    async def _settle_now(self, scope: Scope, name: str, config: FunctionConfig) -> bool:
        """For a read or invoke that came first: finish the create or update ``config`` is in
        when its time has come (True), so that the caller reads again."""
        if not (config.settling and self._due(scope, name)):
            return False
        await self._settle_unlocked(scope, name)
        return True

    def _due(self, scope: Scope, name: str) -> bool:
        """Whether the function's create or update may finish now: its transition's time has
        come, or none is under way (one interrupted by a restart)."""
        running = self._transitions.get(scope.key(name))
        return running is None or running[1] <= asyncio.get_running_loop().time()

    async def _ready_for_update(self, scope: Scope, name: str) -> FunctionConfig:
        """``$LATEST`` for a write (lock held): a create or update still under way is finished
        first when its time has come, else the write is refused as AWS refuses it."""
        current = await self._version(scope, name, LATEST)
        if not current.settling:
            return current
        if not self._due(scope, name):
            arn = scope.function_arn(name)
            if current.state is State.PENDING:
                raise errors.ResourceConflictException(
                    f"The operation cannot be performed at this time. The resource {arn} is "
                    f"currently in the following state: 'Pending'. StateReasonCode: "
                    f"'{current.state_reason_code}'"
                )
            raise errors.ResourceConflictException(
                "The operation cannot be performed at this time. An update is in progress for "
                f"resource: {arn}"
            )
        if await self._settle_locked(scope, name):
            self._forget_function(scope, name)
        return await self._version(scope, name, LATEST)

    async def _changed(self, scope: Scope, name: str) -> None:
        await self.changes.publish(FunctionChanged(scope, name))

    def _not_found(
        self, scope: Scope, name: str, qualifier: str | None = None
    ) -> errors.LambdaError:
        return errors.ResourceNotFoundException(
            f"Function not found: {scope.function_arn(name, qualifier)}"
        )

    async def _record(self, scope: Scope, name: str) -> FunctionRecord:
        doc = await self._store.get(Table.FUNCTIONS, scope.key(name))
        if doc is None:
            raise self._not_found(scope, name)
        return FunctionRecord.from_doc(doc)

    async def _version(self, scope: Scope, name: str, version: str) -> FunctionConfig:
        doc = await self._store.get(Table.VERSIONS, scope.key(name, version))
        if doc is None:
            raise self._not_found(scope, name, None if version == LATEST else version)
        return FunctionConfig.from_doc(doc)

    async def _alias(self, scope: Scope, name: str, alias: str) -> Alias:
        doc = await self._store.get(Table.ALIASES, scope.key(name, alias))
        if doc is None:
            raise errors.ResourceNotFoundException(
                f"Cannot find alias arn: {scope.function_arn(name, alias)}"
            )
        return Alias.from_doc(doc)

    def name_of(self, scope: Scope, raw: str) -> tuple[str, str | None]:
        """Split a name, partial ARN or ARN into (name, qualifier).

        The request was checked against its operation's own name pattern when decoded, so the
        loosest form (dots, ``$LATEST.PUBLISHED``) is accepted here: a name no function has is
        then "not found", as on AWS."""
        return validation.parse_function_name(
            raw, account_id=scope.account_id, region=scope.region, principal_arn=scope.caller_arn
        )

    # ---------------------------------------------------------------- functions

    async def create(self, scope: Scope, request: CreateFunctionRequest) -> FunctionConfig:
        name, qualifier = self.name_of(scope, request.function_name)
        validation.validate_function_name_for_create(name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot create a function with a qualifier"
            )
        package_type = request.package_type or "Zip"
        if package_type != "Zip":
            raise errors.InvalidParameterValueException(
                "lambdad runs zip packages only; PackageType Image is not supported."
            )
        code = request.code
        data = code.zip_file
        if data is None:
            raise errors.InvalidParameterValueException(
                "Please provide a source for function code."
                if code.s3_bucket is None and code.s3_key is None and code.image_uri is None
                else "lambdad accepts code as Code.ZipFile; S3 locations are not supported."
            )
        info = await asyncio.to_thread(zipcode.inspect_zip, data)
        config = self._apply_config(
            FunctionConfig(
                name=name,
                version=LATEST,
                runtime=None,
                role="",
                handler=None,
                code_key=info.sha256_hex,
                code_sha256=info.sha256_b64,
                code_size=info.size,
                code_unzipped_size=info.unzipped_size,
                content_id=str(uuid.uuid4()),
            ),
            request,
            creating=True,
            layers=await self._layers_of(scope, request.layers),
        )
        if request.tenancy_config is not None:
            config = config.evolve(
                tenant_isolation_mode=request.tenancy_config.tenant_isolation_mode
            )
        config = _creating(config)
        _check_total_size(config)
        tags = dict(request.tags or {})
        validation.validate_tags(tags)
        publish_to = _publish_to(request)
        # With no settle delay and nothing published, the create is stored already finished
        # (``Active``): the answer still says ``Pending``, as AWS's does, but no second write
        # follows it for the invoke that usually comes next to wait for.
        settled = None if self._settle_delay or request.publish or publish_to else _settled(config)
        stored = config if settled is None else settled
        generation = scope.key(name)
        async with self._lock(scope, name):
            await self._blobs.put(data)
            record = FunctionRecord(name=name, tags=tags)
            try:
                await self._store.write(
                    [
                        Write(Table.FUNCTIONS, scope.key(name), record.to_doc(), create=True),
                        Write(Table.VERSIONS, scope.key(name, LATEST), stored.to_doc()),
                    ]
                )
            except StoreConflict as exc:
                raise errors.ResourceConflictException(f"Function already exist: {name}") from exc
            if request.publish or publish_to:
                config = await self._publish_locked(
                    scope, name, None, None, None, to_latest_published=publish_to
                )
            before = self._generation.get(generation, 0)
        if settled is None:
            self._settle_later(scope, name)
        await self._changed(scope, name)
        if settled is not None:
            self._keep(scope, name, [stored.to_doc()], before)
        await self._published(scope, config)
        return config

    async def _layers_of(
        self, scope: Scope, arns: list[str] | None
    ) -> tuple[FunctionLayer, ...] | None:
        """The layer versions ``arns`` (a request's ``Layers``) name; None when not given."""
        if arns is None:
            return None
        return await self.layers.for_function(scope, arns)

    async def _code_unzipped_size(self, config: FunctionConfig) -> FunctionConfig:
        """``config`` with its code's unzipped size, read from the blob if never recorded."""
        if config.code_unzipped_size:
            return config
        data = await self._blobs.get(config.code_key)
        info = await asyncio.to_thread(zipcode.inspect_zip, data)
        return config.evolve(code_unzipped_size=info.unzipped_size)

    def _apply_config(
        self,
        base: FunctionConfig,
        request: FunctionSettings,
        *,
        creating: bool,
        layers: tuple[FunctionLayer, ...] | None = None,
    ) -> FunctionConfig:
        """Apply the service's rules to the configuration members of ``request`` and lay them
        over ``base``; ``layers`` are the already resolved ``Layers`` (None: leave them)."""
        changes: dict[str, Any] = {}
        if request.role is not None:
            changes["role"] = request.role
        if request.runtime is not None or creating:
            validation.validate_runtime(request.runtime, base.package_type)
            changes["runtime"] = request.runtime
        runtime = changes.get("runtime", base.runtime)
        if request.handler is not None or creating:
            validation.validate_handler(request.handler, runtime)
            changes["handler"] = request.handler
        if request.description is not None:
            changes["description"] = request.description
        if request.memory_size is not None:
            validation.validate_memory_size(request.memory_size)
            changes["memory_size"] = request.memory_size
        if request.timeout is not None:
            validation.validate_timeout(request.timeout)
            changes["timeout"] = request.timeout
        if request.ephemeral_storage is not None:
            validation.validate_ephemeral_storage(request.ephemeral_storage.size)
            changes["ephemeral_storage"] = request.ephemeral_storage.size
        if request.environment is not None and request.environment.variables is not None:
            variables = dict(request.environment.variables)
            validation.validate_environment(variables)
            changes["environment"] = variables
            changes["environment_set"] = True
        if isinstance(request, CreateFunctionRequest) and request.architectures is not None:
            changes["architectures"] = tuple(request.architectures)
        logging = request.logging_config
        if logging is not None:
            log_format = logging.log_format or "Text"
            validation.validate_log_levels(
                log_format, logging.application_log_level, logging.system_log_level
            )
            log_format = logging.log_format or base.logging.log_format
            changes["logging"] = LoggingConfig(
                log_format=log_format,
                application_log_level=logging.application_log_level
                or (base.logging.application_log_level if log_format == "JSON" else None)
                or ("INFO" if log_format == "JSON" else None),
                system_log_level=logging.system_log_level
                or (base.logging.system_log_level if log_format == "JSON" else None)
                or ("INFO" if log_format == "JSON" else None),
                log_group=logging.log_group or base.logging.log_group,
            )
        if request.tracing_config is not None and request.tracing_config.mode:
            changes["tracing_mode"] = request.tracing_config.mode
        if request.dead_letter_config is not None:
            changes["dead_letter_target"] = request.dead_letter_config.target_arn or None
        if request.kms_key_arn is not None:
            changes["kms_key_arn"] = request.kms_key_arn or None
        if request.snap_start is not None and request.snap_start.apply_on:
            changes["snap_start"] = request.snap_start.apply_on
        apply_on = changes.get("snap_start", base.snap_start)
        validation.validate_snap_start_runtime(apply_on, runtime)
        validation.validate_snap_start_storage(
            apply_on, changes.get("ephemeral_storage", base.ephemeral_storage)
        )
        if layers is not None:
            changes["layers"] = layers
        if request.durable_config is not None:
            changes.update(_durable_changes(base, request.durable_config))
        return base.evolve(**changes)

    async def get(self, scope: Scope, raw_name: str, qualifier: str | None) -> FunctionConfig:
        """The configuration of a version, alias target or ``$LATEST``."""
        return (await self.lookup(scope, raw_name, qualifier))[0]

    async def lookup(
        self, scope: Scope, raw_name: str, qualifier: str | None
    ) -> tuple[FunctionConfig, str | None]:
        """The configuration a name and qualifier select, and the qualifier the request named
        (in the ARN or as the parameter). Anything missing is "Function not found: <arn>"."""
        name, arn_qualifier = self.name_of(scope, raw_name)
        qualifier = validation.merge_qualifier(arn_qualifier, qualifier)
        config = await self._lookup(scope, name, qualifier)
        if await self._settle_now(scope, name, config):
            config = await self._lookup(scope, name, qualifier)
        return config, qualifier

    async def _lookup(self, scope: Scope, name: str, qualifier: str | None) -> FunctionConfig:
        try:
            await self._record(scope, name)
            if qualifier is None or _is_version(qualifier):
                return await self._version(scope, name, qualifier or LATEST)
            alias = await self._alias(scope, name, qualifier)
            return await self._version(scope, name, alias.function_version)
        except errors.ResourceNotFoundException:
            raise self._not_found(scope, name, qualifier) from None

    async def record(self, scope: Scope, raw_name: str) -> FunctionRecord:
        name, _ = self.name_of(scope, raw_name)
        return await self._record(scope, name)

    async def list_functions(
        self, scope: Scope, *, all_versions: bool, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionConfig], str | None]:
        if not all_versions:
            return await self._list_latest(scope, marker, max_items)
        rows = await self._store.scan(Table.VERSIONS, scope.key())
        configs = [FunctionConfig.from_doc(doc) for _, doc in rows]
        configs.sort(key=lambda c: (c.name, _version_order(c.version)))
        return page(configs, marker, max_items)

    async def latest_of(self, scope: Scope, names: list[str]) -> dict[str, FunctionConfig]:
        """The ``$LATEST`` configuration of each of ``names`` that is a function, read at once
        (the console's function list: docs/console.md)."""
        docs = await self._store.get_many(Table.VERSIONS, [scope.key(n, LATEST) for n in names])
        return {
            name: FunctionConfig.from_doc(doc)
            for name, doc in zip(names, docs, strict=True)
            if doc is not None
        }

    async def _list_latest(
        self, scope: Scope, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionConfig], str | None]:
        """A page of functions by name, reading only that page: the names from the records
        (one per function, in key order, which is name order), then their ``$LATEST``."""
        start = offset_of(marker)
        size = DEFAULT_PAGE if max_items is None else max_items
        rows = await self._store.scan_page(Table.FUNCTIONS, scope.key(), start, size + 1)
        keys = [scope.key(key[-1], LATEST) for key, _ in rows[:size]]
        docs = await self._store.get_many(Table.VERSIONS, keys)
        configs = [FunctionConfig.from_doc(doc) for doc in docs if doc is not None]
        return configs, marker_at(start + size) if len(rows) > size else None

    async def update_code(self, scope: Scope, request: UpdateFunctionCodeRequest) -> FunctionConfig:
        name, qualifier = self.name_of(scope, request.function_name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot update code of a qualified function"
            )
        data = request.zip_file
        if data is None:
            raise errors.InvalidParameterValueException(
                "Please provide a source for function code."
                if not request.s3_bucket and not request.image_uri
                else "lambdad accepts code as ZipFile; S3 locations are not supported."
            )
        info = await asyncio.to_thread(zipcode.inspect_zip, data)
        publish_to = _publish_to(request)
        async with self._lock(scope, name):
            await self._record(scope, name)
            current = await self._ready_for_update(scope, name)
            validation.check_revision_id(request.revision_id, current.revision_id)
            config = _updating(
                current.evolve(
                    code_key=info.sha256_hex,
                    code_sha256=info.sha256_b64,
                    code_size=info.size,
                    code_unzipped_size=info.unzipped_size,
                )
            )
            _check_total_size(config)
            await self._blobs.put(data)
            await self._store.put(Table.VERSIONS, scope.key(name, LATEST), config.to_doc())
            if request.publish or publish_to:
                config = await self._publish_locked(
                    scope, name, None, None, None, to_latest_published=publish_to
                )
        self._settle_later(scope, name)
        await self._changed(scope, name)
        await self._published(scope, config)
        return config

    async def update_config(
        self, scope: Scope, request: UpdateFunctionConfigurationRequest
    ) -> FunctionConfig:
        name, qualifier = self.name_of(scope, request.function_name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot update configuration of a "
                "qualified function"
            )
        async with self._lock(scope, name):
            await self._record(scope, name)
            current = await self._ready_for_update(scope, name)
            validation.check_revision_id(request.revision_id, current.revision_id)
            layers = await self._layers_of(scope, request.layers)
            config = _updating(self._apply_config(current, request, creating=False, layers=layers))
            if layers:
                config = await self._code_unzipped_size(config)
            _check_total_size(config)
            await self._store.put(Table.VERSIONS, scope.key(name, LATEST), config.to_doc())
        self._settle_later(scope, name)
        await self._changed(scope, name)
        return config

    async def delete(self, scope: Scope, raw_name: str, qualifier: str | None) -> None:
        """DeleteFunction: the whole function (its versions, aliases and configurations, in
        one store write) or one version. As on AWS, ``$LATEST`` cannot be deleted on its own
        (checked before the function's existence) and a version that does not exist is
        already deleted."""
        name, arn_qualifier = self.name_of(scope, raw_name)
        qualifier = validation.merge_qualifier(arn_qualifier, qualifier)
        if qualifier == LATEST:
            raise errors.InvalidParameterValueException(
                "$LATEST version cannot be deleted without deleting the function."
            )
        if qualifier is not None and not _is_version(qualifier):
            raise errors.InvalidParameterValueException(
                "Deletion of aliases is not supported. Use DeleteAlias instead."
            )
        async with self._lock(scope, name):
            await self._record(scope, name)
            if qualifier is None:
                await self._store.write(await self._function_rows(scope, name))
            else:
                doc = await self._store.get(Table.VERSIONS, scope.key(name, qualifier))
                if doc is None:
                    return
                aliases = [
                    Alias.from_doc(doc)
                    for _, doc in await self._store.scan(Table.ALIASES, scope.key(name))
                ]
                users = [
                    a.name
                    for a in aliases
                    if a.function_version == qualifier or qualifier in a.weights
                ]
                if users:
                    raise errors.ResourceConflictException(
                        "Unable to delete version because the following aliases reference it: "
                        f"[{', '.join(users)}]"
                    )
                await self._store.delete(Table.VERSIONS, scope.key(name, qualifier))
        await self.changes.publish(FunctionDeleted(scope, name, qualifier))

    async def _function_rows(self, scope: Scope, name: str) -> list[Write]:
        """Deletions of every row of the function, in every table that keeps some."""
        prefix = scope.key(name)
        writes = [Write(table, prefix, None) for table in _FUNCTION_ROWS]
        for table in _FUNCTION_TABLES:
            writes += [Write(table, key, None) for key, _ in await self._store.scan(table, prefix)]
        return writes

    # ---------------------------------------------------------------- runtime management

    async def runtime_management(
        self, scope: Scope, raw_name: str, qualifier: str | None
    ) -> FunctionConfig:
        """The version Get/PutRuntimeManagementConfig describes (``$LATEST`` by default; an
        alias is refused)."""
        name, arn_qualifier = self.name_of(scope, raw_name)
        qualifier = validation.merge_qualifier(arn_qualifier, qualifier)
        if qualifier is not None and not _is_version(qualifier):
            raise errors.InvalidParameterValueException(
                "Runtime management configs are not supported on aliases. Please specify a "
                "function version or $LATEST."
            )
        await self._record(scope, name)
        config = await self._version(scope, name, qualifier or LATEST)
        if await self._settle_now(scope, name, config):
            config = await self._version(scope, name, qualifier or LATEST)
        return config

    async def put_runtime_management(
        self, scope: Scope, request: PutRuntimeManagementConfigRequest
    ) -> FunctionConfig:
        """PutRuntimeManagementConfig: ``Manual`` pins ``RuntimeVersionArn`` (required then,
        and refused with the other modes); the version's RuntimeVersionConfig follows it."""
        version_arn = request.runtime_version_arn
        mode = UpdateRuntimeOn(request.update_runtime_on)
        if mode is UpdateRuntimeOn.MANUAL and not version_arn:
            raise errors.InvalidParameterValueException(
                "RuntimeVersionArn must be specified when UpdateRuntimeOn is Manual."
            )
        if mode is not UpdateRuntimeOn.MANUAL and version_arn:
            raise errors.InvalidParameterValueException(
                f"RuntimeVersionArn can only be specified when UpdateRuntimeOn is Manual, not "
                f"{mode.value}."
            )
        target = await self.runtime_management(scope, request.function_name, request.qualifier)
        async with self._lock(scope, target.name):
            key = scope.key(target.name, target.version)
            doc = await self._store.get(Table.VERSIONS, key)
            if doc is None:
                raise self._not_found(scope, target.name, target.version)
            config = FunctionConfig.from_doc(doc).evolve(
                runtime_update_on=mode, runtime_version_arn=version_arn
            )
            await self._store.put(Table.VERSIONS, key, config.to_doc())
        await self._changed(scope, target.name)
        return config

    # ---------------------------------------------------------------- versions

    async def publish(
        self,
        scope: Scope,
        raw_name: str,
        *,
        code_sha256: str | None,
        description: str | None,
        revision_id: str | None,
        publish_to: str | None = None,
    ) -> FunctionConfig:
        """PublishVersion: a new version when ``$LATEST`` changed since the newest one was
        published (its code or any of its configuration), else that newest version. With
        ``publish_to`` ``LATEST_PUBLISHED``, ``$LATEST.PUBLISHED`` is (re)published instead."""
        name, qualifier = self.name_of(scope, raw_name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot publish a qualified function"
            )
        to_latest_published = publish_to == PUBLISH_TO_LATEST_PUBLISHED
        async with self._lock(scope, name):
            await self._record(scope, name)
            await self._ready_for_update(scope, name)
            config = await self._publish_locked(
                scope,
                name,
                code_sha256,
                description,
                revision_id,
                to_latest_published=to_latest_published,
            )
        await self._changed(scope, name)
        await self._published(scope, config)
        return config

    async def _publish_locked(
        self,
        scope: Scope,
        name: str,
        code_sha256: str | None,
        description: str | None,
        revision_id: str | None,
        *,
        to_latest_published: bool = False,
    ) -> FunctionConfig:
        """Publish ``$LATEST`` (lock held). A version published while ``$LATEST`` is still
        being created or updated starts ``Pending`` as on AWS, and ``$LATEST`` gets a new
        RevisionId."""
        record = await self._record(scope, name)
        latest = await self._version(scope, name, LATEST)
        validation.check_code_sha256(code_sha256 or None, latest.code_sha256)
        validation.check_revision_id(revision_id, latest.revision_id)
        newest_key = LATEST_PUBLISHED if to_latest_published else str(record.last_version)
        if to_latest_published or record.last_version:
            newest = await self._store.get(Table.VERSIONS, scope.key(name, newest_key))
            if newest is not None:
                previous = FunctionConfig.from_doc(newest)
                if _same_content(previous, latest.evolve(description=previous.description)):
                    return previous
        number = record.last_version if to_latest_published else record.last_version + 1
        version = LATEST_PUBLISHED if to_latest_published else str(number)
        published = latest.evolve(
            version=version,
            description=latest.description if description is None else description,
            last_modified=now_timestamp(),
            revision_id=new_revision(),
        )
        if latest.settling or published.snap_start_on:
            published = _creating(published)
        else:
            published = _settled(published).evolve(revision_id=published.revision_id)
        await self._store.write(
            [
                Write(
                    Table.FUNCTIONS,
                    scope.key(name),
                    dataclasses.replace(record, last_version=number).to_doc(),
                ),
                Write(Table.VERSIONS, scope.key(name, version), published.to_doc()),
                Write(
                    Table.VERSIONS,
                    scope.key(name, LATEST),
                    latest.evolve(revision_id=new_revision()).to_doc(),
                ),
            ]
        )
        return published

    async def list_versions(
        self, scope: Scope, raw_name: str, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionConfig], str | None]:
        name, _ = self.name_of(scope, raw_name)
        await self._record(scope, name)
        rows = await self._store.scan(Table.VERSIONS, scope.key(name))
        configs = sorted(
            (FunctionConfig.from_doc(doc) for _, doc in rows),
            key=lambda c: _version_order(c.version),
        )
        return page(configs, marker, max_items)

    # ---------------------------------------------------------------- aliases

    async def _check_alias_target(
        self, scope: Scope, name: str, version: str, weights: Mapping[str, float]
    ) -> None:
        validation.validate_routing_config(dict(weights), version)
        for target in [version, *weights]:
            if target != LATEST:
                await self._version(scope, name, target)

    async def create_alias(self, scope: Scope, request: CreateAliasRequest) -> Alias:
        name, _ = self.name_of(scope, request.function_name)
        alias_name = request.name
        version = request.function_version
        weights = _weights(request.routing_config)
        async with self._lock(scope, name):
            await self._record(scope, name)
            await self._check_alias_target(scope, name, version, weights)
            alias = Alias(
                function_name=name,
                name=alias_name,
                function_version=version,
                description=request.description or "",
                weights=weights,
            )
            try:
                await self._store.put(
                    Table.ALIASES, scope.key(name, alias_name), alias.to_doc(), create=True
                )
            except StoreConflict as exc:
                raise errors.ResourceConflictException(
                    f"Alias already exists: {scope.function_arn(name, alias_name)}"
                ) from exc
        await self._changed(scope, name)
        return alias

    async def get_alias(self, scope: Scope, raw_name: str, alias_name: str) -> Alias:
        name, _ = self.name_of(scope, raw_name)
        await self._record(scope, name)
        return await self._alias(scope, name, alias_name)

    async def update_alias(self, scope: Scope, request: UpdateAliasRequest) -> Alias:
        name, _ = self.name_of(scope, request.function_name)
        alias_name = request.name
        async with self._lock(scope, name):
            await self._record(scope, name)
            try:
                current = await self._alias(scope, name, alias_name)
            except errors.ResourceNotFoundException:  # AWS words UpdateAlias's own way
                raise errors.ResourceNotFoundException(
                    f"Alias not found: {scope.function_arn(name, alias_name)}"
                ) from None
            validation.check_revision_id(request.revision_id, current.revision_id, "GetAlias")
            version = request.function_version or current.function_version
            routing = request.routing_config
            weights = current.weights if routing is None else _weights(routing)
            await self._check_alias_target(scope, name, version, weights)
            alias = Alias(
                function_name=name,
                name=alias_name,
                function_version=version,
                description=current.description
                if request.description is None
                else request.description,
                weights=weights,
            )
            await self._store.put(Table.ALIASES, scope.key(name, alias_name), alias.to_doc())
        await self._changed(scope, name)
        return alias

    async def delete_alias(self, scope: Scope, raw_name: str, alias_name: str) -> None:
        name, _ = self.name_of(scope, raw_name)
        async with self._lock(scope, name):
            await self._record(scope, name)
            await self._store.delete(Table.ALIASES, scope.key(name, alias_name))
        await self.changes.publish(AliasDeleted(scope, name, alias_name))

    async def list_aliases(
        self,
        scope: Scope,
        raw_name: str,
        version: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[Alias], str | None]:
        name, _ = self.name_of(scope, raw_name)
        await self._record(scope, name)
        aliases = [
            Alias.from_doc(doc) for _, doc in await self._store.scan(Table.ALIASES, scope.key(name))
        ]
        if version:
            aliases = [a for a in aliases if a.function_version == version]
        return page(aliases, marker, max_items)

    # ---------------------------------------------------------------- tags

    async def tags(self, scope: Scope, arn: str) -> dict[str, str]:
        """ListTags of a function ARN."""
        return (await self._record(scope, self._tag_target(scope, arn))).tags

    def _tag_target(self, scope: Scope, arn: str) -> str:
        """The function a tagging call's ARN names. As on AWS: another kind of resource (which
        lambdad does not have) is not found, and a version or alias ARN is refused before any
        lookup. The ARN matches the model's TaggableResource pattern (checked when decoded)."""
        kind = arn.split(":")[5]
        if kind != "function":
            what = {
                "event-source-mapping": "Event source mapping",
                "code-signing-config": "Code signing config",
                "capacity-provider": "Capacity provider",
                "network-connector": "Network connector",
            }[kind]
            raise errors.ResourceNotFoundException(f"{what} not found: {arn}")
        name, qualifier = self.name_of(scope, arn)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Tags on function aliases and versions are not supported. Please specify a "
                "function ARN."
            )
        return name

    async def tag(self, scope: Scope, arn: str, tags: Mapping[str, str]) -> None:
        """TagResource: at least one tag; at most 50 on the function once merged."""
        name = self._tag_target(scope, arn)
        if not tags:
            raise errors.InvalidParameterValueException(
                "An error occurred and the request cannot be processed."
            )
        async with self._lock(scope, name):
            record = await self._record(scope, name)
            merged = {**record.tags, **tags}
            validation.validate_tags(merged)
            await self._store.put(
                Table.FUNCTIONS,
                scope.key(name),
                dataclasses.replace(record, tags=merged).to_doc(),
            )

    async def untag(self, scope: Scope, arn: str, keys: list[str]) -> None:
        """UntagResource: ``TagKeys`` is required (an empty list reaches AWS as none at all)."""
        name = self._tag_target(scope, arn)
        if not keys:
            raise errors.ValidationException(
                "1 validation error detected: Value null at 'tagKeys' failed to satisfy "
                "constraint: Member must not be null"
            )
        async with self._lock(scope, name):
            record = await self._record(scope, name)
            remaining = {k: v for k, v in record.tags.items() if k not in set(keys)}
            await self._store.put(
                Table.FUNCTIONS,
                scope.key(name),
                dataclasses.replace(record, tags=remaining).to_doc(),
            )

    async def count(self, scope: Scope) -> tuple[int, int]:
        """(number of functions, total size of function and layer code) for
        GetAccountSettings."""
        rows = await self._store.scan(Table.VERSIONS, scope.key())
        names = {key[2] for key, _ in rows}
        code = sum(int(doc.get("code_size", 0)) for _, doc in rows)
        return len(names), code + await self.layers.total_code_size(scope)

    # ---------------------------------------------------------------- invoke path

    async def resolve(self, scope: Scope, raw_name: str, qualifier: str | None) -> FunctionConfig:
        """The configuration an invocation runs: alias weights are drawn here, per call.

        A function still being created (``Pending``) is finished first when its time has
        come (always, unless lambdad was told to keep it pending), so that an invoke right
        after CreateFunction runs instead of being refused (docs/function-states.md).
        Anything missing is "Function not found: <arn>:<qualifier or $LATEST>", as Invoke says.
        """
        name, arn_qualifier = self.name_of(scope, raw_name)
        qualifier = validation.merge_qualifier(arn_qualifier, qualifier) or LATEST
        cached = self._cache.get(scope.key(name, qualifier))
        if isinstance(cached, FunctionConfig):
            config = cached  # (the usual case: no coroutine for it)
        else:
            running = self._transitions.get(scope.key(name))
            if running is not None and self._due(scope, name) and not running[0].done():
                # The create or update is finishing now (an invoke right after CreateFunction):
                # wait for it rather than read the configuration it is about to replace.
                await asyncio.wait([running[0]])
            try:
                config = await self._resolve(scope, name, qualifier)
            except errors.ResourceNotFoundException:
                raise self._not_found(scope, name, qualifier) from None
        if config.state is State.PENDING and await self._settle_now(scope, name, config):
            config = await self._resolve(scope, name, qualifier)
        return config

    async def _resolve(self, scope: Scope, name: str, qualifier: str) -> FunctionConfig:
        key = scope.key(name, qualifier)
        target = self._cache.get(key)
        if target is None:
            generation = self._generation.get(scope.key(name), 0)
            target = await self._load_target(scope, name, qualifier)
            if self._generation.get(scope.key(name), 0) == generation:
                self._cache[key] = target
        if isinstance(target, FunctionConfig):
            return target
        return await self._resolve(scope, name, _draw(target))

    async def _load_target(self, scope: Scope, name: str, qualifier: str) -> FunctionConfig | Alias:
        # One read: a version or alias row exists only beside its function's record (they are
        # written together and a function's rows are deleted in one write), and whatever is
        # missing, ``resolve`` answers its own "Function not found".
        if _is_version(qualifier):
            return await self._version(scope, name, qualifier)
        return await self._alias(scope, name, qualifier)


def _draw(alias: Alias) -> str:
    roll = random.random()
    for version, weight in alias.weights.items():
        if roll < weight:
            return version
        roll -= weight
    return alias.function_version


def _weights(routing: AliasRoutingConfiguration | None) -> dict[str, float]:
    if routing is None:
        return {}
    return dict(routing.additional_version_weights or {})


def _version_order(version: str) -> tuple[int, int]:
    if version == LATEST:
        return (0, 0)
    return (2, 0) if version == LATEST_PUBLISHED else (1, int(version))


def _is_version(qualifier: str) -> bool:
    """A version qualifier (a number, ``$LATEST`` or ``$LATEST.PUBLISHED``), not an alias."""
    return qualifier.isdigit() or qualifier in (LATEST, LATEST_PUBLISHED)


def _publish_to(request: CreateFunctionRequest | UpdateFunctionCodeRequest) -> bool:
    """Whether a request's ``PublishTo`` asks for ``$LATEST.PUBLISHED`` (its one value)."""
    return request.publish_to == PUBLISH_TO_LATEST_PUBLISHED


def _durable_changes(base: FunctionConfig, durable: DurableConfig) -> dict[str, Any]:
    """A ``DurableConfig``'s members as changes of ``base`` (what is not given is kept; the
    timeout defaults to 86,400 seconds, the retention to AWS's 30 days)."""
    timeout = durable.execution_timeout or base.durable_execution_timeout or 86400
    days = durable.retention_period_in_days or base.durable_retention_days
    return {"durable_execution_timeout": timeout, "durable_retention_days": days}
