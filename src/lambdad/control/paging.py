"""``Marker`` / ``NextMarker`` pagination as every Lambda List* call does it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from lambdad import errors

T = TypeVar("T")
DEFAULT_PAGE = 50
MAX_PAGE = 10_000


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode(marker: str) -> int:
    try:
        text = base64.urlsafe_b64decode(marker.encode()).decode()
        kind, _, value = text.partition(":")
        if kind != "o":
            raise ValueError(text)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise errors.InvalidParameterValueException("Invalid marker value.") from exc


def offset_of(marker: str | None) -> int:
    """Where a page starts: 0 without a marker (InvalidParameterValueException when bad)."""
    return max(0, _decode(marker)) if marker else 0


def marker_at(offset: int) -> str:
    """The marker of the page that starts at ``offset``."""
    return _encode(offset)


def page(
    items: Sequence[T], marker: str | None, max_items: int | None, *, limit: int = MAX_PAGE
) -> tuple[list[T], str | None]:
    """One page of ``items`` from ``marker``; the second value is the next marker or None.

    ``max_items`` defaults to 50 (at most ``limit``); its range is the operation's model's,
    checked when the request is decoded."""
    size = min(DEFAULT_PAGE, limit) if max_items is None else max_items
    start = _decode(marker) if marker else 0
    chunk = list(items[start : start + size])
    more = start + size < len(items)
    return chunk, _encode(start + size) if more else None
