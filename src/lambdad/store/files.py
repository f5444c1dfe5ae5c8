"""Content-addressed code on the local file system: ``<root>/<hex>.zip`` and ``<root>/<hex>/``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Hashable
from pathlib import Path

from lambdad.store.base import BlobStore
from lambdad.store.once import single_flight
from lambdad.store.zipcode import extract_atomically


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".blob.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FileBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self._root = root
        self._unpacking: dict[Hashable, asyncio.Task[Path]] = {}

    def _zip_path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise FileNotFoundError(key)
        return self._root / f"{key}.zip"

    async def put(self, data: bytes) -> str:
        key = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        path = self._zip_path(key)
        if not path.exists():
            self._root.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(_write_atomically, path, data)
        return key

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._zip_path(key).read_bytes)

    async def exists(self, key: str) -> bool:
        return self._zip_path(key).exists()

    async def unpacked(self, key: str) -> Path:
        dest = self._root / key
        if dest.is_dir():
            return dest

        async def unpack() -> Path:
            data = await self.get(key)
            await asyncio.to_thread(extract_atomically, data, dest)
            return dest

        return await single_flight(self._unpacking, key, unpack)
