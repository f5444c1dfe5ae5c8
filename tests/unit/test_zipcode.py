"""Unit tests of deployment-package checks and extraction in ``lambdad.control.zipcode``."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest

from lambdad.errors import InvalidParameterValueException, RequestTooLargeException
from lambdad.store import zipcode

Member = tuple[str, bytes, int]  # name, content, unix mode (with file type bits)

FILE = stat.S_IFREG
LINK = stat.S_IFLNK
DIR = stat.S_IFDIR


def build(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content, mode in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def corrupt(data: bytes) -> None:
    with pytest.raises(InvalidParameterValueException) as info:
        zipcode.inspect_zip(data)
    assert info.value.message == zipcode.CORRUPT_MESSAGE


def test_inspect_describes_package() -> None:
    """The info carries AWS's base64 CodeSha256, the hex digest and the sizes."""
    data = build(("app.py", b"x" * 100, FILE | 0o644), ("lib/", b"", DIR | 0o755))
    info = zipcode.inspect_zip(data)
    digest = hashlib.sha256(data).digest()
    assert info.sha256_b64 == base64.b64encode(digest).decode()
    assert info.sha256_hex == digest.hex()
    assert (info.size, info.unzipped_size, info.entries) == (len(data), 100, 2)


def test_zips_without_unix_modes_are_accepted() -> None:
    """Archives written by plain zipfile (no unix mode bits) are ordinary packages."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.js", "exports.handler = async () => 1;")
    assert zipcode.inspect_zip(buffer.getvalue()).entries == 1


def test_garbage_empty_and_truncated_are_corrupt() -> None:
    """Bytes that are not a zip, an empty archive and a truncated one cannot be unzipped."""
    corrupt(b"")
    corrupt(b"not a zip at all")
    corrupt(build())
    corrupt(build(("app.py", b"x" * 1000, FILE | 0o644))[:-30])


@pytest.mark.parametrize("name", ["/etc/passwd", "../evil.py", "lib/../../evil.py"])
def test_paths_outside_root_are_corrupt(name: str) -> None:
    """Absolute names and names with '..' are refused."""
    corrupt(build((name, b"x", FILE | 0o644)))


@pytest.mark.parametrize(
    "members",
    [
        [("up", b"..", LINK | 0o777)],
        [("abs", b"/etc", LINK | 0o777)],
        [("lib/deep", b"../../x", LINK | 0o777)],
        [("a", b".", LINK | 0o777), ("a/b", b"../..", LINK | 0o777)],
        [("loop1", b"loop2", LINK | 0o777), ("loop2", b"loop1", LINK | 0o777)],
    ],
)
def test_symlinks_escaping_root_are_corrupt(members: list[Member]) -> None:
    """Symlinks resolving outside the root, even through other symlinks, are refused."""
    corrupt(build(*members))


def test_entries_below_a_symlink_are_corrupt() -> None:
    """An entry whose path goes through a symlink of the archive is refused."""
    corrupt(
        build(
            ("real/", b"", DIR | 0o755), ("alias", b"real", LINK | 0o777), ("alias/f", b"x", FILE)
        )
    )


def test_symlinks_inside_root_are_accepted() -> None:
    """Relative symlinks that stay inside the root are fine."""
    data = build(
        ("lib/mod.py", b"x", FILE | 0o644),
        ("mod.py", b"lib/mod.py", LINK | 0o777),
        ("lib/self", b"../lib", LINK | 0o777),
    )
    assert zipcode.inspect_zip(data).entries == 3


def test_zipped_size_limit() -> None:
    """A zip over 50 MB is too large before anything else is looked at."""
    with pytest.raises(RequestTooLargeException) as info:
        zipcode.inspect_zip(b"\0" * (zipcode.MAX_ZIPPED_BYTES + 1))
    assert info.value.message == "Zipped size must be smaller than 52428800 bytes"
    assert info.value.code == "RequestEntityTooLargeException"


def test_unzipped_size_limit() -> None:
    """A package unzipping to 250 MB or more is refused with AWS's message."""
    half = zipcode.MAX_UNZIPPED_BYTES // 2
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("a.bin", "b.bin"):
            with archive.open(name, "w", force_zip64=True) as out:
                for _ in range(half // (1 << 20)):
                    out.write(bytes(1 << 20))
    with pytest.raises(InvalidParameterValueException) as info:
        zipcode.inspect_zip(buffer.getvalue())
    assert info.value.message == "Unzipped size must be smaller than 262144000 bytes"


def test_extract_keeps_modes_and_symlinks(tmp_path: Path) -> None:
    """Extraction keeps exec bits, makes files readable, dirs 0o755 and inner symlinks."""
    data = build(
        ("bootstrap", b"#!/bin/sh\n", FILE | 0o700),
        ("lib/data.txt", b"hello", FILE | 0o600),
        ("empty/", b"", DIR | 0o700),
        ("link.txt", b"lib/data.txt", LINK | 0o777),
    )
    dest = tmp_path / "task"
    zipcode.extract_zip(data, dest)
    assert stat.S_IMODE((dest / "bootstrap").stat().st_mode) == 0o744
    assert stat.S_IMODE((dest / "lib" / "data.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "lib").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "empty").stat().st_mode) == 0o755
    assert (dest / "link.txt").is_symlink()
    assert (dest / "link.txt").read_text() == "hello"


def test_extract_refuses_bad_crc(tmp_path: Path) -> None:
    """Content that fails its CRC is reported as an unreadable upload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("app.py", b"original content")
    data = buffer.getvalue().replace(b"original content", b"tampered content")
    zipcode.inspect_zip(data)  # the central directory alone looks fine
    with pytest.raises(InvalidParameterValueException) as info:
        zipcode.extract_zip(data, tmp_path / "task")
    assert info.value.message == zipcode.CORRUPT_MESSAGE


def test_extract_refuses_escapes_before_writing(tmp_path: Path) -> None:
    """A refused archive leaves nothing behind, not even the destination."""
    dest = tmp_path / "task"
    with pytest.raises(InvalidParameterValueException):
        zipcode.extract_zip(build(("ok.py", b"x", FILE | 0o644), ("../evil", b"x", FILE)), dest)
    assert not dest.exists()
    assert not (tmp_path / "evil").exists()
