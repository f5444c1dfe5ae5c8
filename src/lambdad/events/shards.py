"""What a stream poller needs of a stream, whichever service holds it.

Kinesis and DynamoDB Streams are read the same way: a stream has shards (a shard may have
parents, after a split or a merge, and is read only after them), a shard is read through an
iterator from a position, and each read gives a page of records and the next iterator.
``StreamReader`` is that contract; ``lambdad.events.kinesis`` and
``lambdad.events.dynamodb_streams`` implement it, and the shard poller
(``lambdad.events.stream_poller``) drives any of them: batches, checkpoints, retries,
bisecting, parallelization and the on-failure destination are the same for both kinds.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol


class PositionKind(enum.StrEnum):
    """Where an iterator starts, by the names both services use."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"  # Kinesis only
    AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"
    AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    kind: PositionKind
    #: The sequence number of ``AT_``/``AFTER_SEQUENCE_NUMBER``.
    sequence_number: str | None = None
    #: Epoch seconds, for ``AT_TIMESTAMP``.
    timestamp: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    #: The shard it was split from, or the first of the two it was merged from.
    parent_id: str | None
    #: The second parent of a merge.
    adjacent_parent_id: str | None
    starting_sequence_number: str
    #: Set once the shard is closed (split or merged away): no record comes after it.
    ending_sequence_number: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StreamRecord:
    sequence_number: str
    #: Epoch seconds: Kinesis's ApproximateArrivalTimestamp, DynamoDB's
    #: ApproximateCreationDateTime (the record's age and tumbling windows count from it).
    arrival: float
    #: What ParallelizationFactor keeps in order: Kinesis's partition key; DynamoDB's item
    #: keys, serialised canonically.
    partition_key: str
    size_bytes: int
    #: The record as Lambda hands it to the function, one item of the event's ``Records``.
    event: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    records: list[StreamRecord]
    #: None when the shard is closed and every record of it has been read.
    next_iterator: str | None
    #: Kinesis's MillisBehindLatest (None where the service does not say).
    behind_ms: int | None = None


class StreamReader(Protocol):
    """One stream, as one kind of service shows it."""

    #: ``KinesisBatchInfo`` or ``DDBStreamBatchInfo``: the key of the on-failure record.
    batch_info_key: str

    async def shards(self) -> list[Shard]:
        """Every shard the stream has now (open and closed ones still retained)."""
        ...

    async def iterator(self, shard_id: str, position: Position) -> str:
        """A shard iterator at ``position``."""
        ...

    async def read(self, iterator: str, limit: int) -> Page:
        """Up to ``limit`` records from ``iterator`` and the iterator after them."""
        ...

    async def anchor(self, shard_id: str) -> Position:
        """A position that means ``LATEST`` as of now and still means it later: where a
        ``LATEST`` mapping resumes after a restart that came before it did any record."""
        ...

    async def close(self) -> None:
        """Release what the reader holds. Idempotent."""
        ...
