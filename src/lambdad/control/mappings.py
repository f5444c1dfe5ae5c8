"""Event source mappings: Create/Get/Update/Delete/ListEventSourceMapping(s), their tags, and
the state machine Lambda shows.

Each mapping is a document of ``Table.EVENT_SOURCE_MAPPINGS`` keyed ``(account, region,
uuid)``. A write answers with a transitional state (``Creating``, ``Enabling``, ``Disabling``,
``Updating``, ``Deleting``) and settles it ``settle_delay`` later (``Enabled``, ``Disabled``,
or the row gone), as Lambda does; a restart settles what a stop left half-way. Whoever runs
pollers subscribes (``subscribe``) and hears of every settled mapping (``MappingSettled``) and
of every one removed (``MappingRemoved``). Deleting a function leaves its mappings, as on AWS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Mapping

from lambdad import errors
from lambdad.control import validation
from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.mapping_model import (
    TRANSITIONAL,
    EventSourceMapping,
    MappingState,
    SourceKind,
    check_queues,
    kind_of,
    settings_for,
    starting_position,
    user_reason,
)
from lambdad.control.paging import page
from lambdad.control.requests import (
    CreateEventSourceMappingRequest,
    UpdateEventSourceMappingRequest,
)
from lambdad.store.base import Store, Table

_log = logging.getLogger(__name__)
#: ListEventSourceMappings' default and largest page.
DEFAULT_PAGE = 100
MAX_PAGE = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class MappingSettled:
    """A mapping reached ``Enabled`` or ``Disabled`` (after a create, update, or restart)."""

    mapping: EventSourceMapping


@dataclasses.dataclass(frozen=True, slots=True)
class MappingRemoved:
    mapping: EventSourceMapping


MappingEvent = MappingSettled | MappingRemoved
MappingListener = Callable[[MappingEvent], Awaitable[None]]
#: Asks a source's service whether it exists (raising Lambda's error when it does not); wired
#: by the composition root (``lambdad.events.sources``), since the domain does no IO itself.
SourceCheck = Callable[[SourceKind, str], Awaitable[None]]


#: Validates FilterCriteria patterns in Lambda's filter language (raising
#: InvalidParameterValueException); wired by the composition root (the filter engine lives in
#: ``lambdad.events``). Without one only the patterns' shape is checked.
FilterCheck = Callable[[SourceKind, list[str]], None]


async def _no_check(kind: SourceKind, arn: str) -> None:
    return None


def _shape_only(kind: SourceKind, patterns: list[str]) -> None:
    return None


def _not_found() -> errors.ResourceNotFoundException:
    return errors.ResourceNotFoundException("The resource you requested does not exist.")


class EventSourceMappings:
    """Every event source mapping, its state transitions and its tags."""

    def __init__(
        self,
        store: Store,
        functions: Functions,
        *,
        settle_delay: float = 0.0,
        check_source: SourceCheck = _no_check,
        check_filters: FilterCheck = _shape_only,
    ) -> None:
        self._store = store
        self._functions = functions
        self._check_source = check_source
        self._check_filters = check_filters
        self._settle_delay = settle_delay
        self._listeners: list[MappingListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._closed = False

    def subscribe(self, listener: MappingListener) -> None:
        """Call ``listener`` with every settled or removed mapping from now on."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Settle what a stop left in a transitional state."""
        for key, doc in await self._store.scan(Table.EVENT_SOURCE_MAPPINGS):
            mapping = EventSourceMapping.from_doc(doc)
            if mapping.state in TRANSITIONAL:
                self._settle_later(Scope(key[0], key[1]), mapping.uuid)

    async def close(self) -> None:
        """Stop settling (what is left settles at the next start). Idempotent."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def all(self) -> list[EventSourceMapping]:
        """Every mapping of every account (for the pollers and ``lambdad esm``)."""
        rows = await self._store.scan(Table.EVENT_SOURCE_MAPPINGS)
        return [EventSourceMapping.from_doc(doc) for _, doc in rows]

    async def of_function(self, scope: Scope, name: str) -> list[EventSourceMapping]:
        """The scope's mappings of function ``name`` (any qualifier)."""
        rows = await self._store.scan(Table.EVENT_SOURCE_MAPPINGS, scope.key())
        found = (EventSourceMapping.from_doc(doc) for _, doc in rows)
        return [m for m in found if m.function_name == name]

    # ---------------------------------------------------------------- transitions

    def _settle_later(self, scope: Scope, uuid: str) -> None:
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(
            self._settle(scope, uuid), name=f"settle-mapping-{uuid}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, scope: Scope, uuid: str) -> None:
        try:
            if self._settle_delay:
                await asyncio.sleep(self._settle_delay)
            await self._stop_first(scope, uuid)
            event = await self._settle_now(scope, uuid)
            if event is not None:
                await self._tell(event)
        except Exception:  # settled again at the next start
            _log.exception("settling event source mapping %s failed", uuid)

    async def _stop_first(self, scope: Scope, uuid: str) -> None:
        """A mapping settling ``Disabled`` or being deleted has its poller stopped before the
        state says so: once a mapping reads ``Disabled`` (or is gone) nothing more is delivered
        (AWS), and messages a poll under way took are back in the queue."""
        doc = await self._store.get(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid))
        if doc is None:
            return
        mapping = EventSourceMapping.from_doc(doc)
        if mapping.state == MappingState.DELETING:
            await self._tell(MappingRemoved(mapping))
        elif mapping.state in TRANSITIONAL and not mapping.enabled:
            disabled = dataclasses.replace(mapping, state=MappingState.DISABLED.value)
            await self._tell(MappingSettled(disabled))

    async def _settle_now(self, scope: Scope, uuid: str) -> MappingEvent | None:
        async with self._lock:
            doc = await self._store.get(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid))
            if doc is None:
                return None
            mapping = EventSourceMapping.from_doc(doc)
            if mapping.state == MappingState.DELETING:
                await self._store.delete(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid))
                return MappingRemoved(mapping)
            if mapping.state not in TRANSITIONAL:
                return None
            settled = MappingState.ENABLED if mapping.enabled else MappingState.DISABLED
            mapping = dataclasses.replace(mapping, state=settled.value)
            await self._store.put(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid), mapping.to_doc())
            return MappingSettled(mapping)

    async def _tell(self, event: MappingEvent) -> None:
        for listener in self._listeners:
            try:
                await listener(event)
            except Exception:
                _log.exception("a listener of event source mappings failed on %s", event)

    # ---------------------------------------------------------------- the API

    async def _function(self, scope: Scope, raw_name: str) -> tuple[str, str | None]:
        """(name, qualifier) of an existing function, version or alias; Lambda refuses a
        mapping to one that does not exist with InvalidParameterValueException."""
        name, qualifier = self._functions.name_of(scope, raw_name)
        try:
            await self._functions.lookup(scope, raw_name, None)
        except errors.ResourceNotFoundException:
            raise errors.InvalidParameterValueException("Function does not exist") from None
        return name, qualifier

    async def create(
        self, scope: Scope, request: CreateEventSourceMappingRequest
    ) -> EventSourceMapping:
        """A new mapping, answered ``Creating`` (``Enabled`` once settled, unless created with
        ``Enabled: false``)."""
        if request.topics is not None:
            raise errors.InvalidParameterValueException("Unrecognized event source.")
        if not request.event_source_arn:
            raise errors.InvalidParameterValueException("Unrecognized event source.")
        if not request.function_name:
            raise errors.ValidationException(
                "1 validation error detected: Value null at 'functionName' failed to satisfy "
                "constraint: Member must not be null"
            )
        source = request.event_source_arn
        kind = kind_of(source)
        settings = settings_for(kind, source, request, None)
        settings["queues"] = check_queues(kind, request.queues)
        self._check_filters(kind, settings.get("filters") or [])
        position, stamp = starting_position(kind, request)
        if request.tags:
            validation.validate_tags(request.tags)
        name, qualifier = await self._function(scope, request.function_name)
        await self._check_source(kind, source)
        enabled = request.enabled is not False
        mapping = EventSourceMapping(
            uuid=str(uuid_module.uuid4()),
            account_id=scope.account_id,
            region=scope.region,
            source_arn=source,
            kind=kind.value,
            function_name=name,
            qualifier=qualifier,
            state=MappingState.CREATING.value,
            enabled=enabled,
            state_reason=user_reason(kind),
            starting_position=position,
            starting_position_timestamp=stamp,
            tags=dict(request.tags or {}),
            **settings,
        )
        async with self._lock:
            await self._refuse_duplicate(scope, mapping)
            await self._store.put(
                Table.EVENT_SOURCE_MAPPINGS, scope.key(mapping.uuid), mapping.to_doc()
            )
        self._settle_later(scope, mapping.uuid)
        return mapping

    async def _refuse_duplicate(self, scope: Scope, new: EventSourceMapping) -> None:
        for _, doc in await self._store.scan(Table.EVENT_SOURCE_MAPPINGS, scope.key()):
            old = EventSourceMapping.from_doc(doc)
            if old.uuid == new.uuid:
                continue
            if old.source_arn != new.source_arn or old.function_arn != new.function_arn:
                continue
            if old.queues != new.queues:  # one broker, other queues
                continue
            if new.kind == SourceKind.SQS:
                raise errors.ResourceConflictException(
                    f'An event source mapping with SQS arn (" {old.source_arn} ") and function '
                    f'(" {new.function_name} ") already exists. Please update or delete the '
                    f"existing mapping with UUID {old.uuid}"
                )
            raise errors.ResourceConflictException(
                f'The event source arn (" {old.source_arn} ") and function '
                f'(" {new.function_name} ") provided mapping already exists. Please update or '
                f"delete the existing mapping with UUID {old.uuid}"
            )

    async def get(self, scope: Scope, uuid: str) -> EventSourceMapping:
        doc = await self._store.get(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid))
        if doc is None:
            raise _not_found()
        return EventSourceMapping.from_doc(doc)

    async def update(
        self, scope: Scope, request: UpdateEventSourceMappingRequest
    ) -> EventSourceMapping:
        """Change what Lambda lets change (not the source); answered ``Updating``,
        ``Enabling`` or ``Disabling``. A mapping still in a transition is
        ResourceInUseException, as on AWS."""
        async with self._lock:
            current = await self.get(scope, request.uuid)
            if current.state in TRANSITIONAL:
                raise errors.ResourceInUseException(
                    f"Cannot update the event source mapping {current.uuid} while it is "
                    f"{current.state}. Please try again later."
                )
            kind = SourceKind(current.kind)
            changes = settings_for(kind, current.source_arn, request, current)
            self._check_filters(kind, changes.get("filters") or [])
            if request.function_name is not None:
                name, qualifier = await self._function(scope, request.function_name)
                changes |= {"function_name": name, "qualifier": qualifier}
            state = _update_state(current, request.enabled)
            enabled = current.enabled if request.enabled is None else request.enabled
            updated = current.changed(**changes, state=state.value, enabled=enabled)
            if request.function_name is not None:
                await self._refuse_duplicate(scope, updated)
            await self._store.put(
                Table.EVENT_SOURCE_MAPPINGS, scope.key(current.uuid), updated.to_doc()
            )
        self._settle_later(scope, current.uuid)
        return updated

    async def delete(self, scope: Scope, uuid: str) -> EventSourceMapping:
        """Answered ``Deleting``; the mapping is gone once settled."""
        async with self._lock:
            current = await self.get(scope, uuid)
            if current.state == MappingState.DELETING:
                return current
            deleting = current.changed(state=MappingState.DELETING.value)
            await self._store.put(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid), deleting.to_doc())
        self._settle_later(scope, uuid)
        return deleting

    async def list_mappings(
        self,
        scope: Scope,
        *,
        source_arn: str | None,
        function_name: str | None,
        marker: str | None,
        max_items: int | None,
    ) -> tuple[list[EventSourceMapping], str | None]:
        """One page of the scope's mappings, filtered by source and by function (a qualified
        name matches only mappings of that qualifier)."""
        rows = await self._store.scan(Table.EVENT_SOURCE_MAPPINGS, scope.key())
        found = [EventSourceMapping.from_doc(doc) for _, doc in rows]
        if source_arn is not None:
            found = [m for m in found if m.source_arn == source_arn]
        if function_name is not None:
            name, qualifier = self._functions.name_of(scope, function_name)
            found = [
                m
                for m in found
                if m.function_name == name and (qualifier is None or m.qualifier == qualifier)
            ]
        found.sort(key=lambda m: (m.last_modified, m.uuid))
        size = DEFAULT_PAGE if max_items is None else min(max_items, MAX_PAGE)
        return page(found, marker, size, limit=MAX_PAGE)

    async def record_result(self, scope: Scope, uuid: str, text: str) -> None:
        """Set the mapping's LastProcessingResult (a poller's report); gone mappings ignored."""
        async with self._lock:
            doc = await self._store.get(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid))
            if doc is None or doc.get("last_processing_result") == text:
                return
            doc["last_processing_result"] = text
            await self._store.put(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid), doc)

    # ---------------------------------------------------------------- tags

    def _uuid_of(self, scope: Scope, arn: str) -> str:
        parts = arn.split(":")
        if parts[3] != scope.region or parts[4] != scope.account_id:
            raise errors.ResourceNotFoundException(f"Event source mapping not found: {arn}")
        return parts[6] if len(parts) > 6 else ""

    async def _tagged(self, scope: Scope, arn: str) -> EventSourceMapping:
        uuid = self._uuid_of(scope, arn)
        doc = await self._store.get(Table.EVENT_SOURCE_MAPPINGS, scope.key(uuid))
        if doc is None:
            raise errors.ResourceNotFoundException(f"Event source mapping not found: {arn}")
        return EventSourceMapping.from_doc(doc)

    async def tags(self, scope: Scope, arn: str) -> dict[str, str]:
        return (await self._tagged(scope, arn)).tags

    async def tag(self, scope: Scope, arn: str, tags: Mapping[str, str]) -> None:
        if not tags:
            raise errors.InvalidParameterValueException(
                "An error occurred and the request cannot be processed."
            )
        async with self._lock:
            mapping = await self._tagged(scope, arn)
            merged = {**mapping.tags, **tags}
            validation.validate_tags(merged)
            await self._write_tags(scope, mapping, merged)

    async def untag(self, scope: Scope, arn: str, keys: list[str]) -> None:
        if not keys:
            raise errors.ValidationException(
                "1 validation error detected: Value null at 'tagKeys' failed to satisfy "
                "constraint: Member must not be null"
            )
        async with self._lock:
            mapping = await self._tagged(scope, arn)
            remaining = {k: v for k, v in mapping.tags.items() if k not in set(keys)}
            await self._write_tags(scope, mapping, remaining)

    async def _write_tags(
        self, scope: Scope, mapping: EventSourceMapping, tags: dict[str, str]
    ) -> None:
        updated = dataclasses.replace(mapping, tags=tags)
        await self._store.put(
            Table.EVENT_SOURCE_MAPPINGS, scope.key(mapping.uuid), updated.to_doc()
        )


def _update_state(current: EventSourceMapping, enabled: bool | None) -> MappingState:
    """The state an update answers: ``Enabled`` toggles, anything else is ``Updating``."""
    if enabled is None or enabled == current.enabled:
        return MappingState.UPDATING
    return MappingState.ENABLING if enabled else MappingState.DISABLING
