"""Unit tests of the checks the composition root plugs into event source mappings (the
filter language's validator), behind the in-memory ``Store``."""

from __future__ import annotations

import asyncio

import pytest

from lambdad import errors
from lambdad.control.arns import Scope
from lambdad.control.functions import Functions
from lambdad.control.mapping_model import EventSourceMapping, SourceKind
from lambdad.control.mappings import EventSourceMappings
from lambdad.control.requests import Filter, FilterCriteria, UpdateEventSourceMappingRequest
from lambdad.store.base import Table
from lambdad.store.memory import MemoryBlobStore, MemoryStore

SCOPE = Scope("123456789012", "us-east-1")


def test_filters_go_through_the_plugged_validator_on_update() -> None:
    """An update's FilterCriteria patterns reach ``check_filters`` with the mapping's kind;
    what it raises is the answer, and nothing is stored."""
    seen: list[tuple[SourceKind, list[str]]] = []

    def check(kind: SourceKind, patterns: list[str]) -> None:
        seen.append((kind, patterns))
        if any("bad" in p for p in patterns):
            raise errors.InvalidParameterValueException("Invalid filter pattern definition.")

    async def main() -> None:
        store = MemoryStore()
        await store.open()
        mappings = EventSourceMappings(
            store, Functions(store, MemoryBlobStore()), check_filters=check
        )
        mapping = EventSourceMapping(
            uuid="u",
            account_id=SCOPE.account_id,
            region=SCOPE.region,
            source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
            kind="kinesis",
            function_name="fn",
            qualifier=None,
            state="Enabled",
        )
        await store.put(Table.EVENT_SOURCE_MAPPINGS, SCOPE.key("u"), mapping.to_doc())

        def update(pattern: str) -> UpdateEventSourceMappingRequest:
            criteria = FilterCriteria(filters=[Filter(pattern=pattern)])
            return UpdateEventSourceMappingRequest(uuid="u", filter_criteria=criteria)

        with pytest.raises(errors.InvalidParameterValueException):
            await mappings.update(SCOPE, update('{"bad": [1]}'))
        assert (await mappings.get(SCOPE, "u")).filters is None
        await mappings.update(SCOPE, update('{"data": {"good": [1]}}'))
        assert (await mappings.get(SCOPE, "u")).filters == ['{"data": {"good": [1]}}']
        assert [kind for kind, _ in seen] == [SourceKind.KINESIS, SourceKind.KINESIS]
        await mappings.close()
        await store.close()

    asyncio.run(main())
