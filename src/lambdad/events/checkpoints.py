"""How far a stream mapping has processed each shard, kept in the store.

One document per ``(account, region, mapping uuid, shard id)`` in
``Table.STREAM_CHECKPOINTS``: the sequence number of the last record done (every record up to
it was delivered, filtered out or sent to the on-failure destination) and whether the shard
is read to its end (a closed shard whose children may now be read). The shard poller writes it
after each batch; a poller started again (a restart of lambdad, an update of the mapping)
resumes ``AFTER_SEQUENCE_NUMBER`` it.
"""

from __future__ import annotations

import dataclasses

from lambdad.control.arns import Scope
from lambdad.store.base import Store, Table


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    #: The last sequence number done; None when nothing of the shard was done yet.
    sequence_number: str | None
    #: The shard is closed and every record of it is done.
    finished: bool = False


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
        return Checkpoint(doc.get("sequence_number"), bool(doc.get("finished", False)))

    async def put(self, shard_id: str, checkpoint: Checkpoint) -> None:
        doc = {"sequence_number": checkpoint.sequence_number, "finished": checkpoint.finished}
        await self._store.put(Table.STREAM_CHECKPOINTS, self._key(shard_id), doc)

    async def forget(self) -> int:
        """Delete every checkpoint of the mapping (it was deleted); how many."""
        return await self._store.delete_prefix(
            Table.STREAM_CHECKPOINTS, self._scope.key(self._uuid)
        )

    def _key(self, shard_id: str) -> tuple[str, ...]:
        return self._scope.key(self._uuid, shard_id)
