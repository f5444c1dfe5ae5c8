"""Matching an execution's history against a requirement's expected one, by the rules the
requirements state: expected events are found by ``EventId`` (events not named are not
checked); only the members an expected event names are compared; ``"*"`` and ``{}`` accept
anything; ``${NAME}`` binds to the first value it meets and must equal it everywhere after
(a variable the test generated is already bound); ``${/regex/}`` must be found in the value;
lists match element by element; anything else must be equal (after substituting the bound
names into a string)."""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"^\$\{([^/].*)\}$")
_REGEX = re.compile(r"^\$\{/(.+)/\}$")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Bindings:
    """The names bound so far (variables first, then what the history binds)."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})

    def substitute(self, data: Any) -> Any:
        """``data`` with every bound ``${NAME}`` inside its strings replaced."""
        if isinstance(data, str):
            return _REFERENCE.sub(
                lambda m: str(self.values[m[1]]) if m[1] in self.values else m[0], data
            )
        if isinstance(data, dict):
            return {key: self.substitute(value) for key, value in data.items()}
        if isinstance(data, list):
            return [self.substitute(item) for item in data]
        return data


def match(
    expected: list[dict[str, Any]], actual: list[dict[str, Any]], bound: Bindings
) -> list[str]:
    """The differences between ``expected`` and ``actual`` events (none: they match)."""
    by_id = {event.get("EventId"): event for event in actual}
    problems: list[str] = []
    for event in expected:
        found = by_id.get(event["EventId"])
        if found is None:
            problems.append(f"no event {event['EventId']} ({event.get('EventType')})")
            continue
        _value(event, found, f"event {event['EventId']}", bound, problems)
    return problems


def _value(want: Any, got: Any, path: str, bound: Bindings, problems: list[str]) -> None:
    if want == "*" or want == {}:
        return
    if isinstance(want, str) and (regex := _REGEX.match(want)):
        if not re.search(regex[1], str(got)):
            problems.append(f"{path}: {got!r} does not match /{regex[1]}/")
        return
    if isinstance(want, str) and (name := _NAME.match(want)):
        if name[1] not in bound.values:
            bound.values[name[1]] = got
        elif bound.values[name[1]] != got:
            problems.append(f"{path}: ${{{name[1]}}} is {bound.values[name[1]]!r}, got {got!r}")
        return
    if isinstance(want, dict) and isinstance(got, dict):
        for key, value in want.items():
            if key not in got:
                problems.append(f"{path}.{key}: missing")
            else:
                _value(value, got[key], f"{path}.{key}", bound, problems)
        return
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            problems.append(f"{path}: {len(got)} items, expected {len(want)}")
            return
        for index, (w, g) in enumerate(zip(want, got, strict=True)):
            _value(w, g, f"{path}[{index}]", bound, problems)
        return
    if bound.substitute(want) != got:
        problems.append(f"{path}: expected {bound.substitute(want)!r}, got {got!r}")
