"""How far a stream mapping has processed each shard, kept in the store.

One document per ``(account, region, mapping uuid, shard id)`` in
``Table.STREAM_CHECKPOINTS``: the sequence number of the last record done (every record up to
it was delivered, filtered out or sent to the on-failure destination) and whether the shard
is read to its end (a closed shard whose children may now be read). The shard poller writes it
after each batch; a poller started again (a restart of lambdad, an update of the mapping)
resumes ``AFTER_SEQUENCE_NUMBER`` it. Before any record is done, a ``LATEST`` mapping stores
where ``LATEST`` was when it first opened the shard (``start``), so a restart resumes there
instead of at a later ``LATEST``.
"""

from __future__ import annotations

import dataclasses

from lambdad.control.arns import Scope
from lambdad.events.shards import Position, PositionKind
from lambdad.store.base import Store, Table


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    #: The last sequence number done; None when nothing of the shard was done yet.
    sequence_number: str | None
    #: The shard is closed and every record of it is done.
    finished: bool = False
    #: Where to resume while ``sequence_number`` is None (a durable stand-in for ``LATEST``).
    start: Position | None = None


class Checkpoints:
    """The checkpoints of one mapping's shards."""

    def __init__(self, store: Store, scope: Scope, mapping_uuid: str) -> None:
        self._store = store
        self._scope = scope
        self._uuid = mapping_uuid

    async def get(self, shard_id: str) -> Checkpoint | None:
        doc = await self._store.get(Table.STREAM_CHECKPOINTS, self._key(shard_id))
        if doc is None:
            return None
        start = doc.get("start")
        return Checkpoint(
            doc.get("sequence_number"),
            bool(doc.get("finished", False)),
            _position(start) if isinstance(start, dict) else None,
        )

    async def put(self, shard_id: str, checkpoint: Checkpoint) -> None:
        doc: dict[str, object] = {
            "sequence_number": checkpoint.sequence_number,
            "finished": checkpoint.finished,
        }
        if checkpoint.start is not None:
            start = checkpoint.start
            doc["start"] = {
                "kind": start.kind.value,
                "sequence_number": start.sequence_number,
                "timestamp": start.timestamp,
            }
        await self._store.put(Table.STREAM_CHECKPOINTS, self._key(shard_id), doc)

    async def forget(self) -> int:
        """Delete every checkpoint of the mapping (it was deleted); how many."""
        return await self._store.delete_prefix(
            Table.STREAM_CHECKPOINTS, self._scope.key(self._uuid)
        )

    def _key(self, shard_id: str) -> tuple[str, ...]:
        return self._scope.key(self._uuid, shard_id)


def _position(doc: dict[str, object]) -> Position:
    sequence, stamp = doc.get("sequence_number"), doc.get("timestamp")
    return Position(
        PositionKind(str(doc["kind"])),
        str(sequence) if sequence is not None else None,
        float(stamp) if isinstance(stamp, int | float) else None,
    )
