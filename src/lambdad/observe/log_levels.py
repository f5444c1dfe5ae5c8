"""Lambda's log-level filtering of JSON logs (``LoggingConfig.ApplicationLogLevel`` and
``SystemLogLevel``, JSON format only): which lines reach the function's log group.

A JSON object line's ``level`` (case-insensitive; Python's ``WARNING`` and ``CRITICAL`` read
as ``WARN`` and ``FATAL``) is compared with the configured level; one without a valid level is
``INFO``, as AWS documents. A line that is not a JSON object (a plain ``print``) is not
filtered. Lambda's own (platform) lines are ``INFO``.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

ORDER = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4, "FATAL": 5}
_ALIASES = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_decode = msgspec.json.Decoder().decode


def line_level(line: str) -> int | None:
    """The level of one line: a JSON object's (``INFO`` unless it names a valid one); None
    for any other line."""
    if not line.startswith("{"):
        return None
    try:
        document = _decode(line)
    except msgspec.DecodeError:
        return None
    if not isinstance(document, dict):
        return None
    level = document.get("level")
    if not isinstance(level, str):
        return ORDER["INFO"]
    name = level.upper()
    return ORDER.get(_ALIASES.get(name, name), ORDER["INFO"])


def application_filter(level: str | None) -> Callable[[list[str]], list[str]] | None:
    """What keeps the lines at ``level`` or above (None: no filtering)."""
    least = ORDER.get((level or "").upper())
    if least is None or least == 0:
        return None

    def keep(lines: list[str]) -> list[str]:
        return [line for line in lines if (level := line_level(line)) is None or level >= least]

    return keep


def platform_shown(level: str | None) -> bool:
    """Whether Lambda's INFO platform lines are logged at system level ``level``."""
    return ORDER.get((level or "").upper(), ORDER["INFO"]) <= ORDER["INFO"]
