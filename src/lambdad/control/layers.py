"""Layers: immutable, numbered archives that functions unpack into ``/opt``, and who may use them.

``Layers`` takes typed requests (:mod:`lambdad.control.requests`, checked against the model by
``lambdad.api``), applies the service's rules, keeps each layer's record (its last
version number, so that numbers are never reused, even after every version is deleted), its
versions and their policies in the ``Store``, and the archives in the ``BlobStore``.
``Functions`` asks it which layer versions a function's ``Layers`` name (:meth:`for_function`).
"""

from __future__ import annotations

import asyncio

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.layer_model import LayerPolicy, LayerRecord, LayerStatement, LayerVersion
from lambdad.control.model import FunctionLayer
from lambdad.control.paging import page
from lambdad.control.requests import (
    AddLayerVersionPermissionRequest,
    LayerVersionContentInput,
    PublishLayerVersionRequest,
)
from lambdad.store import zipcode
from lambdad.store.base import BlobStore, Store, StoreConflict, Table, Write

#: What ListLayers and ListLayerVersions take as ``MaxItems`` at most.
MAX_LAYER_PAGE = 50
NOT_FOUND = "The resource you requested does not exist."
NO_POLICY = "No policy is associated with the given resource."
_PUBLISH_ATTEMPTS = 5


def _content(content: LayerVersionContentInput) -> bytes:
    if content.zip_file is None:
        if content.s3_bucket is None and content.s3_key is None:
            raise errors.InvalidParameterValueException("Missing Content")
        raise errors.InvalidParameterValueException(
            "lambdad accepts layer content as Content.ZipFile only; S3 locations "
            "(S3Bucket, S3Key, S3ObjectVersion) are not supported."
        )
    return content.zip_file


class Layers:
    def __init__(self, store: Store, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    # ---------------------------------------------------------------- helpers

    def _lock(self, scope: Scope, name: str) -> asyncio.Lock:
        return self._locks.setdefault(scope.key(name), asyncio.Lock())

    @staticmethod
    def _name(scope: Scope, raw: str) -> tuple[str, bool]:
        """The layer a ``LayerName`` names, and whether it is this account's and region's."""
        name, region, account = validation.parse_layer_name(raw)
        here = region in (None, scope.region) and account in (None, scope.account_id)
        return name, here

    @staticmethod
    def _version_arn(scope: Scope, raw: str, number: int) -> str:
        """The ARN AWS names in its messages: the given layer ARN, or this region's."""
        name, region, _ = validation.parse_layer_name(raw)
        return f"{raw}:{number}" if region is not None else scope.layer_version_arn(name, number)

    async def _find(self, scope: Scope, raw: str, number: int) -> LayerVersion | None:
        name, here = self._name(scope, raw)
        if not here:
            return None
        doc = await self._store.get(Table.LAYER_VERSIONS, scope.key(name, str(number)))
        return None if doc is None else LayerVersion.from_doc(doc)

    async def _existing(self, scope: Scope, raw: str, number: int) -> LayerVersion:
        """The version, or "Layer version <arn> does not exist." as the policy calls say."""
        found = await self._find(scope, raw, number)
        if found is None:
            raise errors.ResourceNotFoundException(
                f"Layer version {self._version_arn(scope, raw, number)} does not exist."
            )
        return found

    async def _policy(self, scope: Scope, version: LayerVersion) -> LayerPolicy | None:
        key = scope.key(version.name, str(version.version))
        doc = await self._store.get(Table.LAYER_POLICIES, key)
        return None if doc is None else LayerPolicy.from_doc(doc)

    @staticmethod
    def _check_revision(policy: LayerPolicy | None, expected: str | None) -> None:
        current = policy.revision_id if policy else ""
        validation.check_revision_id(expected, current, "GetLayerPolicy")

    # ---------------------------------------------------------------- versions

    async def publish(self, scope: Scope, request: PublishLayerVersionRequest) -> LayerVersion:
        """A new version, numbered one past the layer's last (the first is 1)."""
        name, here = self._name(scope, request.layer_name)
        if not here:
            raise errors.ResourceNotFoundException(NOT_FOUND)
        runtimes = request.compatible_runtimes or []
        architectures = request.compatible_architectures or []
        description = request.description or ""
        license_info = request.license_info
        data = _content(request.content)
        info = await asyncio.to_thread(zipcode.inspect_zip, data)
        await self._blobs.put(data)
        draft = LayerVersion(
            name=name,
            version=0,
            code_key=info.sha256_hex,
            code_sha256=info.sha256_b64,
            code_size=info.size,
            unzipped_size=info.unzipped_size,
            description=description,
            compatible_runtimes=tuple(runtimes),
            compatible_architectures=tuple(architectures),
            license_info=license_info,
        )
        async with self._lock(scope, name):
            return await self._number_and_write(scope, draft)

    async def _number_and_write(self, scope: Scope, draft: LayerVersion) -> LayerVersion:
        """Write ``draft`` as the next version; a number taken meanwhile (by another node
        sharing the store) is a conflict on the create-only write, and the next one is tried."""
        for _ in range(_PUBLISH_ATTEMPTS):
            doc = await self._store.get(Table.LAYERS, scope.key(draft.name))
            record = LayerRecord.from_doc(doc) if doc else LayerRecord(name=draft.name)
            number = record.last_version + 1
            published = LayerVersion.from_doc({**draft.to_doc(), "version": number})
            try:
                await self._store.write(
                    [
                        Write(
                            Table.LAYERS,
                            scope.key(draft.name),
                            LayerRecord(draft.name, number, record.created).to_doc(),
                        ),
                        Write(
                            Table.LAYER_VERSIONS,
                            scope.key(draft.name, str(number)),
                            published.to_doc(),
                            create=True,
                        ),
                    ]
                )
            except StoreConflict:
                continue
            return published
        raise errors.ResourceConflictException(
            f"Could not publish a version of layer {draft.name}: too many concurrent publishers."
        )

    async def get_version(self, scope: Scope, raw_name: str, number: int) -> LayerVersion:
        validation.check_layer_version_number(number)
        _, region, account = validation.parse_layer_name(raw_name)
        if region in (None, scope.region) and account not in (None, scope.account_id):
            # Layer version permissions are not applied across accounts yet.
            raise errors.NotAuthorizedOnResource(
                scope.principal_arn, self._version_arn(scope, raw_name, number)
            )
        found = await self._find(scope, raw_name, number)
        if found is None:
            raise errors.ResourceNotFoundException(NOT_FOUND)
        return found

    async def get_by_arn(self, scope: Scope, arn: str) -> LayerVersion:
        region, account, name, number = validation.validate_layer_version_arn(arn)
        if region != scope.region:
            raise errors.ResourceNotFoundException(NOT_FOUND)
        if account != scope.account_id:  # layer version permissions are not applied yet
            raise errors.NotAuthorizedOnResource(scope.principal_arn, arn)
        return await self.get_version(scope, name, number)

    async def delete_version(self, scope: Scope, raw_name: str, number: int) -> None:
        """Delete a version and its policy; nothing to delete is no error. Functions that use
        it keep its content: the blob stays, and their configuration holds its key."""
        validation.check_layer_version_number(number)
        name, here = self._name(scope, raw_name)
        if not here:
            return
        key = scope.key(name, str(number))
        async with self._lock(scope, name):
            await self._store.write(
                [Write(Table.LAYER_VERSIONS, key, None), Write(Table.LAYER_POLICIES, key, None)]
            )

    async def list_versions(
        self,
        scope: Scope,
        raw_name: str,
        *,
        runtime: str | None,
        architecture: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[LayerVersion], str | None]:
        """The versions matching the filters, newest first; none for an unknown layer."""
        name, here = self._name(scope, raw_name)
        rows = await self._store.scan(Table.LAYER_VERSIONS, scope.key(name)) if here else []
        versions = [LayerVersion.from_doc(doc) for _, doc in rows]
        matching = sorted(
            (v for v in versions if v.matches(runtime, architecture)),
            key=lambda v: v.version,
            reverse=True,
        )
        return page(matching, marker, max_items, limit=MAX_LAYER_PAGE)

    async def list_layers(
        self,
        scope: Scope,
        *,
        runtime: str | None,
        architecture: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[LayerVersion], str | None]:
        """Each layer's newest version matching the filters, by layer name; layers with no
        matching version are left out."""
        newest: dict[str, LayerVersion] = {}
        for _, doc in await self._store.scan(Table.LAYER_VERSIONS, scope.key()):
            version = LayerVersion.from_doc(doc)
            best = newest.get(version.name)
            if version.matches(runtime, architecture) and (
                best is None or version.version > best.version
            ):
                newest[version.name] = version
        ordered = [newest[name] for name in sorted(newest)]
        return page(ordered, marker, max_items, limit=MAX_LAYER_PAGE)

    async def total_code_size(self, scope: Scope) -> int:
        """The zipped size of every layer version of the region (GetAccountSettings)."""
        rows = await self._store.scan(Table.LAYER_VERSIONS, scope.key())
        return sum(int(doc.get("code_size", 0)) for _, doc in rows)

    # ---------------------------------------------------------------- permissions

    async def add_permission(
        self, scope: Scope, request: AddLayerVersionPermissionRequest
    ) -> tuple[LayerVersion, LayerStatement, LayerPolicy]:
        """Grant ``lambda:GetLayerVersion``; a statement id already used is a 409 conflict."""
        number = request.version_number
        validation.check_layer_version_number(number)
        statement = LayerStatement(
            sid=request.statement_id,
            action=request.action,
            principal=request.principal,
            organization_id=request.organization_id,
        )
        version = await self._existing(scope, request.layer_name, number)
        async with self._lock(scope, version.name):
            policy = await self._policy(scope, version)
            if policy is not None and policy.find(statement.sid) is not None:
                raise errors.ResourceConflictException(
                    f"The statement id ({statement.sid}) provided already exists. Please provide "
                    "a new statement id, or remove the existing statement."
                )
            self._check_revision(policy, request.revision_id)
            updated = LayerPolicy(statements=(*(policy.statements if policy else ()), statement))
            await self._store.put(
                Table.LAYER_POLICIES,
                scope.key(version.name, str(version.version)),
                updated.to_doc(),
            )
        return version, statement, updated

    async def get_policy(
        self, scope: Scope, raw_name: str, number: int
    ) -> tuple[LayerVersion, LayerPolicy]:
        validation.check_layer_version_number(number)
        version = await self._existing(scope, raw_name, number)
        policy = await self._policy(scope, version)
        if policy is None:
            raise errors.ResourceNotFoundException(NO_POLICY)
        return version, policy

    async def remove_permission(
        self,
        scope: Scope,
        raw_name: str,
        number: int,
        statement_id: str,
        revision_id: str | None,
    ) -> None:
        """Drop one statement; the policy goes with its last statement."""
        validation.check_layer_version_number(number)
        version = await self._existing(scope, raw_name, number)
        key = scope.key(version.name, str(version.version))
        async with self._lock(scope, version.name):
            policy = await self._policy(scope, version)
            if policy is None:
                raise errors.ResourceNotFoundException(NO_POLICY)
            self._check_revision(policy, revision_id)
            if policy.find(statement_id) is None:
                raise errors.ResourceNotFoundException(
                    f"Statement {statement_id} is not found in resource policy."
                )
            kept = tuple(s for s in policy.statements if s.sid != statement_id)
            if kept:
                await self._store.put(
                    Table.LAYER_POLICIES, key, LayerPolicy(statements=kept).to_doc()
                )
            else:
                await self._store.delete(Table.LAYER_POLICIES, key)

    # ---------------------------------------------------------------- functions

    async def for_function(self, scope: Scope, arns: list[str]) -> tuple[FunctionLayer, ...]:
        """The layer versions a function's ``Layers`` name, in order.

        At most 5, each an existing version of this account and region, no layer twice; each
        refusal is an InvalidParameterValueException with AWS's message.
        """
        parsed = validation.validate_function_layers(arns)
        seen: dict[str, str] = {}
        found: list[FunctionLayer] = []
        for arn, (region, account, name, number) in zip(arns, parsed, strict=True):
            if region != scope.region:
                raise errors.InvalidParameterValueException(
                    "Layers are not in the same region as the function. Layers are expected to "
                    f"be in region {scope.region}."
                )
            if account != scope.account_id:
                # Layer version permissions (AddLayerVersionPermission) are not applied across
                # accounts yet: another account's layer is refused as AWS refuses one that no
                # policy grants (docs/accounts-and-sigv4.md).
                raise errors.AccessDeniedException(
                    f"User: {scope.principal_arn} is not authorized to perform: "
                    f"lambda:GetLayerVersion on resource: {arn} because no resource-based policy "
                    "allows the lambda:GetLayerVersion action"
                )
            version = await self._find(scope, name, number)
            if version is None:
                raise errors.InvalidParameterValueException(f"Layer version {arn} does not exist.")
            layer_arn = arn.rsplit(":", 1)[0]
            if layer_arn in seen:
                raise errors.InvalidParameterValueException(
                    "Two different versions of the same layer are not allowed to be referenced "
                    f"in the same function. {seen[layer_arn]} and {arn} are versions of the same "
                    "layer."
                )
            seen[layer_arn] = arn
            found.append(
                FunctionLayer(arn, version.code_size, version.code_key, version.unzipped_size)
            )
        return tuple(found)
