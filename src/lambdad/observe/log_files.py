"""The log store's files: one JSON-lines file per segment, each line one event
(``{"a","r","g","q","s","t","m"}``: account, region, group, position, stream, timestamp,
message), read back at start and written by the store's flusher in a thread."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import msgspec

#: A log group is named within an account and region: (account, region, group name).
GroupKey = tuple[str, str, str]

_MIN_TIME, _MAX_TIME = -(2**62), 2**62
_decode_row = msgspec.json.Decoder(dict[str, Any]).decode
_encode_row = msgspec.json.Encoder().encode


def row_of(line: bytes, account: str) -> tuple[GroupKey, int, int, str, str] | None:
    """(group, position, timestamp, stream, message) of a stored row; None: not one."""
    try:
        row = _decode_row(line)
    except msgspec.DecodeError:
        return None
    seq, stamp, stream, message = row.get("q", 0), row.get("t"), row.get("s"), row.get("m")
    a, r, g = row.get("a", account), row.get("r", "us-east-1"), row.get("g")
    if (
        type(seq) is not int
        or type(stamp) is not int
        or type(stream) is not str
        or type(message) is not str
        or type(a) is not str
        or type(r) is not str
        or type(g) is not str
        or not (_MIN_TIME < stamp < _MAX_TIME and 0 <= seq < _MAX_TIME)
    ):
        return None
    return (a, r, g), seq, stamp, stream, message


def row_bytes(row: dict[str, Any]) -> bytes:
    """One line of a segment file (text that is not UTF-8, as lone surrogates, replaced)."""
    try:
        return _encode_row(row) + b"\n"
    except UnicodeEncodeError:
        clean = {
            k: v.encode("utf-8", "replace").decode() if isinstance(v, str) else v
            for k, v in row.items()
        }
        return _encode_row(clean) + b"\n"


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """New rows of one segment, for its file."""

    path: Path
    key: GroupKey
    seqs: list[int]
    times: list[int]
    streams: list[str]
    messages: list[str]
    #: The file is written anew (rows were deleted), not appended to.
    truncate: bool = False

    def lines(self) -> bytes:
        account, region, name = self.key
        return b"".join(
            row_bytes({"a": account, "r": region, "g": name, "q": q, "s": s, "t": t, "m": m})
            for q, t, s, m in zip(self.seqs, self.times, self.streams, self.messages, strict=True)
        )


def write_files(root: Path, writes: list[Batch], unlink: list[Path], meta: str | None) -> None:
    """Append (or write anew) each batch, delete dropped segments' files, replace
    ``meta.json``: the flusher's work, run in a thread."""
    for batch in writes:
        mode = os.O_TRUNC if batch.truncate else os.O_APPEND
        fd = os.open(batch.path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
        try:
            os.write(fd, batch.lines())
        finally:
            os.close(fd)
    for path in unlink:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if meta is not None:
        temporary = root / "meta.json.tmp"
        temporary.write_text(meta, "utf-8")
        temporary.replace(root / "meta.json")
