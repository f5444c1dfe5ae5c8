"""How tuple keys are flattened for ordered key-value backends."""

from __future__ import annotations

from lambdad.store.base import Key

SEP = "\x1f"
#: The character right after ``SEP``: the exclusive upper bound of a prefix range.
SEP_END = "\x20"


def encode(key: Key) -> str:
    return SEP.join(key)


def decode(raw: str) -> Key:
    return tuple(raw.split(SEP))


def prefix_range(prefix: Key) -> tuple[str, str] | None:
    """``(low, high)`` bounds of the encoded keys under ``prefix``; None means everything."""
    if not prefix:
        return None
    base = encode(prefix)
    return base + SEP, base + SEP_END


def under(key: Key, prefix: Key) -> bool:
    return key[: len(prefix)] == prefix and len(key) > len(prefix)
