"""A function's layers, extracted in order into one directory: what it sees at ``/opt``.

Later layers win, as on Lambda. The merged tree is built once per combination of layer
versions (named by a hash of their keys), from hard links to the already extracted layer
zips where the file system allows, so it costs little space and time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Hashable, Sequence
from pathlib import Path

from lambdad.store.atomic import build_dir
from lambdad.store.base import BlobStore
from lambdad.store.once import single_flight


def _merge(sources: Sequence[Path], staging: Path) -> None:
    for source in sources:
        for directory, dirs, files in os.walk(source):
            rel = Path(directory).relative_to(source)
            target_dir = staging / rel
            target_dir.mkdir(parents=True, exist_ok=True)
            for name in dirs:
                link = Path(directory) / name
                if link.is_symlink():
                    _replace_with_link(link, target_dir / name)
            for name in files:
                _place(Path(directory) / name, target_dir / name)


def _replace_with_link(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    target.symlink_to(os.readlink(source))


def _place(source: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class LayerAssembler:
    def __init__(self, blobs: BlobStore, root: Path) -> None:
        self._blobs = blobs
        self._root = root
        self._building: dict[Hashable, asyncio.Task[Path]] = {}

    async def assemble(self, keys: Sequence[str]) -> Path:
        """The merged directory of the layers ``keys`` (in order), built once."""
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()
        dest = self._root / name
        if dest.is_dir():
            return dest

        async def build() -> Path:
            sources = [await self._blobs.unpacked(key) for key in keys]
            await asyncio.to_thread(build_dir, dest, lambda staging: _merge(sources, staging))
            return dest

        return await single_flight(self._building, name, build)
