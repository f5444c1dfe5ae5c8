"""Minutes of metrics in the metadata store, one document per account, region and minute.

``observe.metrics.Metrics`` keeps its minutes through this (its ``MetricsArchive``): rows are
written at each flush (the minutes that changed), read back at start, and deleted once past
retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lambdad.store.base import Store, Table, Write


def _minute_key(minute: int) -> str:
    return f"{minute:010d}"


class StoredMetrics:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def load(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        rows = await self._store.scan(Table.METRICS)
        return [
            (key[0], key[1], int(key[2]), doc)
            for key, doc in rows
            if len(key) == 3 and key[2].isdigit()
        ]

    async def save(self, rows: Sequence[tuple[str, str, int, dict[str, Any]]]) -> None:
        if rows:
            await self._store.write(
                [Write(Table.METRICS, (a, r, _minute_key(m)), doc) for a, r, m, doc in rows]
            )

    async def drop(self, keys: Sequence[tuple[str, str, int]]) -> None:
        if keys:
            await self._store.write(
                [Write(Table.METRICS, (a, r, _minute_key(m)), None) for a, r, m in keys]
            )
