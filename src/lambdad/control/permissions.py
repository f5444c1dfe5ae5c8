"""Resource-based policies of functions, versions and aliases.

``FunctionPolicies`` serves AddPermission / RemovePermission / GetPolicy (one statement at a
time) and Get/Put/DeleteResourcePolicy (the whole document) over one stored policy per
function, version or alias, in ``Table.FUNCTION_POLICIES`` keyed ``(account, region, function,
qualifier or "")``. A policy goes with its function (in DeleteFunction's one store write),
and with its version or alias (this listens to the function change stream). ``policy_for``,
``allows_invoke`` and ``allows_url`` answer the invoke path from a cache kept in step with
every write here; the decisions themselves are ``lambdad.control.policies``.

Each change gives the policy a new RevisionId; GetPolicy returns it and AddPermission,
RemovePermission, PutResourcePolicy and DeleteResourcePolicy check it. Before a policy exists,
AddPermission checks a RevisionId against the function's (or alias's), as AWS does.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.changes import AliasDeleted, Change, FunctionDeleted
from lambdad.control.functions import Functions
from lambdad.control.model import LATEST, new_revision
from lambdad.control.policies import RequestContext, may_invoke, may_invoke_url
from lambdad.control.policy_documents import (
    check_size,
    empty_document,
    parse_document,
    statement_of,
    statements,
)
from lambdad.control.requests import (
    AddPermissionRequest,
    PutResourcePolicyRequest,
    RemovePermissionRequest,
)
from lambdad.store.base import Key, Store, StoreChange, Table

NOT_FOUND = "The resource you requested does not exist."
NO_POLICY = "No policy is associated with the given resource."


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """The function, version or alias a policy call addresses."""

    name: str
    #: ``""`` for the function itself ($LATEST), else the version or alias.
    qualifier: str
    arn: str
    #: The function's, version's or alias's own RevisionId.
    revision_id: str

    def key(self, scope: Scope) -> Key:
        return (scope.account_id, scope.region, self.name, self.qualifier)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredPolicy:
    document: dict[str, Any]
    revision_id: str

    def to_doc(self) -> dict[str, Any]:
        return {"document": self.document, "revision_id": self.revision_id}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StoredPolicy:
        return cls(document=doc["document"], revision_id=doc["revision_id"])


def _is_version(qualifier: str) -> bool:
    return qualifier.isdigit() or qualifier.startswith("$LATEST")


class FunctionPolicies:
    """Every function's resource-based policies."""

    def __init__(self, store: Store, functions: Functions) -> None:
        self._store = store
        self._functions = functions
        self._lock = asyncio.Lock()
        self._cache: dict[Key, StoredPolicy | None] = {}
        functions.changes.subscribe(self._changed)

    # ---------------------------------------------------------------- invoke path

    async def policy_for(
        self, scope: Scope, name: str, qualifier: str | None
    ) -> dict[str, Any] | None:
        """The policy document of the function (``qualifier`` None or ``$LATEST``), version or
        alias ``name`` names, or None: what ``policies.may_invoke`` evaluates."""
        key = (
            scope.account_id,
            scope.region,
            name,
            "" if qualifier in (None, LATEST) else qualifier,
        )
        if key not in self._cache:
            doc = await self._store.get(Table.FUNCTION_POLICIES, key)
            self._cache.setdefault(key, None if doc is None else StoredPolicy.from_doc(doc))
        stored = self._cache[key]
        return None if stored is None else stored.document

    async def allows_invoke(
        self, scope: Scope, name: str, qualifier: str | None, context: RequestContext
    ) -> bool:
        """Whether ``context`` may Invoke the function, version or alias (``policies.may_invoke``
        over its policy; ``scope`` is the function owner's)."""
        resource = scope.function_arn(name, None if qualifier in (None, LATEST) else qualifier)
        policy = await self.policy_for(scope, name, qualifier)
        return may_invoke(
            policy, owner_account=scope.account_id, resource=resource, context=context
        )

    async def allows_url(
        self,
        scope: Scope,
        name: str,
        qualifier: str | None,
        auth_type: str,
        context: RequestContext,
    ) -> bool:
        """Whether a request through the function URL of ``name`` (``qualifier``: None or an
        alias) with ``auth_type`` may invoke it (``policies.may_invoke_url``)."""
        resource = scope.function_arn(name, None if qualifier in (None, LATEST) else qualifier)
        policy = await self.policy_for(scope, name, qualifier)
        return may_invoke_url(
            policy,
            owner_account=scope.account_id,
            resource=resource,
            auth_type=auth_type,
            context=context,
        )

    async def _changed(self, change: Change) -> None:
        """A deleted function, version or alias takes its policy with it."""
        if isinstance(change, FunctionDeleted):
            await self._deleted(change.scope, change.name, change.qualifier)
        elif isinstance(change, AliasDeleted):
            await self._deleted(change.scope, change.name, change.alias)

    def forget_stored(self, change: StoreChange) -> None:
        """Drop the policies another node's write (``Store.subscribe``) may have made stale."""
        for key in [k for k in self._cache if change.covers(Table.FUNCTION_POLICIES, k)]:
            del self._cache[key]

    async def _deleted(self, scope: Scope, name: str, qualifier: str | None) -> None:
        async with self._lock:
            if qualifier is None:  # DeleteFunction removed the rows in its own write
                for key in [k for k in self._cache if k[:3] == scope.key(name)]:
                    del self._cache[key]
                return
            key = scope.key(name, qualifier)
            await self._store.delete(Table.FUNCTION_POLICIES, key)
            self._cache.pop(key, None)

    # ---------------------------------------------------------------- targets and storage

    async def _target(self, scope: Scope, raw_name: str, qualifier: str | None) -> Target:
        """The function, version or alias, which must exist: "Function not found: <arn>" or
        "Cannot find alias arn: <arn>" as AWS says."""
        name, from_name = self._functions.name_of(scope, raw_name)
        qualifier = validation.merge_qualifier(from_name, qualifier)
        if qualifier in (None, LATEST):
            config = await self._functions.get(scope, name, None)
            return Target(name, "", scope.function_arn(name), config.revision_id)
        assert qualifier is not None
        await self._functions.record(scope, name)
        arn = scope.function_arn(name, qualifier)
        if _is_version(qualifier):
            config = await self._functions.get(scope, name, qualifier)
            return Target(name, qualifier, arn, config.revision_id)
        alias = await self._functions.get_alias(scope, name, qualifier)
        return Target(name, qualifier, arn, alias.revision_id)

    async def _load(self, scope: Scope, target: Target) -> StoredPolicy | None:
        doc = await self._store.get(Table.FUNCTION_POLICIES, target.key(scope))
        return None if doc is None else StoredPolicy.from_doc(doc)

    async def _save(self, scope: Scope, target: Target, document: dict[str, Any]) -> StoredPolicy:
        """Store ``document`` under a new revision; the caller holds the lock."""
        stored = StoredPolicy(document, new_revision())
        key = target.key(scope)
        await self._store.put(Table.FUNCTION_POLICIES, key, stored.to_doc())
        self._cache[key] = stored
        return stored

    async def _drop(self, scope: Scope, target: Target) -> None:
        key = target.key(scope)
        await self._store.delete(Table.FUNCTION_POLICIES, key)
        self._cache[key] = None

    # ---------------------------------------------------------------- one statement at a time

    async def add_permission(
        self, scope: Scope, request: AddPermissionRequest
    ) -> tuple[dict[str, Any], StoredPolicy]:
        """Add the statement ``request`` describes; a statement id already used is AWS's 409."""
        _, from_name = self._functions.name_of(scope, request.function_name)
        if validation.merge_qualifier(from_name, request.qualifier) == LATEST:
            raise errors.InvalidParameterValueException(
                "We currently do not support adding policies for $LATEST."
            )
        async with self._lock:
            target = await self._target(scope, request.function_name, request.qualifier)
            stored = await self._load(scope, target)
            current = stored.revision_id if stored else target.revision_id
            validation.check_revision_id(request.revision_id, current, "GetPolicy")
            document = dict(stored.document) if stored else empty_document()
            existing = statements(document)
            if any(s.get("Sid") == request.statement_id for s in existing):
                raise errors.ResourceConflictException(
                    f"The statement id ({request.statement_id}) provided already exists. Please "
                    "provide a new statement id, or remove the existing statement."
                )
            statement = statement_of(request, target.arn)
            document["Statement"] = [*existing, statement]
            check_size(document)
            return statement, await self._save(scope, target, document)

    async def remove_permission(self, scope: Scope, request: RemovePermissionRequest) -> None:
        """Remove one statement; the policy goes with its last statement."""
        async with self._lock:
            try:
                target = await self._target(scope, request.function_name, request.qualifier)
            except errors.ResourceNotFoundException as exc:
                if exc.message.startswith("Cannot find alias"):
                    raise
                name, _ = self._functions.name_of(scope, request.function_name)
                raise errors.ResourceNotFoundException(
                    f"No policy found for: {scope.function_arn(name)}"
                ) from None
            stored = await self._load(scope, target)
            if stored is None:
                raise errors.ResourceNotFoundException(NO_POLICY)
            existing = statements(stored.document)
            kept = [s for s in existing if s.get("Sid") != request.statement_id]
            if len(kept) == len(existing):
                raise errors.ResourceNotFoundException(
                    f"Statement {request.statement_id} is not found in resource policy."
                )
            validation.check_revision_id(
                request.revision_id, stored.revision_id, "GetFunction/GetAlias"
            )
            if kept:
                await self._save(scope, target, {**stored.document, "Statement": kept})
            else:
                await self._drop(scope, target)

    async def get_policy(self, scope: Scope, raw_name: str, qualifier: str | None) -> StoredPolicy:
        """The policy; a missing function, version, alias or policy is AWS's one answer,
        "The resource you requested does not exist."."""
        try:
            target = await self._target(scope, raw_name, qualifier)
        except errors.ResourceNotFoundException:
            raise errors.ResourceNotFoundException(NOT_FOUND) from None
        stored = await self._load(scope, target)
        if stored is None:
            raise errors.ResourceNotFoundException(NOT_FOUND)
        return stored

    # ---------------------------------------------------------------- the whole document

    async def get_resource_policy(self, scope: Scope, arn: str) -> StoredPolicy:
        """GetResourcePolicy: as GetPolicy, addressed by the resource's ARN."""
        return await self.get_policy(scope, arn, None)

    async def put_resource_policy(
        self, scope: Scope, request: PutResourcePolicyRequest
    ) -> StoredPolicy:
        """Replace the whole policy with ``request.policy``, once it is checked."""
        document = parse_document(request.policy)
        _, from_name = self._functions.name_of(scope, request.resource_arn)
        if from_name == LATEST:
            raise errors.InvalidParameterValueException(
                "We currently do not support adding policies for $LATEST."
            )
        async with self._lock:
            target = await self._target(scope, request.resource_arn, None)
            stored = await self._load(scope, target)
            current = stored.revision_id if stored else ""
            validation.check_revision_id(request.revision_id, current, "GetResourcePolicy")
            return await self._save(scope, target, document)

    async def delete_resource_policy(self, scope: Scope, arn: str, revision_id: str | None) -> None:
        """Delete the whole policy; none is AWS's "No policy is associated ..." answer."""
        async with self._lock:
            target = await self._target(scope, arn, None)
            stored = await self._load(scope, target)
            if stored is None:
                raise errors.ResourceNotFoundException(NO_POLICY)
            validation.check_revision_id(revision_id, stored.revision_id, "GetResourcePolicy")
            await self._drop(scope, target)
