"""Functions, versions and aliases: the rules of Lambda's control plane.

``Functions`` validates requests (given in the AWS request shape, already decoded from JSON),
keeps the metadata in the ``Store`` and the code in the ``BlobStore``, and answers the invoke
path's "which configuration runs for this name and qualifier" from a cache it keeps in step
with its own writes. A function's ``Layers`` are resolved through ``Layers`` when written, and
the code with every layer must stay under 250 MB unzipped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
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
    LATEST,
    Alias,
    FunctionConfig,
    FunctionLayer,
    FunctionRecord,
    LoggingConfig,
    State,
    UpdateStatus,
    new_revision,
    now_timestamp,
)
from lambdad.control.paging import page
from lambdad.store import zipcode
from lambdad.store.base import BlobStore, Store, StoreConflict, Table, Write

#: What a SnapStart version says while its snapshot is being made.
SNAPSHOT_PENDING = ("Creating", "The function is being created.")

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
}


def _same_content(a: FunctionConfig, b: FunctionConfig) -> bool:
    da, db = a.to_doc(), b.to_doc()
    return all(da[k] == db[k] for k in da if k not in _IDENTITY_EXCLUDED)


def _decode_zip(raw: Any) -> bytes:
    if not isinstance(raw, str):
        raise errors.InvalidParameterValueException("Please provide a source for function code.")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidRequestContentException(
            "Could not parse request body into json: Could not parse payload into json"
        ) from exc


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
    def __init__(self, store: Store, blobs: BlobStore, layers: Layers | None = None) -> None:
        self._store = store
        self._blobs = blobs
        #: The layer service whose versions ``Layers`` name (shared with the API).
        self.layers = layers or Layers(store, blobs)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._cache: dict[tuple[str, str, str], FunctionConfig | Alias] = {}
        #: Bumped by every write to a function, so that a resolve that read the store before
        #: the write does not put what it read back into the cache.
        self._generation: dict[tuple[str, str], int] = {}
        #: Every committed write, as typed events (``changes.py``); the cache above follows
        #: it first, so that a stream fed by other nodes keeps it fresh too.
        self.changes = ChangeStream()
        self.changes.subscribe(self._forget)

    async def _forget(self, change: Change) -> None:
        """Drop what the cache holds of a function that changed."""
        generation = (change.region, change.name)
        self._generation[generation] = self._generation.get(generation, 0) + 1
        for key in [k for k in self._cache if k[:2] == generation]:
            del self._cache[key]

    async def _published(self, scope: Scope, config: FunctionConfig) -> None:
        if config.version != LATEST:
            await self.changes.publish(VersionPublished(scope.region, config.name, config))

    async def versions_of(self, region: str, name: str) -> set[str]:
        """The versions a function has now (none once it is deleted)."""
        return {key[2] for key, _ in await self._store.scan(Table.VERSIONS, (region, name))}

    async def pending_snapshots(self) -> list[tuple[str, FunctionConfig]]:
        """(region, version) of every SnapStart version still ``Pending``: a lambdad stopped
        while making their snapshots; they are made again at start."""
        rows = await self._store.scan(Table.VERSIONS)
        configs = [(key[0], FunctionConfig.from_doc(doc)) for key, doc in rows]
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
            doc = await self._store.get(Table.VERSIONS, (scope.region, name, version))
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
            await self._store.put(Table.VERSIONS, (scope.region, name, version), config.to_doc())
        await self._changed(scope, name)

    # ---------------------------------------------------------------- helpers

    def _lock(self, scope: Scope, name: str) -> asyncio.Lock:
        return self._locks.setdefault((scope.region, name), asyncio.Lock())

    async def _changed(self, scope: Scope, name: str) -> None:
        await self.changes.publish(FunctionChanged(scope.region, name))

    def _not_found(
        self, scope: Scope, name: str, qualifier: str | None = None
    ) -> errors.LambdaError:
        return errors.ResourceNotFoundException(
            f"Function not found: {scope.function_arn(name, qualifier)}"
        )

    async def _record(self, scope: Scope, name: str) -> FunctionRecord:
        doc = await self._store.get(Table.FUNCTIONS, (scope.region, name))
        if doc is None:
            raise self._not_found(scope, name)
        return FunctionRecord.from_doc(doc)

    async def _version(self, scope: Scope, name: str, version: str) -> FunctionConfig:
        doc = await self._store.get(Table.VERSIONS, (scope.region, name, version))
        if doc is None:
            raise self._not_found(scope, name, None if version == LATEST else version)
        return FunctionConfig.from_doc(doc)

    async def _alias(self, scope: Scope, name: str, alias: str) -> Alias:
        doc = await self._store.get(Table.ALIASES, (scope.region, name, alias))
        if doc is None:
            raise errors.ResourceNotFoundException(
                f"Cannot find alias arn: {scope.function_arn(name, alias)}"
            )
        return Alias.from_doc(doc)

    def name_of(self, scope: Scope, raw: str) -> tuple[str, str | None]:
        """Split a name, partial ARN or ARN into (name, qualifier)."""
        return validation.parse_function_name(raw, account_id=scope.account_id, region=scope.region)

    @staticmethod
    def _check_revision(current: str, expected: str | None, what: str = "GetFunction") -> None:
        if expected is not None and expected != current:
            raise errors.PreconditionFailedException(
                "The Revision Id provided does not match the latest Revision Id. "
                f"Call the {what} API to retrieve the latest Revision Id"
            )

    # ---------------------------------------------------------------- functions

    async def create(self, scope: Scope, request: Mapping[str, Any]) -> FunctionConfig:
        name, qualifier = self.name_of(scope, str(request.get("FunctionName", "")))
        validation.validate_function_name_for_create(name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot create a function with a qualifier"
            )
        package_type = str(request.get("PackageType") or "Zip")
        if package_type != "Zip":
            raise errors.InvalidParameterValueException(
                "lambdad runs zip packages only; PackageType Image is not supported."
            )
        code = request.get("Code")
        if not isinstance(code, Mapping) or "ZipFile" not in code:
            raise errors.InvalidParameterValueException(
                "Please provide a source for function code."
                if not isinstance(code, Mapping) or not code
                else "lambdad accepts code as Code.ZipFile; S3 locations are not supported."
            )
        data = await asyncio.to_thread(_decode_zip, code["ZipFile"])
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
            ),
            request,
            creating=True,
            layers=await self._layers_of(scope, request),
        )
        _check_total_size(config)
        tags = dict(request.get("Tags") or {})
        validation.validate_tags(tags)
        async with self._lock(scope, name):
            await self._blobs.put(data)
            record = FunctionRecord(name=name, tags=tags)
            try:
                await self._store.write(
                    [
                        Write(Table.FUNCTIONS, (scope.region, name), record.to_doc(), create=True),
                        Write(Table.VERSIONS, (scope.region, name, LATEST), config.to_doc()),
                    ]
                )
            except StoreConflict as exc:
                raise errors.ResourceConflictException(f"Function already exist: {name}") from exc
            if request.get("Publish"):
                config = await self._publish_locked(scope, name, None, None, None)
        await self._changed(scope, name)
        await self._published(scope, config)
        return config

    async def _layers_of(
        self, scope: Scope, request: Mapping[str, Any]
    ) -> tuple[FunctionLayer, ...] | None:
        """The layer versions ``request["Layers"]`` names; None when it names none."""
        arns = request.get("Layers")
        if arns is None:
            return None
        return await self.layers.for_function(scope, [str(arn) for arn in arns])

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
        request: Mapping[str, Any],
        *,
        creating: bool,
        layers: tuple[FunctionLayer, ...] | None = None,
    ) -> FunctionConfig:
        """Validate the configuration fields of ``request`` and lay them over ``base``;
        ``layers`` are the already resolved ``Layers`` (None: leave them as they are)."""
        changes: dict[str, Any] = {}
        if creating or "Role" in request:
            validation.validate_role(str(request.get("Role") or ""))
            changes["role"] = request["Role"]
        if "Runtime" in request or creating:
            validation.validate_runtime(request.get("Runtime"), base.package_type)
            changes["runtime"] = request.get("Runtime")
        runtime = changes.get("runtime", base.runtime)
        if "Handler" in request or creating:
            validation.validate_handler(request.get("Handler"), runtime)
            changes["handler"] = request.get("Handler")
        if "Description" in request:
            validation.validate_description(str(request["Description"]))
            changes["description"] = str(request["Description"])
        if request.get("MemorySize") is not None:
            validation.validate_memory_size(int(request["MemorySize"]))
            changes["memory_size"] = int(request["MemorySize"])
        if request.get("Timeout") is not None:
            validation.validate_timeout(int(request["Timeout"]))
            changes["timeout"] = int(request["Timeout"])
        storage = request.get("EphemeralStorage")
        if isinstance(storage, Mapping) and storage.get("Size") is not None:
            validation.validate_ephemeral_storage(int(storage["Size"]))
            changes["ephemeral_storage"] = int(storage["Size"])
        env = request.get("Environment")
        if isinstance(env, Mapping):
            variables = {str(k): str(v) for k, v in (env.get("Variables") or {}).items()}
            validation.validate_environment(variables)
            changes["environment"] = variables
        if request.get("Architectures") is not None:
            archs = list(request["Architectures"])
            validation.validate_architectures(archs)
            changes["architectures"] = tuple(archs)
        logging = request.get("LoggingConfig")
        if isinstance(logging, Mapping):
            validation.validate_logging_config(dict(logging))
            merged = dict(logging)
            log_format = merged.get("LogFormat", base.logging.log_format)
            changes["logging"] = LoggingConfig(
                log_format=log_format,
                application_log_level=merged.get("ApplicationLogLevel")
                or (base.logging.application_log_level if log_format == "JSON" else None)
                or ("INFO" if log_format == "JSON" else None),
                system_log_level=merged.get("SystemLogLevel")
                or (base.logging.system_log_level if log_format == "JSON" else None)
                or ("INFO" if log_format == "JSON" else None),
                log_group=merged.get("LogGroup") or base.logging.log_group,
            )
        tracing = request.get("TracingConfig")
        if isinstance(tracing, Mapping) and tracing.get("Mode"):
            changes["tracing_mode"] = str(tracing["Mode"])
        dlq = request.get("DeadLetterConfig")
        if isinstance(dlq, Mapping):
            changes["dead_letter_target"] = dlq.get("TargetArn") or None
        if "KMSKeyArn" in request:
            changes["kms_key_arn"] = request.get("KMSKeyArn") or None
        snap = request.get("SnapStart")
        if isinstance(snap, Mapping) and snap.get("ApplyOn"):
            validation.validate_snap_start(str(snap["ApplyOn"]))
            changes["snap_start"] = str(snap["ApplyOn"])
        apply_on = changes.get("snap_start", base.snap_start)
        validation.validate_snap_start_runtime(apply_on, runtime)
        validation.validate_snap_start_storage(
            apply_on, changes.get("ephemeral_storage", base.ephemeral_storage)
        )
        if layers is not None:
            changes["layers"] = layers
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
        qualifier = self._merge_qualifier(arn_qualifier, qualifier)
        try:
            await self._record(scope, name)
            if qualifier is None or qualifier == LATEST:
                return await self._version(scope, name, LATEST), qualifier
            if qualifier.isdigit():
                return await self._version(scope, name, qualifier), qualifier
            alias = await self._alias(scope, name, qualifier)
            return await self._version(scope, name, alias.function_version), qualifier
        except errors.ResourceNotFoundException:
            raise self._not_found(scope, name, qualifier) from None

    async def record(self, scope: Scope, raw_name: str) -> FunctionRecord:
        name, _ = self.name_of(scope, raw_name)
        return await self._record(scope, name)

    @staticmethod
    def _merge_qualifier(from_arn: str | None, explicit: str | None) -> str | None:
        if from_arn and explicit and from_arn != explicit:
            raise errors.InvalidParameterValueException(
                "The derived qualifier from the function name does not match the specified "
                "qualifier."
            )
        qualifier = explicit or from_arn
        if qualifier is not None:
            validation.validate_qualifier(qualifier)
        return qualifier

    async def list_functions(
        self, scope: Scope, *, all_versions: bool, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionConfig], str | None]:
        rows = await self._store.scan(Table.VERSIONS, (scope.region,))
        configs = [FunctionConfig.from_doc(doc) for _, doc in rows]
        if not all_versions:
            configs = [c for c in configs if c.version == LATEST]
        configs.sort(key=lambda c: (c.name, _version_order(c.version)))
        return page(configs, marker, max_items)

    async def update_code(
        self, scope: Scope, raw_name: str, request: Mapping[str, Any]
    ) -> FunctionConfig:
        name, qualifier = self.name_of(scope, raw_name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot update code of a qualified function"
            )
        if "ZipFile" not in request:
            raise errors.InvalidParameterValueException(
                "Please provide a source for function code."
                if not request.get("S3Bucket") and not request.get("ImageUri")
                else "lambdad accepts code as ZipFile; S3 locations are not supported."
            )
        data = await asyncio.to_thread(_decode_zip, request["ZipFile"])
        info = await asyncio.to_thread(zipcode.inspect_zip, data)
        async with self._lock(scope, name):
            await self._record(scope, name)
            current = await self._version(scope, name, LATEST)
            self._check_revision(current.revision_id, request.get("RevisionId"))
            config = current.evolve(
                code_key=info.sha256_hex,
                code_sha256=info.sha256_b64,
                code_size=info.size,
                code_unzipped_size=info.unzipped_size,
                last_modified=now_timestamp(),
                revision_id=new_revision(),
                last_update_status=UpdateStatus.SUCCESSFUL,
            )
            _check_total_size(config)
            await self._blobs.put(data)
            await self._store.put(Table.VERSIONS, (scope.region, name, LATEST), config.to_doc())
            if request.get("Publish"):
                config = await self._publish_locked(scope, name, None, None, None)
        await self._changed(scope, name)
        await self._published(scope, config)
        return config

    async def update_config(
        self, scope: Scope, raw_name: str, request: Mapping[str, Any]
    ) -> FunctionConfig:
        name, qualifier = self.name_of(scope, raw_name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot update configuration of a "
                "qualified function"
            )
        async with self._lock(scope, name):
            await self._record(scope, name)
            current = await self._version(scope, name, LATEST)
            self._check_revision(current.revision_id, request.get("RevisionId"))
            layers = await self._layers_of(scope, request)
            config = self._apply_config(current, request, creating=False, layers=layers).evolve(
                last_modified=now_timestamp(),
                revision_id=new_revision(),
                last_update_status=UpdateStatus.SUCCESSFUL,
            )
            if layers:
                config = await self._code_unzipped_size(config)
            _check_total_size(config)
            await self._store.put(Table.VERSIONS, (scope.region, name, LATEST), config.to_doc())
        await self._changed(scope, name)
        return config

    async def delete(self, scope: Scope, raw_name: str, qualifier: str | None) -> None:
        name, arn_qualifier = self.name_of(scope, raw_name)
        qualifier = self._merge_qualifier(arn_qualifier, qualifier)
        async with self._lock(scope, name):
            await self._record(scope, name)
            if qualifier is None:
                await self._store.delete_prefix(Table.VERSIONS, (scope.region, name))
                await self._store.delete_prefix(Table.ALIASES, (scope.region, name))
                await self._store.delete(Table.CONCURRENCY, (scope.region, name))
                await self._store.delete(Table.FUNCTIONS, (scope.region, name))
            elif qualifier == LATEST:
                raise errors.InvalidParameterValueException(
                    "$LATEST version cannot be deleted without deleting the function."
                )
            elif not qualifier.isdigit():
                raise errors.InvalidParameterValueException(
                    "Deletion of aliases is not supported. Use DeleteAlias instead."
                )
            else:
                await self._version(scope, name, qualifier)
                aliases = [
                    Alias.from_doc(doc)
                    for _, doc in await self._store.scan(Table.ALIASES, (scope.region, name))
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
                await self._store.delete(Table.VERSIONS, (scope.region, name, qualifier))
        await self.changes.publish(FunctionDeleted(scope.region, name, qualifier))

    # ---------------------------------------------------------------- versions

    async def publish(
        self,
        scope: Scope,
        raw_name: str,
        *,
        code_sha256: str | None,
        description: str | None,
        revision_id: str | None,
    ) -> FunctionConfig:
        name, qualifier = self.name_of(scope, raw_name)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Unsupported function name qualifier: cannot publish a qualified function"
            )
        async with self._lock(scope, name):
            config = await self._publish_locked(scope, name, code_sha256, description, revision_id)
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
    ) -> FunctionConfig:
        record = await self._record(scope, name)
        latest = await self._version(scope, name, LATEST)
        if code_sha256 and code_sha256 != latest.code_sha256:
            raise errors.InvalidParameterValueException(
                f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
                f"({latest.code_sha256}). Please try again with the CodeSHA256 in $LATEST."
            )
        self._check_revision(latest.revision_id, revision_id)
        if description is not None:
            validation.validate_description(description)
        if record.last_version:
            newest = await self._store.get(
                Table.VERSIONS, (scope.region, name, str(record.last_version))
            )
            if newest is not None:
                previous = FunctionConfig.from_doc(newest)
                if _same_content(previous, latest.evolve(description=previous.description)):
                    return previous
        number = record.last_version + 1
        published = latest.evolve(
            version=str(number),
            description=latest.description if description is None else description,
            last_modified=now_timestamp(),
            revision_id=new_revision(),
        )
        if published.snap_start_on:
            code, reason = SNAPSHOT_PENDING
            published = published.evolve(
                state=State.PENDING, state_reason_code=code, state_reason=reason
            )
        await self._store.write(
            [
                Write(
                    Table.FUNCTIONS,
                    (scope.region, name),
                    FunctionRecord(
                        name=name, tags=record.tags, last_version=number, created=record.created
                    ).to_doc(),
                ),
                Write(Table.VERSIONS, (scope.region, name, str(number)), published.to_doc()),
            ]
        )
        return published

    async def list_versions(
        self, scope: Scope, raw_name: str, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionConfig], str | None]:
        name, _ = self.name_of(scope, raw_name)
        await self._record(scope, name)
        rows = await self._store.scan(Table.VERSIONS, (scope.region, name))
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

    async def create_alias(self, scope: Scope, raw_name: str, request: Mapping[str, Any]) -> Alias:
        name, _ = self.name_of(scope, raw_name)
        alias_name = str(request.get("Name") or "")
        validation.validate_alias_name(alias_name)
        version = str(request.get("FunctionVersion") or "")
        validation.validate_qualifier(version)
        weights = _weights(request)
        async with self._lock(scope, name):
            await self._record(scope, name)
            await self._check_alias_target(scope, name, version, weights)
            alias = Alias(
                function_name=name,
                name=alias_name,
                function_version=version,
                description=str(request.get("Description") or ""),
                weights=weights,
            )
            try:
                await self._store.put(
                    Table.ALIASES, (scope.region, name, alias_name), alias.to_doc(), create=True
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

    async def update_alias(
        self, scope: Scope, raw_name: str, alias_name: str, request: Mapping[str, Any]
    ) -> Alias:
        name, _ = self.name_of(scope, raw_name)
        async with self._lock(scope, name):
            await self._record(scope, name)
            current = await self._alias(scope, name, alias_name)
            self._check_revision(current.revision_id, request.get("RevisionId"), "GetAlias")
            version = str(request.get("FunctionVersion") or current.function_version)
            validation.validate_qualifier(version)
            weights = _weights(request) if "RoutingConfig" in request else current.weights
            await self._check_alias_target(scope, name, version, weights)
            alias = Alias(
                function_name=name,
                name=alias_name,
                function_version=version,
                description=str(request["Description"])
                if request.get("Description") is not None
                else current.description,
                weights=weights,
            )
            await self._store.put(Table.ALIASES, (scope.region, name, alias_name), alias.to_doc())
        await self._changed(scope, name)
        return alias

    async def delete_alias(self, scope: Scope, raw_name: str, alias_name: str) -> None:
        name, _ = self.name_of(scope, raw_name)
        async with self._lock(scope, name):
            await self._record(scope, name)
            await self._store.delete(Table.ALIASES, (scope.region, name, alias_name))
        await self.changes.publish(AliasDeleted(scope.region, name, alias_name))

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
            Alias.from_doc(doc)
            for _, doc in await self._store.scan(Table.ALIASES, (scope.region, name))
        ]
        if version:
            aliases = [a for a in aliases if a.function_version == version]
        return page(aliases, marker, max_items)

    # ---------------------------------------------------------------- tags

    async def tags(self, scope: Scope, arn: str) -> dict[str, str]:
        return (await self._record(scope, self._tag_target(scope, arn))).tags

    def _tag_target(self, scope: Scope, arn: str) -> str:
        name, qualifier = self.name_of(scope, arn)
        if qualifier is not None:
            raise errors.InvalidParameterValueException(
                "Tags are not supported on function versions or aliases."
            )
        return name

    async def tag(self, scope: Scope, arn: str, tags: Mapping[str, str]) -> None:
        name = self._tag_target(scope, arn)
        async with self._lock(scope, name):
            record = await self._record(scope, name)
            merged = {**record.tags, **{str(k): str(v) for k, v in tags.items()}}
            validation.validate_tags(merged)
            await self._store.put(
                Table.FUNCTIONS,
                (scope.region, name),
                FunctionRecord(
                    name=name,
                    tags=merged,
                    last_version=record.last_version,
                    created=record.created,
                ).to_doc(),
            )

    async def untag(self, scope: Scope, arn: str, keys: list[str]) -> None:
        name = self._tag_target(scope, arn)
        async with self._lock(scope, name):
            record = await self._record(scope, name)
            remaining = {k: v for k, v in record.tags.items() if k not in set(keys)}
            await self._store.put(
                Table.FUNCTIONS,
                (scope.region, name),
                FunctionRecord(
                    name=name,
                    tags=remaining,
                    last_version=record.last_version,
                    created=record.created,
                ).to_doc(),
            )

    async def count(self, scope: Scope) -> tuple[int, int]:
        """(number of functions, total size of function and layer code) for
        GetAccountSettings."""
        rows = await self._store.scan(Table.VERSIONS, (scope.region,))
        names = {key[1] for key, _ in rows}
        code = sum(int(doc.get("code_size", 0)) for _, doc in rows)
        return len(names), code + await self.layers.total_code_size(scope)

    # ---------------------------------------------------------------- invoke path

    async def resolve(self, scope: Scope, raw_name: str, qualifier: str | None) -> FunctionConfig:
        """The configuration an invocation runs: alias weights are drawn here, per call."""
        name, arn_qualifier = self.name_of(scope, raw_name)
        qualifier = self._merge_qualifier(arn_qualifier, qualifier) or LATEST
        key = (scope.region, name, qualifier)
        target = self._cache.get(key)
        if target is None:
            generation = self._generation.get((scope.region, name), 0)
            target = await self._load_target(scope, name, qualifier)
            if self._generation.get((scope.region, name), 0) == generation:
                self._cache[key] = target
        if isinstance(target, FunctionConfig):
            return target
        version = _draw(target)
        return await self.resolve(scope, name, version)

    async def _load_target(self, scope: Scope, name: str, qualifier: str) -> FunctionConfig | Alias:
        await self._record(scope, name)
        if qualifier == LATEST or qualifier.isdigit():
            return await self._version(scope, name, qualifier)
        try:
            return await self._alias(scope, name, qualifier)
        except errors.ResourceNotFoundException:
            raise self._not_found(scope, name, qualifier) from None


def _draw(alias: Alias) -> str:
    roll = random.random()
    for version, weight in alias.weights.items():
        if roll < weight:
            return version
        roll -= weight
    return alias.function_version


def _weights(request: Mapping[str, Any]) -> dict[str, float]:
    routing = request.get("RoutingConfig") or {}
    raw = routing.get("AdditionalVersionWeights") or {} if isinstance(routing, Mapping) else {}
    return {str(k): float(v) for k, v in raw.items()}


def _version_order(version: str) -> tuple[int, int]:
    return (0, 0) if version == LATEST else (1, int(version))
