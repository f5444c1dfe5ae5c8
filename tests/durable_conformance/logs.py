"""Checking an execution's log records against a requirement's ``ExpectedLogs``, by the rules
the requirements state: each log line is a record (a JSON object's top-level fields, or
``message`` for any other line); a ``match`` names fields that must all be there and equal
(strings compared stripped; a ``/.../`` string is a regular expression to find; booleans and
numbers by value); ``count`` / ``min_count`` / ``max_count`` bound how many records match (at
least one when none is given); ``after`` / ``before`` anchors require every match to come at
or after (before) every record an anchor matches, and each anchor to match something."""

from __future__ import annotations

import json
import re
from typing import Any


def records(events: list[dict[str, Any]]) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    """FilterLogEvents' events as (order key, record), in order."""
    found = []
    for event in events:
        text = str(event.get("message", "")).strip()
        record: Any = None
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
        if not isinstance(record, dict):
            record = {"message": text}
        found.append(((int(event.get("timestamp", 0)), int(event.get("ingestionTime", 0))), record))
    return sorted(found, key=lambda pair: pair[0])


def check(expected: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[str]:
    """How the log ``events`` differ from ``expected`` (already substituted)."""
    lines = records(events)
    problems: list[str] = []
    for index, want in enumerate(expected):
        label = f"log {index} {want['match']}"
        own = _matching(want["match"], lines)
        problems += _count(label, want, len(own))
        for direction in ("after", "before"):
            anchors = want.get(direction) or []
            for anchor in [anchors] if isinstance(anchors, dict) else anchors:
                theirs = _matching(anchor, lines)
                if not theirs:
                    problems.append(f"{label}: {direction} anchor {anchor} matches nothing")
                elif own and direction == "after" and lines[own[0]][0] < lines[theirs[-1]][0]:
                    problems.append(f"{label}: not after {anchor}")
                elif own and direction == "before" and lines[own[-1]][0] > lines[theirs[0]][0]:
                    problems.append(f"{label}: not before {anchor}")
    return problems


def _count(label: str, want: dict[str, Any], found: int) -> list[str]:
    exact, low, high = want.get("count"), want.get("min_count"), want.get("max_count")
    if exact is not None:
        return [] if found == exact else [f"{label}: {found} records, expected {exact}"]
    if low is None and high is None:
        low = 1
    if low is not None and found < low:
        return [f"{label}: {found} records, expected at least {low}"]
    if high is not None and found > high:
        return [f"{label}: {found} records, expected at most {high}"]
    return []


def _matching(matcher: dict[str, Any], lines: list[tuple[Any, dict[str, Any]]]) -> list[int]:
    return [
        index
        for index, (_, record) in enumerate(lines)
        if all(key in record and _equal(value, record[key]) for key, value in matcher.items())
    ]


def _equal(want: Any, got: Any) -> bool:
    if isinstance(want, str):
        text = str(got).strip()
        if len(want) >= 2 and want.startswith("/") and want.endswith("/"):
            return re.search(want[1:-1], text) is not None
        return text == want.strip()
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, int | float) and isinstance(got, int | float):
        return float(want) == float(got)
    return str(want) == str(got)
