"""Deployment packages: check a zip as AWS Lambda does, and unpack it safely.

:func:`inspect_zip` reads only the central directory (and symlink targets), so it is cheap
enough for the request path. :func:`extract_zip` does file IO and checks every CRC; run it in
a thread. Both refuse the same archives with the same errors:

- over 50 MB zipped: RequestTooLargeException ``Zipped size must be smaller than 52428800 bytes``
- unreadable, empty, an entry outside the root (absolute, ``..``), a symlink resolving outside
  the root, an entry below a symlink: InvalidParameterValueException
  ``Could not unzip uploaded file. Please check your file, then try to upload again.``
- 250 MB or more unzipped: InvalidParameterValueException
  ``Unzipped size must be smaller than 262144000 bytes``

A file system failure while unpacking (a full disk, a missing directory) is ``StoreUnavailable``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Literal

from lambdad.errors import InvalidParameterValueException, RequestTooLargeException
from lambdad.store.atomic import build_dir
from lambdad.store.base import StoreUnavailable

MAX_ZIPPED_BYTES = 52_428_800
MAX_UNZIPPED_BYTES = 262_144_000
CORRUPT_MESSAGE = "Could not unzip uploaded file. Please check your file, then try to upload again."

_MAX_LINK_HOPS = 40
_MAX_LINK_TARGET = 4096
_UTF8_FLAG = 0x800
_CHUNK = 1 << 20
#: What zipfile and its decompressors raise on a damaged or unsupported archive.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)

Kind = Literal["file", "dir", "symlink"]


@dataclasses.dataclass(frozen=True, slots=True)
class ZipInfo:
    """What lambdad records of a deployment package. ``sha256_b64`` is AWS's CodeSha256."""

    sha256_b64: str
    sha256_hex: str
    size: int
    unzipped_size: int
    entries: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    parts: tuple[str, ...]
    kind: Kind
    mode: int
    member: zipfile.ZipInfo
    target: str = ""


def inspect_zip(data: bytes) -> ZipInfo:
    """Check a deployment package and describe it; raises as the module docstring says."""
    entries = _plan(data)
    digest = hashlib.sha256(data).digest()
    return ZipInfo(
        sha256_b64=base64.b64encode(digest).decode("ascii"),
        sha256_hex=digest.hex(),
        size=len(data),
        unzipped_size=sum(entry.member.file_size for entry in entries),
        entries=len(entries),
    )


def extract_zip(data: bytes, dest: Path) -> None:
    """Unpack into ``dest`` (created if missing, expected empty), never writing outside it.

    Directories get 0o755; files keep their unix mode bits (so ``bootstrap`` stays executable)
    and are at least 0o644; symlinks are created last, each already proven to stay inside.
    """
    entries = _plan(data)
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for entry in entries:
                if entry.kind == "dir":
                    _ensure_dir(dest, entry.parts)
                elif entry.kind == "file":
                    _ensure_dir(dest, entry.parts[:-1])
                    _write_file(archive, entry, dest.joinpath(*entry.parts))
    except _ZIP_ERRORS as exc:
        raise InvalidParameterValueException(CORRUPT_MESSAGE) from exc
    for entry in entries:
        if entry.kind == "symlink":
            _ensure_dir(dest, entry.parts[:-1])
            os.symlink(entry.target, dest.joinpath(*entry.parts))


def extract_atomically(data: bytes, dest: Path) -> None:
    """Unpack into a sibling staging directory, then rename it to ``dest`` in one step."""
    try:
        build_dir(dest, lambda staging: extract_zip(data, staging))
    except OSError as exc:
        raise StoreUnavailable(f"cannot unpack code into {dest}: {exc}") from exc


# ---- planning: every check, no file written --------------------------------------------


def _plan(data: bytes) -> list[_Entry]:
    if len(data) > MAX_ZIPPED_BYTES:
        raise RequestTooLargeException(f"Zipped size must be smaller than {MAX_ZIPPED_BYTES} bytes")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = _read_entries(archive)
    except _ZIP_ERRORS as exc:
        raise InvalidParameterValueException(CORRUPT_MESSAGE) from exc
    if not entries:
        raise InvalidParameterValueException(CORRUPT_MESSAGE)
    if sum(entry.member.file_size for entry in entries) >= MAX_UNZIPPED_BYTES:
        raise InvalidParameterValueException(
            f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes"
        )
    _check_layout(entries)
    return entries


def _read_entries(archive: zipfile.ZipFile) -> list[_Entry]:
    by_path: dict[tuple[str, ...], _Entry] = {}
    for member in archive.infolist():
        name = _member_name(member)
        parts = _safe_parts(name)
        if not parts:
            continue
        mode = member.external_attr >> 16
        kind: Kind = "file"
        target = ""
        if name.endswith("/") or stat.S_ISDIR(mode):
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind, target = "symlink", _link_target(archive, member)
        by_path[parts] = _Entry(parts, kind, mode, member, target)  # the last duplicate wins
    return list(by_path.values())


def _member_name(member: zipfile.ZipInfo) -> str:
    """The name as the bytes a Linux unzip would use: zipfile decodes non-UTF-8 ones as cp437."""
    if member.flag_bits & _UTF8_FLAG:
        return member.filename
    return member.filename.encode("cp437").decode("utf-8", "surrogateescape")


def _safe_parts(name: str) -> tuple[str, ...]:
    if name.startswith("/") or "\x00" in name:
        raise InvalidParameterValueException(CORRUPT_MESSAGE)
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise InvalidParameterValueException(CORRUPT_MESSAGE)
    return parts


def _link_target(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> str:
    if not 0 < member.file_size <= _MAX_LINK_TARGET:
        raise InvalidParameterValueException(CORRUPT_MESSAGE)
    target = archive.read(member).decode("utf-8", "surrogateescape")
    if target.startswith("/") or "\x00" in target:
        raise InvalidParameterValueException(CORRUPT_MESSAGE)
    return target


def _check_layout(entries: list[_Entry]) -> None:
    """No entry below a symlink or a file, and every symlink resolves inside the root."""
    kinds = {entry.parts: entry.kind for entry in entries}
    links = {entry.parts: entry.target for entry in entries if entry.kind == "symlink"}
    for entry in entries:
        for depth in range(1, len(entry.parts)):
            if kinds.get(entry.parts[:depth], "dir") != "dir":
                raise InvalidParameterValueException(CORRUPT_MESSAGE)
    for parts in links:
        if _escapes(parts, links):
            raise InvalidParameterValueException(CORRUPT_MESSAGE)


def _escapes(link: tuple[str, ...], links: dict[tuple[str, ...], str]) -> bool:
    """Resolve ``link`` through the archive's own symlinks; True if it leaves the root."""
    resolved = list(link[:-1])
    pending = links[link].split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return True
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get(tuple(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS or target.startswith("/"):
                return True
            resolved.pop()
            pending = target.split("/") + pending
    return False


# ---- writing ----------------------------------------------------------------------------


def _ensure_dir(dest: Path, parts: tuple[str, ...]) -> None:
    path = dest
    for part in parts:
        path = path / part
        if not path.is_dir():
            path.mkdir(mode=0o755)
            path.chmod(0o755)  # mkdir's mode is filtered by the umask


def _write_file(archive: zipfile.ZipFile, entry: _Entry, path: Path) -> None:
    mode = (entry.mode & 0o777) | 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(path, flags, mode)
    written = 0
    with os.fdopen(fd, "wb") as out, archive.open(entry.member) as source:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > entry.member.file_size:
                raise InvalidParameterValueException(CORRUPT_MESSAGE)
            out.write(chunk)
        os.fchmod(out.fileno(), mode)
