"""The event a scheduled rule sends its targets, with a target's ``Input`` or ``InputPath``.

The payload is EventBridge's ``Scheduled Event`` (reference spec, section 6)::

    {"version": "0", "id": "<uuid>", "detail-type": "Scheduled Event", "source": "aws.events",
     "account": "...", "time": "2019-03-01T01:23:45Z", "region": "...",
     "resources": ["arn:aws:events:<region>:<account>:rule/<name>"], "detail": {}}

``time`` is the occurrence (not the moment it was sent). The ``id`` is derived from the rule's
ARN and the occurrence, so an occurrence sent again after a crash carries the same id, which a
function can use to drop a duplicate. A target's ``Input`` replaces the event with that JSON
text as given; its ``InputPath`` (a JSONPath such as ``$.detail`` or ``$.resources[0]``) sends
the part of the event it selects (JSON ``null`` when it selects nothing).
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from typing import Any

from lambdad.control.rule_model import Rule, RuleTarget

_NAMESPACE = uuid.UUID("0b8f6f4e-4c25-4f35-9d0a-5f1b2e7c9a10")
#: One step of a JSONPath: ``.name``, ``['name']`` / ``["name"]`` or ``[0]``.
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(?:'([^']*)'|\"([^\"]*)\"|(\d+))\]")


def scheduled_event(
    rule: Rule,
    occurrence: datetime.datetime,
    account: str,
    region: str,
    target: RuleTarget | None = None,
) -> bytes:
    """The bytes ``target`` of ``rule`` receives for the occurrence at ``occurrence`` (aware);
    without a target, the Scheduled Event itself."""
    if target is not None and target.input is not None:
        return target.input.encode()
    instant = occurrence.astimezone(datetime.UTC)
    event: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid5(_NAMESPACE, f"{rule.arn} {instant.isoformat()}")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule.arn],
        "detail": {},
    }
    if target is not None and target.input_path is not None:
        return json.dumps(select(event, target.input_path)).encode()
    return json.dumps(event).encode()


def valid_path(path: str) -> bool:
    """Whether ``path`` is a JSONPath lambdad can apply (``$`` and name or index steps)."""
    return _steps(path) is not None


def select(document: Any, path: str) -> Any:
    """The part of ``document`` that ``path`` selects; None when it selects nothing."""
    steps = _steps(path)
    if steps is None:
        raise ValueError(f"not a JSONPath lambdad can apply: {path!r}")
    current = document
    for step in steps:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return None
        elif not isinstance(current, dict) or step not in current:
            return None
        current = current[step]
    return current


def _steps(path: str) -> list[str | int] | None:
    if not path.startswith("$"):
        return None
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            return None
        name, single, double, index = match.groups()
        steps.append(int(index) if index is not None else name or single or double or "")
        position = match.end()
    return steps
