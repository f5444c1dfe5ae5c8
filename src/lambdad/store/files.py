"""Content-addressed code on the local file system: ``<root>/<hex>.zip`` and ``<root>/<hex>/``.

The file system's errors become the store's own here: a missing zip is ``BlobNotFound``, any
other ``OSError`` ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Hashable
from pathlib import Path

from lambdad.store.base import BlobNotFound, BlobStore, StoreUnavailable
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
        if not _is_key(key):
            raise BlobNotFound(key)
        return self._root / f"{key}.zip"

    async def put(self, data: bytes) -> str:
        key = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        path = self._zip_path(key)
        if not path.exists():
            try:
                self._root.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(_write_atomically, path, data)
            except OSError as exc:
                raise StoreUnavailable(f"cannot store code in {self._root}: {exc}") from exc
        return key

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> bool:
        """Store the bytes ``chunks`` yields under ``key``, written as they come (never all in
        memory) and kept only if they hash to ``key``: False (nothing kept) if they do not."""
        path = self._zip_path(key)
        digest = hashlib.sha256()
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".blob.", dir=self._root)
        except OSError as exc:
            raise StoreUnavailable(f"cannot store code in {self._root}: {exc}") from exc
        kept = False
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(handle.flush)
                await asyncio.to_thread(os.fsync, handle.fileno())
            if digest.hexdigest() == key:
                await asyncio.to_thread(os.replace, tmp, path)
                kept = True
        except OSError as exc:
            raise StoreUnavailable(f"cannot store code in {self._root}: {exc}") from exc
        finally:
            if not kept:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return kept

    async def get(self, key: str) -> bytes:
        path = self._zip_path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot read code {path}: {exc}") from exc

    async def exists(self, key: str) -> bool:
        return _is_key(key) and self._zip_path(key).exists()

    async def unpacked(self, key: str) -> Path:
        self._zip_path(key)  # a key, not a path
        dest = self._root / key
        if dest.is_dir():
            return dest

        async def unpack() -> Path:
            data = await self.get(key)
            await asyncio.to_thread(extract_atomically, data, dest)
            return dest

        return await single_flight(self._unpacking, key, unpack)


def _is_key(key: str) -> bool:
    """A blob key: 64 lowercase hex digits (a SHA-256), so never a path of its own."""
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)
