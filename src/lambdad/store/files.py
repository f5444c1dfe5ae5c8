"""Content-addressed code on the local file system: ``<root>/<hex>.zip`` and ``<root>/<hex>/``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from lambdad.store.base import BlobStore
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
        self._unpacking: dict[str, asyncio.Future[Path]] = {}

    def _zip_path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise FileNotFoundError(key)
        return self._root / f"{key}.zip"

    async def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
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
        pending = self._unpacking.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._unpacking[key] = future
        try:
            data = await self.get(key)
            await asyncio.to_thread(extract_atomically, data, dest)
            future.set_result(dest)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved; the caller below re-raises
            raise
        finally:
            del self._unpacking[key]
        return dest
